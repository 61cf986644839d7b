"""Convergence benchmark: how fast one new record reaches every node, and what it costs,
against the simulated ideal epidemic and a naive full-state gossip run the same way.

N nodes (8, 16, 32, 64; --quick: 8, 16) run in this process, each with its own data dir,
replica thread and aiohttp server on 127.0.0.1, all keys mutually trusted, one seed peer
each (the rest found through host announcements). Per N and mode, ``trials`` times: one
node (a different one each trial) writes a memory, then

- **eager push off**: rounds are driven by hand, every node running one push-pull round
  with ``fanout`` peers (``Node.sync_now(fanout)``, all nodes concurrently), until every
  node has it: rounds and wall time to the last node's arrival;
- **eager push on**: the write is pushed to ``fanout`` peers, who pass it on; once no
  push has arrived for 0.3 s, the share of nodes it reached and when the last push
  arrived; then rounds driven as above until all have it.

Baselines, in the same run:

- the ideal synchronous push-pull epidemic with the same fanout (every node contacts
  ``fanout`` uniformly random others per round; both sides of a contact end with the
  union), simulated in pure Python, 5000 trials;
- **naive full-state gossip** (``FullStatePeer``, below; a bench baseline, not part of the
  product): N peers on loopback aiohttp holding the same document, driven by the same
  round driver and the same peer selection (``PeerTable.select``), where every exchange
  sends the whole document (pycrdt ``Doc.get_update()``) both ways and applies it.

Also measured on the wire (HTTP/1.1 framing, headers included): an idle exchange
between in-sync peers (requests and bytes) and the bytes a new record costs the mesh.
Arrival is observed through each node's ``events()`` stream, not by polling.

    python scripts/bench/convergence.py [--quick] [--json FILE]
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from aiohttp import ClientSession, ClientTimeout, web
from common import create_hosts, machine_line, mesh, p50, p99, sync_round, wire
from pycrdt import Doc, Map

from gossip.events import RecordAdded
from gossip.node import Node
from gossip.peers import PeerTable
from gossip.transport.http import frame_size

NAME = "convergence"
COMMAND = ".venv/bin/python scripts/bench/convergence.py"
SIZES, QUICK_SIZES = (8, 16, 32, 64), (8, 16)
TRIALS, QUICK_TRIALS = 20, 5
FANOUT = 2
MAX_ROUNDS = 50


def ideal_rounds(n: int, fanout: int, rng: random.Random) -> int:
    """Rounds of a synchronous push-pull epidemic until all ``n`` know the rumour."""
    informed = [False] * n
    informed[rng.randrange(n)] = True
    rounds = 0
    while not all(informed):
        rounds += 1
        nxt = informed[:]
        for i in range(n):
            for j in rng.sample([k for k in range(n) if k != i], fanout):
                if informed[i] or informed[j]:
                    nxt[i] = nxt[j] = True
        informed = nxt
    return rounds


class Arrivals:
    """Which nodes have seen which record id, from their event streams."""

    def __init__(self, nodes: list[Node]) -> None:
        self.seen: dict[str, dict[int, float]] = {}  # record id -> node -> perf_counter
        self.changed = asyncio.Event()
        self.tasks = [asyncio.create_task(self._watch(i, n)) for i, n in enumerate(nodes)]

    async def _watch(self, i: int, node: Node) -> None:
        async for event in node.events():
            if isinstance(event, RecordAdded) and event.root == "records":
                self.seen.setdefault(event.key, {}).setdefault(i, time.perf_counter())
                self.changed.set()

    def count(self, rid: str) -> int:
        return len(self.seen.get(rid, ()))

    def last(self, rid: str) -> float:
        return max(self.seen[rid].values())

    async def settle(self, quiet: float = 0.3) -> None:
        """Wait until no new arrival for ``quiet`` seconds (pushes have died out)."""
        while True:
            self.changed.clear()
            try:
                await asyncio.wait_for(self.changed.wait(), quiet)
            except TimeoutError:
                return

    async def close(self) -> None:
        for t in self.tasks:
            t.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)


# --- the naive baseline -------------------------------------------------------------------


class FullStatePeer:
    """Naive full-state gossip, the baseline: a pycrdt document on a loopback aiohttp
    server; an exchange POSTs our whole document, the peer applies it and answers with
    its whole document (now the union), which we apply. No signatures, no gate, no
    store: only what any "send everything" design pays at the least."""

    def __init__(self, index: int, rng: random.Random) -> None:
        self.key = f"naive-{index}"
        self.doc = Doc()
        self.records = self.doc.get("records", type=Map)
        self.doc.get("state", type=Map)
        self.seen: dict[str, float] = {}  # record key -> perf_counter of its arrival
        self.records.observe(self._on_change)
        self.table = PeerTable(self.key, backoff_base_ms=100, backoff_cap_ms=1000, rng=rng)
        self.sent = 0  # HTTP bytes of our requests and their answers (client side)
        self.requests = 0
        self.address = ""
        self._runner: web.AppRunner | None = None
        self._session: ClientSession | None = None

    def _on_change(self, event: Any) -> None:
        now = time.perf_counter()
        for key in event.keys:
            self.seen.setdefault(key, now)

    async def _serve(self, request: web.Request) -> web.Response:
        self.doc.apply_update(await request.read())
        return web.Response(body=self.doc.get_update(), content_type="application/octet-stream")

    async def start(self) -> None:
        app = web.Application(client_max_size=1 << 30)
        app.router.add_post("/exchange", self._serve)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = self._runner.addresses[0][1]
        self.address = f"127.0.0.1:{port}"
        self._session = ClientSession(timeout=ClientTimeout(total=60))

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
        if self._runner is not None:
            await self._runner.cleanup()

    async def exchange(self, peer_address: str) -> None:
        assert self._session is not None
        body = self.doc.get_update()
        async with self._session.post(f"http://{peer_address}/exchange", data=body) as resp:
            reply = await resp.read()
            sent_headers, raw_headers = resp.request_info.headers, resp.raw_headers
            status = resp.status
        self.doc.apply_update(reply)
        # Counted as HttpTransport counts ours: HTTP/1.1 frames, headers included.
        self.requests += 1
        self.sent += frame_size("POST /exchange HTTP/1.1", sent_headers, len(body))
        self.sent += frame_size(f"HTTP/1.1 {status}", raw_headers, len(reply))

    async def round(self, fanout: int) -> None:
        chosen = self.table.select(0, fanout, due_only=False)
        for p in chosen:
            self.table.begin(p)

        async def one(p: Any) -> None:
            await self.exchange(p.address)
            self.table.success(p, int(time.monotonic() * 1000))

        await asyncio.gather(*(one(p) for p in chosen))


async def naive_trials(
    n: int, trials: int, fanout: int, document: bytes, value: dict[str, str]
) -> dict[str, float]:
    """The same trials as eager-push-off, with ``FullStatePeer``s all starting from
    ``document`` (the real mesh's document); each trial writes a record of ``value``'s size."""
    rng = random.Random(n)
    peers = [FullStatePeer(i, rng) for i in range(n)]
    try:
        for p in peers:
            await p.start()
            p.doc.apply_update(document)
        for p in peers:
            for q in peers:
                if q is not p:
                    p.table.add([q.address], "static", key=q.key, now=0)

        async def one_round() -> None:
            await asyncio.gather(*(p.round(fanout) for p in peers))

        def wire_bytes() -> int:
            return sum(p.sent for p in peers)

        b0 = wire_bytes()
        await one_round()
        idle = (wire_bytes() - b0) / (n * fanout)
        rounds: list[int] = []
        times: list[float] = []
        trial_bytes: list[int] = []
        for t in range(trials):
            writer = peers[(t * 7) % n]
            before = wire_bytes()
            key = f"naive-trial-{t}"
            started = time.perf_counter()
            writer.records[key] = dict(value)
            k = 0
            while not all(key in p.seen for p in peers):
                await one_round()
                k += 1
                if k > MAX_ROUNDS:
                    raise RuntimeError(f"naive N={n}: no convergence after {MAX_ROUNDS} rounds")
            rounds.append(k)
            times.append(max(p.seen[key] for p in peers) - started)
            trial_bytes.append(wire_bytes() - before)
        return {
            "rounds_mean": statistics.mean(rounds), "rounds_p99": p99(rounds),
            "ms_p50": p50(times) * 1000, "ms_p99": p99(times) * 1000,
            "bytes_per_trial": statistics.mean(trial_bytes), "idle_bytes": idle,
            "doc_bytes": len(peers[0].doc.get_update()),
        }  # fmt: skip
    finally:
        for p in peers:
            await p.close()


# --- the mesh of real nodes -----------------------------------------------------------------


async def run_size(n: int, trials: int, fanout: int, tmp: Path) -> dict[str, Any]:
    homes = [tmp / f"n{n}-{i}" for i in range(n)]
    await asyncio.to_thread(create_hosts, homes)
    out: dict[str, Any] = {"n": n}
    warm: dict[str, float] = {}
    async with mesh(homes, fanout, warm=warm) as nodes:
        out["warm_rounds"], out["warm_s"] = warm["rounds"], warm["seconds"]
        arrivals = Arrivals(nodes)
        await asyncio.sleep(0)

        async def one_round() -> None:
            await sync_round(nodes, fanout)

        # Idle exchange between in-sync peers.
        r0, b0 = wire(nodes)
        await one_round()
        r1, b1 = wire(nodes)
        exchanges = n * fanout
        out["idle_requests"] = (r1 - r0) / exchanges
        out["idle_bytes"] = (b1 - b0) / exchanges
        for mode in ("off", "on"):
            eager = mode == "on"
            for x in nodes:  # the profile is read at each push
                x.profile = x.profile.with_(eager_push=eager)
            rounds: list[int] = []
            times: list[float] = []
            coverage: list[float] = []
            push_times: list[float] = []
            record_bytes: list[int] = []
            trial_bytes: list[int] = []
            for t in range(trials):
                writer = nodes[(t * 7) % n]
                await one_round()  # start in sync
                _, before = wire(nodes)
                started = time.perf_counter()
                rid = await writer.remember(f"trial {mode} {t} of N={n}", category="learning")
                arrivals.seen.setdefault(rid, {}).setdefault(nodes.index(writer), started)
                quiet = 0.0  # the wait for pushes to die out, not counted as time
                if eager:
                    await arrivals.settle()
                    coverage.append(arrivals.count(rid) / n)
                    push_times.append(arrivals.last(rid) - started)
                    quiet = time.perf_counter() - arrivals.last(rid)
                k = 0
                while arrivals.count(rid) < n:
                    await one_round()
                    k += 1
                    if k > MAX_ROUNDS:
                        raise RuntimeError(f"N={n}: no convergence after {MAX_ROUNDS} rounds")
                # The last node's arrival, as if the rounds had started when the last
                # push arrived.
                times.append(arrivals.last(rid) - started - (quiet if k else 0.0))
                rounds.append(k)
                _, after = wire(nodes)
                trial_bytes.append(after - before)
                # Bytes this record cost: the trial's traffic minus idle rounds' share.
                record_bytes.append(int(after - before - k * exchanges * out["idle_bytes"]))
            out[f"{mode}_rounds_mean"] = statistics.mean(rounds)
            out[f"{mode}_rounds_p99"] = p99(rounds)
            out[f"{mode}_ms_p50"] = p50(times) * 1000
            out[f"{mode}_ms_p99"] = p99(times) * 1000
            out[f"{mode}_bytes_per_record"] = statistics.mean(record_bytes)
            out[f"{mode}_bytes_per_trial"] = statistics.mean(trial_bytes)
            if eager:
                out["on_push_coverage"] = statistics.mean(coverage)
                out["on_push_ms"] = statistics.mean(push_times) * 1000
        await arrivals.close()
        document = await nodes[0].query(lambda r, _: r.document_update())
        value = next(iter((await nodes[0].records()).values())).to_value()
    out["naive"] = await naive_trials(n, trials, fanout, document, value)
    rng = random.Random(n)
    sim = [ideal_rounds(n, fanout, rng) for _ in range(5000)]
    out["ideal_mean"] = statistics.mean(sim)
    out["ideal_p99"] = p99([float(s) for s in sim])
    return out


def _kb(b: float) -> str:
    return f"{b / 1000:,.1f} KB"


def run(quick: bool) -> dict[str, Any]:
    sizes = QUICK_SIZES if quick else SIZES
    trials = QUICK_TRIALS if quick else TRIALS
    print(f"convergence: N = {', '.join(map(str, sizes))}; fanout {FANOUT}, {trials} trials "
          f"per N and mode; {machine_line()}", flush=True)  # fmt: skip
    results: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as tmp:
        for n in sizes:
            r = asyncio.run(run_size(n, trials, FANOUT, Path(tmp)))
            nv = r["naive"]
            results.append(r)
            print(
                f"  N={n:3}: warm-up {r['warm_rounds']} rounds, {r['warm_s']:.1f} s | "
                f"ideal {r['ideal_mean']:.2f}/{r['ideal_p99']:.0f} rounds | "
                f"off {r['off_rounds_mean']:.2f}/{r['off_rounds_p99']:.0f} rounds "
                f"= {r['off_rounds_mean'] / r['ideal_mean']:.2f}x ideal, "
                f"p50 {r['off_ms_p50']:.0f} ms, p99 {r['off_ms_p99']:.0f} ms, "
                f"{_kb(r['off_bytes_per_trial'])}/trial | on: push reached "
                f"{r['on_push_coverage'] * 100:.0f} % in {r['on_push_ms']:.0f} ms, p99 "
                f"{r['on_ms_p99']:.0f} ms | naive {nv['rounds_mean']:.2f}/{nv['rounds_p99']:.0f} "
                f"rounds, p99 {nv['ms_p99']:.0f} ms, {_kb(nv['bytes_per_trial'])}/trial "
                f"= {nv['bytes_per_trial'] / r['off_bytes_per_trial']:.1f}x ours",
                flush=True,
            )
    last = results[-1]
    nv = last["naive"]
    mean_ratio = last["off_rounds_mean"] / last["ideal_mean"]
    headline = (
        f"convergence: N={last['n']} eager off: mean {last['off_rounds_mean']:.2f} rounds = "
        f"{mean_ratio:.2f}x ideal, p99 {last['off_rounds_p99']:.0f} rounds, "
        f"p99 {last['off_ms_p99']:.0f} ms; naive full-state gossip "
        f"{nv['ms_p99'] / last['off_ms_p99']:.2f}x the time, "
        f"{nv['bytes_per_trial'] / last['off_bytes_per_trial']:.1f}x the bytes"
    )
    goal_n = f"N = {last['n']}" + ("" if last["n"] == 64 else " (--quick; the goal is for N = 64)")
    goals = [
        {"goal": "N = 64, fanout 2, eager push off: p99 ≤ 6 rounds",
         "value": f"{goal_n}: p99 {last['off_rounds_p99']:.0f} rounds",
         "met": last["off_rounds_p99"] <= 6},
        {"goal": "N = 64, fanout 2, eager push off: mean ≤ 1.2× the ideal epidemic",
         "value": f"{goal_n}: {last['off_rounds_mean']:.2f} / {last['ideal_mean']:.2f} = "
                  f"{mean_ratio:.2f}×",
         "met": mean_ratio <= 1.2},
        {"goal": "idle exchange ≤ 1 KiB",
         "value": f"{last['idle_requests']:.2f} request(s), {last['idle_bytes']:.0f} B",
         "met": last["idle_bytes"] <= 1024},
    ]  # fmt: skip
    rounds_rows = [
        [r["n"], f"{r['ideal_mean']:.2f} / {r['ideal_p99']:.0f}",
         f"{r['off_rounds_mean']:.2f} / {r['off_rounds_p99']:.0f}",
         f"{r['off_rounds_mean'] / r['ideal_mean']:.2f}×",
         f"{r['on_rounds_mean']:.2f} / {r['on_rounds_p99']:.0f}",
         f"{r['naive']['rounds_mean']:.2f} / {r['naive']['rounds_p99']:.0f}"]
        for r in results
    ]  # fmt: skip
    time_rows = [
        [r["n"], f"{r['off_ms_p50']:.0f} / {r['off_ms_p99']:.0f}",
         f"{r['on_push_coverage'] * 100:.0f} % in {r['on_push_ms']:.0f} ms",
         f"{r['on_ms_p50']:.0f} / {r['on_ms_p99']:.0f}",
         f"{r['naive']['ms_p50']:.0f} / {r['naive']['ms_p99']:.0f}",
         f"{r['naive']['ms_p99'] / r['off_ms_p99']:.2f}×"]
        for r in results
    ]  # fmt: skip
    byte_rows = [
        [r["n"], f"{r['idle_requests']:.2f} req, {r['idle_bytes']:.0f} B",
         _kb(r["off_bytes_per_record"]), _kb(r["off_bytes_per_trial"]),
         _kb(r["on_bytes_per_trial"]), _kb(r["naive"]["doc_bytes"]),
         _kb(r["naive"]["idle_bytes"]), _kb(r["naive"]["bytes_per_trial"]),
         f"{r['naive']['bytes_per_trial'] / r['off_bytes_per_trial']:.1f}×"]
        for r in results
    ]  # fmt: skip
    notes = list(NOTES)
    if not all(g["met"] for g in goals[:2]):
        notes.append(
            f"Missed in this run at N = {last['n']}: mean {mean_ratio:.2f}x the ideal "
            f"(goal 1.2x), p99 {last['off_rounds_p99']:.0f} rounds (goal 6). Rounds are not "
            "a CPU cost, so a profile does not explain them: they follow from whom each "
            "node picks (`PeerTable.select`: least recently synced first, not uniformly at "
            "random as in the simulation) and from how much news a round's concurrent "
            f"exchanges pass on; with {trials} trials one slow trial moves the p99."
        )
    return {
        "name": NAME,
        "title": "Convergence: one new record across a cluster, against the ideal epidemic "
        "and naive full-state gossip",
        "command": COMMAND + (" --quick" if quick else ""),
        "headline": headline,
        "goals": goals,
        "tables": [
            {"caption": f"Rounds to every node (mean / p99 over {trials} trials, fanout "
                        f"{FANOUT}); ideal: simulated push-pull epidemic, 5000 trials",
             "columns": ["N", "ideal", "eager off", "off / ideal", "eager on: rounds after "
                         "the push", "naive full-state"],
             "rows": rounds_rows},
            {"caption": "Milliseconds from the write to the last node's arrival (p50 / p99)",
             "columns": ["N", "eager off", "eager on: reached by push", "eager on",
                         "naive full-state", "naive / off (p99)"],
             "rows": time_rows},
            {"caption": "Bytes on the wire (HTTP/1.1 frames, headers included, both "
                        "directions, counted the same way for both)",
             "columns": ["N", "idle exchange", "off: per record (beyond idle)",
                         "off: per trial", "on: per trial", "naive: document",
                         "naive: idle exchange", "naive: per trial", "naive / off"],
             "rows": byte_rows},
        ],
        "notes": notes,
        "plots": [],
        "results": results,
    }


NOTES = [
    "N nodes in one process (own data dir, replica thread and aiohttp server on "
    "127.0.0.1 each), keys mutually trusted, one seed peer each (the rest found through "
    "host announcements), fanout 2. Before the trials, rounds run until every node has "
    "started an exchange with every other (the warm-up, printed per N): a running "
    "cluster's pairs already hold a TLS context, a session ticket and usually a kept-alive "
    "connection, and a first contact costs a full handshake and a new client context "
    "(~3.5 ms of CPU) that the trials would otherwise pay in their first rounds. A node "
    "writes a memory; rounds are then driven by hand "
    "(every node runs one push-pull round with `fanout` peers, all concurrently) until "
    "every node has it, as seen on each node's `events()` stream. Eager push on: the write "
    "is pushed and passed on, and once no push has arrived for 0.3 s we note the share "
    "reached and the time of the last push arrival, then drive rounds until all have it.",
    "Naive full-state gossip (`FullStatePeer` in this module, a baseline, not the product) "
    "runs the same trials through the same round driver and the same peer selection "
    "(`PeerTable.select`), N peers on loopback aiohttp, each starting from the real mesh's "
    "document; every exchange POSTs the whole document (`Doc.get_update()`), the peer "
    "applies it and answers with its whole document. It checks no signatures and stores "
    "nothing, so its time is a floor for any send-everything design; its bytes grow with "
    "the document (every host announcement and every earlier trial record), ours with "
    "what is new. Its rounds can beat the simulated ideal: the exchanges of a round run "
    "concurrently, and a peer that learns the record early in a round passes it on in "
    "answers later in the same round; one quick request per exchange makes that chaining "
    "common, whereas ours (a `DIGEST`, then a `SYNC`, each through the replica's thread) "
    "mostly answer before the news arrives. A first look at N = 64 (3 trials, a loaded "
    "machine, 2026-11-27): ours 5.0 rounds, 4.8 s p99, 0.80 MB per trial; naive 2.0 "
    "rounds, 1.3 s p99, 12.2 MB per trial (15x the bytes).",
    "An idle exchange is 1 request: a 39-byte `DIGEST` and a 7-byte `SAME`; the rest is "
    "HTTP framing and the signature headers (~330 B each way). It no longer grows with "
    "the number of writers. Before the `DIGEST`, an idle exchange traded both state "
    "vectors: 822 B at N = 8, 1826 B at N = 64.",
    "\"Per record\" is what a trial cost beyond the idle traffic of its rounds, so it rose "
    "(171 KB -> 344 KB at N = 64 in the hand-run) as the idle share fell: an exchange "
    "that finds news now also pays for the `DIGEST` round trip (and, when the news is the "
    "peer's, one more state vector; when it is ours, one fewer). The traffic of a whole "
    "trial fell: at N = 64, 4.35 rounds x 128 exchanges x 709 B + 344 KB = 0.74 MB, "
    "against 1.19 MB (x 1826 B + 171 KB) with state vectors in every exchange.",
    "Eager push follows the writer's broadcast tree (each host pushes to its children, "
    "N - 1 pushes in all: docs/node.md), so it reaches every node whose peer table knows "
    "the same members within tens to hundreds of milliseconds, and anti-entropy brings "
    "the rest. Before (to 2026-12-04) each host passed what was new to it on to `fanout` "
    "random peers, which reached 80-95 % (an infect-and-die rumour reaches the share s "
    "with s = 1 - e^(-2s), about 0.8, of a large mesh for fanout 2).",
    "Eager push on: when the push did not reach everyone, the time to all leaves out "
    "the 0.3 s of quiet we wait for before driving rounds (as if the first round started "
    "when the last push arrived); a real node's next round comes at its interval (0.2 s "
    "`local`, 5 s `lan`).",
    "Times at N = 64 are dominated by one process running 64 servers and 64 replica "
    "threads on 2 cores; they are not a measure of one host's latency. The hand-run of "
    "this benchmark before it became a module (2026-11-27, 2 cores, fanout 2, 20 trials) "
    "gave, N = 8 / 16 / 32 / 64: ideal 2.14 / 2.95 / 3.54 / 4.10 rounds, eager off "
    "2.20 / 3.05 / 3.70 / 4.35 (p99 3 / 4 / 4 / 6), mean time to all 62 / 195 / 679 / "
    "1971 ms; eager on, share reached by push 94 / 86 / 84 / 83 %; idle exchange 709 B. "
    "The run before its last fixes (eager pushes only to peers that proved their key, a "
    "stepped-back clock) gave p99 5 and the same mean.",
]


def plot(result: dict[str, Any], outdir: Path) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rs = result.get("results") or []
    if not rs:
        return []
    ns = [r["n"] for r in rs]
    fig, (ax1, ax2, ax3) = plt.subplots(1, 3, figsize=(13, 4))
    ax1.plot(ns, [r["ideal_mean"] for r in rs], "k--", marker="o", label="ideal (simulated)")
    ax1.plot(ns, [r["off_rounds_mean"] for r in rs], marker="o", label="sm-gossip, eager off")
    ax1.plot(ns, [r["off_rounds_p99"] for r in rs], marker="x", ls=":", label="sm-gossip p99")
    ax1.plot(ns, [r["naive"]["rounds_mean"] for r in rs], marker="s", label="naive full-state")
    ax1.set_xscale("log", base=2)
    ax1.set_xlabel("nodes N")
    ax1.set_ylabel("rounds to every node")
    ax1.legend(fontsize=8)
    ax2.plot(ns, [r["off_ms_p99"] for r in rs], marker="o", label="eager off p99")
    ax2.plot(ns, [r["on_ms_p99"] for r in rs], marker="o", label="eager on p99")
    ax2.plot(ns, [r["naive"]["ms_p99"] for r in rs], marker="s", label="naive full-state p99")
    ax2.set_xscale("log", base=2)
    ax2.set_yscale("log")
    ax2.set_xlabel("nodes N")
    ax2.set_ylabel("ms to every node")
    ax2.legend(fontsize=8)
    ax3.plot(ns, [r["off_bytes_per_trial"] / 1e3 for r in rs], marker="o", label="eager off")
    ax3.plot(ns, [r["on_bytes_per_trial"] / 1e3 for r in rs], marker="o", label="eager on")
    ax3.plot(ns, [r["naive"]["bytes_per_trial"] / 1e3 for r in rs], marker="s",
             label="naive full-state")  # fmt: skip
    ax3.set_xscale("log", base=2)
    ax3.set_yscale("log")
    ax3.set_xlabel("nodes N")
    ax3.set_ylabel("KB on the wire per trial (whole mesh)")
    ax3.legend(fontsize=8)
    for ax in (ax1, ax2, ax3):
        ax.set_xticks(ns, [str(n) for n in ns])
        ax.tick_params(axis="x", which="minor", bottom=False)
    fig.suptitle("convergence, fanout 2", fontsize=10)
    fig.tight_layout()
    outdir.mkdir(parents=True, exist_ok=True)
    fig.savefig(outdir / "convergence.png", dpi=100)
    plt.close(fig)
    return ["convergence.png"]



# Hand-run comparisons, each with its date and command: history, not this run's figures
# (scripts/bench/report.py prints it after the notes).
HISTORY = [
    (
        "**Why N = 64 got slower, and what brought it back, hand-run 2026-12-07 00:40–01:55 "
        "UTC** (issue 18: no other headline worse; `run_size(64, trials, 2, tmp)` of this "
        "module, `nice -n 5`, a quiet machine). Eager push off, p50 / p99: 1929 / 2485 ms "
        "on 2026-11-27, 5570 and 7459 ms p99 on 2026-12-04 and -05, at the same rounds. The "
        "cause was TLS (pinned TLS 1.3 since 2026-11-27, after that run): py-spy over the "
        "trial rounds put 40 % of the event loop's samples in `SSLObject.do_handshake` and "
        "11 % more in creating client contexts; with `Node(tls=False)` a round took 0.44 s "
        "against 1.24 s with TLS. Every exchange made a new connection: a node picks the "
        "peer it synced least recently, so it comes back to a peer after ~N / 2 rounds, and "
        "aiohttp closed an idle client connection after 15 s. A full handshake costs 2.4 ms "
        "of CPU for both ends, a new pinned client context 1.0 ms (`load_cert_chain`). Two "
        "changes: the client keeps idle connections 45 s (0.75 of the server's idle "
        "timeout), and a new connection to a pinned peer resumes the last session that "
        "proved its key (1.0 ms; docs/protocol.md, \"TLS\"). 20 trials, main before / after, "
        "alternately: p50 4916 / 2136, 6420 / 2399 ms, p99 7158 / 7265, 7703 / 5382 ms; "
        "eager push on p50 619 / 352, 749 / 425 ms. The p99 that was left came from the first "
        "trials, 4.7-5.7 s against ~2 s after: they paid the mesh's first contacts (671, 351, "
        "264 and 52 new client contexts and full handshakes in trials 0-3, none after), "
        "hence the warm-up (notes). With it, 5 trials: 2620 / 3191 ms over TLS, 2536 / 3112 "
        "ms in plaintext (TLS now costs nothing measurable in the trials), and the tree of "
        "2026-11-27 (b6abd34, before TLS) 2210 / 2752 ms on the same machine today, with "
        "4.2 rounds against 4.4."
    ),
]

if __name__ == "__main__":
    from common import main

    with contextlib.suppress(KeyboardInterrupt):
        main(run, __doc__)
