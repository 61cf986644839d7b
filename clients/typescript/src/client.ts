/**
 * The best-effort client (DESIGN.md invariant 11, the source document's "memory is
 * best-effort: a fetch failure logs degraded mode and proceeds with empty recall"):
 *
 * - reads (`recall`, `show`, `breaker`, `benchShow`, `peers`, `status`, `events`) never
 *   throw and never wait past their deadline (default 200 ms): when nobody answers they
 *   give an empty answer with `degraded: true`, and one log line per outage, not per call;
 *   a breaker nobody has a say on reads `unknown`, never `closed`;
 * - writes (`remember`, `retract`, `breakerTrip`, `breakerReset`, `benchRecord`) made
 *   while the daemon is down are queued (bounded, in order, optionally in a file) and
 *   sent when it answers again; a write the daemon refuses (a bad field, a 409) throws
 *   `ApiRefused`, since a lost write must be noticed. Every `remember` carries an
 *   idempotency key, so a retry never makes a second memory.
 *
 * Every request is built from the generated operations table (`openapi.ts`), as the
 * Python session builds it from `gossip.ops`.
 */
import { randomUUID } from "node:crypto";
import { join } from "node:path";

import { ApiRefused, ApiUnavailable } from "./errors.js";
import { follow, type EventsOptions, type FeedEvent } from "./events.js";
import { defaultHome, readToken, API_SOCKET } from "./home.js";
import { send, type Endpoint } from "./http.js";
import {
  OPERATIONS, type Benchmark, type BenchmarkRecorded, type Breaker, type Created, type OperationName,
  type Operations, type Peer, type Recall, type RecallParams, type Retracted, type Shown, type Status,
} from "./openapi.js";
import { WriteQueue } from "./queue.js";

export type LogLevel = "warn" | "info";
export type Logger = (level: LogLevel, message: string) => void;

export interface ConnectOptions {
  /** the data dir; default `$GOSSIP_HOME`, else the platform's (as the CLI) */
  home?: string;
  /** `host:port` of the daemon's loopback TCP listener instead of `<home>/api.sock` */
  tcp?: string;
  /** the bearer token for `tcp`; default the content of `<home>/api.token` */
  token?: string;
  /** ms a read may take in all (connect, send, the whole answer); default 200 */
  deadline?: number;
  /** ms a write may take before it is queued and retried; default 5000 */
  writeDeadline?: number;
  /** writes kept while the daemon is down; default 1000 (the oldest go first) */
  queueLimit?: number;
  /** keep the queue in this file too (JSON), so it survives the embedding process */
  queueFile?: string;
  /** ms before the first retry of queued writes (doubling up to 30 s); default 1000 */
  retryMs?: number;
  /** where the degraded-mode lines go; default console.warn / console.info */
  log?: Logger;
}

/** What every read answer carries besides its value. */
export interface ReadMeta {
  /** nobody answered (or not within the deadline): the value is empty */
  degraded: boolean;
  /** why it is empty: the outage, or the daemon's refusal (a bad filter, an unknown id) */
  error?: string;
  /** the refusal's status and field, when the daemon said no */
  refused?: { status: number; field: string | null };
}

/** A write's outcome: sent (the daemon's answer) or queued for when it answers again. */
export type Written<T> = { queued: false; value: T } | { queued: true; key: string };

export interface RememberOptions {
  category: string;
  subject?: string;
  tags?: string[];
  expires_in?: number;
  supersedes?: string;
  bank?: string;
  /** default: a fresh UUID per call (kept in the queue, so a retry is the same write) */
  idempotency_key?: string;
}

const EMPTY_RECALL: Recall = { memories: [], mode: "lexical", note: null, capped: {},
                               quota: { author_share: 0 } };
const RETRY_MOST_MS = 30_000;

