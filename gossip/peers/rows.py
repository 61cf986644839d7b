"""One row of the peer table (``Peer``), what a row shows (``PeerInfo``), the states and
the sources; sans I/O. The table itself is ``table.PeerTable``."""


from __future__ import annotations

from collections.abc import Callable
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
    """How many clock units (Yjs items) ``theirs`` lacks of ``ours``: records, since each
    record written (a new one, or a state record's new value) is one item."""
    return sum(max(0, clock - theirs.get(client, 0)) for client, clock in ours.items())


def holds(sv: dict[int, int], client: int, clock: int) -> bool:
    """Does a replica with state vector ``sv`` hold item ``clock`` of ``client``? (Updates
    of one client are applied in order, never with a gap.)"""
    return sv.get(client, 0) > clock


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
    # Records (Yjs items: one per record written) the peer lacks of ours now, and we lack
    # of what it held, from its state vector as learned at ``sv_at``; None: never learned.
    they_lack: int | None
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
    # When the peer's state vector (``they_lack``, ``we_lack``, delivery) was learned: ms
    # since epoch of its last answer or request that carried one; None: never.
    sv_at: int | None = None

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
    # The peer's state vector as last seen: the hint that lets a SYNC carry what it lacks,
    # and what says which records it holds; learned at ``sv_at``.
    last_sv: dict[int, int] | None = None
    sv_at: int | None = None
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
            reason=self.reason(), sv_at=self.sv_at,
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
