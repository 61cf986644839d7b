"""Every error ``gossip`` raises on purpose. The operations' refusals (``OpError`` and
below) are what every surface says to a caller, whichever surface asked (local API, CLI,
Python client, embedder): each carries the HTTP status the local API answers with and
the name of the field that was wrong. The rest are the peer protocol's and the files'.

    GossipError (crdt.errors)       root of every error sm-gossip raises on purpose
    └── OpError                     an operation refused; ``status``, ``field``, ``code``
        ├── Invalid          400    a parameter is malformed or out of range
        ├── Unauthorized     401    no valid bearer token (the local API over TCP)
        ├── Forbidden        403    the caller may not do this
        ├── NotFound         404    an id, prefix or name names nothing
        ├── NotAllowed       405    the route has no such method
        ├── Conflict         409    the state forbids it now (another host's memory, a
        │                           revoked key, a rotation in progress)
        ├── TooLarge         413    a body or file over its limit
        └── Unavailable      503    the node cannot answer now (not running, busy)
    ├── Unreachable                 nobody answered at all: no daemon, a stale socket, a
    │                               time-out (a client's cue for degraded mode)
    ├── ProtocolError
    │   └── RemoteProtocolError     a peer's message is malformed (answered 400)
    │       └── UnsupportedVersion
    ├── AuthError                   a peer's request or answer failed authentication
    │   ├── RequestUnauthorized 401 (``auth.Unauthorized``): bad, old or replayed signature
    │   │   └── BadSignature
    │   └── RequestForbidden    403 (``auth.Forbidden``): a key outside our keyring
    ├── PeerError                   an exchange failed; the peer is backed off
    │   ├── PeerUnreachable         no answer
    │   ├── PeerRefused             an error status (``status``, ``key_hint``)
    │   └── PeerMisbehaved          unsigned, forged, wrong key, malformed
    │       └── PeerUntrusted       it proved a key outside our keyring
    ├── TlsSetupError               the TLS certificate cannot be written or loaded
    ├── InviteError                 an invitation token is bad, unknown, expired or used
    ├── ExportError                 a file is not an sm-gossip export
    ├── DiscoveryError              a discovery source cannot be read
    ├── EventBudgetExceeded         a simulation ran past its event budget
    ├── ConfigError                 a config file or setting is unusable
    │   └── ListenerBusy            an address to listen on is taken (also an OSError)
    └── CliError                    a command cannot do what it was asked

The errors of the replicated state (``RecordError``, ``RejectedUpdate``, ``StoreError``,
…) are drawn in ``crdt.errors``; this module re-exports the root so that callers of
``gossip`` catch one ``GossipError``. The modules that raise these classes re-export
the ones their callers catch (``transport.PeerError``, ``auth.Unauthorized``, …).
"""

from __future__ import annotations

import re

from crdt.errors import GossipError

__all__ = [
    "AuthError",
    "BadSignature",
    "CliError",
    "ConfigError",
    "Conflict",
    "DiscoveryError",
    "EventBudgetExceeded",
    "ExportError",
    "Forbidden",
    "GossipError",
    "Invalid",
    "InviteError",
    "ListenerBusy",
    "NotAllowed",
    "NotFound",
    "OpError",
    "PeerError",
    "PeerMisbehaved",
    "PeerRefused",
    "PeerUnreachable",
    "PeerUntrusted",
    "ProtocolError",
    "RemoteProtocolError",
    "RequestForbidden",
    "RequestUnauthorized",
    "TlsSetupError",
    "TooLarge",
    "Unauthorized",
    "Unavailable",
    "Unreachable",
    "UnsupportedVersion",
]


class OpError(GossipError):
    """An operation refused; ``status`` is the HTTP status the local API answers with,
    ``field`` the parameter that was wrong (None when no one field was), ``code`` the
    machine-readable name of the refusal, derived from the class name once, here
    (``NotFound`` -> ``not_found``): what a client matches on, never the message."""

    status = 400
    code = "error"

    def __init_subclass__(cls, status: int = 0, **kwargs: object) -> None:
        super().__init_subclass__(**kwargs)
        if status:
            cls.status = status
        cls.code = re.sub(r"(?<!^)(?=[A-Z])", "_", cls.__name__).lower()

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


class Invalid(OpError, status=400):
    """A parameter is malformed, missing, unknown or out of range."""


class Unauthorized(OpError, status=401):
    """No valid bearer token (the local API over TCP)."""


class Forbidden(OpError, status=403):
    """The caller may not do this."""


