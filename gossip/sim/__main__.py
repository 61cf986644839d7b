"""``scripts/simulate``: run seeds of the simulator, print a summary; replay one seed.

    scripts/simulate --seeds 200              # seeds 1..200, a line per failure, a summary
    scripts/simulate --seeds 10000 --jobs 2   # the long run (docs/reliability.md)
    scripts/simulate --seed 17 --trace        # replay one seed, with its whole trace

Exit status: 0 when every seed passed, 1 when one failed (each failure prints the exact
command that replays it), 2 for bad arguments.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

from .seeds import run_seeds
from .world import SABOTAGES, Config, Result, run


def _range(text: str) -> tuple[int, int]:
    lo, sep, hi = text.partition("-")
    try:
        a = int(lo)
        b = int(hi) if sep else a
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not N or N-M") from None
    return a, b


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="scripts/simulate",
        description="Deterministic simulation of sm-gossip: seeded faults, then convergence "
        "and set-full checks.",
    )
    which = p.add_mutually_exclusive_group()
    which.add_argument("--seeds", type=int, default=100, help="how many seeds (default 100)")
    which.add_argument("--seed", type=int, help="run (replay) this one seed, verbosely")
    p.add_argument("--first", type=int, default=1, help="the first of --seeds (default 1)")
    d = Config()
    p.add_argument("--nodes", type=_range, default=d.nodes, help="N or N-M, within 3-9 (3-5)")
    p.add_argument("--duration-ms", type=int, default=d.duration_ms,
                   help=f"virtual length of the fault phase ({d.duration_ms})")  # fmt: skip
    p.add_argument("--writes", type=_range, default=d.writes, help="writes per run (5-30)")
    p.add_argument("--episodes", type=_range, default=d.episodes,
                   help="fault episodes per run (1-8)")  # fmt: skip
    p.add_argument("--settle-ms", type=int, default=d.settle_ms,
                   help=f"bound on heal-to-quiescence, virtual ({d.settle_ms})")  # fmt: skip
    p.add_argument("--max-events", type=int, default=d.max_events, help=argparse.SUPPRESS)
    p.add_argument("--sabotage", choices=SABOTAGES, default="",
                   help="break the system on purpose, to see the checker catch it")  # fmt: skip
    p.add_argument("--jobs", type=int, default=1, help="processes (default 1)")
    p.add_argument("--tmp", default=None,
                   help="data dirs go here (default: /dev/shm if any, else TMPDIR)")  # fmt: skip
    p.add_argument("--trace", action="store_true", help="with --seed: print the whole trace")
    p.add_argument("--schedule", action="store_true", help="with --seed: print the schedule")
    return p


def _tmp(arg: str | None) -> str | None:
    if arg is not None:
        return arg
    shm = Path("/dev/shm")
    return str(shm) if shm.is_dir() and os.access(shm, os.W_OK) else None


def _print_failure(r: Result, *, tail: int = 25) -> None:
    print(f"FAIL seed {r.seed}: {len(r.failures)} failure(s), lost={r.lost} "
          f"unexpected={r.unexpected}", flush=True)  # fmt: skip
    for f in r.failures:
        print("  - " + f.replace("\n", "\n    "))
    if r.tail and tail:
        print(f"  last {min(tail, len(r.tail))} trace lines:")
        for line in r.tail[-tail:]:
            print("    " + line)
    print(f"  trace {r.trace_hash}")
    print(f"  replay: {r.replay()}", flush=True)


def _replay(seed: int, config: Config, tmp: str | None, *, trace: bool, schedule: bool) -> int:
    r = run(seed, config, tmp=tmp, verbose=trace or schedule)
    if schedule:
        for line in r.tail:
            if " step " in line:
                print(line)
    if trace:
        for line in r.tail:
            print(line)
    status = "ok" if r.ok else "FAIL"
    settled = "never" if r.settled_ms is None else f"{r.settled_ms} ms after heal"
    print(f"seed {seed}: {status}  nodes={r.nodes} acked writes={r.writes} crashes={r.crashes} "
          f"events={r.events} quiescent {settled}  ({r.wall_s:.2f} s)")  # fmt: skip
    print(f"  network: {' '.join(f'{k}={v}' for k, v in r.stats.items())}")
    print(f"  lost={r.lost} unexpected={r.unexpected}")
    if not r.ok:
        _print_failure(r, tail=0 if trace else 25)
        return 1
    print(f"  trace {r.trace_hash}")
    return 0


def _terminated(signum: int, frame: object) -> None:
    sys.exit(128 + signum)  # unwinds: the run in progress removes its data dirs


def main(argv: Sequence[str] | None = None) -> int:
    signal.signal(signal.SIGTERM, _terminated)
    args = _parser().parse_args(argv)
    try:
        config = Config(nodes=args.nodes, duration_ms=args.duration_ms, writes=args.writes,
                        episodes=args.episodes, settle_ms=args.settle_ms,
                        max_events=args.max_events, sabotage=args.sabotage)  # fmt: skip
    except ValueError as e:
        print(f"scripts/simulate: {e}", file=sys.stderr)
        return 2
    tmp = _tmp(args.tmp)
    if args.seed is not None:
        return _replay(args.seed, config, tmp, trace=args.trace, schedule=args.schedule)
    seeds = range(args.first, args.first + args.seeds)
    started = time.perf_counter()
    failed: list[Result] = []
    lost = unexpected = events = writes = crashes = 0
    slowest = 0.0
    network: Counter[str] = Counter()
    settle: list[int] = []
    for n, r in enumerate(run_seeds(seeds, config, tmp=tmp, jobs=args.jobs), 1):
        lost, unexpected, events = lost + r.lost, unexpected + r.unexpected, events + r.events
        writes, crashes = writes + r.writes, crashes + r.crashes
        slowest = max(slowest, r.wall_s)
        network.update(r.stats)
        if r.settled_ms is not None:
            settle.append(r.settled_ms)
        if not r.ok:
            failed.append(r)
            _print_failure(r)
        if n % 500 == 0:
            print(f"... {n} seeds, {len(failed)} failed, {time.perf_counter() - started:.0f} s",
                  flush=True)  # fmt: skip
    elapsed = time.perf_counter() - started
    opts = " ".join(config.options())
    print(f"seeds {seeds.start}..{seeds.stop - 1} ({len(seeds)}){' ' + opts if opts else ''}: "
          f"{len(seeds) - len(failed)} ok, {len(failed)} failed")  # fmt: skip
    print(f"  divergences/failures: {len(failed)}   lost: {lost}   unexpected: {unexpected}")
    print(f"  acknowledged writes: {writes}   crashes: {crashes}   events: {events}")
    faults = ("dropped", "duplicated", "cut", "held", "lost")
    print("  network: " + "  ".join(f"{k} {network[k]}" for k in ("request", *faults)))
    if settle:
        settle.sort()
        print(f"  heal to quiescence (virtual): median {settle[len(settle) // 2]} ms, "
              f"max {settle[-1]} ms")  # fmt: skip
    print(f"  runtime: {elapsed:.1f} s ({args.jobs} job(s); slowest seed {slowest:.2f} s)")
    if failed:
        print("replay the failures with:")
        for r in failed:
            print(f"  {r.replay()}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
