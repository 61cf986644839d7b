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
                  "opening the replica (its snapshot and the updates after it), resuming "
                  "the views kept in views.sqlite (the records stored since their last "
                  "commit replayed; built from the document only at a first start or on a "
                  "mismatch), loading the kept vectors, the listeners. The stores are built "
                  "as the recall benchmark builds them (1,000 memories per signed update, "
                  "one author), and each daemon ran once before, so its vectors and its "
                  "views are on disk. The packages' bytecode is compiled first, as an "
                  "installed package's is.",
                  "Where the time goes (100k memories, the daemon's phases timed from its "
                  "spawn, load ~3 from other work): imports 0.4-0.8 s, `Replica.open` "
                  "0.6-0.7 s, the semantic index 0.15-0.2 s, the views 0.3 s (resumed from "
                  "views.sqlite: `PRAGMA quick_check` ~0.07 s, each author's signed times "
                  "read back for the tally ~0.03 s, the semantic index asked at once which "
                  "memories it lacks ~0.1 s, nothing to replay), the listeners and the first "
                  "recall ~0.6 s. Until the views were kept (issue 18), every start rebuilt "
                  "them from the document: 5.2 s at 100k in bulk, 7.6 s before, linear in "
                  "records; a first start and any mismatch (another store, schema or "
                  "policy, views ahead of the store, a checkpoint that dropped the update "
                  "they were kept at, a damaged file, moved aside) still pay it (4.8 s at "
                  "100k, into the file). What is left grows with the records but slowly: "
                  "the replica applying its 64 MB snapshot (the next cost to cut), the "
                  "vectors read back, the views' integrity check and tally. The chaos runs' "
                  "2.1 s median at ~13.5k (docs/reliability.md) predates the kept views."],
        "plots": [],
    }


# Hand-run comparisons and the design that would meet a missed goal, each with its date and
# command: history, not this run's figures (scripts/bench/report.py prints it after the notes).
HISTORY = [
    (
        "**Memory given back at rest, hand-run 2026-12-07 15:30 UTC**: this run of the "
        "benchmark read 1.83 s at 100k after the change (gossip/node/rest.py, the views' "
        "page cache emptied once opened), against 1.54 s in the full run before it. Paired "
        "on one copy of a 100k store (`restart.restart_once`, main c100bf0 and the change "
        "alternating, 4 rounds, `nice -n 5`): 2.16 / 2.09 / 1.85 / 1.81 s (median 1.97) "
        "before, 1.81 / 1.98 / 1.57 / 1.50 s (median 1.69) after: no slower, the machine's "
        "noise."
    ),
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
        "**What would meet ≤ 3 s (designed; built below): persistent views.** A `views.sqlite` in "
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
        "**Kept views (issue 18), paired with main (hand-run, 2026-12-04 21:06-21:17 UTC)**: "
        "`restart.restart_once` alternating main (1f37af1, then 75eea7c) and the views branch, "
        "each run from its own tree, on copies of one store per size (`common.build_store`, "
        "embedded once by main's daemon; the branch's copy had run one daemon, so its "
        "views.sqlite was kept), `nice -n -10`, load 2.5-3.7 from other work. The last round, "
        "rebased on 75eea7c:\n"
        "\n"
        "| memories | main (s), median of 3 | kept views (s), median of 3 | runs, main / kept |\n"
        "|---|---|---|---|\n"
        "| 10,000 | 1.17 | 0.77 | 1.15 1.17 1.29 / 0.78 0.74 0.77 |\n"
        "| 100,000 | 7.03 | 2.21 | 7.03 6.20 7.91 / 2.31 2.03 2.21 |\n"
        "\n"
        "Earlier rounds at 100k, main / kept: 7.25 8.81 7.56 / 2.21 2.63 3.29 and 6.81 11.69 "
        "9.55 / 3.35 3.51 2.84 (empty store 0.68 1.01 1.20 / 0.70 0.86 1.11, 10k 1.07 1.17 "
        "1.36 / 0.85 1.02 0.94); before the resume read the tally per author and asked the "
        "semantic index in one search (~0.3 s more): 9.47 10.11 7.47 / 3.27 2.74 3.12. All nine "
        "final pairs at 100k: median 7.56 s on main, 2.63 s kept (0.35x). The views' phase at "
        "100k: 0.3 s resumed against 7.2 s rebuilt in the same minutes; a first start (no "
        "views.sqlite) rebuilds into the file in 4.8 s, 6.9 s to a recall."
    ),
    (
        "**Kept views, the whole benchmark (hand-run, 2026-12-04 21:15 UTC**, `nice -n -10 python "
        "scripts/bench/restart.py`, load 3-5): 0.60 / 1.24 / 2.12 s to a recall at 1k / 10k / "
        "100k, 3.27x an empty store at 100k: ≤ 3 s met. The exponent, 1.58, is fitted to a 1k "
        "restart 0.4 ms beyond the empty store's (noise, floored at 1 ms by the fit); from 10k "
        "to 100k the time beyond the empty store grows 9.2x for 10x the records: still about "
        "linear, at ~15 µs a record (the replica's snapshot, the vectors, the views' check and "
        "tally) instead of ~65 µs on main. Less than linear needs a replica that does not apply "
        "its whole document at open."
    ),
    (
        "The spread swamps the small sizes; `Views(replica)` alone, in-process on the same stores "
        "(two pairs): 100k 7.88 / 6.81 s on main, 4.95 / 5.65 s in bulk (~0.7x); 20k 1.50 / 1.09 "
        "s against 0.93 / 1.01 s."
    ),
]


if __name__ == "__main__":
    common.main(run, __doc__)
