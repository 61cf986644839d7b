/**
 * The change feed (`GET /v1/events`, docs/api.md) as an async iterator that outlives
 * the daemon: when the stream ends (a restart, a `cutoff`, a dead connection) it
 * reconnects with `Last-Event-ID` set to the last event it gave out, so the daemon
 * replays what came after it, or says `lost` when it cannot (another run, too old).
 * Events the caller must act on (`lost`: re-read the state you care about) are passed
 * through; `cutoff` is passed through too, and the iterator resumes after it.
 */
import { request as httpRequest, type IncomingMessage } from "node:http";

import { ApiRefused, ApiUnavailable } from "./errors.js";
import { headersFor, target, where, type Endpoint } from "./http.js";
import type { Peer, SignedRecord } from "./openapi.js";
import { SseParser } from "./sse.js";

export interface RecordEventData {
  root: "records" | "state";
  key: string;
  kind: string;
  author: string;
  trusted: boolean;
  record: SignedRecord;
}

export interface BreakerEventData {
  name: string;
  /** the merged view after this observation */
  state: "open" | "half_open" | "closed" | "unknown";
  author: string;
  /** what this author said */
  observed: string;
  trusted: boolean;
}

export interface PeerEventData {
  change: "added" | "changed" | "removed";
  peer: Peer;
}

export interface TrustEventData {
  /** keys this host now trusts that it did not (trust add, a vouch, a rotation's successor) */
  added: string[];
  /** keys it no longer trusts (trust remove, a revocation) */
  removed: string[];
}

export interface LostEventData {
  /** how many were lost, null when unknown */
  count: number | null;
  reason?: string;
}

export interface CutoffEventData {
  reason: string;
  resume_from: string | null;
}

export type FeedEvent =
  | { id: string; type: "record"; data: RecordEventData }
  | { id: string; type: "breaker"; data: BreakerEventData }
  | { id: string; type: "peer"; data: PeerEventData }
  | { id: string; type: "trust"; data: TrustEventData }
  | { id: string; type: "lost"; data: LostEventData }
  | { id: string; type: "cutoff"; data: CutoffEventData };

export interface EventsOptions {
  /** resume after this event id (one a previous iterator gave out) */
  lastEventId?: string;
  /** stop the iterator */
  signal?: AbortSignal;
  /** called each time the stream is (re)opened: a consumer that keeps state re-reads it
   * after the first open, so nothing falls between its read and the feed */
  onOpen?: () => void;
}

export const EVENT_ID = /^[A-Za-z0-9-]{1,64}$/;
const RETRY_FIRST_MS = 100;
const RETRY_MOST_MS = 5000;
// The daemon sends a comment every 15 s on an idle stream: silence for longer than
// this means the connection is dead (a half-open socket, a stopped process).
const SILENCE_MS = 45_000;

/** What the feed needs from the client: where, how long to wait, whom to tell. */
export interface FeedHost {
  endpoint(): Endpoint | Error;
  openTimeoutMs: number;
  outage(reason: string): void;
  answered(): void;
}

export async function* follow(host: FeedHost, options: EventsOptions = {}): AsyncGenerator<FeedEvent> {
  let last = options.lastEventId;
  if (last !== undefined && !EVENT_ID.test(last)) {
    throw new TypeError("lastEventId must be an event id (1 to 64 of A-Z a-z 0-9 -)");
  }
  const signal = options.signal;
  let wait = RETRY_FIRST_MS;
  let broken = false; // a stream was open and ended: events may have been missed
  while (!signal?.aborted) {
    let res: IncomingMessage;
    try {
      res = await open(host, last, signal);
    } catch (e) {
      if (signal?.aborted) return;
      host.outage(`events: ${(e as Error).message}`);
      broken = true;
      await sleep(wait, signal);
      wait = Math.min(wait * 2, RETRY_MOST_MS);
      continue;
    }
    host.answered();
    options.onOpen?.();
    wait = RETRY_FIRST_MS;
    if (broken && last === undefined) {
      // Nothing had an id yet, so the daemon cannot tell what we missed: we say it.
      yield { id: "", type: "lost",
              data: { count: null, reason: "the feed reconnected before any event: re-read the state" } };
    }
    broken = true;
    const parser = new SseParser();
    let silence = setTimeout(() => res.destroy(), SILENCE_MS);
    const onAbort = () => res.destroy();
    signal?.addEventListener("abort", onAbort, { once: true });
    try {
      res.setEncoding("utf8");
      for await (const chunk of res as AsyncIterable<string>) {
        clearTimeout(silence);
        silence = setTimeout(() => res.destroy(), SILENCE_MS);
        for (const raw of parser.feed(chunk)) {
          let data: unknown;
          try {
            data = JSON.parse(raw.data);
          } catch {
            continue; // not ours
          }
          if (raw.id) last = raw.id;
          yield { id: raw.id, type: raw.type, data } as FeedEvent;
        }
      }
    } catch {
      // the connection broke: reconnect below
    } finally {
      clearTimeout(silence);
      signal?.removeEventListener("abort", onAbort);
      res.destroy();
    }
  }
}

function open(host: FeedHost, last: string | undefined, signal?: AbortSignal): Promise<IncomingMessage> {
  const endpoint = host.endpoint();
  if (endpoint instanceof Error) return Promise.reject(new ApiUnavailable(endpoint.message));
  return new Promise((resolve, reject) => {
    const extra: Record<string, string> = { Accept: "text/event-stream" };
    if (last !== undefined) extra["Last-Event-ID"] = last;
    const req = httpRequest({ ...target(endpoint), method: "GET", path: "/v1/events",
                              headers: headersFor(endpoint, extra), agent: false });
    const timer = setTimeout(() => {
      req.destroy();
      reject(new ApiUnavailable(`no answer from ${where(endpoint)} within ${host.openTimeoutMs} ms`));
    }, host.openTimeoutMs);
    const onAbort = () => {
      req.destroy();
      reject(new ApiUnavailable("stopped"));
    };
    signal?.addEventListener("abort", onAbort, { once: true });
    req.on("error", (e: NodeJS.ErrnoException) => {
      clearTimeout(timer);
      signal?.removeEventListener("abort", onAbort);
      reject(new ApiUnavailable(`no answer from ${where(endpoint)}: ${e.code ?? e.message}`));
    });
    req.on("response", (res) => {
      clearTimeout(timer);
      signal?.removeEventListener("abort", onAbort);
      const status = res.statusCode ?? 0;
      if (status === 200) {
        resolve(res);
        return;
      }
      res.resume();
      res.destroy();
      reject(status === 503 ? new ApiUnavailable("the daemon is not ready (503)")
        : new ApiRefused(status, `the change feed answered HTTP ${status}`));
    });
    req.end();
  });
}

function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal?.aborted) return resolve();
    const timer = setTimeout(done, ms);
    function done() {
      clearTimeout(timer);
      signal?.removeEventListener("abort", done);
      resolve();
    }
    signal?.addEventListener("abort", done, { once: true });
  });
}
