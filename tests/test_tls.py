"""TLS on the peer port, pinned to host keys (gossip/transport/tls.py), with real nodes and real
sockets on 127.0.0.1: what crosses, what is refused, and what the wire shows.

A "man in the middle" here is a TLS server on loopback that holds a real sm-gossip
certificate for *another* key (anyone can make one: the anchor is public); a
"byte-logging proxy" forwards TCP both ways and keeps every byte it saw.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import stat
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from crdt import Identity, Replica
from gossip import config
from gossip.config import Config, ConfigError, Profile
from gossip.daemon import ServeSettings
from gossip.node import Node
from gossip.protocol import SYNC_PATH, Message, MessageType
from gossip.transport import PeerMisbehaved, PeerRefused, PeerUnreachable, PeerUntrusted, auth
from gossip.transport.endpoints import sign_request
from gossip.transport.http import HttpTransport, split_address
from gossip.transport.tls import CERT_FILE, PinnedTls, certificate_key, ensure_certificate
from tests.daemons import make_cluster, ok, wait_for
from tests.test_node import create_hosts, until

pytestmark = pytest.mark.usefixtures("no_leaks")

QUIET = Profile.local().with_(interval=60.0)  # rounds only when asked (and at start)
SECRET = "the launch codes are 0000"


@dataclass
class Tap:
    """A TCP listener on 127.0.0.1: with ``target`` it forwards both ways (a proxy);
    without, it only reads (the far end of a man in the middle). Keeps every byte."""

    target: str | None = None
    ssl_context: ssl.SSLContext | None = None
    seen: bytearray = field(default_factory=bytearray)
    address: str = ""
    _server: asyncio.Server | None = None
    _tasks: set[asyncio.Task[None]] = field(default_factory=set)
    _writers: list[asyncio.StreamWriter] = field(default_factory=list)

    async def __aenter__(self) -> Tap:
        self._server = await asyncio.start_server(self._on_client, "127.0.0.1", 0,
                                                  ssl=self.ssl_context)  # fmt: skip
        self.address = f"127.0.0.1:{self._server.sockets[0].getsockname()[1]}"
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        for w in self._writers:
            w.close()
        for t in list(self._tasks):
            t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._server.wait_closed()

    async def _on_client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter):
        self._writers.append(writer)
        if self.target is None:
            await self._pump(reader, None)
            return
        host, port = split_address(self.target)
        up_reader, up_writer = await asyncio.open_connection(host, port)
        self._writers.append(up_writer)
        for src, dst in ((reader, up_writer), (up_reader, writer)):
            task = asyncio.create_task(self._pump(src, dst))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _pump(self, src: asyncio.StreamReader, dst: asyncio.StreamWriter | None) -> None:
        with contextlib.suppress(OSError, ssl.SSLError, asyncio.IncompleteReadError):
            while chunk := await src.read(65536):
                self.seen += chunk
                if dst is not None:
                    dst.write(chunk)
                    await dst.drain()
        if dst is not None:
            dst.close()


def homes(tmp_path: Path, *names: str, trusted: list[str] | None = None) -> list[Path]:
    """Data dirs with keys; each trusts those named in ``trusted`` (default: all)."""
    paths = [tmp_path / n for n in names]
    create_hosts(paths, [tmp_path / n for n in (trusted if trusted is not None else names)])
    return paths


def transport(home: Path, *, tls: bool = True) -> HttpTransport:
    identity = Identity.load(home)
    with Replica.open(home) as r:
        keyring = frozenset(r.keyring())
    pinned = PinnedTls.for_host(home, identity) if tls else None
    return HttpTransport(identity, auth.Verifier(lambda: keyring, _now), now_ms=_now,
                         timeout=5.0, tls=pinned)  # fmt: skip


def _now() -> int:
    import time

    return time.time_ns() // 1_000_000


@contextlib.asynccontextmanager
async def nodes(*homes_: Path, **kw) -> AsyncIterator[list[Node]]:
    async with contextlib.AsyncExitStack() as stack:
        yield [await stack.enter_async_context(Node(h, profile=QUIET, **kw)) for h in homes_]


async def test_two_nodes_exchange_over_tls(tmp_path: Path):
    a_home, b_home = homes(tmp_path, "a", "b")
    async with nodes(a_home, b_home) as (a, b):
        await a.remember(SECRET, category="learning")
        assert (await b.sync_with(a.address)).exchanges == 1
        await until(lambda: b.recall("launch codes"), "the memory on b")
        row = next(p for p in b.peers() if p.key == a.id)
        assert row.transport == "tls" and row.state == "alive"
        assert b.transport_mode == "tls"
        record = (await b.query(lambda r, _: r.get(f"host:{a.id}:self")))
        assert record is not None and record.fields["transport"] == "tls"


async def test_the_certificate_is_the_host_key_in_a_0600_file_renewed_at_start(tmp_path: Path):
    (home,) = homes(tmp_path, "a")
    identity = Identity.load(home)
    path = ensure_certificate(home, identity)
    assert path == home / CERT_FILE
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    first = path.read_bytes()
    der = ssl.PEM_cert_to_DER_cert(first.decode())
    assert certificate_key(der) == identity.public_id
    assert ensure_certificate(home, identity).read_bytes() == first  # deterministic
    # Widened, damaged or from another key: rewritten as it should be, 0600 again.
    path.chmod(0o644)
    ensure_certificate(home, identity)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    path.write_bytes(b"not a certificate")
    async with Node(home, profile=QUIET):
        assert path.read_bytes() == first
        assert stat.S_IMODE(path.stat().st_mode) == 0o600


async def test_a_man_in_the_middle_with_another_key_is_refused_before_any_byte(tmp_path: Path):
    a_home, b_home, m_home = homes(tmp_path, "a", "b", "mallory")
    mallory = PinnedTls.for_host(m_home, Identity.load(m_home))
    a = transport(a_home)
    b_id = Identity.load(b_home).public_id
    body = Message(MessageType.SYNC).encode()
    async with Tap(ssl_context=mallory.server) as mitm, a:
        # a means to reach b, and mallory answers at the address (a key a even trusts).
        with pytest.raises(PeerMisbehaved, match=r"not .* the peer we meant to reach"):
            await a.request(mitm.address, SYNC_PATH, body, expected_key=b_id)
        assert bytes(mitm.seen) == b""  # the handshake ended it: no request, no document


async def _connect(address: str, context: ssl.SSLContext, head: bytes = b"GET / HTTP/1.1\r\n",
                   body: bytes = b"") -> tuple[ssl.SSLObject, bytes]:  # fmt: skip
    """One TLS connection that sends one request (``head``: its request line and
    headers; it is closed after) and reads the answer (a TLS 1.3 session ticket arrives
    after the handshake, with data); its ``SSLObject`` and the answer's status line."""
    host, port = split_address(address)
    reader, writer = await asyncio.open_connection(host, port, ssl=context)
    try:
        writer.write(head + b"Host: x\r\nConnection: close\r\n\r\n" + body)
        answer = await reader.read()
        return writer.get_extra_info("ssl_object"), answer.split(b"\r\n", 1)[0]
    finally:
        writer.close()
        with contextlib.suppress(OSError, ssl.SSLError):
            await writer.wait_closed()


