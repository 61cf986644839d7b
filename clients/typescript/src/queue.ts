/**
 * Writes made while the daemon is down: bounded, in order, in memory and optionally in a
 * file (rewritten whole, atomically, on every change, so a crash of the embedding process
 * keeps them). Full, it drops the oldest: the newest lesson is the one worth keeping.
 * Each entry keeps the idempotency key it was first sent with, so a write whose answer
 * was lost (a time-out after the daemon wrote it) is one memory when it is sent again.
 * This module does no network I/O.
 */
import { mkdirSync, readFileSync, renameSync, writeFileSync } from "node:fs";
import { dirname } from "node:path";

import type { OperationName } from "./openapi.js";

export interface QueuedWrite {
  operation: OperationName;
  params: Record<string, unknown>;
  /** the idempotency key (remember), else a local id of the entry */
  key: string;
  /** when it was queued, ms since the epoch */
  queuedAt: number;
}

export class WriteQueue {
  private items: QueuedWrite[] = [];
  /** writes dropped because the queue was full, since it was made */
  dropped = 0;

  constructor(
    readonly limit: number,
    readonly file?: string,
    private readonly warn: (message: string) => void = () => {},
  ) {
    if (!(limit >= 1)) throw new RangeError("queueLimit must be at least 1");
    if (file !== undefined) this.load(file);
  }

  get size(): number {
    return this.items.length;
  }

  peek(): QueuedWrite | undefined {
    return this.items[0];
  }

  push(write: QueuedWrite): void {
    this.items.push(write);
    while (this.items.length > this.limit) {
      const gone = this.items.shift();
      this.dropped += 1;
      this.warn(`sm-gossip: the write queue is full (${this.limit}); dropped the oldest ` +
        `${gone?.operation} queued at ${new Date(gone?.queuedAt ?? 0).toISOString()}`);
    }
    this.save();
  }

  /** Remove the first entry (sent, or refused for good). */
  shift(): void {
    this.items.shift();
    this.save();
  }

  snapshot(): readonly QueuedWrite[] {
    return [...this.items];
  }

  private load(file: string): void {
    let text: string;
    try {
      text = readFileSync(file, "utf8");
    } catch {
      return; // no file yet
    }
    try {
      const value = JSON.parse(text) as unknown;
      if (!Array.isArray(value)) throw new Error("not an array");
      this.items = value.filter((w): w is QueuedWrite =>
        typeof w === "object" && w !== null && typeof w.operation === "string" &&
        typeof w.key === "string" && typeof w.params === "object");
      while (this.items.length > this.limit) this.items.shift();
    } catch (e) {
      this.warn(`sm-gossip: ignoring the unreadable write queue ${file}: ${(e as Error).message}`);
      this.items = [];
    }
  }

  private save(): void {
    if (this.file === undefined) return;
    try {
      mkdirSync(dirname(this.file), { recursive: true });
      const tmp = `${this.file}.${process.pid}.tmp`;
      writeFileSync(tmp, JSON.stringify(this.items), { mode: 0o600 });
      renameSync(tmp, this.file);
    } catch (e) {
      this.warn(`sm-gossip: cannot save the write queue to ${this.file}: ${(e as Error).message}`);
    }
  }
}
