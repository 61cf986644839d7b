"""The agents' front door: Singularity Memory's HTTP contract and MCP over streamable
HTTP, on one loopback port of `gossip serve` (default 127.0.0.1:8888, the address its
Hermes and OpenClaw adapters call), so those agents and any MCP client use sm-gossip
unchanged (docs/agents.md); and the dashboard at ``/ui/`` (``dashboard.py``, docs/ui.md).

Rules this module keeps, by the guard the local API's TCP listener has too
(``guard.py``): a web page (``Origin``, ``Referer``) or a ``Host`` that is not loopback
is refused 403 (on an address the user exposed on purpose, its own name and IP literals
are accepted too: DNS rebinding needs a name); every request needs ``Authorization:
Bearer <api.token>`` (none: 401 with ``WWW-Authenticate``); bad input is a 4xx naming
the field, ``{"error", "field"}``; a body over 64 KiB is 413.

Each route is a row of ``ROUTES``: which operation of ``gossip.ops`` it runs, how the
request's names map onto the operation's parameters and how the answer is reshaped.
Every rule (banks, upsert, budgets, who may forget) is in the operations
(``gossip/ops/banks.py``), never here. ``agents_openapi`` describes the same table.
"""

from __future__ import annotations

import errno
import ipaddress
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from crdt import GossipError

from ..config import ConfigError, check_address
from ..errors import Invalid, ListenerBusy, OpError
from ..logfilter import ServerLog
from ..ops import OPERATIONS
from ..ops.banks import ITEM_FIELDS
from ..ops.fields import Flag, Ignored
from ..ops.memories import BANK_ID
from ..ops.online import NodeHost
from ..transport.http import join_address, split_address
from .dashboard import Dashboard, is_browser_route
from .guard import (
    MAX_BODY,
    RETRY_AFTER_S,
    Guard,
    answer,
    error,
    host_name,
    is_loopback,
    read_body,
    read_query,
)

log = logging.getLogger(__name__)

Values = dict[str, Any]


@dataclass(frozen=True)
class Route:
    """One Singularity-Memory route: ``op`` run with ``inbound(path values, body)`` and
    answered with ``outbound(result, body)``. ``body`` names the body's fields
    (``"op"``: the operation's own body fields; ``"item"``: one retain item)."""

    method: str
    path: str
    op: str
    summary: str
    inbound: Callable[[Values, Values], Values] = lambda path, body: {**body, **_bank(path)}
    outbound: Callable[[Any, Values], Any] = lambda result, body: result
    body: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)  # adapter-only body fields: kind
    names: dict[str, str] = field(default_factory=dict)  # operation field -> route's name


def _bank(path: Values) -> Values:
    # OpenClaw puts its workspace in both slots, older Hermes used its own workspace with
    # bank `default`: the bank is the {bank} segment, the workspace names nothing here.
    return {k: v for k, v in path.items() if k != "workspace"}


def _retained(result: Any, body: Values) -> Values:
    return {"success": True, "bank_id": result["bank_id"], "items_count": result["items_count"],
            "async": bool(body.get("async", False)), "memory_ids": result["memory_ids"],
            "unchanged": result["unchanged"]}  # fmt: skip


def _one_retained(result: Any, body: Values) -> Values:
    rid = result["memory_ids"][0]
    return {"success": True, "id": rid, "memory_item_id": rid,
            "unchanged": bool(result["unchanged"])}  # fmt: skip


# Singularity Memory's own recall fields, sent by clients generated from its openapi.json:
# no entities, chunks or trace here, and time does not rank a recall. (Its `tag_groups`
# is refused as unknown: a filter ignored would answer wrongly.)
SM_RECALL_ONLY = {name: Ignored() for name in ("include", "trace", "query_timestamp")}


def _recall(path: Values, body: Values) -> Values:
    return {**{k: v for k, v in body.items() if k not in SM_RECALL_ONLY}, **_bank(path)}


def _items(path: Values, body: Values) -> Values:
    # ``async``: Hermes asks for a background write on every turn; the write is durable
    # before the answer anyway (invariant 7), so it changes nothing.
    return {"bank": path["bank"], "items": body.get("items")}


