// No daemon: reads answer empty and degraded without waiting past their deadline (a
// socket that accepts and never answers included), one log line per outage; writes are
// queued, in order, and delivered once the daemon is back, with no duplicate, also when
// the first attempt's answer was lost after the daemon wrote it; a stale socket file
// (the daemon was killed) reads as no daemon; a queue file outlives the client.
import assert from "node:assert/strict";
import { existsSync, readFileSync, rmSync } from "node:fs";
import { connect as netConnect, createServer } from "node:net";
import { join } from "node:path";
import { after, test } from "node:test";

import { connect } from "../dist/index.js";
import { cleanup, Daemon, recorder, scratch, until } from "./daemon.mjs";

const dir = scratch();
const daemon = Daemon.create(dir, "away");
const proxied = Daemon.create(dir, "behind");
after(cleanup(dir, daemon, proxied));

const texts = async (gossip, q) => (await gossip.recall(q, { limit: 100 })).memories.map((m) => m.text);

test("daemon down: reads empty and degraded, writes queued and delivered once after restart", async () => {
  const { log, warnings, lines } = recorder();
  const queueFile = join(dir, "queue.json");
  const gossip = connect({ home: daemon.home, log, retryMs: 100, queueFile });
  // Never started: no api.sock at all (ENOENT).
  const started = performance.now();
  const r = await gossip.recall("anything");
  const took = performance.now() - started;
  console.log(`# a read with no daemon answered degraded in ${took.toFixed(1)} ms`);
  assert.deepEqual(r.memories, []);
  assert.equal(r.degraded, true);
  const b = await gossip.breaker("kimi-coding/k2p5");
  assert.equal(b.state, "unknown");
  assert.equal(b.degraded, true);
  assert.deepEqual((await gossip.peers()).peers, []);
  assert.equal((await gossip.status()).status, null);
  assert.equal((await gossip.benchShow()).degraded, true);

  const w = await gossip.remember("written while the daemon was down", { category: "learning" });
  assert.equal(w.queued, true);
  const w2 = await gossip.benchRecord("provider:x", "latency_ms", 812, "ms");
  assert.equal(w2.queued, true);
  assert.equal(gossip.pending, 2);
  assert.equal(JSON.parse(readFileSync(queueFile, "utf8")).length, 2);
  assert.equal(warnings().filter((m) => m.includes("degraded mode")).length, 1, "one line per outage");

  await daemon.start();
  await until(async () => (await gossip.flush()) === 0 && gossip.pending === 0, "the queue delivered");
  const reader = connect({ home: daemon.home, deadline: 5000, log: () => {} });
  assert.deepEqual(await texts(reader, "written daemon down"), ["written while the daemon was down"]);
  assert.equal((await reader.benchShow({ subject: "provider:x" })).benchmarks[0].values.value, 812);
  assert.equal(JSON.parse(readFileSync(queueFile, "utf8")).length, 0);
  assert.ok(lines.some((l) => l.level === "info" && l.message.includes("degraded mode over")));
  gossip.close();
  await daemon.stop();
});

test("a stale socket file (the daemon was killed) reads as no daemon; a queue file survives the client", async () => {
  await daemon.start();
  await daemon.stop("SIGKILL");
  assert.ok(existsSync(join(daemon.home, "api.sock")), "SIGKILL leaves the socket file");
  const queueFile = join(dir, "queue2.json");
  const { log, warnings } = recorder();
  const gossip = connect({ home: daemon.home, log, queueFile, retryMs: 60_000 });
  const r = await gossip.recall("x");
  assert.equal(r.degraded, true);
  assert.match(r.error, /ECONNREFUSED/);
  assert.equal((await gossip.remember("queued in a file", { category: "learning", idempotency_key: "file-1" })).queued, true);
  gossip.close(); // the embedding process ends with the write still queued
  assert.equal(warnings().length, 1);

  await daemon.start(); // it replaces the stale socket
  const later = connect({ home: daemon.home, queueFile, deadline: 5000, log: () => {} });
  assert.equal(later.pending, 1);
  assert.equal(await later.flush(), 0);
  assert.equal(await later.flush(), 0);
  assert.deepEqual(await texts(later, "queued file"), ["queued in a file"]);
  later.close();
  await daemon.stop();
  rmSync(queueFile, { force: true });
});

test("a socket that accepts and never answers: the read gives up at its deadline", async () => {
  const home = join(dir, "silent");
  const { mkdirSync } = await import("node:fs");
  mkdirSync(home);
  const held = [];
  const server = createServer((s) => held.push(s)); // accepts, reads, never answers
  await new Promise((ok) => server.listen(join(home, "api.sock"), ok));
  try {
    const gossip = connect({ home, deadline: 200, log: () => {} });
    const started = performance.now();
    const r = await gossip.recall("x");
    console.log(`# a read of a silent daemon answered degraded in ${(performance.now() - started).toFixed(1)} ms (deadline 200)`);
    assert.equal(r.degraded, true);
    assert.match(r.error, /within 200 ms/);
  } finally {
    for (const s of held) s.destroy();
    await new Promise((ok) => server.close(ok));
  }
});

test("a write whose answer was lost after the daemon wrote it is one memory when retried", async () => {
  await proxied.start();
  // A proxy in front of the daemon's socket that swallows the first answer.
  const front = join(dir, "front");
  const { mkdirSync, copyFileSync } = await import("node:fs");
  mkdirSync(front);
  copyFileSync(join(proxied.home, "api.token"), join(front, "api.token"));
  let swallow = true;
  const conns = [];
  const proxy = createServer((client) => {
    const upstream = netConnect(join(proxied.home, "api.sock"));
    conns.push(client, upstream);
    client.pipe(upstream);
    if (swallow) {
      swallow = false;
      upstream.on("data", () => {}); // the daemon answers; the client never hears it
    } else {
      upstream.pipe(client);
    }
    client.on("error", () => upstream.destroy());
    upstream.on("error", () => client.destroy());
  });
  await new Promise((ok) => proxy.listen(join(front, "api.sock"), ok));
  try {
    const gossip = connect({ home: front, writeDeadline: 1500, deadline: 5000, retryMs: 60_000, log: () => {} });
    const w = await gossip.remember("sent once, answered never", { category: "learning" });
    assert.equal(w.queued, true, "timed out: queued with its key");
    assert.equal(await gossip.flush(), 0);
    const direct = connect({ home: proxied.home, deadline: 5000, log: () => {} });
    assert.deepEqual(await texts(direct, "answered never"), ["sent once, answered never"]);
    gossip.close();
  } finally {
    for (const c of conns) c.destroy();
    await new Promise((ok) => proxy.close(ok));
  }
});