export class GossipClient {
  readonly home: string;
  readonly deadline: number;
  readonly writeDeadline: number;
  /** true from the first failed call of an outage to the next answer */
  degraded = false;
  private readonly tcp: string | undefined;
  private token: string | undefined;
  private readonly log: Logger;
  private readonly queue: WriteQueue;
  private readonly retryMs: number;
  private retryWait: number;
  private retryTimer: NodeJS.Timeout | undefined;
  private flushing: Promise<number> | undefined;
  private readonly streams = new Set<AbortController>();

  constructor(options: ConnectOptions = {}) {
    this.home = options.home ?? defaultHome();
    this.tcp = options.tcp;
    this.token = options.token;
    this.deadline = options.deadline ?? 200;
    this.writeDeadline = options.writeDeadline ?? 5000;
    this.retryMs = options.retryMs ?? 1000;
    this.retryWait = this.retryMs;
    this.log = options.log ?? ((level, message) =>
      level === "warn" ? console.warn(message) : console.info(message));
    this.queue = new WriteQueue(options.queueLimit ?? 1000, options.queueFile,
                                (m) => this.log("warn", m));
    if (this.queue.size > 0) this.scheduleFlush(0);
  }

  /** Writes waiting for the daemon. */
  get pending(): number {
    return this.queue.size;
  }

  // -- reads: never throw ---------------------------------------------------------------

  /** Memories the daemon's views give for `q` (trust filter, retractions, expiry, quotas). */
  async recall(q?: string, filters: Omit<RecallParams, "q"> = {}): Promise<Recall & ReadMeta> {
    return this.read("recall", { q, ...filters }, EMPTY_RECALL, (v) => v);
  }

  /** Any record with its provenance (`id` or a unique prefix of 6+); null if none. */
  async show(id: string): Promise<{ record: Shown | null } & ReadMeta> {
    return this.read<"show", { record: Shown | null }>("show", { id }, { record: null },
                                                       (v) => ({ record: v }));
  }

  /** Breaker `name` merged across trusted hosts: `unknown` when nobody (trusted) has a
   * current say, or when degraded; never a made-up `closed`. */
  async breaker(name: string, options: { include_untrusted?: boolean } = {}): Promise<Breaker & ReadMeta> {
    const unknown: Breaker = { name, state: "unknown", tripped_by: [], reason: "", resets_at: null,
                               observations: [] };
    return this.read("breaker", { name, ...options }, unknown, (v) => v);
  }

  async benchShow(filters: { subject?: string; metric?: string; include_untrusted?: boolean } = {}):
      Promise<{ benchmarks: Benchmark[] } & ReadMeta> {
    return this.read("bench_show", filters, { benchmarks: [] }, (v) => ({ benchmarks: v }));
  }

  async peers(): Promise<{ peers: Peer[] } & ReadMeta> {
    return this.read("peers", {}, { peers: [] }, (v) => ({ peers: v }));
  }

  async status(): Promise<{ status: Status | null } & ReadMeta> {
    return this.read<"status", { status: Status | null }>("status", {}, { status: null },
                                                          (v) => ({ status: v }));
  }

  /** The change feed, resumed across daemon restarts (see events.ts). */
  events(options: EventsOptions = {}): AsyncGenerator<FeedEvent> {
    const stop = new AbortController();
    this.streams.add(stop);
    const given = options.signal;
    if (given) {
      if (given.aborted) stop.abort();
      else given.addEventListener("abort", () => stop.abort(), { once: true });
    }
    const host = {
      endpoint: () => this.endpoint(),
      openTimeoutMs: Math.max(this.writeDeadline, this.deadline),
      outage: (reason: string) => this.outage(reason),
      answered: () => this.answered(),
    };
    const inner = follow(host, { ...options, signal: stop.signal });
    const streams = this.streams;
    return (async function* () {
      try {
        yield* inner;
      } finally {
        stop.abort();
        streams.delete(stop);
      }
    })();
  }

