"""The effective trust: which keys this host believes, from its keyring and the document.

One function, ``effective_trust``, decides it; every reader uses its answer (the views'
trust filter, the node's exchange auth and peer selection). It is pure: the local
keyring (which includes this host), the locally removed keys, and the trust records of
the document (``successor``, ``revoke``, ``vouch``; see docs/protocol.md, "Key records")
go in, a ``TrustSet`` comes out. It never writes anything.

The rules (docs/protocol.md, "Key records"; docs/threat-model.md, "Key rotation and
revocation"):

- **reach**: start from the keyring (minus locally removed keys). A reached key's
  honoured ``successor`` is reached; with ``follow_vouches``, so is every key it vouches
  for. A locally removed key is never reached, whoever names it. The edge that first
  reaches a key outside the keyring (breadth first, from the sorted keyring, a key's
  successor before its vouches, each by ``ts`` then record id) is the one that **brought
  it into trust**; its author is the key's *bringer*.
- **successor**: only a record signed by the old key counts (the record's author *is*
  the old key), and only while the old key names **one** successor: an old key that
  names two different keys (in records signed up to its self-revocation's ``at``, if it
  revoked itself) is **compromised**: neither is honoured, and the old key is revoked
  (from the earliest of those records' ``ts``). A successor edge is cut only by the old
  key's own revocation or its bringer's, from their ``at`` — never by ``retroactive``
  (which is about the key's content), and never by a revocation from the old key's own
  successors (the owner revoking the key it rotated away from keeps the new key).
- **revoke**: honoured when signed by the revoked key itself (anyone holding a key may
  retire it); by one of its honoured successors (a host revoking the key it rotated
  away from; also over a keyring key), signed before that successor's own revocation
  ``at``; or by its bringer, if the key is not in the keyring and the bringer is not
  revoked itself (so a key rotated away from, once revoked, can no longer revoke its
  successor). In this host's own eyes, its own current key's revocations are honoured
  too (it published them: its decision, like a local removal). Decided in that order
  — self, successors and this host (judged against self-revocations and compromises),
  bringers (judged against all of those, parents first) — so the answer never depends
  on record order. Revoked keys leave the trusted set (no
  exchange); their records with ``ts`` up to the revocation's ``at`` still count, none
  of them when it is ``retroactive``. Several revocations of one key merge: the earliest
  ``at``, retroactive if any is.
- every record a revoked key signed after its cutoff (a vouch, a revoke of another key)
  is ignored, like its memories. This host's own current key is never revoked in its
  own eyes.

Record times are what their signers chose: a thief holding a key can backdate what it
signs (docs/threat-model.md says what stays open).
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass, field

from .errors import IdentityError
from .identity import public_key_bytes
from .records import KIND_REVOKE, KIND_SUCCESSOR, KIND_VOUCH, SignedRecord

NO_CUTOFF = 2**62  # a reached key's records all count


@dataclass(frozen=True)
class Revocation:
    key: str
    by: str  # the author of the (earliest) honoured revoke record
    at: int  # records with ts after this no longer count
    retroactive: bool  # none of the key's records count
    record: str  # id of that revoke record


@dataclass(frozen=True)
class TrustSet:
    """What ``effective_trust`` decided. ``key in trust`` asks "exchange with it?"."""

    keys: frozenset[str]  # trusted now: exchange with them, count their records
    # Revoked keys that were reached: their records with ts <= cutoff still count (-1: none).
    cutoffs: Mapping[str, int] = field(default_factory=dict)
    successors: Mapping[str, str] = field(default_factory=dict)  # honoured: old -> new
    vouched: Mapping[str, str] = field(default_factory=dict)  # honoured: key -> voucher
    revoked: Mapping[str, Revocation] = field(default_factory=dict)
    names: Mapping[str, str] = field(default_factory=dict)  # keyring names, inherited
    # Old keys that named two different successors: neither is honoured, they are revoked.
    compromised: frozenset[str] = frozenset()
    brought: Mapping[str, str] = field(default_factory=dict)  # key -> its bringer

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

    def can_revoke(self, author: str, key: str, records: Iterable[SignedRecord]) -> bool:
        """May ``author`` publish a revoke of ``key`` that peers could honour? The key
        itself; a trusted honoured successor of it; or a trusted author of a ``vouch``
        or ``successor`` record naming it (peers that it brought the key to honour it;
        see ``effective_trust``)."""
        if author == key:
            return True
        if author not in self.keys:
            return False
        if author in _chain(self.successors, key):
            return True
        return any(
            r.author == author and r.kind in (KIND_VOUCH, KIND_SUCCESSOR)
            and r.fields.get("key") == key
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
        pred = next((o for o, n in self.successors.items() if n == key), None)
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


@dataclass(frozen=True)
class _Revoke:
    by: str
    ts: int
    at: int
    retroactive: bool
    id: str


def _merged(key: str, found: Iterable[_Revoke]) -> Revocation | None:
    found = list(found)
    if not found:
        return None
    first = min(found, key=lambda r: (r.at, r.id))
    return Revocation(key, first.by, first.at, any(r.retroactive for r in found), first.id)


def _combine(a: Revocation | None, b: Revocation) -> Revocation:
    """Two honoured revocations of one key as one: the earliest ``at``, retroactive if
    either is."""
    if a is None:
        return b
    first = min(a, b, key=lambda r: (r.at, r.record))
    return Revocation(a.key, first.by, first.at, a.retroactive or b.retroactive, first.record)


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
    successors: dict[str, list[_Edge]] = {}
    vouches: dict[str, list[_Edge]] = {}
    revokes: dict[str, list[_Revoke]] = {}  # revoked key -> its revoke records
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
            successors.setdefault(rec.author, []).append(_Edge(rec.ts, rec.id, key))
        elif kind == KIND_VOUCH:
            name = f.get("name") if isinstance(f.get("name"), str) else ""
            vouches.setdefault(rec.author, []).append(_Edge(rec.ts, rec.id, key, name))
        else:
            at = f.get("at")
            if not isinstance(at, int) or isinstance(at, bool):
                at = rec.ts
            retro = f.get("retroactive") is True
            revokes.setdefault(key, []).append(_Revoke(rec.author, rec.ts, at, retro, rec.id))
    for edges in (*successors.values(), *vouches.values()):
        edges.sort(key=lambda e: (e.ts, e.id))
    removed = set(removed)
    roots = {k: n for k, n in keyring.items() if k not in removed}

    # 1. Self-revocations (no trust needed: whoever holds a key may retire it).
    revoked: dict[str, Revocation] = {}
    edge_cut: dict[str, int] = {}  # successor edges signed after this no longer count
    for key, found in sorted(revokes.items()):
        rev = _merged(key, [r for r in found if r.by == key])
        if rev is not None and key != self_key:
            revoked[key] = rev
            edge_cut[key] = rev.at
    # 2. Compromised: an old key that named two different successors (up to its own cut).
    compromised: set[str] = set()
    for old, edges in sorted(successors.items()):
        named = [e for e in edges if e.ts <= edge_cut.get(old, NO_CUTOFF)]
        if len({e.key for e in named}) < 2:
            continue
        compromised.add(old)
        if old != self_key:
            second = next(e for e in named if e.key != named[0].key)
            rev = Revocation(old, old, named[0].ts, False, second.id)
            revoked[old] = _combine(revoked.get(old), rev)

    def successor_of(old: str) -> str | None:
        if old in compromised:
            return None
        named = {e.key for e in successors.get(old, ()) if e.ts <= edge_cut.get(old, NO_CUTOFF)}
        return next(iter(named)) if len(named) == 1 else None

    first = _reach(roots, removed, successor_of, vouches, revoked, follow_vouches)
    # 3. Revocations by an honoured successor (the owner revoking a key it rotated away
    #    from), judged against steps 1 and 2, and this host's own (its decision, here);
    #    they never cut the old key's successor edge.
    before = dict(revoked)
    for key, found in sorted(revokes.items()):
        if key == self_key:
            continue
        heirs = first.heirs(key)
        ok = [r for r in found if r.by != key and (
            r.by == self_key
            or (r.by in heirs and r.by in first.reached and r.ts <= _at(before.get(r.by)))
        )]  # fmt: skip
        rev = _merged(key, ok)
        if rev is not None:
            revoked[key] = _combine(revoked.get(key), rev)
    # 4. Revocations by the bringer of a key outside the keyring, if the bringer is not
    #    revoked itself; bringers first (a bringer was reached before what it brought).
    for key in first.order:
        bringer = first.brought.get(key)
        if bringer is None or key == self_key or bringer in revoked:
            continue
        rev = _merged(key, [r for r in revokes.get(key, ()) if r.by == bringer])
        if rev is not None:
            revoked[key] = _combine(revoked.get(key), rev)
            edge_cut[key] = min(edge_cut.get(key, NO_CUTOFF), rev.at)
    final = _reach(roots, removed, successor_of, vouches, revoked, follow_vouches)
    cutoffs = {k: (-1 if r.retroactive else r.at) for k, r in revoked.items() if k in final.reached}
    return TrustSet(
        keys=frozenset(final.reached - set(revoked)),
        cutoffs=cutoffs,
        successors=final.successors,
        vouched=final.vouched,
        revoked=revoked,
        names=final.names,
        compromised=frozenset(compromised),
        brought=final.brought,
    )


def _at(rev: Revocation | None) -> int:
    return NO_CUTOFF if rev is None else rev.at


@dataclass
class _Reach:
    reached: set[str]
    successors: dict[str, str]
    vouched: dict[str, str]
    names: dict[str, str]
    brought: dict[str, str] = field(default_factory=dict)  # key -> the key that brought it
    order: list[str] = field(default_factory=list)  # every reached key, in reach order

    def heirs(self, key: str) -> set[str]:
        """The honoured successors of ``key``, transitively."""
        return _chain(self.successors, key)


def _reach(
    roots: Mapping[str, str],
    removed: set[str],
    successor_of: Callable[[str], str | None],
    vouches: Mapping[str, list[_Edge]],
    revoked: Mapping[str, Revocation],
    follow_vouches: bool,
) -> _Reach:
    out = _Reach(set(roots), {}, {}, dict(roots))
    queue = sorted(roots)
    while queue:
        k = queue.pop(0)
        out.order.append(k)
        rev = revoked.get(k)
        cutoff = NO_CUTOFF if rev is None else (-1 if rev.retroactive else rev.at)
        nexts: list[tuple[str, str]] = []
        nxt = successor_of(k)
        if nxt is not None:
            out.successors[k] = nxt
            nexts.append((nxt, "successor"))
        if follow_vouches:
            for e in vouches.get(k, ()):
                if e.ts <= cutoff:
                    nexts.append((e.key, e.name))
        for key, why in nexts:
            if key in removed or key in out.reached:
                continue
            out.reached.add(key)
            out.brought[key] = k
            if why == "successor":
                out.names[key] = out.names.get(k, "")
            else:
                out.vouched[key] = k
                out.names[key] = why
            queue.append(key)
    return out


def _chain(successors: Mapping[str, str], key: str) -> set[str]:
    out: set[str] = set()
    while (key := successors.get(key, "")) and key not in out:
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