HEALTH = ("/healthz", "/health")
WORKSPACE = "/v1/{workspace}/banks/{bank}"
ROUTES: tuple[Route, ...] = (
    Route("GET", "/v1/banks", "banks", "every bank (Singularity Memory's list)"),
    Route("GET", "/v1/{workspace}/banks", "banks", "every bank (the workspace is ignored)"),
    Route("PUT", WORKSPACE, "bank_put", "create a bank or change its name or mission",
          body="op"),
    Route("PATCH", WORKSPACE, "bank_put", "as PUT", body="op"),
    Route("DELETE", WORKSPACE, "bank_delete",
          "delete a bank; refused while another trusted author has memories in it"),
    Route("POST", WORKSPACE + "/memories", "retain", "retain memories (Hermes' shape)",
          inbound=_items, outbound=_retained, body="op", extra={"async": Flag()}),
    Route("POST", WORKSPACE + "/memories/retain", "retain", "retain one memory (OpenClaw's)",
          inbound=lambda path, body: {"bank": path["bank"], "items": [body]},
          outbound=_one_retained, body="item"),
    Route("POST", WORKSPACE + "/memories/recall", "bank_recall",
          "recall memories of the bank, with who wrote each", inbound=_recall, body="op",
          extra=SM_RECALL_ONLY),
    Route("DELETE", WORKSPACE + "/memories/{memory_id}", "forget",
          "forget (retract) one of this host's memories",
          inbound=lambda path, body: {"bank": path["bank"], "id": path["memory_id"]},
          names={"id": "memory_id"}),
)


