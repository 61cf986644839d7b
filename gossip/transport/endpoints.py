"""What every peer transport shares: the endpoints, the serving rules, the client contract.

Two transports implement it: ``http.py`` (aiohttp, the real one) and
``memnet.py`` (an in-process network shipped in the package, like memberlist's
MockTransport, for tests and the simulator). Both run the same ``serve`` and
``check_response`` below, so authentication, limits and error codes are identical;
only the bytes' journey differs.

Endpoints (docs/protocol.md): ``POST /v1/sync`` (a DIGEST, answered with SAME or
SYNC_REPLY; or a SYNC, answered with SYNC_REPLY), ``POST /v1/push`` (PUSH, answered
with PUSH_REPLY) and ``POST /v1/leave`` (LEAVE, a goodbye, answered with LEAVE_REPLY). Status codes:
200 ok; 400 malformed body or unsupported version; 401 unsigned, forged, expired or
replayed, or signed for another recipient; 403 key not in the keyring; 404/405 unknown
endpoint or method; 413 body over the limit. A peer never sees a 5xx for anything it sent.

Every request is signed for its recipient (``auth``: the recipient line), so that a peer
cannot replay a request it received at a third peer. A client that does not know the
key of the peer at an address yet signs its first attempt for nobody; the server answers
401 with its public id in ``Sm-Key`` (a hint, public and unauthenticated), and the client
retries once, signed for that key and expecting the answer to be signed by it
(``request_with_retry``, shared by both transports). Over TLS (``http.py`` with
``tls.py``) each delivery is also pinned to that recipient's key, and ``serve`` is given
the client certificate's key, which must be trusted and be the signer's.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Protocol

from crdt import Identity, IdentityError
from crdt.identity import public_key_bytes

from ..errors import PeerError as PeerError  # re-exported: the transport's errors
from ..errors import PeerMisbehaved, PeerRefused, PeerUntrusted
from ..errors import PeerUnreachable as PeerUnreachable
from ..protocol import LEAVE_PATH, PUSH_PATH, SYNC_PATH, RemoteProtocolError
from . import auth

# Redeems an invitation (gossip/invites.py): the one endpoint a key outside the keyring
# may call; its request is still signed (for us, within the window, never replayed),
# and the node answers 400 unless the body proves an invitation's secret.
JOIN_PATH = "/v1/join"
PATHS = (SYNC_PATH, PUSH_PATH, LEAVE_PATH, JOIN_PATH)
CONTENT_TYPE = "application/vnd.sm-gossip"
MAX_RESPONSE_BYTES = 256 * 1024 * 1024  # a whole catch-up answer; beyond it the peer misbehaves


# The server side hands each authenticated request body to the node:
#   handler(path, body, peer_key) -> response body
# It may raise RemoteProtocolError (answered 400); anything else is the node's bug and is
# answered 400 too, with a generic message, after being logged by the caller.
Handler = Callable[[str, bytes, str], Awaitable[bytes]]


@dataclass(frozen=True)
class Reply:
    status: int
    body: bytes
    headers: dict[str, str] = field(default_factory=dict)


def error_reply(status: int, message: str, *, key_hint: str | None = None) -> Reply:
    """An unsigned JSON error answer; ``key_hint`` (the server's public id) goes in
    ``Sm-Key``, which 401 answers carry so that a client can sign for the right peer."""
    body = json.dumps({"error": message, "status": status}).encode()
    headers = {"Content-Type": "application/json"}
    if key_hint is not None:
        headers[auth.KEY_HEADER] = key_hint
    return Reply(status, body, headers)


@dataclass
class ServerLimits:
    max_body_bytes: int = 16 * 1024 * 1024  # a request body over this gets 413
    # Connections (``gossip/transport/listener.py``; the in-memory network holds none). A trusted
    # peer pools up to 4 per address it reaches us at; outsiders get only the
    # unauthenticated places.
    # All open at once; also kept under the file descriptor limit less FD_RESERVE.
    max_connections: int = 512
    # In their TLS handshake, or proven to be a key outside the keyring: at most half of
    # the connections, so outsiders never crowd out the trusted peers. ~0.5 MB each
    # (asyncio's TLS buffers).
    max_unauthenticated: int = 128
    # From one address: a flood from one host takes this many places, not all of them.
    max_unauthenticated_per_address: int = 16
    # A trusted connection's first request headers, after the handshake.
    header_timeout: float = 10.0
    # Idle between requests (aiohttp's keep-alive timeout): longer than a client keeps
    # an idle pooled connection (0.75 of this: ``HttpTransport``), so it never sends on
    # one we just closed.
    idle_timeout: float = 60.0
    # The whole life of a connection whose key is outside the keyring: one join request.
    stranger_timeout: float = 5.0


async def serve(
    *,
    identity: Identity,
    verifier: auth.Verifier,
    handler: Handler,
    method: str,
    path: str,
    headers: object,
    content_length: int | None,
    read_body: Callable[[int], Awaitable[bytes | None]],
    limits: ServerLimits,
    now_ms: Callable[[], int],
    source: str | None = None,
    tls_key: str | None = None,
) -> Reply:
    """Serve one request, whatever carried it. ``read_body(limit)`` returns the body, or
    None when it exceeds ``limit``. Nothing is read before the sender is identified.

    ``source``: the sender's address, if the transport knows it (join requests from one
    address are limited, ``auth.JOIN_NONCES_PER_SOURCE``).
    ``tls_key``: the key the client's TLS certificate proved (None without TLS). It must
    be in our keyring (except on ``JOIN_PATH``, which strangers call) and be the key that
    signed the request (403 otherwise): TLS identity and request signature name the
    same peer."""
    if path not in PATHS:
        return error_reply(404, f"no endpoint {path}")
    if method != "POST":
        return error_reply(405, f"{path} takes POST")
    me = identity.public_id

    def refused(e: auth.AuthError) -> Reply:
        return error_reply(e.status, str(e), key_hint=me if e.status == 401 else None)

    if tls_key is not None and path != JOIN_PATH and tls_key not in verifier.keyring():
        return refused(auth.Forbidden("this TLS client key is not in the peer's keyring "
                                      "(gossip trust add)"))  # fmt: skip
    try:
        if path == JOIN_PATH:
            signed = verifier.check_stranger_headers(headers)
        else:
            signed = verifier.check_headers(headers)
    except auth.AuthError as e:
        return refused(e)
    if (  # before any signature check
        path == JOIN_PATH and source is not None
        and not verifier.join_sources.check_and_add(source, signed.nonce, now_ms())
    ):  # fmt: skip
        return refused(auth.Unauthorized("too many join requests from this address"))
    if path == JOIN_PATH:  # small JSON: an unknown key never makes us read much
        limits = ServerLimits(max_body_bytes=min(limits.max_body_bytes, 4096))
    if tls_key is not None and not auth.same_peer(signed.key, tls_key, verifier.successors()):
        return refused(auth.Forbidden("the request is signed by another key than the one "
                                      "of the TLS client certificate"))  # fmt: skip
    if content_length is not None and content_length > limits.max_body_bytes:
        return error_reply(413, f"body over {limits.max_body_bytes} bytes")
    body = await read_body(limits.max_body_bytes)
    if body is None:
        return error_reply(413, f"body over {limits.max_body_bytes} bytes")
    # A request addressed to a key this host retired (rotation grace, auth.Verifier) is
    # served too, and answered by that key.
    responder = identity
    # A join request's nonce never touches the cache of the trusted peers' requests.
    nonces = verifier.join_nonces if path == JOIN_PATH else verifier.nonces
    for candidate in (identity, *verifier.retired.values()):
        try:
            verifier.check_body(signed, role="request", method=method, path=path, body=body,
                                recipient=candidate.public_id, nonces=nonces)  # fmt: skip
        except auth.BadSignature as e:
            if candidate is identity:
                first = e
            continue
        except auth.AuthError as e:
            return refused(e)
        responder = candidate
        break
    else:
        return refused(first)
    try:
        out = await handler(path, body, signed.key)
    except RemoteProtocolError as e:
        return error_reply(400, str(e))
    headers_out = auth.sign(
        responder, role="response", method=method, path=path, body=out, now_ms=now_ms(),
        request_nonce=signed.nonce,
    )  # fmt: skip
    return Reply(200, out, {"Content-Type": CONTENT_TYPE, **headers_out})


def sign_request(
    identity: Identity, path: str, body: bytes, now_ms: int, recipient: str
) -> dict[str, str]:
    """The headers of a request for the peer whose public id is ``recipient`` ("" when
    unknown: the peer then refuses it with 401 and a key hint)."""
    headers = auth.sign(identity, role="request", method="POST", path=path, body=body,
                        now_ms=now_ms, recipient=recipient)  # fmt: skip
    return {"Content-Type": CONTENT_TYPE, **headers}


def _key_hint(status: int, headers: object) -> str | None:
    """The public id a 401 answer names in ``Sm-Key``, if it is a well-formed one."""
    if status != 401:
        return None
    hint = headers.get(auth.KEY_HEADER) if hasattr(headers, "get") else None
    if not isinstance(hint, str) or len(hint) != 43:
        return None
    try:
        public_key_bytes(hint)
    except IdentityError:
        return None
    return hint


def check_response(
    verifier: auth.Verifier,
    *,
    path: str,
    status: int,
    headers: object,
    body: bytes,
    request_headers: dict[str, str],
    expected_key: str | None,
) -> tuple[bytes, str]:
    """The client side: raise PeerRefused for an error status, PeerMisbehaved for an
    unsigned or forged answer or one from another key than expected; else (body, key)."""
    if status != 200:
        try:
            message = str(json.loads(body).get("error", ""))[:300]
        except (ValueError, AttributeError):
            message = body[:300].decode("utf-8", "replace")
        raise PeerRefused(status, message, _key_hint(status, headers))
    request_nonce = auth.parse(request_headers).nonce
    try:
        signed = verifier.check_headers(headers)
        if expected_key is not None and not auth.same(signed.key, expected_key):
            raise PeerMisbehaved(f"answered by {signed.key[:12]}…, not {expected_key[:12]}…")
        verifier.check_body(signed, role="response", method="POST", path=path, body=body,
                            request_nonce=request_nonce)  # fmt: skip
    except auth.Forbidden as e:  # signed by a key we do not trust
        raise PeerUntrusted(f"unauthenticated answer: {e}") from None
    except auth.AuthError as e:
        raise PeerMisbehaved(f"unauthenticated answer: {e}") from None
    return body, signed.key


# A transport's one delivery: send these signed headers and the body (the transport
# holds it) to the peer whose public id is the second argument ("" when not known yet:
# a TLS transport pins the connection to it), return (status, answer headers, answer
# body); raise only PeerError.
SendOnce = Callable[[Mapping[str, str], str], Awaitable[tuple[int, object, bytes]]]


async def request_with_retry(
    send_once: SendOnce,
    *,
    identity: Identity,
    verifier: auth.Verifier,
    now_ms: Callable[[], int],
    path: str,
    body: bytes,
    expected_key: str | None,
) -> tuple[bytes, str]:
    """The client side of ``Transport.request``, shared by every transport.

    With ``expected_key`` the request is signed for that key, and the answer must be
    signed by it: one delivery. Without, the first attempt is signed for nobody (the
    recipient line is empty), which every peer refuses with 401 naming its own key in
    ``Sm-Key``; if that key is in our keyring, the request is signed again for it and
    sent once more, expecting that key to sign the answer. A hint naming a key we do
    not trust ends there (PeerUntrusted, as an answer signed by an untrusted key
    would): no request is ever signed for a key outside our keyring on a hint's word."""
    def signer(recipient: str) -> Identity:
        chosen = verifier.request_signer(recipient) if verifier.request_signer else None
        return chosen or identity

    if expected_key is not None and expected_key not in verifier.keyring():
        # Whatever row or address led here (an mDNS claim, a key distrusted meanwhile):
        # no request is signed for, or sent to, a key outside our keyring.
        raise PeerUntrusted(f"the peer's key {expected_key[:12]}… is not in our keyring")
    recipient = expected_key if expected_key is not None else ""
    headers = sign_request(signer(recipient), path, body, now_ms(), recipient)
    status, answer_headers, answer = await send_once(headers, recipient)
    hint = _key_hint(status, answer_headers) if expected_key is None else None
    if hint is None:
        return check_response(verifier, path=path, status=status, headers=answer_headers,
                              body=answer, request_headers=headers,
                              expected_key=expected_key)  # fmt: skip
    if hint not in verifier.keyring():
        raise PeerUntrusted(f"the peer refused an unaddressed request (401) and named key "
                            f"{hint[:12]}…, which is not in our keyring")  # fmt: skip
    headers = sign_request(signer(hint), path, body, now_ms(), hint)
    status, answer_headers, answer = await send_once(headers, hint)
    return check_response(verifier, path=path, status=status, headers=answer_headers,
                          body=answer, request_headers=headers, expected_key=hint)  # fmt: skip


