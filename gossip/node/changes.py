"""Changes: what the replica's worker saw change, turned into events for subscribers
(``Node.events()``, the daemon's feed) and into host announcements to learn peers from.

Owns the changes noted during a worker job (worker thread only) and the subscribers
(loop thread only). Reads the views in the worker, never writes anything.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

from crdt import GossipError, SignedRecord
from crdt.records import KIND_BREAKER, KIND_HOST, split_state_key
from crdt.views import Views

from ..events import BreakerChanged, Event, RecordAdded, Subscription

if TYPE_CHECKING:
    from .node import Node

EVENT_QUEUE = 1024  # events buffered per subscriber before the oldest are dropped


class Changes:
    """The change feed of one node."""

    def __init__(self, node: Node) -> None:
        self.node = node
        self._noted: list[tuple[str, str, SignedRecord]] = []  # worker thread only
        self._subscribers: set[Subscription] = set()
        self.loop: asyncio.AbstractEventLoop | None = None
        self.views: Views | None = None

    def on_change(self, root: str, key: str, rec: SignedRecord | None) -> None:
        """Worker thread, inside a replica call: only note it (views are already current)."""
        if rec is not None:
            self._noted.append((root, key, rec))

    def clear(self) -> None:
        self._noted.clear()

    def after_job(self) -> None:
        """Worker thread, after each job: turn the noted changes into events."""
        views, loop = self.views, self.loop
        if not self._noted or views is None or loop is None:
            self._noted.clear()
            return
        noted, self._noted = self._noted, []
        keys = self.node.trust_set().keys
        listened = bool(self._subscribers)  # racy read: a new subscriber misses only older events
        events: list[Event] = []
        hosts: list[SignedRecord] = []
        for root, key, rec in noted:
            try:
                kind, author = rec.kind, rec.author
            except (GossipError, KeyError):
                continue
            if root == "state" and kind == KIND_HOST:
                hosts.append(rec)
            if not listened:
                continue
            trusted = author in keys
            if root == "state" and kind == KIND_BREAKER:
                name = _state_name(key)
                merged = views.breaker(name)
                state = merged.state if merged is not None else "unknown"  # as ops.signals
                observed = str(rec.fields.get("state", ""))
                events.append(BreakerChanged(name, state, author, observed, rec, trusted))
                continue
            events.append(RecordAdded(root, key, rec, trusted))
        with contextlib.suppress(RuntimeError):  # the loop is gone: nobody listens
            loop.call_soon_threadsafe(self._delivered, events, hosts)

    def _delivered(self, events: list[Event], hosts: list[SignedRecord]) -> None:
        for event in events:
            self.publish(event)
        if hosts:
            self.node.membership.learn_hosts(hosts)

    def publish(self, event: Event) -> None:
        """Loop thread: give ``event`` to every subscriber."""
        for sub in self._subscribers:
            sub.put(event)

    async def subscribe(self) -> AsyncIterator[Event]:
        """See ``Node.events``."""
        sub = Subscription(EVENT_QUEUE)
        if self.node.closing:
            return
        self._subscribers.add(sub)
        try:
            while (event := await sub.get()) is not None:
                yield event
        finally:
            self._subscribers.discard(sub)

    def close(self) -> None:
        """Every subscription ends (its iterator returns)."""
        for sub in list(self._subscribers):
            sub.close()


def _state_name(key: str) -> str:
    try:
        return split_state_key(key)[2]
    except GossipError:
        return key
