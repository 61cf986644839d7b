"""TLS on the peer port, pinned to each host's Ed25519 identity, with no certificate authority.

A host's TLS certificate carries its identity key (the key of ``host.key``) as its
subject public key, so the TLS 1.3 handshake (CertificateVerify) proves that the other
end holds the private key of the id it presents. Both sides then *pin*: the client
accepts the server only if its certificate key is the peer it meant to reach (or, on a
first contact to a bare address, a key in its keyring), checked inside the handshake,
before a byte of the request is written; the server answers 403 to a client whose
certificate key is not in its keyring, and to a request signed by another key than the
certificate's, before reading the body (``transport.serve``).

Why an "anchor": Python's ``ssl`` has no certificate-verification callback, so a server
that must *request* a client certificate can only accept one that chains to a CA it
loaded. Every certificate is therefore issued by one fixed, public "sm-gossip pinning
anchor" key, derived at run time from a constant (``ANCHOR_SEED_TAG``). Its private key
is public knowledge: anybody can issue a certificate for any key under it, so the anchor
proves nothing; all the security comes from pinning the leaf key afterwards. The pin is
checked in ``PinnedObject.do_handshake`` (``SSLContext.sslobject_class``, stdlib), which
runs for every new connection, including the ones aiohttp pools and reuses (a pooled
connection was pinned to the same key: one client context per pinned key and signing
key).

During a key rotation's grace (docs/protocol.md, "TLS", "Key rotation") a pin also
accepts the pinned key's direct honoured predecessor (``PinnedContext.successors``), the
server goes on presenting the old key (``PinnedTls.present``), and a request signed by
the retired key goes over a connection that proves the retired key.

The certificate is deterministic (serial, names and validity derived from the key;
Ed25519 signatures are deterministic), valid from 2000 to 9999: it never expires, so
"renewal" means rewriting ``tls.crt`` whenever it is not exactly the certificate of the
current key (missing, damaged, wrong mode, or left from another key or anchor version),
which ``ensure_certificate`` does at every start (and ``PinnedTls.rotated`` at a
rotation). A key rotation is the only reason for a new certificate, and it takes a new
``host.key`` anyway.

This module never sends a byte itself and never reads the private key: OpenSSL loads
``host.key`` from the data dir (``load_cert_chain``).
"""

from __future__ import annotations

import datetime
import functools
import hashlib
import ssl
import stat
import threading
from collections import OrderedDict
from collections.abc import Callable, Container, Mapping
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)
from cryptography.x509.oid import NameOID

from crdt import Identity
from crdt.files import create_whole
from crdt.identity import KEY_FILE, RETIRED_DIR, b64url, public_key_bytes

from ..errors import TlsSetupError

CERT_FILE = "tls.crt"
ANCHOR_SEED_TAG = b"sm-gossip tls anchor v1"
TLS = "tls"
PLAINTEXT = "plaintext"
_NOT_BEFORE = datetime.datetime(2000, 1, 1, tzinfo=datetime.UTC)
_NOT_AFTER = datetime.datetime(9999, 12, 31, 23, 59, 59, tzinfo=datetime.UTC)
_PINNED_CONTEXTS = 256  # client contexts kept, one per pinned peer key


class PeerKeyMismatch(ssl.SSLError):
    """The peer's certificate key is not the one we meant to reach (or, on a first
    contact, not in our keyring). An ``SSLError``: asyncio fails the handshake with it."""

    def __init__(self, message: str, *, untrusted: bool) -> None:
        super().__init__(message)
        self.message = message
        self.untrusted = untrusted  # the key is outside our keyring (not a wrong pin)

    def __str__(self) -> str:
        return self.message


@functools.cache
def _anchor() -> tuple[Ed25519PrivateKey, x509.Certificate]:
    """The public pinning anchor: a key anybody can derive, and its self-signed CA."""
    key = Ed25519PrivateKey.from_private_bytes(hashlib.sha256(ANCHOR_SEED_TAG).digest())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "sm-gossip pinning anchor v1")])
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(_NOT_BEFORE)
        .not_valid_after(_NOT_AFTER)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .sign(key, None)
    )
    return key, cert


def anchor_der() -> bytes:
    return _anchor()[1].public_bytes(serialization.Encoding.DER)


