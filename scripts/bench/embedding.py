"""Embedding benchmark: a daemon building the semantic lane's vectors in the background vs
embedding the same texts directly, in the same run.

Per size (1k, 10k, 100k memories; --quick: 1k, 10k): one author's memories are written
straight into a replica (``common.build_store``). Baseline: this process embeds the same
texts (each memory's text, subject and tags, as the views give them to the index) with
the same model (``WordLlamaEmbedder.embed``, the tokenizer on every core), wall and CPU
seconds. Measured: a fresh `gossip serve` on the store, from its local API answering
until ``embeddings.sqlite`` holds a vector for every memory, read from the file with a
read-only connection every 0.2 s (so the daemon is never asked: `gossip status` decodes
the whole document, seconds at 100k); its CPU seconds over that time from /proc. Then a
restart on the same data dir: it must write nothing to the file (its WAL stays
empty) and hold every vector, and its RSS before any
query says whether it read the model (it should not).

Usage: python scripts/bench/embedding.py [--quick] [--json FILE]
The last line is the headline: ``embedding: a daemon built <N> vectors in <s> s = <R>x
the raw embed``.
"""

from __future__ import annotations

import os
import random
import tempfile
import time
from pathlib import Path
from typing import Any

import common

GOAL_S = 30.0
MB = 1e6


def texts_of(n: int, seed: int) -> list[str]:
    """What the index embeds of each memory ``common.build_store(home, n, seed=seed)``
    wrote (its random draws, in the same order)."""
    from crdt.views import embedded_text

    rng = random.Random(seed)
    return [embedded_text(common.memory_text(i, rng), f"provider:{i % 17}", [f"t{i % 11}"])
            for i in range(n)]  # fmt: skip


def raw_embed(texts: list[str]) -> tuple[float, float]:
    """(wall s, CPU s) of embedding ``texts`` here, the model already read."""
    from crdt.embedder import WordLlamaEmbedder

    model = WordLlamaEmbedder()
    model.embed(["warm up"])
    wall, cpu = time.perf_counter(), time.process_time()
    model.embed(texts)
    return time.perf_counter() - wall, time.process_time() - cpu


