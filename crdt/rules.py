"""The ingest gate's rules that need the replica: order, item roots, and effects.

``check_structure`` (updates.py) already proved what can be proved from the update
alone. What remains depends on what this replica holds, and only on the author's own
earlier updates (invariant 5, confluence):

- order (invariant 4): the update must continue its client's clock; everything it builds
  on (origins, deleted items) must already be here. Otherwise it waits outside the doc.
- item roots: ``records`` items are immutable, so no item may continue (overwrite) one
  and no delete set may name one. ``ItemIndex`` remembers, per client and clock range,
  which root each item went to; it is derived from accepted updates and stored with them.
- effects (invariant 2), read from the update's own bytes (``wire.scan``): every value is a
  record signed by the update's author, at its content id (``records``) or in its own
  ``kind:author:name`` namespace (``state``); nothing in ``records`` changes or vanishes.
"""

from __future__ import annotations

import bisect
import enum
from dataclasses import dataclass
from typing import Any

from . import wire
from .errors import RecordError, RecordTooDeep, RejectedUpdate
from .frozen import built
from .records import STATE_KINDS, SignedRecord, split_state_key, state_name
from .updates import SignedUpdate

RECORDS, STATE, GC_ROOT = "records", "state", "gc"


class ItemIndex:
    """Per client, sorted runs ``[start, end)`` → root ("records", "state" or "gc")."""

    def __init__(self) -> None:
        self._runs: dict[int, tuple[list[int], list[int], list[str]]] = {}

    def add(self, client: int, start: int, end: int, root: str) -> None:
        starts, ends, roots = self._runs.setdefault(client, ([], [], []))
        if starts and start < ends[-1]:
            raise ValueError("runs must be added in clock order")
        if starts and ends[-1] == start and roots[-1] == root:
            ends[-1] = end
        else:
            starts.append(start)
            ends.append(end)
            roots.append(root)

    def roots_in(self, client: int, start: int, end: int) -> set[str | None]:
        """Roots covering ``[start, end)``; None stands for a clock the index does not know."""
        runs = self._runs.get(client)
        if runs is None:
            return {None}
        starts, ends, roots = runs
        i = max(bisect.bisect_right(starts, start) - 1, 0)
        found: set[str | None] = set()
        pos = start
        while pos < end and i < len(starts):
            if starts[i] >= end:
                break
            if starts[i] > pos:
                found.add(None)
                pos = starts[i]
            if ends[i] > pos:
                found.add(roots[i])
                pos = ends[i]
            i += 1
        if pos < end:
            found.add(None)
        return found

    def run_count(self) -> int:
        return sum(len(r[0]) for r in self._runs.values())

    def overlay(self) -> ItemIndex:
        """A scratch index on top of this one, for runs not yet committed (one batch)."""
        return _OverlayIndex(self)


class _OverlayIndex(ItemIndex):
    """Runs of an uncommitted batch over a base index; each client's new runs lie past
    the base's, since they extend its clock."""

    def __init__(self, base: ItemIndex) -> None:
        super().__init__()
        self._base = base

    def roots_in(self, client: int, start: int, end: int) -> set[str | None]:
        runs = self._runs.get(client)
        if runs is None:
            return self._base.roots_in(client, start, end)
        first = runs[0][0]
        found: set[str | None] = set()
        if start < first:
            found |= self._base.roots_in(client, start, min(end, first))
        if end > first:
            found |= super().roots_in(client, max(start, first), end)
        return found


class Verdict(enum.Enum):
    APPLY = "apply"  # new content: apply it
    DUPLICATE = "duplicate"  # everything in it is already here
    WAIT = "wait"  # it builds on something not yet here


@dataclass(frozen=True)
class Plan:
    verdict: Verdict
    runs: tuple[tuple[int, int, str], ...] = ()  # new item runs of the update's client
    missing: tuple[int, int] | None = None  # for WAIT: (client, clock) it waits to reach