def host_certificate(public_id: str) -> bytes:
    """The PEM certificate of the host whose public id is ``public_id``: the same bytes
    on every machine and at every call."""
    raw = public_key_bytes(public_id)
    anchor_key, anchor_cert = _anchor()
    # CN is informational; the pin is the key. Serial: 159 bits of the key's hash.
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"sm-gossip {public_id[:16]}")])
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(anchor_cert.subject)
        .public_key(Ed25519PublicKey.from_public_bytes(raw))
        .serial_number(int.from_bytes(hashlib.sha256(raw).digest()[:20], "big") >> 1)
        .not_valid_before(_NOT_BEFORE)
        .not_valid_after(_NOT_AFTER)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .sign(anchor_key, None)
    )
    return cert.public_bytes(serialization.Encoding.PEM)


def ensure_certificate(home: Path, identity: Identity) -> Path:
    """``home/tls.crt`` (mode 0600), rewritten unless it is exactly ``identity``'s
    certificate: the automatic renewal (module docstring)."""
    return _ensure_file(Path(home) / CERT_FILE, identity.public_id)


def ensure_retired_certificate(home: Path, public_id: str) -> Path:
    """``home/retired/<id>.crt`` (0600), the certificate of a key this host rotated away
    from (kept as ``retired/<id>.key``): during the rotation's grace the node still
    presents it, and signs requests with that key over connections that prove it."""
    return _ensure_file(Path(home) / RETIRED_DIR / f"{public_id}.crt", public_id)


def _ensure_file(path: Path, public_id: str) -> Path:
    wanted = host_certificate(public_id)
    try:
        st = path.lstat()  # a link (even to the right bytes) is replaced by a plain file
        current = path.read_bytes() if stat.S_ISREG(st.st_mode) else None
        if current == wanted and stat.S_IMODE(st.st_mode) == 0o600:
            return path
        path.unlink()
    except FileNotFoundError:
        pass
    except OSError as e:
        raise TlsSetupError(f"cannot read or replace {path}: {e}") from None
    try:
        create_whole(path, lambda tmp: tmp.write_bytes(wanted))
    except FileExistsError:  # another process wrote it meanwhile: the same bytes?
        try:
            same = path.read_bytes() == wanted
        except OSError:
            same = False
        if not same:
            raise TlsSetupError(f"cannot write {path}: another file appeared there") from None
    except OSError as e:
        raise TlsSetupError(f"cannot write {path}: {e}") from None
    return path


def certificate_key(der: bytes) -> str | None:
    """The public id of a DER certificate's Ed25519 key; None for any other key (or a
    certificate that does not parse)."""
    # Cached by the certificate's digest, never its bytes: anybody can present
    # certificates (the anchor is public), up to ~100 KB each.
    digest = hashlib.sha256(der).digest()
    with _KEYS_LOCK:
        if digest in _KEYS:
            _KEYS.move_to_end(digest)
            return _KEYS[digest]
    try:
        key = x509.load_der_x509_certificate(der).public_key()
    except (ValueError, UnsupportedAlgorithm):
        key = None
    found = (
        b64url(key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw))
        if isinstance(key, Ed25519PublicKey)
        else None
    )
    with _KEYS_LOCK:  # nodes in several threads of one process share it
        _KEYS[digest] = found
        while len(_KEYS) > _CACHED_KEYS:
            _KEYS.popitem(last=False)
    return found


_CACHED_KEYS = 1024
_KEYS: OrderedDict[bytes, str | None] = OrderedDict()  # certificate digest -> public id
_KEYS_LOCK = threading.Lock()


def peer_key(ssl_object: ssl.SSLObject | ssl.SSLSocket | None) -> str | None:
    """The public id the other end of a finished handshake proved, or None."""
    if ssl_object is None:
        return None
    der = ssl_object.getpeercert(binary_form=True)
    return certificate_key(der) if der else None


