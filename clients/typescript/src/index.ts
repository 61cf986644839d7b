/**
 * sm-gossip-client: a best-effort TypeScript client of the sm-gossip daemon's local API
 * (docs/api.md). `connect()` finds the daemon as the `gossip` CLI does; reads never throw
 * and never wait past their deadline; writes made while it is down are queued; `events()`
 * follows the change feed across daemon restarts. The public names are these.
 */
export { connect, GossipClient, requestOf } from "./client.js";
export type { ConnectOptions, Logger, LogLevel, ReadMeta, RememberOptions, Written } from "./client.js";
export { ApiRefused, ApiUnavailable, GossipError } from "./errors.js";
export type {
  BreakerEventData, CutoffEventData, EventsOptions, FeedEvent, LostEventData, PeerEventData,
  RecordEventData, TrustEventData,
} from "./events.js";
export { API_SOCKET, defaultHome, TOKEN_FILE } from "./home.js";
export { promptBlock } from "./prompt.js";
export type { PromptMemory, PromptOptions } from "./prompt.js";
export type { QueuedWrite } from "./queue.js";
export { SseParser } from "./sse.js";
export type { RawEvent } from "./sse.js";
export * from "./openapi.js";