def _signed_sync(identity: Identity, recipient: str) -> tuple[bytes, bytes]:
    """A real signed SYNC request for ``recipient``: its head and its body."""
    body = Message(MessageType.SYNC).encode()
    headers = sign_request(identity, SYNC_PATH, body, _now(), recipient)
    lines = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
    return f"POST {SYNC_PATH} HTTP/1.1\r\nContent-Length: {len(body)}\r\n{lines}".encode(), body


async def test_a_resumed_connection_is_pinned_and_checked_like_a_new_one(tmp_path: Path):
    """The next connection to a pinned peer resumes the last one's TLS session (no
    certificate signatures), and still proves the pinned key, passes the client's
    keyring check, and fails at anyone else's address."""
    a_home, b_home, m_home = homes(tmp_path, "a", "b", "mallory")
    identity, b_id = Identity.load(a_home), Identity.load(b_home).public_id
    mallory = PinnedTls.for_host(m_home, Identity.load(m_home))
    keyring = {b_id, Identity.load(m_home).public_id}
    pinned = PinnedTls.for_host(a_home, identity).client(b_id, lambda: frozenset(keyring))
    async with nodes(b_home) as (b,), Tap(ssl_context=mallory.server) as mitm:
        b_tls = b.pinned_tls()
        assert b_tls is not None

        def resumed() -> int:  # handshakes b's server resumed, by OpenSSL's own count
            return b_tls.server.session_stats()["hits"]

        first, _ = await _connect(b.address, pinned)
        assert not first.session_reused and certificate_key(first.getpeercert(True)) == b_id
        again, _ = await _connect(b.address, pinned)
        assert again.session_reused and certificate_key(again.getpeercert(True)) == b_id
        assert resumed() == 1
        keyring.discard(b_id)  # b distrusted: its resumable session does not get it past
        with pytest.raises(ssl.SSLError, match="not in our keyring"):
            await _connect(b.address, pinned)
        assert resumed() == 2  # that handshake was a resumption, refused all the same
        keyring.add(b_id)  # trusted again: a full handshake (the failed session forgotten)
        assert not (await _connect(b.address, pinned))[0].session_reused
        assert (await _connect(b.address, pinned))[0].session_reused and resumed() == 3
        # b's session offered at mallory's address: she cannot resume it, and her own
        # certificate fails the pin (a key a trusts, but not the one it meant to reach).
        with pytest.raises(ssl.SSLError, match=r"not .* the peer we meant to reach"):
            await _connect(mitm.address, pinned)
        assert bytes(mitm.seen) == b""


