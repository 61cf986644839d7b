"""The local API: HTTP/1.1 + JSON over a Unix socket in the data dir (``api.sock``, mode
0600), optionally also on a loopback TCP port with a bearer token. Any language embeds
the node through it (DESIGN.md "Who uses it"); `gossip` CLI commands use it whenever the
daemon runs (invariant 10).

Rules this module keeps:

- A browser page must never reach it: a request carrying ``Origin`` or ``Referer``, or a
  ``Host`` that is not loopback's (or the socket's), is refused 403 before anything else
  (the rule Tailscale's LocalAPI follows). TCP listens on loopback only, and every TCP
  request needs ``Authorization: Bearer <token>`` (the token file is 0600).
- Bad input is a 4xx naming the field (unknown fields and query parameters are refused,
  not ignored); a body over ``MAX_BODY`` is 413; a 5xx means a bug here or a node that is
  not running, never a malformed request.
- Errors are JSON: ``{"error": message, "field": name-or-null}``.
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
import hmac
import ipaddress
import json
import logging
import os
import re
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from aiohttp import web

from crdt import GossipError, RecordError, Replica
from crdt.views import Views

from .. import queries
from ..config import ConfigError, check_address
from ..errors import Forbidden, Invalid, OpError, TooLarge, Unauthorized
from ..feed import Feed
from ..logfilter import ServerLog
from ..metrics import render, replica_figures
from ..node import Node
from ..ops import OPERATIONS, Operation
from ..ops.fields import ANY_TEXT, Text
from ..ops.online import READ_TIMEOUT, NodeHost
from ..transport.http import join_address, split_address

log = logging.getLogger(__name__)

API_SOCKET = "api.sock"
TOKEN_FILE = "api.token"
MAX_BODY = 64 * 1024  # a record body is at most 16 KiB; no JSON request needs more
QUERY_TIMEOUT = READ_TIMEOUT  # seconds a read may wait for the replica before a 503
SSE_KEEPALIVE = 15.0  # seconds between comments on an idle event stream
SSE_WRITE_TIMEOUT = 10.0  # a consumer that reads nothing for this long is cut off
_LOOPBACK_NAMES = {"localhost", API_SOCKET}
_EVENT_ID = re.compile(r"[A-Za-z0-9-]{1,64}")
# A Host header: a bracketed IPv6 literal or a name / IPv4 address, then maybe a port.
_HOST = re.compile(r"(?:\[(?P<ip6>[0-9a-f:.]+)\]|(?P<name>[a-z0-9._-]+))(?::[0-9]{1,5})?")


# -- reading a request --------------------------------------------------------------


async def _body(request: web.Request) -> dict[str, Any]:
    """The request's JSON object (an empty body is the empty object)."""
    if request.content_length is not None and request.content_length > MAX_BODY:
        raise TooLarge(f"the body is larger than {MAX_BODY} bytes", "body")  # unread
    raw = await request.read()  # aiohttp answers 413 past client_max_size
    if not raw.strip():
        return {}
    try:
        data = json.loads(raw, parse_constant=_no_constant)
    except (ValueError, RecursionError) as e:
        raise Invalid(f"the body is not JSON: {e}", "body") from None
    if not isinstance(data, dict):
        raise Invalid("the body must be a JSON object", "body")
    return data


async def _raw(request: web.Request, limit: int) -> bytes:
    if request.content_length is not None and request.content_length > limit:
        raise TooLarge(f"the body is over {limit} bytes", "body")
    data = await request.content.read(limit + 1)
    if len(data) > limit:
        raise TooLarge(f"the body is over {limit} bytes", "body")
    return data


def _no_constant(name: str) -> None:
    raise ValueError(f"{name} is not JSON")


