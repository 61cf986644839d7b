"""Recall of memories: the lanes (BM25 over FTS5, the semantic vectors), fused by
reciprocal rank (``crdt.fusion``), and one memory by id.

A mixin of ``crdt.views.Views``: it reads the ``memories`` tables the core keeps and the
semantic index, applying in every lane, before fusion, the conditions of
``crdt.views.filters``. It never writes a table, the document or the index.
"""

from __future__ import annotations

import json
import re
import sqlite3
from collections.abc import Collection
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..errors import EmbedderUnavailable
from ..fusion import Fused, fuse
from ..records import DEFAULT_BANK
from ..trust import TrustSet
from .common import _COLS, T, _locked
from .config import MODES, ViewConfig
from .filters import RecallFilters, ShareCap

if TYPE_CHECKING:
    from ..semantic import SemanticIndex



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
    # author -> memories the share cap hid among those ranked above the last hit
    capped: dict[str, int] = field(default_factory=dict)
    mode: str = "lexical"  # the lanes that answered (hybrid asked while vectors are built: lexical)
    # Why the lanes asked for did not all answer (e.g. the vectors are still being built).
    note: str | None = None

    def to_json(self) -> list[dict[str, Any]]:
        return [m.to_json() for m in self.hits]


_WORD = re.compile(r"\w+", re.UNICODE)


def embedded_text(text: str, subject: str | None, tags: list[str]) -> str:
    """What a memory's vector is made of: what it says, what about, and its tags."""
    return " ".join([text, subject or "", *tags]).strip()


def _fts_query(query: str) -> str | None:
    """Words of a free-text query as an FTS5 OR-query of quoted terms (so punctuation
    such as ``03:00`` or ``k2p5/kimi`` is never read as FTS5 syntax)."""
    words = _WORD.findall(query)
    return " OR ".join(f'"{w}"' for w in words) if words else None