class AgentsApi:
    """The agents' listener of one running node. ``start()`` binds (``ListenerBusy`` if
    the port is taken); ``close()`` unbinds. ``mcp`` serves ``/mcp/`` when given (an
    ``mcp.McpHttp``)."""

    def __init__(self, host: NodeHost, *, listen: str, token: str, mcp: Any = None,
                 dashboard: Dashboard | None = None) -> None:  # fmt: skip
        h, _ = split_address(check_address(listen))
        if not token:
            raise ConfigError("the agents' listener needs a token (api.token)")
        self.host = host
        self.listen = listen
        self.exposed = not is_loopback(h)
        self._own_host = h.lower() if self.exposed and h not in ("0.0.0.0", "::") else None
        self.address: str | None = None
        self.guard = Guard("agents' API", token, lambda request: True,
                           "a bearer token is required: Authorization: Bearer <the content "
                           "of api.token> (SINGULARITY_API_KEY)", own_host=self._own,
                           browser=is_browser_route)  # fmt: skip
        self._mcp = mcp
        self.dashboard = dashboard
        self._runner: web.AppRunner | None = None

    async def start(self) -> None:
        app = web.Application(client_max_size=MAX_BODY, middlewares=[self.guard.middleware])
        for route in ROUTES:
            # .../memories/recall and /retain are no memory ids (a 405 says only POST)
            path = route.path.replace("{memory_id}", "{memory_id:(?!recall$|retain$)[^/]+}")
            app.router.add_route(route.method, path, self._endpoint(route))
        for path in HEALTH:  # the Go server's and the Python server's health check
            app.router.add_get(path, self.healthz)
        app.router.add_get("/openapi.json", self.openapi)
        if self.dashboard is not None:
            self.dashboard.add_routes(app)
        if self._mcp is not None:
            for path in ("/mcp", "/mcp/", "/mcp/{bank}", "/mcp/{bank}/"):
                app.router.add_route("*", path, self.mcp)
        runner = web.AppRunner(app, access_log=None, shutdown_timeout=2.0, handle_signals=False,
                               logger=ServerLog(logging.getLogger("gossip.api.agents.server")))
        await runner.setup()
        self._runner = runner
        try:
            if self._mcp is not None:
                await self._mcp.start()
            host, port = split_address(self.listen)
            site = web.TCPSite(runner, host, port)
            try:
                await site.start()
            except OSError as e:
                if e.errno != errno.EADDRINUSE:
                    raise ConfigError(f"the agents' listener cannot listen on {self.listen}: "
                                      f"{e.strerror or e}") from None  # fmt: skip
                raise ListenerBusy(
                    f"the agents' address {self.listen} is in use (another Singularity Memory "
                    "server or `gossip serve`?); choose another with `[agents] listen` in "
                    "config.toml or `gossip serve --agents-listen 127.0.0.1:PORT`, or turn it "
                    "off with --agents-listen ''"
                ) from None
            server = site._server
            sock = server.sockets[0] if server is not None and server.sockets else None
            self.address = (join_address(host, sock.getsockname()[1])
                            if sock is not None else self.listen)  # fmt: skip
            if self.dashboard is not None:
                self.dashboard.serving(f"http://{self.address}")
        except BaseException:
            await self.close()
            raise

    async def close(self) -> None:
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()
        if self._mcp is not None:
            await self._mcp.close()

    @property
    def url(self) -> str | None:
        return f"http://{self.address}" if self.address else None

    def _own(self, header: str) -> bool:
        """On an address the user exposed on purpose: its own name, or any IP literal (DNS
        rebinding needs a name; the token still guards every request)."""
        name = host_name(header) if self.exposed else None
        if name is None:
            return False
        if name == self._own_host:
            return True
        try:
            ipaddress.ip_address(name)
        except ValueError:
            return False
        return True

    # -- routes ------------------------------------------------------------------------

    def _endpoint(self, route: Route) -> Callable[[web.Request], Awaitable[web.Response]]:
        op = OPERATIONS[route.op]

        async def endpoint(request: web.Request) -> web.Response:
            read_query(request, set())
            path = {name: BANK_ID.check(value, name) if name in ("bank", "workspace") else value
                    for name, value in request.match_info.items()}  # fmt: skip
            body: Values = {}
            if request.method in ("POST", "PUT", "PATCH"):
                body = await read_body(request)
                known = body_names(route)
                for name in sorted(body):
                    if name not in known:
                        raise Invalid(f"unknown field {name[:40]!r} (known: "
                                      f"{', '.join(sorted(known))})", name[:40])  # fmt: skip
                for name, kind in route.extra.items():
                    if body.get(name) is not None:
                        kind.check(body[name], name)
            try:
                params = op.check(route.inbound(path, body))
                result = await op.handler(self.host, params)
            except OpError as e:
                raise _renamed(e, route) from None
            return answer(route.outbound(result, body), status=200)

        endpoint.__name__ = f"agents_{route.op}"
        return endpoint

    async def healthz(self, request: web.Request) -> web.Response:
        read_query(request, set())
        try:
            me = await self.host.read(lambda r, v: r.author)
        except GossipError as e:
            out = answer({"ok": False, "status": "unavailable", "error": str(e)}, status=503)
            out.headers["Retry-After"] = str(RETRY_AFTER_S)
            return out
        return answer({"ok": True, "status": "healthy", "service": "sm-gossip", "id": me,
                      "name": self.host.node.name})  # fmt: skip

    async def openapi(self, request: web.Request) -> web.Response:
        from .agents_openapi import document

        return answer(document())

    async def mcp(self, request: web.Request) -> web.StreamResponse:
        if request.method == "GET":
            # No stream for messages the server starts: every session is stateless, so
            # nothing could ever arrive on it (a GET held open here answered nothing, not
            # even its headers). The transport's other answer: 405, which clients expect.
            out = error(405, "this MCP endpoint is stateless: POST JSON-RPC messages (no "
                        "server-sent event stream)", None)
            out.headers["Allow"] = "POST"
            return out
        bank = request.match_info.get("bank") or request.headers.get("X-Bank-Id") or "default"
        BANK_ID.check(bank, "bank")
        return await self._mcp.handle(request, bank)


def body_names(route: Route) -> set[str]:
    """The fields a route's JSON body may have."""
    if route.body == "item":
        return {f.name for f in ITEM_FIELDS}
    if route.body == "op":
        return {f.name for f in OPERATIONS[route.op].body_fields} | set(route.extra)
    return set()


def _renamed(e: OpError, route: Route) -> OpError:
    """``e`` naming the field as this route's caller wrote it (``content``, not
    ``items[0].content``; ``memory_id``, not ``id``)."""
    name, message = e.field, str(e)
    if route.body == "item" and name and name.startswith("items[0]."):
        name, message = name.removeprefix("items[0]."), message.replace("items[0].", "")
    elif name in route.names:
        message = message.replace(f"'{name}'", f"'{route.names[name]}'")
        name = route.names[name]
    if (name, message) == (e.field, str(e)):
        return e
    out = type(e)(message, name)
    out.status = e.status
    return out


def env_lines(url: str, token: str) -> list[str]:
    """The lines to paste into an agent's environment (`gossip init`, `gossip status`)."""
    return [f"SINGULARITY_SERVER_URL={url}", f"SINGULARITY_API_KEY={token}"]

