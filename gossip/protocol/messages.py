"""The wire format of the exchange protocol: messages, their codec, and the small
arithmetic on state vectors that every message decision uses. No I/O, no replica.

``Message.decode`` is where a peer's bytes become a message; whatever is malformed
raises ``RemoteProtocolError`` there (``UnsupportedVersion`` for a version we do not
speak), which a transport answers with 400. Nothing outside this package parses wire
bytes.
"""

from __future__ import annotations

import enum
import hashlib
from collections.abc import Iterable
from dataclasses import dataclass, field

from crdt import UpdateError, wire

from ..errors import ProtocolError as ProtocolError  # re-exported: the protocol's errors
from ..errors import RemoteProtocolError, UnsupportedVersion

# Version 2 (2026-12): a PUSH may name the receiver's state vector by its digest and carry
# only where ours differs, and its PUSH_REPLY only where the receiver's differs from the
# PUSH's (docs/protocol.md "Messages"). Version 1 is not spoken any more: a version-1 peer
# is answered 400 "protocol version 1 is not supported (this peer speaks 2)".
VERSION = 2
SUPPORTED_VERSIONS = (2,)
# No message carries more signed updates than fit in this many bytes: a peer's body limit
# must never stall replication (a delta too big for one message arrives over several
# exchanges, each making progress, since updates go out oldest first per client).
DEFAULT_MESSAGE_BYTES = 4 * 1024 * 1024
MAGIC = b"SMG"  # every message starts with it, then the version byte, then the type
SYNC_PATH = "/v1/sync"  # takes SYNC (or DIGEST), answered with SYNC_REPLY (or SAME)
PUSH_PATH = "/v1/push"  # takes PUSH, answered with PUSH_REPLY (SYNC_REPLY: a base not ours)
# Takes LEAVE ("I am stopping": the recipient shows us as ``left``), answered with
# LEAVE_REPLY. Signed like every request; a peer that does not know it answers 404,
# which costs the leaver nothing (a goodbye is best-effort).
LEAVE_PATH = "/v1/leave"


class MessageType(enum.IntEnum):
    SYNC = 1
    SYNC_REPLY = 2
    PUSH = 3
    PUSH_REPLY = 4
    DIGEST = 5  # "is your state vector the one hashing to this?"
    SAME = 6  # "yes": the answer to a DIGEST between peers in sync
    LEAVE = 7  # "I am stopping": a goodbye, carrying nothing
    LEAVE_REPLY = 8  # "noted", carrying nothing


DIGEST_BYTES = 32
# Messages that carry neither a state vector nor updates.
_EMPTY = frozenset({MessageType.SAME, MessageType.LEAVE, MessageType.LEAVE_REPLY})


def sv_digest(sv: dict[int, int]) -> bytes:
    """SHA-256 of the state vector encoded with clients ascending and zero clocks left
    out: equal state vectors, equal digests, whatever order each side keeps them in."""
    return hashlib.sha256(wire.encode_state_vector(_normal(sv))).digest()


def _normal(sv: dict[int, int]) -> dict[int, int]:
    return {c: k for c, k in sorted(sv.items()) if k}


def sv_diff(sv: dict[int, int], base: dict[int, int]) -> dict[int, int]:
    """The clients where ``sv`` differs from ``base``, with ``sv``'s clock (0: it has none
    of that client): ``sv_apply(base, sv_diff(sv, base))`` is ``sv``."""
    return {c: sv.get(c, 0) for c in sorted({*sv, *base}) if sv.get(c, 0) != base.get(c, 0)}


def sv_apply(base: dict[int, int], diff: dict[int, int]) -> dict[int, int]:
    """``base`` with the clocks of ``diff`` in place of its own (zero clocks left out)."""
    return {c: k for c, k in {**base, **diff}.items() if k}


