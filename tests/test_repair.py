"""A damaged store has a way back (issue 17, item 5), on real SQLite files.

A byte flipped in a stored update, a torn or damaged write-ahead log, a store moved
away: each is refused loudly, with a message naming `gossip repair` (never opened with
fewer updates, never rebuilt silently); `repair` keeps every stored update that still
verifies, drops the rest, says how many of each, keeps host.key and the keyring; then a
peer's exchange brings back what was dropped. The refill uses the exchange's own data
path (``updates_for`` one side, ``ingest_batch`` the other); tests/test_repair_cli.py
does the same with real daemons and `gossip sync`.
"""

from __future__ import annotations

import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import crdt
from crdt import Replica, records
from crdt.repair import repair

ROOT = Path(__file__).resolve().parents[1]
CHILD_ENV = {**os.environ, "PYTHONPATH": str(ROOT)}
N = 40


def memories(r: Replica, n: int, first: int = 0) -> None:
    for i in range(first, first + n):
        r.put(records.memory(r.identity, f"lesson {i} " + "x" * 300, category="learning",
                             ts=1 + i))  # fmt: skip


def exchange(frm: Replica, to: Replica) -> int:
    """What ``to`` lacks of ``frm``, sent and ingested as an exchange does; how many applied."""
    outcomes = to.ingest_batch(frm.updates_for(to.state_vector()), source="peer")
    return sum(1 for o in outcomes if o.status == "applied")


def texts(r: Replica) -> set[str]:
    return {rec.fields["text"] for rec in r.records().values() if rec.kind == "memory"}


@pytest.fixture
def pair(tmp_path: Path):
    """A (with N memories and B in its keyring) and B (which holds all of A's), closed."""
    a_home, b_home = tmp_path / "a", tmp_path / "b"
    with Replica.open(a_home) as a, Replica.open(b_home) as b:
        memories(a, N)
        b.put(records.memory(b.identity, "b's own lesson", category="learning", ts=1))
        exchange(a, b)
        exchange(b, a)
        a.trust(b.author, "b")
        want = texts(a)
        assert texts(b) == want and len(want) == N + 1
    return a_home, b_home, want