class Endpoint:
    """What every transport holds to run the shared rules (who it is, whom it believes,
    its clock and limits), and its two calls of them: serving one request, making one.
    ``HttpTransport`` and ``MemoryTransport`` build on it."""

    def __init__(self, identity: Identity, verifier: auth.Verifier, *, now_ms: Callable[[], int],
                 limits: ServerLimits | None = None,
                 max_response_bytes: int = MAX_RESPONSE_BYTES) -> None:  # fmt: skip
        self.identity = identity
        self.verifier = verifier
        self.now_ms = now_ms
        self.limits = limits or ServerLimits()
        self.max_response_bytes = max_response_bytes

    async def serve_request(self, handler: Handler, method: str, path: str, headers: object,
                            content_length: int | None,
                            read_body: Callable[[int], Awaitable[bytes | None]], *,
                            source: str | None = None,
                            tls_key: str | None = None) -> Reply:  # fmt: skip
        return await serve(identity=self.identity, verifier=self.verifier, handler=handler,
                           method=method, path=path, headers=headers,
                           content_length=content_length, read_body=read_body,
                           limits=self.limits, now_ms=self.now_ms, source=source,
                           tls_key=tls_key)  # fmt: skip

    async def request_signed(self, send_once: SendOnce, path: str, body: bytes,
                             expected_key: str | None) -> tuple[bytes, str]:  # fmt: skip
        return await request_with_retry(send_once, identity=self.identity,
                                        verifier=self.verifier, now_ms=self.now_ms, path=path,
                                        body=body, expected_key=expected_key)  # fmt: skip


class Transport(Protocol):
    """A way to reach peers and be reached. ``request`` returns the verified response
    body and the responder's key; it raises only PeerError subclasses. With
    ``expected_key`` it makes one delivery; without, it may make two (the first one
    learns the peer's key from a 401: ``request_with_retry``). ``identity`` signs
    requests and answers; the node replaces it when it rotates its key."""

    identity: Identity

    async def start(self, listen: str, handler: Handler) -> str:
        """Start serving; return the address actually bound ("host:port")."""
        ...

    async def request(
        self, address: str, path: str, body: bytes, *, expected_key: str | None = None
    ) -> tuple[bytes, str]: ...

    async def close(self) -> None: ...


class TransportFactory(Protocol):
    """How a node makes its transport; ``HttpTransport`` and
    ``MemoryNetwork().transport`` both fit."""

    def __call__(
        self,
        identity: Identity,
        verifier: auth.Verifier,
        *,
        now_ms: Callable[[], int],
        limits: ServerLimits | None = ...,
        timeout: float = ...,
    ) -> Transport: ...