def plan(
    su: SignedUpdate,
    scanned: wire.ScannedUpdate,
    sv: dict[int, int],
    index: ItemIndex,
    bindings: dict[int, tuple[str, int]],
) -> Plan:
    """Decide order and root rules for a structurally valid update (no document access).

    Everything below our clock ``have`` of the update's client is judged by what we hold
    (the index), never by the update's own description of it: yrs skips structs it
    already has, so a later struct continuing clock ``k < have`` continues *our* item k.
    """
    h = su.header

    def reject(rule: str, detail: str, key: str = "") -> RejectedUpdate:
        return RejectedUpdate(rule, detail, author=h.author, key=key)

    bound = bindings.get(h.client)
    if bound is not None and bound != (h.author, h.epoch):
        raise reject("client-binding", f"client {h.client} already belongs to another key/epoch")
    have = sv.get(h.client, 0)
    if h.end <= have:
        return Plan(Verdict.DUPLICATE)
    if h.start > have:
        return Plan(Verdict.WAIT, missing=(h.client, have))
    if h.start < have and not h.checkpoint:
        # Updates of one client are cut at the same clocks everywhere (each is one local
        # transaction); only a checkpoint, which merges many, can straddle our clock.
        raise reject("clock-range", f"[{h.start}, {h.end}) overlaps clock {have} we hold")

    def foreign_client(c: int) -> Plan | None:
        """Another epoch's client of this author: it must be bound to this author here."""
        owner = bindings.get(c)
        if owner is None:
            return Plan(Verdict.WAIT, missing=(c, 0))
        if owner[0] != h.author:
            raise reject("client-binding", f"client {c} belongs to another author")
        return None

    # Roots of this update's new items, in clock order; an item that continues another
    # (a map overwrite) inherits the root of the item it continues.
    own: list[tuple[int, int, str]] = []
    own_starts: list[int] = []

    def own_roots(start: int, end: int) -> set[str | None]:
        found: set[str | None] = set()
        i = max(bisect.bisect_right(own_starts, start) - 1, 0)
        while i < len(own) and own[i][0] < end:
            if own[i][1] > start:
                found.add(own[i][2])
            i += 1
        return found

    for s in scanned.structs:
        if s.clock + s.length <= have:
            continue  # yrs skips what we hold; check_items has judged its values anyway
        if s.ref == wire.GC:
            root = GC_ROOT
        elif s.origin is None:
            root = s.parent_root or ""
        else:
            oc, ok = s.origin
            if oc == h.client and ok >= s.clock:
                raise reject("clock-range", f"item ({s.client}, {s.clock}) continues its future")
            if oc == h.client and ok >= have:
                roots = own_roots(ok, ok + 1)
            elif ok < sv.get(oc, 0):
                if oc != h.client and (wait := foreign_client(oc)):
                    return wait
                roots = index.roots_in(oc, ok, ok + 1)
            else:
                return Plan(Verdict.WAIT, missing=(oc, ok + 1))
            if roots != {STATE}:
                raise reject(
                    "record-overwrite",
                    f"item ({s.client}, {s.clock}) continues a {sorted(map(str, roots))} item: "
                    "only state values may be overwritten",
                )
            root = STATE
        if s.ref == wire.DELETED and root == RECORDS:
            raise reject("record-delete", f"item ({s.client}, {s.clock}) is a deleted record")
        start = max(s.clock, have)
        own.append((start, s.clock + s.length, root))
        own_starts.append(start)

    for client, ranges in scanned.delete_set.items():
        if client != h.client and (wait := foreign_client(client)):
            return wait
        held = have if client == h.client else sv.get(client, 0)
        for dclock, dlen in ranges:
            dend = dclock + dlen
            roots = index.roots_in(client, dclock, min(dend, held)) if dclock < held else set()
            if dend > held:
                if client != h.client:
                    return Plan(Verdict.WAIT, missing=(client, dend))
                roots |= own_roots(max(dclock, have), dend)
            if RECORDS in roots:
                raise reject("record-delete", f"the delete set names a record ({client}, {dclock})")
            if None in roots:
                raise reject("record-delete", f"the delete set names unknown items of {client}")

    return built(Plan, verdict=Verdict.APPLY, runs=tuple(own), missing=None)


