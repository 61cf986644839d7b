// Loopback TCP with the bearer token: found in api.token as the CLI finds it; a wrong
// token makes reads degraded (never a throw) and writes throw ApiRefused 401 (not queued:
// waiting would not fix it).
import assert from "node:assert/strict";
import { after, before, test } from "node:test";

import { ApiRefused, connect } from "../dist/index.js";
import { cleanup, Daemon, recorder, scratch } from "./daemon.mjs";

const dir = scratch();
const daemon = Daemon.create(dir, "tcp", { apiTcp: true });
before(() => daemon.start());
after(cleanup(dir, daemon));

test("the token from api.token works over TCP", async () => {
  const gossip = connect({ home: daemon.home, tcp: daemon.tcp, deadline: 5000, log: () => {} });
  const w = await gossip.remember("over tcp", { category: "learning" });
  assert.equal(w.queued, false);
  assert.deepEqual((await gossip.recall("tcp")).memories.map((m) => m.text), ["over tcp"]);
});

test("a wrong token: reads degraded, writes refused", async () => {
  const { log, warnings } = recorder();
  const gossip = connect({ home: daemon.home, tcp: daemon.tcp, token: "not-the-token", deadline: 5000, log });
  const r = await gossip.recall("tcp");
  assert.equal(r.degraded, true);
  assert.deepEqual(r.memories, []);
  assert.equal((await gossip.breaker("b")).state, "unknown");
  assert.equal(warnings().length, 1);
  assert.ok(!warnings()[0].includes("not-the-token"), "the token is never logged");
  await assert.rejects(gossip.remember("x", { category: "learning" }),
                       (e) => e instanceof ApiRefused && e.status === 401);
  assert.equal(gossip.pending, 0);
});
