"""Security tests with figures (issue 7, docs/threat-model.md): outsiders, replays, single
bit flips, the clock window — each over a real aiohttp server on 127.0.0.1 serving a real
replica in a real data dir, and each checked against the replica's fingerprint (document,
store rows, snapshot, pending buffer) before and after.

What each test counts is printed (``pytest -s``) and asserted: 0 of N reads or writes by
an unknown key, every flipped bit refused.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import pytest

from crdt import GossipError, Identity, Replica, SignedRecord, records
from crdt.updates import SignedUpdate
from gossip.protocol import Message, MessageType, sv_digest
from gossip.transport import (
    PUSH_PATH,
    SYNC_PATH,
    PeerMisbehaved,
    auth,
    check_response,
    sign_request,
)
from gossip.transport.http import HttpTransport
from tests.exchanges import respond
from tests.forge import Writer, fingerprint

pytestmark = pytest.mark.usefixtures("no_leaks")

T0 = 1_790_000_000_000
WINDOW = 60_000


class Now:
    """The server's clock: moves only when told."""

    def __init__(self, t: int = T0) -> None:
        self.t = t

    def __call__(self) -> int:
        return self.t


@dataclass
class Server:
    replica: Replica
    transport: HttpTransport
    address: str
    now: Now
    session: aiohttp.ClientSession

    @property
    def author(self) -> str:
        return self.replica.author

    def fingerprint(self) -> tuple:
        return (*fingerprint(self.replica), self.replica.pending_count)

    async def post(self, path: str, headers: dict[str, str], body: bytes
                   ) -> tuple[int, aiohttp.typedefs.LooseHeaders, bytes]:  # fmt: skip
        async with self.session.post(f"http://{self.address}{path}", data=body,
                                     headers=headers) as resp:  # fmt: skip
            return resp.status, resp.headers, await resp.read()

    async def restart(self) -> None:
        """A new transport and verifier on the same replica (what a daemon restart keeps:
        the data dir; what it loses: everything in memory)."""
        await self.transport.close()
        self.transport = _transport(self.replica, self.now, started_ms=self.now())
        self.address = await self.transport.start("127.0.0.1:0", _handler(self.replica))


def _transport(replica: Replica, now: Now, *, started_ms: int | None = None) -> HttpTransport:
    """A server as a node makes it; by default one that has been up for a long time."""
    started = now() - 100 * WINDOW if started_ms is None else started_ms
    verifier = auth.Verifier(replica.keyring, now, window_ms=WINDOW, started_ms=started)
    return HttpTransport(replica.identity, verifier, now_ms=now, timeout=5.0)


def _handler(replica: Replica):
    lock = asyncio.Lock()

    async def handle(path: str, body: bytes, peer_key: str) -> bytes:
        async with lock:
            return (await asyncio.to_thread(respond, replica, body, source=peer_key,
                                            path=path)).body  # fmt: skip

    return handle


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[Server]:
    """A server holding its own memory and breaker, and a trusted friend's memory."""
    now = Now()
    replica = Replica.open(tmp_path / "server", now_ms=now)
    replica.put(records.memory(replica.identity, "server secret: the staging password rotates "
                               "at noon", category="learning", ts=T0))  # fmt: skip
    replica.put(records.breaker(replica.identity, "kimi-coding/k2p5", state="open", ts=T0))
    transport = _transport(replica, now)
    address = await transport.start("127.0.0.1:0", _handler(replica))
    session = aiohttp.ClientSession()
    s = Server(replica, transport, address, now, session)
    try:
        yield s
    finally:
        await session.close()
        await s.transport.close()
        replica.close()


def fresh_push(writer: Writer, text: str) -> tuple[bytes, bytes]:
    """A PUSH carrying one new memory of ``writer``: (update raw, message body)."""
    su = writer.put(records.memory(writer.identity, text, category="learning", ts=T0))
    return su.raw, Message(MessageType.PUSH, {}, (su.raw,)).encode()


# -- unknown keys ---------------------------------------------------------------------------


