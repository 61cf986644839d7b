"""The store's schema: its tables, as ``store.db`` holds them, and the migrations that
bring an older store up to them (each run inside the store's one transaction).

Owns no connection: ``crdt.store`` creates a store with ``SCHEMA`` and calls
``migrate`` when it opens one of an older ``user_version``. It never writes an update.
"""

from __future__ import annotations

import re
import sqlite3

from . import wire
from .errors import GossipError
from .updates import SignedUpdate

# (id, offset, length): where each immutable record's value is in a raw signed update
RecordPlaces = tuple[tuple[str, int, int], ...]

SCHEMA = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE keyring (          -- the authors this host trusts (local, never replicated)
    author TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    added_at INTEGER NOT NULL
);
CREATE TABLE updates (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,  -- never reused: the snapshot names a seq
    client INTEGER NOT NULL,
    start INTEGER NOT NULL,
    "end" INTEGER NOT NULL,
    author TEXT NOT NULL,
    epoch INTEGER NOT NULL,
    checkpoint INTEGER NOT NULL,
    raw BLOB NOT NULL,
    source TEXT NOT NULL,
    received_at INTEGER NOT NULL
);
CREATE INDEX updates_by_client ON updates (client, "end");
CREATE TABLE item_runs (
    client INTEGER NOT NULL,
    start INTEGER NOT NULL,
    "end" INTEGER NOT NULL,
    root TEXT NOT NULL,
    PRIMARY KEY (client, start)
) WITHOUT ROWID;
CREATE TABLE first_seen (       -- when this host first stored each record (local)
    record BLOB PRIMARY KEY,    -- the id's 32 bytes: half the hex, fewer pages
    at INTEGER NOT NULL,
    seq INTEGER,                -- an immutable record's value: bytes [off, off + len) of
    off INTEGER,                -- the raw update stored at seq (the main document holds a
    len INTEGER                 -- null in its place: ``Replica``)
) WITHOUT ROWID;
CREATE TABLE snapshot (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    seq INTEGER NOT NULL,
    doc BLOB NOT NULL,
    digest TEXT NOT NULL,
    taken_at INTEGER NOT NULL,
    updates_digest TEXT NOT NULL DEFAULT ''  -- of the updates it covers (``_covered``)
);
"""

_RECORD_KEY = re.compile(rb"[0-9a-f]{64}")  # a record id, as a Yjs map key stores it
RECORD_ID = re.compile(r"[0-9a-f]{64}")  # a record id (hex SHA-256) as the API spells it


def migrate(db: sqlite3.Connection, version: int) -> None:
    """From schema ``version`` to this one (``storefile.SCHEMA_VERSION``)."""
    from .storefile import SCHEMA_VERSION

    if version < 3:
        _first_seen(db, version)
    if version < 4:
        _record_places(db)
    db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")


def _first_seen(db: sqlite3.Connection, version: int) -> None:
    """1 or 2 -> 3: first_seen, keyed by the id's 32 bytes."""
    seen: dict[str, int] = {}
    if version < 2:
        # 1 -> 3: first_seen, filled from the updates held: a record was first
        # stored with the earliest update whose bytes carry its id (a Yjs map key
        # is plain UTF-8), as ``Replica.origin`` finds it for one record.
        for raw, at in db.execute("SELECT raw, received_at FROM updates"):
            for key in _RECORD_KEY.findall(raw):
                rid = key.decode()
                if rid not in seen or at < seen[rid]:
                    seen[rid] = at
    else:
        # 2 -> 3: the same times, keyed by the id's bytes instead of its hex (a
        # row whose key is no record id, which the gate never wrote, names nothing).
        seen = {rid: at for rid, at in db.execute("SELECT record, at FROM first_seen")
                if isinstance(rid, str) and RECORD_ID.fullmatch(rid)}  # fmt: skip
        db.execute("DROP TABLE first_seen")
    db.execute(SCHEMA[SCHEMA.index("CREATE TABLE first_seen") :].split(";")[0])
    db.executemany(
        "INSERT INTO first_seen (record, at) VALUES (?, ?)",
        sorted([(bytes.fromhex(rid), at) for rid, at in seen.items()]),
    )

def _record_places(db: sqlite3.Connection) -> None:
    """3 -> 4: where each record's value is in the updates held (``first_seen``'s
    seq, off, len: read from them as the gate reads an update, ``wire.scan``), and the
    snapshot's digest of the updates it covers; the snapshot, which holds the values,
    is marked for the replica to take again without them (``snapshot_nulled``)."""
    columns = {row[1] for row in db.execute("PRAGMA table_info(first_seen)")}
    for column in ("seq", "off", "len"):
        if column not in columns:  # (a store of schema 1 or 2 has them already)
            db.execute(f"ALTER TABLE first_seen ADD COLUMN {column} INTEGER")
    if "updates_digest" not in {r[1] for r in db.execute("PRAGMA table_info(snapshot)")}:
        db.execute("ALTER TABLE snapshot ADD COLUMN updates_digest TEXT NOT NULL "
                         "DEFAULT ''")  # fmt: skip
    places = []
    for seq, raw in db.execute("SELECT seq, raw FROM updates ORDER BY seq"):
        try:
            su = SignedUpdate.decode(raw)
            spans = wire.scan(su.update).record_spans
        except GossipError:
            continue  # what no gate took; the replica's open reports a damaged row
        places.extend((seq, off, n, rid) for rid, off, n in record_places(su, spans))
    db.executemany(
        "UPDATE first_seen SET seq = ?, off = ?, len = ? WHERE record = ? AND seq IS NULL",
        [(seq, off, n, bytes.fromhex(rid)) for seq, off, n, rid in places
         if RECORD_ID.fullmatch(rid)],
    )  # fmt: skip
    if db.execute("SELECT 1 FROM snapshot").fetchone():
        db.execute(
            "INSERT OR REPLACE INTO meta (key, value) VALUES ('snapshot_nulled', '0')"
        )


def record_places(su: SignedUpdate, spans: tuple[tuple[str, int, int], ...]) -> RecordPlaces:
    """(key, offset, length) in ``su.raw`` of each records-root value at ``spans``
    (``ScannedUpdate.record_spans``: offsets into ``su.update``, the end of ``raw``)."""
    base = len(su.raw) - len(su.update)
    return tuple([(key, base + start, end - start) for key, start, end in spans])