  // -- writes: queued while the daemon is down, refusals throw ---------------------------

  async remember(text: string, options: RememberOptions): Promise<Written<Created>> {
    const params = { ...options, text, idempotency_key: options.idempotency_key ?? randomUUID() };
    return this.write("remember", params, params.idempotency_key);
  }

  async retract(id: string, reason = ""): Promise<Written<Retracted>> {
    return this.write("retract", { id, reason });
  }

  async breakerTrip(name: string, options: { cooldown: number; reason?: string; failures?: number }):
      Promise<Written<Breaker>> {
    return this.write("breaker_trip", { name, ...options });
  }

  async breakerReset(name: string, reason = ""): Promise<Written<Breaker>> {
    return this.write("breaker_reset", { name, reason });
  }

  async benchRecord(subject: string, metric: string, value: number, unit = ""):
      Promise<Written<BenchmarkRecorded>> {
    return this.write("bench_record", { subject, metric, value, unit });
  }

  /** Send the queued writes now, in order; resolves with how many are still queued. */
  flush(): Promise<number> {
    if (!this.flushing) {
      this.flushing = this.drain().finally(() => {
        this.flushing = undefined;
      });
    }
    return this.flushing;
  }

  /** Stop retrying and end every `events()` iterator (queued writes stay in the file). */
  close(): void {
    clearTimeout(this.retryTimer);
    this.retryTimer = undefined;
    for (const stop of this.streams) stop.abort();
    this.streams.clear();
  }

  // -- the machinery --------------------------------------------------------------------

  private endpoint(): Endpoint | Error {
    const socketPath = join(this.home, API_SOCKET);
    if (this.tcp === undefined) return { socketPath };
    if (this.token === undefined) {
      const token = readToken(this.home);
      if (token instanceof Error) return token;
      this.token = token;
    }
    return { socketPath, tcp: this.tcp, token: this.token };
  }

  private async call<N extends OperationName>(name: N, params: Record<string, unknown>,
                                              timeoutMs: number): Promise<Operations[N]["result"]> {
    const { method, path, body } = requestOf(name, params); // TypeError: not ours to send
    const endpoint = this.endpoint();
    if (endpoint instanceof Error) throw new ApiUnavailable(endpoint.message);
    const answer = await send(endpoint, method, path, body, timeoutMs);
    return answer.body as Operations[N]["result"];
  }

  private async read<N extends OperationName, T extends object>(
    name: N, params: Record<string, unknown>, empty: T,
    shape: (value: Operations[N]["result"]) => T,
  ): Promise<T & ReadMeta> {
    try {
      const value = await this.call(name, params, this.deadline);
      this.answered();
      return { ...shape(value), degraded: false };
    } catch (e) {
      if (e instanceof TypeError) { // a parameter the operation does not take: no outage
        this.log("warn", `sm-gossip: ${e.message}; answering empty`);
        return { ...structuredClone(empty), degraded: false, error: e.message };
      }
      if (e instanceof ApiRefused && e.status !== 401) { // refused: no outage
        this.answered();
        this.log("warn", `sm-gossip: the daemon refused a ${name}: ${e.message}; answering empty`);
        return { ...structuredClone(empty), degraded: false, error: e.message,
                 refused: { status: e.status, field: e.field } };
      }
      const reason = e instanceof Error ? e.message : String(e);
      this.outage(`${name}: ${reason}`);
      return { ...structuredClone(empty), degraded: true, error: reason };
    }
  }

