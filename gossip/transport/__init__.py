"""How peers reach each other: signed requests and responses (``auth``, sans I/O), the
rules every transport shares (``endpoints``: the endpoints, serving, the client
contract), and the two transports that run them: ``http`` (aiohttp over TLS pinned to
host keys: ``tls``; the accept loop with its connection caps: ``listener``) and
``memnet`` (an in-process network for tests and the simulator).

Nothing here decides what to send or what an answer means: that is the gossiper's
(``gossip.protocol``). Nothing here touches a replica.
"""

from __future__ import annotations

from .endpoints import (
    CONTENT_TYPE,
    JOIN_PATH,
    MAX_RESPONSE_BYTES,
    PATHS,
    PUSH_PATH,
    SYNC_PATH,
    Endpoint,
    PeerError,
    PeerMisbehaved,
    PeerRefused,
    PeerUnreachable,
    PeerUntrusted,
    Reply,
    ServerLimits,
    Transport,
    TransportFactory,
    check_response,
    error_reply,
    request_with_retry,
    serve,
    sign_request,
)

__all__ = ["CONTENT_TYPE", "JOIN_PATH", "MAX_RESPONSE_BYTES", "PATHS", "PUSH_PATH", "SYNC_PATH",
           "Endpoint", "PeerError",
           "PeerMisbehaved", "PeerRefused", "PeerUnreachable", "PeerUntrusted", "Reply",
           "ServerLimits", "Transport", "TransportFactory", "check_response", "error_reply",
           "request_with_retry", "serve", "sign_request"]  # fmt: skip