class PinnedObject(ssl.SSLObject):
    """An ``SSLObject`` that checks the peer's key as the last step of the handshake,
    and hands its session ticket to its context once one arrives (TLS 1.3 sends it after
    the handshake, with the first data)."""

    _ticket_for: PinnedContext | None = None  # the context waiting for our ticket

    def do_handshake(self) -> None:
        super().do_handshake()
        context = self.context
        if isinstance(context, PinnedContext):
            key = peer_key(self)
            context.check(key)
            if context.pin and key == context.pin:  # not a predecessor's (its grace ends)
                self._ticket_for = context

    def read(self, len: int = 1024, buffer: bytearray | None = None) -> bytes | int:  # type: ignore[override]
        data = super().read(len, buffer)
        context = self._ticket_for
        if context is not None:
            session = self.session
            if session is not None and session.has_ticket:
                context.ticket = session
                self._ticket_for = None
        return data


class PinnedContext(ssl.SSLContext):
    """A TLS 1.3 client context: our certificate, the anchor as the only CA, and a pin:
    ``pin`` (one key) or, when it is "", any key in ``keyring()``."""

    sslobject_class = PinnedObject
    pin: str = ""
    keyring: Callable[[], Container[str]] = frozenset
    # Honoured successor records, old key -> new key (the trusted set's): a pinned key's
    # direct predecessor passes too, while it is trusted (its host's rotation grace).
    successors: Callable[[], Mapping[str, str]] = dict

    # Session resumption (RFC 8446 2.2): the session ticket of the last connection that
    # proved exactly ``pin``, offered once by the next connection. A resumed handshake
    # skips the certificates' signatures and verifications (2.4 -> 1.0 ms CPU, both
    # ends), and the pin is checked on it as on any other: OpenSSL keeps the peer's
    # certificate in the session, and the server's keyring check and key binding read it
    # the same way. Used once (RFC 8446 C.4: a ticket's id is sent in the clear).
    ticket: ssl.SSLSession | None = None

    def __repr__(self) -> str:  # aiohttp puts it in connection errors, which we log
        return f"TLS pinned to {self.pin[:12]}…" if self.pin else "TLS, any trusted key"

    def wrap_bio(self, incoming: ssl.MemoryBIO, outgoing: ssl.MemoryBIO,  # type: ignore[override]
                 server_side: bool = False, server_hostname: str | None = None,
                 session: ssl.SSLSession | None = None) -> ssl.SSLObject:  # fmt: skip
        if session is None and not server_side:
            session, self.ticket = self.ticket, None
        return super().wrap_bio(incoming, outgoing, server_side, server_hostname, session)

    def check(self, key: str | None) -> None:
        if key is None:
            raise PeerKeyMismatch("the peer's TLS certificate has no Ed25519 key",
                                  untrusted=True)  # fmt: skip
        if self.pin and key != self.pin and self.successors().get(key) != self.pin:
            raise PeerKeyMismatch(
                f"the peer's TLS key is {key[:12]}…, not {self.pin[:12]}…, the peer we "
                "meant to reach (a man in the middle, or another host at its address)",
                untrusted=False,
            )
        if key not in self.keyring():  # pinned or not: only keys we trust now
            raise PeerKeyMismatch(
                f"the peer's TLS key {key[:12]}… is not in our keyring (gossip trust add)",
                untrusted=True,
            )


def _context(kind: type[ssl.SSLContext], protocol: int, cert: Path, key: Path) -> ssl.SSLContext:
    ctx = kind(protocol)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    ctx.check_hostname = False  # no names: the pin is the key
    ctx.verify_mode = ssl.CERT_REQUIRED  # the server asks for the client's certificate
    ctx.load_verify_locations(cadata=anchor_der())
    _load(ctx, cert, key)
    return ctx


def _load(ctx: ssl.SSLContext, cert: Path, key: Path) -> None:
    try:
        ctx.load_cert_chain(cert, key)
    except (OSError, ssl.SSLError) as e:
        raise TlsSetupError(f"cannot load {cert} with {key}: {e}") from None


