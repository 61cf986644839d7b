"""The effective trust: which keys this host believes, from its keyring and the document.

One function, ``effective_trust``, decides it (the revocations' fixed point is in
``revocations.py``); every reader uses its answer (the views'
trust filter, the node's exchange auth and peer selection). It is pure: the local
keyring (which includes this host), the locally removed keys, and the trust records of
the document (``successor``, ``revoke``, ``vouch``; see docs/protocol.md, "Key records")
go in, a ``TrustSet`` comes out. It depends on the set of records, never on their order.

The rules (docs/protocol.md, "Key records"; docs/threat-model.md, "Key rotation and
revocation"):

- **successor**: counts only when signed by the old key *and* accepted by the new one
  (its ``accept`` signature), so nobody can make itself another host's predecessor. A
  key accepted by two different old keys has no honoured predecessor. An old key that
  names two different successors (in records signed up to its self-revocation's
  ``at``) is **compromised**: neither is honoured and it is revoked from the earliest.
- **reach**: start from the keyring minus locally removed keys; a reached key's honoured
  successor is reached, and with ``follow_vouches`` so is every key it vouches for. A
  locally removed key is never reached. A successor or vouch signed after its author's
  cutoff (below) does not count.
- **revoke** of key X is honoured when signed by:
  X itself (whoever holds a key may retire it); this host (its own decision; also
  with a key it rotated away from, signed before that key's own revocation);
  an honoured successor of X, transitively (the owner retiring a key it rotated away
  from); or, with ``follow_vouches`` and only when X would not be trusted without
  vouches, its **inviter**: the author (or an honoured successor of the author) of a
  vouch for X or for one of X's predecessors that X *accepted* (the vouch's ``accept``,
  signed by X when it joined). Any other
  vouch admits but gives no authority, and nobody else's vouch changes the inviter's.
  A predecessor has no authority over its successor.
  Authority rests on edges (the successor chain, the accepted vouch): a revoke stands
  only if its author, and every edge its authority rests on, was signed before the
  ``at`` of an honoured revocation of its signer (a successor edge ignores revocations
  by the signer's own heirs, as below). Who wins when revocations depend on each other
  is decided by the grounded fixed point (a revoke stands once every revoke that could
  overrule it has fallen, falls once one that stands overrules it; what neither
  settles, a cycle, stands), so the answer never depends on record order.
  Self-revocations and this host's own are never overruled.
- a revoked key leaves the trusted set (no exchange); its records with ``ts`` up to the
  revocation's ``at`` still count, none when it is ``retroactive``. Several honoured
  revocations of one key merge: the earliest ``at``, retroactive if any is. A revoked
  key's vouches count like its memories; its successor edge and its revokes count if
  signed up to ``at`` (``retroactive`` is about content, not about the new key or the
  keys it retired), and an heir's revocation never cuts the successor edge (the owner
  retiring its old key keeps the new one). An ``at`` outside [0, 2**53) is read as the
  record's ``ts``. Only reached keys are reported revoked or compromised.
  This host's own current key is never revoked in its own eyes.

Record times are what their signers chose: a thief holding a key can backdate what it
signs (docs/threat-model.md says what stays open).
"""

from __future__ import annotations

import dataclasses
from collections import deque
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field

from .errors import IdentityError
from .identity import public_key_bytes
from .records import (
    KIND_REVOKE,
    KIND_SUCCESSOR,
    KIND_VOUCH,
    MAX_TS,
    SignedRecord,
)
from .revocations import (
    NO_CUTOFF,
    Chains,
    Edge,
    Revocation,
    Revoke,
    grounded,
    lineage_of,
    merge,
)