class RecallViews(RecallFilters):
    """Recall of ``Views`` (its attributes are set by ``Views``)."""

    config: ViewConfig
    semantic: SemanticIndex | None
    _db: sqlite3.Connection
    _trust: TrustSet

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
        ``since`` (on the signed time bounded by first-seen, ``bounded_time``), those
        past their author's share of the results (``ShareCap``: never this host's own,
        nor an author asked for), and those a newer memory of the same author, bank and
        ``document_id`` supersedes. Newest means by the bounded time. ``author``: one
        key, or several (a host's keys across its rotations). ``bank``: that bank only
        (None: every bank); ``tags_all`` / ``tags_any``: every / one of those tags."""
        if mode not in MODES:
            raise ValueError(f"recall mode is one of {', '.join(MODES)}, not {mode!r}")
        trust = self._trust
        where, args = self._filters(trust, category=category, subject=subject, tag=tag,
                                    author=author, since=since,
                                    include_untrusted=include_untrusted, bank=bank,
                                    tags_all=tags_all, tags_any=tags_any)  # fmt: skip
        cap = self._share_cap(author)
        if not query:
            sql = f"SELECT {_COLS} FROM memories m WHERE {' AND '.join(where)} "
            sql += "ORDER BY m.t DESC, m.ts DESC, m.id"
            rows = cap.visible(((r, 0.0) for r in self._db.execute(sql, args)), limit)
            return Recall(self._memories([r for r, _ in rows], trust),
                          cap.counts(r[0] for r, _ in rows))  # fmt: skip
        match = _fts_query(query)
        words = match is not None
        lanes: dict[str, list[tuple[tuple[Any, ...], float]]] = {}
        depth = max(limit, self.config.lane_depth) if mode == "hybrid" else limit
        notes: list[str] = []  # why the lanes asked for, or the preferred model, did not answer
        indexes = [] if mode == "lexical" else self.semantic_indexes()
        ready = [i for i in indexes if i.ready]
        if mode != "lexical" and not ready:
            notes.append("no semantic index here: lexical only" if not indexes else
                         f"semantic index building ({indexes[-1].pending()} memories to "
                         "embed): lexical only")  # fmt: skip
        elif indexes[:1] != ready[:1]:  # the preferred model's vectors are being built
            notes.append(f"vectors of {indexes[0].model} being built ({indexes[0].pending()} "
                         "memories to embed)")  # fmt: skip
        if words and (mode == "lexical" or mode == "hybrid" or not ready):
            lanes["bm25"] = self._bm25_lane(match or "", where, args, depth, cap)
        restricted = (any(v is not None for v in (category, subject, tag, author, since))
                      or bool(tags_all or tags_any) or bank not in (None, DEFAULT_BANK))
        for index in ready:  # one model's vectors, never two: the first whose model answers
            try:
                lanes["semantic"] = self._semantic_lane(index, query, where, args, depth, cap,
                                                        restricted=restricted)  # fmt: skip
            except EmbedderUnavailable as e:
                notes.append(f"{index.model}: {e}")
                continue
            if notes:
                notes[-1] += f": the semantic lane used {index.model}"
            break
        else:
            if ready:
                notes[-1] += ": lexical only"
                if words and "bm25" not in lanes:
                    lanes["bm25"] = self._bm25_lane(match or "", where, args, depth, cap)
        note = "; ".join(notes) or None
        if not lanes:
            return Recall([], mode="lexical", note=note)  # only punctuation: nothing can match
        rows_by_id = {r[0]: r for lane in lanes.values() for r, _ in lane}
        fused = fuse({name: [(r[0], score) for r, score in lane] for name, lane in lanes.items()},
                     dict(self.config.fusion_weights), self.config.fusion_k)  # fmt: skip
        # The lanes offered each author its share of their depth; the fused list holds it
        # to its share of the limit.
        kept = cap.visible(((rows_by_id[f.id], f) for f in fused), limit)
        hits = self._memories([row for row, _ in kept], trust, [f for _, f in kept])
        answered = "hybrid" if len(lanes) == 2 else ("semantic" if "semantic" in lanes
                                                       else "lexical")  # fmt: skip
        return Recall(hits, cap.counts(h.id for h in hits), mode=answered, note=note)

    def _bm25_lane(self, match: str, where: list[str], args: list[Any], depth: int,
                   cap: ShareCap) -> list[tuple[tuple[Any, ...], float]]:  # fmt: skip
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
        rank_cap, first = self.config.lexical_rank_cap, 2 * depth
        # (rowid floor, at most this many match above it; None: not counted yet). A
        # specific query: a look at its newest matches (rowids, nothing ranked) finds no
        # more than the first try's candidates, so that try sees every match.
        bounds: list[tuple[int | None, int | None]] = [(None, first)]
        if self._newest(match, first) is not None:
            floor = self._newest(match, rank_cap)
            bounds = [(None, None)] if floor is None else [(floor, rank_cap), (None, None)]
        for bound, matches in bounds:
            wanted = first  # room for what the filters hide; more if that was not enough
            while True:
                trial = cap.trial()
                out = self._bm25_candidates(match, bound, wanted, where, args, trial, depth)
                if len(out) >= depth:
                    break
                if matches is None:
                    matches = self._db.execute("SELECT count(*) FROM memories_fts WHERE "
                                               "memories_fts MATCH ?", (match,)).fetchone()[0]
                if wanted >= matches:
                    break
                wanted *= 8
            if len(out) >= depth or bound is None:
                cap.merge(trial)
                return out
        return []  # not reached: the last bound is None

    def _newest(self, match: str, n: int) -> int | None:
        """The rowid of the ``n + 1``-th most recently indexed match, None if at most
        ``n`` match (FTS5 reads its index newest first and ranks nothing)."""
        row = self._db.execute("SELECT rowid FROM memories_fts WHERE memories_fts MATCH ? "
                               "ORDER BY rowid DESC LIMIT 1 OFFSET ?", (match, n)).fetchone()
        return None if row is None else row[0]

    def _bm25_candidates(self, match: str, bound: int | None, wanted: int, where: list[str],
                         args: list[Any], cap: ShareCap,
                         depth: int) -> list[tuple[tuple[Any, ...], float]]:  # fmt: skip
        """The first ``depth`` rows ``cap`` leaves of the ``wanted`` best matches (those
        above rowid ``bound`` if given) that pass ``where``, best first, with their score;
        only those rows are read."""
        # bm25() rather than FTS5's ``rank``: the same scores, but ORDER BY rank makes FTS5
        # prepare a statement of its own per query (a third of a specific recall's time).
        inner = "SELECT rowid AS r, bm25(memories_fts) AS s FROM memories_fts "
        inner += "WHERE memories_fts MATCH ?"
        params: list[Any] = [match]
        if bound is not None:
            inner += " AND rowid > ?"
            params.append(bound)
        inner += " ORDER BY s LIMIT ?"  # the sorter keeps only the best, as they are scored
        params.append(wanted)
        sql = (f"SELECT {_COLS}, -c.s FROM ({inner}) c CROSS JOIN memories m ON m.n = c.r "
               f"WHERE {' AND '.join(where)} ORDER BY c.s, m.t DESC, m.ts DESC, m.id")  # fmt: skip
        rows = self._db.execute(sql, [*params, *args])
        try:
            return cap.visible(((r, r[-1]) for r in rows), depth)  # the score: the last column
        finally:
            rows.close()

    def _semantic_lane(self, index: SemanticIndex, query: str, where: list[str],
                       args: list[Any], depth: int, cap: ShareCap, *,
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
                            key=lambda rs: (-rs[1], -rs[0][T], -rs[0][6], rs[0][0]))  # fmt: skip
            return cap.visible(ranked, depth)
        wanted = 2 * depth  # room for what the filters hide; more if that was not enough
        while True:
            near = [(i, s) for i, s in index.nearest(vector, wanted) if s >= floor]
            found = {r[0]: r for r in self._db.execute(
                # CROSS JOIN: the proposed ids drive the loop (by the unique index on id),
                # never a scan of every memory.
                f"SELECT {_COLS} FROM json_each(?) j CROSS JOIN memories m ON m.id = j.value "
                f"WHERE {cond}", [json.dumps([i for i, _ in near]), *args])}  # fmt: skip
            trial = cap.trial()
            out = trial.visible(((found[i], s) for i, s in near if i in found), depth)
            exhausted = len(near) < wanted or wanted >= len(index)
            if len(out) >= depth or exhausted:
                cap.merge(trial)
                return out
            wanted *= 4

    def _memories(self, rows: list[tuple[Any, ...]], trust: TrustSet,
                  fused: list[Fused] | None = None) -> list[Memory]:  # fmt: skip
        """The memories of lane rows (``_COLS``), with their lanes and fused score if
        given. Their ``fields`` are decoded as one JSON array: one call, not one a hit."""
        decoded = json.loads("[" + ",".join(row[4] for row in rows) + "]")
        out = []
        for i, (row, f) in enumerate(zip(rows, decoded, strict=True)):
            mid, text, cat, subj, _, who, ts, expires, supersedes, bank, document_id = row[:T]
            lanes, score = (None, None) if fused is None else (fused[i].ranks, fused[i].score)
            out.append(Memory(mid, text, cat, subj, f["tags"], who, ts, trust.counts(who, ts),
                              expires, supersedes, bank, document_id, f["context"],
                              f["metadata"], f["timestamp"], lanes, score))  # fmt: skip
        return out

    @_locked
    def retractions(self, record_id: str, author: str) -> list[str]:
        """The ids of ``author``'s retractions of ``record_id``, sorted (for `show`)."""
        return [row[0] for row in self._db.execute(
            "SELECT id FROM retractions WHERE target = ? AND author = ? ORDER BY id",
            (record_id, author))]  # fmt: skip

    @_locked
    def memory(self, record_id: str) -> Memory | None:
        """One memory by id, whatever its trust, retraction or expiry (for `show`)."""
        row = self._db.execute(f"SELECT {_COLS} FROM memories m WHERE m.id = ?",
                               (record_id,)).fetchone()  # fmt: skip
        return None if row is None else self._memories([row], self._trust)[0]
