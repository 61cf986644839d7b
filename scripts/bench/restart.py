"""Restart benchmark: how long a `gossip serve` that was stopped takes, once started again,
until it answers a recall, as the store grows (issue 18: ≤ 3 s at 100k records, growing
less than linearly).

For each size a store of N memories is built (``common.build_store``), a daemon starts on
it once (its first start builds the semantic vectors, which are kept; waited for) and is
stopped with SIGTERM; then, several times, a daemon is spawned on it and the clock runs
from the spawn until ``GET /v1/memories?q=…`` over ``api.sock`` answers 200 (polled every
10 ms), and it is stopped again. Baseline, in the same run and alternating: the same
restart on a store with no memories (the daemon's fixed cost: interpreter, imports,
opening an empty replica, the listeners). Reported: the median restart at each size,
its ratio to the baseline, and the exponent of a power fit of the time beyond the
baseline against N (below 1: less than linear).

Usage: python scripts/bench/restart.py [--quick] [--json FILE]   (--quick: 1k and 10k)
The last line is the headline: ``restart: <s> s to a recall at <N> = <R>x an empty store; ...``.
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import common

GOAL_S = 3.0


def restart_once(home: Path, query: str, timeout: float = 600.0) -> float:
    """Seconds from spawning `gossip serve` on ``home`` until a recall answers."""
    from gossip.client import ApiConnection
    from gossip.errors import OpError, Unreachable

    args = [sys.executable, "-m", "gossip.cli", "serve", "--home", str(home),
            "--listen", f"127.0.0.1:{common.free_port()}", "--profile", "local", "--no-mdns",
            "--agents-listen", ""]  # fmt: skip
    api = ApiConnection(home, timeout=5)
    with open(home.parent / f"{home.name}.daemon.log", "ab") as log:
        t0 = time.perf_counter()
        proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = t0 + timeout
        while True:
            try:
                api.request("GET", "/v1/memories", query={"q": query}, timeout=5)
                return time.perf_counter() - t0
            except (Unreachable, OpError):  # not listening yet, or not ready to answer
                pass
            if proc.poll() is not None:
                raise RuntimeError(f"the daemon of {home} exited ({proc.returncode})")
            if time.perf_counter() > deadline:
                raise RuntimeError(f"the daemon of {home} did not answer in {timeout:.0f} s")
            time.sleep(0.01)
    finally:
        common._stop(proc)


def prepared(root: Path, n: int) -> Path:
    """A data dir with ``n`` memories whose daemon has run once (vectors built, kept)."""
    home = root / f"h{n}"
    if n:
        common.build_store(home, n)
    else:
        subprocess.run([sys.executable, "-m", "gossip.cli", "--home", str(home), "init",
                        "--name", "empty"], check=True, capture_output=True)  # fmt: skip
    with common.daemon(home):
        common.wait_vectors(home, n)
    return home


def run(quick: bool) -> dict[str, Any]:
    common.compile_packages()
    sizes = [1_000, 10_000] if quick else [1_000, 10_000, 100_000]
    runs = 3 if quick else 5
    query = common.query_words(common.random.Random(1))
    found: dict[int, dict[str, float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        empty = prepared(root, 0)
        for n in sizes:
            home = prepared(root, n)
            store_mb = sum(f.stat().st_size for f in home.iterdir() if f.is_file()) / 1e6
            times, base = [], []
            for _ in range(runs):
                base.append(restart_once(empty, query))
                times.append(restart_once(home, query))
            med = statistics.median(times)
            found[n] = {"s": med, "base_s": statistics.median(base), "min_s": min(times),
                        "max_s": max(times), "store_mb": store_mb}  # fmt: skip
            print(f"  {n:>7} memories ({store_mb:.0f} MB on disk): restart to a recall "
                  f"{med:.2f} s (min {min(times):.2f}, max {max(times):.2f}); empty store "
                  f"{found[n]['base_s']:.2f} s", flush=True)  # fmt: skip
    ns = sorted(found)
    beyond = [max(found[n]["s"] - found[n]["base_s"], 1e-3) for n in ns]
    exponent, _ = common.power_fit(ns, beyond)
    top = found[ns[-1]]
    ratio = top["s"] / top["base_s"]
    rows = [[f"{n:,}", f"{found[n]['store_mb']:.0f}", f"{found[n]['s']:.2f}",
             f"{found[n]['min_s']:.2f} / {found[n]['max_s']:.2f}", f"{found[n]['base_s']:.2f}",
             f"{found[n]['s'] / found[n]['base_s']:.2f}x"] for n in ns]  # fmt: skip
    goals = [
        {"goal": f"restart until a recall answers ≤ {GOAL_S:g} s at 100,000 memories",
         "value": f"{top['s']:.2f} s at {ns[-1]:,}",
         "met": top["s"] <= GOAL_S and ns[-1] >= 100_000},
        {"goal": "growing less than linearly (the fitted exponent of the time beyond an "
                 "empty store's, in N, below 1)",
         "value": f"{exponent:.2f}", "met": exponent < 1.0},
    ]  # fmt: skip
    return {
        "name": "restart",
        "title": "Restart: a stopped daemon started again, until it answers a recall",
        "command": "python scripts/bench/restart.py" + (" --quick" if quick else ""),
        "headline": (f"restart: {top['s']:.2f} s to a recall at {ns[-1]:,} = {ratio:.2f}x an "
                     f"empty store; exponent {exponent:.2f} in records"),
        "goals": goals,
        "tables": [{"caption": f"Median of {runs} restarts each, alternating with the empty "
                               "store's",
                    "columns": ["memories", "store MB", "to a recall (s)", "min / max (s)",
                                "empty store (s)", "ratio"],
                    "rows": rows}],
        "rows": [{"records": n, **found[n]} for n in ns],
        "notes": ["The clock runs from the spawn of `gossip serve` until the first recall "
                  "over api.sock answers: interpreter start, imports, the data dir's lock, "
                  "opening the replica (its snapshot and the updates after it), building "
                  "the views from the document, loading the kept vectors, the listeners. "
                  "The stores are built as the recall benchmark builds them (1,000 memories "
                  "per signed update, one author), and each daemon ran once before, so "
                  "its vectors are on disk. The packages' bytecode is compiled first, as an "
                  "installed package's is.",
                  "Where the time goes (100k memories, the daemon's phases timed from its "
                  "spawn): imports 0.4 s, `Replica.open` 0.6 s, the semantic index 0.15 s, "
                  "`Views.rebuild` 5.2 s (7.6 s before the bulk rebuild), the first recall ~1 s. "
                  "The rebuild is in bulk (issue 18): the document read in chunks "
                  "(`Replica.record_chunks`), each fed to the views as one batch of changes, "
                  "the memories indexed with one `executemany` into the table and one into FTS5, "
                  "the tables' indexes built once at the end, cyclic GC paused. What is left is "
                  "per record and linear: reading each value out of pycrdt (~6 µs), parsing its "
                  "body (~8 µs), building its row (~7 µs) and SQLite (~10 µs). 3 s at 100k needs "
                  "views kept on disk beside the store, up to the store's high-water mark, so a "
                  "restart reads only what came after. The chaos runs' 2.1 s median at ~13.5k "
                  "is in line with the 10k row."],
        "plots": [],
    }


# Hand-run comparisons and the design that would meet a missed goal, each with its date and
# command: history, not this run's figures (scripts/bench/report.py prints it after the notes).
HISTORY = [
    (
        "**Hand-run, 2026-12-04 19:02 UTC** (`nice -n -10 python scripts/bench/restart.py`, a "
        "machine shared with other work: load 3-5): 1.94 / 2.90 / 19.89 s to a recall at 1k / 10k "
        "/ 100k, exponent 1.09. An earlier run at normal priority, before main's lazy embedding "
        "model: 2.06 / 2.57 / 24.32 s, exponent 0.93."
    ),
    (
        "**Bulk views, paired with main (hand-run, 2026-12-04 19:45 UTC)**: "
        "`restart.restart_once` alternating main (009ee6b) and this branch, each run from its own "
        "tree, 3 rounds, on stores built and embedded once (`common.build_store`, then a daemon "
        "until its vectors are kept), `nice -n -10`, load 3-5 from other work:\n"
        "\n"
        "| memories | main (s), median of 3 | bulk views (s), median of 3 | runs, main / bulk |\n"
        "|---|---|---|---|\n"
        "| 1,000 | 0.68 | 1.10 | 0.68 0.67 1.24 / 0.67 1.10 1.13 |\n"
        "| 10,000 | 1.65 | 1.66 | 1.39 1.65 1.85 / 1.01 2.06 1.66 |\n"
        "| 20,000 | 2.41 | 2.75 | 2.41 2.31 3.48 / 1.69 2.75 2.76 |\n"
        "| 100,000 | 10.27 | 7.79 | 9.17 10.27 12.63 / 6.56 10.42 7.79 |"
    ),
    (
        "**What would meet ≤ 3 s (designed, not built): persistent views.** A `views.sqlite` in "
        "the data dir (0600, WAL, `synchronous=NORMAL`: derived data) holding the memories, word "
        "index, retractions and banks tables, the trust records (id, body, sig), and a meta row "
        "naming the store's `store_id`, the views' schema and the store seq and generation they "
        "cover. Each commit's batch of changes goes into one views transaction after the store's "
        "commit, with that commit's last seq. At open: if `store_id` and schema match and the "
        "covered seq is at most the store's, replay only the updates after it (the records root "
        "is immutable: records are only added), re-read the small `state` map in full, and "
        "recompute breakers, benchmarks, trust and the tally from it, the trust records and SQL "
        "`GROUP BY`; on any mismatch (a superseding checkpoint, a repair, views ahead of the "
        "store) rebuild in full. A crash between the two commits leaves the views one commit "
        "behind, which the replay covers. Expected at 100k: imports 0.4 s + open 0.6–1.1 s + "
        "semantic index 0.15 s + first recall ~0.7 s, about 3 s, no longer linear; the next cost "
        "is `Replica.open` applying its 64 MB snapshot."
    ),
    (
        "The spread swamps the small sizes; `Views(replica)` alone, in-process on the same stores "
        "(two pairs): 100k 7.88 / 6.81 s on main, 4.95 / 5.65 s in bulk (~0.7x); 20k 1.50 / 1.09 "
        "s against 0.93 / 1.01 s."
    ),
]


if __name__ == "__main__":
    common.main(run, __doc__)
