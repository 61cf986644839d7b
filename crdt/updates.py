"""Signed updates: one Yjs update of one author's client, bound to that author by a header.

Wire form (what peers exchange and the store keeps verbatim)::

    varuint(len(header)) || header || sig (64 bytes) || yjs_update

``header`` is canonical JSON ``{v, author, epoch, client, start, end, digest, ts}`` plus,
when needed, ``epochs`` (this author's earlier epochs whose items the update overwrites)
and ``checkpoint: true`` (the author's history ``[0, end)`` merged into one update).
``sig`` is the author's Ed25519 signature of ``header``; ``digest`` is the SHA-256 of
``yjs_update``, so the one signature covers the whole frame.

``check_structure`` enforces invariant 1 without looking at any replica: signature, client
derived from (author, epoch), every struct of that client and exactly ``[start, end)``,
a delete set naming only this author's clients, and the same answer from pycrdt's own
decoder (``get_update(update, {client: 2**53-1})`` must leave only that delete set).
"""

from __future__ import annotations

import functools
import hashlib
import json
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import pycrdt

from . import wire
from .errors import IdentityError, RejectedUpdate, UpdateError
from .frozen import built
from .identity import Identity, public_key_bytes, verify
from .records import MAX_BODY_DEPTH, canonical, nests_deeper_than

HEADER_VERSION = 1
MAX_HEADER_BYTES = 4096
MAX_CLIENT = 2**53 - 1  # JavaScript's Number.MAX_SAFE_INTEGER: Yjs in a browser can load us
MAX_CLOCK = 2**32 - 1  # yrs keeps clocks as u32 and silently wraps larger ones
ROOTS = ("records", "state")


@functools.lru_cache(maxsize=4096)
def derive_client(author: str, epoch: int) -> int:
    """The Yjs client id of ``author``'s store with ``epoch``: 53 bits of a hash."""
    h = hashlib.sha256(
        b"sm-gossip/client/v1\0" + public_key_bytes(author) + epoch.to_bytes(8, "big")
    )
    return int.from_bytes(h.digest()[:8], "big") & MAX_CLIENT


@dataclass(frozen=True)
class UpdateHeader:
    author: str
    epoch: int
    client: int
    start: int
    end: int
    digest: str
    ts: int
    epochs: tuple[int, ...] = ()
    checkpoint: bool = False
    v: int = HEADER_VERSION

    def encode(self) -> bytes:
        obj: dict[str, Any] = {
            "v": self.v, "author": self.author, "epoch": self.epoch, "client": self.client,
            "start": self.start, "end": self.end, "digest": self.digest, "ts": self.ts,
        }  # fmt: skip
        if self.epochs:
            obj["epochs"] = list(self.epochs)
        if self.checkpoint:
            obj["checkpoint"] = True
        return canonical(obj)

    @classmethod
    def decode(cls, raw: bytes) -> UpdateHeader:
        if len(raw) > MAX_HEADER_BYTES:
            raise UpdateError("update header too large")
        if nests_deeper_than(raw, MAX_BODY_DEPTH):  # as for record bodies: see there
            raise UpdateError(f"update header nests deeper than {MAX_BODY_DEPTH} levels")
        try:
            obj = json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, ValueError, RecursionError):
            raise UpdateError("update header is not UTF-8 JSON") from None
        if not isinstance(obj, dict):
            raise UpdateError("update header must be a JSON object")
        if obj.get("v") != HEADER_VERSION:
            raise UpdateError(f"unsupported update header version {obj.get('v')!r}")

        def nat(name: str, top: int = 2**63) -> int:
            value = obj.get(name)
            if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value < top:
                raise UpdateError(f"update header field {name!r} must be an integer in range")
            return value

        author, digest = obj.get("author"), obj.get("digest")
        if not isinstance(author, str) or not isinstance(digest, str) or len(digest) != 64:
            raise UpdateError("update header needs author and a hex SHA-256 digest")
        epochs = obj.get("epochs", [])
        if not isinstance(epochs, list) or len(epochs) > 64:
            raise UpdateError("update header field 'epochs' must be a short list")
        checkpoint = obj.get("checkpoint", False)
        if not isinstance(checkpoint, bool):
            raise UpdateError("update header field 'checkpoint' must be a boolean")
        for e in epochs:
            if not isinstance(e, int) or isinstance(e, bool) or not 0 <= e <= MAX_CLIENT:
                raise UpdateError("update header epochs must be integers in range")
        return built(
            cls,
            author=author,
            epoch=nat("epoch", MAX_CLIENT + 1),
            client=nat("client", MAX_CLIENT + 1),
            start=nat("start"),
            end=nat("end"),
            digest=digest,
            ts=nat("ts"),
            epochs=tuple(epochs),
            checkpoint=checkpoint,
            v=HEADER_VERSION,
        )


