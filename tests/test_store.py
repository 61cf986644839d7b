"""The durable store on real SQLite files (invariants 7 and 10, and the store's promise).

No mocks: every test works on real files in a temporary data dir, and the lock tests use
a second real process. What the store promises (crdt/store.py): a damaged or foreign
file raises ``StoreCorrupt`` and is left exactly as it was; it is never repaired,
replaced or rebuilt (the way back, `gossip repair`, and a store created afresh for an
existing key getting a new epoch, are in test_repair.py).
"""

from __future__ import annotations

import hashlib
import os
import random
import signal
import stat
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import crdt
from crdt import Identity, Replica, records

STORE = "store.db"
KEY = "host.key"
SIDECARS = ("store.db-wal", "store.db-shm", "store.db-journal")
ROOT = Path(__file__).resolve().parents[1]
CHILD_ENV = {**os.environ, "PYTHONPATH": str(ROOT)}


# -- helpers --------------------------------------------------------------------------


def write_memories(replica: Replica, clock, n: int, *, first: int = 0, pad: int = 200) -> list[str]:
    """Put ``n`` memory records, one transaction each; returns their content ids."""
    ids = []
    for i in range(first, first + n):
        rec = records.memory(
            replica.identity,
            f"memory number {i} " + "x" * pad,
            category="learning",
            subject="provider:test",
            ts=clock(),
        )
        assert replica.put(rec) is not None
        ids.append(rec.id)
    return ids


def sha(path: Path) -> str:
    """A short fingerprint of a file's bytes (keeps failure output readable)."""
    return hashlib.sha256(path.read_bytes()).hexdigest()[:16]


def bodies(replica: Replica) -> dict[str, tuple[bytes, bytes]]:
    return {k: (r.body, r.sig) for k, r in replica.records().items()}


def sidecars(home: Path) -> list[str]:
    return [name for name in SIDECARS if (home / name).exists()]


def filled_store(home: Path, clock, n: int = 300, *, snapshot: bool = False) -> list[str]:
    """A cleanly closed store in ``home`` holding ``n`` memories (optionally snapshotted)."""
    r = Replica.open(home, now_ms=clock)
    try:
        ids = write_memories(r, clock, n)
        if snapshot:
            r.snapshot()
    finally:
        r.close()
    assert sidecars(home) == [], "a clean close leaves no WAL behind"
    return ids


def run_child(code: str, *args: str, timeout: float = 30) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code), *args],
        capture_output=True, text=True, timeout=timeout, env=CHILD_ENV, cwd=ROOT,
    )  # fmt: skip


def assert_refused_again(home: Path, clock) -> None:
    """A refused store stays refused (nothing was rebuilt) and the lock was released."""
    with pytest.raises(crdt.StoreError) as again:
        Replica.open(home, now_ms=clock)
    assert not isinstance(again.value, crdt.StoreLocked), again.value


# -- files that are not our store -----------------------------------------------------

NOT_SQLITE = {
    "random-bytes": random.Random(7).randbytes(8192),
    "text-file": b"this is not a database\n" * 100,
    "empty": b"",
    "sqlite-magic-then-junk": b"SQLite format 3\x00" + random.Random(8).randbytes(4096 - 16),
}


@pytest.mark.parametrize("content", NOT_SQLITE.values(), ids=NOT_SQLITE.keys())
def test_a_file_that_is_not_sqlite_is_refused_and_left_untouched(
    tmp_path: Path, clock, content: bytes
) -> None:
    home = tmp_path / "home"
    home.mkdir()
    path = home / STORE
    path.write_bytes(content)
    os.chmod(path, 0o600)
    before = path.stat()

    with pytest.raises(crdt.StoreCorrupt) as ei:
        Replica.open(home, now_ms=clock)

    message = str(ei.value)
    assert str(path) in message, message
    if not content.startswith(b"SQLite format 3\x00"):
        assert "not an SQLite database" in message and "untouched" in message, message
    assert path.read_bytes() == content, "the refused file must stay byte-for-byte the same"
    assert path.stat().st_mtime_ns == before.st_mtime_ns
    # What really happens: the magic check runs before SQLite is asked to open anything,
    # so no WAL or shared-memory file appears; with a valid magic SQLite itself refuses
    # ("file is not a database") before it creates either.
    assert sidecars(home) == []
    assert_refused_again(home, clock)
    assert path.read_bytes() == content


