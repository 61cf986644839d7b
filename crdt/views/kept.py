"""Views kept on disk: ``views.sqlite`` in the data dir, so that a restart reads only what
the store gained since the views' last commit, never the whole document again.

What it owns: the file (mode 0600, WAL, ``synchronous=NORMAL``: derived data, a crash
may lose its last commits, which the next open replays), its ``kept`` row (which store,
which schema and reading policy, and how far into the store the tables reach: the seq
of the last update they cover, and that update's ``Store.update_mark``), and the choice
made at open:

- **resume** when the store, the schema and the policy match and the store still holds
  the update the views were kept at: the records carried by the updates stored after it
  are replayed (records are only ever added), the small ``state`` map is read again in
  full, and the tally, the trust records and the trusted set are loaded or recomputed;
- **rebuild** in full on any mismatch: a repaired or replaced store, another schema or
  policy, views ahead of the store, the update they were kept at gone (a checkpoint),
  or views that never finished (a crash during a rebuild, a batch that failed);
- a file SQLite cannot read, or not a views file, is reported (a warning naming the file
  and why), moved aside as ``views.sqlite.corrupt-<UTC time>`` and rebuilt: never
  silently overwritten.

A mixin of ``crdt.views.Views``: it reads the tables the core keeps and writes only the
``kept`` row. Views without a data dir (tests, the simulator) stay in memory.
"""

from __future__ import annotations

import json
import logging
import os
import sqlite3
import time
from array import array
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..records import SignedRecord
from .tally import Tally

if TYPE_CHECKING:
    from ..replica import Replica
    from ..semantic import SemanticIndex
    from .config import ViewConfig

log = logging.getLogger("crdt.views")

VIEWS_FILE = "views.sqlite"
# Bump with any change of the views' tables or of what a row holds: kept views of another
# schema are rebuilt in full.
SCHEMA = 1
APPLICATION_ID = 0x534D5657  # "SMVW"
# SQLite's page cache for the file (KiB): the tables are read through the OS page cache,
# so the daemon need not hold the whole index in its own memory.
CACHE_KIB = 16 * 1024

_KEPT = """
CREATE TABLE IF NOT EXISTS kept (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    store TEXT NOT NULL, shape TEXT NOT NULL, seq INTEGER NOT NULL, mark TEXT
);
"""
FORGET = "DELETE FROM kept;"  # views not (or no longer) whole: the next open rebuilds


@dataclass(frozen=True)
class Kept:
    """The ``kept`` row: the views cover ``store`` up to ``seq`` (``mark``: its update)."""

    store: str
    shape: str
    seq: int
    mark: str | None


def shape(config: ViewConfig) -> str:
    """The schema and the parts of the reading policy that the kept rows depend on (the
    bounded time of each memory): kept views of another shape are rebuilt."""
    return json.dumps({"schema": SCHEMA, "backdate_skew_ms": config.backdate_skew_ms,
                       "first_seen_bound": config.first_seen_bound}, sort_keys=True)  # fmt: skip


def connect(path: Path | None) -> sqlite3.Connection:
    """The views' database: in memory without a path; else the file (made 0600 if new),
    in WAL mode. sqlite3.DatabaseError if it is not a readable views file."""
    if path is None:
        db = sqlite3.connect(":memory:", check_same_thread=False, isolation_level=None)
        db.executescript(_KEPT)
        return db
    if not path.exists():
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
        os.chmod(path, 0o600)  # the umask must not widen it (SQLite's -wal and -shm follow)
    db = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None)
    try:
        mode = db.execute("PRAGMA journal_mode=WAL").fetchone()[0]  # reads the header
        if str(mode).lower() != "wal":
            raise sqlite3.DatabaseError(f"cannot switch to WAL (got {mode})")
        db.execute("PRAGMA synchronous=NORMAL")  # derived data: see the module docstring
        db.execute(f"PRAGMA cache_size=-{CACHE_KIB}")
        db.execute("PRAGMA journal_size_limit=67108864")  # a rebuild's WAL is not kept whole
        app = db.execute("PRAGMA application_id").fetchone()[0]
        tables = db.execute("SELECT count(*) FROM sqlite_master").fetchone()[0]
        if app != APPLICATION_ID and (app != 0 or tables):
            raise sqlite3.DatabaseError(f"not a views file (application_id {app:#x})")
        if app == 0:
            db.execute(f"PRAGMA application_id={APPLICATION_ID}")
        db.executescript(_KEPT)
    except BaseException:
        db.close()
        raise
    return db


def set_aside(path: Path, why: object) -> Path:
    """Report ``path`` as unreadable and move it (and its -wal and -shm) aside."""
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    target = path.with_name(f"{path.name}.corrupt-{stamp}")
    n = 1
    while target.exists():
        n += 1
        target = path.with_name(f"{path.name}.corrupt-{stamp}-{n}")
    for suffix in ("", "-wal", "-shm"):
        old = path.with_name(path.name + suffix)
        if old.exists():
            old.rename(target.with_name(target.name + suffix))
    log.warning("%s is damaged or not a views file (%s): moved aside to %s; the views are "
                "rebuilt from the store", path, why, target.name)  # fmt: skip
    return target


def read_kept(db: sqlite3.Connection) -> Kept | None:
    row = db.execute("SELECT store, shape, seq, mark FROM kept WHERE id = 1").fetchone()
    return None if row is None else Kept(*row)


