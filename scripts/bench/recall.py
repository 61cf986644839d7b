"""Recall benchmark: a text recall over the local API, against a central hub.

Per size (1k, 10k, 100k memories; --quick: 1k, 10k): one author's memories are written
straight into a replica (``common.build_store``), then a real `gossip serve` is started
on it and queried over its Unix socket (aiohttp ``UnixConnector``, one keep-alive
connection, one query at a time, as an agent's tool call would). Baseline, in the same
run and with the same queries and client style: ``hub.py``, a minimal aiohttp server
over one SQLite FTS5 table holding the same memories, on 127.0.0.1 in its own process.
Queries, ``limit=20``: specific (two rare words, a few hits per thousand memories) and
broad (two common words, a third of all memories match); the two servers are queried
alternately, so both see the same machine load. Latency is client-side: from sending
the request to the parsed JSON body.

The daemon answers in its default mode (hybrid: both lanes fused);
``SM_BENCH_RECALL_MODE=lexical`` (or ``semantic``) asks for one lane, e.g. to compare
with a version from before hybrid recall, which had only the lexical one.

Usage: python scripts/bench/recall.py [--quick] [--json FILE]
The last line is the headline: ``recall: p99 <ms> ms at <N> = <R>x hub``.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp
import common
import hub

GOAL_P99_MS = 5.0
MODE = os.environ.get("SM_BENCH_RECALL_MODE", "")  # "": the daemon's default (hybrid)


def hub_rows(home: Path) -> list[tuple[str, str, str, str, str, str, int]]:
    """The memories of ``home``'s replica as the hub's rows."""
    from crdt import Replica

    rows = []
    with Replica.open(home) as r:
        for rid, rec in r.records().items():
            f = rec.fields
            rows.append((rid, f["text"], f["category"], f.get("subject") or "",
                         json.dumps(f["tags"]), rec.author, rec.ts))  # fmt: skip
    return rows


async def measure(home: Path, hub_port: int, queries: list[str]) -> dict[str, list[float]]:
    """Latencies (s) of every query against the daemon and the hub, alternately."""
    local = aiohttp.ClientSession(connector=aiohttp.UnixConnector(path=str(home / "api.sock")))
    hub = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=1))
    out: dict[str, list[float]] = {"local": [], "hub": [], "local_hits": [], "hub_hits": []}
    targets = (("local", local, "http://localhost"), ("hub", hub, f"http://127.0.0.1:{hub_port}"))
    try:
        for i, q in enumerate(queries):
            order = targets if i % 2 == 0 else targets[::-1]
            for name, session, base in order:
                t0 = time.perf_counter()
                params = {"q": q, "limit": "20"}
                if name == "local" and MODE:
                    params["mode"] = MODE
                async with session.get(f"{base}/v1/memories", params=params) as r:
                    if r.status != 200:
                        raise RuntimeError(f"{name} answered {r.status}: {await r.text()}")
                    body = await r.json()
                out[name].append(time.perf_counter() - t0)
                out[f"{name}_hits"].append(len(body["memories"]))
    finally:
        await local.close()
        await hub.close()
    return out


def in_process_profile(home: Path, queries: list[str]) -> str:
    """Where a recall's time goes inside the daemon: the same handler work
    (``queries.recall`` on a Replica + Views, in the mode measured, with the data dir's
    vectors as the daemon holds them) in this process, under pyinstrument."""
    from crdt import Replica
    from crdt.semantic import open_in_dir
    from crdt.views import Views
    from gossip.ops import queries as q

    mode = MODE or "hybrid"
    with Replica.open(home) as r:
        semantic = None if mode == "lexical" else open_in_dir(home)
        with Views(r, semantic=semantic, kept=True) as v:
            if semantic is not None:
                semantic.catch_up()  # (the daemon built them: nothing is left to embed)
            q.recall(r, v, queries[0], mode=mode)  # the model is read by the first query
            return common.profile(lambda: [q.recall(r, v, text, mode=mode) for text in queries])


KINDS = ("specific", "broad")


def run_size(n: int, tmp: Path, count: int) -> dict[str, Any]:
    home = tmp / f"recall-{n}"
    t0 = time.perf_counter()
    payload = common.build_store(home, n, seed=n)
    db = tmp / f"hub-{n}.sqlite3"
    hub.fill(db, hub_rows(home))
    built = time.perf_counter() - t0
    rng = random.Random(n)
    warm = [common.query_words(rng) for _ in range(20)]
    asked = {k: [common.query_words(rng, broad=k == "broad") for _ in range(count)] for k in KINDS}
    port = common.free_port()
    hub_cmd = [sys.executable, str(Path(__file__).with_name("hub.py")), "--db", str(db),
               "--port", str(port)]  # fmt: skip
    out: dict[str, Any] = {"n": n, "payload_bytes": payload, "build_s": built, "queries": count}
    with common.daemon(home), common.process(hub_cmd, port):
        out["vectors_s"] = common.wait_vectors(home, n)  # a quiet daemon, its vectors built
        asyncio.run(measure(home, port, warm))
        for kind in KINDS:
            lat = asyncio.run(measure(home, port, asked[kind]))
            for side in ("local", "hub"):
                ms = [x * 1000 for x in lat[side]]
                out[f"{kind}_{side}_p50_ms"] = common.p50(ms)
                out[f"{kind}_{side}_p99_ms"] = common.p99(ms)
                out[f"{kind}_{side}_hits"] = sum(lat[f"{side}_hits"]) / count
    out["profile_queries"] = {k: v[:200] for k, v in asked.items()}
    return out


def run(quick: bool) -> dict[str, Any]:
    sizes = [1_000, 10_000] if quick else [1_000, 10_000, 100_000]
    count = 200 if quick else 1000
    print(f"recall: {count} queries of each kind per size, local API (unix socket) vs hub (TCP)")
    print("      N | kind     | local p50 / p99 ms | hub p50 / p99 ms | p99 ratio | hits")
    rows = []
    results = []
    notes = [
        "Both servers run in their own process on loopback and are queried one request at "
        "a time over a keep-alive connection; the daemon answers through its replica thread "
        "(`Node.query`): the views' SQLite FTS5 index (crdt/views/, views.sqlite) and, in "
        "hybrid mode, the semantic lane's vectors (crdt/semantic.py), with the trust, "
        "retraction, expiry and per-author quota filters in both lanes, fused by RRF; the "
        "hub answers straight from its FTS5 table with none of them. Specific queries are "
        "two rare words (each in ~0.15 % of the memories); broad ones two common words "
        "(together in ~30 %): FTS5 ranks every match by bm25 before taking the best 20, "
        "so a broad query costs time in proportion to the store, on either server.",
    ]
    with tempfile.TemporaryDirectory() as tmp:
        for n in sizes:
            r = run_size(n, Path(tmp), count)
            results.append(r)
            for kind in KINDS:
                lp50, lp99 = r[f"{kind}_local_p50_ms"], r[f"{kind}_local_p99_ms"]
                hp50, hp99 = r[f"{kind}_hub_p50_ms"], r[f"{kind}_hub_p99_ms"]
                print(
                    f"{n:7} | {kind:8} | {lp50:7.2f} / {lp99:6.2f}  | {hp50:6.2f} / {hp99:6.2f} "
                    f"| {lp99 / hp99:7.2f}x | {r[f'{kind}_local_hits']:.1f}",
                    flush=True,
                )
                rows.append([f"{n:,}", kind, f"{lp50:.2f}", f"{lp99:.2f}", f"{hp50:.2f}",
                             f"{hp99:.2f}", common.ratio(lp99, hp99)])  # fmt: skip
        last = results[-1]
        goals = []
        for kind in KINDS:
            p99 = last[f"{kind}_local_p99_ms"]
            value = f"p99 {p99:.2f} ms at {last['n']:,}"
            if p99 > GOAL_P99_MS:
                value += f": {p99 / GOAL_P99_MS:.1f}x the goal"
            goals.append({"goal": f"p99 ≤ {GOAL_P99_MS:g} ms at 100k memories, {kind} queries",
                          "value": value, "met": p99 <= GOAL_P99_MS})  # fmt: skip
        if quick:
            notes.append(
                f"--quick: the goal (at 100k memories) is judged at {last['n']:,}; the full "
                "run measures 100k."
            )
        for g, kind in zip(goals, KINDS, strict=True):
            if g["met"]:
                continue
            qs = last["profile_queries"][kind]
            summary = in_process_profile(Path(tmp) / f"recall-{last['n']}", qs)
            if summary:
                notes.append(
                    f"Where a {kind} recall's time goes at {last['n']:,} memories (the "
                    f"handler's work in-process, {len(qs)} queries): {summary}."
                )
        if not all(g["met"] for g in goals):
            notes.append(
                "Reading the profiles: `Connection.execute` is SQLite: the FTS5 MATCH and "
                "its bm25 order (the hub does the same work), and the rows of the lanes' "
                "candidates; `nearest` and `_similarity` are the semantic lane's two stages "
                "over every vector (a Hamming distance of sign bits, then 4-bit vectors for "
                "the best few thousand), and the "
                "`<dictcomp>` of recall.py reads the rows of the neighbours it proposes. "
                "Lexical mode alone (`SM_BENCH_RECALL_MODE=lexical`) is the HISTORY's "
                "comparison with the hub as it stood before hybrid recall."
            )
    for r in results:
        del r["profile_queries"]
    sp99 = last["specific_local_p99_ms"]
    return {
        "name": "recall",
        "title": "Recall: a text query over the local API vs a central hub",
        "command": "python scripts/bench/recall.py" + (" --quick" if quick else ""),
        "headline": (
            f"recall: p99 {sp99:.2f} ms at {last['n']} = "
            f"{common.ratio(sp99, last['specific_hub_p99_ms'])} hub (specific queries; broad: "
            f"p99 {last['broad_local_p99_ms']:.1f} ms = "
            f"{common.ratio(last['broad_local_p99_ms'], last['broad_hub_p99_ms'])} hub)"
        ),
        "goals": goals,
        "tables": [
            {
                "caption": f"Recall latency, {count} queries of each kind, limit 20 (ms)",
                "columns": [
                    "memories",
                    "queries",
                    "local p50",
                    "local p99",
                    "hub p50",
                    "hub p99",
                    "p99 local / hub",
                ],
                "rows": rows,
            }
        ],
        "notes": notes,
        "plots": [],
        "sizes": results,
    }


def plot(result: dict[str, Any], outdir: Path) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sizes = result["sizes"]
    ns = [s["n"] for s in sizes]
    fig, ax = plt.subplots(figsize=(6, 3.6))
    for kind, colour in (("specific", "tab:blue"), ("broad", "tab:orange")):
        for side, marker in (("local", "o-"), ("hub", "s--")):
            key = f"{kind}_{side}_p99_ms"
            label = f"{'local API' if side == 'local' else 'hub'} p99, {kind}"
            ax.plot(ns, [s[key] for s in sizes], marker, color=colour, label=label)
    ax.axhline(GOAL_P99_MS, color="grey", lw=0.8, ls=":", label="goal p99")
    ax.set_xscale("log")
    ax.set_xlabel("memories")
    ax.set_ylabel("latency (ms)")
    ax.set_title("Recall latency (p99)", fontsize=10)
    ax.set_yscale("log")
    common.plain_log_axes(ax)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(outdir / "recall.png", dpi=110)
    plt.close(fig)
    return ["recall.png"]


# Hand-run comparisons and the design that would meet a missed goal, each with its date and
# command: history, not this run's figures (scripts/bench/report.py prints it after the notes).
HISTORY = [
    (
        "**Hybrid against lexical at 100k (issue 18, hand-run 2026-12-07 17:45 UTC)**. Issue "
        "18 asks that no other headline get worse than when it was filed: `p99 4.39 ms at "
        "100000 = 1.02x hub` then, in the only mode there was (lexical); hybrid is the "
        "default since, and the headline measures it. Lexical mode now, the whole "
        "benchmark (`SM_BENCH_RECALL_MODE=lexical nice -n 5 python scripts/bench/recall.py`): "
        "specific p50 / p99 3.14 / 5.40 ms against the hub's 3.48 / 5.80 = **0.93x** at "
        "100k (2.44 / 1.52 ms = 1.61x at 10k, 2.75 / 1.47 = 1.86x at 1k); broad 9.92 "
        "against 127.4 ms = 0.08x (3.01x then). Not worse. In-process on a copy of one "
        "100k data dir with its vectors (300 specific queries, `queries.recall` in turn "
        "by mode): lexical p50 0.80-0.85 ms, hybrid 3.18-3.25 ms. Of the semantic lane's "
        "~2.4 ms: `SemanticIndex.nearest(100)` 1.0-1.7 ms (the Hamming pass over 100k "
        "sign-bit rows 0.40-0.49 ms, the cut by a count of distances 0.2-0.3 ms, the "
        "4-bit similarity of the ~2,500 rows kept 0.48-0.55 ms), reading the proposed "
        "rows from SQLite ~0.5 ms, embedding the query 0.03 ms. The Hamming pass is "
        "already at numpy's floor here: a (size, 4) layout summed by axis took 2.6 ms, "
        "bytes 3.7 ms, preallocated outputs 0.43 ms against 0.40. Fewer rows kept for the "
        "second stage would trade recall quality (the quality benchmark's paraphrase "
        "recall@5) for ~0.3 ms; not tried."
    ),
    (
        "### Lexical recall against the tree before issue 14 (hand-run, 2026-12-04)\n"
        "\n"
        "Issue 14's must 8 asks that the restructure not worsen the headline ratio. Lexical mode "
        "on both sides (the tree before the restructure, 0a215e9, has no other), `--quick` (10k "
        "memories, 200 queries of each kind), the two trees alternated, then main, on 2 shared "
        "cores (load average 3 to 6, other sessions' test suites running):\n"
        "\n"
        "```\n"
        "git worktree add /work/wt-before 0a215e9\n"
        "cd /work/wt-before && PYTHONPATH=$PWD python scripts/bench/recall.py --quick\n"
        "cd /work/wt-recall && SM_BENCH_RECALL_MODE=lexical PYTHONPATH=$PWD python "
        "scripts/bench/recall.py --quick\n"
        "```\n"
        "\n"
        "| tree | headline: p99 local / hub at 10k, specific (6 runs; 3 for main) | median | p50 "
        "local / hub (same runs) |\n"
        "|---|---|---|---|\n"
        "| before the restructure (0a215e9) | 2.29, 1.96, 1.20, 1.72, 2.16, 1.59 | 1.84x | "
        "1.25-1.34x |\n"
        "| main at the time (186b834 to 13bf79f: it moved during the runs) | 1.81, 1.45, 1.06 | "
        "1.45x | 1.63x, 1.64x, 0.78x |\n"
        "| this branch | 1.35, 0.96, 1.46, 1.62, 1.72, 1.36 | 1.41x | 1.40-1.52x |\n"
        "\n"
        "Broad queries at 10k: 0.32-0.49x the hub here, 0.80-2.19x before the restructure (the "
        "bound on what a broad query ranks). The p99 of 200 queries is the second-worst one and "
        "moves with the machine's load more than with the code; the p50 ratios are steadier and "
        "show what is left: about 0.2 ms at the median, of which the answer's agents' fields and "
        "lanes (14.4 kB against 11.5 kB for 20 hits: +0.05 ms to encode and decode) and "
        "`Views.recall` itself (+0.06 ms). Paired in one process (each query asked of both trees' "
        "views in turn, 2,000 specific queries at 10k), `Views.recall` lexical is 1.21x the old "
        "tree's time at the median, 2.2x before this branch; the answers are identical. Through "
        "both daemons side by side on copies of one store, queried in turn with the hub (1,000 "
        "specific queries at 10k): p50 1.97 ms here, 1.69 ms before the restructure, 1.43 ms the "
        "hub.\n"
        "\n"
        "Where it went (docs/reading.md, \"What a lexical recall costs\"): FTS5's `rank` column "
        "prepared a statement per query (a third of a specific recall), a second look at the "
        "matches for the bound, candidate rows read and decoded in full (two JSON decodes a hit), "
        "the general merge of fusion for one lane, and the share cap counting this host's own "
        "memories."
    ),
]


if __name__ == "__main__":
    common.main(run, __doc__)