async def test_unknown_keys_read_and_write_nothing(server: Server) -> None:
    """N requests from keys outside the keyring, each of the kinds that would read (SYNC
    from an empty state vector, DIGEST) or write (SYNC and PUSH carrying valid updates of
    their own): every one refused, no answer carries anything of the document, and the
    replica is unchanged. An impostor (a trusted key's name on an outsider's signature)
    fares no better."""
    friend = Writer()
    server.replica.trust(friend.id, "friend")
    held = server.replica.updates_for({})
    secrets = [b"staging password", b"kimi-coding", *(u[-40:] for u in held)]
    before = server.fingerprint()
    outsiders = [Writer() for _ in range(10)]
    n = refused = leaked = 0
    for i, w in enumerate(outsiders):
        for j in range(10):
            raw, push = fresh_push(w, f"outsider {i} lesson {j}")
            sync_with = Message(MessageType.SYNC, {}, (raw,)).encode()
            for path, body in [
                (SYNC_PATH, Message(MessageType.SYNC).encode()),
                (SYNC_PATH, Message(MessageType.DIGEST, digest=sv_digest({})).encode()),
                (SYNC_PATH, sync_with),
                (PUSH_PATH, push),
            ]:
                headers = sign_request(w.identity, path, body, server.now(), server.author)
                if j % 2:  # an impostor: the friend's name, the outsider's signature
                    headers[auth.KEY_HEADER] = friend.id
                status, _, answer = await server.post(path, headers, body)
                n += 1
                refused += status in (401, 403)
                leaked += any(s in answer for s in secrets)
                assert set(json.loads(answer)) == {"error", "status"}
    print(f"unknown keys: {n} requests, {refused} refused, {leaked} answers leaked, "
          f"replica unchanged: {server.fingerprint() == before}")  # fmt: skip
    assert n == 400 and refused == n and leaked == 0
    assert server.fingerprint() == before


async def test_a_peer_answering_with_an_unknown_key_is_not_believed(server: Server) -> None:
    """The other direction: our client, asking a server whose key it does not trust,
    takes nothing from the answer, whatever it holds."""
    me = Replica.open(server.replica.home.parent / "me", now_ms=server.now)
    try:
        server.replica.trust(me.author)  # the server would serve us; we do not trust it
        client = _transport(me, server.now)
        try:
            with pytest.raises(PeerMisbehaved, match="keyring"):
                await client.request(server.address, SYNC_PATH,
                                     Message(MessageType.SYNC).encode())  # fmt: skip
        finally:
            await client.close()
        assert me.records() == {} and me.state() == {}
    finally:
        me.close()


# -- replay ----------------------------------------------------------------------------------


async def test_a_captured_request_replayed_is_refused(server: Server) -> None:
    friend = Writer()
    server.replica.trust(friend.id)
    _, body = fresh_push(friend, "a lesson")
    headers = sign_request(friend.identity, PUSH_PATH, body, server.now(), server.author)
    status, _, _ = await server.post(PUSH_PATH, headers, body)
    assert status == 200 and server.replica.records()  # accepted once
    after = server.fingerprint()
    replays = []
    for dt in (0, 1, WINDOW // 2, WINDOW, WINDOW + 1, 2 * WINDOW, 2 * WINDOW + 1, 10 * WINDOW):
        server.now.t = T0 + dt
        status, _, answer = await server.post(PUSH_PATH, headers, body)
        replays.append((dt, status, json.loads(answer)["error"]))
    # Within twice the window the nonce is remembered; after the window the creation time
    # is out of it: refused either way, never served twice.
    assert all(status == 401 for _, status, _ in replays), replays
    assert all("nonce" in err for dt, _, err in replays if dt <= WINDOW)
    assert all("window" in err for dt, _, err in replays if dt > WINDOW)
    assert server.fingerprint() == after


async def test_a_replay_after_a_restart_within_the_window_is_refused(server: Server) -> None:
    """The nonce cache lives in memory: a restarted peer refuses what was signed before
    it started (once a known gap, found by this test)."""
    friend = Writer()
    server.replica.trust(friend.id)
    body = Message(MessageType.SYNC).encode()  # a read: what a replay could make it serve
    headers = sign_request(friend.identity, SYNC_PATH, body, server.now(), server.author)
    assert (await server.post(SYNC_PATH, headers, body))[0] == 200
    await server.restart()
    server.now.t += 1000
    status, _, _ = await server.post(SYNC_PATH, headers, body)
    assert status == 401


# -- the clock window ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("skew", "accepted"),
    [(-10 * WINDOW, False), (-WINDOW - 1, False), (-WINDOW, True), (-WINDOW + 1000, True),
     (0, True), (WINDOW - 1000, True), (WINDOW, True), (WINDOW + 1, False),
     (10 * WINDOW, False), (2**52, False)],
)  # fmt: skip
async def test_creation_times_outside_the_window_are_refused(
    server: Server, skew: int, accepted: bool
) -> None:
    friend = Writer()
    server.replica.trust(friend.id)
    _, body = fresh_push(friend, "a lesson")
    before = server.fingerprint()
    headers = sign_request(friend.identity, PUSH_PATH, body, server.now() + skew, server.author)
    status, _, answer = await server.post(PUSH_PATH, headers, body)
    if accepted:
        assert status == 200 and server.fingerprint() != before
    else:
        assert status == 401 and "window" in json.loads(answer)["error"]
        assert server.fingerprint() == before


# -- a single bit flipped ---------------------------------------------------------------------


