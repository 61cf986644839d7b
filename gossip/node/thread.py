"""``NodeThread``: a node on its own event loop in a background thread, with blocking
methods, for synchronous daemons (``Node.start_in_thread()``).

Owns that thread and its loop; every call goes through the node's public methods.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import threading
from collections.abc import Callable, Coroutine, Iterator
from typing import TYPE_CHECKING, Any, TypeVar

from crdt.views import Benchmark, Breaker, Memory

from ..discovery import DiscoveryStatus
from ..events import Event
from ..peers import PeerInfo
from .replication import SyncReport

if TYPE_CHECKING:
    from .node import Node

T = TypeVar("T")


class NodeThread:
    """A node running on its own event loop in a background thread, with blocking
    methods. Every call waits at most ``timeout`` seconds; reads answer empty (degraded
    mode) rather than wait longer, as ``Node`` does."""

    def __init__(self, node: Node, *, timeout: float = 30.0) -> None:
        self.node = node
        self.timeout = timeout
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._stop: asyncio.Event | None = None
        self._thread = threading.Thread(target=self._main, name="sm-node", daemon=True)
        self._thread.start()
        self._ready.wait()
        if self._error is not None:
            self._thread.join()
            raise self._error

    def _main(self) -> None:
        asyncio.set_event_loop(self._loop)
        try:
            self._loop.run_until_complete(self._serve())
        finally:
            # As asyncio.run does: what is still pending (an events() reader waiting for
            # its next event) is cancelled, so that no caller blocks on a dead loop.
            pending = asyncio.all_tasks(self._loop)
            for task in pending:
                task.cancel()
            self._loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
            self._loop.run_until_complete(self._loop.shutdown_asyncgens())
            self._loop.close()

    async def _serve(self) -> None:
        self._stop = asyncio.Event()
        try:
            await self.node.__aenter__()
        except BaseException as e:
            self._error = e
            self._ready.set()
            return
        self._ready.set()
        try:
            await self._stop.wait()
        finally:
            await self.node.__aexit__(None, None, None)

    def call(self, coro: Coroutine[Any, Any, T], timeout: float | None = None) -> T:
        """Run a coroutine of the node on its loop and wait for it."""
        fut = asyncio.run_coroutine_threadsafe(coro, self._loop)
        return fut.result(self.timeout if timeout is None else timeout)

    @property
    def id(self) -> str:
        return self.node.id

    @property
    def address(self) -> str:
        return self.node.address

    def remember(self, text: str, **kw: Any) -> str:
        return self.call(self.node.remember(text, **kw))

    def retract(self, record_id: str, **kw: Any) -> str:
        return self.call(self.node.retract(record_id, **kw))

    def recall(self, query: str | None = None, **kw: Any) -> list[Memory]:
        return self.node.recall(query, **kw)  # views are safe to read from any thread

    def trip_breaker(self, name: str, **kw: Any) -> None:
        self.call(self.node.trip_breaker(name, **kw))

    def reset_breaker(self, name: str, **kw: Any) -> None:
        self.call(self.node.reset_breaker(name, **kw))

    def breaker(self, name: str, **kw: Any) -> Breaker:
        return self.node.breaker(name, **kw)

    def breakers(self, **kw: Any) -> list[Breaker]:
        return self.node.breakers(**kw)

    def record_benchmark(self, subject: str, metric: str, value: float, **kw: Any) -> None:
        self.call(self.node.record_benchmark(subject, metric, value, **kw))

    def benchmark(self, subject: str, metric: str, **kw: Any) -> Benchmark | None:
        return self.node.benchmark(subject, metric, **kw)

    def trust(self, key: str, name: str = "") -> None:
        self.call(_async(lambda: self.node.trust(key, name)))

    def distrust(self, key: str) -> bool:
        return self.call(_async(lambda: self.node.distrust(key)))

    def keyring(self) -> dict[str, str]:
        return self.node.keyring()

    def peers(self) -> list[PeerInfo]:
        return self.call(_async(self.node.peers))

    def events(self) -> Iterator[Event]:
        """``Node.events()`` for a synchronous consumer: blocks for each next event; ends
        when the node closes. Run it in a thread of its own if it must not block."""
        agen = self.node.events()
        try:
            while True:
                try:
                    fut = asyncio.run_coroutine_threadsafe(agen.__anext__(), self._loop)
                except RuntimeError:  # the loop is closed
                    return
                while True:
                    try:
                        event = fut.result(0.25)
                        break
                    except TimeoutError:
                        if not self._thread.is_alive():  # the loop died with it pending
                            return
                    except (StopAsyncIteration, concurrent.futures.CancelledError):
                        return
                yield event
        finally:  # unsubscribe (the consumer stopped early), unless the loop is gone
            if self._thread.is_alive():
                with contextlib.suppress(RuntimeError, TimeoutError):
                    asyncio.run_coroutine_threadsafe(agen.aclose(), self._loop).result(1.0)

    def discovery(self) -> list[DiscoveryStatus]:
        return self.call(_async(self.node.discovery))

    def sync_now(self, fanout: int | None = None) -> SyncReport:
        return self.call(self.node.sync_now(fanout))

    def close(self) -> None:
        """Stop the node (every task, socket and thread) and its loop's thread."""
        if self._thread.is_alive() and self._stop is not None:
            with contextlib.suppress(RuntimeError):  # the loop already stopped
                self._loop.call_soon_threadsafe(self._stop.set)
            self._thread.join()

    def __enter__(self) -> NodeThread:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


async def _async(fn: Callable[[], T]) -> T:
    return fn()
