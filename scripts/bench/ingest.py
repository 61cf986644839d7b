"""Ingest benchmark: signed records arriving from peers, through gate + store.

Baseline, measured in the same run: the raw single-core Ed25519 verify rate of the
`cryptography` package. Each record here arrives as its own signed update (one local
transaction of its writer), so the gate verifies one signature per record (the update
header's, which covers the record's bytes: docs/threat-model.md, "Record signatures")
besides decoding, checking, applying and committing it; the ratio is records/s over raw
verifies/s.

Also: the time to reopen the replica in a fresh process, against applying its snapshot
alone, and the peak RSS of each.

Usage: python scripts/bench/ingest.py [--quick]   (--quick: 10k records only)
The last line is the headline: `ingest: <N> records/s = <R>x raw single-core verify`.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from pycrdt import Doc, Map

from crdt import Identity, Replica, records
from crdt.updates import derive_client, sign_update


def raw_verify_rate(seconds: float = 1.0, tries: int = 3) -> float:
    """The best of a few runs: the steadiest (least disturbed) measure of the baseline,
    which is also the least flattering one for our ratio."""
    return max(_raw_verify_rate(seconds) for _ in range(tries))


def _raw_verify_rate(seconds: float) -> float:
    ident = Identity.generate()
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    key = Ed25519PublicKey.from_public_bytes(ident.public_key)
    msgs = [os.urandom(400) for _ in range(256)]
    sigs = [ident.sign(m) for m in msgs]
    n = 0
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        for m, s in zip(msgs, sigs, strict=True):
            key.verify(s, m)
        n += len(msgs)
    return n / (time.perf_counter() - t0)


def make_updates(n: int, authors: int = 8, per_update: int = 1) -> list[bytes]:
    """``n`` records (memories of ~400 B) from ``authors`` writers, ``per_update`` records
    in each signed update (one local transaction)."""
    out: list[bytes] = []
    per = n // authors
    for a in range(authors):
        ident = Identity.generate()
        epoch = 1000 + a
        client = derive_client(ident.public_id, epoch)
        doc = Doc(client_id=client)
        recs = doc.get("records", type=Map)
        captured: list[bytes] = []
        doc.observe(lambda e, c=captured: c.append(e.update))
        count = per if a < authors - 1 else n - per * (authors - 1)
        clock = 0
        for first in range(0, count, per_update):
            recs_now = [
                records.memory(
                    ident,
                    f"lesson {i} from writer {a}: provider {i % 17} drops requests at "
                    f"{i % 24:02d}:00 UTC; retry with backoff and prefer the fallback model. "
                    + "x" * 160,
                    category="anti-pattern",
                    subject=f"provider:{i % 17}",
                    tags=["outage", f"hour-{i % 24}"],
                    ts=1_790_000_000_000 + i,
                )
                for i in range(first, min(first + per_update, count))
            ]
            with doc.transaction():
                for rec in recs_now:
                    recs[rec.id] = rec.to_value()
            upd = captured.pop()
            end = clock + len(recs_now)
            su = sign_update(ident, epoch=epoch, update=upd, start=clock, end=end, ts=1)
            clock = end
            out.append(su.raw)
    return out


_REOPEN = """
import sqlite3, sys, time
from pycrdt import Doc
from crdt import Replica
home, what = sys.argv[1], sys.argv[2]
t = time.perf_counter()
if what == "replica":
    r = Replica.open(home)
    dt = time.perf_counter() - t
    n = len(r.records())
    r.close()
else:  # the baseline: just apply the stored snapshot to an empty document
    doc = sqlite3.connect(home + "/store.db").execute("SELECT doc FROM snapshot").fetchone()[0]
    t = time.perf_counter()
    Doc().apply_update(doc)
    dt, n = time.perf_counter() - t, len(doc)
