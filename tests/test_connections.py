"""The peer port's connection limits (gossip/transport/listener.py), over real TLS on loopback: a
stranger's certificate is kept for one request only, idle connections are closed,
connections over a cap are closed at accept, and a flood of 500 idle and 50 slowloris
connections leaves a daemon's local API and its trusted peers working (issue 17).

Every flood here comes from 127.0.0.2 or 127.0.0.3 (loopback), is bounded in count and
time (tests/flood.py), and closes every socket it opened."""

from __future__ import annotations

import asyncio
import contextlib
import json
import ssl
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from crdt import Identity
from gossip.protocol import SYNC_PATH
from gossip.transport import JOIN_PATH, ServerLimits, auth
from gossip.transport.http import HttpTransport, split_address
from gossip.transport.listener import FD_RESERVE, connection_budget
from gossip.transport.tls import PinnedTls
from tests.daemons import gossip, make_cluster, ok
from tests.flood import FloodThread, process_figures, stranger_context

pytestmark = pytest.mark.usefixtures("no_leaks")

WAIT_S = 20.0  # a bound for what must happen, never asserted as a duration


def _now() -> int:
    import time

    return time.time_ns() // 1_000_000


def _transport(home: Path, trusted: set[str], limits: ServerLimits | None = None) -> HttpTransport:
    identity = Identity.load_or_create(home)
    return HttpTransport(identity, auth.Verifier(lambda: trusted, _now), now_ms=_now,
                         timeout=5.0, limits=limits,
                         tls=PinnedTls.for_host(home, identity))  # fmt: skip


async def _answer(path: str, body: bytes, key: str) -> bytes:
    return b"ok"


@contextlib.asynccontextmanager
async def server_and_friend(tmp_path: Path, limits: ServerLimits) -> AsyncIterator[tuple]:
    """A TLS server with ``limits`` that trusts ``friend`` (a transport of its own)."""
    friend_id = Identity.load_or_create(tmp_path / "friend").public_id
    server_id = Identity.load_or_create(tmp_path / "server").public_id
    server = _transport(tmp_path / "server", {friend_id}, limits)
    friend = _transport(tmp_path / "friend", {server_id})
    async with server, friend:
        await server.start("127.0.0.1:0", _answer)
        yield server, friend


async def _connect(address: str, ctx: ssl.SSLContext, source: str = "127.0.0.2") -> tuple:
    host, port = split_address(address)
    return await asyncio.open_connection(host, port, ssl=ctx, local_addr=(source, 0),
                                         ssl_handshake_timeout=5.0)  # fmt: skip


async def _closed_by_server(reader: asyncio.StreamReader) -> bool:
    """Whether the server closes the connection within WAIT_S (reading what it sends)."""
    try:
        async with asyncio.timeout(WAIT_S):
            while await reader.read(4096):
                pass
    except TimeoutError:
        return False
    except (OSError, ssl.SSLError):
        pass
    return True


async def test_idle_connections_are_closed_a_strangers_sooner(tmp_path: Path):
    limits = ServerLimits(stranger_timeout=0.2, header_timeout=0.5)
    async with server_and_friend(tmp_path, limits) as (server, _):
        writers = []
        try:
            stranger = await _connect(server.address, stranger_context(tmp_path / "x"))
            writers.append(stranger[1])
            friend = await _connect(server.address, stranger_context(tmp_path / "friend"))
            writers.append(friend[1])
            assert await _closed_by_server(stranger[0])  # before: held for an hour
            assert await _closed_by_server(friend[0])  # trusted, but sent no request
        finally:
            for w in writers:
                w.transport.abort()
        assert server.listener is not None and server.listener.stats.timed_out == 2


