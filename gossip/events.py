"""What a node tells its embedder: records added, breakers changed, peers changed, whom
it trusts changed.

``Node.events()`` yields these. Each subscriber has its own bounded queue: a subscriber
that does not keep up loses its *oldest* events, and the next thing it reads is an
``EventsLost`` marker saying how many, so it can re-read the state it cares about
(``recall``, ``breaker``, ``peers``) instead of trusting a gap-free stream. A slow
subscriber never slows the node or other subscribers.

Concurrency contract: events are published from the node's event loop only; a
``Subscription`` is read from that loop.
"""

from __future__ import annotations

import asyncio
from collections import deque
from dataclasses import dataclass

from crdt import SignedRecord

from .peers import PeerInfo


@dataclass(frozen=True)
class RecordAdded:
    """A record entered the document (ours or a peer's): a memory, a retraction, a
    benchmark or host state, or a kind this version does not know."""

    root: str  # "records" (immutable, by content id) or "state" (latest per author)
    key: str
    record: SignedRecord
    trusted: bool  # its author is in our keyring (views count only those)

    @property
    def kind(self) -> str:
        return self.record.kind

    @property
    def author(self) -> str:
        return self.record.author


@dataclass(frozen=True)
class BreakerChanged:
    """A host's observation of a breaker changed; ``state`` is the merged view after it."""

    name: str
    state: str  # merged across trusted hosts: open | half_open | closed
    author: str  # whose observation changed
    observed: str  # what that host now says
    record: SignedRecord
    trusted: bool


@dataclass(frozen=True)
class PeerChanged:
    """A peer was added, removed, or changed state (not sent for every exchange)."""

    change: str  # added | changed | removed
    peer: PeerInfo


@dataclass(frozen=True)
class TrustChanged:
    """The effective trusted set changed (``trust add``/``remove``, a vouch, a rotation's
    successor, a revocation): ``added`` and ``removed`` keys, sorted."""

    added: tuple[str, ...]
    removed: tuple[str, ...]


@dataclass(frozen=True)
class EventsLost:
    """This subscriber fell behind and lost ``count`` older events."""

    count: int


Event = RecordAdded | BreakerChanged | PeerChanged | TrustChanged | EventsLost


class Subscription:
    """One subscriber's bounded queue."""

    def __init__(self, maxsize: int) -> None:
        self._events: deque[Event] = deque()
        self._maxsize = maxsize
        self._lost = 0
        self._ready = asyncio.Event()
        self.closed = False

    def put(self, event: Event) -> None:
        if self.closed:
            return
        if len(self._events) >= self._maxsize:
            self._events.popleft()
            self._lost += 1
        self._events.append(event)
        self._ready.set()

    def close(self) -> None:
        self.closed = True
        self._ready.set()

    async def get(self) -> Event | None:
        """The next event, an ``EventsLost`` marker first if some were lost; None once
        the subscription is closed and drained."""
        while True:
            if self._lost:
                lost, self._lost = self._lost, 0
                return EventsLost(lost)
            if self._events:
                return self._events.popleft()
            if self.closed:
                return None
            self._ready.clear()
            await self._ready.wait()


__all__ = ["BreakerChanged", "Event", "EventsLost", "PeerChanged", "RecordAdded",
           "Subscription", "TrustChanged"]  # fmt: skip
