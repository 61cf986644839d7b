"""The way back from a damaged store (`gossip repair`): keep every stored update that
still verifies, drop what does not, and leave the rest to peers.

Run only when asked, with the data dir's lock held for the whole repair (no daemon):

1. the store's files (``store.db`` and its ``-wal``/``-shm``) are moved, untouched, to
   ``damaged/<UTC time>/`` in the data dir (nothing is ever deleted);
2. what can still be read from that copy is read: the keyring, the keys removed by hand,
   and every stored signed update (row by row where SQLite itself is damaged);
3. a new store is created for the host key (``host.key`` is kept; a new epoch, so this
   host's clocks never repeat what peers may hold), and every salvaged update is offered
   to the replica's own gate, as a peer's would be: what verifies is kept, what does not
   is dropped, and what builds on a dropped update cannot enter yet — peers send the
   missing ones again at the next exchange, and those with them;
4. the keyring and the removed keys are put back, and so is each record's first-seen
   time (receipt time bounds the signed time wherever time ranks: a repair must not make
   every record look new).

The report says how many were kept, dropped and left waiting, and where the old files
are. This module reads SQLite files directly only to salvage them; it never writes them.
"""

from __future__ import annotations

import contextlib
import json
import logging
import secrets
import sqlite3
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import IdentityError
from .identity import KEY_FILE, Identity
from .lock import BorrowedLock, DataDirLock
from .mark import MARK_FILE, read_mark
from .store import RECORD_ID, STORE_FILE, Store

DAMAGED_DIR = "damaged"  # where repair moves the files it replaces
_SIDECARS = ("-wal", "-shm", "-journal")

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RepairReport:
    """What ``repair`` did. ``dropped``: stored updates that did not verify or could not
    be read; ``waiting``: verified but built on a dropped one (peers send both again)."""

    kept: int
    dropped: int
    waiting: int
    keyring: int  # keyring entries put back (this host not counted)
    removed: int | None  # keys removed by hand, put back; None: that list was unreadable
    moved_to: str | None  # the damaged files, kept; None if there was no store
    readable: bool  # whether the old store could be opened at all
    acknowledged: int | None  # writes the high-water mark recorded (None: no mark)

    def to_json(self) -> dict[str, Any]:
        return {"kept": self.kept, "dropped": self.dropped, "waiting": self.waiting,
                "keyring": self.keyring, "removed": self.removed, "moved_to": self.moved_to,
                "readable": self.readable, "acknowledged": self.acknowledged}  # fmt: skip


Row = tuple[int, int, int, bool, bytes, str]  # (client, start, seq, checkpoint, raw, source)


@dataclass
class _Salvage:
    rows: list[Row]
    unreadable: int  # rows SQLite could not give back
    keyring: list[tuple[str, str]]
    removed: list[str] | None  # None: unreadable
    readable: bool
    first_seen: dict[str, int] = field(default_factory=dict)  # record id -> ms


def repair(home: Path | str, *, lock_wait: float = 0.0) -> RepairReport:
    """Repair the store of ``home`` (see the module docstring). StoreLocked if another
    process (a daemon) holds the data dir; IdentityError without a host key."""
    from .replica import Replica  # replica imports store, which this module extends

    home = Path(home).expanduser()
    if not (home / KEY_FILE).exists():
        raise IdentityError(f"no host key at {home / KEY_FILE}: repair keeps this host's key "
                            "and has none to keep (restore host.key, or `gossip init` for a "
                            "new host)")  # fmt: skip
    lock = DataDirLock(home)
    lock.acquire(wait=lock_wait)
    try:
        identity = Identity.load(home)
        mark = read_mark(home)
        moved = _move_aside(home)
        salvage = _salvage(moved / STORE_FILE) if moved is not None else _nothing()
        try:
            Store.create(home, {"author": identity.public_id,
                                "epoch": str(secrets.randbits(52))},
                         first_seen=salvage.first_seen)  # fmt: skip
            replica = Replica.open(home, identity, create=False, lock=BorrowedLock(lock))
        except BaseException:
            _put_back(home, moved)
            raise
        try:
            kept, dropped, waiting = _offer(replica, salvage.rows)
            me = replica.author
            for author, name in salvage.keyring:
                if author != me:
                    with contextlib.suppress(IdentityError):  # a damaged row: not a key
                        replica.trust(author, name)
            for key in salvage.removed or ():
                if key != me:
                    with contextlib.suppress(IdentityError):
                        replica.distrust(key)
            keyring = len(replica.keyring()) - 1
        except BaseException:
            replica.close()
            _put_back(home, moved)  # as found: a second repair starts from the same files
            raise
        replica.close()
        return RepairReport(kept=kept, dropped=dropped + salvage.unreadable, waiting=waiting,
                            keyring=keyring, moved_to=None if moved is None else str(moved),
                            removed=None if salvage.removed is None else len(salvage.removed),
                            readable=salvage.readable,
                            acknowledged=None if mark is None else mark.generation)  # fmt: skip
    finally:
        lock.release()


