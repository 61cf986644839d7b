"""Signed requests and responses between peers (invariant 9), sans I/O.

Every request and every response carries two headers::

    Sm-Key:        <sender's public id>
    Sm-Signature:  v=1;t=<created, ms since epoch>;n=<nonce, base64url of 16 random bytes>;s=<sig>

``sig`` is the sender's Ed25519 signature of the **signature base** (the parameters of RFC
9421 HTTP message signatures, in a compact form of our own)::

    sm-gossip-signature-v1
    <role: "request" or "response">
    <METHOD>
    <path>
    <hex SHA-256 of the body>
    <created>
    <nonce>
    <recipient>              (requests only: the public id of the peer it is addressed to)
    <request nonce>          (responses only: binds a response to its request)

lines joined by "\\n". The receiver checks, in this order, before reading any body: the
key is in its keyring (else ``Forbidden``, 403); the header is well formed and the
creation time within the window (else ``Unauthorized``, 401); then, with the body, the
signature; and last that the nonce was not seen within the window (a replay, 401).
Nonces are remembered for twice the window, so a request can never be accepted twice.

A request is checked with the receiver's *own* public id as the recipient line, so a
request signed for another peer (or for nobody: an empty recipient) does not verify
there: a peer that receives a request cannot replay it at a third peer that trusts the
sender. A response needs no recipient: it is bound to the request (its nonce), which was
bound to the responder.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import re
from collections import OrderedDict
from collections.abc import Callable, Container, Mapping
from dataclasses import dataclass

from crdt import Identity
from crdt.identity import b64url, unb64url, verify

from ..errors import AuthError as AuthError  # re-exported: auth's errors
from ..errors import BadSignature
from ..errors import RequestForbidden as Forbidden
from ..errors import RequestUnauthorized as Unauthorized

KEY_HEADER = "Sm-Key"
SIGNATURE_HEADER = "Sm-Signature"
BASE_TAG = "sm-gossip-signature-v1"
JOIN_NONCES = 4096  # live nonces of join requests (Verifier.join_nonces), all keys
JOIN_NONCES_PER_KEY = 8  # and of one key
JOIN_NONCES_PER_SOURCE = 64  # join requests from one address within twice the window
_HEADER = re.compile(r"^v=1;t=(\d{1,16});n=([A-Za-z0-9_-]{22});s=([A-Za-z0-9_-]{86})$")


@dataclass(frozen=True)
class Signed:
    """The parsed signature headers of one message."""

    key: str
    created: int
    nonce: str
    sig: bytes


def signature_base(
    role: str,
    method: str,
    path: str,
    body: bytes,
    created: int,
    nonce: str,
    *,
    recipient: str | None = None,
    request_nonce: str | None = None,
) -> bytes:
    """The bytes a signature covers. A request names its ``recipient`` (a public id, or
    "" when the sender does not know it yet: such a request is accepted nowhere); a
    response names the ``request_nonce`` it answers."""
    lines = [BASE_TAG, role, method.upper(), path, hashlib.sha256(body).hexdigest(),
             str(created), nonce]  # fmt: skip
    if role == "request":
        if recipient is None or request_nonce is not None:
            raise ValueError("a request's signature base takes a recipient (only)")
        if "\n" in recipient:
            raise ValueError("a recipient is a public id, on one line")
        lines.append(recipient)
    elif role == "response":
        if request_nonce is None or recipient is not None:
            raise ValueError("a response's signature base takes a request nonce (only)")
        lines.append(request_nonce)
    else:
        raise ValueError(f"role is 'request' or 'response', not {role!r}")
    return "\n".join(lines).encode()


def sign(
    identity: Identity,
    *,
    role: str,
    method: str,
    path: str,
    body: bytes,
    now_ms: int,
    recipient: str | None = None,
    request_nonce: str | None = None,
    nonce: str | None = None,
) -> dict[str, str]:
    """The two headers that sign a request for ``recipient`` (the public id of the peer
    it is addressed to), or a response to the request whose nonce is ``request_nonce``."""
    nonce = nonce or b64url(os.urandom(16))
    base = signature_base(role, method, path, body, now_ms, nonce, recipient=recipient,
                          request_nonce=request_nonce)  # fmt: skip
    sig = b64url(identity.sign(base))
    return {KEY_HEADER: identity.public_id, SIGNATURE_HEADER: f"v=1;t={now_ms};n={nonce};s={sig}"}


def parse(headers: dict[str, str] | object) -> Signed:
    """Read the signature headers; Unauthorized when absent or malformed."""
    get = headers.get  # type: ignore[attr-defined]
    key, value = get(KEY_HEADER), get(SIGNATURE_HEADER)
    if not key or not value:
        raise Unauthorized("the request is not signed (Sm-Key and Sm-Signature headers)")
    m = _HEADER.match(value)
    if m is None or len(key) != 43:
        raise Unauthorized("malformed Sm-Signature or Sm-Key header")
    try:
        sig = unb64url(m.group(3))
        unb64url(key)
    except ValueError:
        raise Unauthorized("malformed Sm-Signature or Sm-Key header") from None
    return Signed(key=key, created=int(m.group(1)), nonce=m.group(2), sig=sig)


class NonceCache:
    """Nonces seen within the window, per key, bounded in size.

    Entries are forgotten after twice the window: by then the creation-time check
    refuses the request anyway. The cache never forgets a live entry to make room (a
    nonce must never be accepted twice): when full, new requests are refused until old
    entries expire — fail closed."""

    def __init__(
        self, window_ms: int, max_entries: int = 100_000, *, per_key: int | None = None
    ) -> None:
        """``per_key``: at most this many live nonces of one key (None: no such limit)."""
        self.window_ms = window_ms
        self.max_entries = max_entries
        self.per_key = per_key
        self._seen: OrderedDict[tuple[str, str], int] = OrderedDict()
        self._of_key: dict[str, int] = {}

    def __len__(self) -> int:
        return len(self._seen)

    def check_and_add(self, key: str, nonce: str, now_ms: int) -> bool:
        """True (and remembered) if new; False if seen before (a replay) or if the cache
        (or this key's share of it) is full of live entries."""
        horizon = now_ms - 2 * self.window_ms
        while self._seen:
            oldest, seen_at = next(iter(self._seen.items()))
            if seen_at >= horizon:
                break
            del self._seen[oldest]
            left = self._of_key.pop(oldest[0], 1) - 1
            if left > 0:
                self._of_key[oldest[0]] = left
        if (key, nonce) in self._seen or len(self._seen) >= self.max_entries:
            return False
        if self.per_key is not None and self._of_key.get(key, 0) >= self.per_key:
            return False
        self._seen[(key, nonce)] = now_ms
        self._of_key[key] = self._of_key.get(key, 0) + 1
        return True


class Verifier:
    """The receiving side: checks requests (server) or responses (client)."""

    def __init__(
        self,
        keyring: Callable[[], Container[str]],
        now_ms: Callable[[], int],
        *,
        window_ms: int = 60_000,
        started_ms: int | None = None,
    ) -> None:
        """``started_ms``: when this process started listening. The nonce cache lives in
        memory, so a request signed before then could be one it already served before a
        restart: it is refused (a peer whose clock lags ours waits that long after our
        restart). None: no such check (the caller keeps nonces across restarts, or
        tests a long-running server)."""
        self.keyring = keyring
        self.now_ms = now_ms
        self.window_ms = window_ms
        self.started_ms = started_ms
        self.nonces = NonceCache(window_ms)
        # Requests to ``transport.JOIN_PATH`` (keys outside the trusted set may make
        # them) have their own small cache, a few nonces per key: a flood of them, from
        # any number of fresh keys, can at worst refuse other joins for two windows,
        # never fill ``nonces`` and so refuse the trusted peers' exchanges.
        self.join_nonces = NonceCache(window_ms, JOIN_NONCES, per_key=JOIN_NONCES_PER_KEY)
        # And per sender address (keyed by address, not key): one sender with many fresh
        # keys gets a few dozen join requests a window, checked before their signature.
        self.join_sources = NonceCache(window_ms, JOIN_NONCES, per_key=JOIN_NONCES_PER_SOURCE)
        # Keys this host retired while running (``gossip key rotate``): a request
        # addressed to one is still served, and answered signed by it, so that peers
        # that have not switched to the new key yet see no failed exchange.
        self.retired: dict[str, Identity] = {}
        # While peers may not know this host's new key yet, the node signs requests to a
        # recipient with the key this returns (None: the transport's own identity).
        self.request_signer: Callable[[str], Identity | None] | None = None
        # The trusted set's honoured successor records (old key -> new key), for the TLS
        # binding rule (``same_peer``); the node sets it.
        self.successors: Callable[[], Mapping[str, str]] = dict

    def check_headers(self, headers: object) -> Signed:
        """Everything that needs no body: who, and when. Run before reading the body."""
        signed = parse(headers)
        if signed.key not in self.keyring():
            raise Forbidden("this key is not in the peer's keyring (gossip trust add)")
        return self._check_time(signed)

    def check_stranger_headers(self, headers: object) -> Signed:
        """``check_headers`` without the keyring check: for the one request a key we do
        not trust yet may make (redeeming an invitation, ``transport.JOIN_PATH``)."""
        return self._check_time(parse(headers))

    def _check_time(self, signed: Signed) -> Signed:
        if abs(self.now_ms() - signed.created) > self.window_ms:
            raise Unauthorized("the signature's creation time is outside the window")
        if self.started_ms is not None and signed.created <= self.started_ms:
            raise Unauthorized("signed before this peer started (a replay across its restart?)")
        return signed

    def check_body(
        self,
        signed: Signed,
        *,
        role: str,
        method: str,
        path: str,
        body: bytes,
        recipient: str | None = None,
        request_nonce: str | None = None,
        nonces: NonceCache | None = None,
    ) -> None:
        """The signature and the nonce. A server checks a request with its own public id
        as ``recipient``; a client checks a response with its ``request_nonce``. The
        nonce goes in ``nonces`` (default: ``self.nonces``; ``self.join_nonces`` for a
        join request)."""
        base = signature_base(role, method, path, body, signed.created, signed.nonce,
                              recipient=recipient, request_nonce=request_nonce)  # fmt: skip
        if not verify(signed.key, signed.sig, base):
            if role == "request":
                raise BadSignature(
                    "the signature does not verify (not signed for this peer, or body/headers "
                    "changed)"
                )
            raise BadSignature("the signature does not verify (body or headers changed)")
        cache = self.nonces if nonces is None else nonces
        if not cache.check_and_add(signed.key, signed.nonce, self.now_ms()):
            raise Unauthorized(
                "this nonce was already used (a replayed request), or too many "
                "requests within the window"
            )


def same_peer(signing_key: str, tls_key: str, successors: Mapping[str, str]) -> bool:
    """May a request signed by ``signing_key`` arrive over a TLS connection whose client
    certificate proved ``tls_key``? The same key; or, during a rotation, one key and
    its honoured successor (either way round: a connection proved by one of a host's
    two keys, a request signed by the other). Never two unrelated keys."""
    return (
        signing_key == tls_key
        or successors.get(tls_key) == signing_key
        or successors.get(signing_key) == tls_key
    )


def same(a: str, b: str) -> bool:
    """Constant-time comparison, for anything secret (tokens)."""
    return hmac.compare_digest(a.encode(), b.encode())