async def test_a_resumed_connection_from_a_key_distrusted_since_gets_403(tmp_path: Path):
    """The server reads the client's key from a resumed session as from a full
    handshake: a trusted client's signed request is served, a distrusted one's is 403."""
    a_home, b_home = homes(tmp_path, "a", "b")
    identity, b_id = Identity.load(a_home), Identity.load(b_home).public_id
    pinned = PinnedTls.for_host(a_home, identity).client(b_id, lambda: frozenset({b_id}))
    async with nodes(b_home) as (b,):
        conn, status = await _connect(b.address, pinned, *_signed_sync(identity, b_id))
        assert status == b"HTTP/1.1 200 OK" and not conn.session_reused
        conn, status = await _connect(b.address, pinned, *_signed_sync(identity, b_id))
        assert status == b"HTTP/1.1 200 OK" and conn.session_reused
        assert b.distrust(identity.public_id)
        conn, status = await _connect(b.address, pinned, *_signed_sync(identity, b_id))
        assert conn.session_reused and status.startswith(b"HTTP/1.1 403")


async def test_a_ticket_from_before_a_certificate_switch_does_not_resume(tmp_path: Path):
    """``PinnedTls.present`` (a rotation's grace ending) gives the server a new context,
    so a session that proved the certificate presented before is not resumed past it:
    the client sees the one presented now, and its pin decides."""
    a_home, b_home = homes(tmp_path, "a", "b")
    identity, b_id = Identity.load(a_home), Identity.load(b_home).public_id
    other = Identity.create(tmp_path / "other")  # a key b could present (as a retired one)
    (b_home / "retired").mkdir(exist_ok=True)
    kept = b_home / "retired" / f"{other.public_id}.key"
    kept.write_bytes((tmp_path / "other" / "host.key").read_bytes())
    kept.chmod(0o600)
    ring = frozenset({b_id, other.public_id})
    pinned = PinnedTls.for_host(a_home, identity).client(b_id, lambda: ring)
    async with nodes(b_home) as (b,):
        b_tls = b.pinned_tls()
        assert b_tls is not None
        await _connect(b.address, pinned)
        assert (await _connect(b.address, pinned))[0].session_reused  # a ticket is held
        b_tls.present(other.public_id)
        with pytest.raises(ssl.SSLError, match=r"not .* the peer we meant to reach"):
            await _connect(b.address, pinned)
        b_tls.present(b_id)
        conn, _ = await _connect(b.address, pinned)
        assert not conn.session_reused and certificate_key(conn.getpeercert(True)) == b_id


