"""The peer port's accept loop: who gets a connection, and for how long.

asyncio's own ``create_server`` accepts whatever is offered and keeps it for as long as
aiohttp does (an hour idle in aiohttp 3.14), and a process out of file descriptors stops
answering on every socket, the local API's too (issue 17: 115 idle TLS connections from a
stranger took a node with 128 descriptors off the air). This module owns the listening
socket instead and keeps these rules (the figures are ``transport.ServerLimits``'):

- Every connection is counted from its ``accept`` to the close of its socket. Over
  ``max_connections`` (never more than the file descriptor limit less ``FD_RESERVE``,
  which stays for the local API, the store and the node's own requests) a new one is
  closed at once.
- Until its TLS handshake proves a key in the keyring, a connection is *unauthenticated*,
  and those are capped apart: ``max_unauthenticated`` in all (never more than half of the
  connections, so outsiders never take the places of the trusted peers) and
  ``max_unauthenticated_per_address`` from one address. A handshake must finish within
  ``handshake_timeout``.
- A certificate outside the keyring (anybody can make one: the pinning anchor is
  public) may send one request, meant for ``/v1/join`` (``transport.serve`` answers 403
  to anything else, and ``http.py`` closes the connection after the answer), within
  ``stranger_timeout`` of its handshake, then it is closed whatever it is doing.
- A trusted connection must send its first request's headers within ``header_timeout``;
  between requests aiohttp closes it after ``idle_timeout`` (its keep-alive timeout, set
  by ``http.py``), which also bounds the headers of every later request.

Without TLS (``--insecure-plaintext``) a connection carries no key: every one counts as
authenticated (the total cap and the header and idle timeouts apply, not the per-address
caps), and only the request signatures tell a stranger.

It never reads or writes a byte of a request (aiohttp does) and never blocks: the
accept loop runs in a reader callback, each handshake in a task of its own, all of them
cancelled by ``close``.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import resource
import socket
import ssl
from collections import Counter
from collections.abc import Callable
from dataclasses import KW_ONLY, dataclass, field

from aiohttp import web
from aiohttp.web_protocol import RequestHandler

from .endpoints import ServerLimits
from .tls import peer_key

log = logging.getLogger(__name__)

FD_RESERVE = 64  # descriptors the peer port never takes: local API, store, logs, own requests
_ACCEPTS_PER_WAKE = 100  # as asyncio: a busy port does not starve the loop
_ACCEPT_PAUSE_S = 1.0  # after EMFILE/ENFILE: try again later, as asyncio does
_WARNING_EVERY_S = 60.0
_SSL_SHUTDOWN_S = 2.0  # a TLS close waits this long for the peer's close_notify (asyncio: 30)


def connection_budget(limits: ServerLimits, soft: int | None = None) -> tuple[int, int]:
    """(total, unauthenticated) connections this process can afford on the peer port,
    with ``soft`` descriptors (default: its RLIMIT_NOFILE now)."""
    if soft is None:
        soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    total = limits.max_connections
    if soft != resource.RLIM_INFINITY:
        total = min(total, soft - FD_RESERVE)
    total = max(total, 4)  # a tiny limit still lets a few peers in
    return total, max(1, min(limits.max_unauthenticated, total // 2))


@dataclass(eq=False)
class _Slot:
    """One accepted connection's place in the counts."""

    address: str
    unauthenticated: bool = True
    open: bool = True
    requests: int = 0
    handler: RequestHandler | None = None
    timer: asyncio.TimerHandle | None = None


