"""Embedding: the semantic lane's vectors (``crdt.semantic``), built in the background
``SemanticIndex.STEP`` at a time (one commit each) on a thread of their own, so that a
catch-up of 100k memories never holds a recall (recall answers lexically until they are
ready, and says so).

Owns that thread. Reads the views' semantic index only; never touches the document.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from crdt.views import Views

log = logging.getLogger("gossip.node")

EMBED_IDLE_S = 0.25  # how soon a new memory's vector is built once the backlog is done


class Embedding:
    """The background builder of one node's vectors."""

    def __init__(self) -> None:
        self._pool: concurrent.futures.ThreadPoolExecutor | None = None

    async def run(self, views: Views | None, where: object) -> None:
        """Until cancelled: embed what the index lacks, then wait for more."""
        index = views.semantic if views is not None else None
        if index is None:
            return
        # Its own thread, joined by ``close``: the replica's worker stays free for reads.
        pool = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="embeddings")
        self._pool = pool
        loop = asyncio.get_running_loop()
        # The model (~25 MB) is read by the first catch-up with something to embed, or by
        # the first query: a daemon whose vectors are all held never reads it until asked.
        while True:
            try:
                done = await loop.run_in_executor(pool, index.catch_up, index.STEP)
            except Exception:  # a full disk, a damaged file: recall stays lexical, says so
                log.exception("building the semantic index in %s failed", where)
                return
            if not done:
                await asyncio.sleep(EMBED_IDLE_S)

    def close(self) -> None:
        """Join the thread (its batch ends first): call it where blocking harms nothing."""
        pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown()