async def test_a_first_contact_with_an_untrusted_key_sends_nothing(tmp_path: Path):
    a_home, m_home = homes(tmp_path, "a", "mallory", trusted=["a"])
    mallory = PinnedTls.for_host(m_home, Identity.load(m_home))
    async with Tap(ssl_context=mallory.server) as mitm:
        async with Node(a_home, peers=[mitm.address], profile=QUIET) as a:
            await a.remember(SECRET, category="learning")
            await a.sync_now()
            (row,) = a.peers()
            assert row.state == "unknown-key", row
            assert "not in our keyring" in (row.last_error or "")
        assert bytes(mitm.seen) == b""


async def test_a_key_distrusted_since_a_pooled_first_contact_gets_nothing(tmp_path: Path):
    a_home, b_home = homes(tmp_path, "a", "b")
    keyring = {Identity.load(b_home).public_id}
    identity = Identity.load(a_home)
    a = HttpTransport(identity, auth.Verifier(lambda: frozenset(keyring), _now), now_ms=_now,
                      timeout=5.0, tls=PinnedTls.for_host(a_home, identity))  # fmt: skip
    body = Message(MessageType.SYNC).encode()
    async with nodes(b_home) as (b,), a:
        server = b.transport
        assert isinstance(server, HttpTransport)
        await a.request(b.address, SYNC_PATH, body)  # a first contact: 401, then signed for b
        served = server.stats.served
        keyring.clear()  # b distrusted; the connection to it is still in a's pool
        with pytest.raises(PeerMisbehaved, match="not in our keyring"):
            await a.request(b.address, SYNC_PATH, body)
        assert server.stats.served == served  # not even an unaddressed request reached b


async def test_an_unknown_client_key_gets_403_before_the_body(tmp_path: Path):
    _, b_home, c_home = homes(tmp_path, "a", "b", "c", trusted=["a", "b"])
    with Replica.open(c_home) as r:  # c trusts b, b does not trust c
        r.trust(Identity.load(b_home).public_id, "b")
    async with nodes(b_home) as (b,):
        c = transport(c_home)
        async with c:
            with pytest.raises(PeerRefused, match="TLS client key is not in the peer") as e:
                await c.request(b.address, SYNC_PATH, Message(MessageType.SYNC).encode(),
                                expected_key=b.id)  # fmt: skip
            assert e.value.status == 403
        assert not b.recall(include_untrusted=True)


async def test_a_signature_by_another_trusted_key_than_the_certificate_is_403(tmp_path: Path):
    a_home, b_home, c_home = homes(tmp_path, "a", "b", "c")
    async with nodes(b_home) as (b,):
        # Signed by a, over c's certificate: both trusted by b, but not the same peer.
        swapped = HttpTransport(
            Identity.load(a_home), auth.Verifier(lambda: {b.id}, _now), now_ms=_now,
            timeout=5.0, tls=PinnedTls.for_host(c_home, Identity.load(c_home)),
        )  # fmt: skip
        async with swapped:
            with pytest.raises(PeerRefused, match="another key than the one of the TLS") as e:
                await swapped.request(b.address, SYNC_PATH, Message(MessageType.SYNC).encode(),
                                      expected_key=b.id)  # fmt: skip
            assert e.value.status == 403


