"""docs/protocol.md's worked example is rebuilt here from the code: if the wire format,
the signature base or the header syntax changes, this fails until the page is updated."""

from __future__ import annotations

from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from crdt import Identity, derive_client, wire
from crdt.identity import b64url
from gossip.protocol import Message, MessageType, sv_digest
from gossip.transport import SYNC_PATH, auth

DOC = (Path(__file__).parent.parent / "docs" / "protocol.md").read_text()
T = 1_790_000_000_000


def test_worked_example_matches_the_code():
    a = Identity(Ed25519PrivateKey.from_private_bytes(bytes(range(32))))
    b = Identity(Ed25519PrivateKey.from_private_bytes(bytes(range(32, 64))))
    ca, cb = derive_client(a.public_id, 1234567890), derive_client(b.public_id, 987654321)
    sv = {ca: 5, cb: 2}
    sync = Message(MessageType.SYNC, sv).encode()
    reply = Message(MessageType.SYNC_REPLY, sv).encode()
    nonce, reply_nonce = b64url(bytes(16)), b64url(b"\xff" * 16)

    request_headers = auth.sign(a, role="request", method="POST", path=SYNC_PATH, body=sync,
                                now_ms=T, nonce=nonce, recipient=b.public_id)  # fmt: skip
    response_headers = auth.sign(b, role="response", method="POST", path=SYNC_PATH, body=reply,
                                 now_ms=T + 3, nonce=reply_nonce, request_nonce=nonce)  # fmt: skip
    expected = [
        f"A: Sm-Key {a.public_id}",
        f"B: Sm-Key {b.public_id}",
        f"A's own (`{ca}`, clock 5)",
        f"B's (`{cb}`, clock 2)",
        f"{wire.encode_varuint(ca).hex(' ')}   client {ca}",
        f"{wire.encode_varuint(cb).hex(' ')}   client {cb}",
        f"The `SYNC` body, {len(sync)} bytes",
        reply.hex(" "),
        auth.signature_base(
            "request", "POST", SYNC_PATH, sync, T, nonce, recipient=b.public_id
        ).decode(),
        auth.signature_base(
            "response", "POST", SYNC_PATH, reply, T + 3, reply_nonce, request_nonce=nonce
        ).decode(),
        f"Sm-Key: {a.public_id}\nSm-Signature: {request_headers[auth.SIGNATURE_HEADER]}",
        f"Sm-Key: {b.public_id}\nSm-Signature: {response_headers[auth.SIGNATURE_HEADER]}",
        f"Content-Length: {len(sync)}",
    ]
    for text in expected:
        assert text in DOC, text
    # The annotated hex dumps spell out the SYNC and DIGEST bodies byte for byte (each
    # line: its bytes, then a comment).
    dump = DOC.split("The `SYNC` body")[1].split("```")[1]
    assert bytes.fromhex("".join(_leading_hex(line) for line in dump.splitlines())) == sync
    digest = Message(MessageType.DIGEST, digest=sv_digest(sv)).encode()
    dump = DOC.split("opens with a `DIGEST`")[1].split("```")[1]
    assert bytes.fromhex("".join(_leading_hex(line) for line in dump.splitlines())) == digest
    sorted_sv = wire.encode_state_vector(dict(sorted(sv.items())))
    assert f"SHA-256 of {sorted_sv.hex(' ')}" in DOC
    assert f"{len(digest)} bytes:" in DOC
    assert Message(MessageType.SAME).encode().hex(" ") in DOC


def _leading_hex(line: str) -> str:
    out = []
    for tok in line.split():
        if len(tok) != 2 or any(c not in "0123456789abcdef" for c in tok):
            break
        out.append(tok)
    return "".join(out)
