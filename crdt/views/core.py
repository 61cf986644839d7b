"""The views' façade: ``Views`` builds the derived tables from a replica's document and
keeps them current from its change feed, holds the lock every read takes and the
effective trusted set. It never writes to the document or the store.
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
import threading
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..ingest import cyclic_gc_paused
from ..records import (
    KIND_BANK,
    KIND_BENCHMARK,
    KIND_BREAKER,
    KIND_MEMORY,
    KIND_RETRACT,
    TRUST_KINDS,
    SignedRecord,
    split_state_key,
)
from ..replica import Replica
from ..trust import TrustSet, effective_trust
from .banks import BankViews
from .common import ODD, _int, _locked, _memory_fields, bounded_time
from .config import ViewConfig
from .kept import FORGET, VIEWS_FILE, KeptViews
from .recall import Memory, RecallViews, embedded_text
from .signals import SignalViews
from .tally import Tally

if TYPE_CHECKING:
    from ..semantic import SemanticIndex

# The tables; their indexes (_INDEXES) come after a rebuild's rows, which is faster than
# keeping them current row by row (sorted once, not 100k random inserts).
_TABLES = """
CREATE TABLE memories (
    n INTEGER PRIMARY KEY, id TEXT NOT NULL, author TEXT NOT NULL,
    category TEXT NOT NULL, subject TEXT, text TEXT NOT NULL,
    ts INTEGER NOT NULL, expires_at INTEGER, supersedes TEXT, bank TEXT NOT NULL,
    document_id TEXT, fields TEXT NOT NULL, idempotency_key TEXT,  -- fields: tags, context, …
    seen INTEGER, t INTEGER NOT NULL  -- first stored here; ts bounded by it (ranking)
);
CREATE TABLE banks (id TEXT PRIMARY KEY, author TEXT NOT NULL, bank TEXT NOT NULL,
    name TEXT NOT NULL, mission TEXT NOT NULL, ts INTEGER NOT NULL);
-- Contentless: the index without a second copy of every text (memories holds them; the
-- lanes read only rowid and rank, and a memory is never deleted from the views).
CREATE VIRTUAL TABLE memories_fts USING fts5 (text, subject, category, tags, content='');
CREATE TABLE retractions (id TEXT PRIMARY KEY, author TEXT NOT NULL, target TEXT NOT NULL);
-- What a restart reads back instead of the document (``kept.py``): the records the tally
-- counts outside the memories table, and the trust records (few).
CREATE TABLE others (id TEXT PRIMARY KEY, kind TEXT NOT NULL, author TEXT NOT NULL,
    ts INTEGER NOT NULL) WITHOUT ROWID;
CREATE TABLE trust_records (id TEXT PRIMARY KEY, body BLOB NOT NULL, sig BLOB NOT NULL)
    WITHOUT ROWID;
"""
_NAMES = ("memories", "memories_fts", "retractions", "banks", "others", "trust_records")
_INDEXES = """
CREATE UNIQUE INDEX memories_by_id ON memories (id);
CREATE INDEX memories_by_author ON memories (author, ts);
CREATE INDEX memories_by_bank ON memories (bank, ts);
CREATE INDEX memories_by_document ON memories (document_id, author, bank)
    WHERE document_id IS NOT NULL;
CREATE INDEX memories_by_idempotency_key ON memories (idempotency_key, author)
    WHERE idempotency_key IS NOT NULL;
