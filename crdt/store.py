"""Durable store: SQLite in WAL mode, one file ``<home>/store.db``.

It keeps every accepted signed update verbatim (with who delivered it and when), when
this host first stored each record (``first_seen``: local, never replicated; the views
bound an author's signed times by it), the gate's item index, and a snapshot of the
materialised document for a fast start. A call that adds an update returns only after
the SQLite transaction is committed with ``synchronous=FULL``: that is the moment a
write may be acknowledged (invariant 7).

It never repairs or replaces a file it does not recognise: a damaged or foreign database
raises ``StoreCorrupt`` and is left exactly as it was (``repair.py`` is the way back, run
only when asked: `gossip repair`). Every transaction bumps ``meta.generation``, and each
commit is then recorded in the high-water mark (``mark.py``): a store that opens with
fewer writes than it acknowledged (a torn or damaged WAL, an older copy) raises
``StoreLost`` instead of serving the loss silently.

Why not pycrdt-store: it stores unsigned Yjs updates keyed by document name and squashes
them into one update, which would throw away exactly what we must keep (each author's
signed bytes, to verify and relay them); it is async-only (anyio) while the gate needs
a synchronous all-or-nothing commit; and it has no notion of who delivered an update.
"""

from __future__ import annotations

import hashlib
import json
import secrets
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from .errors import StoreCorrupt, StoreError, StoreLost
from .files import create_whole
from .mark import MARK_FILE, read_mark, write_mark
from .schema import RECORD_ID, SCHEMA, RecordPlaces, migrate, record_places
from .storefile import (
    APPLICATION_ID,
    REPAIR_HINT,
    SCHEMA_VERSION,
    check_existing,
    check_magic,
    check_mark,
    generation,
)

STORE_FILE = "store.db"
__all__ = ["RECORD_ID", "RecordPlaces", "record_places"]  # their old home: `crdt.store`


@dataclass(frozen=True, kw_only=True)
class _UpdateRow:
    """One signed update as the store keeps it (the columns of ``updates``)."""

    client: int
    start: int
    end: int
    author: str
    epoch: int
    checkpoint: bool
    raw: bytes
    source: str
    received_at: int


@dataclass(frozen=True, kw_only=True)
class StoredUpdate(_UpdateRow):
    seq: int


@dataclass(frozen=True, kw_only=True)
class NewUpdate(_UpdateRow):
    """What the replica hands the store for one accepted update."""

    runs: tuple[tuple[int, int, str], ...]  # (start, end, root) of this client's new items
    records: tuple[str, ...] = ()  # ids of the records it carries (their first_seen)
    places: RecordPlaces = ()  # where in ``raw`` its immutable records' values are