# VmHWM, not ru_maxrss: Linux carries ru_maxrss across exec from the parent.
hwm = next(line for line in open("/proc/self/status") if line.startswith("VmHWM"))
print(dt, n, int(hwm.split()[1]) / 1024)
"""


def measure(home: Path, what: str) -> tuple[float, int, float]:
    """(seconds, records or snapshot bytes, peak RSS MB) of a fresh process."""
    out = subprocess.run(
        [sys.executable, "-c", _REOPEN, str(home), what], capture_output=True, text=True,
        check=True, timeout=600,
    ).stdout.split()  # fmt: skip
    return float(out[0]), int(out[1]), float(out[2])


def bench(
    n: int, batch: int, raw_rate: float, keep: bool = False, per_update: int = 1
) -> dict[str, object]:
    """Ingest ``n`` records as peer updates; records/s, and the reopen figures if ``keep``."""
    updates = make_updates(n, per_update=per_update)
    home = Path(tempfile.mkdtemp(prefix="sm-bench-"))
    try:
        r = Replica.open(home)
        gc.collect()
        t0 = time.perf_counter()
        cpu0 = time.process_time()
        for k in range(0, len(updates), batch):
            outs = r.ingest_batch(updates[k : k + batch], source="bench")
            bad = [o for o in outs if o.status != "applied"]
            if bad:
                raise SystemExit(f"unexpected outcome: {bad[0]}")
        dt = time.perf_counter() - t0
        cpu = time.process_time() - cpu0
        rate = n / dt
        shape = f"{per_update} per update"
        print(
            f"  {n:>7} records ({shape}), batches of {batch:>6}: {dt:6.2f} s  "
            f"{rate:8.0f} records/s = {rate / raw_rate:.2f}x raw single-core verify "
            f"(this process: {cpu / n * 1e6:.0f} µs CPU per record)"
        )
        row: dict[str, object] = {
            "records": n, "per_update": per_update, "batch": batch, "seconds": dt,
            "records_per_s": rate, "ratio": rate / raw_rate, "main_cpu_us": cpu / n * 1e6,
        }  # fmt: skip
        if keep:
            r.snapshot()
            r.close()
            row["reopen"] = reopen(home, n)
        else:
            r.close()
        return row
    finally:
        shutil.rmtree(home, ignore_errors=True)


IMPORT_RECORDS = 20_000


def cli_import(n: int, raw_rate: float, runs: int = 3,
               env: dict[str, str] | None = None) -> dict[str, object]:  # fmt: skip
    """`gossip import` of an export of ``n`` one-record updates into a fresh reader (its
    own `gossip init`), as a whole process: what a user runs. The process's fixed cost,
    an import of an empty export into another fresh reader (interpreter, imports, opening
    the replica and its views), is measured alternately and subtracted."""
    from gossip.exportfile import encode_export

    env = {**os.environ, **(env or {})}
    tmp = Path(tempfile.mkdtemp(prefix="sm-bench-import-"))
    try:
        full, empty = tmp / "full.export", tmp / "empty.export"
        full.write_bytes(b"".join(encode_export(make_updates(n))))
        empty.write_bytes(b"".join(encode_export([])))

        def once(k: int, export: Path) -> float:
            home = tmp / f"reader-{k}-{export.stem}"
            gossip = [sys.executable, "-m", "gossip.cli", "--home", str(home)]
            subprocess.run([*gossip, "init", "--name", "reader"], env=env, check=True,
                           capture_output=True, timeout=120)  # fmt: skip
            t0 = time.perf_counter()
            subprocess.run([*gossip, "import", str(export)], env=env, check=True,
                           capture_output=True, timeout=1200)  # fmt: skip
            dt = time.perf_counter() - t0
            shutil.rmtree(home)
            return dt

        walls, fixed = [], []
        for k in range(runs):
            fixed.append(once(k, empty))
            walls.append(once(k, full))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    wall, start = statistics.median(walls), statistics.median(fixed)
    rate = n / (wall - start)
    print(f"  `gossip import` of {n} records (fresh reader, {runs} runs): {wall:.2f} s, "
          f"process start {start:.2f} s: {rate:.0f} records/s = {rate / raw_rate:.2f}x raw "
          "single-core verify")  # fmt: skip
    return {"records": n, "wall_s": wall, "start_s": start, "records_per_s": rate,
            "ratio": rate / raw_rate}  # fmt: skip


def reopen(home: Path, n: int) -> dict[str, float]:
    t_open, count, rss_open = measure(home, "replica")
    t_apply, size, rss_apply = measure(home, "snapshot")
    assert count == n, (count, n)
    print(
        f"  reopen of a {n}-record replica (fresh process): {t_open:.2f} s, peak RSS "
        f"{rss_open:.0f} MB; applying its snapshot ({size / 1e6:.1f} MB) alone: {t_apply:.2f} s, "
        f"{rss_apply:.0f} MB -> reopen = {t_open / t_apply:.1f}x snapshot apply"
    )
    return {
        "open_s": t_open, "open_rss_mb": rss_open, "snapshot_mb": size / 1e6,
        "apply_s": t_apply, "apply_rss_mb": rss_apply,
    }  # fmt: skip


NOTES = [
    "`gossip import` (issue 18): the command used to offer the file 512 updates per "
    "`ingest_batch` call, so nothing overlapped: each call verified its signatures while "
    "the gate's thread waited, then committed while the workers idled (0.51× in issue "
    "18's measurement). It now makes one call, the pipeline a peer's catch-up runs "
    "(`ChunkedLocal` and the import both pass `between`: the node runs its queued reads "
    "there, the import reports its progress), so the next chunk verifies while this one "
    "commits. Paired against the old path on this shared machine (15 pairs, init and "
    "process start included) it takes 0.92× the wall and 0.94× the CPU: the gain is small "
    "because the gate's own thread, not the waiting, is the bottleneck. By CPU time on "
    "that thread (10k one-record updates in-process, median of 3): the gate alone ~99 µs "
    "per record; observing the main document for listeners +13 µs; the views (memories "
    "table, FTS5, the semantic queue) +28 µs; ~140 µs in all, beside ~100 µs of verifying "
    "in the workers. 0.9× needs that thread under ~115 µs per record. The views now get "
    "one batch per commit (`Replica.on_changes`, the records the gate parsed, one "
    "`executemany` each into the memories table and FTS5), which saved no measurable CPU "
    "(views +31 µs per record before and after, 10k in-process, paired): the cost is "
    "SQLite's (the table's indexes, FTS5's tokenizer), building each row, and pycrdt "
    "turning each change into Python for the observer, not the calls. The observer now "
    "listens on yrs' own maps (pycrdt's wrapper made Python objects of each event's "
    "target, path and transaction: 8 µs an update applied, now 2). What is left: decode "
    "the update's structure natively (`crdt.wire.scan`, ~7 µs of a one-record update's "
    "~80 µs in the gate, is its largest piece of Python) and the `first_seen` table's "
    "inserts (HISTORY, 2026-12-04).",
    "Each record arrives as its own signed update (one local transaction of its writer, "
    "the common case), from 8 writers, and goes through the whole gate: decoding, the "
    "structure checks, the record checks, the update header's signature (which covers "
    "every record's bytes; a record's own signature is checked by whoever shows it alone), "
    "planning, the document (the records' values nulled) and the durable SQLite commit "
    "(WAL, `synchronous=FULL`). Baseline: the raw single-core Ed25519 verify rate of "
    "`cryptography`, best of three 1-second runs in the same process.",
    "Where the time goes: per one-record update the gate verifies one signature (two until "
    "2026-12-05), about 60 µs with libsodium, in worker processes (`crdt/signatures.py`), and "
    "spends about 75 µs of Python in the gate's own process (the CPU column): decoding the header "
    "(8 µs), reading the Yjs bytes and pycrdt's second opinion (15 µs), parsing and checking the "
    "record (11 µs), planning, the document and the SQLite row (until 2026-12-07 a twin document "
    "too). With two signatures, about 195 µs of CPU per record on 2 cores put the ceiling near "
    "1.08× a 105 µs raw verify (0.93-0.99× reached); with one, ~135 µs puts it near 1.55×. Batches "
    "of 100 reach less (0.62-0.76×): each pays the workers' round trip without a next batch to "
    "overlap it with. Another process writing to the same disk hurts most: the durable commit waits"
    " for fsync (0.44× at 100k in a run beside four test suites).",
    "Why processes: with the signatures verified in a thread pool (the previous design), "
    "a verify thread had to win the GIL back from the gate's thread after every "
    "signature, so the verifiers starved while the next chunk was being checked: 0.52× at "
    "100k, 0.70× at 10k. Worker processes take a batch of signatures at a time over a "
    "pipe and share no GIL. A batch of fewer than 64 signatures is still verified in the "
    "calling thread (no worker is started for a handful).",
    "Cyclic garbage collection is paused during a batch: a batch keeps its outcomes alive "
    "until it returns, and at 100k updates in one batch the full collections over them "
    "took a quarter of the time (0.64× with them, 0.82-0.99× without).",
    "Issue 8's goal of 1.5× on 2 cores is now within reach for one-record updates "
    "(1.38-1.47× in hand-runs) but not yet met: the gate's own Python (~75 µs a record) "
    "on one core is what is left, and a native decode of the update's structure is the "
    "next cut. When an update carries several records the header signature is shared "
    "and the ratio passes 3× (10 per update).",
]


def run(quick: bool) -> dict[str, object]:
    """The contract of scripts/bench/all: run, print as it goes, return the figures."""
    raw = raw_verify_rate()
    print(f"raw single-core Ed25519 verify (cryptography): {raw:.0f}/s")
    sizes = [10_000] if quick else [10_000, 100_000]
    rows = []
    for n in sizes:
        rows.append(bench(n, 100, raw))
        rows.append(bench(n, n, raw, keep=n == sizes[-1]))
    rows.append(bench(sizes[0], sizes[0], raw, per_update=10))
    imported = cli_import(IMPORT_RECORDS, raw, runs=1 if quick else 3)
    head = rows[-2]
    headline = (
        f"ingest: {head['records_per_s']:.0f} records/s = {head['ratio']:.2f}x raw "
        "single-core verify"
    )
    reo = head["reopen"]
    assert isinstance(reo, dict)
    return {
        "name": "ingest",
        "title": "Ingest: signed records from peers through gate + store",
        "command": "scripts/bench/ingest.py" + (" --quick" if quick else ""),
        "headline": headline,
        "raw_verify_per_s": raw,
        "goals": [
            {"goal": "≥ 0.8× raw single-core verify (issue 2's target)",
             "value": f"{head['ratio']:.2f}×", "met": head["ratio"] >= 0.8},
            {"goal": "≥ 1.3× raw single-core verify on 2 cores (issue 18)",
             "value": f"{head['ratio']:.2f}×", "met": head["ratio"] >= 1.3},
            {"goal": "≥ 1.5× raw single-core verify on 2 cores (issue 8's goal)",
             "value": f"{head['ratio']:.2f}×", "met": head["ratio"] >= 1.5},
            {"goal": f"`gossip import` of a {IMPORT_RECORDS:,}-record export (fresh reader, "
                     "process start subtracted) ≥ 0.9× raw single-core verify (issue 18)",
             "value": f"{imported['ratio']:.2f}×", "met": imported["ratio"] >= 0.9},
        ],
        "tables": [
            {
                "caption": "records/s through the whole gate, against the raw verify rate",
                "columns": ["records", "per update", "batch", "records/s", "ratio",
                            "µs CPU/record (gate process)"],
                "rows": [[r["records"], r["per_update"], r["batch"], round(r["records_per_s"]),
                          f"{r['ratio']:.2f}×", round(r["main_cpu_us"])] for r in rows],
            },
            {
                "caption": "`gossip import FILE` as a whole process (an export of one-record "
                           "updates from 8 writers, into a fresh reader with its views)",
                "columns": ["records", "wall s", "process start s", "records/s", "ratio"],
                "rows": [[imported["records"], f"{imported['wall_s']:.2f}",
                          f"{imported['start_s']:.2f}", round(imported["records_per_s"]),
                          f"{imported['ratio']:.2f}×"]],
            },
            {
                "caption": f"reopening the {head['records']}-record replica (fresh process)",
                "columns": ["what", "seconds", "peak RSS MB"],
                "rows": [["Replica.open", f"{reo['open_s']:.2f}", round(reo["open_rss_mb"])],
                         [f"apply its {reo['snapshot_mb']:.0f} MB snapshot alone",
                          f"{reo['apply_s']:.2f}", round(reo["apply_rss_mb"])]],
            },
        ],
        "rows": rows,
        "import": imported,
        "notes": NOTES,
        "plots": [],
    }


def plot(result: dict[str, object], outdir: Path) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = result["rows"]
    assert isinstance(rows, list)
    labels = [f"{r['records'] // 1000}k, {r['per_update']}/update,\nbatches of {r['batch']}"
              for r in rows]  # fmt: skip
    fig, ax = plt.subplots(figsize=(8, 3.6))
    ax.barh(labels, [r["records_per_s"] for r in rows], color="#4c78a8")
    raw = result["raw_verify_per_s"]
    ax.axvline(raw, color="black", ls="--", lw=1, label="raw single-core verify")
    ax.axvline(0.8 * raw, color="#e45756", ls=":", lw=1, label="0.8× (target)")
    ax.set_xlabel("records/s")
    ax.legend(loc="lower right", fontsize=8)
    ax.set_title("Ingest through gate + store")
    fig.tight_layout()
    fig.savefig(outdir / "ingest.png", dpi=110)
    plt.close(fig)
    return ["ingest.png"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="10k records only")
    ap.add_argument("--json", type=Path, help="also write the figures to this file")
    args = ap.parse_args()
    result = run(args.quick)
    if args.json:
        args.json.write_text(json.dumps(result, indent=1))
    print(result["headline"])


# Hand-run comparisons and the design that would meet a missed goal, each with its date and
# command: history, not this run's figures (scripts/bench/report.py prints it after the notes).
HISTORY = [
    (
        "**Where the gate's thread goes at 100k, and what did not help (issue 18, hand-run "
        "2026-12-07, before 16:00 UTC)**. py-spy of that thread over one `ingest_batch` of "
        "100k one-record updates into a fresh bare replica (250 Hz) is flat: no frame holds "
        "more than 6 % of the samples as its own: json decoding 6 %, the store's transaction "
        "exit 5 %, `Store.append`'s lines ~9 % together, `frozen.built` 4 %; every snapshot "
        "re-hashes the stored updates it stands on (`Store._covered`, 2.3 %: linear over a "
        "catch-up since snapshots come at geometric sizes). A 16 MiB page cache for the "
        "store instead of the default 2 MB (the growing `first_seen` tree was the suspect): "
        "8496 / 9788 records/s without, 7483 / 8687 with (2 pairs, alternating): no gain. "
        "Cyclic GC off for the whole batch (it is paused per chunk already): one gen-2 "
        "collection left, no gain. What would meet 1.3x at 100k: the thread at ~75-80 µs a "
        "record from ~89, i.e. the decode, `check_structure` and `check_items` (~35-45 µs) "
        "in native code returning a compact result, since moving them to the worker "
        "processes in Python cost the thread as much in unpickling as it saved (below)."
    ),
    (
        "**One document, no twin (issue 18, hand-run 2026-12-07 12:49 UTC)**: each update "
        "is applied once (to the document, nulled) instead of twice (a twin, then the "
        "document). The full run of 12:23 read 1.05x for one batch of 10k against 1.34x "
        "the run before, while every other row improved (100k in one batch 0.88 -> 0.99x, "
        "121 -> 101 µs of CPU a record). One `ingest_batch` of 10k one-record updates into "
        "a fresh bare replica, the tree before (ed9a0ce) and the change alternately, 6 "
        "pairs in both orders, `nice -n 5`: records/s 9977 / 10150 (means), the gate's "
        "thread 82.5 / 76.5 µs a record (medians); whichever ran second in a pair was "
        "slower in 5 of 6, so the 10k row of that run is this machine's noise, and the "
        "change saves ~6 µs of CPU a record."
    ),
    (
        "**One signature per update (issue 18, hand-run 2026-12-05 07:35 UTC)**: the gate "
        "verifies the update header's signature, which covers the digest of every byte of "
        "every record in the update, and no longer each record's own (`record-author` ties "
        "each record to the header's author; the argument is in docs/threat-model.md, "
        "\"Record signatures\"). `scripts/bench/ingest.py --quick` from main (019c92c) and "
        "the change, alternately, 2 rounds, `nice -n -5`, a quiet machine: headline (10k "
        "one-record updates in one batch) 0.98 / 1.47× and 0.90 / 1.38× (issue 18's ≥ 1.3×: "
        "met); 10 records per update 1.70 / 3.27× and 1.61 / 3.13×; `gossip import` of "
        "20,000 0.75 / 0.80× and 0.71 / 0.79× (issue 18's ≥ 0.9×: still missed; the import's "
        "thread, gate and views, is its bound, not the verifiers). The whole benchmark after "
        "it (`scripts/bench/all --only ingest,catchup`, 07:34 UTC): 1.23× at 10k but 0.94× "
        "at 100k, where the gate's own thread spends 95 µs a record against 70 µs at 10k "
        "(the CPU column): at 100k that thread, not the verifiers, is the bound, and what "
        "grows with the store is mostly the `first_seen` table's inserts (a hash key: "
        "8-11 µs a row at first, 16-20 µs by 100k, store-only, HISTORY of 2026-12-04). "
        "Issue 18's 1.3× at 100k needs that table keyed by 32 raw bytes or by arrival "
        "(schema 3) and the update's structure decoded natively."
    ),
    (
        "**`gossip import`, hand-run 2026-12-04 18:51 UTC** (`ingest.cli_import(20000, runs=3)` "
        "under `nice -n -10`, a shared machine): 6.16 s wall, process start 0.34 s, 3434 "
        "records/s = 0.50-0.60× the raw verify rate measured before and after it (5678 and "
        "8001/s)."
    ),
    (
        "The views fed one batch per commit (2026-12-04), paired with main: views +31 µs per "
        "record before and after (10k one-record updates from 8 writers into a fresh replica, "
        "`time.thread_time()` around `ingest_batch`, main and this branch alternately, 2 pairs: "
        "127.4 / 129.2 µs with the views on main, 123.5 / 126.4 µs in bulk, 90-97 µs without "
        "views on both); `cli_import(20000)` in 3 pairs on the shared machine gave 0.62 / 0.45, "
        "0.45 / 0.54 and 0.27 / 0.27× (main / bulk): noise."
    ),    (
        "**The gate's CPU per record, hand-run 2026-12-04 21:10-21:30 UTC** (issues 14 and 18; "
        "`time.thread_time()` around one `ingest_batch` of 10k one-record updates from 8 "
        "writers, the same bytes for every tree, into a fresh replica in-process; the trees "
        "run alternately on the shared machine, load 2-4 from other work). The gate alone (no "
        "listeners, as in the table above), 5 rounds of the tree before the restructure "
        "(0a215e9) / main / this change: medians 76.6 / 87.5 / 83.4 µs (71.1-83.7, 86.4-95.1, "
        "80.9-90.4). With the views `gossip import` opens (memories table, FTS5, the semantic "
        "queue), 5 pairs main / this change: 127.1 / 114.1, 134.5 / 123.8, 130.5 / 107.0, "
        "119.5 / 105.3, 120.1 / 115.2 µs (medians 127.1 / 114.1: -13 µs, each pair lower). "
        "`scripts/bench/ingest.py --quick`, 2 rounds before / main / this change, the CPU "
        "column of the 10k batch: 78 / 92 / 90 and 84 / 99 / 88 µs. `ingest.cli_import(20000, "
        "runs=1)` in 3 pairs main / this change: 0.60 / 0.73, 0.50 / 0.42, 0.39 / 0.49× (raw "
        "verify 9100-9570/s): noise on this machine. Where main's extra gate time goes, by "
        "stage timings paired with the old tree: the `first_seen` insert, +2.5 µs per record "
        "at 10k, and growing with the table (a store-only test, 100k one-record rows in "
        "commits of 2048: ~7 µs per row without it throughout, 8-11 µs with it at first and "
        "16-20 µs by 100k): a record id is a hash, so each commit dirties pages all over that "
        "B-tree; it was already one `executemany` per commit, so batching it through "
        "`on_changes` would change nothing (the tally and the views' fields column are in "
        "the views, not in the gate's figure). The rest of the gap is spread thin (the parsed "
        "records kept for the listeners until the commit, the nesting bounds; not measured "
        "apart). Cut in pure "
        "Python: the observer on yrs' own maps (8 -> 2 µs an update applied); frozen "
        "dataclasses built without their per-field `__setattr__` (`crdt/frozen.py`: the "
        "stored row 2.3 µs, the header 1.2 µs, the update, the record, the plan, the "
        "outcome); base64url through `binascii` (1.8 -> 1.3 µs a signature, the canonical "
        "check kept); the record's signature text kept for the listeners (no re-encoding); "
        "the scanner's structs as named tuples (1.3 -> 0.3 µs each). Issue 14's goal (the "
        "gate's CPU per record no worse than before the restructure) is not met: ~7 µs "
        "remain, ~2.5 of them `first_seen`'s (keyed by arrival instead of by record id, its "
        "inserts would append, as the updates' do). Issue 18's 0.9× needs the import's thread "
        "under ~115 µs: in-process it is now at 105-124 µs."
    ),
    (
        "**The gate's CPU per record, hand-run 2026-12-04 21:30-22:00 UTC** (issue 14; the "
        "same input and `time.thread_time()` around one `ingest_batch` as the entry above). "
        "Where main's extra time went: not into more work. Counted by callgrind "
        "(deterministic, the gate's process only, setup subtracted), main's gate runs 533k "
        "instructions per record against 565k on the tree before the restructure; by "
        "`getrusage` the gap was in user time (+5 µs) more than in the kernel's (+1-2 µs). "
        "The rest is memory: Python's peak during the batch (tracemalloc) was 3.0 KB per "
        "record before, 4.0 KB on main, because each candidate kept the records the gate "
        "parsed (body, fields, both signature spellings, ~1 KB each) until its chunk was "
        "committed, so later allocations landed on memory not in the cache (the likely "
        "reason; not measured apart). Those records serve only the listeners (`_tell`): the "
        "candidate now keeps their ids (for `first_seen`) and keeps the records only when a "
        "listener is registered (the views keep them as before: with the views 110.9 / "
        "107.9 and 112.0 / 109.8 µs, main / this change). Peak 3.5 KB per record. "
        "`first_seen`'s inserts cost a few thousand instructions per record in SQLite and, "
        "more, I/O: 14,637 `pwrite64` and 5,247 `pread64` calls per 10k records against "
        "12,840 and 4,319 before (`strace -c`; its dirty pages also go through each WAL "
        "checkpoint); its rows are now inserted in key order within a commit, which changes "
        "nothing at 10k (1.7 µs a row either way, store-only) and less growth at 100k (8.2 "
        "-> 6.1 µs a row, store-only). A cheaper table: a 32-byte BLOB key instead of 64 "
        "hex characters (4.4 µs a row at 100k, store-only) needs schema 3, a migration and "
        "`repair`'s salvage reading both; keyed by arrival, the views' lookups by record id "
        "would need an index of their own (the same random inserts). Measured, alternating "
        "on the shared machine: fresh process, 6 rounds before / main / this change: "
        "medians 75.0 / 81.6 / 79.3 µs (70.7-85.2, 79.4-88.3, 71.7-102.0); 4 fresh replicas "
        "per process, median of each, 3 rounds: 71.6 / 80.1 / 75.5, 81.5 / 80.0 / 79.0, "
        "74.1 / 75.1 / 74.3, and 3 pairs main / this change: 75.0 / 70.8, 73.9 / 71.1, 78.7 "
        "/ 69.9; then 5 pairs before / this change, fresh: 73.2 / 72.9, 71.9 / 74.0, 72.2 / "
        "75.3, 74.4 / 82.0, 74.5 / 78.1 (medians 73.2 / 75.3). After rebasing on main, 5 "
        "pairs main / this change, fresh: 83.5 / 79.1, 78.5 / 72.5, 79.6 / 76.1, 83.6 / "
        "77.6, 82.8 / 80.4 µs (medians 82.8 / 77.6, each pair lower). "
        "`scripts/bench/ingest.py --quick`, 2 rounds before / main / this change, the CPU "
        "column of the 10k batch: 75 / 80 / 76 and 73 / 76 / 79 µs (the batches of 100: 83 "
        "/ 92 / 88 and 78 / 83 / 94). Issue 14's goal: the gap to the old tree is now ~2 µs "
        "by the medians (within this machine's spread), from ~6.6; not shown met."
    ),
    (
        "**`first_seen` keyed by 32 raw bytes (schema 3), hand-run 2026-12-07 00:42-00:53 "
        "UTC** (store-only: `scripts/bench/first_seen_store.py`, 100k one-record updates "
        "through `Store.append` into a fresh store in commits of 2048, µs a row by wall, "
        "the median of the first 5 commits and of the last 5, ~90-100k; `PYTHONPATH` main "
        "(020639e, a TEXT hex key) and this change (BLOB) alternately, `nice -n 5`, the "
        "shared machine at load 1-2). Pages written, which load does not change (`--frames`: "
        "WAL frames a commit, checkpoints off): 367 / 312 a commit at first, 1718 / 1237 by "
        "100k, against 241 with no ids (`--table none`): the table's share by 100k -33%; its "
        "tree 2110 -> 1220 pages, 3 levels either way (smaller, not shallower); the file 53.7 "
        "-> 50.1 MB. On the VM's disk (`--dir /tmp`, `synchronous=FULL` as served), 6 pairs "
        "main / this change by 100k: 31.3 / 27.4, 35.9 / 22.0, 19.3 / 17.7, 32.4 / 23.4, 27.5 "
        "/ 16.5, 22.8 / 18.7 µs; the whole run's mean 27.0 / 20.3, 27.8 / 17.5, 17.9 / 14.0, "
        "19.6 / 17.8, 19.1 / 13.2, 18.4 / 17.1 (each pair lower). On tmpfs (`--dir /dev/shm`, "
        "no fsync: CPU and page copying only) the gain is small and the machine's noise as "
        "large: by 100k lower in 18 of 24 pairs (medians of three series 14.7 / 11.9, 14.2 / "
        "13.8, 13.2 / 11.7 µs; the least commit of the last 5, 10 pairs: 11.65 / 11.05), "
        "+0.3-0.5 µs at first (medians 6.5 / 7.0, least 6.2 / 6.5: in cache a BLOB key's "
        "insert costs SQLite more than a TEXT key's, 1.1 against 1.6-1.7 µs a row in "
        "memory), the whole run's mean unchanged (10.65 / 10.6). No ids at all: 4.5 µs a "
        "row throughout. A BLOB-keyed rowid table (`--table blob-rowid`) is no better (12.5 "
        "µs by 100k on tmpfs, 54.4 MB), so the table stays `WITHOUT ROWID`; base64 text "
        "keys (43 characters, pure SQLite) land between hex and BLOB by 100k. "
        "`Store.first_seen` of 14,286 ids ~40-45 ms either way (now one blob of keys cut in "
        "SQL: SQLite here is 3.40, without `unhex`). A schema-2 store of 100k rows is "
        "rewritten once when opened: ~0.36 s (open 425 against 65 ms)."
    ),
    (
        "**Tried and reverted: the gate's replica-free checks in the worker processes "
        "(issue 18, hand-run 2026-12-07 06:05 UTC)**. Where the import's time goes (py-spy "
        "`--idle --threads` of `gossip import` of the 20k export, 200 Hz): the gate's "
        "thread is busy throughout and never waits for a signature; of its samples in the "
        "import, 34% decoding, scanning and parsing the next chunk (`_prepare`), 10% the "
        "twin, 9% the store's commit, 6% the main document, 20% the views (the listeners) "
        "and 4% snapshots; the two verifier threads idle 73% of the time. Moving "
        "`_prepare`'s decode, `check_structure` and `check_items` into the workers beside "
        "the header's verification, their results sent back pickled (the thread keeps only "
        "planning, the twin and the commit): one `ingest_batch` of 20k one-record updates "
        "into a bare `Replica`, `time.thread_time()` and the workers' `/proc` CPU, main "
        "and the change alternately, 2 pairs: the gate's thread 103 / 105 -> 83 / 80 µs a "
        "record (unpickling the results costs it ~20 of the ~45 µs it no longer spends), "
        "the workers 70 / 74 -> 160 / 155 µs (the checks plus pickling them), wall 120 / "
        "121 -> 138 / 134 µs: on 2 cores the work moved is paid twice over and the three "
        "busy processes share two cores, so the change was reverted. It would pay only "
        "with more cores, or with the checks' results crossing as a compact form the "
        "gate's thread reads without building Python objects (native code). The views' "
        "listeners cost the thread 31 µs a record (`ReplicaHost`'s replica with views, "
        "134 µs, against 103 bare)."
    ),
]


if __name__ == "__main__":
    main()
