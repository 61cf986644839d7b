"""The revocations' rules of ``trust``: which revoke records stand when they depend on
each other (the grounded fixed point, ``grounded``), the successor chains their
authority rests on (``Chains``), and how several honoured revocations of one key merge
(``merge``). Pure: records in, decisions out; ``trust.effective_trust`` is the caller.
"""

from __future__ import annotations

import bisect
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass

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
class Edge:
    ts: int
    id: str
    key: str
    name: str = ""
    accepted: bool = False  # a vouch the key accepted (its inviter's)


@dataclass(frozen=True)
class Revoke:
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



class Chains:
    """The honoured successor edges as chains (each key has at most one successor and
    one predecessor): heirs, lineage and the edges between two keys without walking
    every chain for every question."""

    def __init__(self, edges: Mapping[str, Edge]) -> None:
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
        return lineage_of(self.preds, key)

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


def grounded(candidates: list[Revoke], chains: Chains) -> list[Revoke]:
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


def merge(found: Iterable[Revoke]) -> dict[str, Revocation]:
    """Honoured revocations per key: the earliest ``at``, retroactive if any is."""
    out: dict[str, Revocation] = {}
    for r in sorted(found, key=lambda r: (r.at, r.id)):
        prev = out.get(r.key)
        if prev is None:
            out[r.key] = Revocation(r.key, r.by, r.at, r.retroactive, r.id)
        elif r.retroactive and not prev.retroactive:
            out[r.key] = Revocation(r.key, prev.by, prev.at, True, prev.record)
    return out


def lineage_of(preds: Mapping[str, str], key: str) -> set[str]:
    """``key`` and its predecessors, transitively."""
    out = {key}
    while (key := preds.get(key, "")) and key not in out:
        out.add(key)
    return out
