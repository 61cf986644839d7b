"""Ed25519 host identity: create and load the private key, sign, verify public ids.

The private key is the only secret this project has. It lives in one file in the data
dir, written with mode 0600 and refused when group or others can read it (like ssh).
It is never logged and never leaves this module except as signatures.
"""

from __future__ import annotations

import base64
import binascii
import functools
import hashlib
import os
import stat
from pathlib import Path
from typing import TYPE_CHECKING

from .errors import IdentityError
from .files import create_whole, fsync_dir

# `cryptography` and PyNaCl are imported on first use (a key loaded, a signature checked):
# a command that only talks to the daemon, or names a key file, never pays for them.
if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    from nacl.signing import VerifyKey

KEY_FILE = "host.key"
STAGED_KEY_FILE = "host.key.next"  # a rotation's new key, before it is installed
RETIRED_DIR = "retired"  # keys replaced by `gossip key rotate`, kept 0600 (docs/cli.md)


# binascii directly, as base64's urlsafe functions do underneath: the gate decodes a
# signature per record and the wrappers were most of the cost (1.8 µs against 0.6).
_URL_TO_STD, _STD_TO_URL = bytes.maketrans(b"-_", b"+/"), bytes.maketrans(b"+/", b"-_")


def _b64url_bytes(data: bytes) -> bytes:
    return binascii.b2a_base64(data, newline=False).translate(_STD_TO_URL).rstrip(b"=")


def b64url(data: bytes) -> str:
    return _b64url_bytes(data).decode("ascii")


def unb64url(text: str) -> bytes:
    if not isinstance(text, str) or not text.isascii():
        raise ValueError("not base64url text")
    ascii_text = text.encode("ascii")
    # binascii.Error is a ValueError; other characters are skipped (as base64's are),
    # and then the spelling is not canonical.
    raw = binascii.a2b_base64(ascii_text.translate(_URL_TO_STD) + b"=" * (-len(text) % 4))
    if _b64url_bytes(raw) != ascii_text:  # refuse non-canonical spellings: one key, one id
        raise ValueError("non-canonical base64url")
    return raw


@functools.lru_cache(maxsize=4096)
def public_key_bytes(public_id: str) -> bytes:
    """The 32 raw key bytes of a public id; IdentityError if it is not one."""
    try:
        raw = unb64url(public_id)
    except (ValueError, TypeError) as e:
        raise IdentityError(f"not a public id (base64url of 32 bytes): {public_id!r:.60}") from e
    if len(raw) != 32:
        raise IdentityError(f"not a public id (base64url of 32 bytes): {public_id!r:.60}")
    return raw


def fingerprint(public_id: str) -> str:
    """A short check of a public id to compare out loud (``gossip id`` prints it, ``trust
    add`` shows it): 50 bits of SHA-256 of the key, in base32 (no 0/1/8/9 to misread), as
    two groups of five, e.g. ``K7QXM-2DRPA``. Any change to the id changes it, so a
    mistyped id shows a different fingerprint than the host's own ``gossip id``. It
    catches mistakes, not forgeries: the whole id is what is trusted."""
    digest = hashlib.sha256(b"sm-gossip fingerprint\x00" + public_key_bytes(public_id)).digest()
    text = base64.b32encode(digest[:7]).decode("ascii")[:10]
    return f"{text[:5]}-{text[5:]}"


def normal_fingerprint(text: str) -> str:
    """A fingerprint as a person may type it (any case, with or without the dash or
    spaces), spelled as ``fingerprint`` spells it; ValueError if it cannot be one."""
    plain = "".join(text.split()).replace("-", "").upper().translate(_MISREAD)
    # ASCII only: ``upper`` turns some other letters into ASCII ones ("ı" -> "I").
    if not text.isascii() or len(plain) != 10 or any(c not in _B32 for c in plain):
        raise ValueError("a fingerprint is 10 letters and digits 2-7, e.g. K7QXM-2DRPA")
    return f"{plain[:5]}-{plain[5:]}"


_B32 = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZ234567")
_MISREAD = str.maketrans("018", "OIB")  # digits base32 never uses, read as letters


@functools.lru_cache(maxsize=4096)
def _verify_key(public_id: str) -> VerifyKey:
    from nacl.signing import VerifyKey

    return VerifyKey(public_key_bytes(public_id))


def verify(public_id: str, signature: bytes, data: bytes) -> bool:
    """True when ``signature`` is ``public_id``'s Ed25519 signature of ``data``.

    Verification uses libsodium (PyNaCl): about 1.8x the rate of `cryptography` on one
    core here. Large batches are verified in worker processes (``signatures``).
    Signing and key files stay with `cryptography`; both speak plain RFC 8032 Ed25519.
    """
    if len(signature) != 64:
        return False
    try:
        _verify_key(public_id).verify(data, signature)
    except (IdentityError, ValueError, TypeError):
        return False
    except Exception as e:
        from nacl.exceptions import BadSignatureError  # loaded by _verify_key already

        if isinstance(e, BadSignatureError):
            return False
        raise
    return True


