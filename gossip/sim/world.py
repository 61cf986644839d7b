"""One simulated run: build the hosts from the seed, play the schedule, heal, wait for
quiescence, check, clean up. ``run(seed)`` is a pure function of the seed, the config
and the code; the ``Result``'s trace hash says so.

Order of a run (every random draw from the one ``random.Random(seed)``, in this order):
the number of nodes, their keys and clock skews, the replication tuning, the network
baseline, the fault schedule; then, while running, every delay, drop, duplicate, peer
choice, backoff jitter, nonce and record field, in event order.

``Config.sabotage`` breaks the system on purpose, to show that the checker notices:
``never-heal`` cuts node n0 off from the start and never heals it (a divergence);
``lose-disk`` has n0, cut off, acknowledge one more write and then lose its disk before
the heal (a lost write).
"""

from __future__ import annotations

import random
import shutil
import tempfile
import time
import traceback
from collections import Counter
from dataclasses import dataclass, field, fields
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from crdt import Identity, ReplicaLimits

from .. import protocol
from . import faults
from .check import Acked, check
from .faults import Step
from .host import Host, Tuning
from .loop import EventBudgetExceeded, EventLoop
from .network import Network
from .trace import Trace

SNAPSHOT_SMALL = 4096  # bytes of updates between two snapshots, on odd seeds
START_MS = 1_790_000_000_000  # virtual wall-clock time at the start of every run
SABOTAGES = ("never-heal", "lose-disk")
RATES = ("drops", "duplicates", "spikes")  # fault episodes that raise a rate for a while


@dataclass(frozen=True)
class Config:
    """The shape of the runs; the seed draws everything else."""

    nodes: tuple[int, int] = (3, 5)  # inclusive range of the number of nodes
    duration_ms: int = 15_000  # the fault phase; then everything heals
    writes: tuple[int, int] = (5, 30)
    episodes: tuple[int, int] = (1, 8)  # fault episodes over the fault phase
    settle_ms: int = 120_000  # bound on the time from heal to quiescence
    max_events: int = 1_000_000
    sabotage: str = ""  # "", or one of SABOTAGES

    def __post_init__(self) -> None:
        lo, hi = self.nodes
        if not 3 <= lo <= hi <= 9:
            raise ValueError("nodes: a range within 3..9")
        if self.sabotage and self.sabotage not in SABOTAGES:
            raise ValueError(f"sabotage: one of {', '.join(SABOTAGES)}")
        if self.writes[0] < 1 or self.writes[0] > self.writes[1]:
            raise ValueError("writes: a range of at least 1")

    def options(self) -> list[str]:
        """The ``scripts/simulate`` options that reproduce this config."""
        out = []
        default = Config()
        for f in fields(self):
            value = getattr(self, f.name)
            if value == getattr(default, f.name):
                continue
            text = f"{value[0]}-{value[1]}" if isinstance(value, tuple) else str(value)
            out += [f"--{f.name.replace('_', '-')}", text]
        return out


@dataclass
class Result:
    seed: int
    config: Config
    failures: list[str]
    lost: int
    unexpected: int
    nodes: int
    writes: int  # acknowledged
    events: int
    trace_hash: str
    settled_ms: int | None  # from heal to quiescence; None if it never came
    wall_s: float
    crashes: int = 0
    stats: dict[str, int] = field(default_factory=dict)
    tail: list[str] = field(default_factory=list)  # last trace lines, on failure

    @property
    def ok(self) -> bool:
        return not self.failures

    def replay(self) -> str:
        return " ".join(["scripts/simulate", "--seed", str(self.seed), *self.config.options()])