async def test_a_stranger_gets_one_answer_then_the_connection_closes(tmp_path: Path):
    async with server_and_friend(tmp_path, ServerLimits()) as (server, _):
        reader, writer = await _connect(server.address, stranger_context(tmp_path / "x"))
        try:
            head = "HTTP/1.1\r\nHost: x\r\nContent-Length"
            request = (f"POST {JOIN_PATH} {head}: 2\r\n\r\n{{}}"
                       f"POST {SYNC_PATH} {head}: 0\r\n\r\n")  # fmt: skip
            writer.write(request.encode())  # two pipelined requests: only one is served
            async with asyncio.timeout(WAIT_S):
                answer = await reader.read()  # to EOF: the server closes after one
        finally:
            writer.transport.abort()
        assert answer.startswith(b"HTTP/1.1 401"), answer[:200]  # unsigned join request
        assert answer.count(b"HTTP/1.1 ") == 1
        assert server.stats.served == 1


async def test_over_the_per_address_cap_a_connection_is_closed_at_accept(tmp_path: Path):
    limits = ServerLimits(max_unauthenticated_per_address=3, stranger_timeout=60.0)
    async with server_and_friend(tmp_path, limits) as (server, friend):
        assert server.listener is not None
        ctx = stranger_context(tmp_path / "x")
        writers = []
        try:
            for _ in range(3):
                writers.append((await _connect(server.address, ctx))[1])
            with pytest.raises((OSError, ssl.SSLError, asyncio.IncompleteReadError)):
                reader, writer = await _connect(server.address, ctx)  # the 4th from .2
                writers.append(writer)
                async with asyncio.timeout(WAIT_S):
                    await reader.readexactly(1)  # closed at once: EOF, never a byte
            assert server.listener.stats.refused >= 1
            writers.append((await _connect(server.address, ctx, source="127.0.0.3"))[1])
            # A trusted peer (from 127.0.0.1) is not held back by the strangers.
            body, key = await friend.request(server.address, SYNC_PATH, b"x",
                                             expected_key=server.identity.public_id)  # fmt: skip
            assert body == b"ok" and key == server.identity.public_id
        finally:
            for w in writers:
                w.transport.abort()


def test_the_connection_caps_follow_the_file_descriptor_limit():
    limits = ServerLimits()
    assert connection_budget(limits, soft=128) == (128 - FD_RESERVE, (128 - FD_RESERVE) // 2)
    assert connection_budget(limits, soft=1 << 20) == (512, 128)
    assert connection_budget(limits, soft=FD_RESERVE) == (4, 2)  # a few peers still get in


def test_a_flood_from_loopback_leaves_the_api_and_a_trusted_peer_working(
    tmp_path: Path, daemons: list
):
    """Before: with 128 descriptors, the flood held them all (EMFILE on every accept):
    ``gossip remember`` said "no daemon API answers" (issue 17)."""
    n1, n2 = make_cluster(tmp_path, 2)
    n1.nofile = 128
    daemons += [n1, n2]
    n1.start()
    n2.start()
    assert n1.proc is not None
    ok(n2.home, "sync", "--json")
    flood = FloodThread(n1.address, stranger_context(tmp_path / "stranger"), idle=500,
                        slow=50, hold=90.0)  # fmt: skip
    flood.start()
    try:
        remember = gossip(n1.home, "remember", "written under a flood", "--category",
                          "learning", timeout=60)  # fmt: skip
        assert remember.returncode == 0, remember.stderr
        rid = remember.stdout.strip()
        synced = gossip(n2.home, "sync", n1.address, "--json", timeout=60)
        assert synced.returncode == 0, synced.stderr
        assert json.loads(synced.stdout)["exchanges"] >= 1
        assert rid in ok(n2.home, "recall", "under a flood", "--json")
        figures = process_figures(n1.proc.pid)
    finally:
        flood.stop()
    assert flood.flood is not None and flood.error is None
    assert figures["fds"] < 128 - 16, figures  # the peer port kept its reserve free
    idle, slow = flood.flood.idle_result, flood.flood.slow_result
    assert idle.opened >= 1 and idle.failed >= 1  # some got in, the rest were refused
    assert slow.closed_by_server + slow.failed >= 1  # the slowloris were cut off or refused
    assert n1.stop() == 0, n1.log
    assert n2.stop() == 0, n2.log