@dataclass(frozen=True)
class TrustSet:
    """What ``effective_trust`` decided. ``key in trust`` asks "exchange with it?"."""

    keys: frozenset[str]  # trusted now: exchange with them, count their records
    # Revoked keys that were reached: their records with ts <= cutoff still count (-1: none).
    cutoffs: Mapping[str, int] = field(default_factory=dict)
    successors: Mapping[str, str] = field(default_factory=dict)  # honoured: old -> new
    vouched: Mapping[str, str] = field(default_factory=dict)  # key -> the voucher that reached it
    revoked: Mapping[str, Revocation] = field(default_factory=dict)
    names: Mapping[str, str] = field(default_factory=dict)  # keyring names, inherited
    # Old keys that named two different successors: neither is honoured, they are revoked.
    compromised: frozenset[str] = frozenset()

    def __contains__(self, key: object) -> bool:
        return key in self.keys

    def __iter__(self):  # type: ignore[no-untyped-def]
        return iter(self.keys)

    def __len__(self) -> int:
        return len(self.keys)

    def counts(self, author: str, ts: int) -> bool:
        """Does a record of ``author`` signed at ``ts`` count when reading?"""
        if author in self.keys:
            return True
        cutoff = self.cutoffs.get(author)
        return cutoff is not None and ts <= cutoff

    def current(self, key: str) -> str:
        """The last honoured successor of ``key`` (``key`` itself if it has none)."""
        seen = {key}
        while (nxt := self.successors.get(key)) is not None and nxt not in seen:
            seen.add(nxt)
            key = nxt
        return key

    def lineage(self, key: str) -> set[str]:
        """``key`` and the keys it succeeded (honoured successors, transitively)."""
        return lineage_of(_predecessors(self.successors), key)

    def can_revoke(self, author: str, key: str, records: Iterable[SignedRecord]) -> bool:
        """May ``author`` publish a revoke of ``key`` that peers could honour? The key
        itself; a trusted honoured successor of it; or a trusted inviter of it or of one
        of its predecessors (a vouch the key accepted: peers that follow vouches honour
        it when only vouches made the key trusted; see ``effective_trust``)."""
        if author == key:
            return True
        if author not in self.keys:
            return False
        if author in _chain(self.successors, key):
            return True
        lineage, inviters = self.lineage(key), self.lineage(author)
        return any(
            r.author in inviters and r.kind == KIND_VOUCH and r.fields.get("key") in lineage
            and r.accepted
            for r in records
        )  # fmt: skip

    def how(self, key: str) -> str:
        """Why ``key`` is (not) trusted, in a few words, for `gossip trust list`."""
        if key in self.compromised:
            return "compromised (it named two successors)"
        if key in self.revoked:
            r = self.revoked[key]
            return "revoked" + (" (retroactive)" if r.retroactive else "")
        if key not in self.keys:
            return "not trusted"
        pred = _predecessors(self.successors).get(key)
        if pred is not None:
            return f"successor of {pred[:12]}"
        if key in self.vouched:
            return f"vouched by {self.vouched[key][:12]}"
        return "keyring"


@dataclass
class _Records:
    successors: dict[str, list[Edge]] = field(default_factory=dict)  # old -> its edges
    vouches: dict[str, list[Edge]] = field(default_factory=dict)  # voucher -> its edges
    revokes: list[Revoke] = field(default_factory=list)