def flip_in_update(home: Path, offset: int) -> None:
    """One byte of the ``offset``-th stored update changed, with plain SQLite (bit rot)."""
    db = sqlite3.connect(home / "store.db")
    seq, raw = db.execute("SELECT seq, raw FROM updates ORDER BY seq LIMIT 1 OFFSET ?",
                          (offset,)).fetchone()  # fmt: skip
    damaged = bytearray(raw)
    damaged[len(damaged) // 2] ^= 0x01
    db.execute("UPDATE updates SET raw = ? WHERE seq = ?", (bytes(damaged), seq))
    db.commit()
    db.close()


def test_a_flipped_byte_is_refused_then_repaired_then_refilled(pair) -> None:
    a_home, b_home, want = pair
    key_before = (a_home / "host.key").read_bytes()
    flip_in_update(a_home, N // 2)
    with pytest.raises(crdt.StoreCorrupt) as ei:
        Replica.open(a_home)
    assert "`gossip repair`" in str(ei.value), ei.value

    report = repair(a_home)
    print(report)  # the figure in docs/threat-model.md (pytest -s)
    # Every update is one memory of A's client (or B's): the damaged one is dropped, the
    # ones after it on A's client wait for it; all the others are kept.
    assert report.dropped == 1, report
    assert report.kept + report.dropped + report.waiting == N + 1, report
    assert report.kept >= N // 2 and report.keyring == 1 and report.readable, report
    assert report.removed == 0, report
    assert report.moved_to is not None
    moved = Path(report.moved_to)
    assert (moved / "store.db").exists() and moved.parent == a_home / "damaged"
    assert (a_home / "host.key").read_bytes() == key_before

    with Replica.open(a_home) as a, Replica.open(b_home) as b:
        assert len(texts(a)) == report.kept
        assert a.keyring().get(b.author) == "b"
        learned = exchange(b, a)
        assert learned == report.dropped + report.waiting
        assert texts(a) == want
        # A's new epoch: what it writes now never reuses a clock B holds.
        memories(a, 1, first=N)
        assert exchange(a, b) == 1
    with Replica.open(a_home) as a:  # and it opens again, as any store does
        assert len(texts(a)) == N + 2


def _crash_after_writes(home: Path, n: int) -> None:
    """A child writes ``n`` memories to ``home`` and is SIGKILLed: they live in the WAL."""
    code = """
        import os, signal, sys
        from crdt import Replica, records
        r = Replica.open(sys.argv[1])
        for i in range(int(sys.argv[2])):
            r.put(records.memory(r.identity, f"hot {i} " + "y" * 300, category="learning",
                                 ts=1000 + i))
        os.kill(os.getpid(), signal.SIGKILL)
    """
    p = subprocess.run([sys.executable, "-c", textwrap.dedent(code), str(home), str(n)],
                       capture_output=True, text=True, timeout=60, env=CHILD_ENV, cwd=ROOT)
    assert p.returncode == -signal.SIGKILL, p.stderr


def _hot_rows(path: Path) -> int:
    """How many updates plain SQLite sees in the store (its WAL included), read-only."""
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        assert db.execute("PRAGMA quick_check").fetchone()[0] == "ok"
        return db.execute("SELECT count(*) FROM updates").fetchone()[0]
    finally:
        db.close()


@pytest.mark.parametrize("damage", ["truncated", "torn-frame", "zeroed-tail"])
def test_a_wal_that_lost_commits_is_a_loud_loss_not_a_silent_one(tmp_path: Path,
                                                                 damage: str) -> None:  # fmt: skip
    a_home, b_home = tmp_path / "a", tmp_path / "b"
    Replica.open(a_home).close()
    _crash_after_writes(a_home, N)
    wal = a_home / "store.db-wal"
    assert wal.stat().st_size > 0
    # B gets every update A acknowledged, from an intact copy (as if it had synced).
    intact = tmp_path / "a-intact"
    shutil.copytree(a_home, intact)
    with Replica.open(intact) as a_copy, Replica.open(b_home) as b:
        exchange(a_copy, b)
        want = texts(b)
    assert len(want) == N

    data = bytearray(wal.read_bytes())
    if damage == "truncated":
        data = data[: len(data) // 3]
    elif damage == "torn-frame":  # a flipped byte in a frame: SQLite stops reading there
        data[len(data) // 2] ^= 0xFF
    else:
        data[len(data) // 2 :] = bytes(len(data) - len(data) // 2)
    wal.write_bytes(bytes(data))
    assert _hot_rows(a_home / "store.db") < N, "SQLite itself opens it, with fewer rows"

    with pytest.raises(crdt.StoreLost) as ei:
        Replica.open(a_home)
    message = str(ei.value)
    assert "missing" in message and "store.db-wal" in message, message
    assert "`gossip repair`" in message, message
    with pytest.raises(crdt.StoreLost):  # and again: nothing was rebuilt
        Replica.open(a_home)

    report = repair(a_home)
    assert report.kept < N and report.acknowledged is not None, report
    with Replica.open(a_home) as a, Replica.open(b_home) as b:
        assert len(texts(a)) == report.kept
        exchange(b, a)
        assert texts(a) == want


def test_a_store_moved_away_is_never_rebuilt_silently(pair) -> None:
    a_home, b_home, want = pair
    (a_home / "store.db").rename(a_home.parent / "elsewhere.db")
    with pytest.raises(crdt.StoreLost) as ei:
        Replica.open(a_home)  # what `gossip serve` (a Node) opens
    assert "missing" in str(ei.value) and "`gossip repair`" in str(ei.value), ei.value
    assert not (a_home / "store.db").exists()

    report = repair(a_home)
    assert (report.kept, report.dropped, report.readable, report.moved_to) == (0, 0, False,
                                                                                None)  # fmt: skip
    with Replica.open(a_home) as a, Replica.open(b_home) as b:
        exchange(b, a)
        assert texts(a) == want


def test_a_store_created_by_repair_for_an_existing_key_gets_a_new_epoch(pair) -> None:
    a_home, _, _ = pair
    with Replica.open(a_home) as a:
        author, epoch, client = a.author, a.epoch, a.client
    repair(a_home)
    with Replica.open(a_home) as a:
        assert a.author == author and a.epoch != epoch and a.client != client
        assert a.client == crdt.derive_client(author, a.epoch)
        assert len(texts(a)) == N + 1  # a healthy store: everything kept


def test_repair_keeps_when_each_record_was_first_seen(pair) -> None:
    """Receipt time bounds the signed time wherever time ranks (issue 17, item 3): a
    repair that made every record look new would undo that."""
    a_home, _, _ = pair
    with Replica.open(a_home) as a:
        before = a.receipts()
    assert len(before) == N + 1
    repair(a_home)
    with Replica.open(a_home) as a:
        assert a.receipts() == before


def test_repair_keeps_the_first_seen_times_of_a_schema_2_store(pair) -> None:
    """A store written by schema 2 (``first_seen`` keyed by the id's hex, not its bytes)
    that needs repairing: its times are salvaged all the same."""
    from tests.oldstores import as_schema_2

    a_home, _, _ = pair
    with Replica.open(a_home) as a:
        before = a.receipts()
    as_schema_2(a_home / "store.db", shift=-500, extra={"damaged": 1})
    report = repair(a_home)
    assert report.readable and report.kept == N + 1, report
    with Replica.open(a_home) as a:
        assert a.receipts() == {i: at - 500 for i, at in before.items()}


def test_repair_refuses_while_the_data_dir_is_held(pair) -> None:
    a_home, _, _ = pair
    with Replica.open(a_home), pytest.raises(crdt.StoreLocked):
        repair(a_home)
    assert not (a_home / "damaged").exists()


def test_a_store_sqlite_cannot_read_is_moved_aside_and_left_to_peers(pair) -> None:
    a_home, b_home, want = pair
    path = a_home / "store.db"
    path.write_bytes(b"not a database at all " * 200)
    with pytest.raises(crdt.StoreCorrupt) as ei:
        Replica.open(a_home)
    assert "`gossip repair`" in str(ei.value)
    report = repair(a_home)
    assert not report.readable and report.kept == 0, report
    assert report.removed is None, report  # unknown: the CLI says to check the keyring
    assert report.moved_to is not None
    assert (Path(report.moved_to) / "store.db").read_bytes().startswith(b"not a database")
    with Replica.open(a_home) as a, Replica.open(b_home) as b:
        exchange(b, a)
        assert texts(a) == want
