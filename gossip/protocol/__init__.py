"""The peer protocol, sans I/O: no sockets, no clock, no thread of its own.

- ``messages.py`` — the wire format: messages, their codec, state-vector arithmetic.
- ``exchange.py`` — one push-pull exchange: ``Initiator`` (our side), ``parse_request``
  and ``answer`` (the responder's); they read the replica, never write it (``Ingest``).
- ``gossiper.py`` — the replication policy: rounds, peer choice, eager push and relay,
  what answers and failures do; inputs in, effects (``Exchange``, ``Push``) out.

Every driver — ``gossip.node.Node`` over a ``Transport``, ``gossip.sim`` over its
simulated network, the tests by hand — runs this same code (like h11's ``Connection``).

Errors: a malformed message from a peer raises ``RemoteProtocolError`` (a transport
answers it with 400); a message of a version we do not speak raises
``UnsupportedVersion`` (answered with 400 and the versions we speak).
"""

from __future__ import annotations

from .exchange import (
    ExchangeResult,
    Incoming,
    Ingest,
    Initiator,
    LocalState,
    LocalView,
    Request,
    Response,
    answer,
    on_push_reply,
    parse_request,
    push,
    reads_only,
)
from .gossiper import Exchange, Failure, Gossiper, Leave, Push, Settings
from .messages import (
    DEFAULT_MESSAGE_BYTES,
    DIGEST_BYTES,
    LEAVE_PATH,
    LEAVE_REPLY,
    MAGIC,
    PUSH_PATH,
    SUPPORTED_VERSIONS,
    SYNC_PATH,
    VERSION,
    Message,
    MessageType,
    ProtocolError,
    RemoteProtocolError,
    UnsupportedVersion,
    expect,
    fit,
    lacks,
    parse_leave,
    sv_apply,
    sv_diff,
    sv_digest,
)

__all__ = [
    "DEFAULT_MESSAGE_BYTES",
    "DIGEST_BYTES",
    "LEAVE_PATH",
    "LEAVE_REPLY",
    "MAGIC",
    "PUSH_PATH",
    "SUPPORTED_VERSIONS",
    "SYNC_PATH",
    "VERSION",
    "Exchange",
    "ExchangeResult",
    "Failure",
    "Gossiper",
    "Incoming",
    "Ingest",
    "Initiator",
    "Leave",
    "LocalState",
    "LocalView",
    "Message",
    "MessageType",
    "ProtocolError",
    "Push",
    "RemoteProtocolError",
    "Request",
    "Response",
    "Settings",
    "UnsupportedVersion",
    "answer",
    "expect",
    "fit",
    "lacks",
    "on_push_reply",
    "parse_leave",
    "parse_request",
    "push",
    "reads_only",
    "sv_apply",
    "sv_diff",
    "sv_digest",
]