def effective_trust(
    keyring: Mapping[str, str],
    records: Iterable[SignedRecord],
    *,
    removed: Collection[str] = (),
    follow_vouches: bool = False,
    self_key: str | None = None,
) -> TrustSet:
    """The trusted set from ``keyring`` (id -> name, this host included), the locally
    ``removed`` keys and the document's trust ``records`` (others are ignored)."""
    g = _parse(records)
    removed = set(removed)
    roots = {k: n for k, n in keyring.items() if k not in removed}

    # 1. Self-revocations and compromises: no authority needed, never overruled.
    own = [dataclasses.replace(r, final=True) for r in g.revokes
           if r.by == r.key and r.key != self_key]  # fmt: skip
    self_cut = {k: r.at for k, r in merge(own).items()}
    compromised: set[str] = set()
    for old, edges in sorted(g.successors.items()):
        named = [e for e in edges if e.ts <= self_cut.get(old, NO_CUTOFF)]
        if len({e.key for e in named}) > 1:
            compromised.add(old)
            if old != self_key:
                second = next(e for e in named if e.key != named[0].key)
                own.append(Revoke(old, old, second.ts, named[0].ts, False, second.id, True))

    def successor_of(cut: Mapping[str, int]):  # type: ignore[no-untyped-def]
        def one(old: str) -> Edge | None:
            if old in compromised:
                return None
            named = [e for e in g.successors.get(old, ()) if e.ts <= cut.get(old, NO_CUTOFF)]
            return named[0] if len({e.key for e in named}) == 1 else None

        return one

    # 2. The graph before revocations (cut only by step 1), and who may revoke whom in it.
    self_cutoffs = {k: r.cutoff for k, r in merge(own).items()}
    before = _reach(roots, removed, successor_of(self_cut), g.vouches, self_cutoffs, follow_vouches)
    without_vouches = _reach(roots, removed, successor_of(self_cut), {}, self_cutoffs, False)
    chains = Chains(before.edges)
    invited: dict[str, dict[str, int]] = {}  # inviter -> invited key -> earliest accepted vouch
    for a, edges in g.vouches.items():
        for e in edges:  # sorted by ts
            if e.accepted and e.ts <= self_cutoffs.get(a, NO_CUTOFF):
                invited.setdefault(a, {}).setdefault(e.key, e.ts)
    candidates = [r for r in own if r.key in before.reached]
    for r in g.revokes:
        if r.by == r.key or r.key == self_key or r.key not in before.reached:
            continue
        if r.by == self_key:
            candidates.append(dataclasses.replace(r, final=True))
        elif r.by not in before.reached:
            continue
        elif self_key is not None and chains.is_heir(self_key, r.by):
            # Signed by a key this host rotated away from: still this host's decision (a
            # rotation must not forget whom it revoked), judged up to that key's cutoff.
            candidates.append(dataclasses.replace(r, edges=(("chain", r.by, self_key),)))
        elif chains.is_heir(r.by, r.key):
            candidates.append(dataclasses.replace(r, edges=(("chain", r.key, r.by),)))
        elif follow_vouches and r.key not in without_vouches.reached:
            # The inviter's authority follows both keys' rotations: one candidate per
            # (inviter key, invited key), resting on the earliest accepted vouch.
            lineage = chains.lineage(r.key)
            for a in sorted(chains.lineage(r.by)):
                mine = invited.get(a, {})
                for k in sorted(lineage & mine.keys()):
                    path = (("chain", a, r.by), ("vouch", a, mine[k]), ("chain", k, r.key))
                    candidates.append(dataclasses.replace(r, edges=path))

    # 3. Which revocations stand, and the graph they leave.
    honoured = grounded(candidates, chains)
    revoked = merge(honoured)
    edge_cut = {
        k: r.at for k, r in merge(
            [r for r in honoured if r.by == r.key or not chains.is_heir(r.by, r.key)]
        ).items()
    }  # fmt: skip
    cutoffs_all = {k: r.cutoff for k, r in revoked.items()}
    final = _reach(roots, removed, successor_of(edge_cut), g.vouches, cutoffs_all, follow_vouches)
    return TrustSet(
        keys=frozenset(final.reached - set(revoked)),
        cutoffs={k: c for k, c in cutoffs_all.items() if k in final.reached},
        successors={k: e.key for k, e in final.edges.items()},
        vouched=final.vouched,
        revoked={k: r for k, r in revoked.items() if k in final.reached},
        names=final.names,
        compromised=frozenset(compromised & before.reached),
    )


