"""The effective trust: which keys this host believes, from its keyring and the document.

One function, ``effective_trust``, decides it; every reader uses its answer (the views'
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

import bisect
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

NO_CUTOFF = 2**62  # a reached key's records all count


@dataclass(frozen=True)
class Revocation:
    key: str
    by: str  # the author of the (earliest) honoured revoke record
    at: int  # records with ts after this no longer count
    retroactive: bool  # none of the key's records count
    record: str  # id of that revoke record

    @property
    def cutoff(self) -> int:
        """The key's records with ts up to this still count (-1: none)."""
        return -1 if self.retroactive else self.at


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
        return _lineage(_predecessors(self.successors), key)

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


@dataclass(frozen=True)
class _Edge:
    ts: int
    id: str
    key: str
    name: str = ""
    accepted: bool = False  # a vouch the key accepted (its inviter's)


@dataclass(frozen=True)
class _Revoke:
    by: str
    key: str
    ts: int
    at: int
    retroactive: bool
    id: str
    final: bool = False  # a self-revocation, a compromise or this host's: never overruled
    # What its author's authority rests on: the successor edges from a key to its heir
    # ("chain", key, heir) and accepted vouches ("vouch", inviter, ts).
    edges: tuple[tuple[str, str, str | int], ...] = ()

    @property
    def cutoff(self) -> int:
        return -1 if self.retroactive else self.at