def _query(request: web.Request, allowed: set[str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for name, value in request.query.items():
        if name not in allowed:
            known = ", ".join(sorted(allowed)) or "none"
            raise Invalid(f"unknown query parameter {name[:40]!r} (known: {known})", name[:40])
        if name in out:
            raise Invalid(f"query parameter {name[:40]!r} given twice", name[:40])
        out[name] = ANY_TEXT.check(value, name)
    return out


async def _values(op: Operation, request: web.Request) -> dict[str, Any]:
    """The parameters of ``op`` as this request gives them: path segments and query
    parameters parsed from text (an empty text parameter is not given), the rest from
    the JSON body (or the raw body)."""
    values: dict[str, Any] = {}
    for f in op.path_fields:
        values[f.name] = f.parse(request.match_info[f.name])
    for name, text in _query(request, {f.name for f in op.query_fields}).items():
        f = op.field(name)
        if text or not isinstance(f.kind, Text):
            values[name] = f.parse(text)
    if op.raw is not None:
        kind = op.field(op.raw).kind
        values[op.raw] = await _raw(request, getattr(kind, "limit", MAX_BODY))
    elif op.method in ("POST", "PUT", "PATCH"):
        body = await _body(request)
        known = {f.name for f in op.body_fields}
        for name in sorted(body):
            if name not in known:
                listed = f"known: {', '.join(sorted(known))}" if known else "it takes none"
                raise Invalid(f"unknown field {name[:40]!r} ({listed})", name[:40])
        values.update(body)
    return values


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
            if not _is_loopback(host):
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
        self._token = token
        self._discovery = discovery
        self.agents = agents  # what status says of the agents' listener (gossip.api.agents)
        self._sse_write_timeout = sse_write_timeout
        self.host = NodeHost(node, facts=self._facts, read_timeout=QUERY_TIMEOUT)
        self.started_at = int(time.time() * 1000)
        self._runner: web.AppRunner | None = None

    # -- lifecycle ---------------------------------------------------------------------

    async def start(self) -> None:
        app = web.Application(client_max_size=MAX_BODY, middlewares=[self._guard])
        self._routes(app.router)
        server_log = ServerLog(logging.getLogger("gossip.api.server"))
        runner = web.AppRunner(app, access_log=None, shutdown_timeout=2.0, handle_signals=False,
                               logger=server_log)  # fmt: skip
        await runner.setup()
        self._runner = runner
        try:
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
                await site.start()
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

    # -- the guard ---------------------------------------------------------------------

    @web.middleware
    async def _guard(self, request: web.Request, handler: Callable[..., Any]) -> web.StreamResponse:
        try:
            self._check_caller(request)
            return await handler(request)
        except OpError as e:
            answer = _error(e.status, str(e), e.field)
            if e.status == 413 and not request.content.is_eof():
                await _close_unread(request, answer)
            return answer
        except web.HTTPException as e:
            if e.status < 400:
                raise
            reason = e.reason
            if e.status == 413:
                reason = f"the body is larger than {MAX_BODY} bytes"
            answer = _error(e.status, reason, "body" if e.status == 413 else None)
            if "Allow" in e.headers:  # 405 says which methods the route has
                answer.headers["Allow"] = e.headers["Allow"]
            return answer
        except RecordError as e:
            return _error(400, str(e), None)
        except TimeoutError:
            return _error(503, "the replica did not answer in time; try again", None)
        except GossipError as e:
            return _error(503, f"the node cannot answer: {e}", None)
        except (ConnectionResetError, asyncio.CancelledError):
            raise
        except Exception:
            log.exception("local API: %s %s failed", request.method, request.path)
            return _error(500, "internal error (logged by the daemon)", None)

    def _check_caller(self, request: web.Request) -> None:
        if "Origin" in request.headers or "Referer" in request.headers:
            raise Forbidden("requests from web pages (Origin or Referer) are refused")
        if not request.raw_path.startswith("/"):  # absolute-form names another host
            raise Invalid("the request target must be a path (origin-form)")
        host = request.headers.get("Host")
        if host is not None and not _loopback_host(host):
            raise Forbidden("the Host header must name loopback or the API socket")
        sockname = request.transport.get_extra_info("sockname") if request.transport else None
        if isinstance(sockname, tuple):  # TCP: the token is required
            scheme, _, given = request.headers.get("Authorization", "").strip().partition(" ")
            given = given.strip()
            if (not self._token or scheme.lower() != "bearer" or not given.isascii()
                    or not hmac.compare_digest(given.encode(), self._token.encode())):  # fmt: skip
                raise Unauthorized("a bearer token is required on TCP (see api.token)")

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
            params = op.check(await _values(op, request))
            result = await op.handler(self.host, params)
            if op.binary:
                return web.Response(body=result, content_type="application/octet-stream")
            return _json(result, status=201 if op.created else 200)

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

        return _json(document())

    async def metrics(self, request: web.Request) -> web.Response:
        _query(request, set())
        figures = await self._read(lambda r, v: replica_figures(r))
        text = render(self.node.peers(), figures, queries.store_bytes(self.home))
        return web.Response(text=text, content_type="text/plain",
                            headers={"X-Content-Type-Version": "0.0.4"})  # fmt: skip

    async def events(self, request: web.Request) -> web.StreamResponse:
        q = _query(request, {"last_event_id"})
        last = request.headers.get("Last-Event-ID") or q.get("last_event_id") or None
        if last is not None and not _EVENT_ID.fullmatch(last):  # checked before streaming
            raise Invalid("'Last-Event-ID' must be an event id (letters, digits, '-')",
                           "last_event_id")  # fmt: skip
        listener = self.feed.listen(last)
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream",
                                           "Cache-Control": "no-cache"})  # fmt: skip
        await resp.prepare(request)
        sent = last
        try:
            await resp.write(f": sm-gossip events, run {self.feed.run}\n\n".encode())
            while True:
                try:
                    event = await asyncio.wait_for(listener.get(), SSE_KEEPALIVE)
                except TimeoutError:
                    await asyncio.wait_for(resp.write(b": keep-alive\n\n"), self._sse_write_timeout)
                    continue
                if event is None:
                    break
                await asyncio.wait_for(resp.write(event.sse()), self._sse_write_timeout)
                sent = event.id or sent
            if listener.cut:
                log.info("local API: an event consumer fell behind and was cut off")
                await asyncio.wait_for(
                    resp.write(self.feed.cutoff_event(sent).sse()), self._sse_write_timeout
                )
        except (ConnectionResetError, TimeoutError):
            pass  # gone, or not reading at all: the stream ends here
        finally:
            self.feed.unlisten(listener)
        return resp