@dataclass(frozen=True)
class Message:
    """One protocol message: a state vector (may be empty) and signed updates (raw); a
    ``DIGEST`` carries the digest of a state vector in its place, a ``SAME`` nothing.

    A ``PUSH`` carries a ``digest`` too, of the *base*: the receiver's state vector as the
    sender believes it to be; its ``state_vector`` is then only where the sender's differs
    from the base (``sv_diff``). Without one (``b""``), the sender's whole state vector."""

    type: MessageType
    state_vector: dict[int, int] = field(default_factory=dict)
    updates: tuple[bytes, ...] = ()
    digest: bytes = b""

    def encode(self) -> bytes:
        """``MAGIC version type [varuint len(base) base] || varuint len(sv) sv || varuint n
        (varuint len update)*``: the base only in a ``PUSH``."""
        if self.type is MessageType.DIGEST:
            sv = self.digest
        elif self.type in _EMPTY:
            sv = b""
        else:
            sv = wire.encode_state_vector(self.state_vector)
        out = bytearray(MAGIC + bytes([VERSION, self.type]))
        if self.type is MessageType.PUSH:
            out += wire.encode_varuint(len(self.digest)) + self.digest
        out += wire.encode_varuint(len(sv)) + sv
        out += wire.encode_varuint(len(self.updates))
        for u in self.updates:
            out += wire.encode_varuint(len(u)) + u
        return bytes(out)

    @classmethod
    def decode(cls, data: bytes, *, max_updates: int = 1_000_000) -> Message:
        if len(data) < 5 or data[:3] != MAGIC:
            raise RemoteProtocolError("not an sm-gossip message")
        if data[3] not in SUPPORTED_VERSIONS:
            raise UnsupportedVersion(
                f"protocol version {data[3]} is not supported (this peer speaks "
                f"{', '.join(map(str, SUPPORTED_VERSIONS))})"
            )
        try:
            kind = MessageType(data[4])
        except ValueError:
            raise RemoteProtocolError(f"unknown message type {data[4]}") from None
        try:
            pos, digest, sv = 5, b"", {}
            if kind is MessageType.PUSH:
                n, pos = wire.read_varuint(data, pos)
                if n not in (0, DIGEST_BYTES):
                    raise RemoteProtocolError(f"a PUSH's base is {DIGEST_BYTES} bytes, not {n}")
                if pos + n > len(data):
                    raise RemoteProtocolError("message ends inside its base")
                digest, pos = data[pos : pos + n], pos + n
            n, pos = wire.read_varuint(data, pos)
            if pos + n > len(data):
                raise RemoteProtocolError("message ends inside its state vector")
            if kind is MessageType.DIGEST:
                if n != DIGEST_BYTES:
                    raise RemoteProtocolError(f"a DIGEST carries {DIGEST_BYTES} bytes, not {n}")
                digest = data[pos : pos + n]
            elif kind in _EMPTY:
                if n:
                    raise RemoteProtocolError(f"a {kind.name} carries no state vector")
            else:
                sv = wire.decode_state_vector(data[pos : pos + n])
            pos += n
            count, pos = wire.read_varuint(data, pos)
            if count > max_updates or count > len(data) - pos:
                raise RemoteProtocolError("message claims more updates than it holds")
            if count and (kind is MessageType.DIGEST or kind in _EMPTY):
                raise RemoteProtocolError(f"a {kind.name} carries no updates")
            updates = []
            for _ in range(count):
                size, pos = wire.read_varuint(data, pos)
                if pos + size > len(data):
                    raise RemoteProtocolError("message ends inside an update")
                updates.append(data[pos : pos + size])
                pos += size
        except UpdateError as e:
            raise RemoteProtocolError(f"malformed message: {e}") from None
        if pos != len(data):
            raise RemoteProtocolError("trailing bytes after the message")
        return cls(kind, sv, tuple(updates), digest)


def fit(updates: Iterable[bytes], budget: int) -> tuple[list[bytes], bool]:
    """The longest prefix of ``updates`` within ``budget`` bytes (at least one update,
    so that one update larger than the budget still moves, or is refused visibly), and
    whether that is all of them. Reads ``updates`` no further than the first left out."""
    out: list[bytes] = []
    total = 0
    for u in updates:
        total += len(u) + 10
        if out and total > budget:
            return out, False
        out.append(u)
    return out, True


def lacks(ours: dict[int, int], theirs: dict[int, int]) -> bool:
    """Does a peer with state vector ``theirs`` lack anything we have?"""
    return any(clock > theirs.get(client, 0) for client, clock in ours.items())


def expect(body: bytes, *kinds: MessageType) -> Message:
    """Decode a peer's answer, which must be one of ``kinds`` (RemoteProtocolError)."""
    msg = Message.decode(body)
    if msg.type not in kinds:
        wanted = " or ".join(k.name for k in kinds)
        raise RemoteProtocolError(f"expected {wanted}, got {msg.type.name}")
    return msg


def parse_leave(body: bytes) -> None:
    """The responder's check of a body sent to ``LEAVE_PATH``: a ``LEAVE``, or
    RemoteProtocolError."""
    expect(body, MessageType.LEAVE)


LEAVE = Message(MessageType.LEAVE).encode()
LEAVE_REPLY = Message(MessageType.LEAVE_REPLY).encode()
