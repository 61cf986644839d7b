"""Hand-run, store-only: what ``first_seen``'s inserts cost as the store grows (ingest
HISTORY, 2026-12-07). Not a module of `scripts/bench/all`.

``--n`` one-record updates (300-byte raw, one item run, one record id each) go through
``Store.append`` into a fresh store in commits of ``--batch``; it prints µs a row of each
commit (wall and this thread's CPU), the median of the first 5 commits and of the last 5
(and the least of each: the figure other work on the machine disturbs least),
then one ``Store.first_seen`` of every 7th id and one of all. It measures whichever tree
is on PYTHONPATH, so the same script compares two trees:

    PYTHONPATH=/work/wt-base nice -n 5 python scripts/bench/first_seen_store.py --dir /dev/shm
    PYTHONPATH=. nice -n 5 python scripts/bench/first_seen_store.py --dir /dev/shm

``--table blob-rowid``: ``first_seen`` rebuilt as a BLOB-keyed rowid table before the
store opens (schema 3 trees only); ``--table none``: no record ids (the floor);
``--frames``: no WAL checkpoints, and pages written (WAL frames) per commit instead of
times, which do not depend on the machine's load.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import sqlite3
import statistics
import tempfile
import time
from pathlib import Path

from crdt.store import STORE_FILE, NewUpdate, Store


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--n", type=int, default=100_000)
    p.add_argument("--batch", type=int, default=2048)
    p.add_argument("--table", default="as-is", choices=["as-is", "blob-rowid", "none"])
    p.add_argument("--dir", default=None, help="where the store is made (tmpfs: no fsync cost)")
    p.add_argument("--frames", action="store_true")
    a = p.parse_args()
    med = statistics.median
    with tempfile.TemporaryDirectory(dir=a.dir) as d:
        home = Path(d)
        Store.create(home, {"author": "a" * 64, "epoch": "1"})
        if a.table == "blob-rowid":
            db = sqlite3.connect(home / STORE_FILE)
            db.executescript("DROP TABLE first_seen; CREATE TABLE first_seen "
                             "(record BLOB PRIMARY KEY, at INTEGER NOT NULL);")  # fmt: skip
            db.close()
        store = Store.open(home)
        wal = Path(f"{home / STORE_FILE}-wal")
        if a.frames:
            store._db.execute("PRAGMA wal_autocheckpoint=0")
        raw, t0 = os.urandom(300), 1_700_000_000_000
        wall, cpu, frames = [], [], []
        for b0 in range(0, a.n, a.batch):
            ups = [NewUpdate(client=7, start=i, end=i + 1, author="a" * 64, epoch=1,
                             checkpoint=False, raw=raw, source="local", received_at=t0 + i,
                             runs=((i, i + 1, "records"),),
                             records=() if a.table == "none" else (_rid(i),))
                   for i in range(b0, min(a.n, b0 + a.batch))]  # fmt: skip
            w0, t, c = wal.stat().st_size, time.perf_counter(), time.thread_time()
            store.append(ups)
            wall.append((time.perf_counter() - t) / len(ups) * 1e6)
            cpu.append((time.thread_time() - c) / len(ups) * 1e6)
            frames.append((wal.stat().st_size - w0) / (4096 + 24))
        some = [_rid(i) for i in range(0, a.n, 7)] if a.table != "none" else []
        t = time.perf_counter()
        got = store.first_seen(some)
        q_some, t = time.perf_counter() - t, time.perf_counter()
        every = store.first_seen()
        q_all = time.perf_counter() - t
        assert len(got) == len(some) and len(every) == (0 if a.table == "none" else a.n)
        pages, depth = store._db.execute(
            "SELECT count(*), max(length(path) - length(replace(path, '/', ''))) FROM dbstat "
            "WHERE name = 'first_seen'").fetchone()  # fmt: skip
        store.close()
        size = (home / STORE_FILE).stat().st_size
    if a.frames:
        print(f"{a.table:10s} WAL frames a commit of {a.batch}: first5 {med(frames[:5]):.0f} "
              f"last5 {med(frames[-5:]):.0f} all {sum(frames):.0f}; first_seen {pages} pages, "
              f"{depth} levels", flush=True)  # fmt: skip
        return
    print(f"{a.table:10s} wall first5 {med(wall[:5]):5.1f} last5 {med(wall[-5:]):5.1f} "
          f"(least {min(wall[:5]):5.1f} / {min(wall[-5:]):5.1f}) "
          f"mean {statistics.mean(wall):5.1f} | cpu first5 {med(cpu[:5]):5.1f} last5 "
          f"{med(cpu[-5:]):5.1f} mean {statistics.mean(cpu):5.1f} µs a row | first_seen of "
          f"{len(some)} ids {q_some * 1e3:.0f} ms, of all {q_all * 1e3:.0f} ms | file "
          f"{size / 1e6:.1f} MB", flush=True)  # fmt: skip


def _rid(i: int) -> str:
    return hashlib.sha256(i.to_bytes(8, "big")).hexdigest()


if __name__ == "__main__":
    main()