  private async write<N extends OperationName>(name: N, params: Record<string, unknown>,
                                               key: string = randomUUID()): Promise<Written<Operations[N]["result"]>> {
    // A parameter the operation does not take throws TypeError here, before anything is
    // queued: queued, it would fail on every retry and hold back every later write.
    requestOf(name, params);
    if (this.queue.size > 0) await this.flush(); // in order: the older writes first
    if (this.queue.size === 0) {
      try {
        const value = await this.call(name, params, this.writeDeadline);
        this.answered();
        return { queued: false, value };
      } catch (e) {
        if (e instanceof ApiRefused) {
          if (e.status !== 401) this.answered();
          throw e;
        }
        this.outage(`${name}: ${(e as Error).message}; queued`);
      }
    }
    this.queue.push({ operation: name, params, key, queuedAt: Date.now() });
    this.scheduleFlush(this.retryWait);
    return { queued: true, key };
  }

  private async drain(): Promise<number> {
    while (this.queue.size > 0) {
      const next = this.queue.peek();
      if (next === undefined) break;
      try {
        await this.call(next.operation, next.params, this.writeDeadline);
        this.answered(false);
      } catch (e) {
        if (e instanceof TypeError) { // a queue file written with a parameter we do not send
          this.log("warn", `sm-gossip: a queued ${next.operation} cannot be sent and was dropped: ${e.message}`);
        } else if (e instanceof ApiRefused && e.status !== 401) {
          this.answered(false);
          this.log("warn", `sm-gossip: a queued ${next.operation} was refused and dropped: ${e.message}`);
        } else {
          this.outage(`queued ${next.operation}: ${(e as Error).message}`);
          this.scheduleFlush(this.retryWait);
          this.retryWait = Math.min(this.retryWait * 2, RETRY_MOST_MS);
          return this.queue.size;
        }
      }
      this.queue.shift();
    }
    this.retryWait = this.retryMs;
    clearTimeout(this.retryTimer);
    this.retryTimer = undefined;
    return 0;
  }

  private scheduleFlush(ms: number): void {
    if (this.retryTimer !== undefined) return;
    this.retryTimer = setTimeout(() => {
      this.retryTimer = undefined;
      void this.flush();
    }, ms);
    this.retryTimer.unref(); // queued writes never keep the embedding process alive
  }

  private outage(reason: string): void {
    if (!this.degraded) {
      this.degraded = true;
      this.log("warn", `sm-gossip degraded mode: ${reason}`);
    }
  }

  private answered(flush = true): void {
    if (this.degraded) {
      this.degraded = false;
      this.log("info", "sm-gossip: the daemon answers again; degraded mode over");
    }
    if (flush && this.queue.size > 0 && !this.flushing) void this.flush();
  }
}

/** (method, path, JSON body) of operation `name`: path parameters filled in, query
 * parameters not given left out, booleans as `true`/`false` (as gossip/ops/session.py). */
export function requestOf(name: OperationName, params: Record<string, unknown>):
    { method: string; path: string; body: unknown } {
  const op = OPERATIONS[name];
  let path: string = op.path;
  for (const p of op.pathParams as readonly string[]) {
    path = path.replace(`{${p}}`, encodeURIComponent(String(params[p])));
  }
  const query = new URLSearchParams();
  for (const q of op.query as readonly string[]) {
    const v = params[q];
    if (v !== undefined && v !== null && v !== "") query.set(q, String(v));
  }
  const known = new Set<string>([...op.pathParams, ...op.query, ...op.body]);
  for (const k of Object.keys(params)) {
    if (!known.has(k) && params[k] !== undefined) {
      throw new TypeError(`${name} takes no parameter ${JSON.stringify(k)}`);
    }
  }
  const text = query.toString();
  if (text) path += `?${text}`;
  let body: unknown;
  if (op.method !== "GET" && op.method !== "DELETE") {
    const out: Record<string, unknown> = {};
    for (const b of op.body as readonly string[]) {
      if (params[b] !== undefined && params[b] !== null) out[b] = params[b];
    }
    body = out;
  }
  return { method: op.method, path, body };
}

/** A client of this user's daemon, found as the `gossip` CLI finds it. Never throws and
 * never waits: nothing is sent until the first call. */
export function connect(options: ConnectOptions = {}): GossipClient {
  return new GossipClient(options);
}
