"""Embedding: the semantic lane's vectors (``crdt.semantic``), built in the background
``SemanticIndex.STEP`` at a time (one commit each) on a thread of their own, so that a
catch-up of 100k memories never holds a recall (recall answers lexically until they are
ready, and says so).

With ``[embeddings]`` in config.toml (``remote_embedder``), a second index, of the
endpoint's model, is built on a second thread once the endpoint answers (asked again
with backoff while it does not), and preferred by recall once ready; the embedded
model's index is kept current beside it, to fall back on.

Owns those threads. Reads the views' semantic indexes only; never touches the document.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import queue
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from crdt.errors import EmbedderUnavailable

if TYPE_CHECKING:
    from crdt.semantic import SemanticIndex
    from crdt.views import Views

    from .config import NodeConfig
    from .remote_embedder import RemoteEmbedder

log = logging.getLogger("gossip.node")

EMBED_IDLE_S = 0.25  # how soon a new memory's vector is built once the backlog is done
# A backlog arriving (a catch-up: thousands of memories a second) is left to arrive
# first: on 2 cores the embedding would take the cores the gate's thread and the
# signature workers need (100k memories caught up in 26 s beside it, 13.6 s without).
ARRIVING = 1024  # memories queued a second that mean a backlog is arriving
QUIET_S = 1.0  # how long the embedding waits before looking again
YIELD_MAX_S = 30.0  # never longer than this at a time: a steady flood still gets vectors
RETRY_S = (1.0, 60.0)  # an endpoint that does not answer is asked again after 1 s, 2 s, …


class Embedding:
    """The background builders of one node's vectors."""

    def __init__(self, remote: RemoteEmbedder | None = None) -> None:
        self.remote = remote
        self._pools: list[concurrent.futures.Executor] = []

    @classmethod
    def for_config(cls, config: NodeConfig) -> Embedding:
        """With ``[embeddings]``' endpoint as a second model (ConfigError if its key is
        not set)."""
        if config.embeddings is None:
            return cls()
        from .remote_embedder import RemoteEmbedder

        return cls(RemoteEmbedder(config.embeddings))

    def _pool(self, daemon: bool = False) -> concurrent.futures.Executor:
        # Its own thread, joined by ``close``: the replica's worker stays free for reads.
        # The endpoint's is a daemon thread, never joined: a request that hangs (up to
        # its timeout) must not hold a stopping node; the index it fills is closed by the
        # views, and it files nothing after that.
        pool: concurrent.futures.Executor = (
            _DaemonThread() if daemon else
            concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="embeddings"))
        self._pools.append(pool)
        return pool

    async def run(self, views: Views | None, where: Path) -> None:
        """Until cancelled: embed what the indexes lack, then wait for more."""
        if views is None:
            return
        async with asyncio.TaskGroup() as tg:
            if views.semantic is not None:
                tg.create_task(self._build(views.semantic, where))
            if self.remote is not None:
                tg.create_task(self._remote(views, self.remote, where))

    async def _build(self, index: SemanticIndex, where: Path) -> None:
        pool = self._pool()
        loop = asyncio.get_running_loop()
        # The model (~25 MB) is read by the first catch-up with something to embed, or by
        # the first query: a daemon whose vectors are all held never reads it until asked.
        # Memories queued so far, whether embedded since or not: its rate is the arrival's.
        arrived = lambda: index.pending() + index.embedded  # noqa: E731
        seen, since = arrived(), loop.time()
        while True:
            try:
                done = await loop.run_in_executor(pool, index.catch_up, index.STEP)
            except Exception:  # a full disk, a damaged file: recall stays lexical, says so
                log.exception("building the semantic index in %s failed", where)
                return
            now = loop.time()
            if arrived() - seen >= ARRIVING * max(now - since, EMBED_IDLE_S):
                await _while_arriving(arrived)
            elif not done:
                await asyncio.sleep(EMBED_IDLE_S)
            seen, since = arrived(), loop.time()

    async def _remote(self, views: Views, remote: RemoteEmbedder, where: Path) -> None:
        """The endpoint's index: made once the endpoint answered (its dimensions known),
        then built like the embedded one; while the endpoint does not answer, asked again
        with backoff (recall uses the embedded model meanwhile)."""
        pool = self._pool(daemon=True)
        loop = asyncio.get_running_loop()
        index: SemanticIndex | None = None
        delay, failing = RETRY_S[0], False
        while True:
            try:
                if index is None or remote.down:
                    await loop.run_in_executor(pool, remote.probe)
                if index is None:
                    index = await loop.run_in_executor(pool, _attach, views, remote, where)
                done = await loop.run_in_executor(pool, index.catch_up, index.STEP)
            except EmbedderUnavailable as e:
                if not failing:
                    log.warning("embeddings endpoint: %s; the semantic lane uses the embedded "
                                "model meanwhile (asked again with backoff)", e)  # fmt: skip
                failing = True
                await asyncio.sleep(delay)
                delay = min(2 * delay, RETRY_S[1])
                continue
            except Exception:  # a full disk, a damaged file: the embedded model answers
                log.exception("building the vectors of %s in %s failed", remote.name, where)
                return
            if failing:
                log.info("embeddings endpoint %s answers: vectors of %s", remote.url,
                         remote.name)  # fmt: skip
            failing, delay = False, RETRY_S[0]
            if not done:
                await asyncio.sleep(EMBED_IDLE_S)

    async def prefetch(self, views: Views | None, query: str) -> str | None:
        """The endpoint's vector of ``query``, asked for here (a thread of the loop's, at
        most the query timeout) rather than in the replica's thread, once its index is
        ready and while it answers; the recall that follows takes it (``embed_query``).
        A failure leaves the endpoint down: that recall does not ask again. Returns why
        the endpoint's model cannot answer when its index is not even made (it never
        answered): the views' note covers the rest."""
        remote = self.remote
        preferred = None if views is None else views.preferred
        if remote is None:
            return None
        if preferred is None:
            why = remote.error or "not asked yet"
            return (f"{remote.url} has not answered ({why}): the semantic lane used the "
                    "embedded model")
        if preferred.ready and not remote.down:
            with contextlib.suppress(EmbedderUnavailable):
                await asyncio.to_thread(remote.prefetch, query)
        return None

    def close(self) -> None:
        """Join the threads (their batches end first): call it where blocking harms nothing."""
        pools, self._pools = self._pools, []
        for pool in pools:
            pool.shutdown()


