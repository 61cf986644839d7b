"""The exchange protocol, sans I/O: messages in, messages out; no sockets, no clock.

Theory of operation (push-pull anti-entropy over *signed* updates, docs/protocol.md):

1. The initiator sends ``SYNC``: its state vector, plus the signed updates the responder
   lacks according to the last state vector the initiator saw from it (often none).
2. The responder ingests what came, and answers ``SYNC_REPLY``: its state vector (after
   ingesting) and the signed updates the initiator lacks according to the initiator's
   state vector.
3. The initiator ingests those. If the reply's state vector shows the responder still
   lacks something the initiator has, it sends ``PUSH`` with exactly that, and the
   responder answers ``PUSH_REPLY`` with its new state vector.

Idle peers should cost almost nothing, and a state vector grows with every writer that
ever existed (about 10 bytes each), while a mesh at rest has one state vector everywhere.
So an initiator may open with only ``DIGEST`` (a hash of its state vector; a ``Node``
always does); the responder answers ``SAME`` when its own hashes the same, and otherwise
a ``SYNC_REPLY`` with its state vector and no updates, after which the initiator goes on
with step 1 (or straight to the ``PUSH`` of step 3). Two peers in sync thus finish after
one request of a few dozen bytes of body. Updates always travel as the author's original
signed bytes; nothing is re-encoded. ``PUSH`` is also how a fresh update is pushed eagerly
(DESIGN.md "Eager push").

Everything here is driven by a caller that owns the I/O (the aiohttp transport, the
in-memory network, a simulator). The replica behind ``LocalState`` does the ingesting;
this module only decides what to send and what to hand it.

Errors: a malformed message from a peer raises ``RemoteProtocolError`` (a transport
answers it with 400); a message of a version we do not speak raises
``UnsupportedVersion`` (answered with 400 and the versions we speak).
"""

from __future__ import annotations

import enum
import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

from crdt import GossipError, Outcome, UpdateError, wire

VERSION = 1
SUPPORTED_VERSIONS = (1,)
# No message carries more signed updates than fit in this many bytes: a peer's body limit
# must never stall replication (a delta too big for one message arrives over several
# exchanges, each making progress, since updates go out oldest first per client).
DEFAULT_MESSAGE_BYTES = 4 * 1024 * 1024
MAGIC = b"SMG"  # every message starts with it, then the version byte, then the type
SYNC_PATH = "/v1/sync"  # takes SYNC (or DIGEST), answered with SYNC_REPLY (or SAME)
PUSH_PATH = "/v1/push"  # takes PUSH, answered with PUSH_REPLY


class ProtocolError(GossipError):
    """A message broke the exchange protocol."""


class RemoteProtocolError(ProtocolError):
    """The peer sent something malformed (answered with a 4xx, never a crash)."""


class UnsupportedVersion(RemoteProtocolError):
    """The peer speaks a protocol version we do not."""


class MessageType(enum.IntEnum):
    SYNC = 1
    SYNC_REPLY = 2
    PUSH = 3
    PUSH_REPLY = 4
    DIGEST = 5  # "is your state vector the one hashing to this?"
    SAME = 6  # "yes": the answer to a DIGEST between peers in sync


DIGEST_BYTES = 32


def sv_digest(sv: dict[int, int]) -> bytes:
    """SHA-256 of the state vector encoded with clients ascending and zero clocks left
    out: equal state vectors, equal digests, whatever order each side keeps them in."""
    return hashlib.sha256(wire.encode_state_vector(_normal(sv))).digest()


def _normal(sv: dict[int, int]) -> dict[int, int]:
    return {c: k for c, k in sorted(sv.items()) if k}


@dataclass(frozen=True)
class Message:
    """One protocol message: a state vector (may be empty) and signed updates (raw); a
    ``DIGEST`` carries the digest of a state vector in its place, a ``SAME`` nothing."""

    type: MessageType
    state_vector: dict[int, int] = field(default_factory=dict)
    updates: tuple[bytes, ...] = ()
    digest: bytes = b""

    def encode(self) -> bytes:
        """``MAGIC version type || varuint len(sv) sv || varuint n (varuint len update)*``"""
        if self.type is MessageType.DIGEST:
            sv = self.digest
        elif self.type is MessageType.SAME:
            sv = b""
        else:
            sv = wire.encode_state_vector(self.state_vector)
        out = bytearray(MAGIC + bytes([VERSION, self.type]))
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
            n, pos = wire.read_varuint(data, 5)
            if pos + n > len(data):
                raise RemoteProtocolError("message ends inside its state vector")
            digest, sv = b"", {}
            if kind is MessageType.DIGEST:
                if n != DIGEST_BYTES:
                    raise RemoteProtocolError(f"a DIGEST carries {DIGEST_BYTES} bytes, not {n}")
                digest = data[pos : pos + n]
            elif kind is MessageType.SAME:
                if n:
                    raise RemoteProtocolError("a SAME carries no state vector")
            else:
                sv = wire.decode_state_vector(data[pos : pos + n])
            pos += n
            count, pos = wire.read_varuint(data, pos)
            if count > max_updates or count > len(data) - pos:
                raise RemoteProtocolError("message claims more updates than it holds")
            if count and kind in (MessageType.DIGEST, MessageType.SAME):
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