@dataclass(frozen=True)
class SignedUpdate:
    """A header, its signature and the Yjs update it covers. ``raw`` is the wire form."""

    header_bytes: bytes
    sig: bytes
    update: bytes
    header: UpdateHeader = field(compare=False)

    @cached_property
    def raw(self) -> bytes:
        return (
            wire.encode_varuint(len(self.header_bytes)) + self.header_bytes + self.sig + self.update
        )

    @property
    def author(self) -> str:
        return self.header.author

    @property
    def client(self) -> int:
        return self.header.client

    @classmethod
    def decode(cls, raw: bytes) -> SignedUpdate:
        """Parse the wire form; UpdateError if it is not one. Verifies nothing."""
        if not isinstance(raw, bytes | bytearray | memoryview):
            raise UpdateError("a signed update must be bytes")
        raw = bytes(raw)
        n, pos = wire.read_varuint(raw)
        if n > MAX_HEADER_BYTES or pos + n + 64 > len(raw):
            raise UpdateError("signed update ends early or has an oversized header")
        header_bytes = raw[pos : pos + n]
        sig = raw[pos + n : pos + n + 64]
        update = raw[pos + n + 64 :]
        return built(cls, header_bytes=header_bytes, sig=sig, update=update,
                      header=UpdateHeader.decode(header_bytes), raw=raw)  # fmt: skip


def sign_update(
    identity: Identity,
    *,
    epoch: int,
    update: bytes,
    start: int,
    end: int,
    ts: int,
    epochs: tuple[int, ...] = (),
    checkpoint: bool = False,
) -> SignedUpdate:
    header = UpdateHeader(
        author=identity.public_id,
        epoch=epoch,
        client=derive_client(identity.public_id, epoch),
        start=start,
        end=end,
        digest=hashlib.sha256(update).hexdigest(),
        ts=ts,
        epochs=tuple(sorted(set(epochs))),
        checkpoint=checkpoint,
    )
    hb = header.encode()
    return SignedUpdate(hb, identity.sign(hb), update, header)


@dataclass(frozen=True)
class StructureLimits:
    max_update_bytes: int = 4 * 1024 * 1024
    max_checkpoint_bytes: int = 64 * 1024 * 1024


ALLOWED_CONTENT = frozenset({wire.GC, wire.DELETED, wire.ANY})


def check_signature(su: SignedUpdate, *, verify_signature: bool = True) -> None:
    """The cheap half of invariant 1: header signature, client binding, digest."""
    h = su.header
    reject = _rejecter(h.author)
    if verify_signature and not verify(h.author, su.sig, su.header_bytes):
        raise reject("header-signature", "the header signature does not verify")
    if h.client != derive_client(h.author, h.epoch):
        raise reject("client-binding", f"client {h.client} is not derived from author and epoch")
    if hashlib.sha256(su.update).hexdigest() != h.digest:
        raise reject("digest", "the update bytes do not match the signed digest")