async def _while_arriving(arrived: Callable[[], int]) -> None:
    """Wait while memories still arrive by the thousand a second (at most ``YIELD_MAX_S``)."""
    waited = 0.0
    while waited < YIELD_MAX_S:
        before = arrived()
        await asyncio.sleep(QUIET_S)
        waited += QUIET_S
        if arrived() - before < ARRIVING * QUIET_S:
            return


def _attach(views: Views, remote: RemoteEmbedder, where: Path) -> SemanticIndex:
    """The endpoint model's index, in a file of its own in the data dir (its vectors kept
    there under its model's name), preferred by the views once ready."""
    from crdt import semantic

    index = semantic.open_in_dir(where, remote, semantic.ENDPOINT_FILE)
    assert index is not None  # an embedder was given: it cannot fail to load
    views.prefer_semantic(index)
    log.info("vectors of %s: %d held, %d to build", remote.name, len(index), index.pending())
    return index


class _DaemonThread(concurrent.futures.Executor):
    """An executor of one daemon thread, which ``shutdown`` never waits for (nor does the
    interpreter's exit, unlike a ``ThreadPoolExecutor``'s)."""

    def __init__(self) -> None:
        self._jobs: queue.SimpleQueue[Any] = queue.SimpleQueue()
        threading.Thread(target=self._run, name="embeddings-endpoint", daemon=True).start()

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any
               ) -> concurrent.futures.Future[Any]:  # fmt: skip
        future: concurrent.futures.Future[Any] = concurrent.futures.Future()
        self._jobs.put((future, fn, args, kwargs))
        return future

    def _run(self) -> None:
        while (job := self._jobs.get()) is not None:
            future, fn, args, kwargs = job
            if future.set_running_or_notify_cancel():
                try:
                    future.set_result(fn(*args, **kwargs))
                except BaseException as e:
                    future.set_exception(e)

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        self._jobs.put(None)  # the thread ends after its job, if any; nobody waits
