"""The deterministic simulator (gossip/sim, docs/reliability.md): 200 seeds of faults
converge with nothing acknowledged lost; a seed replays exactly, in this process and in
another; and the checker is shown to catch what it claims to catch — a network that
never heals, a write lost with its disk — so that a green run means something."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from gossip.sim import Config, Step, faults, run, run_seeds

ROOT = Path(__file__).resolve().parents[1]
CI_SEEDS = range(1, 201)
SHM = "/dev/shm" if os.access("/dev/shm", os.W_OK) else None  # no fsync cost; same files


@pytest.mark.slow
def test_200_seeds_converge_and_lose_nothing() -> None:
    """In as many processes as there are cores (at most 4): the seeds are independent."""
    failed, stats, crashes, writes, settled = [], Counter(), 0, 0, []
    jobs = min(4, os.cpu_count() or 1)
    for r in run_seeds(CI_SEEDS, Config(), tmp=SHM, jobs=jobs):
        seed = r.seed
        if not r.ok:
            failed.append(f"seed {seed}: {r.failures[:2]}\n  replay: {r.replay()}")
        stats.update(r.stats)
        crashes += r.crashes
        writes += r.writes
        settled.append(r.settled_ms)
        assert r.lost == 0 and r.unexpected == 0, r.replay()
    assert not failed, "\n".join(failed)
    # The faults really happened (a quiet network would prove nothing).
    for what in ("dropped", "duplicated", "cut", "held", "lost"):
        assert stats[what] > 100, (what, stats)
    assert crashes > 50 and writes > 2000
    assert sum(1 for s in settled if s and s > 0) > 100  # the heal had work to do


def test_a_seed_replays_exactly_and_seeds_differ() -> None:
    a, b, c = run(7, tmp=SHM), run(7, tmp=SHM), run(8, tmp=SHM)
    assert a.ok and b.ok and c.ok
    assert a.trace_hash == b.trace_hash
    same = (a.events, a.stats, a.writes, a.settled_ms)
    assert same == (b.events, b.stats, b.writes, b.settled_ms)
    assert c.trace_hash != a.trace_hash


def test_a_seed_replays_in_another_process_whatever_its_hash_seed() -> None:
    """The replay command printed for a failure must reproduce the run elsewhere: string
    hashing (set order) differs between processes, and must not matter."""
    here = run(11, tmp=SHM)
    env = {**os.environ, "PYTHONHASHSEED": "12345"}
    out = subprocess.run([sys.executable, "-m", "gossip.sim", "--seed", "11"], cwd=ROOT,
                         env=env, capture_output=True, text=True, timeout=120)  # fmt: skip
    assert out.returncode == 0, out.stdout + out.stderr
    assert f"trace {here.trace_hash}" in out.stdout


def test_the_checker_catches_a_partition_that_never_heals() -> None:
    r = run(3, Config(sabotage="never-heal"), tmp=SHM)
    assert not r.ok
    assert any("no quiescence" in f for f in r.failures)
    assert any("state vectors differ" in f for f in r.failures)
    assert any("record id sets differ" in f for f in r.failures)
    assert r.lost > 0 and r.unexpected == 0
    assert r.replay() == "scripts/simulate --seed 3 --sabotage never-heal"


def test_the_checker_catches_a_write_lost_with_its_disk() -> None:
    """n0, cut off, acknowledges a write, then loses its disk: the mesh converges (so only
    set-full can tell), and set-full counts exactly that write as lost."""
    r = run(4, Config(sabotage="lose-disk"), tmp=SHM)
    assert r.lost == 1, r.failures
    assert any("lacks 1 acknowledged memories" in f for f in r.failures)
    assert not any("differ" in f for f in r.failures), r.failures


def test_a_failing_seed_prints_the_command_that_replays_it() -> None:
    cmd = [str(ROOT / "scripts" / "simulate"), "--seeds", "2", "--first", "5",
           "--sabotage", "never-heal"]  # fmt: skip
    out = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert out.returncode == 1, out.stdout + out.stderr
    assert "divergences/failures: 2" in out.stdout
    replay = re.search(r"replay: (scripts/simulate --seed 6 --sabotage never-heal)\n", out.stdout)
    assert replay is not None, out.stdout
    printed = re.findall(r"trace ([0-9a-f]{64})", out.stdout)
    again = subprocess.run(replay.group(1).split(), cwd=ROOT, capture_output=True, text=True,
                           timeout=300)  # fmt: skip
    assert again.returncode == 1
    assert f"trace {printed[-1]}" in again.stdout  # the same run, event for event


def test_a_hand_written_schedule_crash_while_cut_off_loses_nothing() -> None:
    """Writes acknowledged by a node cut off from all others, which then crashes and
    restarts from its disk before the heal, reach every replica."""
    links = [(a, b) for a in ("n0",) for b in ("n1", "n2")]
    links += [(b, a) for a, b in links]
    schedule = [
        Step(100, "cut", tuple(links)),
        *(Step(200 + 10 * k, "write", ("n0", kind, k))
          for k, kind in enumerate(("memory", "breaker", "benchmark", "memory"))),
        Step(1000, "crash", ("n0",)),
        Step(1500, "write", ("n0", "memory", 9)),  # down: not attempted, not acknowledged
        Step(2000, "restart", ("n0",)),
        Step(2500, "write", ("n1", "memory", 10)),
    ]  # fmt: skip
    r = run(1, Config(nodes=(3, 3), duration_ms=4000), schedule=schedule, tmp=SHM)
    assert r.ok, r.failures
    assert (r.writes, r.crashes, r.lost) == (5, 1, 0)
    assert r.settled_ms is not None and r.settled_ms > 0  # n0 was still cut off at the heal


def test_every_run_is_bounded_in_events(tmp_path: Path) -> None:
    r = run(2, Config(max_events=50), tmp=str(tmp_path))
    assert not r.ok and any("more than 50 events" in f for f in r.failures)
    assert list(tmp_path.iterdir()) == []  # data dirs removed, even after a failure


def test_schedules_draw_every_kind_of_fault() -> None:
    import random

    seen: Counter[str] = Counter()
    for seed in CI_SEEDS:
        rng = random.Random(seed)
        steps = faults.schedule(rng, ["n0", "n1", "n2", "n3"], duration_ms=15_000, writes=5,
                                episodes=8, window_ms=60_000)  # fmt: skip
        seen.update(s.action for s in steps)
    for action in ("write", "cut", "uncut", "clog", "unclog", "crash", "restart", "skew",
                   "drops-on", "duplicates-on", "spikes-on"):  # fmt: skip
        assert seen[action] > 20, (action, seen)


def test_a_backward_clock_step_does_not_stall_a_hosts_own_anti_entropy() -> None:
    """n0's clock steps back 19 s (within the auth window). The peer table schedules by
    the wall clock (``next_attempt`` was set before the step); it once started no exchange
    of n0's own for 19 s. Now a step back keeps each delay's remainder (found by the
    simulator). The host simulates ``gossip.node``, which uses ``time.time``."""
    schedule = [Step(2000, "skew", (n, -19_000 if n == "n0" else 0)) for n in ("n0", "n1", "n2")]
    r = run(1, Config(nodes=(3, 3), duration_ms=15_000), schedule=schedule, verbose=True,
            tmp=SHM)  # fmt: skip
    assert r.ok
    start = 1_790_000_000_000
    initiated = [int(line.split()[0]) - start for line in r.tail if " synced n0 " in line]
    assert [t for t in initiated if 2000 < t < 15_000]  # n0 syncs after the step


def test_snapshots_change_nothing_observable(monkeypatch: pytest.MonkeyPatch) -> None:
    """Odd seeds snapshot every few KiB (so restarts load a snapshot and a tail); the
    same seeds without snapshots must make the very same run, crash images included."""
    from crdt import ReplicaLimits
    from gossip.sim import world

    runs = [run(s, tmp=SHM) for s in (1, 9, 11)]  # odd seeds with crashes
    assert all(r.ok and r.crashes for r in runs)
    with_snapshots = [r.trace_hash for r in runs]
    seeds = [r.seed for r in runs]
    monkeypatch.setattr(world, "SNAPSHOT_SMALL", ReplicaLimits().snapshot_min_bytes)
    assert [run(s, tmp=SHM).trace_hash for s in seeds] == with_snapshots
