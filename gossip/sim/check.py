"""What must hold once a run has healed and gone quiet.

Convergence (every replica the same, compared several independent ways):

- identical state vectors;
- identical record id sets, and identical state maps (key -> record id);
- identical documents: each replica's whole document as one Yjs update, decoded into its
  structs (client, clock, length, origins, parent, key, values) and its delete set, both
  in a canonical order (yrs writes the keys of a value's map in hash order, so the bytes
  themselves differ from one encoding to the next even for one document);
- the document rebuilt by pycrdt from the union of every stored signed update (merged,
  applied to a fresh ``Doc``) has the same content as each replica — as Yjs's own
  randomized tests compare every client with a document made from the merged updates;
- identical view outputs: recall (everything, ranked), breakers and benchmarks, read at
  one instant with every host trusting every other, by the signed times (each host's
  first-seen times are its own, so its ranks may differ by design: docs/reading.md); and
  on each host, the views its change feed kept current since its last start give the
  same outputs as views built afresh with the same policy (first-seen included);
- nothing left in any replica's buffer of out-of-order updates;
- no update refused by any gate (between honest hosts a rejection is a bug);
- ``PRAGMA integrity_check`` ok on every store.

Durability and validity (Jepsen's ``set-full`` for a grow-only set): every acknowledged
memory is on every replica (``lost``), every record on a replica was written by a
client (``unexpected``), and each author's state keys hold its last acknowledged value.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import pycrdt
from pycrdt import Doc, Map

from crdt import Replica, SignedRecord, SignedUpdate, wire
from crdt.views import ViewConfig, Views


@dataclass
class Acked:
    """What clients were told is durable: memory ids, and each state key's last value."""

    memories: set[str] = field(default_factory=set)
    state: dict[str, str] = field(default_factory=dict)  # state key -> last acked record id
    written: set[str] = field(default_factory=set)  # every record id ever acknowledged

    def add(self, rec: SignedRecord) -> None:
        root, key = rec.doc_key()
        self.written.add(rec.id)
        if root == "records":
            self.memories.add(rec.id)
        else:
            self.state[key] = rec.id


@dataclass
class Verdict:
    failures: list[str] = field(default_factory=list)
    lost: int = 0
    unexpected: int = 0

    @property
    def ok(self) -> bool:
        return not self.failures


def check(
    replicas: dict[str, Replica],
    acked: Acked,
    *,
    now_ms: int,
    rejected: int,
    live_views: dict[str, Views] | None = None,
) -> Verdict:
    v = Verdict()
    names = sorted(replicas)

    def differ(what: str, values: dict[str, Any]) -> None:
        distinct = {repr(x) for x in values.values()}
        if len(distinct) > 1:
            groups: dict[str, list[str]] = {}
            for n in names:
                groups.setdefault(repr(values[n]), []).append(n)
            v.failures.append(f"{what} differ: " + " | ".join(",".join(g) for g in groups.values()))

    svs = {n: _normal(replicas[n].state_vector()) for n in names}
    differ("state vectors", svs)
    recs = {n: replicas[n].records() for n in names}
    states = {n: replicas[n].state() for n in names}
    differ("record id sets", {n: sorted(recs[n]) for n in names})
    differ("state maps", {n: sorted((k, r.id) for k, r in states[n].items()) for n in names})
    docs = {n: replicas[n].document_update() for n in names}
    differ("documents (structs and delete sets)", {n: _structure(docs[n]) for n in names})

    # The document pycrdt makes of every signed update any replica stores.
    raws = {u for n in names for u in replicas[n].updates_for({})}
    rebuilt = Doc()
    if raws:
        merged = pycrdt.merge_updates(*(SignedUpdate.decode(u).update for u in sorted(raws)))
        rebuilt.apply_update(merged)
    expected = _content(rebuilt)
    for n in names:
        mine = Doc()
        mine.apply_update(docs[n])
        if _content(mine) != expected:
            v.failures.append(f"{n}'s document differs from the one rebuilt from all updates")

    signed = ViewConfig(first_seen_bound=False)
    views = {n: _read(Views(replicas[n], signed, now_ms=lambda: now_ms)) for n in names}
    for what in ("recall", "breakers", "benchmarks"):
        differ(f"{what} views", {n: views[n][what] for n in names})
    for n, live in sorted((live_views or {}).items()):
        afresh = _read(Views(replicas[n], live.config, now_ms=lambda: now_ms))
        if _read(live, close=False) != afresh:
            v.failures.append(f"{n}'s views kept by its change feed differ from views built afresh")

    pending = {n: replicas[n].pending_count for n in names if replicas[n].pending_count}
    if pending:
        v.failures.append(f"updates still buffered out of order: {pending}")
    if rejected:
        v.failures.append(f"{rejected} update(s) rejected by an honest host's gate")
    for n in names:
        problems = replicas[n].integrity_check()
        if problems != ["ok"]:
            v.failures.append(f"{n}'s store fails integrity_check: {problems[:3]}")

    # set-full: every acknowledged write present everywhere, nothing nobody wrote.
    lost: set[str] = set()
    for n in names:
        missing = acked.memories - set(recs[n])
        held = {k: r.id for k, r in states[n].items()}
        stale = {k for k, rid in acked.state.items() if held.get(k) != rid}
        lost |= missing | {acked.state[k] for k in stale}
        if missing or stale:
            v.failures.append(
                f"{n} lacks {len(missing)} acknowledged memories and holds a stale value for "
                f"{len(stale)} acknowledged state keys: {sorted(missing | stale)[:3]}"
            )
        extra = (set(recs[n]) | {r.id for r in states[n].values()}) - acked.written
        if extra:
            v.unexpected += len(extra)
            v.failures.append(f"{n} holds {len(extra)} records nobody wrote: {sorted(extra)[:3]}")
    v.lost = len(lost)
    return v


def _structure(update: bytes) -> tuple[list[tuple[Any, ...]], dict[int, list[tuple[int, int]]]]:
    """A document update as sorted structs and a normalised delete set."""
    scanned = wire.scan(update)
    structs = sorted(
        (s.client, s.clock, s.length, s.ref, s.origin, s.right_origin, s.parent_root,
         s.parent_id, s.parent_sub, json.dumps(s.values, sort_keys=True, default=repr))
        for s in scanned.structs
    )  # fmt: skip
    return structs, wire.normalize_delete_set(scanned.delete_set)


def _normal(sv: dict[int, int]) -> dict[int, int]:
    return {c: k for c, k in sorted(sv.items()) if k}


def _content(doc: Doc) -> dict[str, dict[str, Any]]:
    return {root: dict(doc.get(root, type=Map).to_py() or {}) for root in ("records", "state")}


def _read(views: Views, *, close: bool = True) -> dict[str, Any]:
    try:
        return {
            "recall": views.recall(limit=1_000_000).to_json(),
            "breakers": [b.to_json() for b in views.breakers()],
            "benchmarks": [b.to_json() for b in views.benchmarks()],
        }
    finally:
        if close:
            views.close()
