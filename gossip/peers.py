"""The peer table: who our peers are, where they are, how they are doing; sans I/O.

It owns, per peer: its key (unknown for a configured address until it first answers),
name, addresses, where we heard of it (``source``), health, backoff, round-trip time,
bytes exchanged and lag. It decides whom to sync with next and whom to push to. It never
touches a socket, a replica or the wall clock: the node tells it what happened and
when (``now`` in ms), and it draws randomness from the ``random.Random`` it was given, so
the simulator and the tests replay it exactly.

States (the words ``gossip peers`` shows; each row also says why, ``reason``)::

    suspect ──ok / it reached us──▶ alive ──fail──▶ suspect ──(down_after failures)──▶ down
    (not reached yet, or failing)     ▲                                                 │
       │                              └──────────ok / it reached us────────────────────┘
       ├──403 / answer from a key not in our keyring──▶ unknown-key
       └──(any state) its signed goodbye (LEAVE)──▶ left ──ok / it reached us──▶ alive

``alive`` comes with the first success, ours or theirs: a signed request from the peer
(an exchange or a push it started) proves it is up, so a peer that comes back after a
partition is ``alive`` as soon as data flows, not a round later. ``left`` is a peer that
said it stops (``on_leave``): failing to reach it is expected, so failures leave it
``left`` (retried at the cap, like ``down``). ``forget`` drops a row; a host
announcement of its key (source ``exchange``) does not bring it back until the peer
reaches us or a live source (static, tailnet, mDNS) proposes it again.

Lag is what we know of the peer's state vector (its last one, ``last_sv``) against ours
now (``ours``, which the node keeps current: our writes, and every state vector of ours an
exchange saw): while a peer is down, what we wrote since shows as what it lacks.

A failure backs a peer off exponentially (``base * 2**(failures-1)``, capped), with
jitter (each delay is drawn from its upper half) so that a mesh that lost a peer at
the same moment does not retry it in lockstep. A ``down`` peer is still retried, at the
cap. An ``unknown-key`` peer waits for a human: it is retried at the cap, and at once
when our keyring changes. A peer that reaches *us* is retried at once too (it may just
have restarted).

Keys come from two places only: the answer of a peer whose signature verified against
our keyring, and a host announcement in the document by a trusted author. Discovery
(static list, mDNS, tailnet) proposes addresses, never keys (invariant 9); the id an
mDNS record claims is kept as a *claim* (``claimed``): shown, so that a human can trust
it, but never dialled unless it is in our keyring (``trusts``), and proven or refuted by
the first signed answer. The addresses mDNS proposes are claims too (``unproven``): they
never evict an address from a static, tailnet or exchange proposal or one a signed answer
came from; they come after those (within ``MAX_ADDRESSES``), so they are tried last, and
an answer from one proves it. Rows that only mDNS knows, with no trusted key, are capped
(``MAX_MDNS_ROWS``, the oldest go): a flood of fake instances costs bounded memory.

A row remembers every source that proposed it (``sources``); a source that withdraws it
(``withdraw``) removes it or, if others still know it, only drops that source (for
``tailnet``, whose word is its own daemon's, it also marks the row ``down``).
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field

ALIVE = "alive"
SUSPECT = "suspect"  # not reached yet, or failing fewer than ``down_after`` times
DOWN = "down"
LEFT = "left"  # it said goodbye (a signed LEAVE), and has not been heard from since
UNKNOWN_KEY = "unknown-key"
STATES = (ALIVE, SUSPECT, DOWN, LEFT, UNKNOWN_KEY)

# Where we heard of a peer, strongest first: a peer configured by hand stays "static"
# even once the document announces it too.
SOURCES = ("static", "tailnet", "mdns", "exchange")
MAX_ADDRESSES = 8  # per peer: announcements may list several interfaces
# Rows only mDNS knows whose key is not in our keyring (or unknown): anyone on the LAN
# can make thousands of them; the oldest go first.
MAX_MDNS_ROWS = 256


def lag(ours: dict[int, int], theirs: dict[int, int]) -> int:
    """How many clock units (Yjs items) ``theirs`` lacks of ``ours``."""
    return sum(max(0, clock - theirs.get(client, 0)) for client, clock in ours.items())


@dataclass(frozen=True)
class PeerInfo:
    """A snapshot of one row of the table, safe to hand out (``node.peers()``)."""

    key: str | None
    name: str
    addresses: tuple[str, ...]
    address: str
    source: str
    state: str
    last_success: int | None  # ms since epoch of the last completed exchange we started
    last_seen: int | None  # ms since epoch of the last exchange either side started
    last_error: str | None
    failures: int  # consecutive
    rtt_ms: float | None  # of the last exchange's first request
    bytes_in: int
    bytes_out: int
    they_lack: int | None  # clock units, as of the last exchange
    we_lack: int | None
    next_attempt: int  # ms since epoch
    exchanges: int
    sources: tuple[str, ...] = ()  # every source that proposed it, strongest first
    # ``key`` is only what discovery (mDNS TXT) claims; no signed answer has proved it.
    claimed: bool = False
    # The addresses (a tail of ``addresses``) that only mDNS proposed and no signed
    # answer has come from yet.
    unproven: tuple[str, ...] = ()
    # What carries our exchanges with it: "tls", "plaintext" (--insecure-plaintext) or
    # "memory" (an in-process network); set by the node ("" from the bare table).
    transport: str = ""
    # Why the row is in its state, in words (the last error, "not reached yet", what to
    # run for an unknown key); "" for an alive row.
    reason: str = ""

    def to_json(self) -> dict[str, object]:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in self.__dict__.items()}


@dataclass(eq=False)
class Peer:
    """One row. Mutated only by ``PeerTable``."""

    # Dial order: the firm addresses first (static, tailnet, exchange, or answered from),
    # then the ``unproven`` ones (mDNS claims), at most MAX_ADDRESSES in all.
    addresses: list[str]
    source: str
    key: str | None = None
    name: str = ""
    state: str = SUSPECT
    last_success: int | None = None
    last_seen: int | None = None
    last_error: str | None = None
    failures: int = 0
    rtt_ms: float | None = None
    bytes_in: int = 0
    bytes_out: int = 0
    they_lack: int | None = None
    we_lack: int | None = None
    next_attempt: int = 0
    exchanges: int = 0
    # The peer's state vector as last seen: the hint that lets a SYNC carry what it lacks.
    last_sv: dict[int, int] | None = None
    in_flight: bool = False
    dialling: str = ""  # the address the exchange in flight dials (set by ``begin``)
    address_index: int = 0
    sources: set[str] = field(default_factory=set)
    claimed: bool = False  # see PeerInfo.claimed
    unproven: set[str] = field(default_factory=set)  # see PeerInfo.unproven
    refused: bool = False  # the peer refused our key (403): it does not trust us
    leaves: int = 0  # goodbyes it sent; an exchange begun before the last one is stale
    begun_at_leaves: int = 0  # ``leaves`` when the exchange in flight began

    @property
    def address(self) -> str:
        return self.addresses[self.address_index % len(self.addresses)]

    @property
    def label(self) -> str:
        return self.name or (self.key[:12] if self.key else self.address)

    def info(self, ours: dict[int, int] | None = None) -> PeerInfo:
        """A snapshot; with ``ours`` (our state vector now) the lag is computed from the
        peer's last known state vector, not frozen at its last exchange."""
        they_lack, we_lack = self.they_lack, self.we_lack
        if ours is not None and self.last_sv is not None:
            they_lack, we_lack = lag(ours, self.last_sv), lag(self.last_sv, ours)
        return PeerInfo(
            key=self.key, name=self.name, addresses=tuple(self.addresses), address=self.address,
            source=self.source, state=self.state, last_success=self.last_success,
            last_seen=self.last_seen, last_error=self.last_error, failures=self.failures,
            rtt_ms=self.rtt_ms, bytes_in=self.bytes_in, bytes_out=self.bytes_out,
            they_lack=they_lack, we_lack=we_lack, next_attempt=self.next_attempt,
            exchanges=self.exchanges, sources=tuple(s for s in SOURCES if s in self.sources),
            claimed=self.claimed,
            unproven=tuple(a for a in self.addresses if a in self.unproven),
            reason=self.reason(),
        )  # fmt: skip

    def reason(self) -> str:
        """Why the row is in its state (the ``REASON`` column of ``gossip peers``)."""
        error = self.last_error or ""
        if self.state == UNKNOWN_KEY:
            if self.refused:
                return error or "it refused our key: it must `gossip trust add` ours"
            who = self.key or "?"
            return f"not in our keyring: gossip trust add {who}"
        if self.state == LEFT:
            return "it said goodbye (stopped)"
        if self.state == DOWN:
            return f"{self.failures} failures: {error}" if error else f"{self.failures} failures"
        if self.state == SUSPECT:
            return error or "not reached yet"
        return ""