class Store:
    """The SQLite file. Not thread-safe: one Replica owns it."""

    def __init__(self, path: Path, conn: sqlite3.Connection) -> None:
        self.path = path
        self._db = conn
        self._store_id = ""
        self._generation = 0  # transactions committed, as meta.generation says

    # -- opening -------------------------------------------------------------------

    @classmethod
    def create(cls, home: Path, meta: dict[str, str],
               first_seen: dict[str, int] | None = None) -> None:  # fmt: skip
        """Create ``store.db`` atomically: built complete in a temporary file (schema,
        application id, ``meta``), synced, then renamed into place. A crash at any point
        leaves either no store or a whole one — never a half-made file we would refuse.
        ``first_seen``: receipt times carried over from a store being repaired."""
        home = Path(home)
        path = home / STORE_FILE
        store_id = secrets.token_hex(8)
        meta = {**meta, "store_id": store_id, "generation": "0"}

        def fill(tmp: Path) -> None:
            conn = sqlite3.connect(f"file:{tmp}?mode=rw", uri=True, isolation_level=None)
            try:
                conn.execute("PRAGMA journal_mode=DELETE")  # one file until it is in place
                conn.execute("BEGIN IMMEDIATE")
                for statement in SCHEMA.split(";"):
                    if statement.strip():
                        conn.execute(statement)
                conn.executemany("INSERT INTO meta (key, value) VALUES (?, ?)", list(meta.items()))
                conn.executemany("INSERT INTO first_seen (record, at) VALUES (?, ?)",
                                 sorted((bytes.fromhex(r), at)
                                        for r, at in (first_seen or {}).items()))  # fmt: skip
                conn.execute(f"PRAGMA application_id={APPLICATION_ID}")
                conn.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
                conn.execute("COMMIT")
            finally:
                conn.close()

        try:
            create_whole(path, fill)
        except FileExistsError:
            raise StoreError(f"{path} already exists") from None
        except sqlite3.Error as e:
            raise StoreError(f"cannot create {path}: {e}") from None
        write_mark(home, store_id, 0)  # a store moved away now is missed, not rebuilt

    @staticmethod
    def refuse_lost(home: Path) -> None:
        """Before a store is created in ``home``: StoreLost if the mark says one was
        there (moved away, deleted), so that no store is ever silently rebuilt over."""
        home = Path(home)
        mark = read_mark(home)
        if mark is not None and not (home / STORE_FILE).exists():
            raise StoreLost(
                f"{home / STORE_FILE} is missing, but {home / MARK_FILE} says a store with "
                f"{mark.generation} write(s) was there: put it back (from a backup), or run "
                f"`gossip repair` to start an empty store for this host key (peers send "
                "the rest again)"
            )

    @classmethod
    def open(cls, home: Path) -> Store:
        """Open an existing store. It is checked read-only first, so a file we refuse is
        left exactly as found (a read-write open would fold a leftover WAL into it)."""
        path = Path(home) / STORE_FILE
        if not path.exists():
            raise StoreError(f"no store at {path}; run `gossip init` first")
        check_magic(path)
        sidecars = [Path(f"{path}{suffix}") for suffix in ("-wal", "-shm")]
        had = {p for p in sidecars if p.exists()}
        try:
            ro = sqlite3.connect(f"file:{path}?mode=ro", uri=True, isolation_level=None)
        except sqlite3.Error as e:
            raise StoreError(f"cannot open {path}: {e}") from None
        try:
            check_existing(path, ro)
            check_mark(path, ro)
        except sqlite3.DatabaseError as e:
            raise StoreCorrupt(f"{path} is not a usable sm-gossip store: {e}; "
                               f"{REPAIR_HINT}") from None
        finally:
            ro.close()
            # A read-only reader of a WAL database leaves an empty -wal and a -shm behind;
            # remove the ones we made, so a refused file is left exactly as found.
            wal = sidecars[0]
            if wal not in had and wal.exists() and wal.stat().st_size == 0:
                for p in sidecars:
                    if p not in had:
                        p.unlink(missing_ok=True)
        try:
            conn = sqlite3.connect(
                f"file:{path}?mode=rw", uri=True, isolation_level=None, check_same_thread=False
            )
        except sqlite3.Error as e:
            raise StoreError(f"cannot open {path}: {e}") from None
        store = cls(path, conn)
        try:
            store._configure()
            store._migrate()
        except sqlite3.DatabaseError as e:
            conn.close()
            raise StoreCorrupt(f"{path} is not a usable sm-gossip store: {e}; "
                               f"{REPAIR_HINT}") from None
        except BaseException:
            conn.close()
            raise
        return store

    def _configure(self) -> None:
        mode = self._db.execute("PRAGMA journal_mode=WAL").fetchone()[0]
        if mode.lower() != "wal":
            raise StoreError(f"{self.path}: cannot switch to WAL (got {mode})")
        self._db.execute("PRAGMA synchronous=FULL")  # a commit survives power loss, too
        self._store_id = self.get_meta("store_id") or ""
        self._generation = generation(self._db)
        if not self._store_id:  # a store made before the mark: give it an id now
            self._store_id = secrets.token_hex(8)
            self.set_meta({"store_id": self._store_id})

    def _committed(self, generation: int) -> None:
        """After a commit: the mark follows (never before the commit is durable)."""
        self._generation = generation
        if self._store_id:
            write_mark(self.path.parent, self._store_id, generation)

    def _migrate(self) -> None:
        """Bring a store of an older schema up to this one, in one transaction."""
        version = self._db.execute("PRAGMA user_version").fetchone()[0]
        if version >= SCHEMA_VERSION:
            return
        with self._transaction():
            migrate(self._db, version)

    def close(self) -> None:
        self._db.close()

    # -- meta ------------------------------------------------------------------------

    def get_meta(self, key: str) -> str | None:
        row = self._db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else row[0]

    def set_meta(self, items: dict[str, str]) -> None:
        with self._transaction():
            self._db.executemany(
                "INSERT INTO meta (key, value) VALUES (?, ?) "
                "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                list(items.items()),
            )

    # -- keyring ---------------------------------------------------------------------

    def keyring(self) -> dict[str, str]:
        """Trusted author id -> the name the user gave it."""
        return dict(self._db.execute("SELECT author, name FROM keyring ORDER BY added_at"))

    def trust(self, author: str, name: str, added_at: int) -> None:
        with self._transaction():
            self._db.execute(
                "INSERT INTO keyring (author, name, added_at) VALUES (?, ?, ?) "
                "ON CONFLICT (author) DO UPDATE SET name = excluded.name",
                (author, name, added_at),
            )

    def distrust(self, author: str) -> bool:
        with self._transaction():
            cur = self._db.execute("DELETE FROM keyring WHERE author = ?", (author,))
        return cur.rowcount > 0

    def removed(self) -> set[str]:
        """Keys removed by hand (`gossip trust remove`): never trusted, whoever vouches
        for them or names them as a successor. Kept in ``meta`` (no schema change)."""
        raw = self.get_meta("removed")
        try:
            found = json.loads(raw) if raw else []
        except ValueError:
            raise StoreCorrupt(f"{self.path}: the removed-keys list is damaged; "
                               f"{REPAIR_HINT}") from None
        return {k for k in found if isinstance(k, str)} if isinstance(found, list) else set()

    def set_removed(self, keys: set[str]) -> None:
        self.set_meta({"removed": json.dumps(sorted(keys))})

    # -- updates ---------------------------------------------------------------------

    def append(self, updates: list[NewUpdate], *, supersede: bool = False) -> None:
        """Store accepted updates in one durable transaction. ``supersede`` (one update,
        a checkpoint of our own): also drop that client's older rows it covers."""
        if supersede and len(updates) != 1:
            raise StoreError("a superseding checkpoint is stored alone")
        with self._transaction():
            self._db.executemany(
                'INSERT INTO updates (client, start, "end", author, epoch, checkpoint, raw, '
                "source, received_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [
                    (u.client, u.start, u.end, u.author, u.epoch, int(u.checkpoint), u.raw,
                     u.source, u.received_at)
                    for u in updates
                ],
            )  # fmt: skip
            last = self._db.execute("SELECT max(seq) FROM updates").fetchone()[0]
            rows: dict[bytes, tuple] = {}
            for seq, u in enumerate(updates, last - len(updates) + 1):  # (one writer: in order)
                for rid in u.records:
                    rows.setdefault(bytes.fromhex(rid), (u.received_at, None, None, None))
                for rid, off, n in u.places:
                    key = bytes.fromhex(rid)
                    at = rows[key][0] if key in rows else u.received_at
                    if key not in rows or rows[key][1] is None:
                        rows[key] = (at, seq, off, n)
            # The first time is kept; a value's place only where none is known (a row a
            # repair carried over), or where a checkpoint of ours replaces the rows.
            keep = "" if supersede else "AND first_seen.seq IS NULL"
            self._db.executemany(  # in key order: a record id is a hash (less growth at 100k)
                "INSERT INTO first_seen (record, at, seq, off, len) VALUES (?, ?, ?, ?, ?) "
                "ON CONFLICT (record) DO UPDATE SET seq = excluded.seq, off = excluded.off, "
                f"len = excluded.len WHERE excluded.seq IS NOT NULL {keep}",
                [(rid, *row) for rid, row in sorted(rows.items())],
            )
            self._db.executemany(
                'INSERT OR REPLACE INTO item_runs (client, start, "end", root) VALUES (?, ?, ?, ?)',
                [(u.client, s, e, root) for u in updates for s, e, root in u.runs],
            )
            if supersede:
                (u,) = updates
                seq = self._db.execute("SELECT max(seq) FROM updates").fetchone()[0]
                self._db.execute(
                    'DELETE FROM updates WHERE client = ? AND "end" <= ? AND seq < ?',
                    (u.client, u.end, seq),
                )
                # The snapshot still covers what it did, now without those rows.
                row = self._db.execute("SELECT seq FROM snapshot WHERE id = 1").fetchone()
                if row is not None:
                    self._db.execute("UPDATE snapshot SET updates_digest = ? WHERE id = 1",
                                     (self._covered(row[0]),))  # fmt: skip

    def updates_after(self, client: int, clock: int) -> list[StoredUpdate]:
        """This client's stored updates that hold anything at or past ``clock``."""
        rows = self._db.execute(f"SELECT {_COLS} FROM updates {_AFTER}", (client, clock))
        return [_stored(r) for r in rows]

    def raw_after(self, client: int, clock: int) -> Iterator[bytes]:
        """``updates_after``'s updates, verbatim, read as the caller goes: their order is
        one sort of their seqs (no update's bytes in it), and the bytes are read
        ``RAW_CHUNK`` updates at a time. An answer that takes the first 4 MiB of a 60 MB
        backlog reads 4 MiB, not 60 (a catch-up asks again after each part). No write
        between two of them: a row deleted meanwhile would be left out without a word."""
        seqs = [s for (s,) in self._db.execute(f"SELECT seq FROM updates {_AFTER}",
                                               (client, clock))]  # fmt: skip
        for k in range(0, len(seqs), RAW_CHUNK):
            part = seqs[k : k + RAW_CHUNK]
            marks = ", ".join("?" * len(part))
            raw = dict(self._db.execute(f"SELECT seq, raw FROM updates WHERE seq IN ({marks})",
                                        part))  # fmt: skip
            yield from (raw[s] for s in part if s in raw)

    def iter_updates(self, after_seq: int = 0) -> Iterator[StoredUpdate]:
        rows = self._db.execute(
            f"SELECT {_COLS} FROM updates WHERE seq > ? ORDER BY seq", (after_seq,)
        )
        for r in rows:
            yield _stored(r)

    def clients(self) -> list[tuple[int, str, int]]:
        """(client, author, epoch) of every client with stored updates."""
        return list(self._db.execute("SELECT DISTINCT client, author, epoch FROM updates"))

    def item_runs(self) -> list[tuple[int, int, int, str]]:
        return list(
            self._db.execute(
                'SELECT client, start, "end", root FROM item_runs ORDER BY client, start'
            )
        )

    def last_seq(self) -> int:
        return self._db.execute("SELECT coalesce(max(seq), 0) FROM updates").fetchone()[0]

    def update_count(self) -> int:
        return self._db.execute("SELECT count(*) FROM updates").fetchone()[0]

    def first_seen(self, records: list[str] | None = None) -> dict[str, int]:
        """Record id -> when this host first stored it (ms); of ``records`` only if given."""
        if records is None:
            rows = self._db.execute("SELECT record, at FROM first_seen")
        else:  # one query: the ids' bytes bound as one blob, cut into 32-byte keys in SQL
            rows = self._db.execute(
                "WITH RECURSIVE k(i) AS (SELECT 1 UNION ALL SELECT i + 32 FROM k "
                "WHERE i + 32 <= length(?1)) SELECT f.record, f.at FROM k CROSS JOIN "
                "first_seen f ON f.record = substr(?1, k.i, 32)",
                (_id_bytes(records),),
            )
        return {rid.hex(): at for rid, at in rows}

    def record_values(self, records: list[str]) -> dict[str, bytes]:
        """Record id -> the value (lib0 bytes) of each of ``records`` held, cut from the
        stored update that carried it, in one query (as ``first_seen``): the values the
        main document holds as nulls."""
        rows = self._db.execute(
            "WITH RECURSIVE k(i) AS (SELECT 1 UNION ALL SELECT i + 32 FROM k "
            "WHERE i + 32 <= length(?1)) SELECT f.record, substr(u.raw, f.off + 1, f.len) "
            "FROM k CROSS JOIN first_seen f ON f.record = substr(?1, k.i, 32) "
            "JOIN updates u ON u.seq = f.seq",
            (_id_bytes(records),),
        )
        return {rid.hex(): value for rid, value in rows}

    def update_mark(self, seq: int) -> str | None:
        """``client:start:end`` of the update stored at ``seq``, None if none is (derived
        data kept up to ``seq`` checks with it that it covers this store's)."""
        row = self._db.execute('SELECT client, start, "end" FROM updates WHERE seq = ?',
                               (seq,)).fetchone()  # fmt: skip
        return None if row is None else "{}:{}:{}".format(*row)

    def find_update(self, client: int, clock: int) -> StoredUpdate | None:
        """The stored update that added ``clock`` of ``client`` (provenance)."""
        row = self._db.execute(
            f'SELECT {_COLS} FROM updates WHERE client = ? AND start <= ? AND "end" > ? '
            "ORDER BY checkpoint, seq LIMIT 1",
            (client, clock, clock),
        ).fetchone()
        return None if row is None else _stored(row)

    # -- snapshot --------------------------------------------------------------------

    def load_snapshot(self) -> tuple[int, bytes] | None:
        """(seq, document) of the snapshot; StoreCorrupt if its bytes, or those of the
        updates it covers (which hold the records' values it nulls), were damaged."""
        row = self._db.execute("SELECT seq, doc, digest, updates_digest FROM snapshot "
                               "WHERE id = 1").fetchone()  # fmt: skip
        if row is None:
            return None
        if hashlib.sha256(row[1]).hexdigest() != row[2]:
            raise StoreCorrupt(f"{self.path}: the document snapshot is damaged (checksum)")
        if row[3] and self._covered(row[0]) != row[3]:
            raise StoreCorrupt(f"{self.path}: an update the snapshot covers is damaged "
                               "(checksum)")  # fmt: skip
        return row[0], row[1]

    def save_snapshot(self, seq: int, doc: bytes, taken_at: int) -> None:
        with self._transaction():
            self._db.execute("DELETE FROM meta WHERE key = 'snapshot_nulled'")
            self._db.execute(
                "INSERT OR REPLACE INTO snapshot (id, seq, doc, digest, taken_at, "
                "updates_digest) VALUES (1, ?, ?, ?, ?, ?)",
                (seq, doc, hashlib.sha256(doc).hexdigest(), taken_at, self._covered(seq)),
            )

    def _covered(self, seq: int) -> str:
        """SHA-256 of the stored updates up to ``seq``, in order: SQLite cannot see damage
        inside a blob, and the replica reads records' values from these without verifying
        them again (the updates after the snapshot are, one by one, at each open)."""
        h = hashlib.sha256()
        rows = self._db.execute("SELECT raw FROM updates WHERE seq <= ? ORDER BY seq", (seq,))
        while chunk := rows.fetchmany(4096):
            for (raw,) in chunk:
                h.update(raw)
        return h.hexdigest()

    def bytes_since(self, seq: int) -> tuple[int, int]:
        """(count, bytes) of updates stored after ``seq``: the snapshot refresh trigger."""
        n, size = self._db.execute(
            "SELECT count(*), coalesce(sum(length(raw)), 0) FROM updates WHERE seq > ?", (seq,)
        ).fetchone()
        return n, size

    def integrity_check(self) -> list[str]:
        return [row[0] for row in self._db.execute("PRAGMA integrity_check")]

    # -- helpers ---------------------------------------------------------------------

    def _transaction(self) -> _Txn:
        return _Txn(self)


