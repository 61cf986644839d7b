"""Transport conformance: one suite, run over real aiohttp on loopback and over the
in-memory network, each test with real replicas in temporary data dirs.

Both transports serve every request with ``transport.serve`` and check every answer with
``transport.check_response``, so every status code and error below must be the same on
both; the HTTP-only tests at the end cover what only sockets can get wrong (streaming
limits, keep-alive, IPv6, TLS).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
import re
import socket
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from crdt import Identity, Replica, records
from gossip.protocol import MAGIC, Initiator, Message, MessageType, on_push_reply, push
from gossip.protocol.exchange import before
from gossip.transport import (
    PUSH_PATH,
    SYNC_PATH,
    PeerMisbehaved,
    PeerRefused,
    PeerUnreachable,
    PeerUntrusted,
    ServerLimits,
    auth,
    sign_request,
)
from gossip.transport.http import HttpTransport
from gossip.transport.memnet import MemoryNetwork
from gossip.transport.tls import PinnedTls
from tests.conftest import open_sockets
from tests.exchanges import respond, step
from tests.forge import Writer

pytestmark = pytest.mark.usefixtures("no_leaks")

TS = 1_790_000_000_000
GENERIC = "the request could not be served"


# --- the two networks -------------------------------------------------------------------


class HttpNet:
    """Real aiohttp servers and clients on 127.0.0.1."""

    kind = "http"
    listen = "127.0.0.1:0"

    def __init__(self) -> None:
        self.transports: list[HttpTransport] = []
        self._raw: aiohttp.ClientSession | None = None

    def transport(self, identity, verifier, *, now_ms, **kw) -> HttpTransport:
        t = HttpTransport(identity, verifier, now_ms=now_ms, **{"timeout": 5.0, **kw})
        self.transports.append(t)
        return t

    async def raw(
        self, address: str, method: str, path: str, headers: dict[str, str], body: bytes
    ) -> tuple[int, Any, bytes]:
        """Send exactly these headers and body with a plain aiohttp client."""
        if self._raw is None:
            self._raw = aiohttp.ClientSession()
        url = f"http://{address}{path}"
        async with self._raw.request(method, url, headers=headers, data=body) as r:
            return r.status, r.headers, await r.read()

    def unreachable(self) -> str:
        with socket.socket() as s:  # a port that was free a moment ago: refused
            s.bind(("127.0.0.1", 0))
            return f"127.0.0.1:{s.getsockname()[1]}"

    async def close(self) -> None:
        for t in self.transports:
            await t.close()
        if self._raw is not None:
            await self._raw.close()


class MemNet:
    """The in-memory network of the package, without faults."""

    kind = "memory"
    listen = "10.0.0.1:0"

    def __init__(self) -> None:
        self.network = MemoryNetwork(rng=random.Random(7))
        self.transports: list[Any] = []

    def transport(self, identity, verifier, *, now_ms, **kw):
        t = self.network.transport(identity, verifier, now_ms=now_ms, **{"timeout": 5.0, **kw})
        self.transports.append(t)
        return t

    async def raw(self, address, method, path, headers, body):
        reply = await self.network.raw(address, method, path, headers, body)
        return reply.status, reply.headers, reply.body

    def unreachable(self) -> str:
        return "10.0.0.1:1"

    async def close(self) -> None:
        for t in self.transports:
            await t.close()


@pytest.fixture(params=["http", "memory"])
async def net(request) -> AsyncIterator[HttpNet | MemNet]:
    n = HttpNet() if request.param == "http" else MemNet()
    yield n
    await n.close()


@dataclass
class Peer:
    """A replica, its transport and the handler a node would give it."""

    name: str
    replica: Replica
    transport: Any
    address: str = ""
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    @property
    def author(self) -> str:
        return self.replica.author

    async def handle(self, path: str, body: bytes, peer_key: str) -> bytes:
        async with self.lock:  # a replica has one owner at a time
            response = await asyncio.to_thread(respond, self.replica, body, source=peer_key,
                                               path=path)  # fmt: skip
        return response.body

    def write(self, *texts: str) -> None:
        for text in texts:
            self.replica.put(records.memory(self.replica.identity, text, category="learning",
                                            ts=TS))  # fmt: skip


@pytest.fixture
def make_peer(net, open_replica, clock):
    """``await make_peer(name, trusts=[peers], limits=..., handler=...)``: a started peer."""

    async def make(name: str, *, trusts=(), start=True, handler=None, **kw) -> Peer:
        replica = open_replica(name)
        verifier = auth.Verifier(replica.keyring, clock)
        peer = Peer(name, replica, net.transport(replica.identity, verifier, now_ms=clock, **kw))
        for other in trusts:
            replica.trust(other.author, other.name)
        if start:
            peer.address = await peer.transport.start(net.listen, handler or peer.handle)
        return peer

    return make


def befriend(*peers: Peer) -> None:
    for a in peers:
        for b in peers:
            if a is not b:
                a.replica.trust(b.author, b.name)


def fingerprint(replica: Replica) -> tuple:
    """Everything an exchange could change in a replica."""
    return (replica.state_vector(), replica.updates_for({}), replica.pending_count,
            replica.document_update())  # fmt: skip


async def exchange(a: Peer, b: Peer, *, expected_key: str | None = None, digest_first=False):
    """One push-pull exchange from a to b, driven as a node drives it."""
    ex = Initiator(a.replica, source=b.author, digest_first=digest_first)
    key = b.author if expected_key is None else expected_key
    async with a.lock:
        request = await asyncio.to_thread(ex.start)
    while request is not None:
        reply, _ = await a.transport.request(b.address, request.path, request.body,
                                             expected_key=key)  # fmt: skip
        async with a.lock:
            request = await asyncio.to_thread(step, ex, a.replica, reply)
    return ex.result


async def refused(coro) -> PeerRefused:
    with pytest.raises(PeerRefused) as info:
        await coro
    return info.value


# --- exchanges ---------------------------------------------------------------------------


async def test_push_pull_exchange_converges(make_peer):
    a, b, c = [await make_peer(n) for n in "abc"]
    befriend(a, b, c)
    a.write("a1", "a2", "a3")
    b.write("b1", "b2")
    c.write("c1")

    result = await exchange(a, b)
    assert result.requests == 2  # SYNC, then PUSH of what b lacked
    assert result.learned == 2 and result.sent == 3
    assert a.replica.state_vector() == b.replica.state_vector()

    await exchange(c, a)
    await exchange(b, c)
    texts = {r.fields["text"] for r in a.replica.records().values()}
    assert texts == {"a1", "a2", "a3", "b1", "b2", "c1"}
    for p in (b, c):
        assert p.replica.state_vector() == a.replica.state_vector()
        assert p.replica.document_update() == a.replica.document_update() or (
            {k: r.body for k, r in p.replica.records().items()}
            == {k: r.body for k, r in a.replica.records().items()}
        )


async def test_in_sync_peers_finish_in_one_small_request(make_peer):
    a, b = await make_peer("a"), await make_peer("b")
    befriend(a, b)
    a.write("a1")
    b.write("b1")
    for _ in range(64):  # as in a 64-host mesh: a state vector of ~650 bytes
        w = Writer()
        a.replica.ingest(w.put(records.memory(w.identity, "hi", category="c", ts=TS)).raw)
    await exchange(a, b)
    stats = a.transport.stats
    sent0, served0 = stats.sent, b.transport.stats.served_in

    async def on_the_wire(**kw) -> int:
        before = stats.sent + stats.received
        result = await exchange(a, b, **kw)
        assert result.requests == 1 and result.sent == 0 and result.received == []
        return stats.sent + stats.received - before

    full = await on_the_wire()  # as at a first contact: SYNC, SYNC_REPLY
    idle = await on_the_wire(digest_first=True)  # having met b before: DIGEST, SAME
    assert idle <= 1024 < full, (idle, full)
    assert b.transport.stats.served_in - served0 == stats.sent - sent0  # both ends agree


async def test_a_push_between_peers_at_rest_costs_the_same_whatever_the_writers(make_peer):
    """Protocol version 2 over HTTP: a push names the receiver's state vector by its
    digest and its answer states nothing, so its frames do not grow with the writers
    (version 1 carried two whole state vectors, ~650 B each with 64 writers)."""
    a, b = await make_peer("a"), await make_peer("b")
    befriend(a, b)
    stats, sizes = a.transport.stats, []
    for writers in (0, 64):
        for _ in range(writers):
            w = Writer()
            su = w.put(records.memory(w.identity, "hi", category="c", ts=TS))
            a.replica.ingest(su.raw)
            b.replica.ingest(su.raw)
        await exchange(a, b)
        assert a.replica.state_vector() == b.replica.state_vector()
        base = b.replica.state_vector()
        a.write(f"news with {writers:2} writers")
        ours = a.replica.state_vector()
        updates = a.replica.updates_for(base)
        assert before(ours, updates) == base  # the pusher's guess: the receiver at rest
        body = push(ours, updates, base=before(ours, updates)).encode()
        sent = stats.sent + stats.received
        answer, _ = await a.transport.request(b.address, PUSH_PATH, body, expected_key=b.author)
        sizes.append(stats.sent + stats.received - sent)
        assert Message.decode(answer) == Message(MessageType.PUSH_REPLY, {})
        assert on_push_reply(answer, ours) == b.replica.state_vector() == ours
    assert abs(sizes[1] - sizes[0]) <= 8, sizes


async def test_concurrent_exchanges_into_one_peer(make_peer):
    hub = await make_peer("hub")
    spokes = [await make_peer(f"s{i}") for i in range(4)]
    befriend(hub, *spokes)
    for i, s in enumerate(spokes):
        s.write(f"from {i}", f"and {i}")
    await asyncio.gather(*(exchange(s, hub) for s in spokes))
    await asyncio.gather(*(exchange(s, hub) for s in spokes))
    assert len(hub.replica.records()) == 8
    for s in spokes:
        assert s.replica.state_vector() == hub.replica.state_vector()


# --- authentication ------------------------------------------------------------------------


async def test_outsider_is_forbidden_everywhere_and_changes_nothing(make_peer):
    server = await make_peer("server")
    server.write("server knows this")
    outsider = await make_peer("outsider", trusts=[server])  # it trusts; nobody trusts it
    outsider.write("poison")
    before, outsider_before = fingerprint(server.replica), fingerprint(outsider.replica)

    updates = outsider.replica.updates_for({})
    for path, kind in ((SYNC_PATH, MessageType.SYNC), (PUSH_PATH, MessageType.PUSH)):
        for body in (Message(kind).encode(), Message(kind, {}, tuple(updates)).encode()):
            err = await refused(outsider.transport.request(server.address, path, body))
            assert err.status == 403 and "keyring" in str(err)
    err = await refused(exchange(outsider, server))
    assert err.status == 403

    assert fingerprint(server.replica) == before
    assert fingerprint(outsider.replica) == outsider_before  # and it learned nothing


async def test_unsigned_or_garbled_requests_get_401(make_peer, net, clock):
    a, b = await make_peer("a"), await make_peer("b")
    befriend(a, b)
    a.write("a1")
    before = fingerprint(b.replica)
    body = Message(MessageType.SYNC, {}, tuple(a.replica.updates_for({}))).encode()
    good = sign_request(a.replica.identity, SYNC_PATH, body, clock(), b.author)
    key, sig = good[auth.KEY_HEADER], good[auth.SIGNATURE_HEADER]
    t = int(sig.split(";")[1][2:])
    flipped = sig[:-3] + ("A" if sig[-3] != "A" else "B") + sig[-2:]
    stale = sign_request(a.replica.identity, SYNC_PATH, body, clock() - 61_000, b.author)
    for_push = sign_request(a.replica.identity, PUSH_PATH, body, clock(), b.author)
    for_a = sign_request(a.replica.identity, SYNC_PATH, body, clock(), a.author)
    for_nobody = sign_request(a.replica.identity, SYNC_PATH, body, clock(), "")

    cases = {
        "no headers": {},
        "key only": {auth.KEY_HEADER: key},
        "signature only": {auth.SIGNATURE_HEADER: sig},
        "garbage signature": {auth.KEY_HEADER: key, auth.SIGNATURE_HEADER: "garbage"},
        "short key": {auth.KEY_HEADER: key[:-1], auth.SIGNATURE_HEADER: sig},
        "future version": {auth.KEY_HEADER: key, auth.SIGNATURE_HEADER: "v=2" + sig[3:]},
        "flipped signature": {auth.KEY_HEADER: key, auth.SIGNATURE_HEADER: flipped},
        "other time": {
            auth.KEY_HEADER: key,
            auth.SIGNATURE_HEADER: sig.replace(f"t={t}", f"t={t + 1}"),
        },
        "stale": stale,
        "signed for another path": for_push,
        "signed for another peer": for_a,
        "signed for nobody": for_nobody,
    }
    for name, headers in cases.items():
        status, resp_headers, answer = await net.raw(b.address, "POST", SYNC_PATH, headers, body)
        assert status == 401, name
        assert json.loads(answer)["status"] == 401, name
        assert resp_headers["Content-Type"] == "application/json"
        # Every 401 names the server's key: a client that signed for nobody (or for the
        # wrong key) learns whom to sign for.
        assert resp_headers[auth.KEY_HEADER] == b.author, name
        if name.startswith("signed for another p"):
            assert "not signed for this peer" in json.loads(answer)["error"]
    assert fingerprint(b.replica) == before


async def test_replayed_request_gets_401(make_peer, net, clock):
    a, b = await make_peer("a"), await make_peer("b")
    befriend(a, b)
    a.write("a1")
    body = Message(MessageType.PUSH, {}, tuple(a.replica.updates_for({}))).encode()
    headers = sign_request(a.replica.identity, PUSH_PATH, body, clock(), b.author)

    status, resp_headers, answer = await net.raw(b.address, "POST", PUSH_PATH, headers, body)
    assert status == 200 and Message.decode(answer).type is MessageType.PUSH_REPLY
    assert resp_headers[auth.KEY_HEADER] == b.author
    after_first = fingerprint(b.replica)
    assert after_first[0] == a.replica.state_vector()

    status, _, answer = await net.raw(b.address, "POST", PUSH_PATH, headers, body)
    assert status == 401 and "nonce" in json.loads(answer)["error"]
    assert fingerprint(b.replica) == after_first


async def test_trusted_key_with_a_modified_body_gets_401(make_peer, net, clock):
    a, b = await make_peer("a"), await make_peer("b")
    befriend(a, b)
    a.write("a1", "a2")
    before = fingerprint(b.replica)
    signed_body = Message(MessageType.PUSH, {}, tuple(a.replica.updates_for({})[:1])).encode()
    sent_body = Message(MessageType.PUSH, {}, tuple(a.replica.updates_for({}))).encode()
    headers = sign_request(a.replica.identity, PUSH_PATH, signed_body, clock(), b.author)
    status, _, answer = await net.raw(b.address, "POST", PUSH_PATH, headers, sent_body)
    assert status == 401 and "does not verify" in json.loads(answer)["error"]
    assert fingerprint(b.replica) == before


def capture_requests(peer: Peer) -> list[dict[str, str]]:
    """The signature headers of every request ``peer`` is sent, as it received them (read
    where ``serve`` hands them to the verifier, so the same on both transports)."""
    captured: list[dict[str, str]] = []
    verifier = peer.transport.verifier
    check_headers = verifier.check_headers

    def capture(headers: Any) -> auth.Signed:
        names = (auth.KEY_HEADER, auth.SIGNATURE_HEADER, "Content-Type")
        captured.append({k: headers[k] for k in names if k in headers})
        return check_headers(headers)

    verifier.check_headers = capture  # type: ignore[method-assign]
    return captured


async def test_a_request_forwarded_to_another_peer_gets_401(make_peer, net):
    """b receives a's signed request and replays it verbatim at c, within the window. c
    trusts a, and the nonce is new to c, but the request names b as its recipient."""
    a, b, c = [await make_peer(n) for n in "abc"]
    befriend(a, b, c)
    a.write("a1", "a2")
    before = fingerprint(c.replica)
    captured = capture_requests(b)
    body = Message(MessageType.PUSH, {}, tuple(a.replica.updates_for({}))).encode()
    await a.transport.request(b.address, PUSH_PATH, body, expected_key=b.author)
    assert b.replica.state_vector() == a.replica.state_vector()  # b took it
    # And a first contact (no key known): both its attempts, for nobody and then for b.
    sync = Message(MessageType.SYNC, a.replica.state_vector()).encode()
    await a.transport.request(b.address, SYNC_PATH, sync)
    assert len(captured) == 3

    for headers, path, sent in zip(captured, (PUSH_PATH, SYNC_PATH, SYNC_PATH),
                                   (body, sync, sync), strict=True):  # fmt: skip
        status, resp_headers, answer = await net.raw(c.address, "POST", path, headers, sent)
        assert status == 401 and "not signed for this peer" in json.loads(answer)["error"]
        assert resp_headers[auth.KEY_HEADER] == c.author
    assert fingerprint(c.replica) == before
    # The same bytes signed by a for c are accepted: what c refused was the recipient.
    headers = sign_request(a.replica.identity, PUSH_PATH, body, a.transport.now_ms(), c.author)
    status, _, _ = await net.raw(c.address, "POST", PUSH_PATH, headers, body)
    assert status == 200 and c.replica.state_vector() == a.replica.state_vector()


async def test_first_contact_learns_the_key_from_the_401(make_peer):
    a, b = await make_peer("a"), await make_peer("b")
    befriend(a, b)
    a.write("a1")
    body = Message(MessageType.PUSH, {}, tuple(a.replica.updates_for({}))).encode()
    requests, served = a.transport.stats.requests, b.transport.stats.served

    # No key known: signed for nobody, refused with b's key as a hint, signed for b.
    answer, key = await a.transport.request(b.address, PUSH_PATH, body)
    assert key == b.author and Message.decode(answer).type is MessageType.PUSH_REPLY
    assert a.transport.stats.requests - requests == 2
    assert b.transport.stats.served - served == 2
    assert b.replica.state_vector() == a.replica.state_vector()  # served once, by the retry

    # With the key known: one request.
    requests = a.transport.stats.requests
    _, key = await a.transport.request(b.address, SYNC_PATH, Message(MessageType.SYNC).encode(),
                                       expected_key=key)  # fmt: skip
    assert key == b.author and a.transport.stats.requests - requests == 1

    # A 401 for another reason (a client clock out of the window) is retried once only.
    clock = a.transport.now_ms
    a.transport.now_ms = lambda: clock() - 120_000
    requests = a.transport.stats.requests
    err = await refused(a.transport.request(b.address, SYNC_PATH, body))
    assert err.status == 401 and "window" in str(err) and err.key_hint == b.author
    assert a.transport.stats.requests - requests == 2


async def test_a_peer_with_another_key_than_expected(make_peer):
    a, b, c = [await make_peer(n) for n in "abc"]
    befriend(a, b, c)
    body = Message(MessageType.SYNC).encode()
    # A request signed for c that reaches b is not b's to serve: 401, naming b. The
    # client expected c, so it does not retry for b.
    served = b.transport.stats.served
    err = await refused(a.transport.request(b.address, SYNC_PATH, body, expected_key=c.author))
    assert err.status == 401 and "not signed for this peer" in str(err)
    assert err.key_hint == b.author and b.transport.stats.served == served + 1
    # b trusts d, but d does not trust b: the 401 names a key d does not trust, so d
    # never signs a request for it (and would refuse b's answer anyway).
    d = await make_peer("d", trusts=[])
    b.replica.trust(d.author)
    served = b.transport.stats.served
    with pytest.raises(PeerMisbehaved, match="not in our keyring") as info:
        await d.transport.request(b.address, SYNC_PATH, body)
    assert isinstance(info.value, PeerUntrusted)  # what Node reads: an "unknown key" row
    assert b.transport.stats.served == served + 1
    # Without an expected key any keyring member's answer is accepted, and named.
    _, key = await a.transport.request(b.address, SYNC_PATH, body)
    assert key == b.author


async def test_answer_over_the_client_limit_is_misbehaviour(make_peer):
    b = await make_peer("b")
    a = await make_peer("a", max_response_bytes=300)
    befriend(a, b)
    b.write("x" * 400)
    with pytest.raises(PeerMisbehaved, match="over 300"):
        await exchange(a, b)
    assert a.replica.records() == {}


# --- malformed requests --------------------------------------------------------------------


def malformed_bodies(update: bytes) -> dict[str, bytes]:
    valid = Message(MessageType.SYNC, {123: 4}, (update,)).encode()
    return {
        "empty": b"",
        "random bytes": random.Random(3).randbytes(200),
        "truncated": valid[: len(valid) - 10],
        "trailing bytes": valid + b"\x00",
        "wrong version": valid[:3] + b"\x01" + valid[4:],  # a version-1 peer
        "unknown type": valid[:4] + b"\x09" + valid[5:],
        "sync reply": Message(MessageType.SYNC_REPLY, {}, (update,)).encode(),
        "push reply": Message(MessageType.PUSH_REPLY, {1: 2}).encode(),
        "no magic": b"HTTP" + valid[4:],
        "state vector overrun": MAGIC + b"\x02\x01\x7f\x00",
        "count overrun": MAGIC + b"\x02\x01\x01\x00\xff\xff\xff\x7f",
        "short digest": MAGIC + b"\x02\x05\x03abc\x00",
        "digest with an update": MAGIC + b"\x02\x05\x20" + bytes(32) + b"\x01\x01a",
        "digest, trailing bytes": Message(MessageType.DIGEST, digest=bytes(32)).encode() + b"x",
        "digest, truncated": Message(MessageType.DIGEST, digest=bytes(32)).encode()[:20],
        "same as a request": Message(MessageType.SAME).encode(),
        "same with a state vector": MAGIC + b"\x02\x06\x01\x00\x00",
        "push with a short base": MAGIC + b"\x02\x03\x05abcde\x01\x00\x00",
        "push, truncated base": MAGIC + b"\x02\x03\x20" + bytes(10),
    }


async def test_a_message_sent_to_the_other_endpoint_gets_400(make_peer):
    a, b = await make_peer("a"), await make_peer("b")
    befriend(a, b)
    a.write("a1")
    before = fingerprint(b.replica)
    updates = tuple(a.replica.updates_for({}))
    digest = Message(MessageType.DIGEST, digest=bytes(32)).encode()
    for body, path in (
        (Message(MessageType.SYNC, {}, updates).encode(), PUSH_PATH),
        (Message(MessageType.PUSH, {}, updates).encode(), SYNC_PATH),
        (digest, PUSH_PATH),
    ):
        err = await refused(a.transport.request(b.address, path, body, expected_key=b.author))
        assert err.status == 400 and "goes to" in str(err) and GENERIC not in str(err)
    assert fingerprint(b.replica) == before


@pytest.mark.parametrize("path", [SYNC_PATH, PUSH_PATH])
async def test_malformed_bodies_get_400_and_change_nothing(make_peer, path):
    a, b = await make_peer("a"), await make_peer("b")
    befriend(a, b)
    a.write("a1")
    b.write("b1")
    before = fingerprint(b.replica)
    for name, body in malformed_bodies(a.replica.updates_for({})[0]).items():
        err = await refused(a.transport.request(b.address, path, body))
        assert err.status == 400, name
        assert GENERIC not in str(err), name  # the protocol's own message, not a crash
        if name == "wrong version":
            assert "version 1 is not supported (this peer speaks 2)" in str(err)
    assert fingerprint(b.replica) == before


async def test_forged_update_inside_a_valid_message_changes_nothing(make_peer):
    a, b = await make_peer("a"), await make_peer("b")
    befriend(a, b)
    a.write("a1")
    b.write("b1")
    before = fingerprint(b.replica)
    (update,) = a.replica.updates_for({})
    forged = update[:-5] + bytes([update[-5] ^ 1]) + update[-4:]
    body = Message(MessageType.PUSH, {}, (forged, b"junk")).encode()
    answer, _ = await a.transport.request(b.address, PUSH_PATH, body, expected_key=b.author)
    assert Message.decode(answer).state_vector == before[0]
    assert fingerprint(b.replica) == before


async def test_oversized_body_gets_413(make_peer, net, clock):
    b = await make_peer("b", limits=ServerLimits(max_body_bytes=1024))
    a = await make_peer("a")
    befriend(a, b)
    a.write(*(f"{i} " + "x" * 300 for i in range(5)))
    before = fingerprint(b.replica)
    err = await refused(exchange(a, b))  # the SYNC is small, the PUSH is not
    assert err.status == 413 and "1024" in str(err)
    assert fingerprint(b.replica) == before

    # The limit is inclusive: 1024 bytes are read (and refused as junk), 1025 are not.
    err = await refused(a.transport.request(b.address, SYNC_PATH, b"\x00" * 1024))
    assert err.status == 400
    err = await refused(a.transport.request(b.address, SYNC_PATH, b"\x00" * 1025))
    assert err.status == 413


async def test_unknown_path_and_method(make_peer, net, clock):
    a, b = await make_peer("a"), await make_peer("b")
    befriend(a, b)
    body = Message(MessageType.SYNC).encode()
    signed = sign_request(a.replica.identity, SYNC_PATH, body, clock(), b.author)
    for method, path, headers, want in [
        ("POST", "/v1/nope", signed, 404),
        ("POST", "/", {}, 404),
        ("GET", SYNC_PATH, signed, 405),
        ("GET", PUSH_PATH, {}, 405),
        ("PUT", SYNC_PATH, {}, 405),
    ]:
        status, _, answer = await net.raw(b.address, method, path, headers, body)
        assert status == want, (method, path)
        assert json.loads(answer) == {"status": want, "error": json.loads(answer)["error"]}
    with pytest.raises(PeerRefused) as info:
        await a.transport.request(b.address, "/v2/sync", body)
    assert info.value.status == 404


async def test_unreachable_peer_fails_fast(make_peer, net):
    a = await make_peer("a", start=False)
    body = Message(MessageType.SYNC).encode()
    for address in (net.unreachable(), "no-port", "[::1", "host:99999", "a:b:1"):
        t0 = time.monotonic()
        with pytest.raises(PeerUnreachable):
            await a.transport.request(address, SYNC_PATH, body)
        assert time.monotonic() - t0 < 2.0, address


async def test_unexpected_handler_error_is_a_logged_400(make_peer, caplog):
    async def broken(path: str, body: bytes, key: str) -> bytes:
        raise ZeroDivisionError("a bug in the node")

    b = await make_peer("b", handler=broken)
    a = await make_peer("a")
    befriend(a, b)
    with caplog.at_level(logging.ERROR, logger="gossip"):
        err = await refused(
            a.transport.request(b.address, SYNC_PATH, Message(MessageType.SYNC).encode())
        )
    assert err.status == 400 and GENERIC in str(err) and "ZeroDivision" not in str(err)
    assert any(r.exc_info and r.exc_info[0] is ZeroDivisionError for r in caplog.records)


async def test_random_bodies_never_get_a_5xx(make_peer, caplog):
    """Hypothesis drives signed junk at both endpoints from a thread while the loop serves."""
    a, b = await make_peer("a"), await make_peer("b")
    befriend(a, b)
    b.write("b1")
    before = fingerprint(b.replica)
    loop = asyncio.get_running_loop()
    seen: set[int] = set()

    async def attempt(path: str, body: bytes) -> tuple[int, str]:
        try:
            await a.transport.request(b.address, path, body, expected_key=b.author)
        except PeerRefused as e:
            return e.status, str(e)
        return 200, ""

    prefix = st.sampled_from(
        [b"", MAGIC, MAGIC + b"\x01", MAGIC + b"\x01\x01", MAGIC + b"\x01\x03"]
    )
    bodies = st.builds(bytes.__add__, prefix, st.binary(max_size=300))

    @settings(max_examples=300, deadline=None, database=None,
              suppress_health_check=list(HealthCheck))  # fmt: skip
    @given(path=st.sampled_from([SYNC_PATH, PUSH_PATH]), body=bodies)
    def fuzz(path: str, body: bytes) -> None:
        status, message = asyncio.run_coroutine_threadsafe(attempt(path, body), loop).result(30)
        seen.add(status)
        assert status == 200 or (400 <= status < 500 and GENERIC not in message), message

    with caplog.at_level(logging.ERROR, logger="gossip"):
        await asyncio.to_thread(fuzz)
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert 400 in seen
    assert fingerprint(b.replica) == before


async def test_close_is_final_and_idempotent(make_peer):
    a, b = await make_peer("a"), await make_peer("b")
    befriend(a, b)
    await exchange(a, b)
    await b.transport.close()
    await b.transport.close()
    with pytest.raises(PeerUnreachable):
        await exchange(a, b)
    await a.transport.close()
    with pytest.raises(PeerUnreachable):
        await a.transport.request(b.address, SYNC_PATH, Message(MessageType.SYNC).encode())


async def test_ipv6_loopback(make_peer, net):
    if net.kind == "http" and not socket.has_ipv6:
        pytest.skip("no IPv6")
    net.listen = "[::1]:0"
    try:
        a, b = await make_peer("a"), await make_peer("b")
    except OSError as e:  # IPv6 disabled on this host
        pytest.skip(f"no IPv6 loopback: {e}")
    assert b.address.startswith("[::1]:") and not b.address.endswith(":0")
    befriend(a, b)
    a.write("over v6")
    await exchange(b, a)
    assert b.replica.state_vector() == a.replica.state_vector()


# --- HTTP only: what only sockets can get wrong ----------------------------------------------


@pytest.fixture
def http_net(net):
    if net.kind != "http":
        pytest.skip("HTTP only")
    return net


async def raw_http(address: str, request: bytes) -> bytes:
    """Write bytes to a socket; read one answer (head and Content-Length body) or, when
    there is no length, until the server closes. Fails after 5 s."""
    host, port = address.rsplit(":", 1)
    reader, writer = await asyncio.open_connection(host, int(port))
    try:
        writer.write(request)
        await writer.drain()
        async with asyncio.timeout(5):
            head = await reader.readuntil(b"\r\n\r\n")
            length = re.search(rb"(?i)\r\ncontent-length: *(\d+)", head)
            if length is None:
                return head + await reader.read(-1)
            return head + await reader.readexactly(int(length.group(1)))
    finally:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()


async def test_declared_oversize_is_refused_before_reading(http_net, make_peer, clock):
    b = await make_peer("b", limits=ServerLimits(max_body_bytes=1024))
    a = await make_peer("a")
    befriend(a, b)
    headers = sign_request(a.replica.identity, SYNC_PATH, b"", clock(), b.author)
    head = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
    # Claims a gigabyte and sends none of it: answered at once, connection closed.
    request = (f"POST {SYNC_PATH} HTTP/1.1\r\nHost: x\r\n{head}Content-Length: 1000000000\r\n"
               "\r\n").encode()  # fmt: skip
    answer = await raw_http(b.address, request)
    assert answer.startswith(b"HTTP/1.1 413")


async def test_chunked_body_over_the_limit_is_cut_off(http_net, make_peer, clock):
    b = await make_peer("b", limits=ServerLimits(max_body_bytes=4096))
    a = await make_peer("a")
    befriend(a, b)
    headers = sign_request(a.replica.identity, SYNC_PATH, b"", clock(), b.author)
    head = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
    chunk = b"1000\r\n" + b"\x00" * 4096 + b"\r\n"  # 4 KiB chunks, no length declared
    request = (f"POST {SYNC_PATH} HTTP/1.1\r\nHost: x\r\n{head}Transfer-Encoding: chunked\r\n"
               "\r\n").encode() + chunk * 3 + b"0\r\n\r\n"  # fmt: skip
    answer = await raw_http(b.address, request)
    assert answer.startswith(b"HTTP/1.1 413")


async def test_malformed_http_is_a_4xx(http_net, make_peer):
    b = await make_peer("b")
    for request in (b"NONSENSE\r\n\r\n", b"POST /v1/sync HTTP/1.1\r\nContent-Length: x\r\n\r\n",
                    b"POST /v1/sync HTTP/1.1\r\nX: " + b"a" * 20_000 + b"\r\n\r\n"):  # fmt: skip
        answer = await raw_http(b.address, request)
        assert answer[9:10] == b"4", answer[:40]


async def test_keep_alive_reuses_one_connection(http_net, make_peer):
    a, b = await make_peer("a"), await make_peer("b")
    befriend(a, b)
    await exchange(a, b)  # opens the connection
    sockets = open_sockets()
    for _ in range(5):
        await exchange(a, b)
    assert open_sockets() == sockets


async def test_tls(http_net, make_peer, tmp_path):
    """Pinned TLS (gossip/transport/tls.py; tests/test_tls.py covers it through nodes)."""
    def pinned(name):
        home = tmp_path / name
        return PinnedTls.for_host(home, Identity.load_or_create(home))

    a = await make_peer("a", tls=pinned("a"))
    b = await make_peer("b", tls=pinned("b"))
    befriend(a, b)
    a.write("secret")
    await exchange(b, a)
    assert b.replica.state_vector() == a.replica.state_vector()
    plain = await make_peer("plain")
    befriend(a, plain)
    with pytest.raises(PeerUnreachable, match="speaks TLS"):
        await plain.transport.request(a.address, SYNC_PATH, Message(MessageType.SYNC).encode())


async def test_body_cut_off_midway_is_not_an_error(http_net, make_peer, clock, caplog):
    a, b = await make_peer("a"), await make_peer("b")
    befriend(a, b)
    headers = sign_request(a.replica.identity, SYNC_PATH, b"", clock(), b.author)
    head = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
    host, port = b.address.rsplit(":", 1)
    with caplog.at_level(logging.DEBUG, logger="gossip"):
        _, writer = await asyncio.open_connection(host, int(port))
        writer.write(f"POST {SYNC_PATH} HTTP/1.1\r\nHost: x\r\n{head}Content-Length: 1000\r\n\r\n"
                     .encode() + b"\x00" * 500)  # fmt: skip
        await writer.drain()
        writer.close()
        await writer.wait_closed()
        deadline = time.monotonic() + 5
        while b.transport.stats.served == 0 and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
    assert b.transport.stats.served == 1
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert any("cut off" in r.getMessage() for r in caplog.records)


async def test_slow_body_gets_408(http_net, make_peer, clock):
    b = await make_peer("b", timeout=0.2)  # the server waits this long for a body
    a = await make_peer("a")
    befriend(a, b)
    headers = sign_request(a.replica.identity, SYNC_PATH, b"", clock(), b.author)
    head = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
    request = f"POST {SYNC_PATH} HTTP/1.1\r\nHost: x\r\n{head}Content-Length: 100\r\n\r\n"
    answer = await raw_http(b.address, request.encode() + b"\x00" * 10)  # and then nothing
    assert answer.startswith(b"HTTP/1.1 408")


@pytest.fixture
async def fake_peer(http_net) -> AsyncIterator:
    """``await fake_peer(handler)``: a plain aiohttp server that is not an sm-gossip peer
    (an impostor, a proxy, a broken server); returns its address."""
    runners: list[aiohttp.web.AppRunner] = []

    async def start(handler) -> str:
        app = aiohttp.web.Application()
        app.router.add_route("*", "/{tail:.*}", handler)
        runner = aiohttp.web.AppRunner(app, shutdown_timeout=0.1)
        await runner.setup()
        site = aiohttp.web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        runners.append(runner)
        host, port = runner.addresses[0][:2]
        return f"{host}:{port}"

    yield start
    for r in runners:
        await r.cleanup()


async def test_a_lying_key_hint_teaches_nothing(make_peer, fake_peer):
    """An impostor that names in its 401 a key the client trusts (c's) gets one request
    signed for c and no more; whatever it answers, the client accepts only c's own
    signature, bound to that request."""
    a, c, mallory = [await make_peer(n) for n in ("a", "c", "mallory")]
    befriend(a, c, mallory)  # mallory is trusted too, but is not c
    body = Message(MessageType.SYNC).encode()
    seen: list[dict[str, str]] = []
    answers: list[str] = []  # what the impostor answers to each request in turn

    async def impostor(request):
        seen.append(dict(request.headers))
        mode = answers[len(seen) - 1]
        if mode != "200":
            hint = c.author if mode == "401" else "not a key"
            return aiohttp.web.Response(status=401, body=b'{"error": "no"}',
                                        headers={auth.KEY_HEADER: hint})  # fmt: skip
        # A valid signature by mallory, bound to the request.
        nonce = auth.parse(request.headers).nonce
        reply = Message(MessageType.SYNC_REPLY).encode()
        signed = auth.sign(mallory.replica.identity, role="response", method="POST",
                           path=SYNC_PATH, body=reply, now_ms=a.transport.now_ms(),
                           request_nonce=nonce)  # fmt: skip
        return aiohttp.web.Response(body=reply, headers=signed)

    address = await fake_peer(impostor)
    answers[:] = ["401", "401"]
    err = await refused(a.transport.request(address, SYNC_PATH, body))
    assert err.status == 401 and len(seen) == 2  # one retry, no more
    # The retry was signed for c: useless anywhere but at c (and c would answer it
    # itself, signed by c, which is all the client would accept).
    verifier = auth.Verifier(lambda: {a.author}, a.transport.now_ms)
    retry = verifier.check_headers(seen[1])
    with pytest.raises(auth.Unauthorized, match="not signed for this peer"):
        verifier.check_body(retry, role="request", method="POST", path=SYNC_PATH, body=body,
                            recipient=mallory.author)  # fmt: skip
    verifier.check_body(retry, role="request", method="POST", path=SYNC_PATH, body=body,
                        recipient=c.author)  # fmt: skip

    seen.clear()
    answers[:] = ["401", "200"]
    with pytest.raises(PeerMisbehaved, match="not"):  # signed, but by mallory, not c
        await a.transport.request(address, SYNC_PATH, body)
    assert len(seen) == 2

    seen.clear()
    answers[:] = ["garbage"]
    err = await refused(a.transport.request(address, SYNC_PATH, body))
    assert err.status == 401 and err.key_hint is None and len(seen) == 1


async def test_client_refuses_what_is_not_a_signed_answer(make_peer, fake_peer):
    a = await make_peer("a", start=False)
    body = Message(MessageType.SYNC).encode()
    never = asyncio.Event()

    async def unsigned(request):
        return aiohttp.web.Response(body=Message(MessageType.SYNC_REPLY).encode())

    async def redirect(request):
        raise aiohttp.web.HTTPTemporaryRedirect(f"http://{good}/v1/sync")

    async def broken(request):
        return aiohttp.web.Response(status=500, text="boom")

    async def huge(request):
        response = aiohttp.web.StreamResponse(headers={"Content-Length": str(10**9)})
        await response.prepare(request)
        await response.write(b"\x00" * 1000)
        return response

    async def silent(request):
        await never.wait()

    good = await fake_peer(unsigned)
    with pytest.raises(PeerMisbehaved, match="unauthenticated"):
        await a.transport.request(good, SYNC_PATH, body)
    with pytest.raises(PeerRefused) as info:  # a redirect is not followed
        await a.transport.request(await fake_peer(redirect), SYNC_PATH, body)
    assert info.value.status == 307
    with pytest.raises(PeerRefused) as info:
        await a.transport.request(await fake_peer(broken), SYNC_PATH, body)
    assert info.value.status == 500 and "boom" in str(info.value)
    with pytest.raises(PeerMisbehaved, match="over"):
        await a.transport.request(await fake_peer(huge), SYNC_PATH, body)
    slow = await make_peer("slow", start=False, timeout=0.2)
    with pytest.raises(PeerUnreachable, match="no answer"):
        await slow.transport.request(await fake_peer(silent), SYNC_PATH, body)
    never.set()