async def test_plaintext_and_tls_peers_say_what_is_wrong(tmp_path: Path):
    a_home, b_home = homes(tmp_path, "a", "b")
    b_id = Identity.load(b_home).public_id
    body = Message(MessageType.SYNC).encode()
    async with nodes(b_home) as (b,):  # TLS
        plain = transport(a_home, tls=False)
        async with plain:
            with pytest.raises(PeerUnreachable, match="speaks TLS; this node is in "
                                                      "--insecure-plaintext mode"):  # fmt: skip
                await plain.request(b.address, SYNC_PATH, body, expected_key=b_id)
    async with nodes(b_home, tls=False) as (b,):  # plaintext
        tls = transport(a_home)
        async with tls:
            with pytest.raises(PeerUnreachable, match="speaks plaintext HTTP, not TLS"):
                await tls.request(b.address, SYNC_PATH, body, expected_key=b_id)
        async with nodes(a_home, peers=[b.address]) as (a,):
            await a.sync_now()
            (row,) = a.peers()
            assert "plaintext" in (row.last_error or "") and row.transport == "tls"


async def test_a_proxy_between_two_tls_nodes_sees_no_record_text(tmp_path: Path):
    a_home, b_home = homes(tmp_path, "a", "b")
    # advertise=[]: no announcements, so the proxy stays the only way between them.
    async with nodes(b_home, advertise=[]) as (b,), Tap(target=b.address) as proxy:
        async with nodes(a_home, peers=[proxy.address], advertise=[]) as (a,):
            await a.remember(SECRET, category="learning")
            await a.sync_now()  # a's first round may have run before the proxy's row was alive
            await until(lambda: b.recall("launch codes"), "the memory on b, through the proxy")
        seen = bytes(proxy.seen)
    assert len(seen) > 1000  # the exchange went through it
    for plain in (SECRET.encode(), b"launch codes", b"POST", b"Sm-Signature", a.id.encode()):
        assert plain not in seen


async def test_plaintext_end_to_end_when_both_opt_in(tmp_path: Path):
    a_home, b_home = homes(tmp_path, "a", "b")
    async with nodes(b_home, advertise=[], tls=False) as (b,), Tap(target=b.address) as proxy:
        async with nodes(a_home, peers=[proxy.address], advertise=[], tls=False) as (a,):
            await a.remember(SECRET, category="learning")
            await a.sync_now()
            await until(lambda: b.recall("launch codes"), "the memory on b")
            (row,) = a.peers()
            assert row.transport == "plaintext" and a.transport_mode == "plaintext"
        assert SECRET.encode() in bytes(proxy.seen)  # what --insecure-plaintext means
    assert not (tmp_path / "a" / CERT_FILE).exists()


def test_insecure_plaintext_is_an_explicit_setting(tmp_path: Path):
    default = Config("lab")
    assert not default.insecure_plaintext
    assert "# insecure_plaintext = true" in default.to_toml()  # offered, commented out
    config.create(tmp_path, Config("lab", insecure_plaintext=True))
    assert config.load(tmp_path).insecure_plaintext
    assert not ServeSettings.resolve(tmp_path).node.tls
    (tmp_path / config.CONFIG_FILE).write_text('insecure_plaintext = "yes"\n')
    with pytest.raises(ConfigError, match="'insecure_plaintext' must be true or false"):
        config.load(tmp_path)
    (tmp_path / config.CONFIG_FILE).write_text('name = "lab"\n')
    assert ServeSettings.resolve(tmp_path).node.tls  # TLS unless told
    assert not ServeSettings.resolve(tmp_path, insecure_plaintext=True).node.tls


