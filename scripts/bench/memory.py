"""Memory benchmark: the resident memory of a node against the records it holds.

Per size (1k, 10k, 100k memories; --quick: 1k, 10k): one author's memories are written
straight into a replica (``common.build_store``), then a fresh `gossip serve` process is
started on it; once its local API answers and one recall has run, its VmRSS and VmHWM
(peak) are read from /proc/PID/status. Baseline: the payload, the sum of the records'
body + signature bytes (what any store must hold), and an empty daemon's RSS in the
same run (the interpreter and libraries). To say what dominates, a second fresh process
opens the same data dir step by step (imports, ``Replica.open``, ``Views``) and reads its
RSS after each step.

Usage: python scripts/bench/memory.py [--quick] [--json FILE]
The last line is the headline: ``memory: RSS <MB> at <N> = <R>x payload``.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import common

GOAL_RATIO = 4.0
MB = 1e6


def daemon_rss(home: Path) -> dict[str, int]:
    """VmRSS/VmHWM of a fresh daemon on ``home`` after start-up and one recall."""
    from gossip.client import ApiConnection

    with common.daemon(home) as proc:
        ApiConnection(home, timeout=60).request("GET", "/v1/memories", query={"q": "retry"})
        time.sleep(0.5)
        return common.rss(proc.pid)


def stages(home: Path) -> dict[str, int]:
    """RSS of this process after each step of what a daemon loads (run in a fresh one)."""
    from crdt import Replica
    from crdt.views import Views

    out = {"imports": common.rss()["rss"]}  # common imports what a daemon does
    with Replica.open(home) as r:
        out["replica"] = common.rss()["rss"]
        with Views(r) as v:
            out["views"] = common.rss()["rss"]
            db = v._db  # the index's own size, to tell it from what building it left behind
            pages = db.execute("PRAGMA page_count").fetchone()[0]
            out["views_db"] = pages * db.execute("PRAGMA page_size").fetchone()[0]
    return out


def stages_in_child(home: Path) -> dict[str, int]:
    cmd = [sys.executable, __file__, "--stages", str(home)]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=600, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def run(quick: bool) -> dict[str, Any]:
    sizes = [1_000, 10_000] if quick else [1_000, 10_000, 100_000]
    print("memory: RSS of a fresh daemon holding N memories vs their payload (body + sig)")
    print("      N | payload MB | RSS MB | peak MB | RSS/payload | above empty / payload")
    rows: list[list[Any]] = []
    results: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as tmp:
        empty = Path(tmp) / "empty"
        common.create_hosts([empty])
        base = daemon_rss(empty)
        print(
            f"  empty |          - | {base['rss'] / MB:6.1f} | {base['hwm'] / MB:7.1f} |",
            flush=True,
        )
        for n in sizes:
            home = Path(tmp) / f"mem-{n}"
            payload = common.build_store(home, n, seed=n)
            m = daemon_rss(home)
            steps = stages_in_child(home)
            r = {"n": n, "payload": payload, **m, "stages": steps}
            r["ratio"] = m["rss"] / payload
            r["marginal_ratio"] = (m["rss"] - base["rss"]) / payload
            results.append(r)
            print(
                f"{n:7} | {payload / MB:10.1f} | {m['rss'] / MB:6.1f} | {m['hwm'] / MB:7.1f} | "
                f"{r['ratio']:10.1f}x | {r['marginal_ratio']:10.1f}x",
                flush=True,
            )
            rows.append([f"{n:,}", f"{payload / MB:.1f}", f"{m['rss'] / MB:.1f}",
                         f"{m['hwm'] / MB:.1f}", f"{r['ratio']:.1f}x",
                         f"{r['marginal_ratio']:.1f}x"])  # fmt: skip
    last = results[-1]
    met = last["ratio"] <= GOAL_RATIO
    value = f"{last['ratio']:.1f}x at {last['n']:,} ({last['marginal_ratio']:.1f}x above empty)"
    if not met:
        value += f": {last['ratio'] / GOAL_RATIO:.1f}x the goal"
    st = last["stages"]
    grow = {
        "the interpreter and libraries": st["imports"],
        "the replica (document, item index, store)": st["replica"] - st["imports"],
        "the views (in-memory SQLite FTS5 index)": st["views"] - st["replica"],
    }
    parts = ", ".join(f"{k} {v / MB:.0f} MB" for k, v in grow.items())
    db_share = st["views_db"] / max(1, st["views"] - st["replica"])
    notes = [
        f"What a node holding {last['n']:,} memories spends its memory on, opened step by "
        f"step in a fresh process: {parts} (payload {last['payload'] / MB:.1f} MB). The "
        "replica keeps the whole pycrdt document in memory (every record's body and "
        "signature as Yjs map values, plus the item structs), and the views keep a second, "
        "indexed copy of every memory's text in SQLite; the daemon adds its server, the "
        "worker thread and allocator slack on top.",
        f"Of the views' share, the SQLite database itself is {st['views_db'] / MB:.0f} MB "
        f"({100 * db_share:.0f} %); the rest is heap kept after building it, not the "
        "decoded records the rebuild reads (a probe of this session at 30k memories: that "
        "dict costs ~70 MB while it lives and is given back; malloc_trim afterwards "
        "returned only a seventh of the views' growth), so most likely SQLite's own "
        "allocations from indexing one memory at a time. The replica alone is "
        f"{grow['the replica (document, item index, store)'] / last['payload']:.1f}x the "
        "payload. Likely cuts: rebuild the index in chunks rather than from one decoded "
        "dict, and keep each text once (an FTS5 external-content table over the memories "
        "table).",
        f"An empty daemon's RSS, measured in the same run: {base['rss'] / MB:.1f} MB.",
    ]
    if quick:
        notes.append("--quick: judged at 10k memories; the full run measures 100k.")
    return {
        "name": "memory",
        "title": "Memory: a node's resident set vs the payload it holds",
        "command": "python scripts/bench/memory.py" + (" --quick" if quick else ""),
        "headline": (
            f"memory: RSS {last['rss'] / MB:.0f} MB at {last['n']} = {last['ratio']:.1f}x payload "
            f"({last['marginal_ratio']:.1f}x above an empty daemon)"
        ),
        "goals": [
            {
                "goal": f"RSS ≤ {GOAL_RATIO:g}x the payload (body + sig bytes)",
                "value": value,
                "met": met,
            }
        ],
        "tables": [
            {
                "caption": "RSS of a fresh daemon after start-up and one recall",
                "columns": [
                    *("memories", "payload MB", "RSS MB", "peak RSS MB", "RSS / payload"),
                    "(RSS − empty) / payload",
                ],
                "rows": rows,
            }
        ],
        "notes": notes,
        "plots": [],
        "sizes": results,
        "empty": base,
    }


def plot(result: dict[str, Any], outdir: Path) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sizes = result["sizes"]
    ns = [s["n"] for s in sizes]
    fig, ax = plt.subplots(figsize=(6, 3.6))
    ax.plot(ns, [s["rss"] / MB for s in sizes], "o-", label="daemon RSS")
    ax.plot(ns, [s["hwm"] / MB for s in sizes], "o--", label="daemon peak RSS")
    ax.plot(ns, [s["payload"] / MB for s in sizes], "s-", label="payload (body + sig)")
    ax.plot(ns, [GOAL_RATIO * s["payload"] / MB for s in sizes], ":", color="grey",
            label=f"goal: {GOAL_RATIO:g}x payload")  # fmt: skip
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("memories")
    ax.set_ylabel("MB")
    ax.set_title("Node memory vs payload", fontsize=10)
    common.plain_log_axes(ax)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(outdir / "memory.png", dpi=110)
    plt.close(fig)
    return ["memory.png"]


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--stages":
        print(json.dumps(stages(Path(sys.argv[2]))))
    else:
        common.main(run, __doc__)