def _foreign_db(path: Path, journal: str) -> None:
    """Another application's SQLite database: a table of its own, application_id 0."""
    code = """
        import os, signal, sqlite3, sys
        db = sqlite3.connect(sys.argv[1], isolation_level=None)
        if sys.argv[2] != "delete":
            db.execute("PRAGMA journal_mode=WAL")
        db.execute("CREATE TABLE notes (id INTEGER PRIMARY KEY, text TEXT)")
        for i in range(50):
            db.execute("INSERT INTO notes (text) VALUES (?)", (f"note {i}",))
        if sys.argv[2] == "wal-hot":  # the other program crashed: its data is in its WAL
            os.kill(os.getpid(), signal.SIGKILL)
        db.close()
    """
    p = run_child(code, str(path), journal)
    expected = -signal.SIGKILL if journal == "wal-hot" else 0
    assert p.returncode == expected, p.stderr


@pytest.mark.parametrize("journal", ["delete", "wal-closed", "wal-hot"])
def test_a_foreign_sqlite_database_is_refused_and_left_untouched(
    tmp_path: Path, clock, journal: str
) -> None:
    home = tmp_path / "home"
    home.mkdir()
    path = home / STORE
    _foreign_db(path, journal)
    wal = home / "store.db-wal"
    before = sha(path)
    wal_before = sha(wal) if wal.exists() else None
    if journal == "wal-hot":
        assert wal.stat().st_size > 0, "the crashed program's rows live in its WAL"

    with pytest.raises(crdt.StoreCorrupt) as ei:
        Replica.open(home, now_ms=clock)

    message = str(ei.value)
    assert str(path) in message and "refusing" in message, message
    assert sha(path) == before, (
        "the foreign database file was modified (its WAL was checkpointed into it?)"
    )
    if wal_before is not None:
        assert wal.exists(), "the foreign program's WAL was deleted"
        assert sha(wal) == wal_before, "the foreign program's WAL was modified"
    else:
        assert not wal.exists()


# -- a damaged store ------------------------------------------------------------------


@pytest.mark.parametrize("damage", ["whole-page", "page-header"])
def test_a_store_damaged_in_the_middle_is_refused_never_rebuilt(
    tmp_path: Path, clock, damage: str
) -> None:
    home = tmp_path / "home"
    filled_store(home, clock)
    path = home / STORE
    data = bytearray(path.read_bytes())
    page = 4096
    pages = len(data) // page
    assert pages > 20, pages
    victim = pages // 2
    # A whole page of noise, or just its b-tree header and cell pointers.
    patch = random.Random(victim).randbytes(page) if damage == "whole-page" else b"\xff" * 64
    data[victim * page : victim * page + len(patch)] = patch
    path.write_bytes(bytes(data))
    damaged = sha(path)

    with pytest.raises(crdt.StoreError) as ei:
        Replica.open(home, now_ms=clock)

    assert isinstance(ei.value, crdt.StoreCorrupt), ei.value
    message = str(ei.value)
    assert str(path) in message and ("malformed" in message or "integrity" in message), message
    assert sha(path) == damaged, "the damaged file must be kept exactly as found"
    assert sidecars(home) == []
    assert_refused_again(home, clock)
    assert sha(path) == damaged


def test_a_damaged_store_with_a_hot_wal_is_left_exactly_as_found(tmp_path: Path, clock) -> None:
    """After a crash the newest commits live in the WAL; refusing must not fold them in."""
    home = tmp_path / "home"
    filled_store(home, clock)
    code = """
        import os, signal, sys
        from crdt import Replica, records
        r = Replica.open(sys.argv[1])
        for i in range(20):
            r.put(records.memory(r.identity, f"after {i}", category="learning", ts=1 + i))
        os.kill(os.getpid(), signal.SIGKILL)
    """
    p = run_child(code, str(home))
    assert p.returncode == -signal.SIGKILL, p.stderr
    path, wal = home / STORE, home / "store.db-wal"
    assert wal.exists() and wal.stat().st_size > 0
    data = bytearray(path.read_bytes())
    victim = len(data) // 4096 // 2
    data[victim * 4096 : victim * 4096 + 64] = b"\xff" * 64
    path.write_bytes(bytes(data))
    damaged, wal_before = sha(path), sha(wal)

    with pytest.raises(crdt.StoreCorrupt):
        Replica.open(home, now_ms=clock)

    assert sha(path) == damaged, (
        "refusing a damaged store modified it (closing the connection checkpointed the WAL)"
    )
    assert wal.exists(), "the WAL of a refused store was deleted"
    assert sha(wal) == wal_before, "the WAL of a refused store changed"


