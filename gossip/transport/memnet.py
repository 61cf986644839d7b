"""An in-process peer network, shipped in the package (like memberlist's MockTransport).

``MemoryNetwork`` hands out transports that reach each other by calling the target's
``transport.serve`` directly with the same signed headers and a copy of the same bytes, so
authentication, body limits and status codes are exactly those of HTTP; only the journey
differs (no sockets, no event-loop hops beyond the ones the handlers make).

For tests and the seeded simulator it can misbehave on purpose, deterministically given
its ``random.Random``:

- ``partition(a, b)`` cuts every link between the addresses in ``a`` and those in ``b``
  (both ways) until ``heal()``;
- ``drop_rate``: each request, and each answer, is lost with this probability (a lost
  answer means the target served the request but the caller sees ``PeerUnreachable``);
- ``delay``: an ``async (source, target) -> None`` hook awaited before each delivery
  (e.g. ``asyncio.sleep`` of a random amount, or a simulator's virtual clock);
- an address nobody listens on (never started, or closed) is ``PeerUnreachable``.

It never touches a socket, a thread or a task of its own.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import random
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Any

from multidict import CIMultiDict

from crdt import Identity

from . import auth
from .endpoints import (
    Endpoint,
    Handler,
    PeerMisbehaved,
    PeerUnreachable,
    Reply,
    error_reply,
)
from .http import WireStats, frame_size, split_address

log = logging.getLogger(__name__)

DelayHook = Callable[[str, str], Awaitable[None]]


class MemoryNetwork:
    """A set of in-memory transports that can reach each other by address."""

    def __init__(
        self,
        *,
        rng: random.Random | None = None,
        drop_rate: float = 0.0,
        delay: DelayHook | None = None,
        host: str = "10.0.0.1",
    ) -> None:
        self.rng = rng if rng is not None else random.Random(0)
        self.drop_rate = drop_rate
        self.delay = delay
        self.host = host  # the host part of allocated addresses (port 0 → a fresh port)
        self.stats = WireStats()  # every delivery on this network
        self._listeners: dict[str, MemoryTransport] = {}
        self._cuts: set[frozenset[str]] = set()
        self._ports = itertools.count(20_000)
        self._names = itertools.count(1)

    def transport(self, identity: Identity, verifier: auth.Verifier, *, timeout: float = 10.0,
                  **common: Any) -> MemoryTransport:  # fmt: skip
        """A transport on this network; ``common`` as ``Endpoint`` takes (``now_ms``,
        ``limits``, ``max_response_bytes``)."""
        return MemoryTransport(self, identity, verifier, timeout=timeout, **common)

    # -- faults -----------------------------------------------------------------------

    def partition(self, a: str | Iterable[str], b: str | Iterable[str]) -> None:
        """Cut every link between an address of ``a`` and one of ``b`` (both ways)."""
        side_a = [a] if isinstance(a, str) else list(a)
        side_b = [b] if isinstance(b, str) else list(b)
        for x in side_a:
            for y in side_b:
                if x != y:
                    self._cuts.add(frozenset((x, y)))

    def heal(self) -> None:
        """Restore every link cut by ``partition``."""
        self._cuts.clear()

    def linked(self, a: str, b: str) -> bool:
        return frozenset((a, b)) not in self._cuts

    @property
    def addresses(self) -> list[str]:
        """Addresses that currently listen."""
        return list(self._listeners)

    async def raw(
        self, address: str, method: str, path: str, headers: dict[str, str], body: bytes
    ) -> Reply:
        """Deliver a hand-made request (any method, path and headers) as it is, and return
        the answer unchecked: what a misbehaving peer would get. No faults apply."""
        target = self._listeners.get(address)
        if target is None:
            raise PeerUnreachable(f"{address}: nobody listens there")
        return await target._serve(method, path, CIMultiDict(headers), bytes(body))

    # -- plumbing for MemoryTransport ------------------------------------------------------

    def _bind(self, transport: MemoryTransport, listen: str) -> str:
        host, port = split_address(listen)
        if port == 0:
            port = next(self._ports)
            while f"{host}:{port}" in self._listeners:
                port = next(self._ports)
        address = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        if address in self._listeners:
            raise OSError(f"{address} is already in use on this memory network")
        self._listeners[address] = transport
        return address

    def _unbind(self, address: str) -> None:
        self._listeners.pop(address, None)

    def _client_name(self) -> str:
        return f"client-{next(self._names)}"

    def _dropped(self) -> bool:
        return self.drop_rate > 0 and self.rng.random() < self.drop_rate


class MemoryTransport(Endpoint):
    """A ``Transport`` on a ``MemoryNetwork``. Before ``start`` it can still make requests;
    it is then known to partitions by ``name`` (``client-N``)."""

    mode = "memory"  # what carries its requests (``gossip status``): no wire to protect

    def __init__(self, network: MemoryNetwork, identity: Identity, verifier: auth.Verifier, *,
                 timeout: float = 10.0, **common: Any) -> None:  # fmt: skip
        super().__init__(identity, verifier, **common)
        self.network = network
        self.timeout = timeout
        self.stats = WireStats()
        self.address: str | None = None
        self.name = network._client_name()
        self._handler: Handler | None = None
        self._closed = False

    async def start(self, listen: str, handler: Handler) -> str:
        if self.address is not None or self._closed:
            raise RuntimeError("this transport was already started or closed")
        self.address = self.name = self.network._bind(self, listen)
        self._handler = handler
        return self.address

    async def request(
        self, address: str, path: str, body: bytes, *, expected_key: str | None = None
    ) -> tuple[bytes, str]:
        if self._closed:
            raise PeerUnreachable("this transport is closed")
        body = bytes(memoryview(body))  # the sender may reuse its buffer

        async def send_once(
            headers: Mapping[str, str], recipient: str
        ) -> tuple[int, object, bytes]:
            return await self._deliver(address, path, headers, body)

        return await self.request_signed(send_once, path, body, expected_key)

    async def _deliver(
        self, address: str, path: str, headers: Mapping[str, str], body: bytes
    ) -> tuple[int, CIMultiDict[str], bytes]:
        """One request and its answer, with the network's faults; counted in the stats."""
        net = self.network
        if self._closed:
            raise PeerUnreachable("this transport is closed")
        try:
            async with asyncio.timeout(self.timeout):
                if net.delay is not None:
                    await net.delay(self.name, address)
                target = net._listeners.get(address)
                if target is None:
                    raise PeerUnreachable(f"{address}: nobody listens there")
                if not net.linked(self.name, address):
                    raise PeerUnreachable(f"{address}: partitioned from {self.name}")
                if net._dropped():
                    raise PeerUnreachable(f"{address}: the request was lost")
                wire_headers = CIMultiDict(headers)
                wire_headers["Host"] = address
                wire_headers["Content-Length"] = str(len(body))
                reply = await target._serve("POST", path, wire_headers, bytes(memoryview(body)))
                if net.delay is not None:
                    await net.delay(address, self.name)
                if self._closed:
                    raise PeerUnreachable("this transport is closed")
                if not net.linked(self.name, address) or net._dropped():
                    raise PeerUnreachable(f"{address}: the answer was lost")
        except TimeoutError:
            raise PeerUnreachable(f"{address}: no answer within {self.timeout} s") from None
        answer = bytes(memoryview(reply.body))
        if len(answer) > self.max_response_bytes:
            raise PeerMisbehaved(f"an answer over {self.max_response_bytes} bytes")
        sent = frame_size(f"POST {path} HTTP/1.1", wire_headers, len(body))
        received = frame_size(f"HTTP/1.1 {reply.status}", reply.headers, len(answer))
        for stats in (self.stats, net.stats):
            stats.requests += 1
            stats.sent += sent
            stats.received += received
        target.stats.served += 1
        target.stats.served_in += sent
        target.stats.served_out += received
        return reply.status, CIMultiDict(reply.headers), answer

    async def _serve(self, method: str, path: str, headers: CIMultiDict[str], body: bytes) -> Reply:
        """The server side of one delivery, under the same rules as HTTP."""
        assert self._handler is not None

        async def read_body(limit: int) -> bytes | None:
            return body if len(body) <= limit else None

        try:
            return await self.serve_request(self._handler, method, path, headers, len(body),
                                            read_body)  # fmt: skip
        except Exception:
            log.exception("serving %s %s on %s failed", method, path, self.address)
            return error_reply(400, "the request could not be served")

    async def close(self) -> None:
        self._closed = True
        if self.address is not None:
            self.network._unbind(self.address)

    async def __aenter__(self) -> MemoryTransport:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


__all__ = ["DelayHook", "MemoryNetwork", "MemoryTransport"]