def _id_bytes(records: list[str]) -> bytes:
    """The 32 bytes of each record id in ``records``, one after another; a string that
    is no record id (which nothing stored can match) is left out."""
    return b"".join(bytes.fromhex(r) for r in records if RECORD_ID.fullmatch(r))


# A client's updates holding anything at or past a clock, in the order a peer takes them
# (by start, then arrival: each update after those its clock range builds on).
_AFTER = 'WHERE client = ? AND "end" > ? ORDER BY start, seq'
RAW_CHUNK = 64  # updates' bytes read per query by ``raw_after`` (~400 KB of 10-record ones)
_COLS = 'seq, client, start, "end", author, epoch, checkpoint, raw, source, received_at'


def _stored(row: tuple) -> StoredUpdate:
    seq, client, start, end, author, epoch, checkpoint, raw, source, received_at = row
    return StoredUpdate(seq=seq, client=client, start=start, end=end, author=author,
                        epoch=epoch, checkpoint=bool(checkpoint), raw=raw, source=source,
                        received_at=received_at)  # fmt: skip


class _Txn:
    """BEGIN IMMEDIATE … COMMIT; any SQLite failure inside (a full disk, say) rolls back
    and surfaces as StoreError, so callers catch one error type. Each one bumps
    ``meta.generation``; after its commit the high-water mark follows."""

    def __init__(self, store: Store) -> None:
        self._store = store
        self._db = store._db

    def __enter__(self) -> None:
        try:
            self._db.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as e:
            raise StoreError(f"cannot write the store: {e}") from None

    def __exit__(self, exc_type: object, exc: object, tb: object) -> bool:
        if exc_type is None:
            try:
                generation = self._store._generation + 1
                self._db.execute(
                    "INSERT INTO meta (key, value) VALUES ('generation', ?) "
                    "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                    (str(generation),),
                )
                self._db.execute("COMMIT")
            except sqlite3.Error as e:
                exc = e
            else:
                self._store._committed(generation)
                return False
        if self._db.in_transaction:
            self._db.execute("ROLLBACK")
        if isinstance(exc, sqlite3.Error):
            raise StoreError(f"store write failed and was rolled back: {exc}") from None
        return False