def write_kept(db: sqlite3.Connection, position: tuple[str, int, str | None],
               config: ViewConfig) -> None:  # fmt: skip
    store, seq, mark = position
    db.execute("INSERT OR REPLACE INTO kept (id, store, shape, seq, mark) "
               "VALUES (1, ?, ?, ?, ?)", (store, shape(config), seq, mark))  # fmt: skip


class KeptViews:
    """Opening ``Views`` from their file (its attributes are set by ``Views``)."""

    replica: Replica
    config: ViewConfig
    path: Path | None
    lock: Any
    replayed: int | None
    _db: sqlite3.Connection
    _tally: Tally
    _trust_records: dict[str, SignedRecord]
    _seen: dict[str, int] | None
    _building: bool
    _whole: bool
    _kept_at: tuple[str, int, str | None] | None  # the position the kept row says
    # and, from Views: rebuild(), _on_changes(), _refresh_trust(), semantic_indexes()
    rebuild: Callable[[], None]
    _on_changes: Callable[..., None]
    _refresh_trust: Callable[[], None]
    semantic_indexes: Callable[[], list[SemanticIndex]]

    def _open_views(self) -> None:
        """Resume the kept views if they match the store, else rebuild them; a file
        SQLite refuses on the way is set aside (``set_aside``) and the views rebuilt."""
        db: sqlite3.Connection | None = None
        try:
            db = self._db = connect(self.path)
            if self.path is not None:
                why = self._mismatch()
                if why is None:
                    self._resume()
                    return
                log.info("%s: rebuilding the views in full: %s", self.path, why)
                db.close()  # into an empty file: faster than over the old tables (4.8 s
                for suffix in ("", "-wal", "-shm"):  # against 7-9 s at 100k memories)
                    self.path.with_name(self.path.name + suffix).unlink(missing_ok=True)
                db = self._db = connect(self.path)
            self.rebuild()
        except sqlite3.DatabaseError as e:
            if self.path is None:
                raise
            if db is not None:
                db.close()
            set_aside(self.path, e)
            self._db = connect(self.path)
            self.rebuild()

    def _mismatch(self) -> str | None:
        """Why the kept views cannot be resumed, None if they can."""
        found = read_kept(self._db)
        store, last, _ = self.replica.position()
        if found is None:
            return "none kept yet (or a rebuild or a batch did not finish)"
        if found.store != store:
            return "they were kept for another store (repaired or replaced)"
        if found.shape != shape(self.config):
            return "their schema or reading policy changed"
        if found.seq > last:
            return f"they are ahead of the store (seq {found.seq} > {last})"
        self._kept_at = (found.store, found.seq, found.mark)
        if not self.replica.covers(found.store, found.seq, found.mark):
            return f"the store no longer holds the update at seq {found.seq} (a checkpoint?)"
        # Damage inside the file (a page, not its header): ~0.07 s at 100k memories.
        problems = [row[0] for row in self._db.execute("PRAGMA quick_check")]
        if problems != ["ok"]:
            raise sqlite3.DatabaseError(f"failed its integrity check: {'; '.join(problems[:3])}")
        return None

    def _resume(self) -> None:
        """Load what the kept tables say, replay the records stored after them, read the
        ``state`` map again, and note how far they now reach."""
        db = self._db
        kept = read_kept(db)
        assert kept is not None
        times = {author: array("q", [ts for (ts,) in db.execute(
            "SELECT ts FROM memories WHERE author = ? ORDER BY ts", (author,))])
            for (author,) in db.execute("SELECT DISTINCT author FROM memories").fetchall()}
        self._tally = Tally.load(times, db.execute("SELECT id, kind, author, ts FROM others"))
        self._trust_records.update(
            (rid, SignedRecord(body, sig))
            for rid, body, sig in db.execute("SELECT id, body, sig FROM trust_records"))
        keys = self.replica.record_keys_after(kept.seq)
        state = self.replica.state()
        self._seen = self.replica.receipts([*keys, *(r.id for r in state.values())])
        self._building = True
        try:
            for chunk in self.replica.record_chunks(keys=keys):
                self._on_changes([("records", key, rec) for key, rec in chunk])
            self._on_changes([("state", k, r) for k, r in state.items()])
        finally:
            self._building = False
            self._seen = None
        self.replayed = len(keys)
        indexes = self.semantic_indexes()
        if indexes:  # queue what their files lack (vectors are derived: a crash may lose some)
            ids = [mid for (mid,) in db.execute("SELECT id FROM memories ORDER BY n")]
            for index in indexes:
                index.add_many(ids)
        self._refresh_trust()
        self._keep()

    def _keep(self) -> None:
        """Record how far the views now cover the store, and commit (views whose last
        batch failed record nothing: the next open rebuilds them)."""
        with self.lock:
            try:
                if self.path is None:
                    pass  # nothing to resume from: in memory
                elif not self._whole:
                    self._db.execute(FORGET)
                    self._kept_at = None
                elif (position := self.replica.position()) != self._kept_at:
                    write_kept(self._db, position, self.config)
                    self._kept_at = position  # (a command that only reads writes nothing)
                if self._db.in_transaction:
                    self._db.execute("COMMIT")
            except sqlite3.Error as e:  # a full disk, say: the file keeps its last commit
                if self._db.in_transaction:
                    self._db.execute("ROLLBACK")
                self._whole = False
                log.warning("%s: the views could not commit a batch (%s): its records are "
                            "missing until the views are rebuilt at the next start",
                            self.path, e)  # fmt: skip