class NotFound(OpError, status=404):
    """An id, prefix or name given by the caller names nothing here."""


class NotAllowed(OpError, status=405):
    """The route exists, but not with this method."""


class Conflict(OpError, status=409):
    """What is held here forbids it now (another host's memory, a revoked key, …)."""


class TooLarge(OpError, status=413):
    """A body or file is over its limit."""


class Unavailable(OpError, status=503):
    """The node cannot answer now (not running, the replica busy); try again."""


class Unreachable(GossipError):
    """Nobody answered: no daemon runs, its socket is stale, or it did not answer in time.
    Not an ``OpError``: no operation refused anything."""


# -- the peer protocol and its transport (gossip.protocol, gossip.transport, auth) --------


class ProtocolError(GossipError):
    """A message broke the exchange protocol."""


class RemoteProtocolError(ProtocolError):
    """The peer sent something malformed (answered with a 4xx, never a crash)."""


class UnsupportedVersion(RemoteProtocolError):
    """The peer speaks a protocol version we do not."""


class AuthError(GossipError):
    """A peer's request or response failed authentication."""

    status = 401


class RequestUnauthorized(AuthError):
    """Missing, malformed, expired, forged or replayed signature: HTTP 401."""

    status = 401


class BadSignature(RequestUnauthorized):
    """The signature does not verify (for this recipient): HTTP 401."""


class RequestForbidden(AuthError):
    """A well-identified key that is not in our keyring: HTTP 403."""

    status = 403


class PeerError(GossipError):
    """An exchange with a peer failed; the peer table backs it off."""


class PeerUnreachable(PeerError):
    """No answer: refused, reset, timed out, unresolvable."""


class PeerRefused(PeerError):
    """The peer answered with an error status (its message is in ``str(e)``).

    ``key_hint``: the public id a 401 answer named in its ``Sm-Key`` header (the key the
    server says it has; unauthenticated), or None."""

    def __init__(self, status: int, message: str, key_hint: str | None = None) -> None:
        self.status = status
        self.key_hint = key_hint
        super().__init__(f"peer answered {status}: {message}")


class PeerMisbehaved(PeerError):
    """The peer's answer was unsigned, forged, from the wrong key, or malformed."""


class PeerUntrusted(PeerMisbehaved):
    """The peer proved (or named) a key outside our keyring: its row is ``unknown-key``."""


class TlsSetupError(GossipError):
    """The TLS certificate could not be written or loaded."""


# -- files and sources ----------------------------------------------------------------


class InviteError(GossipError):
    """A token that is malformed, unknown here, expired or already used."""


class ExportError(GossipError):
    """A file is not an sm-gossip export (bad magic, unknown version, truncated)."""


class DiscoveryError(GossipError):
    """A discovery source could not be read (bad ``tailscale status`` output, ...)."""


class EventBudgetExceeded(GossipError):
    """A simulation ran more events than it was allowed (a livelock, or a bound too low)."""


REFUSALS = (Invalid, Unauthorized, Forbidden, NotFound, NotAllowed, Conflict, TooLarge,
            Unavailable)
BY_STATUS: dict[int, type[OpError]] = {c.status: c for c in REFUSALS}
BY_CODE: dict[str, type[OpError]] = {c.code: c for c in REFUSALS}
CODES = (OpError.code, *BY_CODE)  # every ``code`` an error answer may carry


def code_of(status: int) -> str:
    """The ``code`` of an error answer with HTTP ``status`` that no ``OpError`` raised
    (an unknown route, a timeout): its class's, or ``error``."""
    return BY_STATUS[status].code if status in BY_STATUS else OpError.code


def from_status(status: int, message: str, field: str | None = None,
                code: str | None = None) -> OpError:  # fmt: skip
    """The error a refusal with HTTP ``status`` (and ``code``, when the answer has one)
    stands for: a remote call's, re-raised as the same class the operation raised in the
    daemon."""
    cls = BY_CODE.get(code or "") or BY_STATUS.get(status, OpError)
    error = cls(message, field)
    error.status = status
    return error


class ConfigError(GossipError):
    """The config file or a setting given on the command line is not usable."""


class ListenerBusy(ConfigError, OSError):
    """An address this node should listen on is taken (another server, another `gossip
    serve`); the message names the address and the setting that changes it. Also an
    ``OSError``, as the bind error it replaces was (embedders may catch that)."""


class CliError(GossipError):
    """Something the user asked for cannot be done; the message says why."""
