"""The effective trust: which keys this host believes, from its keyring and the document.

One function, ``effective_trust``, decides it; every reader uses its answer (the views'
trust filter, the node's exchange auth and peer selection). It is pure: the local
keyring (which includes this host), the locally removed keys, and the trust records of
the document (``successor``, ``revoke``, ``vouch``; see docs/protocol.md, "Key records")
go in, a ``TrustSet`` comes out. It never writes anything.

The rules (docs/threat-model.md, "Key rotation and revocation"):

- **reach**: start from the keyring (minus locally removed keys). A reached key's
  honoured ``successor`` is reached; with ``follow_vouches``, so is every key it vouches
  for. A locally removed key is never reached, whoever names it.
- **successor**: only a record signed by the old key counts (the record's author *is*
  the old key). If an old key names several successors, the first (by ``ts``, then
  record id) wins, so a thief of a rotated key cannot redirect its trust later; and a
  successor signed after the old key's revocation took effect is ignored.
- **revoke**: honoured when signed by the revoked key itself (anyone holding a key may
  retire it), by a trusted key that vouched for it (a ``vouch`` or ``successor``
  record naming it), or by one of its honoured successors (a host revoking the key it
  rotated away from). A voucher's authority is judged against the trust that
  self-revocations alone leave, so the answer never depends on record order. Revoked
  keys leave the trusted set (no exchange); their records with ``ts`` up to the
  revocation's ``at`` still count, none of them when it is ``retroactive``. Several
  revocations of one key merge: the earliest ``at``, retroactive if any is.
- every record a revoked key signed after its cutoff (a vouch, a successor, a revoke of
  another key) is ignored, like its memories. This host's own current key is never
  revoked in its own eyes.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
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
        """Would a revoke of ``key`` signed by ``author`` be honoured here?"""
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
    revokes: dict[str, list[tuple[str, int, int, bool, str]]] = {}  # key -> (by, ts, at, ..)
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
            revokes.setdefault(key, []).append((rec.author, rec.ts, at, retro, rec.id))
    for edges in (*successors.values(), *vouches.values()):
        edges.sort(key=lambda e: (e.ts, e.id))
    removed = set(removed)
    roots = {k: n for k, n in keyring.items() if k not in removed}

    def merged(key: str, found: list[tuple[str, int, int, bool, str]]) -> Revocation | None:
        if not found:
            return None
        by, _, _, _, rid = min(found, key=lambda r: (r[2], r[4]))
        return Revocation(key, by, min(r[2] for r in found), any(r[3] for r in found), rid)

    # Pass 1: self-revocations only (no trust needed: whoever holds a key may retire it).
    revoked: dict[str, Revocation] = {}
    for key, found in revokes.items():
        rev = merged(key, [r for r in found if r[0] == key])
        if rev is not None and key != self_key:
            revoked[key] = rev
    first = _reach(roots, removed, successors, vouches, revoked, follow_vouches)
    self_revoked = dict(revoked)  # pass 2 judges against pass 1 only: order-free
    # Pass 2: revocations by a key trusted after pass 1 that vouched for (or named as its
    # successor) the revoked key, each signed before its own author's cutoff.
    vouchers: dict[str, set[str]] = {}
    for author, edges in (*successors.items(), *vouches.items()):
        for e in edges:
            vouchers.setdefault(e.key, set()).add(author)
    for key, found in revokes.items():
        if key == self_key:
            continue
        heirs = first.heirs(key)
        ok = [
            r for r in found
            if r[0] == key
            or ((r[0] in vouchers.get(key, ()) or r[0] in heirs) and r[0] in first.keys
                and r[1] <= first.edge_cutoff(r[0], self_revoked))
        ]  # fmt: skip
        rev = merged(key, ok)
        if rev is not None:
            revoked[key] = rev
    final = _reach(roots, removed, successors, vouches, revoked, follow_vouches)
    cutoffs = {k: (-1 if r.retroactive else r.at) for k, r in revoked.items() if k in final.reached}
    return TrustSet(
        keys=frozenset(final.reached - set(revoked)),
        cutoffs=cutoffs,
        successors=final.successors,
        vouched=final.vouched,
        revoked=revoked,
        names=final.names,
    )


@dataclass
class _Reach:
    reached: set[str]
    successors: dict[str, str]
    vouched: dict[str, str]
    names: dict[str, str]

    @property
    def keys(self) -> set[str]:
        return self.reached

    def heirs(self, key: str) -> set[str]:
        """The honoured successors of ``key``, transitively."""
        return _chain(self.successors, key)

    def edge_cutoff(self, key: str, revoked: Mapping[str, Revocation]) -> int:
        rev = revoked.get(key)
        if rev is None:
            return NO_CUTOFF
        return -1 if rev.retroactive else rev.at


def _reach(
    roots: Mapping[str, str],
    removed: set[str],
    successors: Mapping[str, list[_Edge]],
    vouches: Mapping[str, list[_Edge]],
    revoked: Mapping[str, Revocation],
    follow_vouches: bool,
) -> _Reach:
    out = _Reach(set(roots), {}, {}, dict(roots))
    queue = sorted(roots)
    while queue:
        k = queue.pop(0)
        cutoff = out.edge_cutoff(k, revoked)
        nexts: list[tuple[str, str]] = []
        first = next((e for e in successors.get(k, ()) if e.ts <= cutoff), None)
        if first is not None:
            out.successors[k] = first.key
            nexts.append((first.key, "successor"))
        if follow_vouches:
            for e in vouches.get(k, ()):
                if e.ts <= cutoff:
                    nexts.append((e.key, e.name))
        for key, why in nexts:
            if key in removed or key in out.reached:
                continue
            out.reached.add(key)
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