PeerListener = Callable[[Peer, str], None]  # (peer, what: "added" | "changed" | "removed")


@dataclass
class PeerTable:
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

    # -- scheduling --------------------------------------------------------------------

    def select(
        self, now: int, fanout: int, *, jitter_ms: int = 0, due_only: bool = True
    ) -> list[Peer]:
        """Up to ``fanout`` peers to sync with now: due (any, with ``due_only=False``),
        not already busy; least recently synced first, ``jitter_ms`` of randomness mixing
        peers synced about as long ago."""
        if due_only:
            self._follow_clock(now)
        due = [
            p
            for p in self._peers
            if not p.in_flight
            and (p.next_attempt <= now or not due_only)
            and (p.key is None or self.trusts(p.key))
        ]

        def order(p: Peer) -> float:
            last = p.last_success if p.last_success is not None else -(2**62)
            return last + self.rng.uniform(0, jitter_ms) + self.rng.random()

        return sorted(due, key=order)[: max(0, fanout)]

    def push_targets(
        self, fanout: int, *, exclude: Iterable[str] = (), covers: dict[int, int] | None = None
    ) -> list[Peer]:
        """Up to ``fanout`` random alive peers for an eager push, except ``exclude``
        (keys) and those whose last known state vector already holds ``covers``
        (client -> end clock): the rumour stops where it is known.

        A push carries records before any answer is checked, so only a peer that has
        answered signed by a trusted key gets one (``alive``, not a claim); a new or
        keyless address gets records through anti-entropy, whose opening ``DIGEST``
        carries none and whose answer is checked before anything else is sent."""
        excluded = set(exclude)
        healthy = [
            p
            for p in self._peers
            if p.state == ALIVE
            and p.key is not None
            and not p.claimed
            and p.key not in excluded
            and self.trusts(p.key)
            and not (covers and p.last_sv is not None and lag(covers, p.last_sv) == 0)
        ]
        return self.rng.sample(healthy, min(max(0, fanout), len(healthy)))

    def _follow_clock(self, now: int) -> None:
        """The wall clock stepped back (NTP, a VM restored from a snapshot): every delay
        already scheduled keeps what remained of it, instead of growing by the step (an
        hour's step would stop our own exchanges for an hour)."""
        if self._latest is not None and now < self._latest:
            step = self._latest - now
            for p in self._peers:
                p.next_attempt -= step
        self._latest = now

    def next_due(self) -> int | None:
        """When the earliest idle peer becomes due (ms), or None without peers."""
        return min((p.next_attempt for p in self._peers if not p.in_flight), default=None)

    # -- outcomes ----------------------------------------------------------------------

    def begin(self, peer: Peer) -> None:
        peer.in_flight = True
        peer.dialling = peer.address
        peer.begun_at_leaves = peer.leaves

    def success(
        self,
        peer: Peer,
        now: int,
        *,
        rtt_ms: float | None = None,
        bytes_in: int = 0,
        bytes_out: int = 0,
        ours: dict[int, int] | None = None,
        theirs: dict[int, int] | None = None,
        exchange: bool = True,
    ) -> None:
        """An exchange we started (or an eager push, ``exchange=False``, which leaves the
        exchange bookkeeping alone) completed. One begun before the peer's goodbye (and
        any push: none starts to a ``left`` peer) leaves it ``left``: it answered while
        it stopped."""
        stale = peer.state == LEFT and (not exchange or peer.begun_at_leaves != peer.leaves)
        if exchange:
            peer.in_flight = False
        peer.failures = 0
        peer.last_error = None
        peer.refused = False
        peer.last_seen = now
        if exchange:
            peer.last_success = now
            peer.exchanges += 1
        if rtt_ms is not None:
            peer.rtt_ms = rtt_ms
        peer.bytes_in += bytes_in
        peer.bytes_out += bytes_out
        self._saw_state(peer, ours, theirs)
        if stale:
            peer.next_attempt = now + self.backoff_cap_ms
            return
        peer.next_attempt = now
        self._set_state(peer, ALIVE)

    def failure(
        self,
        peer: Peer,
        now: int,
        error: str,
        *,
        unknown_key: bool = False,
        unreachable: bool = False,
        exchange: bool = True,
    ) -> None:
        """An exchange (or an eager push, ``exchange=False``) failed. ``unknown_key``: the
        peer refused our key (403) or answered with a key we do not trust.
        Any failure moves to the peer's next address (one of them may be a stale or a
        lying proposal); ``unreachable`` is kept for callers that say so."""
        if exchange:
            peer.in_flight = False
        peer.failures += 1
        peer.last_error = error[:300]
        if len(peer.addresses) > 1:
            peer.address_index = (peer.address_index + 1) % len(peer.addresses)
        if unknown_key:
            peer.refused = True
            peer.next_attempt = now + self.backoff_cap_ms
            self._set_state(peer, UNKNOWN_KEY)
            return
        if peer.state == LEFT:  # it said it stops: not reaching it is expected
            peer.next_attempt = now + self.backoff_cap_ms
            return
        peer.next_attempt = now + self.backoff_ms(peer.failures)
        state = DOWN if peer.failures >= self.down_after else SUSPECT
        if state == peer.state == SUSPECT and peer.failures == 1:
            self._notify(peer, "changed")  # its first failure: the reason is news
        self._set_state(peer, state)

    def cancelled(self, peer: Peer) -> None:
        """An exchange was abandoned (shutdown): neither success nor failure."""
        peer.in_flight = False

    def backoff_ms(self, failures: int) -> int:
        """Delay before the next attempt after ``failures`` consecutive failures: drawn
        from the upper half of ``min(cap, base * 2**(failures-1))``."""
        exp = min(max(failures, 1) - 1, 62)
        ceiling = min(self.backoff_cap_ms, self.backoff_base_ms * 2**exp)
        return int(ceiling * (0.5 + 0.5 * self.rng.random()))

    def inbound(
        self,
        key: str,
        now: int,
        *,
        bytes_in: int = 0,
        bytes_out: int = 0,
        ours: dict[int, int] | None = None,
        theirs: dict[int, int] | None = None,
    ) -> None:
        """A peer exchanged with us (it started; its request was signed by ``key``, which
        is in our keyring). That is a success too: a suspect, down or left peer is
        ``alive`` at once (it is back: after a partition data flows before our next
        round) and retried now. A peer that refused our key stays ``unknown-key`` until
        our own exchange succeeds, but is retried now."""
        self._forgotten.discard(key)
        peer = self.by_key(key)
        if peer is None:
            return
        peer.last_seen = now
        peer.bytes_in += bytes_in
        peer.bytes_out += bytes_out
        self._saw_state(peer, ours, theirs)
        if peer.state != ALIVE and not peer.in_flight:
            peer.next_attempt = min(peer.next_attempt, now)
        if peer.state in (SUSPECT, DOWN, LEFT):
            peer.failures = 0
            peer.last_error = None
            self._set_state(peer, ALIVE)

    def keyring_changed(self, now: int) -> None:
        """Our keyring changed: peers refused for their key may now be accepted, and a
        row whose key we no longer trust is ``unknown-key`` (never exchanged with)."""
        for p in self._peers:
            if p.key is not None and not self.trusts(p.key):
                self._set_state(p, UNKNOWN_KEY)
            elif p.state == UNKNOWN_KEY and not p.in_flight:
                p.next_attempt = now

    def _saw_state(
        self, peer: Peer, ours: dict[int, int] | None, theirs: dict[int, int] | None
    ) -> None:
        if ours is not None:
            self.saw_ours(ours)
        if theirs is None:
            return
        peer.last_sv = dict(theirs)
        if ours is not None:
            peer.they_lack = lag(ours, theirs)
            peer.we_lack = lag(theirs, ours)

    def _set_state(self, peer: Peer, state: str) -> None:
        if peer.state != state:
            peer.state = state
            self._notify(peer, "changed")

    def _notify(self, peer: Peer, what: str) -> None:
        if self.listener is not None:
            self.listener(peer, what)
