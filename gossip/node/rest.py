"""Memory given back at rest: the C heap trimmed once activity has passed.

A node's work comes in bursts that allocate and free tens of megabytes: a write's
embedding (the tokenizer and the model's arrays), a batch of updates through the gate, a
recall's candidates. glibc keeps what was freed in its arenas, so a node at rest would
hold its last burst's peak (at 100k memories, ~25 MB after one write) until the same
sizes are asked for again. Every ``REST_S`` in which anything ran (a job of the
replica's worker, a vector built), the heap is trimmed once (``crdt.heap.trim_heap``:
~1 ms when there is something to give back, ~0.1 ms when not), in the worker thread, as
a read: never beside a replica call, never more than once per ``REST_S``.

Owns no state but its loop's; reaches the node through the two callables it is given.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from crdt.heap import trim_heap

REST_S = 0.5  # at most one trim per this many seconds, and only after activity


async def give_back_at_rest(activity: Callable[[], int],
                            run: Callable[[Callable[[], None]], Awaitable[None]],
                            period: float = REST_S) -> None:  # fmt: skip
    """Until cancelled: ``run(trim_heap)`` after each ``period`` in which ``activity()``
    (a count that grows with work done) moved, and once after the first; the trim's own
    job is not activity."""
    seen: int | None = None  # the first period gives back what opening left behind
    while True:
        await asyncio.sleep(period)
        if activity() != seen:
            await run(trim_heap)
            seen = activity()
