"""The y-sync baseline of the bytes benchmark: N pycrdt documents kept in sync through a
real pycrdt-websocket ``WebsocketServer`` (the Yjs sync protocol and its central relay),
over real websockets on 127.0.0.1 (aiohttp on both sides), counting every frame.

Bytes are counted at each client's websocket as RFC 6455 frames them: payload plus a
2-, 4- or 10-byte header, plus the 4-byte mask of client-to-server frames. Every message
passes through some client, so the clients' sum is the whole traffic. The one-time HTTP
upgrade of each connection is left out (it is paid once per connection, not per change);
TCP/IP headers are left out on both sides of the comparison.

Needs the bench extra (pycrdt-websocket).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from aiohttp import web
from pycrdt import Doc, Map, Provider


def frame_bytes(payload: int, *, masked: bool) -> int:
    """Bytes of one binary websocket frame carrying ``payload`` bytes (RFC 6455 §5.2)."""
    header = 2 + (0 if payload < 126 else 2 if payload < 65536 else 8)
    return header + (4 if masked else 0) + payload


class _Channel:
    """A websocket as pycrdt's ``Channel`` (binary messages in, binary messages out)."""

    def __init__(self, ws: Any, path: str, stats: Counter | None = None) -> None:
        self._ws = ws
        self._path = path
        self._stats = stats

    @property
    def path(self) -> str:
        return self._path

    def __aiter__(self) -> _Channel:
        return self

    async def __anext__(self) -> bytes:
        msg = await self._ws.receive()
        if msg.type != aiohttp.WSMsgType.BINARY:
            raise StopAsyncIteration
        if self._stats is not None:
            self._stats.received += frame_bytes(len(msg.data), masked=False)
            self._stats.messages_in.append(len(msg.data))
        return bytes(msg.data)

    async def recv(self) -> bytes:
        return await self.__anext__()

    async def send(self, message: bytes) -> None:
        if self._stats is not None:
            self._stats.sent += frame_bytes(len(message), masked=True)
            self._stats.messages_out.append(len(message))
        await self._ws.send_bytes(message)


@dataclass
class Counter:
    sent: int = 0
    received: int = 0
    messages_out: list[int] = field(default_factory=list)
    messages_in: list[int] = field(default_factory=list)

    @property
    def total(self) -> int:
        return self.sent + self.received


@dataclass
class Client:
    doc: Doc
    records: Map
    stats: Counter


@contextlib.asynccontextmanager
async def cluster(n: int, port: int) -> AsyncIterator[list[Client]]:
    """A WebsocketServer on 127.0.0.1:``port`` and ``n`` clients in one room, synced."""
    from pycrdt.websocket import WebsocketServer

    async with WebsocketServer(auto_clean_rooms=False) as server:

        async def handler(request: web.Request) -> web.WebSocketResponse:
            ws = web.WebSocketResponse(max_msg_size=64 * 1024 * 1024)
            await ws.prepare(request)
            await server.serve(_Channel(ws, request.path))
            return ws

        app = web.Application()
        app.router.add_get("/{room}", handler)
        runner = web.AppRunner(app)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        session = aiohttp.ClientSession()
        try:
            async with contextlib.AsyncExitStack() as stack:
                clients = []
                for _ in range(n):
                    ws = await session.ws_connect(f"http://127.0.0.1:{port}/bench")
                    stack.push_async_callback(ws.close)
                    doc = Doc()
                    records = doc.get("records", type=Map)
                    stats = Counter()
                    provider = Provider(doc, _Channel(ws, "/bench", stats))
                    await stack.enter_async_context(provider)
                    await asyncio.wait_for(provider.synced.wait(), 30)
                    clients.append(Client(doc, records, stats))
                yield clients
        finally:
            await session.close()
            await runner.cleanup()


def total(clients: list[Client]) -> int:
    return sum(c.stats.total for c in clients)


async def until_all_have(clients: list[Client], key: str, timeout: float = 30.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not all(key in c.records for c in clients):
        if asyncio.get_running_loop().time() > deadline:
            raise TimeoutError(f"y-sync: {key} did not reach every client in {timeout:.0f} s")
        await asyncio.sleep(0.002)
