"""``PeerTable``: all peers of one node, who they are and where (rows proposed by the
sources, keys learnt from signed answers and host announcements, forget, left); how they
are doing and whom to sync with is ``health.PeerHealth``'s. Sans I/O (see the package's
docstring)."""


from __future__ import annotations

import random
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field

from .health import PeerHealth
from .rows import (
    DOWN,
    LEFT,
    MAX_ADDRESSES,
    MAX_MDNS_ROWS,
    SOURCES,
    UNKNOWN_KEY,
    Peer,
    PeerInfo,
    PeerListener,
)


@dataclass
class PeerTable(PeerHealth):
    """All peers of one node. ``listener`` hears of additions, removals and changes of
    state (not of every exchange); it is called synchronously, from the caller."""

    self_key: str
    backoff_base_ms: int
    backoff_cap_ms: int
    rng: random.Random = field(default_factory=random.Random)
    down_after: int = 5  # consecutive failures before a peer counts as down
    listener: PeerListener | None = None
    # Whether a key is in our keyring. A row whose key is not is never exchanged with
    # (it stays ``unknown-key``); discovery may put such a claimed key on a row.
    trusts: Callable[[str], bool] = lambda key: True
    _peers: list[Peer] = field(default_factory=list)
    _self_addresses: set[str] = field(default_factory=set)
    _latest: int | None = None  # the latest ``now`` a schedule was read at
    # Our state vector as far as we know it now (``saw_ours``): what lag is shown against.
    ours: dict[int, int] = field(default_factory=dict)
    # Keys ``forget`` dropped: host announcements (``exchange``) do not bring them back.
    _forgotten: set[str] = field(default_factory=set)
    # What an earlier run learned of peers' state vectors (``remember``): key -> (state
    # vector, when); a row that gets such a key and knows no vector yet starts from it.
    _remembered: dict[str, tuple[dict[int, int], int]] = field(default_factory=dict)

    # -- membership --------------------------------------------------------------------

    def __iter__(self) -> Iterator[Peer]:
        return iter(list(self._peers))

    def __len__(self) -> int:
        return len(self._peers)

    def rows(self) -> list[PeerInfo]:
        return [p.info(self.ours) for p in self._peers]

    def saw_ours(self, sv: dict[int, int]) -> None:
        """Our state vector reached ``sv`` (a write, an exchange's end): lag follows it."""
        for client, clock in sv.items():
            if clock > self.ours.get(client, 0):
                self.ours[client] = clock

    def remember(self, vectors: dict[str, tuple[dict[int, int], int]]) -> None:
        """State vectors learned before (``gossip.peerfile``): key -> (vector, ms when).
        Only knowledge: no row is added for them, and a fresher vector replaces them."""
        self._remembered.update(vectors)
        for p in self._peers:
            self._recall(p)

    def _recall(self, peer: Peer) -> None:
        """Called on every row added or changed (a key learnt): see ``remember``."""
        known = self._remembered.get(peer.key) if peer.key is not None else None
        if known is not None and peer.last_sv is None:
            peer.last_sv, peer.sv_at = dict(known[0]), known[1]

    @property
    def forgotten(self) -> frozenset[str]:
        return frozenset(self._forgotten)

    def by_key(self, key: str) -> Peer | None:
        return next((p for p in self._peers if p.key == key), None)

    def by_address(self, address: str) -> Peer | None:
        return next((p for p in self._peers if address in p.addresses), None)

    def is_own(self, address: str) -> bool:
        """Whether ``address`` answered with this node's own key (or announced it)."""
        return address in self._self_addresses

    def add(
        self,
        addresses: Iterable[str],
        source: str,
        *,
        key: str | None = None,
        name: str = "",
        now: int = 0,
        claim: bool = False,
    ) -> Peer | None:
        """Propose a peer. Merges with a row of the same key; a proposal with a key also
        with a keyless row at one of the same addresses, and one without a key with any
        row at one of them whose key is not a mere claim (an address only mDNS proposed
        for a row does not count). ``claim``: the key and the addresses are only what
        discovery says (mDNS): the key names a row by key and never attaches to, or takes
        in, another row by address, so a liar on the LAN cannot put a wrong key on a
        configured peer; the addresses are ``unproven``, kept after the row's firm ones
        and never in place of one. A key that we do not trust makes the row
        ``unknown-key``. A source that had not proposed the row yet makes it due now.
        Returns the row, or None for ourselves."""
        if source not in SOURCES:
            raise ValueError(f"unknown peer source {source!r}")
        if key is not None and key == self.self_key:
            self._self_addresses.update(addresses)
            return None
        if key is not None and key in self._forgotten:
            if source == "exchange":
                return None  # forgotten: its announcement alone does not bring it back
            self._forgotten.discard(key)  # a live source proposes it again
        addrs = [a for a in dict.fromkeys(addresses) if a not in self._self_addresses]
        if not addrs:
            return None
        row = self.by_key(key) if key is not None else None
        if row is None and not (claim and key is not None):
            row = next(
                (
                    p
                    for p in self._peers
                    if (p.key is None if key is not None else not p.claimed)
                    and set(addrs) & (set(p.addresses) - p.unproven)
                ),
                None,
            )
        if row is None:
            kept = addrs[:MAX_ADDRESSES]
            row = Peer(addresses=kept, source=source, key=key, name=name,
                       next_attempt=now, sources={source},
                       claimed=claim and key is not None,
                       unproven=set(kept) if claim else set())  # fmt: skip
            if key is not None and not self.trusts(key):
                row.state = UNKNOWN_KEY
            if source == "mdns":
                self._cap_mdns_rows(keep=row)
            self._peers.append(row)
            self._notify(row, "added")
            return row
        before = (row.key, row.name, row.source, tuple(row.addresses), row.state)
        if key is not None:
            row.key = key
            row.claimed = row.claimed and claim
            if not self.trusts(key):
                row.state = UNKNOWN_KEY
        if name and (not claim or row.claimed or not row.name):
            row.name = name  # a claim never renames a row whose key is not a mere claim
        if source not in row.sources:
            row.sources.add(source)
            if not row.in_flight:
                row.next_attempt = min(row.next_attempt, now)
        if SOURCES.index(source) < SOURCES.index(row.source):
            row.source = source
        firm = [a for a in row.addresses if a not in row.unproven]
        unproven = [a for a in row.addresses if a in row.unproven]
        if claim:  # the freshest claims first, behind every firm address
            unproven = list(dict.fromkeys([*(a for a in addrs if a not in firm), *unproven]))
        else:
            firm = list(dict.fromkeys(firm + addrs))
            if len(firm) > MAX_ADDRESSES:  # keep the freshest proposals
                firm = list(dict.fromkeys([*addrs, *firm]))[:MAX_ADDRESSES]
            unproven = [a for a in unproven if a not in firm]
        self._arrange(row, firm, unproven)
        if before != (row.key, row.name, row.source, tuple(row.addresses), row.state):
            self._notify(row, "changed")
        return row

    def _arrange(self, row: Peer, firm: list[str], unproven: list[str]) -> None:
        """Set ``row``'s addresses: ``firm`` then ``unproven`` within the cap, keeping the
        address it dials now if it is still there."""
        current = row.address
        merged = firm + unproven[: max(0, MAX_ADDRESSES - len(firm))]
        row.addresses = merged
        row.unproven = set(unproven) & set(merged)
        row.address_index = merged.index(current) if current in merged else 0

    def _cap_mdns_rows(self, keep: Peer) -> None:
        """Make room for one more row that only mDNS knows, if ``keep`` is one that no
        trusted key names: the oldest such rows go (never one in an exchange)."""

        def capped(p: Peer) -> bool:
            return p.sources == {"mdns"} and (p.key is None or not self.trusts(p.key))

        if not capped(keep):
            return
        rows = [p for p in self._peers if capped(p) and not p.in_flight]
        for old in rows[: max(0, len(rows) - MAX_MDNS_ROWS + 1)]:
            self.remove(old)

    def forget(self, peer: Peer) -> None:
        """``gossip peers forget``: drop the row; its key's host announcement does not
        add it again until the peer reaches us or a live source proposes it."""
        if peer.key is not None:
            self._forgotten.add(peer.key)
        self.remove(peer)

    def left(self, key: str, now: int) -> Peer | None:
        """The peer of ``key`` said goodbye (a signed LEAVE): it is ``left``, retried only
        at the cap (it reaches us itself when it comes back). Returns its row."""
        peer = self.by_key(key)
        if peer is None:
            return None
        peer.last_seen = now
        peer.failures = 0
        peer.last_error = None
        peer.leaves += 1
        if not peer.in_flight:
            peer.next_attempt = now + self.backoff_cap_ms
        self._set_state(peer, LEFT)
        return peer

    def remove(self, peer: Peer) -> None:
        if peer in self._peers:
            self._peers.remove(peer)
            self._notify(peer, "removed")

    def withdraw(self, peer: Peer, source: str, now: int) -> Peer | None:
        """``source`` says the peer is gone (an mDNS goodbye, a node gone offline in the
        tailnet). A row only that source knew is removed (None). A row others still
        know loses that source; for mDNS, whose goodbyes anyone on the LAN can forge,
        that is all (with the ``unproven`` addresses only mDNS proposed): its state and
        schedule stay, and a peer that really stopped fails its next exchange. For the
        tailnet (its own daemon's word) the row is marked ``down`` and retried at the
        cap, like a peer that failed ``down_after`` times."""
        if peer not in self._peers or source not in peer.sources:
            return peer if peer in self._peers else None
        peer.sources.discard(source)
        if not peer.sources:
            self.remove(peer)
            return None
        peer.source = next(s for s in SOURCES if s in peer.sources)
        if source == "mdns":
            firm = [a for a in peer.addresses if a not in peer.unproven]
            if firm:
                self._arrange(peer, firm, [])
            self._notify(peer, "changed")  # its sources changed
            return peer
        peer.failures = max(peer.failures, self.down_after)
        if not peer.in_flight:
            peer.next_attempt = now + self.backoff_cap_ms
        if peer.state in (UNKNOWN_KEY, DOWN):
            self._notify(peer, "changed")  # its source changed
        else:
            self._set_state(peer, DOWN)
        return peer

    def unpropose(self, peer: Peer, addresses: Iterable[str]) -> None:
        """mDNS no longer proposes ``addresses`` for ``peer`` (the instance that claimed
        them is gone, others still advertise its key): those still unproven go."""
        drop = set(addresses) & peer.unproven
        if drop and len(drop) < len(peer.addresses):
            firm = [a for a in peer.addresses if a not in peer.unproven]
            self._arrange(peer, firm, [a for a in peer.addresses
                                       if a in peer.unproven and a not in drop])  # fmt: skip
            self._notify(peer, "changed")

    def learn_key(self, peer: Peer, key: str) -> Peer | None:
        """``peer`` answered, signed by ``key``. The address an exchange in flight dials
        is then proven (an eager push, which may overlap a failure that moved on to the
        next address, proves none). Returns the row that now holds it: a row already
        known by that key absorbs this one; None if the address was ourselves."""
        if key == self.self_key:
            self._self_addresses.update(peer.addresses)
            self.remove(peer)
            return None
        answered = peer.dialling if peer.in_flight else ""
        if peer.key == key:
            peer.claimed = False
            self._prove(peer, answered)
            return peer
        other = self.by_key(key)
        if other is None or other is peer:
            peer.key = key
            self._prove(peer, answered)
            self._notify(peer, "changed")
            return peer
        # One host, two rows (a configured address and an announced one): keep the row
        # with the key, give it this row's addresses and the stronger source.
        self.remove(peer)
        firm = [a for a in peer.addresses if a not in peer.unproven or a == answered]
        unproven = [a for a in peer.addresses if a not in firm]
        row = self.add(firm or unproven, peer.source, key=key, claim=not firm)
        if row is not None and firm and unproven:
            self.add(unproven, peer.source, key=key, claim=True)
        if row is not None:
            row.sources |= peer.sources
            row.claimed = False
        return row

    def rekey(self, old: str, new: str) -> Peer | None:
        """The host of key ``old`` now signs with ``new`` (an honoured successor record):
        its row takes the new key, merging into a row already known by it. Returns the
        row that holds ``new``, or None if ``old`` has none (or ``new`` is ourselves)."""
        row = self.by_key(old)
        if row is None or old == new:
            return None
        if new == self.self_key:
            self.remove(row)
            return None
        other = self.by_key(new)
        if other is None:
            row.key = new
            row.claimed = False
            self._notify(row, "changed")
            return row
        self.remove(row)
        firm = [a for a in row.addresses if a not in row.unproven]
        merged = self.add(firm or row.addresses, row.source, key=new, claim=not firm)
        if merged is not None:
            merged.sources |= row.sources
        return merged

    def _prove(self, peer: Peer, address: str) -> None:
        """A signed answer came from ``address``: it is no longer a mere claim."""
        if address and address in peer.unproven:
            firm = [a for a in peer.addresses if a not in peer.unproven]
            rest = [a for a in peer.addresses if a in peer.unproven and a != address]
            self._arrange(peer, [*firm, address], rest)
