"""Shared fixtures: real replicas in temporary data dirs, a deterministic clock."""

from __future__ import annotations

import contextlib
import itertools
from collections.abc import Iterator
from pathlib import Path

import pytest

from crdt import Identity, Replica


class Clock:
    """A millisecond clock that only moves when told (or by 1 ms per read)."""

    def __init__(self, start: int = 1_790_000_000_000) -> None:
        self._ticks = itertools.count(start)

    def __call__(self) -> int:
        return next(self._ticks)


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def open_replica(tmp_path: Path, clock: Clock) -> Iterator:
    """``open_replica(name, identity=None)`` → a Replica in ``tmp_path/name``, closed after."""
    opened: list[Replica] = []

    def make(name: str, identity: Identity | None = None) -> Replica:
        r = Replica.open(tmp_path / name, identity, now_ms=clock)
        opened.append(r)
        return r

    yield make
    for r in opened:
        with contextlib.suppress(Exception):  # a test may have closed it already
            r.close()