@dataclass
class _Records:
    successors: dict[str, list[_Edge]] = field(default_factory=dict)  # old -> its edges
    vouches: dict[str, list[_Edge]] = field(default_factory=dict)  # voucher -> its edges
    revokes: list[_Revoke] = field(default_factory=list)


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
    self_cut = {k: r.at for k, r in _merge(own).items()}
    compromised: set[str] = set()
    for old, edges in sorted(g.successors.items()):
        named = [e for e in edges if e.ts <= self_cut.get(old, NO_CUTOFF)]
        if len({e.key for e in named}) > 1:
            compromised.add(old)
            if old != self_key:
                second = next(e for e in named if e.key != named[0].key)
                own.append(_Revoke(old, old, second.ts, named[0].ts, False, second.id, True))

    def successor_of(cut: Mapping[str, int]):  # type: ignore[no-untyped-def]
        def one(old: str) -> _Edge | None:
            if old in compromised:
                return None
            named = [e for e in g.successors.get(old, ()) if e.ts <= cut.get(old, NO_CUTOFF)]
            return named[0] if len({e.key for e in named}) == 1 else None

        return one

    # 2. The graph before revocations (cut only by step 1), and who may revoke whom in it.
    self_cutoffs = {k: r.cutoff for k, r in _merge(own).items()}
    before = _reach(roots, removed, successor_of(self_cut), g.vouches, self_cutoffs, follow_vouches)
    without_vouches = _reach(roots, removed, successor_of(self_cut), {}, self_cutoffs, False)
    chains = _Chains(before.edges)
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
    honoured = _grounded(candidates, chains)
    revoked = _merge(honoured)
    edge_cut = {
        k: r.at for k, r in _merge(
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
                g.successors.setdefault(rec.author, []).append(_Edge(rec.ts, rec.id, key))
                accepting.setdefault(key, set()).add(rec.author)
        elif kind == KIND_VOUCH:
            name = f.get("name") if isinstance(f.get("name"), str) else ""
            edge = _Edge(rec.ts, rec.id, key, name, "accept" in f and rec.accepted)
            g.vouches.setdefault(rec.author, []).append(edge)
        else:
            at = f.get("at")
            if not isinstance(at, int) or isinstance(at, bool) or not 0 <= at < MAX_TS:
                at = rec.ts
            retro = f.get("retroactive") is True
            g.revokes.append(_Revoke(rec.author, key, rec.ts, at, retro, rec.id))
    for old in list(g.successors):  # a key that accepted two predecessors has neither
        edges = [e for e in g.successors[old] if len(accepting[e.key]) == 1]
        if edges:
            g.successors[old] = sorted(edges, key=lambda e: (e.ts, e.id))
        else:
            del g.successors[old]
    for edges in g.vouches.values():
        edges.sort(key=lambda e: (e.ts, e.id))
    # One revoke per (author, key, at, retroactive): the earliest signed stands longest.
    first: dict[tuple[str, str, int, bool], _Revoke] = {}
    for r in sorted(g.revokes, key=lambda r: (r.ts, r.id)):
        first.setdefault((r.by, r.key, r.at, r.retroactive), r)
    g.revokes = sorted(first.values(), key=lambda r: r.id)
    return g


class _Chains:
    """The honoured successor edges as chains (each key has at most one successor and
    one predecessor): heirs, lineage and the edges between two keys without walking
    every chain for every question."""

    def __init__(self, edges: Mapping[str, _Edge]) -> None:
        self.edges = dict(edges)
        self.preds = {e.key: old for old, e in self.edges.items()}
        self.place: dict[str, tuple[str, int]] = {}  # key -> (its chain's first key, index)
        self._among: Collection[str] | None = None  # what _positions was built for
        self._positions: dict[str, list[tuple[int, str]]] = {}  # chain -> its keys among
        for key in sorted(self.edges.keys() | self.preds.keys()):
            self._locate(key)

    def _locate(self, key: str) -> None:
        path, seen, k = [], set(), key
        while k not in self.place and k in self.preds and k not in seen:
            seen.add(k)
            path.append(k)
            k = self.preds[k]
        if k in self.place:
            first, i = self.place[k]
        elif k in seen:  # a cycle (only the holder of every key in it can make one)
            first = min(seen)
            for m in seen:
                self.place[m] = (first, -1)
            return
        else:
            first, i = k, 0
            self.place[k] = (k, 0)
        for m in reversed(path):
            i += 1
            self.place[m] = (first, i)

    def is_heir(self, heir: str, key: str) -> bool:
        """Is ``heir`` an honoured successor of ``key``, transitively?"""
        a, b = self.place.get(heir), self.place.get(key)
        if a is None or b is None or a[0] != b[0]:
            return False
        return a[1] == -1 or a[1] > b[1]

    def lineage(self, key: str) -> set[str]:
        """``key`` and its predecessors, transitively."""
        return _lineage(self.preds, key)

    def signers(self, key: str, heir: str, among: Collection[str]) -> list[tuple[str, int]]:
        """(signer, ts) of the successor edges from ``key`` to ``heir`` whose signer is
        ``among`` (found by position, not by walking the chain)."""
        a, b = self.place.get(key), self.place.get(heir)
        if key == heir or a is None or b is None or a[0] != b[0]:
            return []
        if a[1] == -1:  # a cycle: walk it
            out, k = [], key
            while k != heir and len(out) <= len(self.edges):
                if k in among:
                    out.append((k, self.edges[k].ts))
                k = self.edges[k].key
            return out
        if self._among is among:
            positions = self._positions
        else:
            positions = {}
            for k in among:
                if (where := self.place.get(k)) is not None and where[1] >= 0:
                    positions.setdefault(where[0], []).append((where[1], k))
            for found in positions.values():
                found.sort()
            self._among, self._positions = among, positions
        found = positions.get(a[0], [])
        lo, hi = bisect.bisect_left(found, (a[1], "")), bisect.bisect_left(found, (b[1], ""))
        return [(k, self.edges[k].ts) for _, k in found[lo:hi]]


def _grounded(candidates: list[_Revoke], chains: _Chains) -> list[_Revoke]:
    """The candidates that stand. ``r`` (not final) is overruled by a standing revoke of
    its author from an ``at`` before ``r``'s ``ts``, or of the signer of an edge its
    authority rests on from an ``at`` before that edge (for a successor edge, not one by
    the signer's heir). ``retroactive`` is about content, not authority. A candidate
    stands once everything that could overrule it has fallen, and falls once something
    standing overrules it; what neither settles (a cycle) stands.

    "Some revoke of X from before t stands" is one node per prefix of X's revokes sorted
    by ``at`` (an OR of that revoke and the shorter prefix), so each requirement costs
    one node, not one per revoke: linear in the candidates, whatever a flood holds."""
    n = len(candidates)
    by_heir = [c.by != c.key and chains.is_heir(c.by, c.key) for c in candidates]
    final_at: dict[tuple[bool, str], int] = {}  # (any revoker?, key) -> earliest final at
    lists: dict[tuple[bool, str], list[tuple[int, int]]] = {}  # -> [(at, candidate)]
    for i, c in enumerate(candidates):
        for everyone in (True, False) if not by_heir[i] else (True,):
            if c.final:
                final_at[everyone, c.key] = min(final_at.get((everyone, c.key), NO_CUTOFF), c.at)
            else:
                lists.setdefault((everyone, c.key), []).append((c.at, i))
    signed = {key for (everyone, key) in (*final_at, *lists) if not everyone}
    is_or: list[bool] = [False] * n
    pending = [0] * n
    watchers: list[list[int]] = [[] for _ in range(n)]
    prefixes: dict[tuple[bool, str], tuple[list[int], list[int]]] = {}
    for name, entries in lists.items():
        entries.sort()
        nodes: list[int] = []
        for _, i in entries:
            node = len(is_or)
            is_or.append(True)
            pending.append(2 if nodes else 1)
            watchers.append([])
            watchers[i].append(node)
            if nodes:
                watchers[nodes[-1]].append(node)
            nodes.append(node)
        prefixes[name] = ([at for at, _ in entries], nodes)
    status: list[bool | None] = [None] * len(is_or)
    queue: list[int] = []

    def settle(node: int, stands: bool) -> None:
        if status[node] is None:
            status[node] = stands
            queue.append(node)

    for i, c in enumerate(candidates):
        if c.final:
            settle(i, True)
            continue
        overrulers: set[int] = set()
        needs: list[tuple[str, int, bool]] = [(c.by, c.ts, True)]
        for kind, x, y in c.edges:
            if kind == "vouch":
                needs.append((x, int(y), True))
            else:
                needs += [(p, t, False) for p, t in chains.signers(x, str(y), signed)]
        for signer, t, everyone in needs:
            if final_at.get((everyone, signer), NO_CUTOFF) < t:
                settle(i, False)
                break
            if (prefix := prefixes.get((everyone, signer))) is not None:
                k = bisect.bisect_left(prefix[0], t)  # revokes of signer from before t
                if k:
                    overrulers.add(prefix[1][k - 1])
        else:
            for node in overrulers:
                watchers[node].append(i)
            pending[i] = len(overrulers)
            if not overrulers:
                settle(i, True)
    while queue:
        node = queue.pop()
        stands = status[node]
        for w in watchers[node]:
            if status[w] is not None:
                continue
            if stands and is_or[w]:
                settle(w, True)  # one revoke in the prefix stands
            elif stands:
                settle(w, False)  # a standing revoke overrules the candidate
            else:
                pending[w] -= 1
                if pending[w] == 0:
                    settle(w, not is_or[w])
    return [c for i, c in enumerate(candidates) if status[i] is not False]


def _merge(found: Iterable[_Revoke]) -> dict[str, Revocation]:
    """Honoured revocations per key: the earliest ``at``, retroactive if any is."""
    out: dict[str, Revocation] = {}
    for r in sorted(found, key=lambda r: (r.at, r.id)):
        prev = out.get(r.key)
        if prev is None:
            out[r.key] = Revocation(r.key, r.by, r.at, r.retroactive, r.id)
        elif r.retroactive and not prev.retroactive:
            out[r.key] = Revocation(r.key, prev.by, prev.at, True, prev.record)
    return out


@dataclass
class _Reach:
    reached: set[str]
    edges: dict[str, _Edge]  # honoured successor edges: old -> its edge
    vouched: dict[str, str]
    names: dict[str, str]


def _reach(
    roots: Mapping[str, str],
    removed: set[str],
    successor_of,  # type: ignore[no-untyped-def]
    vouches: Mapping[str, list[_Edge]],
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


def _lineage(preds: Mapping[str, str], key: str) -> set[str]:
    """``key`` and its predecessors, transitively."""
    out = {key}
    while (key := preds.get(key, "")) and key not in out:
        out.add(key)
    return out


def _is_key(value: object) -> bool:
    if not isinstance(value, str):
        return False
    try:
        public_key_bytes(value)
    except IdentityError:
        return False
    return True
