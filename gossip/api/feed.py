"""The change feed of the local API: node events, numbered, kept in a bounded ring so a
consumer can resume (SSE ``Last-Event-ID``), and handed to each listener through a
bounded queue.

Ids are ``"<run>-<seq>"``: ``run`` is random per daemon start, so an id from an earlier
run (or one older than the ring) is recognised as a gap, answered with a ``lost`` event
(re-read the state you care about) rather than a silent hole. A listener that falls
``max_queue`` events behind is cut off: it gets one final ``cutoff`` event and its stream
ends; nothing is ever buffered without bound. This module does no I/O.
"""

from __future__ import annotations

import asyncio
import json
import secrets
from collections import deque
from dataclasses import dataclass
from typing import Any

from ..events import BreakerChanged, Event, EventsLost, PeerChanged, RecordAdded, TrustChanged
from ..ops.queries import record_json

RING = 1024  # events kept for resumption
LISTENER_QUEUE = 256  # events a listener may lag before it is cut off


@dataclass(frozen=True)
class FeedEvent:
    id: str
    type: str  # record | breaker | peer | trust | lost | cutoff
    data: dict[str, Any]

    def sse(self) -> bytes:
        """The event in the text/event-stream format."""
        payload = json.dumps(self.data, separators=(",", ":"), ensure_ascii=True)
        head = f"id: {self.id}\n" if self.id else ""  # no id: the resume point stays put
        return f"{head}event: {self.type}\ndata: {payload}\n\n".encode()


def event_json(event: Event) -> tuple[str, dict[str, Any]]:
    """(type, data) of a node event."""
    if isinstance(event, RecordAdded):
        return "record", {"root": event.root, "key": event.key, "kind": event.kind,
                          "author": event.author, "trusted": event.trusted,
                          "record": record_json(event.record)}  # fmt: skip
    if isinstance(event, BreakerChanged):
        return "breaker", {"name": event.name, "state": event.state, "author": event.author,
                           "observed": event.observed, "trusted": event.trusted}  # fmt: skip
    if isinstance(event, PeerChanged):
        return "peer", {"change": event.change, "peer": event.peer.to_json()}
    if isinstance(event, TrustChanged):
        return "trust", {"added": list(event.added), "removed": list(event.removed)}
    if isinstance(event, EventsLost):
        return "lost", {"count": event.count}
    raise TypeError(f"not a node event: {event!r}")


class Listener:
    """One consumer's bounded queue; ``cut`` once it fell too far behind."""

    def __init__(self, max_queue: int) -> None:
        self.queue: deque[FeedEvent] = deque()
        self.max_queue = max_queue
        self.cut = False
        self.closed = False
        self._ready = asyncio.Event()

    def put(self, event: FeedEvent) -> None:
        if self.cut or self.closed:
            return
        if len(self.queue) >= self.max_queue:
            self.cut = True  # the final event is made by ``get``
        else:
            self.queue.append(event)
        self._ready.set()

    def close(self) -> None:
        self.closed = True
        self._ready.set()

    async def get(self) -> FeedEvent | None:
        """The next event; None once closed (or after the cut, which drops the queue)."""
        while True:
            if self.cut:
                return None
            if self.queue:
                return self.queue.popleft()
            if self.closed:
                return None
            self._ready.clear()
            await self._ready.wait()


class Feed:
    """Numbered events, a ring for resumption, and the listeners."""

    def __init__(self, ring: int = RING, max_queue: int = LISTENER_QUEUE) -> None:
        self.run = secrets.token_hex(4)
        self._seq = 0
        self._ring: deque[FeedEvent] = deque(maxlen=ring)
        self._listeners: set[Listener] = set()
        self.max_queue = max_queue

    @property
    def last_id(self) -> str:
        return f"{self.run}-{self._seq}"

    def publish(self, type_: str, data: dict[str, Any]) -> FeedEvent:
        self._seq += 1
        event = FeedEvent(f"{self.run}-{self._seq}", type_, data)
        self._ring.append(event)
        for listener in self._listeners:
            listener.put(event)
        return event

    def listen(self, last_event_id: str | None = None) -> Listener:
        """A listener that first replays what came after ``last_event_id`` (or a ``lost``
        event if that is unknown or too old), then follows live."""
        listener = Listener(self.max_queue)
        if last_event_id:
            backlog = self._since(last_event_id)
            if backlog is None:
                listener.put(FeedEvent(self.last_id, "lost",
                                       {"count": None, "reason": "cannot resume from "
                                        f"{last_event_id[:40]}: re-read the state"}))  # fmt: skip
            else:  # bounded by the ring; live events may add max_queue more
                listener.queue.extend(backlog)
                listener.max_queue += len(backlog)
        self._listeners.add(listener)
        return listener

    def unlisten(self, listener: Listener) -> None:
        self._listeners.discard(listener)
        listener.close()

    def close(self) -> None:
        for listener in list(self._listeners):
            self.unlisten(listener)

    def _since(self, last_id: str) -> list[FeedEvent] | None:
        run, _, seq = last_id.partition("-")
        if run != self.run or not (seq.isascii() and seq.isdigit()):  # "²".isdigit()
            return None
        n = int(seq)
        if n > self._seq:
            return None
        oldest = self._seq - len(self._ring)  # events with seq <= oldest are gone
        if n < oldest:
            return None
        return list(self._ring)[n - oldest :]

    def cutoff_event(self, resume_from: str | None) -> FeedEvent:
        """The last event a consumer that fell behind gets. It has no id, so a client's
        Last-Event-ID stays at the last event it was actually given."""
        return FeedEvent("", "cutoff",
                         {"reason": f"this consumer fell more than {self.max_queue} events "
                                    "behind; reconnect with Last-Event-ID to resume",
                          "resume_from": resume_from})  # fmt: skip