async def _raw_exchange(address: str, request: bytes) -> int:
    """Write one HTTP request on a fresh connection; read the status of the answer."""
    host, port = address.rsplit(":", 1)
    reader, writer = await asyncio.open_connection(host, int(port))
    try:
        writer.write(request)
        await writer.drain()
        async with asyncio.timeout(5):
            line = await reader.readline()
        return int(line.split()[1]) if line.startswith((b"HTTP/1.1 ", b"HTTP/1.0 ")) else 0
    finally:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()


def _flip(data: bytes, bit: int) -> bytes:
    out = bytearray(data)
    out[bit // 8] ^= 1 << (bit % 8)
    return bytes(out)


async def test_every_bit_flipped_in_a_signed_request_is_refused(server: Server) -> None:
    """A PUSH that would write a new memory, sent as raw HTTP bytes with one bit flipped:
    every bit of the method, the path, the Sm-Key and Sm-Signature values, and one bit of
    every byte of the body (the bit rotating with the byte). Every one is refused and
    writes nothing; the unflipped request is then accepted (so nothing was refused for an
    incidental reason). Headers the signature does not cover (Host, Content-Type, the case
    of header names) carry no meaning and are left out."""
    friend = Writer()
    server.replica.trust(friend.id)
    _, body = fresh_push(friend, "a lesson worth forging")
    headers = sign_request(friend.identity, PUSH_PATH, body, server.now(), server.author)
    key, sig = headers[auth.KEY_HEADER], headers[auth.SIGNATURE_HEADER]
    parts = [b"POST", b" ", PUSH_PATH.encode(), b" HTTP/1.1\r\nHost: x\r\nSm-Key: ",
             key.encode(), b"\r\nSm-Signature: ", sig.encode(),
             f"\r\nContent-Length: {len(body)}\r\n\r\n".encode(), body]  # fmt: skip
    signed_parts = {0: "method", 2: "path", 4: "Sm-Key", 6: "Sm-Signature", 8: "body"}
    before = server.fingerprint()
    statuses: dict[str, dict[int, int]] = {}
    cases = 0
    for index, name in signed_parts.items():
        part = parts[index]
        bits = range(len(part) * 8) if name != "body" else [8 * i + i % 8 for i in range(len(part))]
        for bit in bits:
            flipped = [*parts[:index], _flip(part, bit), *parts[index + 1 :]]
            status = await _raw_exchange(server.address, b"".join(flipped))
            statuses.setdefault(name, {}).setdefault(status, 0)
            statuses[name][status] += 1
            cases += 1
    print(f"bit flips in a signed request: {cases} cases, statuses by part {statuses}")
    assert all(200 not in by_status and 0 not in by_status for by_status in statuses.values())
    assert server.fingerprint() == before
    assert await _raw_exchange(server.address, b"".join(parts)) == 200
    assert server.fingerprint() != before


async def test_every_bit_flipped_in_a_signed_response_is_refused(server: Server) -> None:
    """A real SYNC_REPLY (carrying the server's updates) with one bit flipped anywhere in
    its body or its signature headers: the client refuses every one."""
    friend = Replica.open(server.replica.home.parent / "friend", now_ms=server.now)
    try:
        server.replica.trust(friend.author)
        friend.trust(server.author)
        body = Message(MessageType.SYNC).encode()
        headers = sign_request(friend.identity, SYNC_PATH, body, server.now(), server.author)
        status, resp_headers, answer = await server.post(SYNC_PATH, headers, body)
        assert status == 200 and Message.decode(answer).updates
        verifier = auth.Verifier(friend.keyring, server.now, window_ms=WINDOW)
        got = {auth.KEY_HEADER: resp_headers[auth.KEY_HEADER],
               auth.SIGNATURE_HEADER: resp_headers[auth.SIGNATURE_HEADER]}  # fmt: skip

        def check(h: dict[str, str], b: bytes) -> None:
            check_response(verifier, path=SYNC_PATH, status=200, headers=h, body=b,
                           request_headers=headers, expected_key=server.author)  # fmt: skip

        cases = 0
        for bit in range(len(answer) * 8):
            with pytest.raises(PeerMisbehaved):
                check(got, _flip(answer, bit))
            cases += 1
        for name in (auth.KEY_HEADER, auth.SIGNATURE_HEADER):
            value = got[name].encode()
            for bit in range(len(value) * 8):
                flipped = _flip(value, bit).decode("latin-1")
                with pytest.raises(PeerMisbehaved):
                    check({**got, name: flipped}, answer)
                cases += 1
        check(got, answer)  # the unflipped answer verifies (its nonce is fresh until now)
        print(f"bit flips in a signed response: {cases} cases, all refused")
    finally:
        friend.close()


def test_every_bit_flipped_in_a_signed_record_or_update_is_refused(tmp_path: Path) -> None:
    """Every bit of a signed record (body and signature) and of a signed update (the
    frame: header, signature, Yjs bytes): the record does not verify, the update is
    rejected, and the replica offered all of them is unchanged; the original goes in."""
    ident = Identity.generate()
    rec = records.memory(ident, "Provider X drops requests at 03:00 UTC", category="anti-pattern",
                         subject="provider:x", tags=["p"], ts=T0)  # fmt: skip
    record_cases = 0
    for bit in range(len(rec.body) * 8):
        with pytest.raises(GossipError):
            SignedRecord(_flip(rec.body, bit), rec.sig).verify()
        record_cases += 1
    for bit in range(len(rec.sig) * 8):
        with pytest.raises(GossipError):
            SignedRecord(rec.body, _flip(rec.sig, bit)).verify()
        record_cases += 1
    w = Writer(ident)
    raw = w.put(rec).raw
    flipped = [_flip(raw, bit) for bit in range(len(raw) * 8)]
    replica = Replica.open(tmp_path / "r", now_ms=Now())
    try:
        before = fingerprint(replica)
        outcomes = replica.ingest_batch(flipped, source="flipper")
        statuses = {o.status for o in outcomes}
        assert statuses == {"rejected"}, statuses
        assert all(isinstance(o.error, GossipError) for o in outcomes)
        assert fingerprint(replica) == before and replica.pending_count == 0
        assert replica.ingest(SignedUpdate.decode(raw)) == "applied"
    finally:
        replica.close()
    print(f"bit flips: {record_cases} in a signed record, {len(flipped)} in a signed update, "
          "all refused")


# -- files ---------------------------------------------------------------------------------


def _modes(home: Path) -> dict[str, int]:
    return {p.name: p.stat().st_mode & 0o777 for p in [home, *home.iterdir()]}


def test_key_0600_and_store_not_readable_by_others_whatever_the_umask(tmp_path: Path) -> None:
    """``gossip init`` and a write, as real processes under umask 000: the data
    dir is 0700 and every file in it 0600 (key, config, store, lock, an export); the
    store's WAL and shared-memory files, which exist only while it is open, too."""
    home = tmp_path / "h"
    env = {**os.environ, "GOSSIP_HOME": str(home)}
    umask = 0o000  # the most permissive: whatever is not 0600 would show

    def gossip(*args: str) -> None:
        out = subprocess.run([sys.executable, "-m", "gossip.cli", *args], env=env,
                             capture_output=True, timeout=60,
                             preexec_fn=lambda: os.umask(umask))  # fmt: skip
        assert out.returncode == 0, out.stderr

    gossip("init")
    gossip("remember", "a lesson", "--category", "learning")
    gossip("export", str(home / "export.bin"))
    modes = _modes(home)
    assert modes.pop("h") == 0o700
    assert {"host.key", "store.db", "config.toml", "export.bin"} <= set(modes)
    assert modes == dict.fromkeys(modes, 0o600), {k: oct(v) for k, v in modes.items()}

    old = os.umask(umask)
    try:
        replica = Replica.open(home, now_ms=Now())
        try:
            replica.put(records.memory(replica.identity, "more", category="learning", ts=T0))
            live = _modes(home)
        finally:
            replica.close()
    finally:
        os.umask(old)
    assert {"store.db-wal", "store.db-shm"} <= set(live)
    assert all(mode & 0o077 == 0 for name, mode in live.items()), {
        k: oct(v) for k, v in live.items()
    }


async def _raw_request(address: str, payload: bytes) -> bytes:
    host, port = address.rsplit(":", 1)
    reader, writer = await asyncio.open_connection(host, int(port))
    try:
        writer.write(payload)
        await writer.drain()
        return await asyncio.wait_for(reader.read(200), 5)
    finally:
        writer.close()
        await writer.wait_closed()


async def test_malformed_http_is_one_short_warning_not_a_traceback_flood(server, caplog):
    """A stranger sending requests aiohttp cannot parse gets 400s; the log gets one
    warning line each (address and reason, no traceback), at most a burst of them."""
    caplog.set_level(logging.DEBUG, logger="gossip.http.server")
    bad = [
        b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n",
        b"POST /v1/sync HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
    ]
    for k in range(20):
        answer = await _raw_request(server.address, bad[k % 2])
        assert answer.startswith(b"HTTP/1.0 400") or answer.startswith(b"HTTP/1.1 400")
    lines = [r for r in caplog.records if r.name == "gossip.http.server"]
    assert 1 <= len(lines) <= 5, [r.getMessage() for r in lines]
    for r in lines:
        assert r.levelno == logging.WARNING and r.exc_info is None
        assert r.getMessage().startswith("refused a malformed HTTP request from 127.0.0.1: 400")
    assert any("Content-Length" in r.getMessage() for r in lines)
    assert "Traceback" not in caplog.text