def _replace_all(data: bytes, old: bytes, new: bytes) -> bytes:
    assert len(old) == len(new) and data.count(old) >= 1, (old, data.count(old))
    return data.replace(old, new)


@pytest.mark.parametrize(
    "damage", ["update-header-garbled", "update-digest", "record-text", "record-text-snapshot"]
)
def test_damaged_content_that_sqlite_cannot_see_is_refused(
    tmp_path: Path, clock, damage: str
) -> None:
    """Bytes flipped inside a stored blob pass SQLite's checks; the replica must not.

    Invariant 2 says every value in the document carries its author's valid signature,
    and the store promises that a damaged file raises StoreCorrupt. A blob damaged on disk
    (bit rot, a bad copy) must be refused with a StoreError naming the file, never loaded
    into the document and served to readers or relayed to peers.
    """
    home = tmp_path / "home"
    ids = filled_store(home, clock, snapshot=damage.endswith("snapshot"))
    path = home / STORE
    data = path.read_bytes()
    if damage == "update-header-garbled":  # the JSON header of one stored update
        # A header is {"author":"<43 chars>","client":...; a record body has "category".
        at = data.index(b'","client":', len(data) // 2) - 43 - len(b'{"author":"')
        assert data[at : at + 11] == b'{"author":"', data[at : at + 64]
        data = data[:at] + b"\x00" * 24 + data[at + 24 :]
    elif damage == "update-digest":  # a header that still parses but no longer verifies
        at = data.index(b'"digest":"', len(data) // 2) + len(b'"digest":"')
        digest = data[at : at + 64]
        data = _replace_all(data, digest, bytes(reversed(digest)))
    else:  # the text of one record, in every copy the file holds
        data = _replace_all(data, b"memory number 150 ", b"MEMORY NUMBER 150 ")
    path.write_bytes(data)
    damaged = sha(path)

    try:
        r = Replica.open(home, now_ms=clock)
    except crdt.GossipError as e:
        assert isinstance(e, crdt.StoreError), (
            f"damage surfaced as {type(e).__name__}: {e} (want StoreCorrupt naming {path})"
        )
        assert str(path) in str(e), str(e)
    else:
        try:
            loaded = r.records()
            bad = []
            for key, rec in loaded.items():
                try:
                    rec.verify()
                except crdt.RecordError:
                    bad.append(key)
            relayed = r.updates_for({})
        finally:
            r.close()
        pytest.fail(
            f"a store with damaged content opened silently ({len(loaded)} of {len(ids)} "
            f"records, {len(bad)} failing their signature, {len(relayed)} updates to relay)"
        )
    assert sha(path) == damaged


# -- one writer per data dir ----------------------------------------------------------

OPEN_IN_CHILD = """
    import sys
    import crdt
    try:
        crdt.Replica.open(sys.argv[1]).close()
    except crdt.StoreLocked as e:
        print(e)
        sys.exit(3)
    print("opened")
"""


def test_a_second_writer_process_is_refused_naming_the_holder(tmp_path: Path, clock) -> None:
    home = tmp_path / "home"
    r = Replica.open(home, now_ms=clock)
    try:
        write_memories(r, clock, 3)
        p = run_child(OPEN_IN_CHILD, str(home))
        assert p.returncode == 3, (p.returncode, p.stdout, p.stderr)
        assert f"in use by pid {os.getpid()}" in p.stdout, p.stdout
        assert str(home) in p.stdout, p.stdout
        write_memories(r, clock, 1, first=3)  # the holder is unaffected
    finally:
        r.close()
    p = run_child(OPEN_IN_CHILD, str(home))
    assert (p.returncode, p.stdout.strip()) == (0, "opened"), p.stderr


def test_a_second_open_in_the_same_process_is_refused(tmp_path: Path, clock) -> None:
    home = tmp_path / "home"
    r = Replica.open(home, now_ms=clock)
    try:
        with pytest.raises(crdt.StoreLocked, match=f"in use by pid {os.getpid()}"):
            Replica.open(home, now_ms=clock)
        # The refused attempt must not have dropped the holder's lock.
        p = run_child(OPEN_IN_CHILD, str(home))
        assert p.returncode == 3, (p.stdout, p.stderr)
        write_memories(r, clock, 2)
    finally:
        r.close()
    Replica.open(home, now_ms=clock).close()


# -- reopening ------------------------------------------------------------------------


def test_reopen_gives_back_the_same_state(tmp_path: Path, clock) -> None:
    home = tmp_path / "home"
    r = Replica.open(home, now_ms=clock)
    ids = write_memories(r, clock, 40)
    r.put(records.breaker(r.identity, "provider:x", state="open", reason="timeouts",
                          failures=3, ts=clock()))  # fmt: skip
    sv, recs, state, epoch = r.state_vector(), bodies(r), r.state(), r.epoch
    r.close()

    r = Replica.open(home, now_ms=clock)
    try:
        assert r.state_vector() == sv
        assert bodies(r) == recs
        assert set(ids) <= set(recs)
        assert {k: v.body for k, v in r.state().items()} == {k: v.body for k, v in state.items()}
        assert r.epoch == epoch
        assert r.integrity_check() == ["ok"]
        more = write_memories(r, clock, 5, first=40)  # it carries on from the same clock
        assert r.state_vector()[r.client] == sv[r.client] + 5
    finally:
        r.close()
    r = Replica.open(home, now_ms=clock)
    try:
        assert set(ids + more) <= set(r.records())
    finally:
        r.close()


def test_first_seen_is_kept_through_a_checkpoint_and_a_restart(tmp_path: Path, clock) -> None:
    """Each record's first-seen time is the commit that first stored it: a checkpoint
    that carries it again changes nothing, nor does a reopen."""
    home = tmp_path / "home"
    r = Replica.open(home, now_ms=clock)
    ids = write_memories(r, clock, 5)
    seen = r.receipts()
    assert set(ids) <= set(seen)
    assert [seen[i] for i in ids] == sorted(seen[i] for i in ids)  # one commit each, in order
    r.checkpoint()
    assert r.receipts() == seen
    r.close()
    with Replica.open(home, now_ms=clock) as r:
        assert r.receipts() == seen


def test_a_store_of_schema_1_gains_first_seen_when_opened(tmp_path: Path, clock) -> None:
    """A store written by the previous version (schema 1: no ``first_seen`` table) opens
    cleanly, its first-seen times read from the updates it holds, in one transaction."""
    import sqlite3

    home = tmp_path / "home"
    r = Replica.open(home, now_ms=clock)
    ids = write_memories(r, clock, 5)
    seen = r.receipts()
    r.close()
    db = sqlite3.connect(home / STORE)
    db.execute("DROP TABLE first_seen")
    db.execute("PRAGMA user_version=1")
    db.commit()
    db.close()
    with Replica.open(home, now_ms=clock) as r:
        assert {i: r.receipts()[i] for i in ids} == {i: seen[i] for i in ids}
        assert r.integrity_check() == ["ok"]
        more = write_memories(r, clock, 1, first=5)
        assert more[0] in r.receipts()
    db = sqlite3.connect(home / STORE)
    assert db.execute("PRAGMA user_version").fetchone()[0] == crdt.store.SCHEMA_VERSION == 4
    assert db.execute("SELECT DISTINCT typeof(record) FROM first_seen").fetchall() == [("blob",)]
    db.close()


def test_a_store_of_schema_3_finds_its_records_values_in_its_updates(tmp_path: Path, clock) -> None:
    """A store of schema 3 (no ``record_values``; its snapshot holds every record's value)
    opens with every record readable, found in the updates that carried them, its snapshot
    taken again without them; writes after it are read back too."""
    import sqlite3

    from tests.oldstores import as_schema_3

    home = tmp_path / "home"
    r = Replica.open(home, now_ms=clock)
    ids = write_memories(r, clock, 5)
    r.snapshot()
    ids += write_memories(r, clock, 2, first=5)  # in the log after the snapshot
    expected = {k: (rec.body, rec.sig) for k, rec in r.records().items()}
    document = r.document_update()
    r.close()
    as_schema_3(home / STORE, document)
    with Replica.open(home, now_ms=clock) as r:
        assert {k: (rec.body, rec.sig) for k, rec in r.records().items()} == expected
        assert set(ids) <= set(expected)
        assert r.get(ids[0]) is not None and r.get(ids[0]).body == expected[ids[0]][0]
        assert r.document_update() == document
        more = write_memories(r, clock, 1, first=7)
        assert r.get(more[0]) is not None
    db = sqlite3.connect(home / STORE)
    assert db.execute("PRAGMA user_version").fetchone()[0] == 4
    placed = db.execute("SELECT count(*) FROM first_seen WHERE seq IS NOT NULL").fetchone()[0]
    assert placed == len(expected) + 1
    (snapshot,) = db.execute("SELECT length(doc) FROM snapshot").fetchone()
    assert snapshot < len(document) / 2, (snapshot, len(document))  # the values are gone
    assert db.execute("SELECT value FROM meta WHERE key = 'snapshot_nulled'").fetchone() is None
    db.close()


def test_a_store_of_schema_2_keeps_its_first_seen_times_by_bytes(tmp_path: Path, clock) -> None:
    """A store of schema 2 (``first_seen`` keyed by the id's hex) opens with the times it
    held, not read again from the updates (a checkpoint carried them later), keyed by the
    id's 32 bytes, in one transaction; a row that names no record is dropped."""
    import sqlite3

    from tests.oldstores import as_schema_2

    home = tmp_path / "home"
    r = Replica.open(home, now_ms=clock)
    ids = write_memories(r, clock, 5)
    r.checkpoint()  # the updates now carry every id at the checkpoint's time
    seen = r.receipts()
    r.close()
    as_schema_2(home / STORE, shift=-1000, extra={"not a record id": 7, "A" * 64: 8})
    db = sqlite3.connect(home / STORE)
    held = db.execute("SELECT typeof(record), count(*) FROM first_seen").fetchone()
    assert held == ("text", len(seen) + 2)
    db.close()
    with Replica.open(home, now_ms=clock) as r:
        assert r.receipts() == {i: at - 1000 for i, at in seen.items()}
        assert set(ids) <= set(r.receipts())
        assert r.integrity_check() == ["ok"]
        more = write_memories(r, clock, 1, first=5)
        assert r.receipts([more[0]]) == {more[0]: r.receipts()[more[0]]}
    db = sqlite3.connect(home / STORE)
    assert db.execute("PRAGMA user_version").fetchone()[0] == 4
    assert db.execute("SELECT typeof(record), length(record), count(*) FROM first_seen "
                      "GROUP BY 1, 2").fetchall() == [("blob", 32, len(seen) + 1)]  # fmt: skip
    db.close()


def test_first_seen_of_some_records_is_one_lookup_of_their_ids(tmp_path: Path, clock) -> None:
    """``receipts(ids)``: those ids that are stored, spelt as asked (hex); an id that is
    not stored, or is no record id at all, is left out."""
    home = tmp_path / "home"
    with Replica.open(home, now_ms=clock) as r:
        ids = write_memories(r, clock, 5)
        seen = r.receipts()
        assert r.receipts([]) == {}
        assert r.receipts(ids[1:3]) == {i: seen[i] for i in ids[1:3]}
        odd = ["0" * 64, ids[0].upper(), "xyz", ids[4][:63], " " + ids[4][1:], ids[3]]
        assert r.receipts(odd) == {ids[3]: seen[ids[3]]}
        assert r.receipts(list(seen)) == seen


def test_reopen_after_a_snapshot_has_everything(tmp_path: Path, clock) -> None:
    home = tmp_path / "home"
    r = Replica.open(home, now_ms=clock)
    ids = write_memories(r, clock, 30)
    r.snapshot()
    ids += write_memories(r, clock, 30, first=30)
    sv, recs = r.state_vector(), bodies(r)
    r.close()

    r = Replica.open(home, now_ms=clock)
    try:
        assert r.state_vector() == sv
        assert bodies(r) == recs and set(ids) == set(recs)
        assert r.integrity_check() == ["ok"]
        r.snapshot()  # a second snapshot over a loaded one
        ids += write_memories(r, clock, 10, first=60)
        sv, recs = r.state_vector(), bodies(r)
    finally:
        r.close()
    r = Replica.open(home, now_ms=clock)
    try:
        assert r.state_vector() == sv
        assert bodies(r) == recs and set(ids) == set(recs)
    finally:
        r.close()


# -- file modes -----------------------------------------------------------------------


def test_store_and_key_files_are_private(tmp_path: Path, clock) -> None:
    old = os.umask(0o022)  # a typical permissive umask must not widen anything
    try:
        home = tmp_path / "home"
        r = Replica.open(home, now_ms=clock)
        try:
            write_memories(r, clock, 3)
            for name in (STORE, KEY, *sidecars(home)):
                mode = stat.S_IMODE((home / name).stat().st_mode)
                assert mode == 0o600, f"{name} has mode {mode:04o}"
            assert sidecars(home), "WAL mode: the WAL and shm files exist while open"
        finally:
            r.close()
        assert stat.S_IMODE(home.stat().st_mode) == 0o700
        assert stat.S_IMODE((home / STORE).stat().st_mode) == 0o600
        assert stat.S_IMODE((home / KEY).stat().st_mode) == 0o600
        assert Identity.load(home).public_id == r.author
    finally:
        os.umask(old)
