"""Shared helpers of the benchmarks in scripts/bench/: the machine, percentiles, RSS,
wire bytes, and a mesh of N mutually trusted Nodes over HTTP on loopback.

Every benchmark module imports from here so that all figures in docs/benchmarks.md
describe the machine and count bytes the same way. Nothing here imports matplotlib
(only a module's ``plot()`` does), so ``run()`` works with the ``test`` extra alone.

scripts/bench/ is a directory of scripts, not a package: a module run as
``python scripts/bench/<name>.py`` finds this file as ``common`` (its own directory is on
``sys.path``); the ``all`` driver and the smoke tests put scripts/bench/ on ``sys.path``
first. So modules write ``import common`` / ``from common import ...``.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import math
import os
import platform
import random
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from importlib import metadata
from pathlib import Path
from typing import Any

from crdt import Replica, records
from gossip.config import Profile
from gossip.node import Node
from gossip.transport.http import HttpTransport

ROOT = Path(__file__).resolve().parents[2]


# --- the machine -------------------------------------------------------------------


def cpu_model() -> str:
    """The CPU model name from /proc/cpuinfo (or the platform's guess elsewhere)."""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def _version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "-"


def machine() -> dict[str, object]:
    """What every figure is measured on: cores, CPU, memory, versions, date (UTC)."""
    mem_kib = 0
    with contextlib.suppress(OSError, ValueError, IndexError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem_kib = int(line.split()[1])
    return {
        "cores": os.cpu_count() or 1,
        "cpu": cpu_model(),
        "memory_gib": round(mem_kib / 2**20, 1),
        "os": f"{platform.system()} {platform.release()}",
        "python": sys.version.split()[0],
        "pycrdt": _version("pycrdt"),
        "cryptography": _version("cryptography"),
        "pynacl": _version("pynacl"),
        "aiohttp": _version("aiohttp"),
        "pycrdt-websocket": _version("pycrdt-websocket"),
        "scheduling": scheduling(),
        "date": today(),
    }


def scheduling() -> str:
    """How this process was scheduled: a run at raised priority (to shield it from other
    work on a shared machine) says so next to its figures."""
    policy = {getattr(os, "SCHED_FIFO", -1): "real-time FIFO",
              getattr(os, "SCHED_RR", -2): "real-time round-robin"}  # fmt: skip
    with contextlib.suppress(OSError, AttributeError):
        kind = os.sched_getscheduler(0)
        if kind in policy:
            return f"{policy[kind]} priority {os.sched_getparam(0).sched_priority}"
    nice = os.nice(0)
    return "normal" if nice == 0 else f"nice {nice}"


def today() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")


def machine_line(m: dict[str, object] | None = None) -> str:
    """One line for a figure's caption: cores, CPU model, Python, pycrdt, date."""
    m = m or machine()
    return (
        f"{m['cores']} cores, {m['cpu']}, Python {m['python']}, pycrdt {m['pycrdt']}, {m['date']}"
    )


# --- statistics --------------------------------------------------------------------


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (0..100) by nearest rank on the sorted values."""
    if not values:
        raise ValueError("percentile of no values")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


def p50(values: Sequence[float]) -> float:
    return percentile(values, 50)


def p99(values: Sequence[float]) -> float:
    return percentile(values, 99)


def power_fit(xs: Sequence[float], ys: Sequence[float]) -> tuple[float, float]:
    """Least squares on log-log: (exponent k, factor a) of y ≈ a·x^k. Needs two or more
    distinct positive x; non-positive y are left out."""
    pts = [(math.log(x), math.log(y)) for x, y in zip(xs, ys, strict=True) if x > 0 and y > 0]
    if len({p[0] for p in pts}) < 2:
        raise ValueError("a power law needs two or more distinct x")
    mx = sum(p[0] for p in pts) / len(pts)
    my = sum(p[1] for p in pts) / len(pts)
    sxx = sum((p[0] - mx) ** 2 for p in pts)
    k = sum((p[0] - mx) * (p[1] - my) for p in pts) / sxx
    return k, math.exp(my - k * mx)


def ratio(a: float, b: float) -> str:
    """``a`` over ``b`` as '1.23x' (or 'n/a' when ``b`` is zero)."""
    return f"{a / b:.2f}x" if b else "n/a"


# --- processes ---------------------------------------------------------------------


def rss(pid: int | None = None) -> dict[str, int]:
    """VmRSS and VmHWM (peak) of a process in bytes, from /proc/PID/status."""
    out = {"rss": 0, "hwm": 0}
    path = Path(f"/proc/{pid or os.getpid()}/status")
    for line in path.read_text().splitlines():
        if line.startswith("VmRSS:"):
            out["rss"] = int(line.split()[1]) * 1024
        elif line.startswith("VmHWM:"):
            out["hwm"] = int(line.split()[1]) * 1024
    return out


def cpu_seconds() -> float:
    """User + system CPU time of this process (all threads) so far, to the nanosecond
    (``os.times`` counts in clock ticks, too coarse for one round)."""
    return time.process_time()


# --- a mesh of nodes on loopback -----------------------------------------------------


def wire(nodes: Sequence[Node]) -> tuple[int, int]:
    """(requests, bytes) sent so far by every node's client side: HTTP/1.1 frames
    (request/status line, headers, body), both directions."""
    reqs = byts = 0
    for n in nodes:
        t = n.transport
        assert isinstance(t, HttpTransport)
        reqs += t.stats.requests
        byts += t.stats.sent + t.stats.received
    return reqs, byts


def create_hosts(homes: Sequence[Path]) -> list[str]:
    """Create a data dir (host key, replica) per home, each trusting all the others;
    returns their author keys in order."""
    ids = []
    for home in homes:
        with Replica.open(home) as r:
            ids.append(r.author)
    for home, me in zip(homes, ids, strict=True):
        with Replica.open(home) as r:
            for k in ids:
                if k != me:
                    r.trust(k, "bench")
    return ids


def bench_profile(fanout: int = 2) -> Profile:
    """Rounds only when driven by hand (``sync_now``), generous timeouts for a loaded box."""
    return Profile.local().with_(interval=3600.0, fanout=fanout, request_timeout=30.0)


async def sync_round(nodes: Sequence[Node], fanout: int) -> None:
    """Every node runs one push-pull round with ``fanout`` peers, all concurrently."""
    await asyncio.gather(*(x.sync_now(fanout) for x in nodes))


@contextlib.asynccontextmanager
async def mesh(
    homes: Sequence[Path],
    fanout: int = 2,
    *,
    profile: Profile | None = None,
    timeout: float = 120.0,
    warm: dict[str, float] | None = None,
) -> AsyncIterator[list[Node]]:
    """Start a Node per home (created by ``create_hosts``), each given the first as its
    only seed, and drive rounds until every node knows every other's key and all host
    announcements are everywhere: an in-sync mesh. With ``warm`` (a dict that gets the
    rounds and seconds it took), rounds go on until every node has started an exchange
    with every other: each pair's TLS context and session exist, as in a cluster that
    has been running for a while, so what is measured next is not first contacts."""
    profile = profile or bench_profile(fanout)
    n = len(homes)
    async with contextlib.AsyncExitStack() as stack:
        first = await stack.enter_async_context(Node(homes[0], profile=profile))
        nodes = [first]
        for h in homes[1:]:
            nodes.append(
                await stack.enter_async_context(Node(h, peers=[first.address], profile=profile))
            )
        deadline = time.monotonic() + timeout
        while not all(len([p for p in x.peers() if p.key]) == n - 1 for x in nodes):
            if time.monotonic() > deadline:
                raise RuntimeError(f"N={n}: the mesh did not form within {timeout:.0f} s")
            await sync_round(nodes, fanout)
        for _ in range(3):
            await sync_round(nodes, fanout)
        if warm is not None:
            started, rounds = time.perf_counter(), 0
            while not all(p.last_success for x in nodes for p in x.peers() if p.key):
                if time.monotonic() > deadline + timeout:
                    raise RuntimeError(f"N={n}: pairs still unconnected after {rounds} rounds")
                await sync_round(nodes, fanout)
                rounds += 1
            warm.update(rounds=rounds, seconds=time.perf_counter() - started)
        yield nodes


# --- the CLI every module shares -----------------------------------------------------


def main(module_run: object, doc: str | None) -> None:
    """``python scripts/bench/<name>.py [--quick] [--json FILE]``: run, print the headline
    last, optionally write the result as JSON."""
    import argparse
    import json

    ap = argparse.ArgumentParser(description=(doc or "").splitlines()[0] if doc else None)
    ap.add_argument("--quick", action="store_true", help="small sizes, few trials")
    ap.add_argument("--json", type=Path, help="write the result dict here")
    args = ap.parse_args()
    result = module_run(args.quick)  # type: ignore[operator]
    if args.json:
        args.json.write_text(json.dumps({"machine": machine(), "result": result}, indent=1))
    print(result["headline"])


# --- stores of many memories, built fast ---------------------------------------------

_VOCABULARY = (
    "provider timeout retry backoff fallback model outage quota token latency cache "
    "deploy rollback migration schema index vacuum lock deadlock replica snapshot "
    "certificate expiry dns resolver proxy gateway webhook queue worker cron batch "
    "embedding vector prompt context window tool agent planner parser compiler linter "
    "python rust golang kernel driver firmware disk memory swap cpu thread async socket"
)
WORDS = _VOCABULARY.split()


_SYLLABLES = [c + v for c in "bdfgklmnprstvz" for v in "aeiou"]
# The long tail of a team's memories (names of services, error codes, hosts): 2000
# made-up three-syllable words, each in ~0.15 % of the memories.
RARE_WORDS = [
    _SYLLABLES[k % 70] + _SYLLABLES[k // 70 % 70] + _SYLLABLES[k // 4900 % 70] for k in range(2000)
]


def memory_text(i: int, rng: random.Random) -> str:
    """A memory of ~300 bytes: nine common words (each in ~15 % of the memories), three
    rare ones (each in ~0.15 %) and boilerplate around a unique number."""
    common = " ".join(rng.choice(WORDS) for _ in range(9))
    rare = " ".join(rng.choice(RARE_WORDS) for _ in range(3))
    return f"lesson {i}: {common} {rare}. " + f"Observed on host-{i % 97}; keep this in mind. " * 4


def query_words(rng: random.Random, k: int = 2, *, broad: bool = False) -> str:
    """A text query of ``k`` words: rare ones (a specific question, a few hits per
    thousand memories), or with ``broad`` common ones (a vague question matching a third
    of all memories, every one of which FTS5 must rank)."""
    return " ".join(rng.sample(WORDS if broad else RARE_WORDS, k))


def build_store(home: Path, n: int, *, seed: int = 0, batch: int = 1000) -> int:
    """Write ``n`` memories of this home's own key into its replica, ``batch`` per signed
    update (far faster than one write each through a daemon); ts one per 61 s back from
    now, so the per-author quota (60 an hour) hides none. Returns the payload: the sum
    of body + signature bytes of the records written."""
    rng = random.Random(seed)
    payload = 0
    with Replica.open(home) as r:
        now = r.now_ms()
        for first in range(0, n, batch):
            recs = [
                records.memory(
                    r.identity,
                    memory_text(i, rng),
                    category=("learning", "anti-pattern", "fact")[i % 3],
                    subject=f"provider:{i % 17}",
                    tags=[f"t{i % 11}"],
                    ts=now - (n - i) * 61_000,
                )
                for i in range(first, min(n, first + batch))
            ]
            payload += sum(len(x.body) + len(x.sig) for x in recs)
            r.put(*recs)
    return payload


# --- real daemons and servers in their own processes -----------------------------------


def compile_packages() -> None:
    """Bytecode for ``gossip`` and ``crdt`` where they are imported from, as an installed
    package has (pip compiles it): a benchmark of whole `gossip` processes must not
    measure the compiling of the sources when PYTHONDONTWRITEBYTECODE is set."""
    import compileall

    import crdt
    import gossip

    for package in (gossip, crdt):
        compileall.compile_dir(str(Path(package.__file__).parent), quiet=1)



def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


@contextlib.contextmanager
def daemon(home: Path, timeout: float = 300.0,
           agents: str = "") -> Iterator[subprocess.Popen[bytes]]:  # fmt: skip
    """A real `gossip serve` on ``home`` (loopback, no discovery, no peers), once its
    local API answers on ``api.sock``; stopped with SIGTERM (then SIGKILL) by pid.
    ``agents``: the agents' listener address (none by default)."""
    from gossip.client import ApiConnection

    args = [sys.executable, "-m", "gossip.cli", "serve", "--home", str(home),
            "--listen", f"127.0.0.1:{free_port()}", "--profile", "local", "--no-mdns",
            "--agents-listen", agents]  # fmt: skip
    log_path = home.parent / f"{home.name}.daemon.log"
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT)
    try:
        api = ApiConnection(home, timeout=5)
        deadline = time.monotonic() + timeout
        while not api.alive(timeout=1.0):
            if proc.poll() is not None:
                raise RuntimeError(f"the daemon exited: {log_path.read_text()[-2000:]}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"the daemon of {home} did not answer in {timeout:.0f} s")
            time.sleep(0.05)
        yield proc
    finally:
        _stop(proc)


def vectors_held(home: Path) -> int:
    """Vectors ``embeddings.sqlite`` in ``home`` holds, read with a connection of our own
    (read-only, WAL), so the daemon is never asked."""
    import sqlite3

    try:
        db = sqlite3.connect(f"file:{Path(home) / 'embeddings.sqlite'}?mode=ro", uri=True)
    except sqlite3.Error:
        return 0
    try:
        return db.execute("SELECT count(*) FROM vectors").fetchone()[0]
    except sqlite3.Error:  # not created yet
        return 0
    finally:
        db.close()


def wait_vectors(home: Path, n: int, timeout: float = 900.0) -> float:
    """Wait until the daemon of ``home`` holds a vector for each of its ``n`` memories (it
    builds them in the background after a start, recall answering by words meanwhile),
    so that what is measured next is a quiet daemon's hybrid recall. Returns the seconds
    waited. Reads the vectors' file, never `/v1/status`: a status once decoded the whole
    document (~7 s at 100k), and polled every 0.2 s it starved the very embedding it
    waited for (230 s for 100k vectors in the agents' benchmark, 70 s unpolled); it now
    counts from the views' tally, but the file asks the daemon nothing at all."""
    start = time.monotonic()
    while vectors_held(home) < n:
        if time.monotonic() - start > timeout:
            raise RuntimeError(f"the vectors of {home} were not built in {timeout:.0f} s")
        time.sleep(0.2)
    return time.monotonic() - start


@contextlib.contextmanager
def process(args: list[str], port: int, timeout: float = 60.0) -> Iterator[subprocess.Popen[bytes]]:
    """A server process that listens on 127.0.0.1:``port``, once it accepts connections;
    stopped by pid."""
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + timeout
        while True:
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", port)) == 0:
                    break
            if proc.poll() is not None:
                err = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
                raise RuntimeError(f"{args[1:3]} exited: {err[-2000:]}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"{args[1:3]} did not listen within {timeout:.0f} s")
            time.sleep(0.05)
        yield proc
    finally:
        _stop(proc)


# --- profiles ----------------------------------------------------------------------------


def profile(fn: Callable[[], object], top: int = 6) -> str:
    """Run ``fn`` under pyinstrument (the bench extra) and name where the time went: the
    heaviest frames by their own time, as one sentence. Empty without pyinstrument."""
    try:
        from pyinstrument import Profiler
    except ImportError:
        return ""
    profiler = Profiler(interval=0.0005)
    profiler.start()
    fn()
    session = profiler.stop()
    own: dict[str, float] = {}

    def walk(frame: Any, parent: str) -> None:
        if frame.function.startswith("["):  # pyinstrument's [self]/[await]: the parent's own
            name = parent
        else:
            name = f"{frame.function} ({Path(frame.file_path or '?').name})"
        own[name] = own.get(name, 0.0) + frame.total_self_time
        for child in frame.children:
            walk(child, name)

    root = session.root_frame()
    if root is None:
        return ""
    walk(root, "?")
    total = sum(own.values()) or 1.0
    heavy = sorted(own.items(), key=lambda kv: -kv[1])[:top]
    parts = [f"{name} {100 * t / total:.0f} %" for name, t in heavy]
    return "pyinstrument, own time: " + "; ".join(parts)


def plain_log_axes(ax: Any) -> None:
    """Log axes of a plot labelled 1,000 and 0.5 rather than 10^3 and 5x10^-1."""
    from matplotlib.ticker import FuncFormatter

    fmt = FuncFormatter(lambda v, _: f"{v:,.0f}" if v >= 1 else f"{v:g}")
    for axis in (ax.xaxis, ax.yaxis):
        if axis.get_scale() == "log":
            axis.set_major_formatter(fmt)
            axis.set_minor_formatter(FuncFormatter(lambda v, _: ""))
