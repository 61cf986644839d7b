"""Request and response signatures (invariant 9), without any network."""

from __future__ import annotations

import pytest

from crdt import Identity
from gossip.transport import auth

NOW = 1_790_000_000_000
BODY = b"SMG\x02\x01\x00\x00"


# The server's own public id: requests in these tests are signed for it.
SERVER = Identity.generate().public_id


@pytest.fixture
def alice() -> Identity:
    return Identity.generate()


def server(keys: set[str], now: int = NOW) -> auth.Verifier:
    return auth.Verifier(lambda: keys, lambda: now, window_ms=60_000)


def request(
    ident: Identity, body: bytes = BODY, now: int = NOW, recipient: str = SERVER
) -> dict[str, str]:
    return auth.sign(ident, role="request", method="POST", path="/v1/sync", body=body,
                     now_ms=now, recipient=recipient)  # fmt: skip


def check(v: auth.Verifier, headers: dict[str, str], body: bytes = BODY, me: str = SERVER) -> None:
    signed = v.check_headers(headers)
    v.check_body(signed, role="request", method="POST", path="/v1/sync", body=body,
                 recipient=me)  # fmt: skip


def test_a_trusted_signed_request_passes_once(alice):
    v = server({alice.public_id})
    h = request(alice)
    check(v, h)
    with pytest.raises(auth.Unauthorized, match="already used"):
        check(v, h)  # the same request again: a replay


def test_an_unknown_key_is_forbidden_before_the_body_is_looked_at(alice):
    with pytest.raises(auth.Forbidden):
        server(set()).check_headers(request(alice))


def test_a_modified_body_or_path_is_refused(alice):
    v = server({alice.public_id})
    with pytest.raises(auth.Unauthorized, match="does not verify"):
        check(v, request(alice), body=BODY + b"x")
    signed = v.check_headers(request(alice))
    with pytest.raises(auth.Unauthorized):
        v.check_body(signed, role="request", method="POST", path="/v1/push", body=BODY,
                     recipient=SERVER)  # fmt: skip


def test_a_request_is_bound_to_its_recipient(alice):
    """A request signed for one peer is refused by any other (a peer cannot forward what
    it received to a third peer that trusts the sender), and one signed for nobody (an
    empty recipient: a first contact) is refused by everyone."""
    other = Identity.generate().public_id
    v = server({alice.public_id})
    for recipient in (other, "", SERVER + "x"):
        with pytest.raises(auth.Unauthorized, match="not signed for this peer"):
            check(v, request(alice, recipient=recipient))
    h = request(alice)
    with pytest.raises(auth.Unauthorized, match="not signed for this peer"):
        check(v, h, me=other)  # the request meant for SERVER, arriving at another peer
    check(v, h)  # its nonce was not spent by the failed attempt: SERVER accepts it
    # The recipient is the line after the nonce; a response has none.
    base = auth.signature_base("request", "POST", "/p", b"", 1, "n", recipient=SERVER)
    assert base.decode().split("\n")[6:] == ["n", SERVER]
    with pytest.raises(ValueError):
        auth.signature_base("request", "POST", "/p", b"", 1, "n")  # a recipient is required
    with pytest.raises(ValueError):
        auth.signature_base("response", "POST", "/p", b"", 1, "n", recipient=SERVER)


def test_clock_window(alice):
    v = server({alice.public_id})
    with pytest.raises(auth.Unauthorized, match="window"):
        check(v, request(alice, now=NOW - 61_000))
    with pytest.raises(auth.Unauthorized, match="window"):
        check(v, request(alice, now=NOW + 61_000))
    check(v, request(alice, now=NOW - 59_000))


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Sm-Key": "x"},
        {"Sm-Key": "A" * 43, "Sm-Signature": "v=1;t=1;n=abc;s=def"},
        {"Sm-Key": "A" * 43, "Sm-Signature": "v=2;t=1;n=" + "a" * 22 + ";s=" + "b" * 86},
    ],
)
def test_missing_or_malformed_headers_are_unauthorized(headers):
    with pytest.raises(auth.Unauthorized):
        auth.parse(headers)


def test_a_response_is_bound_to_its_request(alice):
    bob = Identity.generate()
    req = request(alice)
    nonce = auth.parse(req).nonce
    resp = auth.sign(bob, role="response", method="POST", path="/v1/sync", body=b"r",
                     now_ms=NOW, request_nonce=nonce)  # fmt: skip
    client = auth.Verifier(lambda: {bob.public_id}, lambda: NOW)
    signed = client.check_headers(resp)
    with pytest.raises(auth.Unauthorized):  # replayed as the answer to another request
        client.check_body(signed, role="response", method="POST", path="/v1/sync", body=b"r",
                          request_nonce=auth.parse(request(alice)).nonce)  # fmt: skip
    client.check_body(signed, role="response", method="POST", path="/v1/sync", body=b"r",
                      request_nonce=nonce)  # fmt: skip


def test_the_nonce_cache_is_bounded_and_fails_closed():
    cache = auth.NonceCache(window_ms=1000, max_entries=10)
    assert all(cache.check_and_add("k", f"n{i}", NOW) for i in range(10))
    assert not cache.check_and_add("k", "n10", NOW)  # full of live nonces: refused
    assert not cache.check_and_add("k", "n3", NOW + 1999)  # still remembered
    assert cache.check_and_add("k", "fresh", NOW + 2001)  # the old ones have expired
    assert len(cache._seen) == 1
    assert not cache.check_and_add("k", "fresh", NOW + 2002)