def _move_aside(home: Path) -> Path | None:
    """Move the store's files to ``damaged/<time>/``; None if there is no store."""
    files = [home / f"{STORE_FILE}{suffix}" for suffix in ("", *_SIDECARS)]
    if not files[0].exists():
        for f in files[1:]:  # sidecars without their database: nothing to read in them
            f.unlink(missing_ok=True)
        return None
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    target = home / DAMAGED_DIR / stamp
    n = 1
    while target.exists():
        n += 1
        target = home / DAMAGED_DIR / f"{stamp}-{n}"
    target.mkdir(parents=True, mode=0o700)
    (home / DAMAGED_DIR).chmod(0o700)
    for f in files:
        if f.exists():
            f.rename(target / f.name)
    mark = home / MARK_FILE
    if mark.exists():
        mark.rename(target / MARK_FILE)
    return target


def _put_back(home: Path, moved: Path | None) -> None:
    """Undo a repair that failed midway: drop the new store, put the old files back."""
    for suffix in ("", *_SIDECARS):
        (home / f"{STORE_FILE}{suffix}").unlink(missing_ok=True)
    (home / MARK_FILE).unlink(missing_ok=True)
    if moved is not None:
        for f in moved.iterdir():
            f.rename(home / f.name)
        moved.rmdir()


def _nothing() -> _Salvage:
    return _Salvage(rows=[], unreadable=0, keyring=[], removed=None, readable=False)


def _salvage(path: Path) -> _Salvage:
    """What can be read of the store at ``path`` (its WAL beside it), never writing it."""
    try:
        db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, isolation_level=None)
    except sqlite3.Error as e:
        log.warning("repair: %s cannot be opened (%s): nothing to salvage", path, e)
        return _nothing()
    try:
        try:
            db.execute("SELECT count(*) FROM sqlite_master").fetchone()
        except sqlite3.DatabaseError as e:
            log.warning("repair: %s is not readable (%s): nothing to salvage", path, e)
            return _nothing()
        rows, unreadable = _updates(db)
        keyring = _safe(db, "SELECT author, name FROM keyring ORDER BY added_at")
        removed: list[str] | None = []
        for (raw,) in _safe(db, "SELECT value FROM meta WHERE key = 'removed'"):
            try:
                found = json.loads(raw)
            except (ValueError, TypeError):
                found = None
            removed = [k for k in found if isinstance(k, str)] if isinstance(found, list) else None
        seen = {rid: at for key, at in _safe(db, "SELECT record, at FROM first_seen")
                if (rid := _record_id(key)) is not None and isinstance(at, int)}  # fmt: skip
        return _Salvage(rows, unreadable, [(str(a), str(n)) for a, n in keyring], removed, True,
                        seen)  # fmt: skip
    finally:
        db.close()


_COLUMNS = "client, start, seq, checkpoint, raw, source FROM updates"


def _updates(db: sqlite3.Connection) -> tuple[list[Row], int]:
    """Every readable update row, and how many rows could not be read. A whole scan
    first; if SQLite fails midway (a damaged page), row by row over the seq range."""
    try:
        rows = db.execute(f"SELECT {_COLUMNS} ORDER BY seq").fetchall()
        return [row for r in rows if (row := _row(r)) is not None], 0
    except sqlite3.DatabaseError as e:
        log.warning("repair: the updates table is damaged (%s): reading row by row", e)
    try:
        top = db.execute("SELECT seq FROM sqlite_sequence WHERE name = 'updates'").fetchone()
        last = int(top[0]) if top else 0
    except (sqlite3.DatabaseError, TypeError, ValueError):
        last = 0
    out, unreadable = [], 0
    for seq in range(1, last + 1):
        try:
            r = db.execute(f"SELECT {_COLUMNS} WHERE seq = ?", (seq,)).fetchone()
        except sqlite3.DatabaseError:
            unreadable += 1
            continue
        if r is not None and (row := _row(r)) is not None:
            out.append(row)
    return out, unreadable


def _row(r: tuple) -> Row | None:
    client, start, seq, checkpoint, raw, source = r
    if not isinstance(raw, bytes):
        return None
    return int(client), int(start), int(seq), bool(checkpoint), raw, str(source)


def _record_id(key: object) -> str | None:
    """A ``first_seen`` key as a record id (hex): 32 bytes (schema 3) or the hex itself
    (schema 2); None for anything else (a damaged row names no record)."""
    if isinstance(key, bytes) and len(key) == 32:
        return key.hex()
    if isinstance(key, str) and RECORD_ID.fullmatch(key):
        return key
    return None


def _safe(db: sqlite3.Connection, sql: str) -> list[tuple]:
    try:
        return db.execute(sql).fetchall()
    except sqlite3.DatabaseError as e:
        log.warning("repair: cannot read (%s): %s", sql.split(" FROM ")[-1], e)
        return []


def _offer(replica: Any, rows: list[Row]) -> tuple[int, int, int]:
    """Offer the salvaged updates to the gate, each client's in clock order (a
    checkpoint before what follows it); (kept, dropped, waiting)."""
    rows = sorted(rows, key=lambda r: (r[0], r[1], not r[3], r[2]))
    dropped = 0
    k = 0
    while k < len(rows):
        source = rows[k][5]
        j = k
        while j < len(rows) and rows[j][5] == source:
            j += 1
        outcomes = replica.ingest_batch([r[4] for r in rows[k:j]], source=source)
        dropped += sum(1 for o in outcomes if o.status == "rejected")
        k = j
    waiting = replica.pending_count  # never stored: peers send them, and what they need
    return len(rows) - dropped - waiting, dropped, waiting


__all__ = ["DAMAGED_DIR", "RepairReport", "repair"]
