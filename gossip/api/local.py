"""The local API: HTTP/1.1 + JSON over a Unix socket in the data dir (``api.sock``, mode
0600), optionally also on a loopback TCP port with a bearer token. Any language embeds
the node through it (DESIGN.md "Who uses it"); `gossip` CLI commands use it whenever the
daemon runs (invariant 10).

Rules this module keeps:

- The guard (``guard.py``, the agents' listener's too): a browser page never reaches
  it (``Origin``, ``Referer`` or a foreign ``Host``: 403). TCP listens on loopback only,
  and every TCP request needs ``Authorization: Bearer <token>`` (the token file is 0600).
- Bad input is a 4xx naming the field (unknown fields and query parameters are refused,
  not ignored); a body over ``MAX_BODY`` is 413; errors are JSON.
- Every route but the event feed, the metrics and the OpenAPI document is an operation
  of ``gossip.ops`` (``OPERATIONS``): this module reads its parameters from the request
  and runs its one handler on the node (``ops.online.NodeHost``); rules and limits live
  there, never here. Private keys are never read here.

The routes, their parameters and answers are described by ``gossip/api/openapi.py`` (derived
from the same table, served at ``/openapi.json``, kept as docs/openapi.json) and in
docs/api.md.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import os
import re
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from aiohttp import web

from crdt import Replica
from crdt.views import Views

from ..config import ConfigError, check_address
from ..errors import Invalid, ListenerBusy
from ..logfilter import ServerLog
from ..node import Node
from ..ops import OPERATIONS, Operation, queries
from ..ops.online import READ_TIMEOUT, NodeHost
from ..transport.http import join_address, split_address
from .feed import Feed
from .guard import (
    API_SOCKET,
    MAX_BODY,
    Guard,
    answer,
    is_loopback,
    read_query,
    run_op,
)
from .metrics import render, replica_figures

log = logging.getLogger(__name__)

QUERY_TIMEOUT = READ_TIMEOUT  # seconds a read may wait for the replica before a 503
SSE_KEEPALIVE = 15.0  # seconds between comments on an idle event stream
SSE_WRITE_TIMEOUT = 10.0  # a consumer that reads nothing for this long is cut off
_EVENT_ID = re.compile(r"[A-Za-z0-9-]{1,64}")


# -- the server -----------------------------------------------------------------------


class LocalApi:
    """The local API of one running node. ``start()`` binds; ``close()`` unbinds."""

    def __init__(
        self,
        node: Node,
        feed: Feed,
        *,
        home: Path,
        name: str = "",
        tcp: str | None = None,
        token: str | None = None,
        discovery: Callable[[], list[dict[str, Any]]] | None = None,
        sse_write_timeout: float = SSE_WRITE_TIMEOUT,
        agents: Callable[[], dict[str, Any] | None] | None = None,
    ) -> None:
        if tcp is not None:
            host, _ = split_address(check_address(tcp))
            if not is_loopback(host):
                raise ConfigError(f"the local API listens on loopback only, not on {host}")
            if not token:
                raise ConfigError("a TCP listener for the local API needs a token")
        self.node = node
        self.feed = feed
        self.home = Path(home)
        self.name = name
        self.socket_path = self.home / API_SOCKET
        self.tcp = tcp
        self.tcp_address: str | None = None
        self.guard = Guard("local API", token, _on_tcp,
                           "a valid bearer token is required on TCP: Authorization: "
                           "Bearer <the content of api.token>")  # fmt: skip
        self._discovery = discovery
        self.agents = agents  # what status says of the agents' listener (gossip.api.agents)
        self._sse_write_timeout = sse_write_timeout
        self.host = NodeHost(node, facts=self._facts, read_timeout=QUERY_TIMEOUT)
        self.started_at = int(time.time() * 1000)
        self._runner: web.AppRunner | None = None

    # -- lifecycle ---------------------------------------------------------------------

    async def start(self) -> None:
        app = web.Application(client_max_size=MAX_BODY, middlewares=[self.guard.middleware])
        self._routes(app.router)
        server_log = ServerLog(logging.getLogger("gossip.api.server"))
        runner = web.AppRunner(app, access_log=None, shutdown_timeout=2.0, handle_signals=False,
                               logger=server_log)  # fmt: skip
        await runner.setup()
        self._runner = runner
        try:
            check_socket_path(self.socket_path)
            # Our lock on the data dir is held: an api.sock here is a dead daemon's.
            with contextlib.suppress(FileNotFoundError):
                self.socket_path.unlink()
            old = os.umask(0o177)  # the socket is born 0600: no window for other users
            try:
                await web.UnixSite(runner, str(self.socket_path)).start()
            finally:
                os.umask(old)
            os.chmod(self.socket_path, 0o600)
            if self.tcp is not None:
                host, port = split_address(self.tcp)
                site = web.TCPSite(runner, host, port)
                try:
                    await site.start()
                except OSError as e:
                    if e.errno != errno.EADDRINUSE:
                        raise
                    raise ListenerBusy(
                        f"the local API's address {self.tcp} is in use; choose another with "
                        "`gossip serve --api-listen 127.0.0.1:PORT`"
                    ) from None
                server = site._server  # the bound port, for port 0
                sock = server.sockets[0] if server is not None and server.sockets else None
                self.tcp_address = (join_address(host, sock.getsockname()[1])
                                    if sock is not None else self.tcp)  # fmt: skip
        except BaseException:
            await self.close()
            raise

    async def close(self) -> None:
        runner, self._runner = self._runner, None
        self.feed.close()  # event streams end, so their handlers return
        if runner is not None:
            await runner.cleanup()
        with contextlib.suppress(FileNotFoundError):
            self.socket_path.unlink()

    # -- routes ------------------------------------------------------------------------

    def _routes(self, r: web.UrlDispatcher) -> None:
        for op in OPERATIONS.values():
            r.add_route(op.method, op.path, self._endpoint(op))
        r.add_get("/v1/events", self.events)
        r.add_get("/openapi.json", self.openapi)
        r.add_get("/metrics", self.metrics)

    def _endpoint(self, op: Operation) -> Callable[[web.Request], Awaitable[web.Response]]:
        """The route of ``op``: its parameters read from the request, its handler run on
        this node, its answer as JSON (bytes for an export)."""

        async def endpoint(request: web.Request) -> web.Response:
            return await run_op(op, self.host, request)

        endpoint.__name__ = op.name
        return endpoint

    def _facts(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "started_at": self.started_at,
            "api": {"socket": str(self.socket_path), "tcp": self.tcp_address},
            "discovery": self._discovery() if self._discovery is not None else [],
            "agents": self.agents() if self.agents is not None else None,
        }

    async def _read(self, fn: Callable[[Replica, Views], Any]) -> Any:
        return await self.host.read(fn)

    async def openapi(self, request: web.Request) -> web.Response:
        from .openapi import document

        return answer(document())

    async def metrics(self, request: web.Request) -> web.Response:
        read_query(request, set())
        figures = await self._read(replica_figures)
        text = render(self.node.peers(), figures, queries.store_bytes(self.home))
        return web.Response(text=text, content_type="text/plain",
                            headers={"X-Content-Type-Version": "0.0.4"})  # fmt: skip

    async def events(self, request: web.Request) -> web.StreamResponse:
        return await stream_events(request, self.feed, self._sse_write_timeout)


async def stream_events(request: web.Request, feed: Feed,
                        write_timeout: float = SSE_WRITE_TIMEOUT,
                        allowed: Callable[[], bool] = lambda: True,
                        ) -> web.StreamResponse:  # fmt: skip
    """The change feed as server-sent events (the local API's and the dashboard's). The
    stream ends once ``allowed()`` says no more (the dashboard's session ended), before
    the next event or keep-alive."""
    q = read_query(request, {"last_event_id"})
    # Given (even empty) means checked: `?last_event_id=` is no event id (the schema
    # says 1 to 64 characters), not "from now".
    last = request.headers.get("Last-Event-ID", q.get("last_event_id"))
    if last is not None and not _EVENT_ID.fullmatch(last):  # checked before streaming
        raise Invalid("'Last-Event-ID' must be an event id (letters, digits, '-')",
                      "last_event_id")  # fmt: skip
    resp = web.StreamResponse(headers={"Content-Type": "text/event-stream",
                                       "Cache-Control": "no-cache"})  # fmt: skip
    if request.method == "HEAD":  # its headers only: a body would be the next answer
        await resp.prepare(request)
        return resp
    listener = feed.listen(last)
    await resp.prepare(request)
    sent = last
    try:
        await resp.write(f": sm-gossip events, run {feed.run}\n\n".encode())
        while True:
            try:
                event = await asyncio.wait_for(listener.get(), SSE_KEEPALIVE)
            except TimeoutError:
                if not allowed():
                    break
                await asyncio.wait_for(resp.write(b": keep-alive\n\n"), write_timeout)
                continue
            if event is None or not allowed():
                break
            await asyncio.wait_for(resp.write(event.sse()), write_timeout)
            sent = event.id or sent
        if listener.cut:
            log.info("an event consumer fell behind and was cut off")
            await asyncio.wait_for(resp.write(feed.cutoff_event(sent).sse()), write_timeout)
    except (ConnectionResetError, TimeoutError):
        pass  # gone, or not reading at all: the stream ends here
    finally:
        feed.unlisten(listener)
    return resp


def _on_tcp(request: web.Request) -> bool:
    """Whether ``request`` came over TCP (the socket's callers need no token)."""
    sockname = request.transport.get_extra_info("sockname") if request.transport else None
    return isinstance(sockname, tuple)


# A Unix socket's path fits in sockaddr_un's sun_path: 108 bytes on Linux, 104 on the
# BSDs and macOS, the terminating NUL included.
SOCKET_PATH_MAX = 107 if os.uname().sysname == "Linux" else 103


def check_socket_path(path: Path) -> None:
    """Refuse, naming the path, a data dir too deep for its socket (the system says only
    "AF_UNIX path too long", which names neither)."""
    size = len(os.fsencode(path))
    if size > SOCKET_PATH_MAX:
        raise ConfigError(
            f"the local API's socket {path} is {size} bytes long, and a Unix socket's path "
            f"may be at most {SOCKET_PATH_MAX}: choose a shorter data dir (--home or "
            "GOSSIP_HOME)"
        )
