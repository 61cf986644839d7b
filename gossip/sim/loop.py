"""The simulator's clock and scheduler: a discrete-event loop in virtual milliseconds.

Nothing here reads the wall clock or sleeps. Time jumps from one scheduled event to
the next; events due at the same millisecond run in the order they were scheduled
(a sequence number breaks ties), so a run is a pure function of what was scheduled
and of the one ``random.Random`` the callers draw from.

Every run is bounded twice: in virtual time (``run(until=...)``) and in the number of
events (``max_events``); exceeding the latter raises ``EventBudgetExceeded`` rather than
spinning forever on a livelock.
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Callable
from dataclasses import dataclass, field

from ..errors import EventBudgetExceeded


@dataclass(order=True)
class _Entry:
    at: int
    seq: int
    fn: Callable[[], None] = field(compare=False)
    cancelled: bool = field(default=False, compare=False)


class Timer:
    """A handle on a scheduled call; ``cancel()`` makes it a no-op."""

    __slots__ = ("_entry",)

    def __init__(self, entry: _Entry) -> None:
        self._entry = entry

    @property
    def at(self) -> int:
        return self._entry.at

    def cancel(self) -> None:
        self._entry.cancelled = True


class EventLoop:
    """Virtual time ``now`` (ms) and a heap of calls due at future instants."""

    def __init__(self, *, start_ms: int, max_events: int) -> None:
        self.now = start_ms
        self.max_events = max_events
        self.events = 0  # calls run so far
        self._heap: list[_Entry] = []
        self._seq = itertools.count()

    def call_at(self, at: int, fn: Callable[[], None]) -> Timer:
        entry = _Entry(max(int(at), self.now), next(self._seq), fn)
        heapq.heappush(self._heap, entry)
        return Timer(entry)

    def call_later(self, delay_ms: int, fn: Callable[[], None]) -> Timer:
        return self.call_at(self.now + max(0, int(delay_ms)), fn)

    def next_at(self) -> int | None:
        """When the next live call is due, or None when nothing is scheduled."""
        while self._heap and self._heap[0].cancelled:
            heapq.heappop(self._heap)
        return self._heap[0].at if self._heap else None

    def run(self, *, until: int, stop: Callable[[], bool] | None = None) -> None:
        """Run calls due up to ``until`` (inclusive), then set ``now`` to ``until``;
        return early, at the instant it becomes true, when ``stop()`` holds after a call."""
        while True:
            at = self.next_at()
            if at is None or at > until:
                self.now = max(self.now, until)
                return
            entry = heapq.heappop(self._heap)
            self.now = entry.at
            self.events += 1
            if self.events > self.max_events:
                raise EventBudgetExceeded(
                    f"more than {self.max_events} events by virtual time {self.now} ms"
                )
            entry.fn()
            if stop is not None and stop():
                return