class World:
    def __init__(self, seed: int, config: Config, root: Path, *, verbose: bool = False,
                 schedule: list[Step] | None = None) -> None:  # fmt: skip
        self.seed = seed
        self.config = config
        self.rng = rng = random.Random(seed)
        self.trace = Trace(verbose=verbose)
        self.loop = EventLoop(start_ms=START_MS, max_events=config.max_events)
        self.network = Network(self.loop, rng, self.trace)
        n = rng.randint(*config.nodes)
        self.names = [f"n{i}" for i in range(n)]
        self.tuning = Tuning(
            fanout=rng.choice((1, 2, 2, 3)),
            eager_push=rng.random() < 0.8,
            max_message_bytes=rng.choice((2048, 16 * 1024, protocol.DEFAULT_MESSAGE_BYTES)),
            max_pending_per_author=rng.choice((4, 512)),
        )
        # Odd seeds snapshot the document every few KiB, so that restarts load a
        # snapshot plus a tail. Not drawn from ``rng``: snapshots must change nothing
        # observable, so a seed's trace is the same with and without them
        # (tests/test_simulation.py holds that).
        snapshot = SNAPSHOT_SMALL if seed % 2 else ReplicaLimits().snapshot_min_bytes
        skew_max = self.tuning.window_ms // 3
        self.hosts: dict[str, Host] = {}
        for name in self.names:
            identity = Identity(Ed25519PrivateKey.from_private_bytes(rng.randbytes(32)))
            self.hosts[name] = Host(name, identity, root, loop=self.loop, network=self.network,
                                    rng=rng, trace=self.trace, tuning=self.tuning,
                                    skew_ms=rng.randint(-skew_max, skew_max),
                                    snapshot_min_bytes=snapshot)  # fmt: skip
        self.baseline = faults.baseline(rng)
        self.schedule = schedule if schedule is not None else faults.schedule(
            rng, self.names, duration_ms=config.duration_ms, writes=rng.randint(*config.writes),
            episodes=rng.randint(*config.episodes), window_ms=self.tuning.window_ms,
        )  # fmt: skip
        self.acked = Acked()
        self.healed_at: int | None = None
        self.settled_at: int | None = None
        self._rates: dict[str, Counter[float]] = {k: Counter() for k in RATES}

    # -- the run ----------------------------------------------------------------------

    def run(self) -> None:
        keys = {n: h.key for n, h in self.hosts.items()}
        for h in self.hosts.values():
            h.start(keys)
        self._set_rates()
        self.trace.add(self.loop.now, "world", self.seed, len(self.names), self.tuning,
                       self.baseline)  # fmt: skip
        if self.config.sabotage == "never-heal":
            self._isolate("n0")
        for step in self.schedule:
            self.loop.call_at(START_MS + step.at, lambda s=step: self._do(s))
        heal_at = START_MS + self.config.duration_ms
        self.loop.call_at(heal_at, self._heal)
        self.loop.run(until=heal_at)
        self.loop.call_later(0, self._probe)
        settled = lambda: self.settled_at is not None  # noqa: E731
        self.loop.run(until=heal_at + self.config.settle_ms, stop=settled)
        self.trace.add(self.loop.now, "end", self.settled_at is not None,
                       self.network.stats["delivered"])  # fmt: skip

    def _do(self, step: Step) -> None:
        self.trace.add(self.loop.now, "step", step)
        a, args = step.action, step.args
        net = self.network
        if a == "write":
            name, kind, n = args
            rec = self.hosts[str(name)].write(str(kind), int(n))  # type: ignore[call-overload]
            if rec is not None:
                self.acked.add(rec)
        elif a.endswith("-on") or a.endswith("-off"):
            kind, _, what = a.rpartition("-")
            self._rates[kind][float(args[0])] += 1 if what == "on" else -1  # type: ignore[arg-type]
            self._set_rates()
        elif a == "cut":
            net.cut(list(args))  # type: ignore[arg-type]
        elif a == "uncut":
            net.uncut(list(args))  # type: ignore[arg-type]
        elif a == "clog":
            net.clog(str(args[0]))
        elif a == "unclog":
            net.unclog(str(args[0]))
        elif a == "crash":
            self.hosts[str(args[0])].crash()
        elif a == "restart":
            self.hosts[str(args[0])].restart()
        elif a == "skew":
            self.hosts[str(args[0])].skew_ms = int(args[1])  # type: ignore[call-overload]
        else:
            raise ValueError(f"unknown step {a!r}")

    def _set_rates(self) -> None:
        f, b = self.network.faults, self.baseline

        def rate(kind: str, base: float) -> float:
            return max([base, *(r for r, c in self._rates[kind].items() if c > 0)])

        f.drop = rate("drops", b.drop)
        f.duplicate = rate("duplicates", b.duplicate)
        f.spike = rate("spikes", b.spike)
        f.delay_ms = b.delay_ms

    def _isolate(self, name: str) -> list[tuple[str, str]]:
        links = [(name, b) for b in self.names if b != name]
        links += [(b, a) for a, b in links]
        self.network.cut(links)
        return links

    def _heal(self) -> None:
        """The end of the fault phase: every link, clog and host restored."""
        if self.config.sabotage == "lose-disk":
            n0 = self.hosts["n0"]
            self._isolate("n0")
            n0.restart()
            rec = n0.write("memory", len(self.schedule))
            if rec is not None:
                self.acked.add(rec)
            n0.crash()
            n0.restart(lose_disk=True)
        self.network.heal()
        self._rates = {k: Counter() for k in self._rates}
        self._set_rates()
        self.network.faults.drop = self.network.faults.duplicate = self.network.faults.spike = 0.0
        if self.config.sabotage == "never-heal":
            self._isolate("n0")
        for h in self.hosts.values():
            h.restart()
        self.healed_at = self.loop.now
        self.trace.add(self.loop.now, "heal")

    def _probe(self) -> None:
        """Quiescent: every host up, one state vector everywhere, nothing buffered."""
        svs = set()
        for h in self.hosts.values():
            if h.replica is None or h.replica.pending_count:
                break
            svs.add(protocol.sv_digest(h.replica.state_vector()))
        else:
            if len(svs) == 1:
                self.settled_at = self.loop.now
                return
        self.loop.call_later(200, self._probe)

    # -- the verdict ------------------------------------------------------------------

    def verdict(self) -> tuple[list[str], int, int]:
        failures = []
        if self.settled_at is None:
            failures.append(f"no quiescence within {self.config.settle_ms} ms of the heal")
        replicas = {n: h.replica for n, h in self.hosts.items() if h.replica is not None}
        rejected = sum(h.rejected for h in self.hosts.values())
        live = {n: h.views for n, h in self.hosts.items() if h.views is not None}
        for h in self.hosts.values():
            h.views_at = self.loop.now
        v = check(replicas, self.acked, now_ms=self.loop.now, rejected=rejected,  # type: ignore[arg-type]
                  live_views=live)  # fmt: skip
        return failures + v.failures, v.lost, v.unexpected

    def close(self) -> None:
        for h in self.hosts.values():
            h.close()