def check_structure(
    su: SignedUpdate, limits: StructureLimits | None = None, *, signature: bool = True
) -> wire.ScannedUpdate:
    """Invariant 1 on the update alone (no replica): see the module docstring.

    ``signature=False`` skips only the header signature, for a caller that verifies
    signatures in bulk itself and discards the result unless they all hold.
    """
    limits = limits or StructureLimits()
    h = su.header
    reject = _rejecter(h.author)
    cap = limits.max_checkpoint_bytes if h.checkpoint else limits.max_update_bytes
    if len(su.update) > cap:
        raise reject("oversize", f"update of {len(su.update)} bytes exceeds {cap}")
    try:
        public_key_bytes(h.author)
    except IdentityError as e:
        raise reject("header-author", str(e)) from None
    check_signature(su, verify_signature=signature)
    if not h.start < h.end <= MAX_CLOCK:
        raise reject(
            "clock-range", f"empty, inverted or too large clock range [{h.start}, {h.end})"
        )
    if h.checkpoint and h.start != 0:
        raise reject("clock-range", "a checkpoint must start at clock 0")
    scanned = wire.scan(su.update)
    own = {h.client, *[derive_client(h.author, e) for e in h.epochs]}
    clock = h.start
    for s in scanned.structs:
        if s.client != h.client:
            raise reject(
                "foreign-struct", f"struct of client {s.client} in an update of {h.client}"
            )
        if s.clock != clock:
            raise reject("clock-range", f"struct at clock {s.clock}, expected {clock}")
        clock += s.length
        if s.ref not in ALLOWED_CONTENT:
            name = wire.CONTENT_NAMES.get(s.ref, str(s.ref))
            raise reject("content-type", f"{name} content is not allowed (only plain values)")
        if s.ref == wire.GC:
            continue
        if s.right_origin is not None:
            raise reject("map-only", "an item with a right origin is a sequence insert")
        if s.origin is None:
            if s.parent_id is not None:
                raise reject("nested-type", "an item whose parent is a nested shared type")
            if s.parent_root not in ROOTS:
                raise reject(
                    "root", f"item under root {s.parent_root!r:.40}", key=str(s.parent_root)
                )
            if s.parent_sub is None:
                raise reject("map-only", f"a sequence item under root {s.parent_root!r}")
        elif s.origin[0] not in own:
            raise reject(
                "foreign-origin", f"item continues client {s.origin[0]}, not this author's"
            )
    if clock != h.end:
        raise reject("clock-range", f"structs end at {clock}, header says {h.end}")
    for client, ranges in scanned.delete_set.items():
        if client not in own:
            raise reject("foreign-delete", f"delete set names client {client} of another writer")
        for dclock, dlen in ranges:
            if dlen < 1 or dclock + dlen > MAX_CLOCK:
                raise reject("foreign-delete", "empty or out-of-range delete range")
            if client == h.client and dclock + dlen > h.end:
                raise reject("foreign-delete", "delete set names clocks past the update's end")
    # Second opinion from yrs' own decoder: with our client's structs removed, only the
    # delete set may remain. A difference means our reader and yrs disagree: refuse.
    try:
        rest = pycrdt.get_update(su.update, _all_of(h.client))
    except (KeyboardInterrupt, SystemExit):
        raise
    except BaseException:  # includes pyo3's PanicException, which is not an Exception
        raise reject("decode", "pycrdt cannot decode the update") from None
    try:
        theirs = wire.scan_delete_set(rest)
    except UpdateError:
        raise reject("decode", "pycrdt finds structs the gate did not see") from None
    if theirs != scanned.delete_set and (  # the same ranges as written: no need to sort
        wire.normalize_delete_set(theirs) != wire.normalize_delete_set(scanned.delete_set)
    ):
        raise reject("decode", "pycrdt reads the update differently from the gate")
    return scanned


@functools.lru_cache(maxsize=1024)
def _all_of(client: int) -> bytes:
    """A state vector that already holds every clock of ``client``."""
    return wire.encode_state_vector({client: MAX_CLIENT})


def _rejecter(author: str):
    def make(rule: str, detail: str, key: str = "") -> RejectedUpdate:
        return RejectedUpdate(rule, detail, author=author, key=key)

    return make