def _parse(records: Iterable[SignedRecord]) -> _Records:
    g = _Records()
    accepting: dict[str, set[str]] = {}  # new key -> the old keys it accepted
    for rec in records:
        try:
            kind, f = rec.kind, rec.fields
        except Exception:
            continue
        if kind not in (KIND_SUCCESSOR, KIND_REVOKE, KIND_VOUCH):
            continue
        key = f.get("key")
        if not _is_key(key) or (key == rec.author and kind != KIND_REVOKE):
            continue  # a key names itself only to revoke itself
        assert isinstance(key, str)
        if kind == KIND_SUCCESSOR:
            if rec.accepted:
                g.successors.setdefault(rec.author, []).append(Edge(rec.ts, rec.id, key))
                accepting.setdefault(key, set()).add(rec.author)
        elif kind == KIND_VOUCH:
            name = f.get("name") if isinstance(f.get("name"), str) else ""
            edge = Edge(rec.ts, rec.id, key, name, "accept" in f and rec.accepted)
            g.vouches.setdefault(rec.author, []).append(edge)
        else:
            at = f.get("at")
            if not isinstance(at, int) or isinstance(at, bool) or not 0 <= at < MAX_TS:
                at = rec.ts
            retro = f.get("retroactive") is True
            g.revokes.append(Revoke(rec.author, key, rec.ts, at, retro, rec.id))
    for old in list(g.successors):  # a key that accepted two predecessors has neither
        edges = [e for e in g.successors[old] if len(accepting[e.key]) == 1]
        if edges:
            g.successors[old] = sorted(edges, key=lambda e: (e.ts, e.id))
        else:
            del g.successors[old]
    for edges in g.vouches.values():
        edges.sort(key=lambda e: (e.ts, e.id))
    # One revoke per (author, key, at, retroactive): the earliest signed stands longest.
    first: dict[tuple[str, str, int, bool], Revoke] = {}
    for r in sorted(g.revokes, key=lambda r: (r.ts, r.id)):
        first.setdefault((r.by, r.key, r.at, r.retroactive), r)
    g.revokes = sorted(first.values(), key=lambda r: r.id)
    return g


@dataclass
class _Reach:
    reached: set[str]
    edges: dict[str, Edge]  # honoured successor edges: old -> its edge
    vouched: dict[str, str]
    names: dict[str, str]


def _reach(
    roots: Mapping[str, str],
    removed: set[str],
    successor_of,  # type: ignore[no-untyped-def]
    vouches: Mapping[str, list[Edge]],
    cutoffs: Mapping[str, int],
    follow_vouches: bool,
) -> _Reach:
    """Breadth first from the sorted keyring, a key's successor before its vouches (each
    by ts, then record id): the first edge to reach a key gives its name."""
    out = _Reach(set(roots), {}, {}, dict(roots))
    queue = deque(sorted(roots))
    while queue:
        k = queue.popleft()
        cutoff = cutoffs.get(k, NO_CUTOFF)
        nexts: list[tuple[str, str | None]] = []
        edge = successor_of(k)
        if edge is not None:
            out.edges[k] = edge
            nexts.append((edge.key, None))
        if follow_vouches:
            nexts += [(e.key, e.name) for e in vouches.get(k, ()) if e.ts <= cutoff]
        for key, name in nexts:
            if key in removed or key in out.reached:
                continue
            out.reached.add(key)
            if name is None:
                out.names[key] = out.names.get(k, "")
            else:
                out.vouched[key] = k
                out.names[key] = name
            queue.append(key)
    return out


def _chain(successors: Mapping[str, str], key: str) -> set[str]:
    out: set[str] = set()
    while (key := successors.get(key, "")) and key not in out:
        out.add(key)
    return out


def _predecessors(successors: Mapping[str, str]) -> dict[str, str]:
    return {new: old for old, new in successors.items()}


def _is_key(value: object) -> bool:
    if not isinstance(value, str):
        return False
    try:
        public_key_bytes(value)
    except IdentityError:
        return False
    return True