def cpu_of(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def daemon_build(home: Path, n: int, timeout: float = 900.0) -> dict[str, float]:
    with common.daemon(home) as proc:
        wall, cpu = time.monotonic(), cpu_of(proc.pid)
        common.wait_vectors(home, n, timeout)
        out = {"wall": time.monotonic() - wall, "cpu": cpu_of(proc.pid) - cpu,
               "rss": common.rss(proc.pid)["rss"]}  # fmt: skip
    with common.daemon(home) as proc:  # a restart: nothing to embed, the model unread
        time.sleep(1.0)  # a few idle rounds of its background embedding
        out["restart_rss"] = common.rss(proc.pid)["rss"]
        out["restart_vectors"] = common.vectors_held(home)
        wal = home / "embeddings.sqlite-wal"  # what the restarted daemon wrote to the file
        out["restart_written"] = wal.stat().st_size if wal.exists() else 0
    return out


def run(quick: bool) -> dict[str, Any]:
    sizes = [1_000, 10_000] if quick else [1_000, 10_000, 100_000]
    print("embedding: a daemon's background vectors vs the raw embed of the same texts")
    print("      N | raw wall s | raw CPU s | daemon wall s | daemon CPU s | wall ratio | "
          "CPU ratio | restart")
    rows, results = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for n in sizes:
            home = Path(tmp) / f"emb-{n}"
            common.build_store(home, n, seed=n)
            raw_wall, raw_cpu = raw_embed(texts_of(n, n))
            d = daemon_build(home, n)
            r = {"n": n, "raw_wall": raw_wall, "raw_cpu": raw_cpu, **d,
                 "wall_ratio": d["wall"] / raw_wall, "cpu_ratio": d["cpu"] / raw_cpu}  # fmt: skip
            kept = d["restart_vectors"] == n and not d["restart_written"]
            restart = ("recomputed nothing" if kept else
                       f"{d['restart_vectors']} vectors, {d['restart_written']} B written")
            results.append(r)
            print(f"{n:7} | {raw_wall:10.2f} | {raw_cpu:9.2f} | {d['wall']:13.2f} | "
                  f"{d['cpu']:12.2f} | {r['wall_ratio']:9.2f}x | {r['cpu_ratio']:8.2f}x | "
                  f"{restart}, RSS {d['restart_rss'] / MB:.0f} MB", flush=True)
            rows.append([f"{n:,}", f"{raw_wall:.2f}", f"{raw_cpu:.2f}", f"{d['wall']:.2f}",
                         f"{d['cpu']:.2f}", f"{r['wall_ratio']:.2f}x", f"{r['cpu_ratio']:.2f}x",
                         f"{d['rss'] / MB:.0f}", f"{d['restart_rss'] / MB:.0f}",
                         restart])  # fmt: skip
    last = results[-1]
    met = last["wall"] <= GOAL_S and last["n"] >= 100_000
    value = (f"{last['wall']:.1f} s for {last['n']:,} ({last['wall_ratio']:.2f}x the raw embed, "
             f"{last['raw_wall']:.1f} s)")  # fmt: skip
    notes = [
        "The daemon embeds in the background on a thread of its own (gossip/node/embedding.py): "
        "SemanticIndex.STEP (8,192) memories a call, their texts read from the views in "
        "batches of 1,024, one commit a call into embeddings.sqlite (WAL, synchronous=NORMAL: "
        "derived data). The raw embed is one call of WordLlamaEmbedder.embed on the same "
        "texts in this process. CPU seconds count every thread (the tokenizer's too); on a "
        "shared machine they are the steadier figure.",
        "A restart reads the vectors back and embeds nothing; with nothing to embed its "
        "background task never reads the model (RSS after restart, before any query).",
    ]
    if quick:
        notes.append("--quick: judged at 10k memories; the full run measures 100k.")
    return {
        "name": "embedding",
        "title": "Embedding: a daemon's background vectors vs the raw embed",
        "command": "python scripts/bench/embedding.py" + (" --quick" if quick else ""),
        "headline": (f"embedding: a daemon built {last['n']} vectors in {last['wall']:.1f} s = "
                     f"{last['wall_ratio']:.2f}x the raw embed (CPU {last['cpu_ratio']:.2f}x)"),
        "goals": [{"goal": f"embedding 100k memories ≤ {GOAL_S:g} s on 2 cores (a daemon's)",
                   "value": value, "met": met}],
        "tables": [{
            "caption": "Seconds to embed N memories: raw (this process) vs a daemon's background",
            "columns": ["memories", "raw wall s", "raw CPU s", "daemon wall s", "daemon CPU s",
                        "wall / raw", "CPU / raw", "daemon RSS MB", "restart RSS MB",
                        "restart"],
            "rows": rows,
        }],
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
    ax.plot(ns, [s["raw_wall"] for s in sizes], "s-", label="raw embed (this process)")
    ax.plot(ns, [s["wall"] for s in sizes], "o-", label="a daemon's background build")
    ax.axhline(GOAL_S, ls=":", color="grey", label=f"goal at 100k: {GOAL_S:g} s")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("memories")
    ax.set_ylabel("seconds")
    ax.set_title("Embedding N memories", fontsize=10)
    common.plain_log_axes(ax)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(outdir / "embedding.png", dpi=110)
    plt.close(fig)
    return ["embedding.png"]


# Hand-run comparisons and the design that would meet a missed goal, each with its date and
# command: history, not this run's figures (scripts/bench/report.py prints it after the notes).
HISTORY = [
    (
        "**Hand-run, 2026-12-04 18:31 UTC** (`python scripts/bench/embedding.py`): a daemon built "
        "100,000 vectors in 13.49 s against a raw embed of 8.47 s (CPU 10.31 against 8.38 s)."
    ),
    (
        "Three runs of this benchmark in the same hour gave 13.5, 18.2 and 19.9 s for the "
        "daemon's 100k (raw 8.5–13.6 s, daemon CPU 10.3–10.7 s): the machine is shared, so read "
        "the ratios and CPU seconds rather than the walls. The daemon's time includes reading the "
        "model at its first catch-up (0.2–0.3 s; the raw embed reads it before its clock starts), "
        "which is most of the ratio at 1,000."
    ),
    (
        "Before this change (main at 70cf722, the same commands on the same machine an hour "
        "earlier): the daemon took 0.82 / 4.16 / 52.80 s for 1k / 10k / 100k (CPU 0.27 / 2.02 / "
        "21.72 s) against a raw embed of 0.58 / 3.09 / 31.71 s (CPU 0.19 / 1.70 / 18.06 s). What "
        "changed: the model's table is int8 with a scale per token and each text's tokens are "
        "summed one text at a time by einsum (np.add.reduceat over a batch's gathered rows ran "
        "~5x slower than that loop; pyinstrument put 2/3 of the old embed there), the tokenizer's "
        "encode_batch_fast, one commit per 8,192 vectors without an fsync, ids filed in bulk. "
        "What is left is the tokenizer (60 % of a catch-up's time in pyinstrument) and reading "
        "the texts back from the views (json of the tags, 6 %)."
    ),
    (
        "The agents' benchmark once reported 230 s for a daemon's 100k vectors: its wait polled "
        "/v1/status every 0.2 s, and at 100k a status decodes every record of the document (~7 s, "
        "on the replica's thread, holding the GIL), so the poll starved the embedding it waited "
        "for (here, at 100k, the status request itself timed out: \"the replica did not answer in "
        "time\"). common.wait_vectors now reads embeddings.sqlite instead. That status cost is "
        "gone: status and metrics now count from the views' tally (see \"Status and metrics\" "
        "below: ~1 ms at 100k)."
    ),
]


if __name__ == "__main__":
    common.main(run, __doc__)
