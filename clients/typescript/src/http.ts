/**
 * One request to the local API, over the Unix socket or loopback TCP, bounded by one
 * deadline for the whole of it (connect, send, every byte of the answer), as the Python
 * connection's `_DeadlineSocket` (gossip/connection.py). No keep-alive: a pooled socket would outlive a daemon
 * restart and fail the next call. Nobody answering (ENOENT, ECONNREFUSED from a stale
 * socket file, a reset, a time-out, a 503) is `ApiUnavailable`; any other status >= 400
 * is `ApiRefused` with the daemon's `{error, field}`.
 */
import { request as httpRequest, type ClientRequest, type IncomingMessage } from "node:http";

import { ApiRefused, ApiUnavailable } from "./errors.js";

export interface Endpoint {
  /** the Unix socket (`<home>/api.sock`), unless `tcp` is given */
  socketPath: string;
  /** `host:port` of the loopback TCP listener (`gossip serve --api-listen`) */
  tcp?: string | undefined;
  /** the bearer token (TCP only) */
  token?: string | undefined;
}

export interface Answer {
  status: number;
  body: unknown;
}

export function where(endpoint: Endpoint): string {
  return endpoint.tcp ?? endpoint.socketPath;
}

/** The options of `http.request` for `endpoint` (the caller adds method, path, headers). */
export function target(endpoint: Endpoint): { socketPath?: string; host?: string; port?: number } {
  if (endpoint.tcp === undefined) return { socketPath: endpoint.socketPath };
  const at = endpoint.tcp.lastIndexOf(":");
  const host = endpoint.tcp.slice(0, at).replace(/^\[|\]$/g, "");
  return { host, port: Number(endpoint.tcp.slice(at + 1)) };
}

export function headersFor(endpoint: Endpoint, extra: Record<string, string>): Record<string, string> {
  // `Host: localhost` always: the daemon refuses a foreign Host (docs/api.md).
  const out: Record<string, string> = { Host: "localhost", ...extra };
  if (endpoint.tcp !== undefined && endpoint.token !== undefined) {
    out.Authorization = `Bearer ${endpoint.token}`;
  }
  return out;
}

/** Send one request; the decoded JSON answer of a 2xx, else a typed error. */
export function send(endpoint: Endpoint, method: string, path: string, body: unknown,
                     timeoutMs: number): Promise<Answer> {
  return new Promise<Answer>((resolve, reject) => {
    let done = false;
    let req: ClientRequest | undefined;
    const finish = (error: Error | null, answer?: Answer) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      req?.destroy();
      if (error) reject(error);
      else resolve(answer as Answer);
    };
    const timer = setTimeout(() => {
      finish(new ApiUnavailable(`no answer from the daemon at ${where(endpoint)} within ${timeoutMs} ms`));
    }, timeoutMs);
    const data = body === undefined ? undefined : Buffer.from(JSON.stringify(body));
    const headers = headersFor(endpoint, { Accept: "application/json", Connection: "close" });
    if (data) {
      headers["Content-Type"] = "application/json";
      headers["Content-Length"] = String(data.length);
    }
    try {
      req = httpRequest({ ...target(endpoint), method, path, headers, agent: false });
    } catch (e) {
      finish(new ApiUnavailable(`cannot reach the daemon at ${where(endpoint)}: ${e}`));
      return;
    }
    req.on("error", (e: NodeJS.ErrnoException) => {
      finish(new ApiUnavailable(`no answer from the daemon at ${where(endpoint)}: ${e.code ?? e.message}`));
    });
    req.on("response", (res: IncomingMessage) => {
      const chunks: Buffer[] = [];
      res.on("data", (c: Buffer) => chunks.push(c));
      res.on("error", (e) => finish(new ApiUnavailable(`the answer broke off: ${e.message}`)));
      res.on("end", () => {
        const status = res.statusCode ?? 0;
        const text = Buffer.concat(chunks).toString("utf8");
        let value: unknown = null;
        try {
          value = text ? JSON.parse(text) : null;
        } catch {
          value = null;
        }
        if (status === 503) {
          finish(new ApiUnavailable(`the daemon is not ready: ${message(value) ?? "HTTP 503"}`));
        } else if (status >= 400) {
          const field = typeof value === "object" && value !== null && "field" in value
            ? ((value as { field: unknown }).field as string | null) : null;
          finish(new ApiRefused(status, message(value) ?? `HTTP ${status}`, field ?? null));
        } else if (value === null && text) {
          finish(new ApiUnavailable(`the daemon's answer to ${method} ${path} is not JSON`));
        } else {
          finish(null, { status, body: value });
        }
      });
    });
    req.end(data);
  });
}

function message(value: unknown): string | undefined {
  if (typeof value === "object" && value !== null && "error" in value) {
    return String((value as { error: unknown }).error);
  }
  return undefined;
}