CREATE INDEX banks_by_bank ON banks (bank, author, ts);
CREATE INDEX memories_by_t ON memories (t);
CREATE INDEX memories_by_supersedes ON memories (supersedes, author);
CREATE INDEX retractions_by_target ON retractions (target, author);
"""
_MEMORY_COLUMNS = ("id, author, category, subject, text, ts, expires_at, supersedes, bank, "
                   "document_id, fields, idempotency_key, seen, t")
# A memory as the views index it: the memories row (_MEMORY_COLUMNS), then its FTS5 tags.
_Row = tuple
_WIDTH = 14  # the row's columns


class Views(RecallViews, BankViews, SignalViews, KeptViews):
    """Read-side views of one replica, kept current by its changes (in the replica's
    thread), a commit's at a time. Reads are safe from any thread: they take ``lock``,
    which a change holds only while it applies one slice of a commit (``SLICE``
    records, a few ms), so a reader never waits for a whole ingest.

    ``kept``: the tables live in ``views.sqlite`` in the replica's data dir and a
    restart resumes them (``kept.py``); else in memory, built from the document."""

    SLICE = 256  # changes indexed under one hold of the lock (one executemany each)

    def __init__(
        self,
        replica: Replica,
        config: ViewConfig | None = None,
        *,
        now_ms: Callable[[], int] | None = None,
        semantic: SemanticIndex | None = None,
        kept: bool = False,
    ) -> None:
        self.replica = replica
        self.path: Path | None = replica.home / VIEWS_FILE if kept else None
        # Records replayed from the store when the views opened: None if built in full.
        self.replayed: int | None = None
        self.unkept: str | None = None  # why kept views are in memory this run (kept.py)
        self.config = config or ViewConfig()
        # The semantic lane's vectors (``crdt.semantic``): derived, local, optional; the
        # views queue each memory's text there, filter every neighbour it proposes, and
        # close it with themselves.
        self.semantic = semantic
        # Another model's index, preferred once ready (``prefer_semantic``): recall
        # searches one index at a time, so two models' vectors are never mixed.
        self.preferred: SemanticIndex | None = None
        self._closed = False
        if semantic is not None:
            semantic.texts = self._texts_of
        self.now_ms = now_ms or replica.now_ms
        self.lock = threading.RLock()
        self._db: sqlite3.Connection  # (``_open_views``)
        self._breakers: dict[str, dict[str, SignedRecord]] = {}  # name -> author -> record
        self._benches: dict[tuple[str, str], dict[str, SignedRecord]] = {}
        self._bench_keys: dict[str, tuple[str, str]] = {}  # state key -> (subject, metric)
        self._trust_records: dict[str, SignedRecord] = {}  # successor, revoke, vouch
        # State record id -> first stored here (ms), for the breakers and benchmarks held.
        self._arrived: dict[str, int] = {}
        # Record id -> first stored here, read from the store while rebuilding only (the
        # changes that follow were first stored by the commit that tells them).
        self._seen: dict[str, int] | None = None
        self._tally = Tally()  # what status and metrics count (``tally.py``)
        self._trust = TrustSet(frozenset())
        self._trust_listeners: list[Callable[[TrustSet], None]] = []
        self._building = False
        self._trust_stale = False  # a trust record came: recompute at the end of its batch
        # Memory ids indexed by a rebuild so far (its table has no index on id yet).
        self._rebuilt: set[str] | None = None
        self._whole = True  # False once a batch failed midway: nothing kept from then on
        self._kept_at: tuple[str, int, str | None] | None = None
        self._open_views()
        replica.on_changes(self._on_changes)
        replica.on_trust_change(self._refresh_trust)

    @_locked
    def close(self) -> None:
        """Stop following the replica and free the index (idempotent)."""
        self.replica.off_changes(self._on_changes)
        self.replica.off_trust_change(self._refresh_trust)
        self._closed = True
        self._db.close()
        for index in self.semantic_indexes():
            index.close()

    def semantic_indexes(self) -> list[SemanticIndex]:
        """The semantic indexes, preferred first: recall uses the first that is ready and
        whose model answers (the others are kept current, to fall back on)."""
        return [i for i in (self.preferred, self.semantic) if i is not None]

    @_locked
    def prefer_semantic(self, index: SemanticIndex) -> None:
        """Add the index of another model (an endpoint's), preferred over ``semantic``
        once ready; every memory held is queued for it (those it holds vectors of are
        not). Closes it if the views are closed."""
        if self._closed:
            index.close()
            return
        index.texts = self._texts_of
        for (mid,) in self._db.execute("SELECT id FROM memories ORDER BY n"):
            index.add(mid)
        old, self.preferred = self.preferred, index
        if old is not None:
            old.close()

    # -- trust -------------------------------------------------------------------------

    def trust(self) -> TrustSet:
        """The effective trusted set (``crdt.trust.effective_trust``), as of the last
        change of the keyring or of a trust record. Safe from any thread."""
        return self._trust

    def trust_records(self) -> list[SignedRecord]:
        """Every successor, revoke and vouch record, oldest first (for `gossip show`)."""
        with self.lock:
            return sorted(self._trust_records.values(), key=lambda r: (r.ts, r.id))

    def can_revoke(self, author: str, key: str) -> bool:
        """Would a revoke of ``key`` by ``author`` be honoured (``crdt.trust``)? A host
        may not revoke itself."""
        if key == self.replica.author:
            return False
        return self._trust.can_revoke(author, key, self.trust_records())

    def on_trust_change(self, listener: Callable[[TrustSet], None]) -> None:
        """Call ``listener(trust)`` when the trusted set changes, in the thread that
        changed it (the replica's), holding the views' lock: keep it short."""
        self._trust_listeners.append(listener)

    @_locked
    def _refresh_trust(self) -> None:
        if self._building:
            return
        trust = effective_trust(
            self.replica.keyring(), self._trust_records.values(),
            removed=self.replica.removed(), follow_vouches=self.config.follow_vouches,
            self_key=self.replica.author,
        )  # fmt: skip
        changed = trust != self._trust
        self._trust, self._trust_stale = trust, False  # only once it is computed
        if changed:
            for listener in list(self._trust_listeners):
                listener(trust)

    def __enter__(self) -> Views:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- building --------------------------------------------------------------------

    @_locked
    def rebuild(self) -> None:
        """Forget everything and read the whole document again: in chunks, each fed to
        the views as one batch of changes (``_on_changes``, as a commit's are), the
        tables' indexes built once at the end; kept views record at the end how far
        into the store they reach (``kept.py``)."""
        self._db.executescript("".join(f"DROP TABLE IF EXISTS {t};" for t in _NAMES)
                               + FORGET + _TABLES)  # fmt: skip
        self.replayed = self._kept_at = None
        self._breakers.clear()
        self._benches.clear()
        self._bench_keys.clear()
        self._trust_records.clear()
        self._arrived.clear()
        self._tally = Tally()
        self._seen = self.replica.receipts()
        self._building = True
        self._whole = True
        self._rebuilt = set()
        try:
            with cyclic_gc_paused():  # (a full collection walks every record held so far)
                for chunk in self.replica.record_chunks():
                    self._on_changes([("records", key, rec) for key, rec in chunk])
                self._on_changes([("state", k, r) for k, r in self.replica.state().items()])
        finally:
            self._db.executescript(_INDEXES)
            self._building = False
            self._seen = None
            self._rebuilt = None
        self._refresh_trust()
        self._keep()

    def _arrival(self, rec: SignedRecord) -> int | None:
        """When this host first stored ``rec`` (ms), None if not known (or not to be
        used: ``ViewConfig.first_seen_bound``)."""
        if not self.config.first_seen_bound:
            return None
        if self._seen is not None:
            return self._seen.get(rec.id)
        return self.replica.commit_time

    def _on_changes(self, changes: list[tuple[str, str, SignedRecord | None]]) -> None:
        """One commit's changes (or a chunk of a rebuild's), in order, ``SLICE`` at a
        time under the lock (a reader waits for a slice, never for a whole chunk); the
        trusted set is recomputed once at the end if a trust record came; the whole
        batch one transaction of the views' database (``kept.py``)."""
        with self._batch():
            for k in range(0, len(changes), self.SLICE):
                self._apply_changes(changes[k : k + self.SLICE])
            if self._trust_stale:
                self._refresh_trust()

    @_locked
    def _apply_changes(self, changes: list[tuple[str, str, SignedRecord | None]]) -> None:
        """The memories among ``changes`` indexed together (``_add_memories``),
        everything else one by one; each record counted once (``tally.py``)."""
        rows: list[_Row] = []
        memories: list[SignedRecord] = []
        others: list[tuple[str, str, str, int]] = []  # counted outside the memories table
        for root, key, rec in changes:
            if root != "records":
                # One odd record from any author must never break reading for everyone.
                with contextlib.suppress(*ODD):
                    self._apply_state(key, rec)
                self._tally.set_state(key, rec)
                continue
            if rec is None:
                continue
            row = None
            with contextlib.suppress(*ODD):
                row = self._add_record(rec)
            if row is None:
                if self._tally.add_record(rec, None):
                    others.append((rec.id, rec.kind, rec.author, rec.ts))
            else:
                rows.append(row)
                memories.append(rec)
        if others:
            with contextlib.suppress(*ODD):
                self._db.executemany("INSERT OR IGNORE INTO others (id, kind, author, ts) "
                                     "VALUES (?, ?, ?, ?)", others)  # fmt: skip
        if rows:
            for rec, fresh in zip(memories, self._add_memories(rows), strict=True):
                self._tally.add_record(rec, fresh)

    def _apply_state(self, key: str, rec: SignedRecord | None) -> None:
        try:
            kind, author, name = split_state_key(key)
        except Exception:
            return
        if kind == KIND_BREAKER:
            table = self._breakers.setdefault(name, {})
        elif kind == KIND_BENCHMARK:
            # Subject and metric come from the record, not the key ("a|b" + "c" and
            # "a" + "b|c" would share one); a deletion finds them where the add put them.
            pair = self._bench_keys.pop(key, None)
            if pair is not None:
                self._benches.get(pair, {}).pop(author, None)
            if rec is None:
                return
            subject, metric = rec.fields.get("subject"), rec.fields.get("metric")
            if not isinstance(subject, str) or not isinstance(metric, str):
                return
            self._bench_keys[key] = (subject, metric)
            table = self._benches.setdefault((subject, metric), {})
        else:
            return
        old = table.pop(author, None)
        if old is not None:
            self._arrived.pop(old.id, None)
        if rec is not None:
            table[author] = rec
            if (at := self._arrival(rec)) is not None:
                self._arrived[rec.id] = at

    def _add_record(self, rec: SignedRecord) -> _Row | None:
        """Index ``rec``, but for a memory: its row is returned, for ``_add_memories``."""
        f = rec.fields
        if rec.kind in TRUST_KINDS:
            if rec.id not in self._trust_records:
                self._trust_records[rec.id] = rec
                self._trust_stale = True  # recomputed once, after this batch
                self._db.execute("INSERT OR IGNORE INTO trust_records (id, body, sig) "
                                 "VALUES (?, ?, ?)", (rec.id, rec.body, rec.sig))  # fmt: skip
            return None
        if rec.kind == KIND_RETRACT:
            if isinstance(f.get("target"), str):
                self._db.execute(
                    "INSERT OR IGNORE INTO retractions (id, author, target) VALUES (?, ?, ?)",
                    (rec.id, rec.author, f["target"]),
                )
            return None
        if rec.kind == KIND_BANK:
            self._add_bank(rec)
            return None
        if rec.kind != KIND_MEMORY:
            return None  # unknown kinds are replicated, not shown
        text, category = f.get("text"), f.get("category")
        if not isinstance(text, str) or not isinstance(category, str):
            return None
        # Any author's record reaches every host (invariant 8): a field of the wrong type
        # or range is read as absent, never allowed to break reading for everyone.
        subject = f.get("subject") if isinstance(f.get("subject"), str) else None
        expires = _int(f.get("expires_at"))
        supersedes = f.get("supersedes") if isinstance(f.get("supersedes"), str) else None
        tags, bank, document_id, fields = _memory_fields(f)
        key = f.get("idempotency_key") if isinstance(f.get("idempotency_key"), str) else None
        seen = self._arrival(rec)
        t = bounded_time(rec.ts, seen, self.config.backdate_skew_ms)
        return (rec.id, rec.author, category, subject, text, rec.ts, expires, supersedes, bank,
                document_id, fields, key, seen, t, " ".join(tags))  # fmt: skip

    def _add_memories(self, rows: list[_Row]) -> list[bool | None]:
        """Index memories (``_add_record``'s rows, in order) with one ``executemany``
        each into the table and FTS5, numbered as one ``INSERT`` at a time would number
        them; a memory already held is skipped. Should the batch fail (an odd field of
        any author's), it is undone and indexed one memory at a time, as it always was.
        Returns, per row, whether the table took it as new (None: it failed)."""
        db = self._db
        held = self._rebuilt
        if held is None:  # the id index answers
            held = {mid for (mid,) in db.execute(
                "SELECT m.id FROM json_each(?) j CROSS JOIN memories m ON m.id = j.value",
                (json.dumps([row[0] for row in rows]),))}  # fmt: skip
        took: list[bool | None] = []
        for row in rows:
            took.append(row[0] not in held)
            held.add(row[0])
        fresh = [row for row, new in zip(rows, took, strict=True) if new]
        if not fresh:
            return [False] * len(rows)
        (top,) = db.execute("SELECT coalesce(max(n), 0) FROM memories").fetchone()
        db.execute("SAVEPOINT memories")
        try:
            db.executemany(
                f"INSERT INTO memories (n, {_MEMORY_COLUMNS}) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [(top + i, *row[:_WIDTH]) for i, row in enumerate(fresh, 1)],
            )  # fmt: skip
            db.executemany(
                "INSERT INTO memories_fts (rowid, text, subject, category, tags) "
                "VALUES (?, ?, ?, ?, ?)",
                [(top + i, row[4], row[3] or "", row[2], row[_WIDTH])
                 for i, row in enumerate(fresh, 1)],
            )  # fmt: skip
        except ODD:
            db.execute("ROLLBACK TO memories")
            db.execute("RELEASE memories")
            out: list[bool | None] = []
            for row, new in zip(rows, took, strict=True):
                result: bool | None = None
                if new:
                    with contextlib.suppress(*ODD):
                        result = self._add_memory(row)
                out.append(result if new else False)
            return out
        db.execute("RELEASE memories")
        for index in self.semantic_indexes():  # their texts are read back from here
            index.add_many([row[0] for row in fresh])
        return took

    def _add_memory(self, row: _Row) -> bool:
        cur = self._db.execute(
            f"INSERT OR IGNORE INTO memories ({_MEMORY_COLUMNS}) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", row[:_WIDTH]
        )  # fmt: skip
        if cur.rowcount == 0:
            return False
        self._db.execute(
            "INSERT INTO memories_fts (rowid, text, subject, category, tags) "
            "VALUES (?, ?, ?, ?, ?)", (cur.lastrowid, row[4], row[3] or "", row[2], row[_WIDTH])
        )  # fmt: skip
        for index in self.semantic_indexes():
            index.add(row[0])  # its text is read back from here when embedded
        return True

    @_locked
    def _texts_of(self, record_ids: list[str]) -> dict[str, str]:
        """What the semantic index embeds of each memory (``embedded_text``), for its
        catch-up thread; nothing once closed."""
        if self._closed:
            return {}
        rows = self._db.execute(
            "SELECT m.id, m.text, m.subject, m.fields FROM json_each(?) j "
            "CROSS JOIN memories m ON m.id = j.value", (json.dumps(record_ids),))  # fmt: skip
        return {mid: embedded_text(text, subject, json.loads(fields)["tags"])
                for mid, text, subject, fields in rows}  # fmt: skip

    # -- lookups and receipts ---------------------------------------------------------

    @_locked
    def held(self) -> dict[str, Any]:
        """What the document holds, counted as it changed (``tally.py``), never decoded:
        records by kind and by author, how many count under the current trust, state
        entries by kind (the replica's ``records()`` and ``state()``, counted)."""
        t = self._tally
        return {"records_by_kind": dict(t.by_kind), "records_by_author": t.by_author(),
                "trusted": t.counted(self._trust),
                "state_by_kind": dict(Counter(t.state.values()))}  # fmt: skip

    @_locked
    def keyed(self, author: str, idempotency_key: str) -> Memory | None:
        """``author``'s memory written with ``idempotency_key`` (the oldest, should it
        have written two), whatever its retraction or expiry: a retried write finds it."""
        row = self._db.execute(
            "SELECT id FROM memories WHERE idempotency_key = ? AND author = ? "
            "ORDER BY ts, id LIMIT 1", (idempotency_key, author)
        ).fetchone()  # fmt: skip
        return None if row is None else self.memory(row[0])

    @_locked
    def first_seen(self, record_id: str) -> int | None:
        """When this host first stored ``record_id`` (ms), None if it is not here. A
        record that is neither a memory nor a breaker or benchmark held is looked up in
        the store (``Replica.receipts``: in the replica's thread)."""
        row = self._db.execute("SELECT seen FROM memories WHERE id = ?", (record_id,)).fetchone()
        if row is not None and row[0] is not None:
            return row[0]
        return self._arrived.get(record_id) or self.replica.receipts().get(record_id)

    def receipts(self) -> dict[str, int]:
        """Record id -> when this host first stored it (ms), read from the store
        (``Replica.receipts``): call it in the replica's thread."""
        return self.replica.receipts()