def test_daemons_over_tls_and_mismatched_modes_in_status_and_peers(tmp_path: Path, daemons):
    a, b = make_cluster(tmp_path, 2)
    b.extra = ("--insecure-plaintext",)
    daemons.extend([a.start(), b.start()])
    assert a.get("/v1/status")["transport"] == "tls"
    assert b.get("/v1/status")["transport"] == "plaintext"

    def errors() -> tuple[str, str]:
        (row_a,) = a.peers_json()
        (row_b,) = b.peers_json()
        assert row_a["transport"] == "tls" and row_b["transport"] == "plaintext"
        return row_a["last_error"] or "", row_b["last_error"] or ""

    # a starts first: its first exchange may find b not listening yet ("Cannot connect"),
    # a true error that the next attempt replaces with the mismatch.
    wait_for(lambda: "speaks plaintext HTTP, not TLS" in errors()[0]
             and "the peer speaks TLS" in errors()[1], "both sides to fail, saying why")
    status = ok(b.home, "status")
    assert "plaintext (--insecure-plaintext: readable on the wire); peers: 1 plaintext" in status
    assert "TRANSPORT" in ok(a.home, "peers") and " tls" in ok(a.home, "peers")
    # b back in TLS mode: the two exchange, a memory crosses.
    assert b.stop() == 0
    b.extra = ()
    b.start()
    ok(a.home, "remember", "crosses over TLS", "--category", "learning")
    wait_for(lambda: "crosses over TLS" in ok(b.home, "recall", "crosses"), "the memory on b")
    assert all(p["state"] == "alive" for p in b.peers_json())


async def test_a_pinned_request_to_an_untrusted_key_sends_nothing(tmp_path: Path):
    """Whatever row names the key (an mDNS claim, a key distrusted meanwhile), a request
    pinned to a key outside the keyring is refused before a byte leaves: review finding,
    it used to be signed for that key and sent."""
    a_home, m_home = homes(tmp_path, "a", "mallory", trusted=["a"])
    mallory_tls = PinnedTls.for_host(m_home, Identity.load(m_home))
    mallory = Identity.load(m_home).public_id
    a = transport(a_home)
    body = Message(MessageType.SYNC).encode()
    async with Tap(ssl_context=mallory_tls.server) as mitm, a:
        with pytest.raises(PeerMisbehaved, match="not in our keyring") as caught:
            await a.request(mitm.address, SYNC_PATH, body, expected_key=mallory)
        assert isinstance(caught.value, PeerUntrusted)  # an "unknown key" row
        assert bytes(mitm.seen) == b""


def test_certificate_keys_are_cached_by_digest_not_by_bytes(tmp_path: Path):
    """Anybody can present certificates under the public anchor: the cache of their keys
    holds digests (32 bytes each), never the certificates themselves."""
    from gossip.transport import tls

    ident = Identity.generate()
    der = ssl.PEM_cert_to_DER_cert(tls.host_certificate(ident.public_id).decode())
    assert certificate_key(der) == ident.public_id
    assert certificate_key(der + b"") == ident.public_id  # from the cache
    assert certificate_key(b"\x30\x03garbage") is None
    assert all(isinstance(k, bytes) and len(k) == 32 for k in tls._KEYS)


def test_a_linked_or_dangling_certificate_file_is_replaced_by_a_plain_one(tmp_path: Path):
    home = tmp_path / "h"
    with Replica.open(home):
        pass
    ident = Identity.load(home)
    cert = home / CERT_FILE
    cert.symlink_to(tmp_path / "nowhere")  # dangling
    assert ensure_certificate(home, ident) == cert
    assert not cert.is_symlink() and stat.S_IMODE(cert.stat().st_mode) == 0o600
    outside = tmp_path / "outside.crt"
    outside.write_bytes(cert.read_bytes())
    outside.chmod(0o600)
    cert.unlink()
    cert.symlink_to(outside)  # the right bytes, but elsewhere
    ensure_certificate(home, ident)
    assert not cert.is_symlink() and cert.read_bytes() == outside.read_bytes()
