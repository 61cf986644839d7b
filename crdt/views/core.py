"""The views' façade: ``Views`` builds the derived tables from a replica's document and
keeps them current from its change feed, holds the lock every read takes and the
effective trusted set. It never writes to the document or the store.
"""

from __future__ import annotations

import bisect
import contextlib
import json
import re
import sqlite3
import threading
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..embedder import EmbedderUnavailable
from ..fusion import fuse
from ..records import (
    DEFAULT_BANK,
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
from .benchmarks import BenchmarkViews
from .breakers import BreakerViews
from .common import (
    _COLS,
    _CURRENT_DOCUMENT,
    _agent_columns,
    _agent_fields,
    _int,
    _locked,
)
from .config import ViewConfig

if TYPE_CHECKING:
    from ..semantic import SemanticIndex

MODES = ("hybrid", "lexical", "semantic")  # recall's lanes: both fused, bm25 alone, vectors alone


@dataclass(frozen=True)
class Memory:
    id: str
    text: str
    category: str
    subject: str | None
    tags: list[str]
    author: str
    ts: int
    trusted: bool
    expires_at: int | None = None
    supersedes: str | None = None
    # The agents' fields (docs/agents.md): absent on older records.
    bank: str = DEFAULT_BANK
    document_id: str | None = None
    context: str | None = None
    metadata: dict[str, str] = field(default_factory=dict)
    timestamp: str | None = None
    # A recall's: which lanes found it (lane -> rank there) and its fused score.
    lanes: dict[str, int] | None = None
    score: float | None = None

    def to_json(self) -> dict[str, Any]:
        # By hand: ``asdict`` deep-copies field by field, a quarter of a short recall.
        return {
            "id": self.id, "text": self.text, "category": self.category,
            "subject": self.subject, "tags": list(self.tags), "author": self.author,
            "ts": self.ts, "trusted": self.trusted, "expires_at": self.expires_at,
            "supersedes": self.supersedes, "bank": self.bank, "document_id": self.document_id,
            "context": self.context, "metadata": dict(self.metadata),
            "timestamp": self.timestamp,
            "lanes": None if self.lanes is None else dict(self.lanes), "score": self.score,
        }  # fmt: skip


@dataclass(frozen=True)
class Recall:
    hits: list[Memory]
    # author -> memories the quota hid among those ranked above the last hit
    capped: dict[str, int] = field(default_factory=dict)
    mode: str = "lexical"  # the lanes that answered (hybrid asked while vectors are built: lexical)
    # Why the lanes asked for did not all answer (e.g. the vectors are still being built).
    note: str | None = None

    def to_json(self) -> list[dict[str, Any]]:
        return [m.to_json() for m in self.hits]


_SCHEMA = """
CREATE TABLE memories (
    n INTEGER PRIMARY KEY, id TEXT UNIQUE NOT NULL, author TEXT NOT NULL,
    category TEXT NOT NULL, subject TEXT, tags TEXT NOT NULL, text TEXT NOT NULL,
    ts INTEGER NOT NULL, expires_at INTEGER, supersedes TEXT,
    bank TEXT NOT NULL, document_id TEXT, extra TEXT NOT NULL, idempotency_key TEXT
);
CREATE INDEX memories_by_author ON memories (author, ts);
CREATE INDEX memories_by_bank ON memories (bank, ts);
CREATE INDEX memories_by_document ON memories (document_id, author, bank)
    WHERE document_id IS NOT NULL;
CREATE INDEX memories_by_idempotency_key ON memories (idempotency_key, author)
    WHERE idempotency_key IS NOT NULL;
CREATE TABLE banks (id TEXT PRIMARY KEY, author TEXT NOT NULL, bank TEXT NOT NULL,
    name TEXT NOT NULL, mission TEXT NOT NULL, ts INTEGER NOT NULL);
CREATE INDEX banks_by_bank ON banks (bank, author, ts);
CREATE INDEX memories_by_ts ON memories (ts);
CREATE INDEX memories_by_supersedes ON memories (supersedes, author);
CREATE VIRTUAL TABLE memories_fts USING fts5 (text, subject, category, tags);
CREATE TABLE retractions (id TEXT PRIMARY KEY, author TEXT NOT NULL, target TEXT NOT NULL);
CREATE INDEX retractions_by_target ON retractions (target, author);
"""


class Views(BankViews, BreakerViews, BenchmarkViews):
    """Read-side views of one replica, kept current by its changes (in the replica's
    thread). Reads are safe from any thread: they take ``lock``, which a change holds
    only while it applies one record, so a reader never waits for a whole ingest."""

    def __init__(
        self,
        replica: Replica,
        config: ViewConfig | None = None,
        *,
        now_ms: Callable[[], int] | None = None,
        semantic: SemanticIndex | None = None,
    ) -> None:
        self.replica = replica
        self.config = config or ViewConfig()
        # The semantic lane's vectors (``crdt.semantic``): derived, local, optional; the
        # views queue each memory's text there, filter every neighbour it proposes, and
        # close it with themselves.
        self.semantic = semantic
        self._closed = False
        if semantic is not None:
            semantic.texts = self._texts_of
        self.now_ms = now_ms or replica.now_ms
        self.lock = threading.RLock()
        self._db = sqlite3.connect(":memory:", check_same_thread=False)
        self._breakers: dict[str, dict[str, SignedRecord]] = {}  # name -> author -> record
        self._benches: dict[tuple[str, str], dict[str, SignedRecord]] = {}
        self._bench_keys: dict[str, tuple[str, str]] = {}  # state key -> (subject, metric)
        self._windows: dict[tuple[str, int], list[tuple[int, str]]] = {}  # quota buckets
        self._trust_records: dict[str, SignedRecord] = {}  # successor, revoke, vouch
        # record id -> first stored here (ms); read from the store on first use
        self._seen: dict[str, int] | None = None
        self._trust = TrustSet(frozenset())
        self._trust_listeners: list[Callable[[TrustSet], None]] = []
        self._building = False
        self._trust_stale = False  # a trust record came: recompute at the end of its batch
        self.rebuild()
        replica.on_change(self._on_change)
        replica.on_commit(self._after_batch)
        replica.on_trust_change(self._refresh_trust)

    @_locked
    def close(self) -> None:
        """Stop following the replica and free the index (idempotent)."""
        self.replica.off_change(self._on_change)
        self.replica.off_commit(self._after_batch)
        self.replica.off_trust_change(self._refresh_trust)
        self._closed = True
        self._db.close()
        if self.semantic is not None:
            self.semantic.close()

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
    def _after_batch(self) -> None:
        if self._trust_stale:
            self._refresh_trust()

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
        """Forget everything and read the whole document again."""
        self._db.executescript(
            "DROP TABLE IF EXISTS memories; DROP TABLE IF EXISTS memories_fts; "
            "DROP TABLE IF EXISTS retractions; DROP TABLE IF EXISTS banks;" + _SCHEMA
        )
        self._breakers.clear()
        self._benches.clear()
        self._bench_keys.clear()
        self._windows.clear()
        self._trust_records.clear()
        self._seen = None
        self._building = True
        try:
            for key, rec in self.replica.iter_records():
                self._on_change("records", key, rec)
            for key, rec in self.replica.state().items():
                self._on_change("state", key, rec)
        finally:
            self._building = False
        self._refresh_trust()

    @_locked
    def _on_change(self, root: str, key: str, rec: SignedRecord | None) -> None:
        # One odd record from any author must never break reading for everyone.
        with contextlib.suppress(sqlite3.Error, ValueError, TypeError, OverflowError):
            self._apply_change(root, key, rec)

    def _apply_change(self, root: str, key: str, rec: SignedRecord | None) -> None:
        if root == "records":
            if rec is not None:
                self._add_record(rec)
            return
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
        if rec is None:
            table.pop(author, None)
        else:
            table[author] = rec

    def _add_record(self, rec: SignedRecord) -> None:
        f = rec.fields
        if self._seen is not None:
            self._seen.setdefault(rec.id, self.now_ms())
        if rec.kind in TRUST_KINDS:
            if rec.id not in self._trust_records:
                self._trust_records[rec.id] = rec
                self._trust_stale = True  # recomputed once, after this batch
            return
        if rec.kind == KIND_RETRACT:
            if isinstance(f.get("target"), str):
                self._db.execute(
                    "INSERT OR IGNORE INTO retractions (id, author, target) VALUES (?, ?, ?)",
                    (rec.id, rec.author, f["target"]),
                )
            return
        if rec.kind == KIND_BANK:
            self._add_bank(rec)
            return
        if rec.kind != KIND_MEMORY:
            return  # unknown kinds are replicated, not shown
        text, category = f.get("text"), f.get("category")
        if not isinstance(text, str) or not isinstance(category, str):
            return
        # Any author's record reaches every host (invariant 8): a field of the wrong type
        # or range is read as absent, never allowed to break reading for everyone.
        subject = f.get("subject") if isinstance(f.get("subject"), str) else None
        raw_tags = f.get("tags")
        tags = [t for t in raw_tags if isinstance(t, str)] if isinstance(raw_tags, list) else []
        expires = _int(f.get("expires_at"))
        supersedes = f.get("supersedes") if isinstance(f.get("supersedes"), str) else None
        bank, document_id, extra = _agent_fields(f)
        key = f.get("idempotency_key") if isinstance(f.get("idempotency_key"), str) else None
        cur = self._db.execute(
            "INSERT OR IGNORE INTO memories (id, author, category, subject, tags, text, ts, "
            "expires_at, supersedes, bank, document_id, extra, idempotency_key) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (rec.id, rec.author, category, subject, json.dumps(tags), text, rec.ts, expires,
             supersedes, bank, document_id, extra, key),
        )  # fmt: skip
        if cur.rowcount == 0:
            return
        self._db.execute(
            "INSERT INTO memories_fts (rowid, text, subject, category, tags) "
            "VALUES (?, ?, ?, ?, ?)",
            (cur.lastrowid, text, subject or "", category, " ".join(tags)),
        )
        bucket = (rec.author, rec.ts // self.config.quota_window_ms)
        bisect.insort(self._windows.setdefault(bucket, []), (rec.ts, rec.id))
        if self.semantic is not None:
            self.semantic.add(rec.id)  # its text is read back from here when embedded

    @_locked
    def _texts_of(self, record_ids: list[str]) -> dict[str, str]:
        """What the semantic index embeds of each memory (``embedded_text``), for its
        catch-up thread; nothing once closed."""
        if self._closed:
            return {}
        rows = self._db.execute(
            "SELECT m.id, m.text, m.subject, m.tags FROM json_each(?) j "
            "CROSS JOIN memories m ON m.id = j.value", (json.dumps(record_ids),))  # fmt: skip
        return {mid: embedded_text(text, subject, json.loads(tags))
                for mid, text, subject, tags in rows}  # fmt: skip

    # -- recall ------------------------------------------------------------------------

    @_locked
    def recall(
        self,
        query: str | None = None,
        *,
        category: str | None = None,
        subject: str | None = None,
        tag: str | None = None,
        author: str | Collection[str] | None = None,
        since: int | None = None,
        limit: int = 20,
        include_untrusted: bool = False,
        mode: str = "hybrid",
        bank: str | None = None,
        tags_all: Collection[str] = (),
        tags_any: Collection[str] = (),
    ) -> Recall:
        """Memories matching ``query``, best first; without a query, newest first.

        ``mode``: ``lexical`` ranks by the query's words (FTS5 BM25, then newest),
        ``semantic`` by meaning (the vectors of ``self.semantic``), ``hybrid`` fuses both
        lanes (``crdt.fusion``). Without vectors, or while they are being built, every
        mode answers lexically and ``Recall.note`` says so.

        Hidden, in every lane before fusion: untrusted authors (unless
        ``include_untrusted``), memories retracted or superseded by their own author,
        expired ones, those not matching ``category``/``subject``/``tag``/``author``/
        ``since``, those over their author's quota, and those a newer memory of the same
        author, bank and ``document_id`` supersedes. ``author``: one key, or several (a
        host's keys across its rotations). ``bank``: that bank only (None: every bank);
        ``tags_all`` / ``tags_any``: every / one of those tags."""
        if mode not in MODES:
            raise ValueError(f"recall mode is one of {', '.join(MODES)}, not {mode!r}")
        trust = self._trust
        where, args = self._filters(trust, category=category, subject=subject, tag=tag,
                                    author=author, since=since,
                                    include_untrusted=include_untrusted, bank=bank,
                                    tags_all=tags_all, tags_any=tags_any)  # fmt: skip
        capped: dict[str, set[str]] = {}
        if not query:
            sql = f"SELECT {_COLS} FROM memories m WHERE {' AND '.join(where)} "
            sql += "ORDER BY m.ts DESC, m.id"
            rows = self._visible(self._db.execute(sql, args), limit, capped)
            return Recall([self._memory(r, trust) for r, _ in rows], _counts(capped))
        match = _fts_query(query)
        words = match is not None
        lanes: dict[str, list[tuple[tuple[Any, ...], float]]] = {}
        depth = max(limit, self.config.lane_depth) if mode == "hybrid" else limit
        note = None
        semantic = self.semantic
        use_vectors = mode != "lexical" and semantic is not None and semantic.ready
        if mode != "lexical" and not use_vectors:
            note = ("no semantic index here: lexical only" if semantic is None else
                    f"semantic index building ({semantic.pending()} memories to embed): "
                    "lexical only")  # fmt: skip
        if words and (mode == "lexical" or mode == "hybrid" or not use_vectors):
            lanes["bm25"] = self._bm25_lane(match or "", where, args, depth, capped)
        if use_vectors and semantic is not None:
            try:
                lanes["semantic"] = self._semantic_lane(
                    semantic, query, where, args, depth, capped,
                    restricted=any(v is not None for v in (category, subject, tag, author,
                                                           since))
                    or bool(tags_all or tags_any) or bank not in (None, DEFAULT_BANK),
                )  # fmt: skip
            except EmbedderUnavailable as e:
                note = f"{e}: lexical only"
                if words and "bm25" not in lanes:
                    lanes["bm25"] = self._bm25_lane(match or "", where, args, depth, capped)
        if not lanes:
            return Recall([], mode="lexical", note=note)  # only punctuation: nothing can match
        rows_by_id = {r[0]: r for lane in lanes.values() for r, _ in lane}
        fused = fuse({name: [(r[0], score) for r, score in lane] for name, lane in lanes.items()},
                     dict(self.config.fusion_weights), self.config.fusion_k)  # fmt: skip
        hits = [self._memory(rows_by_id[f.id], trust, f.ranks, f.score) for f in fused[:limit]]
        answered = "hybrid" if len(lanes) == 2 else ("semantic" if "semantic" in lanes
                                                       else "lexical")  # fmt: skip
        return Recall(hits, _counts(capped), mode=answered, note=note)

    def _filters(self, trust: TrustSet, *, category: str | None, subject: str | None,
                 tag: str | None, author: str | Collection[str] | None, since: int | None,
                 include_untrusted: bool, bank: str | None = None,
                 tags_all: Collection[str] = (),
                 tags_any: Collection[str] = ()) -> tuple[list[str], list[Any]]:  # fmt: skip
        """The SQL conditions (on ``memories m``) every lane applies before fusion."""
        where = [
            "NOT EXISTS (SELECT 1 FROM retractions r "
            "WHERE r.target = m.id AND r.author = m.author)",  # only the author's own counts
            # Superseded by a later memory of its own author (anyone else's claim is ignored).
            "NOT EXISTS (SELECT 1 FROM memories s "
            "WHERE s.supersedes = m.id AND s.author = m.author)",
            "(m.expires_at IS NULL OR m.expires_at > ?)",
            _CURRENT_DOCUMENT,
        ]
        args: list[Any] = [self.now_ms()]
        if bank is not None:
            where.append("m.bank = ?")
            args.append(bank)
        for wanted, joiner in ((tags_all, " AND "), (tags_any, " OR ")):
            if wanted:
                where.append("(" + joiner.join(
                    "EXISTS (SELECT 1 FROM json_each(m.tags) WHERE value = ?)" for _ in wanted
                ) + ")")  # fmt: skip
                args.extend(wanted)
        for column, value in (("category", category), ("subject", subject)):
            if value is not None:
                where.append(f"m.{column} = ?")
                args.append(value)
        if author is not None:
            authors = [author] if isinstance(author, str) else sorted(author)
            where.append(f"m.author IN ({','.join('?' * len(authors))})")
            args.extend(authors)
        if since is not None:
            where.append("m.ts >= ?")
            args.append(since)
        if tag is not None:
            where.append("EXISTS (SELECT 1 FROM json_each(m.tags) WHERE value = ?)")
            args.append(tag)
        if not include_untrusted:
            # Trusted keys, and revoked ones up to their cutoff (ts <= cutoff).
            keys = sorted(trust.keys)
            terms = [f"m.author IN ({','.join('?' * len(keys))})"]
            args.extend(keys)
            for who, cutoff in sorted(trust.cutoffs.items()):
                terms.append("(m.author = ? AND m.ts <= ?)")
                args.extend((who, cutoff))
            where.append(f"({' OR '.join(terms)})")
        return where, args

    def _bm25_lane(self, match: str, where: list[str], args: list[Any], depth: int,
                   capped: dict[str, set[str]]) -> list[tuple[tuple[Any, ...], float]]:  # fmt: skip
        """The best ``depth`` visible memories by BM25 (then newest), score = -bm25.

        FTS5 ranks the matches alone first and only the best few (2x ``depth``, more if
        the filters hide too many of them) are joined to the memories and filtered, so a
        filter costs per candidate, not per match. A broad query (more than
        ``lexical_rank_cap`` matches) would still cost time in proportion to the store,
        FTS5 scoring every match: then only the ``lexical_rank_cap`` most recently indexed
        matches are scored (a rowid bound that FTS5 applies while reading its index: the
        memories that arrived last, or after a restart the last in the document's order),
        and every match only if those leave fewer than ``depth`` visible. A specific query
        (fewer matches than the cap and than the candidates) ranks exactly as before."""
        cap = self.config.lexical_rank_cap
        floor = self._db.execute(
            "SELECT rowid FROM memories_fts WHERE memories_fts MATCH ? ORDER BY rowid DESC "
            "LIMIT 1 OFFSET ?", (match, cap)).fetchone()  # fmt: skip
        bounds: list[tuple[int | None, int | None]] = [(None, None)]  # (rowid floor, matches)
        if floor is not None:
            bounds.insert(0, (floor[0], cap))
        for bound, matches in bounds:
            wanted = 2 * depth  # room for what the filters hide; more if that was not enough
            while True:
                trial: dict[str, set[str]] = {}
                rows = self._bm25_candidates(match, bound, wanted, where, args)
                out = self._visible(iter(rows), depth, trial, scored=True)
                if len(out) >= depth:
                    break
                if matches is None:
                    matches = self._db.execute("SELECT count(*) FROM memories_fts WHERE "
                                               "memories_fts MATCH ?", (match,)).fetchone()[0]
                if wanted >= matches:
                    break
                wanted *= 8
            if len(out) >= depth or bound is None:
                for who, hidden in trial.items():
                    capped.setdefault(who, set()).update(hidden)
                return out
        return []  # not reached: the last bound is None

    def _bm25_candidates(self, match: str, bound: int | None, wanted: int, where: list[str],
                         args: list[Any]) -> list[tuple[tuple[Any, ...], float]]:  # fmt: skip
        """The visible-or-not rows of the ``wanted`` best matches (those above rowid
        ``bound`` if given), best first, filtered by ``where``."""
        inner = "SELECT rowid AS r, rank AS s FROM memories_fts "
        inner += "WHERE memories_fts MATCH ?"
        params: list[Any] = [match]
        if bound is not None:
            inner += " AND rowid > ?"
            params.append(bound)
        inner += " ORDER BY rank LIMIT ?"  # FTS5 keeps only the best, as it scores
        params.append(wanted)
        sql = (f"SELECT {_COLS}, -c.s FROM ({inner}) c CROSS JOIN memories m ON m.n = c.r "
               f"WHERE {' AND '.join(where)} ORDER BY c.s, m.ts DESC, m.id")  # fmt: skip
        return [(r[:-1], r[-1]) for r in self._db.execute(sql, [*params, *args])]

    def _semantic_lane(self, index: SemanticIndex, query: str, where: list[str],
                       args: list[Any], depth: int, capped: dict[str, set[str]], *,
                       restricted: bool) -> list[tuple[tuple[Any, ...], float]]:  # fmt: skip
        """The best ``depth`` visible memories by cosine similarity to the query. Each
        neighbour the index proposes passes the same filters as the BM25 lane; with a
        narrowing filter (category, subject, …) the rows that pass are scored instead."""
        vector = index.embed_query(query)
        floor = self.config.semantic_min_similarity
        cond = " AND ".join(where)
        if restricted:
            rows = {r[0]: r for r in self._db.execute(
                f"SELECT {_COLS} FROM memories m WHERE {cond}", args)}  # fmt: skip
            sims = index.similarities(vector, rows)
            ranked = sorted(((rows[i], s) for i, s in sims.items() if s >= floor),
                            key=lambda rs: (-rs[1], -rs[0][6], rs[0][0]))  # fmt: skip
            return self._visible(iter(ranked), depth, capped, scored=True)
        wanted = 2 * depth  # room for what the filters hide; more if that was not enough
        while True:
            near = [(i, s) for i, s in index.nearest(vector, wanted) if s >= floor]
            found = {r[0]: r for r in self._db.execute(
                # CROSS JOIN: the proposed ids drive the loop (by the unique index on id),
                # never a scan of every memory.
                f"SELECT {_COLS} FROM json_each(?) j CROSS JOIN memories m ON m.id = j.value "
                f"WHERE {cond}", [json.dumps([i for i, _ in near]), *args])}  # fmt: skip
            trial: dict[str, set[str]] = {}
            out = self._visible(((found[i], s) for i, s in near if i in found), depth, trial,
                                scored=True)  # fmt: skip
            exhausted = len(near) < wanted or wanted >= len(index)
            if len(out) >= depth or exhausted:
                for who, hidden in trial.items():
                    capped.setdefault(who, set()).update(hidden)
                return out
            wanted *= 4

    def _visible(self, rows: Any, limit: int, capped: dict[str, set[str]], *,
                 scored: bool = False) -> list[Any]:  # fmt: skip
        """The first ``limit`` rows within their author's quota (the others counted in
        ``capped``); ``rows`` are ``(row, score)`` pairs if ``scored``."""
        out: list[Any] = []
        for item in rows:
            row, score = item if scored else (item, 0.0)
            mid, who, ts = row[0], row[5], row[6]
            if not self._within_quota(who, ts, mid):
                capped.setdefault(who, set()).add(mid)
                continue
            out.append((row, score))
            if len(out) >= limit:
                break
        return out

    def _memory(self, row: tuple[Any, ...], trust: TrustSet, lanes: dict[str, int] | None = None,
                score: float | None = None) -> Memory:  # fmt: skip
        mid, text, cat, subj, tags, who, ts, expires, supersedes = row[:9]
        return Memory(mid, text, cat, subj, json.loads(tags), who, ts, trust.counts(who, ts),
                      expires, supersedes, *_agent_columns(row[9:12]), lanes,
                      score)  # fmt: skip

    @_locked
    def over_quota(self) -> dict[str, int]:
        """Per author, the memories the quota hides (past ``quota_per_window`` in some
        window): a flooding author, for `gossip inspect` to flag."""
        out: dict[str, int] = {}
        for (author, _), bucket in self._windows.items():
            extra = len(bucket) - self.config.quota_per_window
            if extra > 0:
                out[author] = out.get(author, 0) + extra
        return out

    def _within_quota(self, author: str, ts: int, mid: str) -> bool:
        bucket = self._windows.get((author, ts // self.config.quota_window_ms), [])
        return bisect.bisect_left(bucket, (ts, mid)) < self.config.quota_per_window

    @_locked
    def memory(self, record_id: str) -> Memory | None:
        """One memory by id, whatever its trust, retraction or expiry (for `show`)."""
        row = self._db.execute(
            "SELECT id, text, category, subject, tags, author, ts, expires_at, supersedes, "
            "bank, document_id, extra FROM memories WHERE id = ?",
            (record_id,),
        ).fetchone()
        if row is None:
            return None
        mid, text, cat, subj, tags, who, ts, expires, supersedes = row[:9]
        trusted = self._trust.counts(who, ts)
        return Memory(mid, text, cat, subj, json.loads(tags), who, ts, trusted, expires, supersedes,
                      *_agent_columns(row[9:]))  # fmt: skip

    @_locked
    def keyed(self, author: str, idempotency_key: str) -> Memory | None:
        """``author``'s memory written with ``idempotency_key`` (the oldest, should it
        have written two), whatever its retraction or expiry: a retried write finds it."""
        row = self._db.execute(
            "SELECT id FROM memories WHERE idempotency_key = ? AND author = ? "
            "ORDER BY ts, id LIMIT 1", (idempotency_key, author)
        ).fetchone()  # fmt: skip
        return None if row is None else self.memory(row[0])

    def first_seen(self, record_id: str) -> int | None:
        """When this host first stored ``record_id`` (ms), None if it is not here."""
        return self.receipts().get(record_id)

    @_locked
    def receipts(self) -> dict[str, int]:
        """Record id -> when this host first stored it (ms). The first call reads the
        store (``Replica.receipts``): call it in the replica's thread."""
        if self._seen is None:
            self._seen = self.replica.receipts()
        return self._seen

_WORD = re.compile(r"\w+", re.UNICODE)
def _counts(capped: dict[str, set[str]]) -> dict[str, int]:
    return {who: len(ids) for who, ids in capped.items()}


def embedded_text(text: str, subject: str | None, tags: list[str]) -> str:
    """What a memory's vector is made of: what it says, what about, and its tags."""
    return " ".join([text, subject or "", *tags]).strip()


def _fts_query(query: str) -> str | None:
    """Words of a free-text query as an FTS5 OR-query of quoted terms (so punctuation
    such as ``03:00`` or ``k2p5/kimi`` is never read as FTS5 syntax)."""
    words = _WORD.findall(query)
    return " OR ".join(f'"{w}"' for w in words) if words else None