class PinnedTls:
    """One host's TLS: the server context, and client contexts per (signing key, pinned
    peer key). Made once per node (``for_host``), after ``host.key`` exists.

    Key rotation (docs/protocol.md, "TLS", "Key rotation"): ``rotated`` writes the new
    key's ``tls.crt`` and the old key's ``retired/<id>.crt``; the server keeps presenting
    what it presents (the old key) until ``present`` switches it, and a request signed
    by a retired key goes over a connection whose client certificate is that key's."""

    def __init__(self, home: Path, cert: Path, host_id: str) -> None:
        self.home = Path(home)
        self.cert = cert
        self.host_id = host_id
        self.presenting = host_id  # the key of the certificate the server presents
        self.server = _context(ssl.SSLContext, ssl.PROTOCOL_TLS_SERVER, cert,
                               self.home / KEY_FILE)  # fmt: skip
        # The trusted set's honoured successors (old -> new): set by the node.
        self.successors: Callable[[], Mapping[str, str]] = dict
        self._pinned: OrderedDict[tuple[str, str], PinnedContext] = OrderedDict()
        self._trusted: dict[str, tuple[PinnedContext, Container[str]]] = {}

    @classmethod
    def for_host(cls, home: Path, identity: Identity) -> PinnedTls:
        """Write (or renew) ``home/tls.crt`` for ``identity`` and load it."""
        return cls(home, ensure_certificate(home, identity), identity.public_id)

    def _chain(self, signer: str) -> tuple[Path, Path]:
        """The certificate and key files of ``signer``: this host's key, or one it
        retired. For any other signer (a transport whose identity was swapped), this
        host's: the server then refuses the mismatch (403), as it should."""
        key = self.home / RETIRED_DIR / f"{signer}.key"
        if key.exists():  # first: host.key may already be the successor's (mid-rotation)
            return ensure_retired_certificate(self.home, signer), key
        return self.cert, self.home / KEY_FILE

    def rotated(self, new: Identity, old: str) -> None:
        """``host.key`` is now ``new`` (``Replica.rotate`` kept ``old`` in ``retired/``):
        write both certificates. The server goes on presenting the old one (``present``)."""
        self.cert = ensure_certificate(self.home, new)
        ensure_retired_certificate(self.home, old)
        self.host_id = new.public_id

    def present(self, key: str) -> None:
        """Serve new connections with ``key``'s certificate (this host's or a retired
        key's); connections already open keep theirs. A new server context, so new
        session tickets too: a ticket from a connection that proved the old key does not
        resume past the switch."""
        if key != self.presenting:
            self.server = _context(ssl.SSLContext, ssl.PROTOCOL_TLS_SERVER, *self._chain(key))
            self.presenting = key

    def client(self, recipient: str, keyring: Callable[[], Container[str]],
               signer: str | None = None) -> PinnedContext:  # fmt: skip
        """The context for a request to ``recipient`` ("" when the peer's key is not known
        yet: then any key in ``keyring()`` passes, and the signed exchange that follows
        names the peer), whose client certificate is ``signer``'s (default: this host's
        key; a key it retired during a rotation's grace). One context per pinned key and
        signer, so a pooled connection is reused only for the key it was pinned to and
        the identity it proved; and a new "any trusted key" context whenever the
        keyring changed, so that a connection checked against an older keyring (a key
        since distrusted) is not reused."""
        signer = signer or self.host_id
        if not recipient:
            ring = keyring()
            held = self._trusted.get(signer)
            if held is None or (ring is not held[1] and ring != held[1]):
                ctx = self._new_client("", signer)
                ctx.keyring = lambda: ring
                self._trusted[signer] = held = (ctx, ring)
                if len(self._trusted) > _PINNED_CONTEXTS:
                    self._trusted.pop(next(iter(self._trusted)))
            return held[0]
        ctx = self._pinned.get((signer, recipient))
        if ctx is None:
            ctx = self._pinned[(signer, recipient)] = self._new_client(recipient, signer)
            ctx.keyring = keyring
            while len(self._pinned) > _PINNED_CONTEXTS:
                self._pinned.popitem(last=False)
        else:
            self._pinned.move_to_end((signer, recipient))
        return ctx

    def _new_client(self, pin: str, signer: str) -> PinnedContext:
        ctx = _context(PinnedContext, ssl.PROTOCOL_TLS_CLIENT, *self._chain(signer))
        assert isinstance(ctx, PinnedContext)
        ctx.pin = pin
        ctx.successors = lambda: self.successors()  # the node may set it later
        return ctx


__all__ = [
    "CERT_FILE",
    "PLAINTEXT",
    "TLS",
    "PeerKeyMismatch",
    "PinnedContext",
    "PinnedTls",
    "TlsSetupError",
    "certificate_key",
    "ensure_certificate",
    "ensure_retired_certificate",
    "host_certificate",
    "peer_key",
]
