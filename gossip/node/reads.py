"""Reads: what this host's views say, from any thread, never waiting for the network,
and degraded (empty, logged) rather than slow: invariant 11.

``NodeReads`` is the reading half of ``Node``'s public surface. It owns no state: it
reads the node's views under their lock (``_views``, ``read_timeout``) or runs a read
in the replica's thread (``call``).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from typing import TYPE_CHECKING, Any, TypeVar

from crdt import GossipError, Replica, SignedRecord
from crdt.views import Benchmark, Breaker, Memory, Views

from .worker import READ

if TYPE_CHECKING:
    from ..events import Event
    from ..peers import Peer, PeerInfo, PeerTable
    from .changes import Changes
    from .membership import Membership

log = logging.getLogger("gossip.node")

T = TypeVar("T")


class NodeReads:
    """The reads of ``Node`` (see the module docstring)."""

    read_timeout: float
    _views: Views | None
    _replica: Replica | None

    if TYPE_CHECKING:
        running: bool

        async def call(self, fn: Callable[..., T], *args: Any, priority: int = ...) -> T: ...

        @property
        def replica(self) -> Replica: ...

        changes: Changes
        membership: Membership
        _table: PeerTable | None

        def _info(self, peer: Peer) -> PeerInfo: ...

    def _read(self, fn: Callable[[Views], T], fallback: T, what: str) -> T:
        """Read the views from this thread. A change holds their lock for one record at a
        time; past ``read_timeout``, or when the node is not running, answer empty."""
        views = self._views
        if views is None or not self.running:
            log.warning("%s: the node is not running; degraded mode, answering empty", what)
            return fallback
        if not views.lock.acquire(timeout=self.read_timeout):
            log.warning("%s: the views stayed busy for %.1f s; degraded mode, answering "
                        "empty", what, self.read_timeout)  # fmt: skip
            return fallback
        try:
            return fn(views)
        except Exception as e:  # a closing replica, a bug: still never break the caller
            log.warning("%s failed (%s); degraded mode, answering empty", what, e)
            return fallback
        finally:
            views.lock.release()

    async def _read_replica(self, fn: Callable[[Replica], T], fallback: T, what: str) -> T:
        """Read the replica itself (in its thread), empty past ``read_timeout``."""
        try:
            return await asyncio.wait_for(self.call(lambda: fn(self.replica), priority=READ),
                                          self.read_timeout)  # fmt: skip
        except TimeoutError:
            log.warning("%s: no answer from the replica within %.1f s; degraded mode, "
                        "answering empty", what, self.read_timeout)  # fmt: skip
        except GossipError as e:
            log.warning("%s: %s; degraded mode, answering empty", what, e)
        return fallback

    def recall(self, query: str | None = None, **filters: Any) -> list[Memory]:
        """Memories matching ``query`` as this host's views see them: ``filters`` as
        ``crdt.views.Views.recall`` takes them (``category``, ``subject``, ``tag``,
        ``author``, ``limit``, ``include_untrusted``, ``mode``, ``bank``, …), with its
        trust filter, retractions, expiry and share cap. Empty, never an exception, when
        degraded."""
        return self._read(lambda v: v.recall(query, **filters).hits, [], "recall")

    def breaker(self, name: str, *, include_untrusted: bool = False) -> Breaker:
        """Breaker ``name`` merged across trusted hosts; state ``unknown`` if no trusted
        host said anything current about it, or when degraded (as ``gossip.ops.signals``)."""
        unknown = Breaker(name, "unknown", [], "", None, [])
        found = self._read(
            lambda v: v.breaker(name, include_untrusted=include_untrusted), None, "breaker"
        )
        return found if found is not None else unknown

    def breakers(self, *, include_untrusted: bool = False) -> list[Breaker]:
        return self._read(
            lambda v: v.breakers(include_untrusted=include_untrusted), [], "breakers"
        )

    def benchmark(
        self, subject: str, metric: str, *, include_untrusted: bool = False
    ) -> Benchmark | None:
        return self._read(
            lambda v: v.benchmark(subject, metric, include_untrusted=include_untrusted),
            None, "benchmark",
        )  # fmt: skip

    async def records(self) -> dict[str, SignedRecord]:
        """Every immutable record, by id, with no trust filter (for tools and tests)."""
        return await self._read_replica(lambda r: r.records(), {}, "records")

    async def state_vector(self) -> dict[int, int]:
        return await self._read_replica(lambda r: r.state_vector(), {}, "state_vector")

    async def query(self, fn: Callable[[Replica, Views], T]) -> T:
        """Run ``fn(replica, views)`` in the replica's thread as a read, for tools and the
        local API (inspect, provenance); ``fn`` must not write. Raises GossipError when
        the node is not running; no timeout (the caller bounds it)."""

        def job() -> T:
            if self._replica is None or self._views is None:
                raise GossipError("the node is not running")
            return fn(self._replica, self._views)

        return await self.call(job, priority=READ)

    # -- what happens, and who is there ----------------------------------------------------

    def events(self) -> AsyncIterator[Event]:
        """Records added, breakers changed, peers changed, as they happen, until the node
        closes. A subscriber that falls behind gets ``EventsLost`` instead of the oldest."""
        return self.changes.subscribe()

    def peers(self) -> list[PeerInfo]:
        """The peer table, as snapshots (no replica involved, so no waiting)."""
        return [self._info(p) for p in self._table] if self._table is not None else []

    async def hosts(self) -> dict[str, SignedRecord]:
        """Every host announcement (ours too), by author, with no trust filter."""
        return await self._read_replica(
            lambda _: {r.author: r for r in self.membership.host_records()}, {},
            "host announcements",
        )  # fmt: skip
