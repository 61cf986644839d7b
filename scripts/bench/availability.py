"""Availability benchmark: kill the hub vs kill one gossip node mid-run; the fraction of
writes that reach every surviving node within 2·ceil(log2 N) rounds.

Both systems run the same schedule with the same period, ``INTERVAL`` seconds (a
"round"): N participants (16; --quick: 8), one write per round from a random surviving
participant, ``writes`` in all; after half of them one part is killed, and the writes
go on from the survivors. A write counts if every surviving participant holds it within
2·ceil(log2 N) rounds of being written.

- **gossip**: N ``Node``s in this process (own data dir, replica thread and aiohttp
  server on 127.0.0.1 each), keys mutually trusted, running their own anti-entropy loop
  (profile ``local`` with ``interval`` = one round, fanout 2, eager push off: the
  rounds alone carry the writes, the conservative case). Arrival is seen on each node's
  ``events()`` stream. The killed node is closed at once (its server stops answering;
  the others see connection refused and back it off).
- **gossip, hung node**: the same, but the killed node's port then keeps accepting
  connections and never answers (a stopped process, a hung host).
- **hub**: ``writehub.py`` in its own process (aiohttp + SQLite), N clients in this
  process; a client writes with a POST and polls ``GET /v1/writes?after=SEQ`` once per
  round. The hub process is killed with SIGKILL. After that no write can reach anyone:
  the fraction is 0 by construction, and the run shows it.

    python scripts/bench/availability.py [--quick] [--json FILE]
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import random
import signal
import socket
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from aiohttp import ClientError, ClientSession, ClientTimeout
from common import create_hosts, free_port, machine_line, mesh, process
from convergence import Arrivals

from gossip.config import Profile
from gossip.transport.http import split_address

NAME = "availability"
COMMAND = ".venv/bin/python scripts/bench/availability.py"
N, QUICK_N = 16, 8
WRITES, QUICK_WRITES = 40, 16
INTERVAL = 0.5  # seconds per round, for both systems
FANOUT = 2


def window_rounds(n: int) -> int:
    return 2 * math.ceil(math.log2(n))


def verdicts(
    written: list[tuple[str, float, bool]], seen: dict[str, dict[int, float]],
    survivors: set[int], window: float,
) -> dict[str, Any]:
    """Per phase (before / after the kill): writes, how many reached every survivor
    within ``window`` seconds, and the rounds each took (None: never)."""
    out: dict[str, Any] = {}
    for phase, after in (("before", False), ("after", True)):
        rows = [(rid, t) for rid, t, a in written if a == after]
        took: list[float | None] = []
        for rid, t in rows:
            arrived = seen.get(rid, {})
            if survivors <= set(arrived):
                took.append((max(arrived[i] for i in survivors) - t) / INTERVAL)
            else:
                took.append(None)
        ok = [x for x in took if x is not None and x <= window / INTERVAL]
        done = [x for x in took if x is not None]
        out[phase] = {
            "writes": len(rows), "reached": len(ok),
            "fraction": len(ok) / len(rows) if rows else 0.0,
            "rounds_mean": statistics.mean(done) if done else None,
            "rounds_max": max(done) if done else None,
            "took": took,  # rounds per write, in order; None: never reached them all
        }  # fmt: skip
    return out


def hang(address: str) -> socket.socket:
    """A listener on ``address`` that never accepts: connections complete (the kernel's
    backlog) and requests are sent, but no answer ever comes, as from a stopped process
    (SIGSTOP) or a host that hangs."""
    host, port = split_address(address)
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(1024)
    return sock


async def run_gossip(n: int, writes: int, tmp: Path, *, hung: bool = False) -> dict[str, Any]:
    """``hung``: the victim's port keeps accepting connections but never answers, instead
    of refusing them."""
    homes = [tmp / f"g{'h' if hung else ''}{i}" for i in range(n)]
    await asyncio.to_thread(create_hosts, homes)
    # The local profile's own request timeout (5 s): what a hung peer costs depends on it.
    profile = Profile.local().with_(interval=INTERVAL, fanout=FANOUT, eager_push=False)
    window = window_rounds(n) * INTERVAL
    rng = random.Random(n)
    victim = n // 2
    hole: socket.socket | None = None
    async with mesh(homes, FANOUT, profile=profile) as nodes:
        arrivals = Arrivals(nodes)
        alive = set(range(n))
        written: list[tuple[str, float, bool]] = []
        for w in range(writes):
            if w == writes // 2:
                address = nodes[victim].address
                await nodes[victim].aclose()
                alive.discard(victim)
                if hung:
                    hole = hang(address)
            writer = rng.choice(sorted(alive))
            started = time.perf_counter()
            rid = await nodes[writer].remember(f"availability write {w}", category="learning")
            arrivals.seen.setdefault(rid, {}).setdefault(writer, started)
            written.append((rid, started, w >= writes // 2))
            await asyncio.sleep(INTERVAL)
        await asyncio.sleep(window + INTERVAL)
        await arrivals.close()
    if hole is not None:
        hole.close()
    return verdicts(written, arrivals.seen, alive, window)


class HubClient:
    """One participant of the hub design: writes by POST, polls once per round."""

    def __init__(self, index: int, base: str, session: ClientSession) -> None:
        self.index = index
        self.base = base
        self.session = session
        self.after = 0
        self.failures = 0

    async def write(self, rid: str) -> bool:
        body = {"id": rid, "author": f"client-{self.index}", "text": f"write {rid}"}
        try:
            async with self.session.post(f"{self.base}/v1/writes", json=body) as resp:
                return resp.status == 200
        except (ClientError, TimeoutError):
            self.failures += 1
            return False

    async def poll(self, seen: dict[str, dict[int, float]]) -> None:
        try:
            async with self.session.get(f"{self.base}/v1/writes",
                                        params={"after": str(self.after)}) as resp:  # fmt: skip
                rows = (await resp.json())["writes"]
        except (ClientError, TimeoutError, ValueError):
            self.failures += 1
            return
        now = time.perf_counter()
        for row in rows:
            seen.setdefault(row["id"], {}).setdefault(self.index, now)
            self.after = max(self.after, int(row["seq"]))

    async def run(self, seen: dict[str, dict[int, float]], stop: asyncio.Event) -> None:
        rng = random.Random(self.index)
        while not stop.is_set():
            await self.poll(seen)
            delay = INTERVAL * (0.9 + 0.2 * rng.random())  # as the nodes jitter theirs
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), delay)


async def run_hub(n: int, writes: int, tmp: Path) -> dict[str, Any]:
    port = free_port()
    args = [sys.executable, str(Path(__file__).with_name("writehub.py")),
            "--db", str(tmp / "hub.sqlite"), "--port", str(port)]  # fmt: skip
    window = window_rounds(n) * INTERVAL
    rng = random.Random(n)
    seen: dict[str, dict[int, float]] = {}
    written: list[tuple[str, float, bool]] = []
    lost = 0
    with process(args, port) as hub:
        async with ClientSession(timeout=ClientTimeout(total=5)) as session:
            clients = [HubClient(i, f"http://127.0.0.1:{port}", session) for i in range(n)]
            stop = asyncio.Event()
            tasks = [asyncio.create_task(c.run(seen, stop)) for c in clients]
            try:
                for w in range(writes):
                    if w == writes // 2:
                        hub.send_signal(signal.SIGKILL)  # by pid: the process we started
                        hub.wait(10)
                    writer = clients[rng.randrange(n)]
                    rid = f"hub-write-{w}"
                    started = time.perf_counter()
                    seen.setdefault(rid, {}).setdefault(writer.index, started)
                    if not await writer.write(rid):
                        lost += 1
                    written.append((rid, started, w >= writes // 2))
                    await asyncio.sleep(INTERVAL)
                await asyncio.sleep(window + INTERVAL)
            finally:
                stop.set()
                await asyncio.gather(*tasks)
    out = verdicts(written, seen, set(range(n)), window)
    out["writes_refused"] = lost
    return out


def _phase(p: dict[str, Any]) -> str:
    return f"{p['reached']} / {p['writes']} ({p['fraction'] * 100:.0f} %)"


def _rounds(p: dict[str, Any]) -> str:
    if p["rounds_mean"] is None:
        return "never"
    return f"{p['rounds_mean']:.1f} / {p['rounds_max']:.1f}"


def run(quick: bool) -> dict[str, Any]:
    n = QUICK_N if quick else N
    writes = QUICK_WRITES if quick else WRITES
    window = window_rounds(n)
    print(f"availability: N = {n}, {writes} writes, one per {INTERVAL} s round, window "
          f"{window} rounds; {machine_line()}", flush=True)  # fmt: skip
    with tempfile.TemporaryDirectory() as tmp:
        gossip = asyncio.run(run_gossip(n, writes, Path(tmp)))
        print(f"  gossip, one node killed: before {_phase(gossip['before'])}, after "
              f"{_phase(gossip['after'])} reached all survivors within {window} rounds",
              flush=True)  # fmt: skip
        hung = asyncio.run(run_gossip(n, writes, Path(tmp), hung=True))
        print(f"  gossip, one node hung (accepts, never answers): before "
              f"{_phase(hung['before'])}, after {_phase(hung['after'])}", flush=True)  # fmt: skip
        hub = asyncio.run(run_hub(n, writes, Path(tmp)))
        print(f"  hub killed: before {_phase(hub['before'])}, after {_phase(hub['after'])}; "
              f"{hub['writes_refused']} write(s) refused", flush=True)  # fmt: skip
    g_after, h_after = gossip["after"]["fraction"], hub["after"]["fraction"]
    headline = (
        f"availability: N={n}, after a kill {g_after * 100:.0f} % of writes reach every "
        f"survivor within {window} rounds with gossip (one node killed), "
        f"{h_after * 100:.0f} % with a hub (hub killed); gossip with one node hung: "
        f"{hung['after']['fraction'] * 100:.0f} %"
    )
    return {
        "name": NAME,
        "title": "Availability: kill the hub vs kill one gossip node",
        "command": COMMAND + (" --quick" if quick else ""),
        "headline": headline,
        "goals": [
            {"goal": f"writes after one gossip node dies reach all survivors within "
                     f"2·ceil(log2 N) = {window} rounds",
             "value": _phase(gossip["after"]),
             "met": g_after == 1.0},
            {"goal": "hub: 0 after the hub dies, by construction (shown)",
             "value": _phase(hub["after"]),
             "met": h_after == 0.0},
        ],
        "tables": [
            {"caption": f"Writes reaching every surviving participant within {window} rounds "
                        f"(N = {n}, one round = {INTERVAL} s)",
             "columns": ["system", "killed", "before the kill", "after the kill",
                         "rounds to all survivors, mean / max (after)"],
             "rows": [["sm-gossip (eager push off)", "one node", _phase(gossip["before"]),
                       _phase(gossip["after"]), _rounds(gossip["after"])],
                     ["sm-gossip (eager push off)", "one node hangs (accepts, never answers)",
                      _phase(hung["before"]), _phase(hung["after"]), _rounds(hung["after"])],
                      ["central hub", "the hub (SIGKILL)", _phase(hub["before"]),
                       _phase(hub["after"]), _rounds(hub["after"])]]},
        ],
        "notes": [
            "Same schedule for both: one write per round from a random surviving "
            "participant, the kill after half of them. Gossip nodes run their own "
            "anti-entropy loops (profile `local`, interval = one round ±10 %, fanout 2, "
            "eager push off, so no push shortens it) in one process; the killed node is "
            "closed at once, and the others back it off (50 ms doubling to 1 s) as they "
            "would a dead host. Hub clients poll once per round (±10 %); the hub is a real "
            "process killed with SIGKILL, after which every write is refused "
            f"({hub['writes_refused']} here) and nothing reaches anyone until it is back.",
            "A second gossip run replaces the killed node by a hung one: its port keeps "
            "accepting connections but never answers (a stopped process, or a host that "
            "hangs rather than refusing). That is far worse for gossip than a dead node: an "
            "anti-entropy round waits for all its exchanges (`Node._round` awaits "
            "`_exchanges`), so a node whose round picked the hung peer stalls for the whole "
            "request timeout (5 s in `local`, 10 rounds here), and as the least recently "
            "synced peer the hung one is picked again as soon as its backoff (capped at 1 s "
            "in `local`, 60 s in `lan`) lets it. Not waiting for a slow exchange before the "
            "next round (`select` already skips a peer in flight), or a shorter timeout for "
            "the first byte, would confine a hung peer to its own slot.",
            "Rounds to all survivors are measured as time / interval from the write to the "
            "last survivor's arrival; before the kill the hub needs one poll (< 1 round), "
            "gossip about log2 N rounds.",
        ],
        "plots": [],
        "gossip": gossip,
        "hung": hung,
        "hub": hub,
        "n": n,
        "window": window,
    }


def plot(result: dict[str, Any], outdir: Path) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    window = result.get("window")
    if not window:
        return []
    fig, ax = plt.subplots(figsize=(7, 3.5))
    top = window + 2
    for key, label, marker, dx in (("gossip", "sm-gossip, one node killed", "o", -0.2),
                                   ("hung", "sm-gossip, one node hung", "^", 0.0),
                                   ("hub", "central hub, hub killed", "s", 0.2)):  # fmt: skip
        if key not in result:
            continue
        took = result[key]["before"]["took"] + result[key]["after"]["took"]
        xs = [i + dx for i in range(len(took))]
        ys = [top if t is None else t for t in took]
        ax.plot(xs, ys, marker=marker, ls="", label=label, alpha=0.8)
    kill = len(result["gossip"]["before"]["took"])
    ax.axvline(kill - 0.5, color="red", ls=":", label="kill")
    ax.axhline(window, color="k", ls="--", label=f"2·ceil(log2 N) = {window} rounds")
    ax.set_ylim(0, top + 0.5)
    ax.set_yticks([*range(0, window + 1, 2), top],
                  [*map(str, range(0, window + 1, 2)), "not in the run"])  # fmt: skip
    ax.set_xlabel("write number (one per round)")
    ax.set_ylabel("rounds to every survivor")
    ax.set_title(f"availability, N = {result['n']}", fontsize=10)
    ax.legend(fontsize=7, loc="center left")
    fig.tight_layout()
    outdir.mkdir(parents=True, exist_ok=True)
    fig.savefig(outdir / "availability.png", dpi=100)
    plt.close(fig)
    return ["availability.png"]


if __name__ == "__main__":
    from common import main

    main(run, __doc__)