Effect = tuple[str, str, "SignedRecord | None"]  # (root, key, record; None when deleted)


def check_items(
    author: str, scanned: wire.ScannedUpdate
) -> list[tuple[str, str | None, SignedRecord]]:
    """Invariant 2 from the bytes alone: every value an item carries is a record by
    ``author``; items that name their key are checked against it (content id, namespace,
    kind and name).

    Every item is checked, including one that a concurrent write hides, so the verdict
    never depends on which of two writes wins. That is also why an overwrite — an item
    continuing the author's own earlier item, which does not carry its key — is checked
    only for what its bytes show: a record by the author. Its key is necessarily in the
    author's namespace (``foreign-origin``); whether the record's kind and name match that
    key is checked by readers (``Replica.state``), which skip a mismatch. Signatures are
    left to the caller, who verifies them in bulk.
    Returns (root, key or None for an overwrite, record).
    """
    out: list[tuple[str, str | None, SignedRecord]] = []
    for s in scanned.structs:
        if s.ref == wire.GC:
            continue
        if s.origin is None:  # a new key: the key is in the bytes, whatever the content
            root, key = s.parent_root, s.parent_sub
            assert root is not None and key is not None  # check_structure proved it
        else:  # an overwrite: plan() proves it continues this author's own state item
            root, key = STATE, None
        where = f"{root}/{key}" if key else f"item ({s.client}, {s.clock})"

        def reject(rule: str, detail: str, where: str = where) -> RejectedUpdate:
            return RejectedUpdate(rule, detail, author=author, key=where)

        if s.ref == wire.DELETED:
            # Born deleted: carries no value, but still takes part in the key's conflict
            # resolution, so it may only stand where the author may write.
            if root == RECORDS:
                raise reject("record-delete", "a deleted item under records")
            if key is not None:
                check_state_key(author, key, None, reject)
            continue
        assert s.values is not None
        if len(s.values) != 1:
            raise reject("map-only", "a map item holds one value")
        out.append((root, key, check_value(author, root, key, s.values[0], where)))
    return out


def check_value(author: str, root: str, key: str | None, value: Any, where: str) -> SignedRecord:
    """One value: a well-formed record signed (signature checked elsewhere) by ``author``
    that belongs at ``key`` of ``root`` (when the key is known)."""

    def reject(rule: str, detail: str) -> RejectedUpdate:
        return RejectedUpdate(rule, detail, author=author, key=where)

    try:
        rec = SignedRecord.from_value(value)
    except RecordTooDeep as e:
        raise reject("record-depth", str(e)) from None
    except RecordError as e:
        raise reject("record-invalid", str(e)) from None
    if rec.author != author:
        raise reject("record-author", f"record by {rec.author[:12]}, not the update's author")
    if root == RECORDS:
        if rec.kind in STATE_KINDS:
            raise reject("state-kind", f"a {rec.kind} record belongs in state, not records")
        if key is not None and key != rec.id:
            raise reject("content-id", "the key is not the content id of the record")
    elif key is not None:
        check_state_key(author, key, rec, reject)
    return rec


def check_state_key(author: str, key: str, rec: SignedRecord | None, reject: Any) -> None:
    try:
        kind, key_author, name = split_state_key(key)
    except RecordError as e:
        raise reject("state-key", str(e)) from None
    if key_author != author:
        raise reject("state-namespace", "a state key of another author")
    if rec is None:
        return
    if kind != rec.kind:
        raise reject("state-key", f"key kind {kind!r} but record kind {rec.kind!r}")
    if rec.kind in STATE_KINDS:
        try:
            expected = state_name(rec.kind, rec.fields)
        except RecordError as e:
            raise reject("record-invalid", str(e)) from None
        if name != expected:
            raise reject("state-key", f"key name {name!r} but record says {expected!r}")
