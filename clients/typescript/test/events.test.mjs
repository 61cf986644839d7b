// The change feed as an async iterator: records as they are written, and across a
// daemon restart — the iterator reconnects with Last-Event-ID, gets `lost` (the new run
// cannot replay the old one's events) and then the new events, without the caller doing
// anything; one degraded-mode line for the outage.
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { request } from "node:http";
import { join } from "node:path";
import { after, before, test } from "node:test";

import { connect, requestOf } from "../dist/index.js";
import { cleanup, Daemon, python, recorder, ROOT, scratch } from "./daemon.mjs";

const dir = scratch();
const daemon = Daemon.create(dir, "feed");
before(() => daemon.start());
after(cleanup(dir, daemon));

async function next(events, wanted) {
  for (;;) {
    const { value, done } = await events.next();
    assert.equal(done, false, "the feed ended");
    if (wanted(value)) return value;
  }
}

const memoryWith = (text) => (e) => e.type === "record" && e.data.record.fields.text === text;

test("the feed follows writes and resumes across a daemon restart", async () => {
  const { log, warnings } = recorder();
  const gossip = connect({ home: daemon.home, log, deadline: 5000 });
  const stop = new AbortController();
  let opened;
  const open = new Promise((ok) => { opened = ok; });
  const events = gossip.events({ signal: stop.signal, onOpen: () => opened() });
  const first = events.next(); // connects
  await open;
  await gossip.remember("before the restart", { category: "learning" });
  const { value: got } = await first;
  const a = memoryWith("before the restart")(got) ? got : await next(events, memoryWith("before the restart"));
  assert.match(a.id, /^[0-9a-f]+-\d+$/);
  assert.equal(a.data.trusted, true);

  await daemon.stop();
  await gossip.remember("while it was down", { category: "learning" }); // queued
  await daemon.start();
  // The iterator reconnects with the old run's id: the new run cannot replay it and says
  // so (re-read the state), with an id of its own to resume from.
  const lost = await next(events, (e) => e.type !== "record" || e.data.kind === "memory");
  assert.equal(lost.type, "lost");
  assert.equal(lost.data.count, null);
  await gossip.remember("after the restart", { category: "learning" });
  const b = await next(events, memoryWith("after the restart"));
  assert.notEqual(b.id.split("-")[0], a.id.split("-")[0], "a new run");
  assert.ok(warnings().filter((w) => w.includes("degraded mode")).length <= 1, warnings().join("\n"));

  // Resuming from an id of this run replays what came after it.
  const again = gossip.events({ lastEventId: lost.id });
  const replayed = await next(again, memoryWith("after the restart"));
  assert.equal(replayed.id, b.id);
  await again.return();
  stop.abort();
  assert.equal((await events.next()).done, true);
  gossip.close();
});

test("a change of the trusted set arrives as a trust event", async () => {
  const other = Daemon.create(dir, "other"); // its data dir only: never started
  const id = spawnSync(python(), ["-m", "gossip.cli", "id"], {
    env: { ...process.env, GOSSIP_HOME: other.home, PYTHONPATH: ROOT }, cwd: ROOT, encoding: "utf8",
    timeout: 60_000,
  }).stdout.trim();
  const gossip = connect({ home: daemon.home, log: () => {}, deadline: 5000 });
  let opened;
  const open = new Promise((ok) => { opened = ok; });
  const events = gossip.events({ onOpen: () => opened() });
  const first = events.next();
  await open;
  const { path, body } = requestOf("trust_add", { key: id, name: "other" });
  await new Promise((ok, fail) => {
    const data = JSON.stringify(body);
    const req = request({ socketPath: join(daemon.home, "api.sock"), method: "POST", path, agent: false,
                          headers: { Host: "localhost", "Content-Type": "application/json",
                                     "Content-Length": Buffer.byteLength(data) } },
                        (res) => { res.resume(); res.on("end", () => (res.statusCode === 200 ? ok() : fail(new Error(`HTTP ${res.statusCode}`)))); });
    req.on("error", fail);
    req.end(data);
  });
  const { value: got } = await first;
  const trust = got.type === "trust" ? got : await next(events, (e) => e.type === "trust");
  assert.deepEqual(trust.data, { added: [id], removed: [] });
  await events.return();
  gossip.close();
});
