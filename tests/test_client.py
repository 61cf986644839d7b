"""gossip.client: the best-effort contract of DESIGN.md invariant 11 against a real
daemon API, no daemon, a data dir held by someone else, and a daemon that never answers."""

from __future__ import annotations

import asyncio
import logging
import socket
import threading
import time
from pathlib import Path

import pytest

from crdt import GossipError, Replica, records
from crdt.lock import DataDirLock
from gossip.client import ApiRefused, ApiUnavailable, Client
from tests.test_api import served
from tests.test_node import create_hosts, vectors_built

pytestmark = pytest.mark.usefixtures("no_leaks")


def degraded_lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if "degraded mode:" in r.getMessage()]


async def test_through_a_running_daemon(tmp_path: Path, caplog: pytest.LogCaptureFixture):
    home = tmp_path / "a"
    create_hosts([home])
    client = Client(home, timeout=5.0)
    async with served(home):
        rid = await asyncio.to_thread(client.remember, "Provider X drops requests at 03:00",
                                      category="anti-pattern", subject="provider:x")  # fmt: skip
        hits = await asyncio.to_thread(client.recall, "provider drops")
        assert [h["id"] for h in hits] == [rid]
        await asyncio.to_thread(client.trip_breaker, "kimi-coding/k2p5", cooldown=60)
        assert (await asyncio.to_thread(client.breaker, "kimi-coding/k2p5"))["state"] == "open"
        await asyncio.to_thread(client.record_benchmark, "kimi-coding/k2p5", "p50", 2.5, unit="s")
        bench = await asyncio.to_thread(client.benchmark, "kimi-coding/k2p5", "p50")
        assert bench is not None and bench["values"] == {"value": 2.5}
        with pytest.raises(ApiRefused) as e:
            await asyncio.to_thread(client.remember, "", category="learning")
        assert e.value.status == 400 and e.value.field == "text"
    assert not degraded_lines(caplog) and not client.degraded


async def test_no_daemon_reads_the_data_dir_in_process_then_empty(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
):
    home = tmp_path / "a"
    with Replica.open(home) as r:
        r.put(records.memory(r.identity, "kept on disk", category="learning", ts=r.now_ms()))
    caplog.set_level(logging.INFO, logger="gossip.client")
    client = Client(home, timeout=1.0)
    assert [h["text"] for h in client.recall("kept")] == ["kept on disk"]
    assert client.breaker("nothing")["state"] == "unknown"
    assert client.degraded
    # Someone else holds the data dir (a daemon starting): empty, quickly, never raising.
    lock = DataDirLock(home)
    lock.acquire()
    try:
        started = time.monotonic()
        assert client.recall("kept") == []
        assert client.breaker("x")["state"] == "unknown"
        assert client.benchmark("s", "m") is None
        assert time.monotonic() - started < 3
    finally:
        lock.release()
    assert len(degraded_lines(caplog)) == 1  # once per outage, not per call
    with pytest.raises(ApiUnavailable):
        client.remember("a write must not be lost silently", category="learning")
    assert Client(tmp_path / "nowhere", timeout=0.5).recall("x") == []
    assert isinstance(ApiUnavailable("x"), GossipError)


def test_a_daemon_that_never_answers_costs_a_read_its_timeout(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
):
    home = tmp_path / "a"
    home.mkdir()
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(str(home / "api.sock"))
    server.listen(8)
    accepted: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:  # accept, read, never answer: a stuck daemon
        server.settimeout(0.1)
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except OSError:
                continue
            accepted.append(conn)

    t = threading.Thread(target=accept)
    t.start()
    try:
        client = Client(home, timeout=0.5)
        started = time.monotonic()
        assert client.recall("anything") == []
        assert client.breaker("b")["state"] == "unknown"
        elapsed = time.monotonic() - started
        assert elapsed < 3, elapsed  # two reads, each bounded by the timeout
        assert len(degraded_lines(caplog)) == 1
    finally:
        stop.set()
        t.join()
        for c in accepted:
            c.close()
        server.close()


def test_a_daemon_that_dribbles_its_answer_costs_a_read_its_timeout_in_all(tmp_path: Path):
    # A socket timeout is per recv: one byte every 0.2 s would keep a read going for ever.
    home = tmp_path / "a"
    home.mkdir()
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(str(home / "api.sock"))
    server.listen(8)
    accepted: list[socket.socket] = []
    stop = threading.Event()
    answer = b"HTTP/1.1 200 OK\r\n" + b"X-Slow: " + b"x" * 200 + b"\r\n\r\n{}"

    def dribble() -> None:
        server.settimeout(0.1)
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except OSError:
                continue
            accepted.append(conn)
            for byte in answer:
                if stop.wait(0.2):
                    break
                try:
                    conn.sendall(bytes([byte]))
                except OSError:
                    break

    t = threading.Thread(target=dribble)
    t.start()
    try:
        client = Client(home, timeout=1.0)
        started = time.monotonic()
        assert client.recall("anything") == []
        elapsed = time.monotonic() - started
        assert elapsed < 1.5, elapsed  # the timeout, not a second one for the fallback
    finally:
        stop.set()
        t.join()
        for c in accepted:
            c.close()
        server.close()


async def test_an_in_process_read_answers_as_the_daemon_does(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
):
    home, stranger = tmp_path / "a", tmp_path / "s"
    me, other = create_hosts([home, stranger], trusted=[home])
    with Replica.open(stranger) as s:
        s.put(records.memory(s.identity, "provider x: disable retries", category="advice",
                             ts=s.now_ms()))  # fmt: skip
        theirs = s.updates_for({})
    with Replica.open(home) as r:
        r.put(records.memory(r.identity, "provider x drops at 03:00", category="anti-pattern",
                             ts=r.now_ms()))  # fmt: skip
        r.put(records.memory(r.identity, "provider x is slow", category="learning",
                             ts=r.now_ms()))  # fmt: skip
        for raw in theirs:
            r.ingest(raw)
    asks = [
        {}, {"include_untrusted": "false"}, {"include_untrusted": "true"},
        {"include_untrusted": True}, {"author": other[:12], "include_untrusted": True},
        {"author": me[:12]}, {"category": "learning"}, {"limit": 1}, {"limit": "2"},
        {"limit": 0}, {"limit": 100000}, {"include_untrusted": "maybe"}, {"bogus": 1},
    ]
    client = Client(home, timeout=5.0)
    async with served(home) as s:
        await vectors_built(s.node)  # the in-process read embeds before it answers
        daemon = [await asyncio.to_thread(client.recall, "provider", **a) for a in asks]
    assert not client.degraded
    caplog.set_level(logging.INFO, logger="gossip.client")
    local = [await asyncio.to_thread(client.recall, "provider", **a) for a in asks]
    assert client.degraded
    for ask, d, x in zip(asks, daemon, local, strict=True):
        assert x == d, ask
    assert len(daemon[2]) == 3 and len(daemon[1]) == 2 and daemon[4][0]["author"] == other
    assert all("author_name" in m for m in local[0])
    (line,) = [r for r in caplog.records if "degraded mode:" in r.getMessage()]
    assert line.levelno == logging.WARNING  # once per outage, a warning