def run(
    seed: int,
    config: Config | None = None,
    *,
    verbose: bool = False,
    schedule: list[Step] | None = None,
    tmp: str | None = None,
) -> Result:
    """Run one seed; never raises for what the system under test does (a crash of the
    code under test is a failure in the result, with its traceback)."""
    config = config or Config()
    started = time.perf_counter()
    root = Path(tempfile.mkdtemp(prefix=f"sm-sim-{seed}-", dir=tmp))
    world: World | None = None
    failures: list[str] = []
    lost = unexpected = 0
    try:
        world = World(seed, config, root, verbose=verbose, schedule=schedule)
        try:
            world.run()
        except EventBudgetExceeded as e:
            failures.append(str(e))
        failures_v, lost, unexpected = world.verdict()
        failures += failures_v
    except Exception:
        failures.append("the run raised:\n" + traceback.format_exc())
    finally:
        if world is not None:
            world.close()
        shutil.rmtree(root, ignore_errors=True)
    assert world is not None or failures
    trace = world.trace if world is not None else Trace()
    settled = None
    if world is not None and world.settled_at is not None and world.healed_at is not None:
        settled = world.settled_at - world.healed_at
    result = Result(
        seed=seed,
        config=config,
        failures=failures,
        lost=lost,
        unexpected=unexpected,
        nodes=len(world.names) if world else 0,
        writes=len(world.acked.written) if world else 0,
        events=world.loop.events if world else 0,
        trace_hash=trace.digest,
        settled_ms=settled,
        wall_s=time.perf_counter() - started,
        crashes=sum(h.crashes for h in world.hosts.values()) if world else 0,
        stats=dict(sorted(world.network.stats.items())) if world else {},
        tail=list(trace.lines) if failures or verbose else [],
    )
    return result
