"""What a store file must be before the store opens it: an SQLite database (its magic),
ours (the application id) at a schema this version knows, intact (``quick_check``), and
holding no fewer writes than its high-water mark says were acknowledged (``mark.py``).
Each check raises and leaves the file exactly as it was; only ``store.py`` (and
``repair.py``, through it) uses this module.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

from .errors import StoreCorrupt, StoreError, StoreLost
from .mark import MARK_FILE, read_mark

APPLICATION_ID = 0x534D4750  # "SMGP"
SCHEMA_VERSION = 4  # 2: first_seen; 3: keyed by 32 raw bytes, not hex; 4: where each
# record's value is (first_seen.seq, off, len) and the snapshot's updates_digest
# (older ones migrate)
SQLITE_MAGIC = b"SQLite format 3\x00"
REPAIR_HINT = ("`gossip repair` keeps every stored update that still verifies (the damaged "
               "files are moved aside, host.key is kept) and peers send the rest again")


def check_existing(path: Path, db: sqlite3.Connection) -> None:
    app_id = db.execute("PRAGMA application_id").fetchone()[0]
    version = db.execute("PRAGMA user_version").fetchone()[0]
    if app_id != APPLICATION_ID:
        raise StoreCorrupt(
            f"{path} is an SQLite database of something else (application_id {app_id:#x}), "
            "or a store that was never finished; refusing to touch it (`gossip repair` "
            "moves it aside and starts an empty store for this host key)"
        )
    if version > SCHEMA_VERSION:
        raise StoreError(
            f"{path} has schema {version}, newer than this version knows ({SCHEMA_VERSION}); "
            "upgrade sm-gossip"
        )
    problems = [row[0] for row in db.execute("PRAGMA quick_check")]
    if problems != ["ok"]:
        raise StoreCorrupt(f"{path} failed its integrity check: {'; '.join(problems[:3])}; "
                           f"{REPAIR_HINT}")


def generation(db: sqlite3.Connection) -> int:
    row = db.execute("SELECT value FROM meta WHERE key = 'generation'").fetchone()
    try:
        return int(row[0]) if row is not None else 0
    except ValueError:
        return 0


def check_mark(path: Path, db: sqlite3.Connection) -> None:
    """StoreLost if the store holds fewer writes than its mark says it acknowledged."""
    mark = read_mark(path.parent)
    row = db.execute("SELECT value FROM meta WHERE key = 'store_id'").fetchone()
    if mark is None or row is None or row[0] != mark.store_id:
        return  # no mark yet, or another store's: nothing to compare with
    held = generation(db)
    if held < mark.generation:
        wal = Path(f"{path}-wal")
        raise StoreLost(
            f"{path} holds {held} committed write(s) but acknowledged {mark.generation} "
            f"({path.parent / MARK_FILE}): {mark.generation - held} are missing — its "
            f"write-ahead log ({wal.name}) was lost, torn or damaged, or this is an older "
            f"copy. Nothing was changed; {REPAIR_HINT}"
        )


def check_magic(path: Path) -> None:
    try:
        with open(path, "rb") as f:
            head = f.read(16)
    except OSError as e:
        raise StoreError(f"cannot read {path}: {e}") from None
    if head != SQLITE_MAGIC:
        raise StoreCorrupt(
            f"{path} is not an SQLite database (it may be damaged or another file); "
            f"it was left untouched — {REPAIR_HINT}; or restore it from a backup"
        )
