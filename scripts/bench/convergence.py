"""Convergence benchmark: how fast one new record reaches every node, and what it costs.

N nodes (default 8, 16, 32, 64) run in this process, each with its own data dir, replica
thread and aiohttp server on 127.0.0.1, all keys mutually trusted, one seed peer each
(the rest found through host announcements). Per N and mode, ``--trials`` times: one
node (a different one each trial) writes a memory, then

- **eager push off**: rounds are driven by hand, every node running one push-pull round
  with ``fanout`` peers (``Node.sync_now(fanout)``, all nodes concurrently), until every
  node has it: rounds and wall time;
- **eager push on**: the write is pushed to ``fanout`` peers, who pass it on; once no
  push has arrived for 0.3 s, the share of nodes it reached and when the last push
  arrived; then rounds driven as above until all have it.

Baseline, in the same run: the ideal synchronous push-pull epidemic with the same
fanout (every node contacts ``fanout`` uniformly random others per round; both sides of
a contact end with the union), simulated in pure Python, 5000 trials.

Also measured on the wire (HTTP/1.1 framing, headers included): an idle exchange
between in-sync peers (requests and bytes) and the bytes a new record costs the mesh.
Arrival is observed through each node's ``events()`` stream, not by polling.

Usage: python scripts/bench/convergence.py [--sizes 8,16] [--trials 20] [--fanout 2]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

from crdt import Replica
from gossip.config import Profile
from gossip.events import RecordAdded
from gossip.http import HttpTransport
from gossip.node import Node


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


def p99(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(0.99 * (len(ordered) - 1)))]


def wire(nodes: list[Node]) -> tuple[int, int]:
    """(requests, bytes) sent so far by every node's client side."""
    reqs = byts = 0
    for n in nodes:
        t = n.transport
        assert isinstance(t, HttpTransport)
        reqs += t.stats.requests
        byts += t.stats.sent + t.stats.received
    return reqs, byts


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

    async def settle(self, rid: str, quiet: float = 0.3) -> None:
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


def create_hosts(homes: list[Path]) -> None:
    ids = []
    for home in homes:
        with Replica.open(home) as r:
            ids.append(r.author)
    for home, me in zip(homes, ids, strict=True):
        with Replica.open(home) as r:
            for k in ids:
                if k != me:
                    r.trust(k, "bench")


async def run_size(n: int, trials: int, fanout: int, tmp: Path) -> dict[str, object]:
    homes = [tmp / f"n{n}-{i}" for i in range(n)]
    await asyncio.to_thread(create_hosts, homes)
    profile = Profile.local().with_(interval=3600.0, fanout=fanout, request_timeout=30.0)
    out: dict[str, object] = {"n": n}
    async with contextlib.AsyncExitStack() as stack:
        first = await stack.enter_async_context(Node(homes[0], profile=profile))
        nodes = [first]
        for h in homes[1:]:
            nodes.append(
                await stack.enter_async_context(Node(h, peers=[first.address], profile=profile))
            )
        deadline = time.monotonic() + 120
        while not all(len([p for p in x.peers() if p.key]) == n - 1 for x in nodes):
            if time.monotonic() > deadline:
                raise SystemExit(f"N={n}: the mesh did not form within 120 s")
            await asyncio.gather(*(x.sync_now(fanout) for x in nodes))
        for _ in range(3):  # every host announcement everywhere: an in-sync mesh
            await asyncio.gather(*(x.sync_now(fanout) for x in nodes))
        arrivals = Arrivals(nodes)
        await asyncio.sleep(0)

        async def one_round() -> None:
            await asyncio.gather(*(x.sync_now(fanout) for x in nodes))

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
            for t in range(trials):
                writer = nodes[(t * 7) % n]
                await one_round()  # start in sync
                _, before = wire(nodes)
                started = time.perf_counter()
                rid = await writer.remember(f"trial {mode} {t} of N={n}", category="learning")
                arrivals.seen.setdefault(rid, {}).setdefault(nodes.index(writer), started)
                if eager:
                    await arrivals.settle(rid)
                    coverage.append(arrivals.count(rid) / n)
                    push_times.append(arrivals.last(rid) - started)
                k = 0
                while arrivals.count(rid) < n:
                    await one_round()
                    k += 1
                    if k > 50:
                        raise SystemExit(f"N={n}: no convergence after 50 rounds")
                times.append(arrivals.last(rid) - started)  # the last node's arrival
                rounds.append(k)
                _, after = wire(nodes)
                # Bytes this record cost: the trial's traffic minus idle rounds' share.
                record_bytes.append(int(after - before - k * exchanges * out["idle_bytes"]))
            out[f"{mode}_rounds_mean"] = statistics.mean(rounds)
            out[f"{mode}_rounds_p99"] = p99(rounds)
            out[f"{mode}_time_mean"] = statistics.mean(times)
            out[f"{mode}_bytes_per_record"] = statistics.mean(record_bytes)
            if eager:
                out["on_push_coverage"] = statistics.mean(coverage)
                out["on_push_time"] = statistics.mean(push_times)
        await arrivals.close()
    rng = random.Random(n)
    sim = [ideal_rounds(n, fanout, rng) for _ in range(5000)]
    out["ideal_mean"] = statistics.mean(sim)
    out["ideal_p99"] = p99([float(s) for s in sim])
    return out


async def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="8,16,32,64")
    ap.add_argument("--trials", type=int, default=20)
    ap.add_argument("--fanout", type=int, default=2)
    args = ap.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    py = sys.version.split()[0]
    print(f"fanout {args.fanout}, {args.trials} trials per N and mode; python {py}")
    header = (
        "   N | ideal mean/p99 | off: rounds mean/p99  time  B/record | "
        "on: push cover   push time  then rounds mean/p99  B/record | idle req  B/exchange"
    )
    print(header)
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for n in sizes:
            r = await run_size(n, args.trials, args.fanout, Path(tmp))
            results.append(r)
            print(
                f"{n:4} | {r['ideal_mean']:5.2f} / {r['ideal_p99']:2.0f}    | "
                f"{r['off_rounds_mean']:5.2f} / {r['off_rounds_p99']:2.0f}  "
                f"{r['off_time_mean'] * 1000:6.0f} ms {r['off_bytes_per_record']:8.0f} | "
                f"{r['on_push_coverage'] * 100:5.1f} %  {r['on_push_time'] * 1000:6.0f} ms  "
                f"{r['on_rounds_mean']:5.2f} / {r['on_rounds_p99']:2.0f}  "
                f"{r['on_bytes_per_record']:8.0f} | "
                f"{r['idle_requests']:4.2f}  {r['idle_bytes']:8.0f}",
                flush=True,
            )
    last = results[-1]
    ratio = float(last["off_rounds_mean"]) / float(last["ideal_mean"])  # type: ignore[arg-type]
    print(
        f"convergence: N={last['n']} eager off: mean {last['off_rounds_mean']:.2f} rounds = "
        f"{ratio:.2f}x ideal, p99 {last['off_rounds_p99']:.0f}; idle exchange "
        f"{last['idle_requests']:.2f} requests, {last['idle_bytes']:.0f} B"
    )


if __name__ == "__main__":
    asyncio.run(main())
