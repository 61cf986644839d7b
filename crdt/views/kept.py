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
- a damaged file (SQLite says it is corrupt or not a database, or it fails its
  ``quick_check``) or not a views file is reported (a warning naming the file and why),
  moved aside as ``views.sqlite.corrupt-<UTC time>`` and rebuilt: never silently
  overwritten;
- a file that cannot be used for any other reason (locked by another process past the
  busy timeout, a full disk, a read-only file or data dir, a directory in its place, an
  I/O error), at the open or by a later batch, is left as it is: the views fall back to
  memory for this run (``unkept`` says why, and status warns), rebuilt from the store;
  the next start opens the file again. Derived data never keeps memory down.

A mixin of ``crdt.views.Views``: it reads the tables the core keeps and writes only the
``kept`` row. Views without a data dir (tests, the simulator) stay in memory.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import sqlite3
import time
from array import array
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import ViewsDamaged
from ..records import SignedRecord
from .common import _locked
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
# How long a write waits for a lock another process holds on the file (SQLite's busy
# timeout, as the store's) before the views give up on the file for this run.
BUSY_S = 5.0
# SQLite's primary result codes that mean the file itself is damaged.
DAMAGE = (sqlite3.SQLITE_CORRUPT, sqlite3.SQLITE_NOTADB)

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
    in WAL mode. ViewsDamaged if it is damaged or not a views file; sqlite3.Error or
    OSError if it cannot be used for another reason (``damaged`` tells them apart)."""
    if path is None:
        db = sqlite3.connect(":memory:", check_same_thread=False, isolation_level=None)
        db.executescript(_KEPT)
        return db
    if not path.exists():
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
        os.chmod(path, 0o600)  # the umask must not widen it (SQLite's -wal and -shm follow)
    db = sqlite3.connect(str(path), timeout=BUSY_S, check_same_thread=False,
                         isolation_level=None)  # fmt: skip
    try:
        mode = db.execute("PRAGMA journal_mode=WAL").fetchone()[0]  # reads the header
        if str(mode).lower() != "wal":
            raise sqlite3.OperationalError(f"cannot switch to WAL (got {mode})")
        db.execute("PRAGMA synchronous=NORMAL")  # derived data: see the module docstring
        db.execute(f"PRAGMA cache_size=-{CACHE_KIB}")
        db.execute("PRAGMA journal_size_limit=67108864")  # a rebuild's WAL is not kept whole
        app = db.execute("PRAGMA application_id").fetchone()[0]
        tables = db.execute("SELECT count(*) FROM sqlite_master").fetchone()[0]
        if app != APPLICATION_ID and (app != 0 or tables):
            raise ViewsDamaged(f"not a views file (application_id {app:#x})")
        if app == 0:
            db.execute(f"PRAGMA application_id={APPLICATION_ID}")
        db.executescript(_KEPT)
    except BaseException:
        db.close()
        raise
    return db


def damaged(e: BaseException) -> bool:
    """Is ``e`` damage of the file itself (to set aside), not a lock, a full disk, a
    permission or an I/O error (to leave as it is)?"""
    code = getattr(e, "sqlite_errorcode", None)
    return isinstance(e, ViewsDamaged) or (code is not None and code & 0xFF in DAMAGE)


def describe(e: BaseException) -> str:
    """``e`` as a warning says it: SQLite's message and its result code's name."""
    name = getattr(e, "sqlite_errorname", None)
    return f"{e} [{name}]" if name else str(e) or type(e).__name__


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


def shed_cache(db: sqlite3.Connection) -> None:
    """Drop the file's page cache: an open reads every page (``quick_check``, the
    resume's scans, a rebuild's writes), and none of them is more likely than another
    to serve a recall; the pages a recall reads fill it again (~14 MB at 100k held by an
    idle daemon otherwise)."""
    with contextlib.suppress(sqlite3.Error):
        db.execute("PRAGMA shrink_memory")


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
    unkept: str | None  # why views meant to be kept are held in memory this run
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
        """Resume the kept views if they match the store, else rebuild them; a damaged
        file is set aside (``set_aside``) and the views rebuilt; a file that cannot be
        used for another reason leaves the views in memory for this run (``_in_memory``)."""
        path = self.path
        self._db = connect(None)  # (in memory until the file opens)
        if path is None:
            self.rebuild()
            return
        try:
            try:
                self._db.close()
                self._db = connect(path)
                why = self._mismatch()
                if why is None:
                    self._resume()
                else:
                    log.info("%s: rebuilding the views in full: %s", path, why)
                    self._db.close()  # into an empty file: faster than over the old tables
                    for suffix in ("", "-wal", "-shm"):  # (4.8 s against 7-9 s at 100k)
                        path.with_name(path.name + suffix).unlink(missing_ok=True)
                    self._db = connect(path)
                    self.rebuild()
            except (ViewsDamaged, sqlite3.Error) as e:
                if not damaged(e):
                    raise
                self._db.close()
                set_aside(path, e)
                self._db = connect(path)
                self.rebuild()
            shed_cache(self._db)
        except (ViewsDamaged, sqlite3.Error, OSError) as e:
            self._in_memory("it cannot be used", e)

    @_locked
    def _in_memory(self, what: str, error: BaseException) -> None:
        """Leave the file as it is and hold the views in memory for the rest of this run,
        rebuilt from the store (``unkept`` says why; the next start opens the file again)."""
        why = f"{self.path}: {what} ({describe(error)})"
        log.warning("%s: the views are held in memory for this run, rebuilt from the store "
                    "(nothing is lost); a restart opens the file again and brings it up to "
                    "date", why)  # fmt: skip
        with contextlib.suppress(sqlite3.Error):
            self._db.close()  # (rolls back what it had not committed)
        self.path, self.unkept = None, why
        self._db = connect(None)
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
            raise ViewsDamaged(f"failed its integrity check: {'; '.join(problems[:3])}")
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

    @contextlib.contextmanager
    def _batch(self) -> Iterator[None]:
        """One batch of changes as one transaction of the views' database; kept views
        then record how far into the store they reach (``_keep``; a rebuild does once,
        at its end). A batch the file refused (locked, a full disk) leaves the file at
        its last commit and the views in memory for the run (``_in_memory``)."""
        whole = False
        failed: sqlite3.Error | None = None
        try:
            with self.lock:
                self._db.execute("BEGIN")
            yield
            whole = True
        except sqlite3.Error as e:
            if self.path is None or self._building:
                raise  # (the open handles the file's errors while it builds)
            failed = e
        finally:
            self._whole = self._whole and whole
            if self._building:
                with self.lock:
                    if self._db.in_transaction:
                        self._db.execute("COMMIT")
            elif failed is None:
                self._keep()
        if failed is not None:
            self._in_memory("the views could not write a batch", failed)

    def _keep(self) -> None:
        """Record how far the views now cover the store, and commit (views whose last
        batch failed, or fed by a replica that could not tell them a whole commit,
        record nothing: the next open rebuilds them)."""
        with self.lock:
            try:
                if self.path is None:
                    pass  # nothing to resume from: in memory
                elif not self._whole or self.replica.untold:
                    self._db.execute(FORGET)
                    self._kept_at = None
                elif (position := self.replica.position()) != self._kept_at:
                    write_kept(self._db, position, self.config)
                    self._kept_at = position  # (a command that only reads writes nothing)
                if self._db.in_transaction:
                    self._db.execute("COMMIT")
            except sqlite3.Error as e:  # locked, a full disk: the file keeps its last commit
                self._in_memory("the views could not commit a batch", e)
