"""The peer transport over HTTP/1.1 (aiohttp): a server for the two endpoints and a client.

It owns the sockets and nothing else: every request is served by ``transport.serve``, and
every request made and its answer checked by ``transport.request_with_retry``, exactly as
the in-memory network does, so authentication, body limits and status codes are the same
on both.

Rules this module keeps:

- A request body is streamed and never buffered past ``limits.max_body_bytes + 1`` bytes;
  a ``Content-Length`` over the limit is answered 413 before anything is read.
- A peer never sees a 5xx: anything unexpected while serving is logged here and
  answered 400 with a generic message.
- ``request`` raises only ``PeerError`` subclasses: no answer at all (refused, reset,
  timed out, unresolvable, a bad address) is ``PeerUnreachable``; an error status is
  ``PeerRefused``; an unsigned, forged, oversized or other-key answer is ``PeerMisbehaved``
  (``PeerUntrusted`` when the key it proves or names is outside our keyring).
- ``close`` leaves nothing behind: the client session and its pooled connections, the
  listening socket, open server connections.

With ``tls`` (``tls.PinnedTls``; what a node uses unless ``--insecure-plaintext``) it
serves and dials TLS 1.3, every connection pinned to the peer key it was made for.

Addresses are ``"host:port"`` strings (``"[::1]:7471"`` for IPv6); names are resolved when
a connection is made, never cached, so a peer that moves is found again.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import socket
import ssl
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import aiohttp
from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError
from aiohttp.web_protocol import RequestPayloadError

from crdt import Identity

from ..errors import ListenerBusy
from ..logfilter import ServerLog
from . import auth
from .endpoints import (
    MAX_RESPONSE_BYTES,
    Endpoint,
    Handler,
    PeerError,
    PeerMisbehaved,
    PeerUnreachable,
    PeerUntrusted,
    ServerLimits,
    error_reply,
)
from .listener import Listener, PeerServer
from .tls import PLAINTEXT, TLS, PeerKeyMismatch, PinnedTls, TlsSetupError, peer_key

log = logging.getLogger(__name__)

_CHUNK = 64 * 1024
_DRAIN_BYTES = 64 * 1024  # an unread rest of a body up to this is read and dropped
_DRAIN_SECONDS = 1.0


@dataclass
class WireStats:
    """Bytes on the wire as HTTP/1.1 frames them (request/status line, headers, body)."""

    requests: int = 0  # requests this side sent
    sent: int = 0  # bytes of those requests
    received: int = 0  # bytes of their answers
    served: int = 0  # requests this side answered
    served_in: int = 0  # bytes of the requests it answered
    served_out: int = 0  # bytes of its answers


def split_address(address: str) -> tuple[str, int]:
    """``"host:port"`` or ``"[v6]:port"`` → (host, port); ValueError if it is neither."""
    host, sep, port_text = address.rpartition(":")
    if not sep or not host or not port_text.isdigit() or int(port_text) > 65535:
        raise ValueError(f"not a host:port address: {address!r}")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    elif ":" in host:
        raise ValueError(f"an IPv6 address needs brackets, like [::1]:7471: {address!r}")
    if not host:
        raise ValueError(f"not a host:port address: {address!r}")
    return host, int(port_text)


def join_address(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def frame_size(first_line: str, headers: object, body_length: int) -> int:
    """Size of an HTTP/1.1 message: first line, ``Name: value`` lines, blank line, body."""
    items = headers.items() if hasattr(headers, "items") else headers  # type: ignore[union-attr]
    size = len(first_line) + 2 + 2 + body_length
    for name, value in items:  # type: ignore[union-attr]
        size += len(name) + 2 + len(value) + 2
    return size


class HttpTransport(Endpoint):
    """The aiohttp ``Transport``. One client session (keep-alive, bounded connection
    pool) and, once ``start`` is called, one listening socket."""

    def __init__(
        self,
        identity: Identity,
        verifier: auth.Verifier,
        *,
        now_ms: Callable[[], int],
        limits: ServerLimits | None = None,
        timeout: float = 10.0,
        connect_timeout: float | None = None,
        max_response_bytes: int = MAX_RESPONSE_BYTES,
        connections: int = 64,
        tls: PinnedTls | None = None,
    ) -> None:
        """``tls``: serve and request over TLS 1.3 pinned to peer keys (``tls.py``);
        None: plaintext HTTP, which a node uses only when told to (``--insecure-plaintext``)."""
        super().__init__(identity, verifier, now_ms=now_ms, limits=limits,
                         max_response_bytes=max_response_bytes)  # fmt: skip
        # A whole request (connect, send, answer) must finish within ``timeout`` seconds;
        # a peer that does not even accept a connection fails sooner.
        self.timeout = aiohttp.ClientTimeout(
            total=timeout, connect=connect_timeout if connect_timeout is not None else timeout
        )
        self.connections = connections
        self.tls = tls
        self.stats = WireStats()
        self.address: str | None = None
        self._handler: Handler | None = None
        self._runner: web.ServerRunner | None = None
        self.listener: Listener | None = None
        self._session: aiohttp.ClientSession | None = None
        self._closed = False

    # -- server ---------------------------------------------------------------------

    async def start(self, listen: str, handler: Handler) -> str:
        """Listen on ``listen`` ("host:port", port 0 for any); return the bound address."""
        if self._runner is not None or self._closed:
            raise RuntimeError("this transport was already started or closed")
        host, port = split_address(listen)
        sock = _bind(host, port)
        self._handler = handler
        # Unread bodies are drained by ``_handle`` itself (bounded); aiohttp's own lingering
        # outlives a lost connection (its task stays until the timer ends).
        # ``keepalive_timeout``: how long a connection may idle between requests (and
        # send the headers of the next one); the listener bounds the rest (its docstring).
        server = PeerServer(
            self._handle, access_log=None, handler_cancellation=False, lingering_time=0,
            keepalive_timeout=self.limits.idle_timeout,
            logger=ServerLog(logging.getLogger("gossip.http.server")),
        )
        runner = web.ServerRunner(server, handle_signals=False, shutdown_timeout=2.0)
        try:
            await runner.setup()
            keyring = self.verifier.keyring
            listener = Listener(
                server, sock, ssl_context=self._server_context if self.tls is not None else None,
                handshake_timeout=self.timeout.total or 10.0, limits=self.limits,
                trusted=lambda key: key in keyring(),
            )  # fmt: skip
            listener.start()
        except BaseException:
            await runner.cleanup()
            sock.close()
            raise
        self.listener = listener
        self._runner = runner
        bound_host, bound_port = sock.getsockname()[:2]
        self.address = join_address(bound_host, bound_port)
        return self.address

    async def _handle(self, request: web.BaseRequest) -> web.StreamResponse:
        assert self._handler is not None
        if self.listener is not None:
            self.listener.request_started(request.protocol)
        tls_key: str | None = None
        try:
            if self.tls is not None:
                transport = request.transport
                ssl_object = transport.get_extra_info("ssl_object") if transport else None
                # A certificate without an Ed25519 key (or none at all) is in no keyring:
                # answered 403.
                tls_key = peer_key(ssl_object) or ""
            reply = await self.serve_request(
                self._handler, request.method, request.path, request.headers,
                request.content_length, lambda limit: self._read_body(request, limit),
                source=request.remote, tls_key=tls_key,
            )  # fmt: skip
        except _BodyTooSlow:
            reply = error_reply(408, "the request body did not arrive in time")
        except _BodyCutOff as e:
            log.debug("a request body from %s was cut off: %s", request.remote, e)
            reply = error_reply(400, "the request body was cut off or does not decode")
        except Exception:
            log.exception("serving %s %s from %s failed", request.method, request.path,
                          request.remote)  # fmt: skip
            reply = error_reply(400, "the request could not be served")
        response = web.Response(status=reply.status, body=reply.body, headers=reply.headers)
        stranger = tls_key is not None and tls_key not in self.verifier.keyring()
        if stranger or reply.status == 408 or not await self._drained(request):
            response.force_close()  # a stranger sends one request (listener.py)
        self.stats.served += 1
        self.stats.served_in += frame_size(
            f"{request.method} {request.raw_path} HTTP/1.1", request.raw_headers,
            request.content_length or 0,
        )  # fmt: skip
        self.stats.served_out += frame_size(f"HTTP/1.1 {reply.status}", reply.headers,
                                            len(reply.body))  # fmt: skip
        return response

    async def _read_body(self, request: web.BaseRequest, limit: int) -> bytes | None:
        """The body, or None once it passes ``limit`` (never holding more than limit + 1)."""
        try:
            async with asyncio.timeout(self.timeout.total):
                return await _read_at_most(request.content, limit)
        except TimeoutError:
            raise _BodyTooSlow() from None
        except (aiohttp.ClientError, OSError, HttpProcessingError, RequestPayloadError) as e:
            # RequestPayloadError: also a body that does not inflate as its declared
            # Content-Encoding (aiohttp inflates gzip, deflate and br as it reads).
            raise _BodyCutOff(str(e)) from None

    async def _drained(self, request: web.BaseRequest) -> bool:
        """After an early answer (404, 405, 401, 403, 413): discard a small unread rest of
        the body so that the connection can be kept, and so that closing it does not
        reset it under our answer. False if the connection must close."""
        content = request.content
        if content.at_eof():
            return True
        declared = request.content_length
        if declared is not None and declared > _DRAIN_BYTES:
            return False
        budget = _DRAIN_BYTES
        try:
            async with asyncio.timeout(_DRAIN_SECONDS):
                while budget > 0 and not content.at_eof():
                    budget -= len(await content.read(min(_CHUNK, budget)))
        except (TimeoutError, aiohttp.ClientError, OSError, ValueError, HttpProcessingError,
                RequestPayloadError):  # fmt: skip
            return False
        return content.at_eof()

    def _server_context(self) -> ssl.SSLContext:
        """The TLS context a new connection is accepted with: ``PinnedTls.present``
        replaces it at a key rotation."""
        assert self.tls is not None
        return self.tls.server

    # -- client ---------------------------------------------------------------------

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None:
            connector = aiohttp.TCPConnector(
                limit=self.connections,
                limit_per_host=4,  # an exchange is sequential; a few for eager pushes
                # An idle connection kept this long saves the next exchange with that peer
                # its handshake (a peer is picked every few intervals: 5 s on a LAN, 15 s
                # on a tailnet); closed well before the server's idle timeout, so a
                # request never goes out on a connection the server is closing.
                keepalive_timeout=self.limits.idle_timeout * 0.75,
                use_dns_cache=False,  # resolve at each new connection: peers move
            )
            self._session = aiohttp.ClientSession(
                connector=connector,
                timeout=self.timeout,
                auto_decompress=False,
                skip_auto_headers=("User-Agent", "Accept", "Accept-Encoding"),
            )
        return self._session

    async def request(
        self, address: str, path: str, body: bytes, *, expected_key: str | None = None
    ) -> tuple[bytes, str]:
        if self._closed:
            raise PeerUnreachable("this transport is closed")
        try:
            host, port = split_address(address)
        except ValueError as e:
            raise PeerUnreachable(str(e)) from None
        scheme = "https" if self.tls is not None else "http"
        url = f"{scheme}://{join_address(host, port)}{path}"

        async def send_once(
            headers: Mapping[str, str], recipient: str
        ) -> tuple[int, object, bytes]:
            if self._closed:  # between a first attempt and its retry
                raise PeerUnreachable("this transport is closed")
            # TLS: the handshake fails unless the peer proves ``recipient``'s key (or, for
            # "", a key in our keyring): nothing is sent to anyone else. Our certificate
            # is the signing key's (a retired key during a rotation's grace).
            pinned: ssl.SSLContext | bool = False
            if self.tls is not None:
                try:
                    pinned = self.tls.client(recipient, self.verifier.keyring,
                                             headers.get(auth.KEY_HEADER))  # fmt: skip
                except TlsSetupError as e:
                    raise PeerUnreachable(f"{address}: TLS: {e}") from None
            failed: Exception | None = None
            try:
                # No redirects: a signed request goes to the address asked for, or nowhere.
                post = self._client().post(url, data=body, headers=dict(headers),
                                           allow_redirects=False, ssl=pinned)  # fmt: skip
                async with post as resp:
                    status, resp_headers = resp.status, resp.headers
                    sent_headers = resp.request_info.headers
                    answer = await self._read_answer(resp)
                    raw_headers = resp.raw_headers
            except (PeerMisbehaved, PeerUnreachable):
                raise
            except TimeoutError:
                raise PeerUnreachable(
                    f"{address}: no answer within {self.timeout.total} s"
                ) from None
            except (aiohttp.ClientError, OSError, ValueError) as e:
                failed = e
            if failed is not None:  # raised here: its context is set by _connect_error
                raise await self._connect_error(address, failed)
            self.stats.requests += 1
            self.stats.sent += frame_size(f"POST {path} HTTP/1.1", sent_headers, len(body))
            self.stats.received += frame_size(f"HTTP/1.1 {status}", raw_headers, len(answer))
            return status, resp_headers, answer

        return await self.request_signed(send_once, path, body, expected_key)

    async def _connect_error(self, address: str, e: Exception) -> PeerError:
        """The ``PeerError`` for a failed request, naming a transport mismatch plainly."""
        cause = e.os_error if isinstance(e, aiohttp.ClientConnectorError) else None
        if isinstance(cause, PeerKeyMismatch):
            # A key we do not trust is told apart, as an answer signed by one would be.
            kind = PeerUntrusted if cause.untrusted else PeerMisbehaved
            return kind(f"{address}: TLS: {cause}")
        if isinstance(cause, ssl.SSLError) and cause.reason == "WRONG_VERSION_NUMBER":
            return PeerUnreachable(
                f"{address}: the peer speaks plaintext HTTP, not TLS (it runs with "
                "--insecure-plaintext?); this node uses TLS: both sides must agree"
            )
        if (
            self.tls is None
            and isinstance(e, aiohttp.ServerDisconnectedError)
            and await _speaks_tls(address, self.timeout.connect or 5.0)
        ):
            return PeerUnreachable(
                f"{address}: the peer speaks TLS; this node is in --insecure-plaintext "
                "mode: both sides must agree"
            )
        return PeerUnreachable(f"{address}: {type(e).__name__}: {e}")

    async def _read_answer(self, resp: aiohttp.ClientResponse) -> bytes:
        limit = self.max_response_bytes
        if resp.content_length is not None and resp.content_length > limit:
            raise PeerMisbehaved(f"an answer of {resp.content_length} bytes is over {limit}")
        body = await _read_at_most(resp.content, limit)
        if body is None:
            raise PeerMisbehaved(f"an answer over {limit} bytes")
        return body

    @property
    def mode(self) -> str:
        """What carries requests to every peer: "tls" or "plaintext" (``gossip status``)."""
        return TLS if self.tls is not None else PLAINTEXT

    # -- lifecycle -------------------------------------------------------------------

    async def close(self) -> None:
        """Close the client session, the listening socket and every server connection."""
        self._closed = True
        session, self._session = self._session, None
        runner, self._runner = self._runner, None
        listener = self.listener
        if listener is not None:
            listener.close()
        if session is not None:
            await session.close()
        if runner is not None:
            await runner.cleanup()
        if listener is not None:
            await listener.wait_closed()

    async def __aenter__(self) -> HttpTransport:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


class _BodyCutOff(Exception):
    """The peer went away, or broke the framing, in the middle of its body."""


class _BodyTooSlow(Exception):
    """The body did not arrive within the transport's timeout."""


