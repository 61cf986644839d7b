"""Stores as an older version wrote them, made by hand in SQLite from a current one (the
migrations' and repair's tests open them with the current code)."""

from __future__ import annotations

import sqlite3
from pathlib import Path


def as_schema_2(path: Path, *, shift: int = 0, extra: dict[str, int] | None = None) -> None:
    """Rewrite the store at ``path`` as schema 2 wrote it: ``first_seen`` keyed by the
    record id's 64 hex characters (TEXT). ``shift``: added to every time, so a test can
    tell times carried over from times read again from the updates; ``extra``: rows
    added as they are (hex id -> ms)."""
    db = sqlite3.connect(path, isolation_level=None)
    try:
        db.execute("BEGIN")
        held = db.execute("SELECT record, at FROM first_seen").fetchall()
        rows = [(rid.hex(), at + shift) for rid, at in held]
        db.execute("DROP TABLE first_seen")
        db.execute("CREATE TABLE first_seen (record TEXT PRIMARY KEY, at INTEGER NOT NULL) "
                   "WITHOUT ROWID")  # fmt: skip
        db.executemany("INSERT INTO first_seen (record, at) VALUES (?, ?)",
                       [*rows, *(extra or {}).items()])  # fmt: skip
        db.execute("PRAGMA user_version=2")
        db.execute("COMMIT")
    finally:
        db.close()


def as_schema_3(path: Path, document: bytes) -> None:
    """Rewrite the store at ``path`` as schema 3 wrote it: ``first_seen`` without the
    values' places, no ``updates_digest``, and the snapshot holding ``document`` (the
    whole document, every record's value in it)."""
    import hashlib

    db = sqlite3.connect(path, isolation_level=None)
    try:
        db.execute("BEGIN")
        for column in ("seq", "off", "len"):
            db.execute(f"ALTER TABLE first_seen DROP COLUMN {column}")
        db.execute("ALTER TABLE snapshot DROP COLUMN updates_digest")
        db.execute("UPDATE snapshot SET doc = ?, digest = ? WHERE id = 1",
                   (document, hashlib.sha256(document).hexdigest()))  # fmt: skip
        db.execute("PRAGMA user_version=3")
        db.execute("COMMIT")
    finally:
        db.close()
