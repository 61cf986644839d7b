"""One exchange, sans I/O: the initiator's and the responder's side of a push-pull.

Theory of operation (push-pull anti-entropy over *signed* updates, docs/protocol.md):

1. The initiator sends ``SYNC``: its state vector, plus the signed updates the responder
   lacks according to the last state vector the initiator saw from it (often none).
2. The responder ingests what came, and answers ``SYNC_REPLY``: its state vector (after
   ingesting) and the signed updates the initiator lacks according to the initiator's
   state vector.
3. The initiator ingests those. If the reply's state vector shows the responder still
   lacks something the initiator has, it sends ``PUSH`` with exactly that, and the
   responder answers ``PUSH_REPLY`` with its new state vector.

A ``PUSH`` names the state vector the sender believes the receiver has (its *base*: the
one of the reply just received, or for an eager push the sender's own without what it
pushes, ``before``) by its digest, and carries only where the sender's differs from it;
the receiver, if its own state vector (before it ingests) hashes the same, rebuilds the
sender's and answers ``PUSH_REPLY`` with only where its new one differs from that
(nothing, when the push taught it exactly what the sender had). If not, it answers
``SYNC_REPLY`` with its whole state vector, as to a ``DIGEST`` that did not match: a
stale base costs bytes, never correctness (the updates are taken in either way).

Idle peers should cost almost nothing, and a state vector grows with every writer that
ever existed (about 10 bytes each), while a mesh at rest has one state vector everywhere.
So an initiator may open with only ``DIGEST`` (a hash of its state vector; the gossiper
always does); the responder answers ``SAME`` when its own hashes the same, and otherwise
a ``SYNC_REPLY`` with its state vector and no updates, after which the initiator goes on
with step 1 (or straight to the ``PUSH`` of step 3). Two peers in sync thus finish after
one request of a few dozen bytes of body. Updates always travel as the author's original
signed bytes; nothing is re-encoded. ``PUSH`` is also how a fresh update is pushed
eagerly (DESIGN.md "Eager push").

The rules of this file: it reads the replica (``LocalView``: a state vector, the updates
a peer lacks) but never writes to it. What arrived is handed back as an ``Ingest`` for
the driver to run where the replica lives (a worker thread, or the simulator's host),
and the driver feeds the outcomes back. A peer's bytes become messages at two entry
points only, ``Initiator.receive`` (its answers) and ``parse_request`` (its requests);
malformed input raises ``RemoteProtocolError`` there, before anything is ingested.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from crdt import Outcome, SignedUpdate, UpdateError

from .messages import (
    DEFAULT_MESSAGE_BYTES,
    MAGIC,
    PUSH_PATH,
    SYNC_PATH,
    Message,
    MessageType,
    ProtocolError,
    RemoteProtocolError,
    expect,
    fit,
    lacks,
    sv_apply,
    sv_diff,
    sv_digest,
)


class LocalView(Protocol):
    """What an exchange reads of the replica (``crdt.Replica`` provides it)."""

    def state_vector(self) -> dict[int, int]: ...

    def updates_for(self, peer_sv: dict[int, int]) -> Iterable[bytes]:
        """What a peer at ``peer_sv`` lacks, in order. An exchange takes only the part
        that fits one message, so an iterator read lazily serves a backlog in linear
        time (``Replica.iter_updates_for``); a list does too."""
        ...


# The name of earlier releases, when the exchange also ingested.
LocalState = LocalView


@dataclass(frozen=True)
class Ingest:
    """Effect: offer these signed updates from ``source`` to the replica's gate, then
    hand the outcomes back (``Initiator.ingested``, ``answer``)."""

    updates: tuple[bytes, ...]
    source: str


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

    @property
    def rejected(self) -> list[Outcome]:
        return [o for o in self.received if o.status == "rejected"]


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
        ingest = ex.receive(answer)                   # RemoteProtocolError on junk
        outcomes = replica.ingest_batch(ingest.updates, source=ingest.source)
        request = ex.ingested(outcomes)               # the next request, or None

    ``digest_first``: open with a ``DIGEST`` (one more round trip when something changed,
    none of the state vectors when nothing did). ``peer_sv``: a hint of what the peer
    holds; the ``SYNC`` then carries what the hint says it lacks (duplicates if others
    gave it to the peer since, so drivers that gossip widely leave it out and rely on
    the ``PUSH`` leg).
    """

    def __init__(
        self,
        local: LocalView,
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
        self._stated: dict[int, int] = {}  # our state vector as the last PUSH stated it
        self._sent: MessageType | None = None
        self._reply: tuple[MessageType, Message] | None = None  # awaiting ``ingested``

    def start(self) -> Request:
        ours = self.local.state_vector()
        self.result.ours = ours
        if self.digest_first:
            return self._send(SYNC_PATH, Message(MessageType.DIGEST, digest=sv_digest(ours)))
        return self._sync(ours, self.peer_sv_hint)

    def receive(self, body: bytes) -> Ingest:
        """The peer's answer to the last request: what it carries for the replica (maybe
        nothing). RemoteProtocolError if it is malformed or not the answer expected."""
        sent = self._sent
        if sent is None or self._reply is not None:
            raise ProtocolError("receive() without a request in flight")
        if sent is MessageType.PUSH:
            reply = expect(body, MessageType.PUSH_REPLY, MessageType.SYNC_REPLY)
        elif sent is MessageType.DIGEST:
            reply = expect(body, MessageType.SYNC_REPLY, MessageType.SAME)
        else:
            reply = expect(body, MessageType.SYNC_REPLY)
        self._sent, self._reply = None, (sent, reply)
        if reply.type is MessageType.SAME:
            self.result.peer_sv = dict(self.result.ours)
        elif sent is MessageType.PUSH:
            self.result.peer_sv = after_push(reply, self._stated)
        else:
            self.result.peer_sv = reply.state_vector
        return Ingest(reply.updates, self.source)

    def ingested(self, outcomes: Sequence[Outcome]) -> Request | None:
        """What became of the last ``Ingest``; the next request, or None when done."""
        if self._reply is None:
            raise ProtocolError("ingested() without a received answer")
        (sent, reply), self._reply = self._reply, None
        self.result.received += outcomes
        if sent is MessageType.PUSH or reply.type is MessageType.SAME:
            return None  # at most one PUSH: what it left out goes in the next exchange
        ours = self.local.state_vector()
        self.result.ours = ours
        if sent is MessageType.DIGEST and lacks(reply.state_vector, ours):
            # The peer has news: now a SYNC, carrying what its state vector says it lacks.
            return self._sync(ours, reply.state_vector)
        if not lacks(ours, reply.state_vector):
            return None
        lacked = (u for u in self.local.updates_for(reply.state_vector) if u not in self._pushed)
        missing, _ = fit(lacked, self.max_message_bytes)  # the rest: in the next exchange
        if not missing:
            return None
        self.result.sent += len(missing)
        self._stated = ours
        return self._send(PUSH_PATH, push(ours, missing, base=reply.state_vector))

    def _sync(self, ours: dict[int, int], theirs: dict[int, int] | None) -> Request:
        updates: list[bytes] = []
        if theirs is not None and lacks(ours, theirs):
            updates, _ = fit(self.local.updates_for(theirs), self.max_message_bytes)
        self._pushed.update(updates)
        self.result.sent += len(updates)
        return self._send(SYNC_PATH, Message(MessageType.SYNC, ours, tuple(updates)))

    def _send(self, path: str, msg: Message) -> Request:
        self._sent = msg.type
        self.result.requests += 1
        return Request(path, msg.encode())


def push(
    ours: dict[int, int], updates: Sequence[bytes], *, base: dict[int, int] | None = None
) -> Message:
    """A ``PUSH`` of ``updates`` by a host whose state vector is ``ours``: told as where it
    differs from ``base`` (what we believe the receiver holds) when we have one, else
    whole."""
    if base is None:
        return Message(MessageType.PUSH, ours, tuple(updates))
    return Message(MessageType.PUSH, sv_diff(ours, base), tuple(updates), sv_digest(base))


def before(ours: dict[int, int], updates: Sequence[bytes]) -> dict[int, int] | None:
    """Our state vector without ``updates`` (fresh ones of ours, or ones we just took in
    and pass on): in a mesh at rest, exactly what the peer we push them to holds. None
    if one of them is not a signed update (then the PUSH states ours whole)."""
    base = dict(ours)
    for raw in updates:
        try:
            header = SignedUpdate.decode(raw).header
        except UpdateError:
            return None
        if header.start < base.get(header.client, 0):
            base[header.client] = header.start
    return {c: k for c, k in base.items() if k}


def on_push_reply(body: bytes, ours: dict[int, int]) -> dict[int, int]:
    """The receiver's state vector, from its answer to our ``PUSH`` that stated ``ours``
    (RemoteProtocolError on junk)."""
    return after_push(expect(body, MessageType.PUSH_REPLY, MessageType.SYNC_REPLY), ours)


def after_push(reply: Message, ours: dict[int, int]) -> dict[int, int]:
    """A ``PUSH_REPLY`` says where the receiver differs from ``ours``; a ``SYNC_REPLY``
    (our base was not its state vector) gives its state vector whole."""
    if reply.type is MessageType.PUSH_REPLY:
        return sv_apply(ours, reply.state_vector)
    return reply.state_vector


# -- the responder -------------------------------------------------------------------------

_ENDPOINTS = {
    SYNC_PATH: (MessageType.SYNC, MessageType.DIGEST),
    PUSH_PATH: (MessageType.PUSH,),
}


@dataclass(frozen=True)
class Incoming:
    """A peer's request, decoded and checked against its endpoint (``parse_request``)."""

    message: Message
    path: str
    # The initiator's state vector: a SYNC's, a PUSH's whole one or rebuilt from its base
    # (None: a DIGEST, or a PUSH whose base is not our state vector).
    peer_sv: dict[int, int] | None = None

    @property
    def updates(self) -> tuple[bytes, ...]:
        """What it carries for our replica (ingest before ``answer``)."""
        return self.message.updates

    @property
    def reads_only(self) -> bool:
        """A ``DIGEST``: answering it only reads, so it may jump queued ingests (peers
        checking whether we are in sync are then not kept waiting, and backing us off,
        during a large catch-up)."""
        return self.message.type is MessageType.DIGEST


def reads_only(body: bytes) -> bool:
    """Whether a request body is a ``DIGEST``, from its first bytes: a scheduling hint
    for a driver that parses requests where its replica lives (``Incoming.reads_only``),
    which ``parse_request`` then checks like any other body."""
    return len(body) > 4 and body[:3] == MAGIC and body[4] == MessageType.DIGEST


def parse_request(
    body: bytes, *, path: str | None = None, local: LocalView | None = None
) -> Incoming:
    """The responder's entry point: a peer's ``SYNC``, ``DIGEST`` or ``PUSH``, or
    RemoteProtocolError.

    ``path``: the endpoint the body came to. When given, it must be the message's own
    (``SYNC`` and ``DIGEST`` on ``SYNC_PATH``, ``PUSH`` on ``PUSH_PATH``); a mismatch is
    refused before anything is ingested. Without it, the message's type decides.

    ``local``: our replica *before* it ingests the request, against which a ``PUSH``'s
    base is checked (without it, a base never matches: the answer is then a whole
    state vector)."""
    msg = Message.decode(body)
    wanted = next((p for p, types in _ENDPOINTS.items() if msg.type in types), None)
    if wanted is None:
        raise RemoteProtocolError(f"{msg.type.name} is not a request")
    if path is not None and path != wanted:
        raise RemoteProtocolError(f"a {msg.type.name} goes to {wanted}, not {path[:100]!r}")
    peer_sv: dict[int, int] | None = msg.state_vector
    if msg.type is MessageType.DIGEST:
        peer_sv = None
    elif msg.type is MessageType.PUSH and msg.digest:
        ours = local.state_vector() if local is not None else None
        known = ours is not None and sv_digest(ours) == msg.digest
        peer_sv = sv_apply(ours, msg.state_vector) if ours is not None and known else None
    return Incoming(msg, wanted, peer_sv)


@dataclass(frozen=True)
class Response:
    """The responder's answer, and what the request did (for the gossiper)."""

    body: bytes
    received: list[Outcome]
    peer_sv: dict[int, int] | None  # the initiator's state vector, when the request said
    path: str = SYNC_PATH
    ours: dict[int, int] = field(default_factory=dict)  # our state vector, answered
    # A SYNC_REPLY that carries every update the initiator lacked (none was left out for
    # the size budget): once it takes them in, it holds ``ours``.
    complete: bool = True

    @property
    def new_updates(self) -> list[bytes]:
        """Signed updates this request added to our replica (to pass on)."""
        return [o.update.raw for o in self.received if o.status == "applied" and o.update]


def answer(
    local: LocalView,
    request: Incoming,
    received: Sequence[Outcome] = (),
    *,
    max_reply_bytes: int = DEFAULT_MESSAGE_BYTES,
) -> Response:
    """The answer to ``request``, once its updates were ingested (``received``: their
    outcomes). A ``SYNC_REPLY`` carries at most ``max_reply_bytes`` of updates; the
    initiator, still behind our state vector, takes the rest in its next exchanges."""
    msg, path = request.message, request.path
    ours = local.state_vector()
    if msg.type is MessageType.DIGEST:
        if sv_digest(ours) == msg.digest:
            return Response(Message(MessageType.SAME).encode(), [], ours, path, ours)
        # Different, and we cannot tell what it lacks: our state vector lets it decide.
        return Response(Message(MessageType.SYNC_REPLY, ours).encode(), [], None, path, ours)
    received = list(received)
    theirs = request.peer_sv
    if msg.type is MessageType.PUSH:
        if theirs is None:  # its base was not our state vector: ours whole
            return Response(Message(MessageType.SYNC_REPLY, ours).encode(), received, None,
                            path, ours)  # fmt: skip
        reply = Message(MessageType.PUSH_REPLY, sv_diff(ours, theirs))
        return Response(reply.encode(), received, theirs, path, ours)
    # The initiator now holds what it sent us, so its state vector covers it.
    assert theirs is not None
    missing = local.updates_for(theirs) if lacks(ours, theirs) else []
    updates, whole = fit(missing, max_reply_bytes)
    reply = Message(MessageType.SYNC_REPLY, ours, tuple(updates))
    return Response(reply.encode(), received, theirs, path, ours, whole)
