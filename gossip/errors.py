"""The errors an operation refuses with, whichever surface asked (local API, CLI, Python
client, embedder). Each carries the HTTP status the local API answers with and the name
of the field that was wrong, so every surface says the same thing the same way.

    GossipError (crdt.errors)       root of every error sm-gossip raises on purpose
    └── OpError                     an operation refused; ``status`` and ``field``
        ├── Invalid          400    a parameter is malformed or out of range
        ├── Unauthorized     401    no valid bearer token (the local API over TCP)
        ├── Forbidden        403    the caller may not do this
        ├── NotFound         404    an id, prefix or name names nothing
        ├── Conflict         409    the state forbids it now (another host's memory, a
        │                           revoked key, a rotation in progress)
        ├── TooLarge         413    a body or file over its limit
        └── Unavailable      503    the node cannot answer now (not running, busy)
    └── Unreachable                 nobody answered at all: no daemon, a stale socket, a
                                    time-out (a client's cue for degraded mode)

The errors of the replicated state (``RecordError``, ``RejectedUpdate``, ``StoreError``,
…) stay in ``crdt.errors``; this module re-exports the root so that callers of ``gossip``
catch one ``GossipError``.
"""

from __future__ import annotations

from crdt.errors import GossipError

__all__ = [
    "Conflict",
    "Forbidden",
    "GossipError",
    "Invalid",
    "NotFound",
    "OpError",
    "TooLarge",
    "Unauthorized",
    "Unavailable",
    "Unreachable",
]


class OpError(GossipError):
    """An operation refused; ``status`` is the HTTP status the local API answers with,
    ``field`` the parameter that was wrong (None when no one field was)."""

    status = 400

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


class Invalid(OpError):
    """A parameter is malformed, missing, unknown or out of range."""

    status = 400


class Unauthorized(OpError):
    """No valid bearer token (the local API over TCP)."""

    status = 401


class Forbidden(OpError):
    """The caller may not do this."""

    status = 403


class NotFound(OpError):
    """An id, prefix or name given by the caller names nothing here."""

    status = 404


class Conflict(OpError):
    """What is held here forbids it now (another host's memory, a revoked key, …)."""

    status = 409


class TooLarge(OpError):
    """A body or file is over its limit."""

    status = 413


class Unavailable(OpError):
    """The node cannot answer now (not running, the replica busy); try again."""

    status = 503


class Unreachable(GossipError):
    """Nobody answered: no daemon runs, its socket is stale, or it did not answer in time.
    Not an ``OpError``: no operation refused anything."""


BY_STATUS: dict[int, type[OpError]] = {
    c.status: c
    for c in (Invalid, Unauthorized, Forbidden, NotFound, Conflict, TooLarge, Unavailable)
}


def from_status(status: int, message: str, field: str | None = None) -> OpError:
    """The error a refusal with HTTP ``status`` stands for (a remote call's, re-raised
    as the same class the operation raised in the daemon)."""
    error = BY_STATUS.get(status, OpError)(message, field)
    error.status = status
    return error