async def _speaks_tls(address: str, timeout: float) -> bool:
    """Whether a TLS handshake succeeds at ``address`` (any certificate, none of ours):
    to tell a plaintext client why a TLS peer hung up on it."""
    host, port = split_address(address)
    probe = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    probe.check_hostname = False
    probe.verify_mode = ssl.CERT_NONE
    try:
        async with asyncio.timeout(timeout):
            _, writer = await asyncio.open_connection(host, port, ssl=probe)
    except (OSError, TimeoutError, ssl.SSLError):
        return False
    writer.transport.abort()  # nothing to say to it: no TLS shutdown to wait for
    return True


def _bind(host: str, port: int) -> socket.socket:
    """One listening socket for ``host`` (a name binds its first address), so port 0
    gives one port, not one per address family."""
    try:
        infos = socket.getaddrinfo(host or None, port, type=socket.SOCK_STREAM,
                                   flags=socket.AI_PASSIVE)  # fmt: skip
    except socket.gaierror as e:
        raise OSError(f"cannot listen on {host}:{port}: {e}") from None
    family, kind, proto, _, sockaddr = infos[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0 if host == "::" else 1)
        sock.bind(sockaddr)
    except OSError as e:
        sock.close()
        if e.errno != errno.EADDRINUSE:
            raise
        raise ListenerBusy(
            f"the peer address {join_address(host, port)} is in use (another `gossip serve`?); "
            "choose another with `gossip serve --listen HOST:PORT` or `listen` in config.toml"
        ) from None
    except BaseException:
        sock.close()
        raise
    return sock


__all__ = ["HttpTransport", "WireStats", "join_address", "split_address"]


async def _read_at_most(stream: aiohttp.StreamReader, limit: int) -> bytes | None:
    """The whole stream, or None once it passes ``limit`` (never holding more than limit + 1)."""
    body = bytearray()
    while True:
        chunk = await stream.read(min(_CHUNK, limit + 1 - len(body)))
        if not chunk:
            return bytes(body)
        body += chunk
        if len(body) > limit:
            return None
