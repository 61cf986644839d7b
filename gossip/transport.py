"""What every peer transport shares: the endpoints, the serving rules, the client contract.

Two transports implement it: ``gossip/http.py`` (aiohttp, the real one) and
``gossip/memnet.py`` (an in-process network shipped in the package, like memberlist's
MockTransport, for tests and the simulator). Both run the same ``serve`` and
``check_response`` below, so authentication, limits and error codes are identical;
only the bytes' journey differs.

Endpoints (docs/protocol.md): ``POST /v1/sync`` (a SYNC message, answered with
SYNC_REPLY) and ``POST /v1/push`` (PUSH, answered with PUSH_REPLY). Status codes:
200 ok; 400 malformed body or unsupported version; 401 unsigned, forged, expired or
replayed; 403 key not in the keyring; 404/405 unknown endpoint or method; 413 body over
the limit. A peer never sees a 5xx for anything it sent.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Protocol

from crdt import GossipError, Identity

from . import auth
from .protocol import RemoteProtocolError

SYNC_PATH = "/v1/sync"
PUSH_PATH = "/v1/push"
PATHS = (SYNC_PATH, PUSH_PATH)
CONTENT_TYPE = "application/vnd.sm-gossip"


class PeerError(GossipError):
    """An exchange with a peer failed; the peer table backs it off."""


class PeerUnreachable(PeerError):
    """No answer: refused, reset, timed out, unresolvable."""


class PeerRefused(PeerError):
    """The peer answered with an error status (its message is in ``str(e)``)."""

    def __init__(self, status: int, message: str) -> None:
        self.status = status
        super().__init__(f"peer answered {status}: {message}")


class PeerMisbehaved(PeerError):
    """The peer's answer was unsigned, forged, from the wrong key, or malformed."""


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


def error_reply(status: int, message: str) -> Reply:
    body = json.dumps({"error": message, "status": status}).encode()
    return Reply(status, body, {"Content-Type": "application/json"})


@dataclass
class ServerLimits:
    max_body_bytes: int = 16 * 1024 * 1024  # a request body over this gets 413


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
) -> Reply:
    """Serve one request, whatever carried it. ``read_body(limit)`` returns the body, or
    None when it exceeds ``limit``. Nothing is read before the sender is identified."""
    if path not in PATHS:
        return error_reply(404, f"no endpoint {path}")
    if method != "POST":
        return error_reply(405, f"{path} takes POST")
    try:
        signed = verifier.check_headers(headers)
    except auth.AuthError as e:
        return error_reply(e.status, str(e))
    if content_length is not None and content_length > limits.max_body_bytes:
        return error_reply(413, f"body over {limits.max_body_bytes} bytes")
    body = await read_body(limits.max_body_bytes)
    if body is None:
        return error_reply(413, f"body over {limits.max_body_bytes} bytes")
    try:
        verifier.check_body(signed, role="request", method=method, path=path, body=body)
    except auth.AuthError as e:
        return error_reply(e.status, str(e))
    try:
        out = await handler(path, body, signed.key)
    except RemoteProtocolError as e:
        return error_reply(400, str(e))
    headers_out = auth.sign(
        identity, role="response", method=method, path=path, body=out, now_ms=now_ms(),
        request_nonce=signed.nonce,
    )  # fmt: skip
    return Reply(200, out, {"Content-Type": CONTENT_TYPE, **headers_out})


def sign_request(identity: Identity, path: str, body: bytes, now_ms: int) -> dict[str, str]:
    headers = auth.sign(identity, role="request", method="POST", path=path, body=body,
                        now_ms=now_ms)  # fmt: skip
    return {"Content-Type": CONTENT_TYPE, **headers}


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
        raise PeerRefused(status, message)
    request_nonce = auth.parse(request_headers).nonce
    try:
        signed = verifier.check_headers(headers)
        if expected_key is not None and not auth.same(signed.key, expected_key):
            raise PeerMisbehaved(f"answered by {signed.key[:12]}…, not {expected_key[:12]}…")
        verifier.check_body(signed, role="response", method="POST", path=path, body=body,
                            request_nonce=request_nonce)  # fmt: skip
    except auth.AuthError as e:
        raise PeerMisbehaved(f"unauthenticated answer: {e}") from None
    return body, signed.key


class Transport(Protocol):
    """A way to reach peers and be reached. ``request`` returns the verified response
    body and the responder's key; it raises only PeerError subclasses."""

    async def start(self, listen: str, handler: Handler) -> str:
        """Start serving; return the address actually bound ("host:port")."""
        ...

    async def request(
        self, address: str, path: str, body: bytes, *, expected_key: str | None = None
    ) -> tuple[bytes, str]: ...

    async def close(self) -> None: ...
