"""Ingest benchmark: signed records arriving from peers, through gate + store.

Baseline, measured in the same run: the raw single-core Ed25519 verify rate of the
`cryptography` package. Every record costs at least two verifications here (the update
header and the record itself), so 1.0x means the gate runs at half of one core's raw
verify speed per signature... per record it is compared with one raw verify.

Usage: python scripts/bench/ingest.py [--quick] [--sizes 10000,100000]
The last line is the headline: `ingest: <N> records/s = <R>x raw single-core verify`.
"""

from __future__ import annotations

import argparse
import gc
import os
import resource
import shutil
import tempfile
import time
from pathlib import Path

from pycrdt import Doc, Map

from crdt import Identity, Replica, records
from crdt.updates import derive_client, sign_update


def raw_verify_rate(seconds: float = 1.5) -> float:
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


def make_updates(n: int, authors: int = 8) -> list[bytes]:
    """``n`` one-record signed updates (memories of ~400 B) from ``authors`` writers."""
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
        for i in range(per if a < authors - 1 else n - per * (authors - 1)):
            rec = records.memory(
                ident,
                f"lesson {i} from writer {a}: provider {i % 17} drops requests at "
                f"{i % 24:02d}:00 UTC; retry with backoff and prefer the fallback model. "
                + "x" * 160,
                category="anti-pattern",
                subject=f"provider:{i % 17}",
                tags=["outage", f"hour-{i % 24}"],
                ts=1_790_000_000_000 + i,
            )
            with doc.transaction():
                recs[rec.id] = rec.to_value()
            upd = captured.pop()
            su = sign_update(ident, epoch=epoch, update=upd, start=i, end=i + 1, ts=rec.ts)
            out.append(su.raw)
    return out


def rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def bench(n: int, batch: int, raw_rate: float, keep: Path | None = None) -> float:
    updates = make_updates(n)
    home = Path(tempfile.mkdtemp(prefix="sm-bench-"))
    try:
        r = Replica.open(home)
        gc.collect()
        t0 = time.perf_counter()
        for k in range(0, len(updates), batch):
            outs = r.ingest_batch(updates[k : k + batch], source="bench")
            bad = [o for o in outs if o.status != "applied"]
            if bad:
                raise SystemExit(f"unexpected outcome: {bad[0]}")
        dt = time.perf_counter() - t0
        rate = n / dt
        print(
            f"  {n:>7} records, batches of {batch:>6}: {dt:6.2f} s  {rate:8.0f} records/s "
            f"= {rate / raw_rate:.2f}x raw single-core verify"
        )
        if keep is not None:
            r.snapshot()
            r.close()
            reopen(home, n)
        else:
            r.close()
        return rate
    finally:
        shutil.rmtree(home, ignore_errors=True)


def reopen(home: Path, n: int) -> None:
    t0 = time.perf_counter()
    r = Replica.open(home)
    t_open = time.perf_counter() - t0
    snap = r._store.load_snapshot()
    assert snap is not None and len(r.records()) == n
    r.close()
    t0 = time.perf_counter()
    d = Doc()
    d.apply_update(snap[1])
    t_apply = time.perf_counter() - t0
    print(
        f"  reopen of a {n}-record replica: {t_open:.2f} s; applying its snapshot "
        f"({len(snap[1]) / 1e6:.1f} MB) alone: {t_apply:.2f} s = {t_open / t_apply:.1f}x; "
        f"peak RSS {rss_mb():.0f} MB"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="10k records only")
    args = ap.parse_args()
    raw = raw_verify_rate()
    print(f"raw single-core Ed25519 verify (cryptography): {raw:.0f}/s")
    sizes = [10_000] if args.quick else [10_000, 100_000]
    headline = 0.0
    for n in sizes:
        bench(n, 100, raw)
        headline = bench(n, n, raw, keep=Path() if n == sizes[-1] else None)
    print(f"ingest: {headline:.0f} records/s = {headline / raw:.2f}x raw single-core verify")


if __name__ == "__main__":
    main()
