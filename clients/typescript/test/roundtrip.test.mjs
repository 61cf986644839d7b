// Reads and writes against a real daemon: remember → recall (with who wrote it), show,
// a breaker nobody tripped reads `unknown`, trip → open, reset → closed, benchmarks,
// peers, status; a refusal throws on a write and answers empty on a read.
import assert from "node:assert/strict";
import { after, before, test } from "node:test";

import { ApiRefused, connect, promptBlock } from "../dist/index.js";
import { cleanup, Daemon, recorder, scratch } from "./daemon.mjs";

const dir = scratch();
const daemon = Daemon.create(dir, "desk");
before(() => daemon.start());
after(cleanup(dir, daemon));

test("remember, then recall finds it with its author; show gives its provenance", async () => {
  const { log, warnings } = recorder();
  const gossip = connect({ home: daemon.home, log, deadline: 5000 });
  const written = await gossip.remember("provider x drops requests at 03:00 UTC",
                                        { category: "anti-pattern", subject: "provider:x", tags: ["outage"] });
  assert.equal(written.queued, false);
  const id = written.value.id;
  const found = await gossip.recall("provider drops");
  assert.equal(found.degraded, false);
  assert.deepEqual(found.memories.map((m) => m.id), [id]);
  assert.equal(found.memories[0].author_name, "self");
  assert.equal(found.memories[0].trusted, true);
  assert.match(promptBlock(found.memories), /\[anti-pattern, provider:x; by self, \d{4}-\d\d-\d\d\] provider x drops/);
  const shown = await gossip.show(id.slice(0, 10));
  assert.equal(shown.record.id, id);
  assert.equal(shown.record.signature_ok, true);
  const none = await gossip.show("abcdef0123");
  assert.equal(none.record, null);
  assert.equal(none.degraded, false); // a refusal (404) is no outage
  assert.equal(none.refused.status, 404);
  await assert.rejects(gossip.remember("", { category: "learning" }),
                       (e) => e instanceof ApiRefused && e.status === 400 && e.field === "text");
  assert.equal(gossip.pending, 0); // a refused write is not queued
  const retracted = await gossip.retract(id, "fixed upstream");
  assert.equal(retracted.value.already_retracted, false);
  assert.deepEqual((await gossip.recall("provider drops")).memories, []);
  assert.equal(warnings().filter((w) => w.includes("degraded")).length, 0);
});

test("a breaker nobody tripped is unknown, not closed; trip and reset", async () => {
  const gossip = connect({ home: daemon.home, log: () => {}, deadline: 5000 });
  const fresh = await gossip.breaker("kimi-coding/k2p5");
  assert.equal(fresh.state, "unknown");
  assert.equal(fresh.degraded, false);
  const tripped = await gossip.breakerTrip("kimi-coding/k2p5", { cooldown: 60, reason: "5 timeouts" });
  assert.equal(tripped.value.state, "open");
  assert.equal((await gossip.breaker("kimi-coding/k2p5")).state, "open");
  const reset = await gossip.breakerReset("kimi-coding/k2p5");
  assert.equal(reset.value.state, "closed");
  assert.equal((await gossip.breaker("kimi-coding/k2p5")).state, "closed");
  await assert.rejects(gossip.breakerReset("never-named"), (e) => e.status === 404 && e.field === "name");
});

test("benchmarks, peers, status", async () => {
  const gossip = connect({ home: daemon.home, log: () => {}, deadline: 5000 });
  const recorded = await gossip.benchRecord("kimi-coding/k2p5", "latency_p50", 1.5, "s");
  assert.deepEqual(recorded.value, { subject: "kimi-coding/k2p5", metric: "latency_p50", value: 1.5, unit: "s" });
  const { benchmarks } = await gossip.benchShow({ subject: "kimi-coding/k2p5" });
  assert.equal(benchmarks.length, 1);
  assert.equal(benchmarks[0].values.value, 1.5);
  const peers = await gossip.peers();
  assert.deepEqual(peers, { peers: [], degraded: false });
  const { status } = await gossip.status();
  assert.equal(status.name, "desk");
  assert.equal(status.api.socket.endsWith("api.sock"), true);
});

test("the idempotency key: the same key again is the same memory", async () => {
  const gossip = connect({ home: daemon.home, log: () => {}, deadline: 5000 });
  const first = await gossip.remember("retry me once", { category: "learning", idempotency_key: "ts-key-1" });
  const again = await gossip.remember("retry me once", { category: "learning", idempotency_key: "ts-key-1" });
  assert.equal(again.value.id, first.value.id);
  await assert.rejects(gossip.remember("something else", { category: "learning", idempotency_key: "ts-key-1" }),
                       (e) => e.status === 409 && e.field === "idempotency_key");
  assert.equal((await gossip.recall("retry")).memories.length, 1);
});

test("a parameter an operation does not take: a write throws TypeError, never queued; a read is empty, no outage", async () => {
  const { log, warnings } = recorder();
  const gossip = connect({ home: daemon.home, log, deadline: 5000 });
  // From JavaScript (or a spread object) nothing stops a typo: `tag` for `tags`. Queued,
  // it would fail on every retry and hold back every later write.
  await assert.rejects(gossip.remember("typo lesson", { category: "learning", tag: ["a"] }),
                       (e) => e instanceof TypeError && /tag/.test(e.message));
  assert.equal(gossip.pending, 0);
  const later = await gossip.remember("the write after the typo", { category: "learning" });
  assert.equal(later.queued, false);
  const read = await gossip.recall("typo", { limt: 5 });
  assert.equal(read.degraded, false);
  assert.match(read.error, /limt/);
  assert.equal(gossip.degraded, false);
  assert.equal(warnings().filter((w) => w.includes("degraded")).length, 0, warnings().join("\n"));
  gossip.close();
});
