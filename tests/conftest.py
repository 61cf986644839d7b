"""Shared fixtures: real replicas in temporary data dirs, a deterministic clock."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import itertools
import os
import shutil
import tempfile
import time
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from crdt import Identity, Replica

# scripts/test runs the suite in several processes (pytest-xdist), so no two tests may
# share a host-wide resource: the network namespace tests name theirs after their process
# id (namespaces, /etc/netns files), their subnets exist only inside those namespaces, and
# the root namespace's mDNS tests bind no real interface.


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        _give_its_own_id(item)
    # xdist schedules by node id: of tests sharing one, it would run one and drop the rest
    # without a word (schemathesis' were, before _give_its_own_id). Never silently.
    twice = [nodeid for nodeid, n in Counter(i.nodeid for i in items).items() if n > 1]
    if twice:
        raise pytest.UsageError(f"tests share a node id, and xdist would run one: {twice}")


def _give_its_own_id(item: pytest.Item) -> None:
    """schemathesis names each operation's test ``test[GET /path]``, but under pytest 9
    its items get the test's bare node id (pytest builds ids from a callspec, which they
    have not): the id the name says, as pytest's own parametrize gives."""
    base = getattr(item, "originalname", None)
    label = item.name[len(base):] if base and item.name.startswith(base) else ""
    parent_id = getattr(item.parent, "id", None)
    if (label.startswith("[") and label.endswith("]") and not item.nodeid.endswith("]")
            and hasattr(parent_id, "child")):  # fmt: skip
        item._id = parent_id.child(base).with_params(label[1:-1])


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


# --- leak checks (like python-zeroconf's conftest) --------------------------------------


def open_sockets() -> set[str]:
    """The sockets this process holds open (``socket:[inode]`` of each fd)."""
    out = set()
    for fd in os.listdir("/proc/self/fd"):
        with contextlib.suppress(OSError):  # the fd of listdir itself is gone by now
            target = os.readlink(f"/proc/self/fd/{fd}")
            if target.startswith("socket:"):
                out.add(f"{fd}:{target}")
    return out


@pytest.fixture
async def no_leaks() -> AsyncIterator[None]:
    """Fail the test if it leaves an asyncio task running or a socket open.

    Use it first (``pytestmark = pytest.mark.usefixtures("no_leaks")``) so that it is
    torn down last, after the fixtures that close transports and replicas. Closed
    transports may need a few loop iterations to let go of their sockets: wait for that
    with a deadline, never a fixed sleep (5 s: sixteen nodes closing at once on two busy
    cores have been seen to need more than 2)."""
    tasks_before = set(asyncio.all_tasks())
    sockets_before = open_sockets()
    yield
    me = asyncio.current_task()
    deadline = time.monotonic() + 5.0
    while True:
        tasks = {t for t in asyncio.all_tasks() - tasks_before if t is not me and not t.done()}
        sockets = open_sockets() - sockets_before
        if (not tasks and not sockets) or time.monotonic() > deadline:
            break
        if sockets:
            # A connection whose connect was cancelled right after its TLS handshake (a
            # node closing mid-exchange) is dropped by aiohttp unclosed; asyncio closes
            # its socket when the transport is collected. Collect, then look again.
            gc.collect()
        await asyncio.sleep(0.01)
    assert not tasks, f"the test left {len(tasks)} asyncio task(s) running: {tasks}"
    assert not sockets, f"the test left {len(sockets)} socket(s) open: {sorted(sockets)}"


@pytest.fixture
def daemons() -> Iterator[list]:
    """A list to put started ``tests.daemons.Daemon``s in; each is SIGKILLed (by pid) at
    teardown if it still runs, whatever the test did."""
    started: list = []
    yield started
    for d in started:
        d.kill()


@pytest.fixture
def short_tmp_path() -> Iterator[Path]:
    """A fresh directory with a short path (``/tmp/sg-…``), removed afterwards: where a
    process makes data dirs of its own below ``TMPDIR``, so that their sockets' paths fit
    in 107 bytes wherever pytest keeps ``tmp_path`` (xdist adds a level to it)."""
    path = Path(tempfile.mkdtemp(prefix="sg-", dir="/tmp" if os.path.isdir("/tmp") else None))
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="session")
def embedder():
    """The real embedded model, loaded once per test session (Node shares this copy)."""
    from crdt.embedder import default_embedder

    return default_embedder()