class Identity:
    """A host's signing key. ``public_id`` is base64url of the raw public key (43 chars)."""

    def __init__(self, private_key: Ed25519PrivateKey) -> None:
        from cryptography.hazmat.primitives import serialization

        self._key = private_key
        raw = private_key.public_key().public_bytes(
            serialization.Encoding.Raw, serialization.PublicFormat.Raw
        )
        self.public_key = raw
        self.public_id = b64url(raw)

    def __repr__(self) -> str:  # never show the private key
        return f"Identity({self.public_id})"

    @classmethod
    def generate(cls) -> Identity:
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

        return cls(Ed25519PrivateKey.generate())

    def sign(self, data: bytes) -> bytes:
        return self._key.sign(data)

    def _pem(self) -> bytes:
        from cryptography.hazmat.primitives import serialization

        return self._key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )

    def stage(self, home: Path) -> Path:
        """Write this key as ``home/host.key.next`` (0600, synced): the first step of a
        rotation, before the old key signs a successor naming it, so that a successor
        never names a key this host does not have (``Replica.open`` finishes the rotation
        from it, or drops it if no successor was written)."""
        staged = Path(home) / STAGED_KEY_FILE
        staged.unlink(missing_ok=True)
        create_whole(staged, lambda tmp: tmp.write_bytes(self._pem()))
        return staged

    def install(self, home: Path, *, retire: Identity) -> Path:
        """Make this key ``home/host.key`` in place of ``retire``, which is kept as
        ``home/retired/<its id>.key`` (0600, in a 0700 directory): it may still have to
        sign a revocation of itself. The retired copy is written first and the new key
        renamed over the old file, so a crash leaves the old key in place or both keys
        on disk (``Replica.open`` finishes such a rotation); returns the retired path."""
        home = Path(home)
        retired = home / RETIRED_DIR
        retired.mkdir(mode=0o700, exist_ok=True)
        os.chmod(retired, 0o700)
        kept = retired / f"{retire.public_id}.key"
        if not kept.exists():
            create_whole(kept, lambda tmp: tmp.write_bytes(retire._pem()))
        staged = home / STAGED_KEY_FILE
        try:
            ready = Identity.load(home, STAGED_KEY_FILE).public_id == self.public_id
        except IdentityError:
            ready = False
        if not ready:
            self.stage(home)
        os.replace(staged, home / KEY_FILE)
        fsync_dir(home)
        return kept

    @classmethod
    def load_retired(cls, home: Path, public_id: str) -> Identity | None:
        """A key this host retired (``install``), or None if it does not have it."""
        public_key_bytes(public_id)
        path = Path(home) / RETIRED_DIR / f"{public_id}.key"
        if not path.exists():
            return None
        ident = cls.load(path.parent, path.name)
        return ident if ident.public_id == public_id else None

    @staticmethod
    def discard_retired(home: Path, public_id: str) -> None:
        """Delete a retired key (``home/retired/<id>.key``) and anything kept beside it
        for that key (its TLS certificate, ``<id>.crt``), once its revocation is stored."""
        public_key_bytes(public_id)  # a public id, never a path
        retired = Path(home) / RETIRED_DIR
        for suffix in (".key", ".crt"):
            (retired / f"{public_id}{suffix}").unlink(missing_ok=True)
        if retired.exists():
            fsync_dir(retired)

    @classmethod
    def create(cls, home: Path) -> Identity:
        """Generate a key and write it to ``home/host.key`` (0600); refuse to overwrite.

        Written to a temporary file, synced, then linked into place: a crash leaves either
        no key or a whole one, never an empty file that would lock the user out."""
        home = Path(home)
        home.mkdir(parents=True, exist_ok=True, mode=0o700)
        path = home / KEY_FILE
        if path.exists():
            raise IdentityError(f"{path} already exists; refusing to overwrite an identity")
        ident = cls.generate()
        pem = ident._pem()
        try:
            create_whole(path, lambda tmp: tmp.write_bytes(pem))
        except FileExistsError:
            raise IdentityError(f"{path} already exists; refusing to overwrite it") from None
        return ident

    @classmethod
    def load(cls, home: Path, file: str = KEY_FILE) -> Identity:
        """Load ``home/host.key``; refuse a file that group or others may read."""
        from cryptography.exceptions import InternalError, UnsupportedAlgorithm
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

        path = Path(home) / file
        try:
            st = path.stat()
        except FileNotFoundError as e:
            raise IdentityError(f"no host key at {path}; run `gossip init` first") from e
        if st.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
            raise IdentityError(
                f"{path} has mode {stat.S_IMODE(st.st_mode):04o}: a private key must not be "
                f"accessible by group or others; fix it with `chmod 600 {path}`"
            )
        try:
            data = path.read_bytes()
            key = serialization.load_pem_private_key(data, password=None)
        except (OSError, ValueError, TypeError, UnsupportedAlgorithm, InternalError) as e:
            # InternalError: OpenSSL refusing a key whose algorithm and size disagree (a
            # PKCS#8 file naming X448 over 32 key bytes); UnsupportedAlgorithm: a key type
            # this OpenSSL does not know.
            if isinstance(e, InternalError):  # its message is OpenSSL's multi-line advice
                e = ValueError("the key does not match the algorithm it names")
            raise IdentityError(f"{path} is not a readable Ed25519 private key: {e}") from None
        if not isinstance(key, Ed25519PrivateKey):
            raise IdentityError(f"{path} holds a {type(key).__name__}, not an Ed25519 key")
        return cls(key)

    @classmethod
    def load_or_create(cls, home: Path) -> Identity:
        if (Path(home) / KEY_FILE).exists():
            return cls.load(home)
        return cls.create(home)
