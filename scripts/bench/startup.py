"""Start-up benchmark: what a user pays for each `gossip` command, as a whole process.

Baseline, in the same run and alternating with each command: ``python -c pass`` with the
same interpreter (the floor any Python command pays). Measured, each as a fresh process
(wall time from spawn to exit, and the CPU the child used, from ``RUSAGE_CHILDREN``):
``gossip --version``; ``gossip recall QUERY`` with a daemon running on a store of N
memories (the CLI talks to its API over ``api.sock``; measured once the daemon has built
its vectors, so it is not embedding in the background meanwhile); the same recall with no daemon
(the command opens the data dir itself). Medians over the runs; the ratio is the
median of the per-pair ratios, so a machine that drifts affects both sides alike.
The packages' bytecode is compiled first, as an installed package's is (pip compiles it;
with PYTHONDONTWRITEBYTECODE set and no ``__pycache__``, every run would compile the
sources again and measure that instead).

Usage: python scripts/bench/startup.py [--quick] [--json FILE]
The last line is the headline: ``startup: --version <ms> ms = <R>x python -c pass; ...``.
"""

from __future__ import annotations

import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import common

GOAL_VERSION_MS = 80.0
GOAL_RECALL_MS = 150.0


def timed(args: list[str], env: dict[str, str]) -> tuple[float, float]:
    """(wall ms, child CPU ms) of one run of ``args``; a failure is an error."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    done = subprocess.run(args, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                          timeout=120)  # fmt: skip
    wall = (time.perf_counter() - start) * 1000
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        raise RuntimeError(f"{args} failed: {done.stderr.decode()[-500:]}")
    cpu = ((after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)) * 1000
    return wall, cpu


def pairs(command: list[str], env: dict[str, str], runs: int) -> dict[str, float]:
    """``command`` and the baseline in turn, ``runs`` times after one warm-up each."""
    base = [sys.executable, "-c", "pass"]
    timed(command, env)
    timed(base, env)
    walls, cpus, ratios, base_walls = [], [], [], []
    for _ in range(runs):
        w, c = timed(command, env)
        bw, _ = timed(base, env)
        walls.append(w)
        cpus.append(c)
        base_walls.append(bw)
        ratios.append(w / bw)
    med = statistics.median
    return {"wall_ms": med(walls), "cpu_ms": med(cpus), "base_ms": med(base_walls),
            "ratio": med(ratios)}


def run(quick: bool) -> dict[str, Any]:
    common.compile_packages()
    n = 1_000 if quick else 20_000
    runs = 5 if quick else 15
    gossip = [sys.executable, "-m", "gossip.cli"]
    rows, found = [], {}
    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp) / "startup"
        common.build_store(home, n)
        env = {**os.environ, "GOSSIP_HOME": str(home)}
        query = common.query_words(common.random.Random(1))
        recall = [*gossip, "recall", query]
        cases = [("--version", [*gossip, "--version"], False),
                 (f"recall, daemon running, {n:,} memories", recall, True),
                 (f"recall, no daemon, {n:,} memories", recall, False)]
        for label, args, with_daemon in cases:
            if with_daemon:
                with common.daemon(home):
                    common.wait_vectors(home, n)  # a quiet daemon: not embedding meanwhile
                    r = pairs(args, env, runs)
            else:
                r = pairs(args, env, runs)
            found[label] = r
            print(f"{label:38} {r['wall_ms']:7.1f} ms wall, {r['cpu_ms']:6.1f} ms CPU = "
                  f"{r['ratio']:.2f}x python -c pass ({r['base_ms']:.1f} ms)",
                  flush=True)
            rows.append([label, f"{r['wall_ms']:.1f}", f"{r['cpu_ms']:.1f}",
                         f"{r['base_ms']:.1f}", f"{r['ratio']:.2f}x"])  # fmt: skip
    version = found["--version"]
    served = found[f"recall, daemon running, {n:,} memories"]
    goals = [
        {"goal": f"`gossip --version` ≤ {GOAL_VERSION_MS:g} ms",
         "value": f"{version['wall_ms']:.0f} ms ({version['ratio']:.2f}x python -c pass)",
         "met": version["wall_ms"] <= GOAL_VERSION_MS},
        {"goal": f"`gossip recall` with a daemon running ≤ {GOAL_RECALL_MS:g} ms (median, "
                 "20k memories)",
         "value": f"{served['wall_ms']:.0f} ms at {n:,} ({served['ratio']:.2f}x python -c pass)",
         "met": served["wall_ms"] <= GOAL_RECALL_MS},
    ]  # fmt: skip
    return {
        "name": "startup",
        "title": "Start-up: each `gossip` command as a whole process vs `python -c pass`",
        "command": "python scripts/bench/startup.py" + (" --quick" if quick else ""),
        "headline": (f"startup: --version {version['wall_ms']:.0f} ms = "
                     f"{version['ratio']:.2f}x python -c pass; recall with a daemon "
                     f"{served['wall_ms']:.0f} ms = {served['ratio']:.2f}x at {n:,}"),
        "goals": goals,
        "tables": [{"caption": f"Median of {runs} runs each, alternating with the baseline",
                    "columns": ["command", "wall ms", "CPU ms", "python -c pass ms",
                                "wall / baseline"],
                    "rows": rows}],
        "notes": ["Wall time includes the interpreter's own start (the baseline); CPU is the "
                  "child's user plus system time. The recall answers from the daemon over "
                  "api.sock: what it costs beyond the baseline is the CLI's imports and the "
                  "request. The daemon is measured once it has built its vectors (before, the "
                  "recall was timed while the daemon embedded 20k memories in the background), "
                  "and the packages' bytecode is compiled first, as an installed package's is."],
        "plots": [],
    }


if __name__ == "__main__":
    common.main(run, __doc__)