class PeerServer(web.Server):
    """aiohttp's low-level server, telling the ``Listener`` when a connection is made
    (right after its TLS handshake, before any byte of a request is parsed) and lost."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.listener: Listener | None = None

    def connection_made(self, handler: RequestHandler, transport: asyncio.Transport) -> None:
        super().connection_made(handler, transport)
        if self.listener is not None:
            self.listener.made(handler, transport)

    def connection_lost(self, handler: RequestHandler, exc: BaseException | None = None) -> None:
        super().connection_lost(handler, exc)
        if self.listener is not None:
            self.listener.lost(handler)


@dataclass
class ListenerStats:
    accepted: int = 0
    refused: int = 0  # closed at accept: over a cap
    strangers: int = 0  # handshakes that proved a key outside the keyring
    timed_out: int = 0  # closed by the header or the stranger timeout
    open_by_address: Counter[str] = field(default_factory=Counter)  # unauthenticated only


@dataclass(eq=False)
class Listener:
    """Accepts on ``sock`` for ``server`` (module docstring). ``trusted(key)``: whether a
    certificate's key may hold a connection (the keyring, read at each handshake)."""

    server: PeerServer
    sock: socket.socket
    _: KW_ONLY
    ssl_context: Callable[[], ssl.SSLContext] | None  # read at each accept (it may change)
    handshake_timeout: float
    limits: ServerLimits
    trusted: Callable[[str], bool]
    backlog: int = 128
    stats: ListenerStats = field(default_factory=ListenerStats, init=False)
    _total: int = field(default=0, init=False)
    _unauthenticated: int = field(default=0, init=False)
    _slots: dict[RequestHandler, _Slot] = field(default_factory=dict, init=False)
    _tasks: set[asyncio.Task[None]] = field(default_factory=set, init=False)
    _resume: asyncio.TimerHandle | None = field(default=None, init=False)
    _next_warning: float = field(default=0.0, init=False)
    _loop: asyncio.AbstractEventLoop | None = field(default=None, init=False)
    _closed: bool = field(default=False, init=False)

    def __post_init__(self) -> None:
        self.max_total, self.max_unauthenticated = connection_budget(self.limits)
        self.server.listener = self

    @property
    def open_connections(self) -> int:
        return self._total

    def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self.sock.setblocking(False)
        self.sock.listen(self.backlog)
        self._loop.add_reader(self.sock.fileno(), self._accept)

    def close(self) -> None:
        """Stop accepting and drop the handshakes in progress (aiohttp closes the rest)."""
        if self._closed:
            return
        self._closed = True
        if self._resume is not None:
            self._resume.cancel()
        if self._loop is not None:
            with contextlib.suppress(ValueError, OSError):  # not registered (paused)
                self._loop.remove_reader(self.sock.fileno())
        self.sock.close()
        for task in self._tasks:
            task.cancel()

    async def wait_closed(self) -> None:
        while self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)

    # -- accepting --------------------------------------------------------------------

    def _accept(self) -> None:
        assert self._loop is not None
        for _ in range(_ACCEPTS_PER_WAKE):
            try:
                conn, addr = self.sock.accept()
            except (BlockingIOError, InterruptedError):
                return
            except ConnectionAbortedError:
                continue
            except OSError as e:
                if e.errno in (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM):
                    log.warning("the peer port cannot accept (%s): pausing %.0f s, %d open",
                                e.strerror, _ACCEPT_PAUSE_S, self._total)  # fmt: skip
                    self._loop.remove_reader(self.sock.fileno())
                    self._resume = self._loop.call_later(_ACCEPT_PAUSE_S, self._resume_accepting)
                else:
                    log.warning("the peer port cannot accept: %s", e)
                return
            address = str(addr[0]) if isinstance(addr, tuple) else str(addr)
            if not self._admit(address):
                self.stats.refused += 1
                conn.close()
                self._say_refused(address)
                continue
            self.stats.accepted += 1
            slot = _Slot(address)
            task = self._loop.create_task(self._connect(conn, slot))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    def _say_refused(self, address: str) -> None:
        """One WARNING a minute at most while connections are refused: a flood is news
        to the operator, each refused connection is not."""
        assert self._loop is not None
        now = self._loop.time()
        if now < self._next_warning:
            return
        self._next_warning = now + _WARNING_EVERY_S
        log.warning(
            "refusing peer connections (%d so far), e.g. from %s: %d open (cap %d), %d "
            "unauthenticated (cap %d, %d per address)", self.stats.refused, address,
            self._total, self.max_total, self._unauthenticated, self.max_unauthenticated,
            self.limits.max_unauthenticated_per_address,
        )  # fmt: skip

    def _resume_accepting(self) -> None:
        self._resume = None
        if not self._closed and self._loop is not None:
            self._loop.add_reader(self.sock.fileno(), self._accept)

    def _admit(self, address: str) -> bool:
        per_address = self.stats.open_by_address
        if (
            self._total >= self.max_total
            or self._unauthenticated >= self.max_unauthenticated
            or per_address[address] >= self.limits.max_unauthenticated_per_address
        ):
            return False
        self._total += 1
        self._unauthenticated += 1
        per_address[address] += 1
        return True

    async def _connect(self, conn: socket.socket, slot: _Slot) -> None:
        assert self._loop is not None

        def handler() -> RequestHandler:
            made = self.server()
            slot.handler = made
            self._slots[made] = slot
            return made

        tls: dict[str, object] = {}
        if self.ssl_context is not None:
            tls = {"ssl": self.ssl_context(), "ssl_handshake_timeout": self.handshake_timeout,
                   "ssl_shutdown_timeout": _SSL_SHUTDOWN_S}  # fmt: skip
        try:
            # On a failed or cancelled handshake asyncio closes the socket itself.
            await self._loop.connect_accepted_socket(handler, conn, **tls)  # type: ignore[arg-type]
        except asyncio.CancelledError:
            self._release(slot)
            raise
        except (OSError, ssl.SSLError, TimeoutError, ValueError) as e:
            log.debug("a peer connection from %s failed its handshake: %s", slot.address, e)
            self._release(slot)

    # -- made, first request, lost ------------------------------------------------------

    def made(self, handler: RequestHandler, transport: asyncio.Transport) -> None:
        """Right after the handshake: a trusted key keeps the connection (header timeout
        for its first request), any other gets ``stranger_timeout`` and one request."""
        slot = self._slots.get(handler)
        if slot is None or not slot.open:
            return
        assert self._loop is not None
        tls = self.ssl_context is not None
        key = peer_key(transport.get_extra_info("ssl_object")) if tls else None
        if self.ssl_context is None or (key is not None and self.trusted(key)):
            self._authenticated(slot)
            slot.timer = self._loop.call_later(self.limits.header_timeout,
                                               self._no_request, slot, transport)  # fmt: skip
        else:
            self.stats.strangers += 1
            slot.timer = self._loop.call_later(self.limits.stranger_timeout,
                                               self._expired, slot, transport)  # fmt: skip

    def request_started(self, handler: RequestHandler) -> None:
        """A request's headers arrived on ``handler``'s connection (``http.py``)."""
        slot = self._slots.get(handler)
        if slot is None:
            return
        slot.requests += 1
        if not slot.unauthenticated and slot.timer is not None:
            slot.timer.cancel()  # from now on aiohttp's keep-alive timeout bounds it
            slot.timer = None

    def lost(self, handler: RequestHandler) -> None:
        slot = self._slots.get(handler)
        if slot is not None:
            self._release(slot)

    def _no_request(self, slot: _Slot, transport: asyncio.Transport) -> None:
        slot.timer = None
        if slot.open and slot.requests == 0:
            self._expired(slot, transport)

    def _expired(self, slot: _Slot, transport: asyncio.Transport) -> None:
        slot.timer = None
        if slot.open:
            self.stats.timed_out += 1
            transport.abort()  # no TLS shutdown to wait for: it said nothing in time

    def _authenticated(self, slot: _Slot) -> None:
        if slot.unauthenticated:
            slot.unauthenticated = False
            self._unauthenticated -= 1
            self._forget_address(slot.address)

    def _forget_address(self, address: str) -> None:
        per_address = self.stats.open_by_address
        per_address[address] -= 1
        if per_address[address] <= 0:
            del per_address[address]

    def _release(self, slot: _Slot) -> None:
        if not slot.open:
            return
        slot.open = False
        if slot.timer is not None:
            slot.timer.cancel()
            slot.timer = None
        if slot.unauthenticated:
            self._unauthenticated -= 1
            self._forget_address(slot.address)
        self._total -= 1
        if slot.handler is not None:
            self._slots.pop(slot.handler, None)


__all__ = ["FD_RESERVE", "Listener", "ListenerStats", "PeerServer", "connection_budget"]
