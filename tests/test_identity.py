"""The host key file: private mode, never overwritten, refused when unreadable.

Real key files in a temporary data dir; no mocks.
"""

from __future__ import annotations

import os
import random
import re
import stat
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

import crdt
from crdt import Identity, Replica
from crdt.identity import KEY_FILE, public_key_bytes, verify

B64URL_43 = re.compile(r"^[A-Za-z0-9_-]{43}$")


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604, 0o660])
def test_a_key_file_others_may_read_is_refused(tmp_path: Path, mode: int) -> None:
    ident = Identity.create(tmp_path)
    path = tmp_path / KEY_FILE
    before = path.read_bytes()
    os.chmod(path, mode)

    with pytest.raises(crdt.IdentityError) as ei:
        Identity.load(tmp_path)

    message = str(ei.value)
    assert f"chmod 600 {path}" in message, message
    assert f"{mode:04o}" in message, message
    assert path.read_bytes() == before
    assert stat.S_IMODE(path.stat().st_mode) == mode, "load must not change the mode itself"

    # Opening a replica refuses the same way, creates no store and releases the lock.
    with pytest.raises(crdt.IdentityError, match="chmod 600"):
        Replica.open(tmp_path)
    assert not (tmp_path / "store.db").exists()
    os.chmod(path, 0o600)
    assert Identity.load(tmp_path).public_id == ident.public_id
    Replica.open(tmp_path).close()


def test_create_refuses_to_overwrite(tmp_path: Path) -> None:
    ident = Identity.create(tmp_path)
    path = tmp_path / KEY_FILE
    before = path.read_bytes()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600

    with pytest.raises(crdt.IdentityError, match="refusing to overwrite"):
        Identity.create(tmp_path)

    assert path.read_bytes() == before
    assert Identity.load(tmp_path).public_id == ident.public_id
    assert Identity.load_or_create(tmp_path).public_id == ident.public_id


def _other_key_type_pem() -> bytes:
    return ec.generate_private_key(ec.SECP256R1()).private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _truncated_pem() -> bytes:
    """A real Ed25519 key file cut short in the middle of its body."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    pem = Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return pem[: len(pem) // 2] + b"\n"


GARBAGE = {
    "random-bytes": lambda: random.Random(3).randbytes(119),
    "empty": lambda: b"",
    "text": lambda: b"hello, I am not a key\n",
    "truncated-pem": lambda: _truncated_pem(),
    "ec-key": _other_key_type_pem,
}


@pytest.mark.parametrize("make", GARBAGE.values(), ids=GARBAGE.keys())
def test_a_garbage_key_file_is_an_identity_error(tmp_path: Path, make) -> None:
    path = tmp_path / KEY_FILE
    content = make()
    path.write_bytes(content)
    os.chmod(path, 0o600)

    with pytest.raises(crdt.IdentityError) as ei:
        Identity.load(tmp_path)
    assert str(path) in str(ei.value), ei.value

    # load_or_create must not "fix" it by replacing the key, nor may a replica open.
    with pytest.raises(crdt.IdentityError):
        Identity.load_or_create(tmp_path)
    with pytest.raises(crdt.IdentityError):
        Replica.open(tmp_path)
    assert path.read_bytes() == content
    assert not (tmp_path / "store.db").exists()


def test_a_missing_key_says_how_to_make_one(tmp_path: Path) -> None:
    with pytest.raises(crdt.IdentityError, match="gossip init"):
        Identity.load(tmp_path)


def test_public_id_is_43_chars_of_base64url_and_stable(tmp_path: Path) -> None:
    ident = Identity.create(tmp_path)
    pid = ident.public_id
    assert len(pid) == 43 and B64URL_43.match(pid), pid
    assert public_key_bytes(pid) == ident.public_key and len(ident.public_key) == 32

    again, third = Identity.load(tmp_path), Identity.load(tmp_path)
    assert again.public_id == third.public_id == pid
    sig = again.sign(b"hello")
    assert verify(pid, sig, b"hello") and not verify(pid, sig, b"hellO")
    assert repr(again) == f"Identity({pid})"  # never the private key

    with Replica.open(tmp_path) as r:
        assert r.author == pid
    assert Identity.load(tmp_path).public_id == pid

    other = Identity.create(tmp_path / "other")
    assert other.public_id != pid