class LocalState(Protocol):
    """What the protocol needs of a replica (``crdt.Replica`` provides it)."""

    def state_vector(self) -> dict[int, int]: ...

    def updates_for(self, peer_sv: dict[int, int]) -> list[bytes]: ...

    def ingest_batch(self, updates: Sequence[bytes], *, source: str = "") -> list[Outcome]: ...


def fit(updates: Sequence[bytes], budget: int) -> list[bytes]:
    """The longest prefix of ``updates`` within ``budget`` bytes (at least one update,
    so that one update larger than the budget still moves, or is refused visibly)."""
    out: list[bytes] = []
    total = 0
    for u in updates:
        total += len(u) + 10
        if out and total > budget:
            break
        out.append(u)
    return out


def lacks(ours: dict[int, int], theirs: dict[int, int]) -> bool:
    """Does a peer with state vector ``theirs`` lack anything we have?"""
    return any(clock > theirs.get(client, 0) for client, clock in ours.items())


@dataclass
class ExchangeResult:
    """What one exchange did, for the peer table and the log."""

    received: list[Outcome] = field(default_factory=list)  # outcomes of what we ingested
    sent: int = 0  # signed updates we sent
    peer_sv: dict[int, int] = field(default_factory=dict)
    ours: dict[int, int] = field(default_factory=dict)  # our state vector at the end
    requests: int = 0

    @property
    def learned(self) -> int:
        return sum(o.status == "applied" for o in self.received)


@dataclass(frozen=True)
class Request:
    """A message for the initiator's driver to send: ``body`` to ``path``."""

    path: str
    body: bytes


class Initiator:
    """Our side of one push-pull exchange: at most three requests. Drive it::

    ex = Initiator(replica, source="peer-id", digest_first=met_before)
    request = ex.start()
    while request is not None:
        answer = send(request.path, request.body)
        request = ex.receive(answer)      # ingests what came; the next request or None

    ``digest_first``: open with a ``DIGEST`` (one more round trip when something changed,
    none of the state vectors when nothing did). ``peer_sv``: a
    hint of what the peer holds; the ``SYNC`` then carries what the hint says it lacks
    (duplicates if others gave it to the peer since, so drivers that gossip widely leave
    it out and rely on the ``PUSH`` leg).
    """

    def __init__(
        self,
        local: LocalState,
        *,
        source: str,
        peer_sv: dict[int, int] | None = None,
        digest_first: bool = False,
        max_message_bytes: int = DEFAULT_MESSAGE_BYTES,
    ) -> None:
        self.local = local
        self.source = source
        self.peer_sv_hint = peer_sv
        self.digest_first = digest_first
        self.max_message_bytes = max_message_bytes
        self.result = ExchangeResult()
        self._pushed: set[bytes] = set()
        self._sent: MessageType | None = None

    def start(self) -> Request:
        ours = self.local.state_vector()
        self.result.ours = ours
        if self.digest_first:
            return self._send(SYNC_PATH, Message(MessageType.DIGEST, digest=sv_digest(ours)))
        return self._sync(ours, self.peer_sv_hint)

    def receive(self, body: bytes) -> Request | None:
        """The answer to the last request: ingest what it carries; what to send next."""
        sent, self._sent = self._sent, None
        if sent is None:
            raise ProtocolError("receive() without a request in flight")
        if sent is MessageType.PUSH:
            self.result.peer_sv = _expect(body, MessageType.PUSH_REPLY).state_vector
            return None
        accepted = (MessageType.SYNC_REPLY, MessageType.SAME)
        reply = _expect(body, *(accepted if sent is MessageType.DIGEST else accepted[:1]))
        if reply.type is MessageType.SAME:
            self.result.peer_sv = dict(self.result.ours)
            return None
        self.result.peer_sv = reply.state_vector
        if reply.updates:
            self.result.received += self.local.ingest_batch(reply.updates, source=self.source)
        ours = self.local.state_vector()
        self.result.ours = ours
        if sent is MessageType.DIGEST and lacks(reply.state_vector, ours):
            # The peer has news: now a SYNC, carrying what its state vector says it lacks.
            return self._sync(ours, reply.state_vector)
        if not lacks(ours, reply.state_vector):
            return None
        missing = [u for u in self.local.updates_for(reply.state_vector) if u not in self._pushed]
        missing = fit(missing, self.max_message_bytes)  # the rest: in the next exchange
        if not missing:
            return None
        self.result.sent += len(missing)
        return self._send(PUSH_PATH, Message(MessageType.PUSH, ours, tuple(missing)))

    def _sync(self, ours: dict[int, int], theirs: dict[int, int] | None) -> Request:
        updates: list[bytes] = []
        if theirs is not None and lacks(ours, theirs):
            updates = fit(self.local.updates_for(theirs), self.max_message_bytes)
        self._pushed.update(updates)
        self.result.sent += len(updates)
        return self._send(SYNC_PATH, Message(MessageType.SYNC, ours, tuple(updates)))

    def _send(self, path: str, msg: Message) -> Request:
        self._sent = msg.type
        self.result.requests += 1
        return Request(path, msg.encode())