async def _close_unread(request: web.Request, answer: web.Response) -> None:
    """Send ``answer`` now and close the connection, leaving the body unread. Otherwise
    aiohttp would go on reading (and dropping) what the client sends for its lingering
    time, even after the client has gone."""
    answer.force_close()
    await answer.prepare(request)
    await answer.write_eof()
    request.protocol.force_close()  # the transport closes once the answer is flushed


def _json(value: Any, status: int = 200) -> web.Response:
    # ASCII: a lone surrogate in a name we echo must not fail to encode (a 500)
    return web.Response(text=json.dumps(value, ensure_ascii=True), status=status,
                        content_type="application/json")  # fmt: skip


def _error(status: int, message: str, field: str | None) -> web.Response:
    return _json({"error": message, "field": field}, status=status)


def _is_loopback(host: str) -> bool:
    host = host.strip("[]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _loopback_host(header: str) -> bool:
    """Whether a Host header names loopback or the socket (any numeric port); nothing
    else may follow the name, so ``[::1].evil.com`` or ``localhost:abc`` are refused."""
    m = _HOST.fullmatch(header.strip().lower())
    if m is None:
        return False
    if m["ip6"] is not None:
        return _is_loopback(m["ip6"]) and ":" in m["ip6"]
    return m["name"] in _LOOPBACK_NAMES or _is_loopback(m["name"])


def read_token(home: Path) -> str:
    """The API token of ``home``, created (0600) on first use."""
    import secrets

    from crdt.files import create_whole

    path = Path(home) / TOKEN_FILE
    try:
        text = path.read_text("ascii").strip()
    except FileNotFoundError:
        token = secrets.token_urlsafe(32)
        with contextlib.suppress(FileExistsError):
            create_whole(path, lambda tmp: tmp.write_text(token + "\n", "ascii"))
        text = path.read_text("ascii").strip()
    if path.stat().st_mode & 0o077:
        raise ConfigError(f"{path} must be readable by its owner only (chmod 600 {path})")
    if len(text) < 16:
        raise ConfigError(f"{path} holds no usable token (16+ characters)")
    return text
