"""Memory given back at rest: the C heap trimmed once activity has passed.

A node's work comes in bursts that allocate and free tens of megabytes: a write's
embedding (the tokenizer and the model's arrays), a batch of updates through the gate, a
recall's candidates. glibc keeps what was freed in its arenas, so a node at rest would
hold its last burst's peak (at 100k memories, ~25 MB after one write) until the same
sizes are asked for again. Once a whole ``REST_S`` has passed with nothing run (no job
of the replica's worker, no vector built) after some work, the heap is trimmed once
(``crdt.heap.trim_heap``: ~1 ms on a daemon's heap with something to give back, ~0.1 ms
with nothing), in the worker thread, as a read. Never while work goes on: a trim between
the chunks of a catch-up would hand back pages the next chunk asks for again, and
``malloc_trim`` walks a fragmented heap for tens of milliseconds. A node exchanging every
``interval`` (5 s on a LAN) has such quiet half-seconds between rounds.

Owns no state but its loop's; reaches the node through the two callables it is given.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from crdt.heap import trim_heap

log = logging.getLogger("gossip.node")

REST_S = 0.5  # this long with nothing run, after work, is rest


Job = Callable[[], None]


async def give_back_at_rest(
    activity: Callable[[], int],
    run: Callable[[Job], Awaitable[None]],
    wait: Callable[[], Awaitable[object]] | None = None,
) -> None:
    """Until cancelled: ``run(trim_heap)`` after each period (``wait()``, by default
    ``REST_S``) in which ``activity()`` (a count that grows with work done) did not move,
    if it moved since the last trim (and once after start). The trim's own job is not
    work."""
    wait = wait or (lambda: asyncio.sleep(REST_S))
    last, trimmed = activity(), None  # the first quiet period gives back what opening left
    while True:
        await wait()
        now = activity()
        if now == last and now != trimmed:
            try:
                await run(trim_heap)
            except Exception:  # an optimisation: it must never take the node's tasks down
                log.warning("giving the heap back failed", exc_info=True)
            now = trimmed = activity()
        last = now