def push_message(
    local: LocalState, updates: Sequence[bytes], *, max_bytes: int = DEFAULT_MESSAGE_BYTES
) -> bytes:
    """An eager ``PUSH`` of fresh signed updates (ours, or new ones we pass on); what does
    not fit in ``max_bytes`` is left to anti-entropy."""
    return Message(MessageType.PUSH, local.state_vector(), tuple(fit(updates, max_bytes))).encode()


def on_push_reply(body: bytes) -> dict[int, int]:
    """The state vector a peer answered a ``PUSH`` with."""
    return _expect(body, MessageType.PUSH_REPLY).state_vector


@dataclass(frozen=True)
class Response:
    """The responder's answer, and what it learned (to pass on by eager push)."""

    body: bytes
    received: list[Outcome]
    peer_sv: dict[int, int] | None  # the initiator's state vector, when the request said

    @property
    def new_updates(self) -> list[bytes]:
        """Signed updates this exchange added to our replica (to pass on)."""
        return [o.update.raw for o in self.received if o.status == "applied" and o.update]


_ENDPOINTS = {
    SYNC_PATH: (MessageType.SYNC, MessageType.DIGEST),
    PUSH_PATH: (MessageType.PUSH,),
}


def respond(
    local: LocalState,
    body: bytes,
    *,
    source: str,
    path: str | None = None,
    max_reply_bytes: int = DEFAULT_MESSAGE_BYTES,
) -> Response:
    """The responder's side of ``SYNC``, ``DIGEST`` and ``PUSH``. RemoteProtocolError on
    junk.

    A ``SYNC_REPLY`` carries at most ``max_reply_bytes`` of updates; the initiator, still
    behind our state vector, takes the rest in its next exchanges.

    ``path``: the endpoint the body came to. When given, it must be the message's own
    (``SYNC`` and ``DIGEST`` on ``SYNC_PATH``, ``PUSH`` on ``PUSH_PATH``); a mismatch is
    refused before anything is ingested. Without it, the message's type decides."""
    msg = Message.decode(body)
    wanted = next((p for p, types in _ENDPOINTS.items() if msg.type in types), None)
    if wanted is None:
        raise RemoteProtocolError(f"{msg.type.name} is not a request")
    if path is not None and path != wanted:
        raise RemoteProtocolError(f"a {msg.type.name} goes to {wanted}, not {path[:100]!r}")
    if msg.type is MessageType.DIGEST:
        ours = local.state_vector()
        if sv_digest(ours) == msg.digest:
            return Response(Message(MessageType.SAME).encode(), [], ours)
        # Different, and we cannot tell what it lacks: our state vector lets it decide.
        return Response(Message(MessageType.SYNC_REPLY, ours).encode(), [], None)
    received = local.ingest_batch(msg.updates, source=source) if msg.updates else []
    ours = local.state_vector()
    if msg.type is MessageType.PUSH:
        return Response(Message(MessageType.PUSH_REPLY, ours).encode(), received, msg.state_vector)
    # The initiator now holds what it sent us, so its state vector covers it.
    theirs = msg.state_vector
    updates = fit(local.updates_for(theirs), max_reply_bytes) if lacks(ours, theirs) else []
    reply = Message(MessageType.SYNC_REPLY, ours, tuple(updates))
    return Response(reply.encode(), received, theirs)


def _expect(body: bytes, *kinds: MessageType) -> Message:
    msg = Message.decode(body)
    if msg.type not in kinds:
        wanted = " or ".join(k.name for k in kinds)
        raise RemoteProtocolError(f"expected {wanted}, got {msg.type.name}")
    return msg
