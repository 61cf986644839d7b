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
- Reads go to the node's views (``Node.query``); writes go through the node's own
  methods, so they are signed, durable and pushed eagerly like any other write. Private
  keys are never read here.

The routes, their parameters and answers are described in ``gossip/openapi.py`` (served
at ``/openapi.json``, kept as docs/openapi.json) and in docs/api.md.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import ipaddress
import json
import logging
import math
import os
import re
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

from aiohttp import web

from crdt import GossipError, IdentityError, RecordError, Replica
from crdt.records import KIND_MEMORY, KIND_RETRACT
from crdt.views import Breaker, Views

from . import queries
from .config import ConfigError, check_address
from .exportfile import ExportError, decode_export, encode_export, import_summary
from .feed import Feed
from .http import join_address, split_address
from .invites import DEFAULT_TTL_S, MAX_TOKEN_CHARS, InviteError
from .logfilter import ServerLog
from .metrics import render, replica_figures
from .node import Node
from .queries import LookupFailed

log = logging.getLogger(__name__)

API_SOCKET = "api.sock"
TOKEN_FILE = "api.token"
MAX_BODY = 64 * 1024  # a record body is at most 16 KiB; no JSON request needs more
MAX_IMPORT = 256 * 1024 * 1024  # an export file offered to /v1/import
MAX_TTL_S = 30 * 86400  # an invitation lives at most a month
QUERY_TIMEOUT = 5.0  # seconds a read may wait for the replica before a 503
SSE_KEEPALIVE = 15.0  # seconds between comments on an idle event stream
SSE_WRITE_TIMEOUT = 10.0  # a consumer that reads nothing for this long is cut off
MAX_TEXT = 8192
MAX_SHORT = 256
MAX_TAGS = 32
MAX_SECONDS = 100 * 365 * 86400
_LOOPBACK_NAMES = {"localhost", API_SOCKET}
_DIGITS = re.compile(r"[0-9]{1,6}")
_EVENT_ID = re.compile(r"[A-Za-z0-9-]{1,64}")
# A Host header: a bracketed IPv6 literal or a name / IPv4 address, then maybe a port.
_HOST = re.compile(r"(?:\[(?P<ip6>[0-9a-f:.]+)\]|(?P<name>[a-z0-9._-]+))(?::[0-9]{1,5})?")


class ApiError(GossipError):
    """A request the API refuses; ``status`` is its HTTP status, ``field`` what was wrong."""

    def __init__(self, status: int, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.field = field


# -- input checks ---------------------------------------------------------------------


def _string(value: Any, field: str, *, limit: int = MAX_SHORT, empty: bool = False) -> str:
    if not isinstance(value, str):
        raise ApiError(400, f"'{field}' must be a string", field)
    if not empty and not value.strip():
        raise ApiError(400, f"'{field}' must not be empty", field)
    if len(value) > limit:
        raise ApiError(400, f"'{field}' is longer than {limit} characters", field)
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ApiError(400, f"'{field}' is not valid Unicode (lone surrogate)", field) from None
    return value


def _number(value: Any, field: str, *, low: float | None = None, high: float | None = None,
            integer: bool = False) -> int | float:  # fmt: skip
    if integer and isinstance(value, float) and value.is_integer():
        value = int(value)  # JSON does not tell 3 from 3.0; JSON Schema calls both integers
    kinds = (int,) if integer else (int, float)
    if isinstance(value, bool) or not isinstance(value, kinds):
        raise ApiError(400, f"'{field}' must be {'an integer' if integer else 'a number'}", field)
    try:
        finite = math.isfinite(value)
    except OverflowError:  # an integer too large for a float
        finite = False
    if not finite:
        raise ApiError(400, f"'{field}' must be finite (and fit a double)", field)
    if low is not None and value < low:
        raise ApiError(400, f"'{field}' must be at least {low}", field)
    if high is not None and value > high:
        raise ApiError(400, f"'{field}' must be at most {high}", field)
    return value


def _seconds(value: Any, field: str) -> float:
    v = _number(value, field, high=MAX_SECONDS)
    if v <= 0:
        raise ApiError(400, f"'{field}' must be a positive number of seconds", field)
    return float(v)


def _tags(value: Any, field: str = "tags") -> list[str]:
    if not isinstance(value, list):
        raise ApiError(400, f"'{field}' must be an array of strings", field)
    if len(value) > MAX_TAGS:
        raise ApiError(400, f"'{field}' has more than {MAX_TAGS} entries", field)
    return [_string(t, field) for t in value]


async def _body(request: web.Request, allowed: set[str], required: set[str] = frozenset()
                ) -> dict[str, Any]:  # fmt: skip
    """The request's JSON object; unknown or missing fields are a 400 naming them."""
    if request.content_length is not None and request.content_length > MAX_BODY:
        raise ApiError(413, f"the body is larger than {MAX_BODY} bytes", "body")  # unread
    raw = await request.read()  # aiohttp answers 413 past client_max_size
    if not raw.strip():
        data: Any = {}
    else:
        try:
            data = json.loads(raw, parse_constant=_no_constant)
        except (ValueError, RecursionError) as e:
            raise ApiError(400, f"the body is not JSON: {e}", "body") from None
    if not isinstance(data, dict):
        raise ApiError(400, "the body must be a JSON object", "body")
    for name in sorted(data):
        if name not in allowed:
            known = f"known: {', '.join(sorted(allowed))}" if allowed else "it takes none"
            raise ApiError(400, f"unknown field {name[:40]!r} ({known})", name[:40])
    for name in sorted(required):
        if name not in data:
            raise ApiError(400, f"'{name}' is required", name)
    return data


def _no_constant(name: str) -> None:
    raise ValueError(f"{name} is not JSON")


def _query(request: web.Request, allowed: set[str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for name, value in request.query.items():
        if name not in allowed:
            known = ", ".join(sorted(allowed)) or "none"
            raise ApiError(400, f"unknown query parameter {name[:40]!r} (known: {known})",
                           name[:40])  # fmt: skip
        if name in out:
            raise ApiError(400, f"query parameter {name[:40]!r} given twice", name[:40])
        out[name] = _string(value, name, empty=True)
    return out


def _flag(q: dict[str, str], name: str) -> bool:
    value = q.get(name, "false").lower()
    if value in ("true", "1", "yes"):
        return True
    if value in ("false", "0", "no"):
        return False
    raise ApiError(400, f"'{name}' must be true or false", name)


def _limit(q: dict[str, str], name: str = "limit", default: int = 20) -> int:
    text = q.get(name)
    if text is None:
        return default
    if not _DIGITS.fullmatch(text) or not 1 <= int(text) <= 1000:
        raise ApiError(400, f"'{name}' must be an integer from 1 to 1000", name)
    return int(text)


def _nonempty_query(q: dict[str, str], name: str) -> str | None:
    value = q.get(name)
    return value if value else None


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
        self._sse_write_timeout = sse_write_timeout
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
        except ApiError as e:
            answer = _error(e.status, str(e), e.field)
            if e.status == 413 and not request.content.is_eof():
                await _close_unread(request, answer)
            return answer
        except LookupFailed as e:
            return _error(404 if e.missing else 400, str(e), e.field)
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
            raise ApiError(403, "requests from web pages (Origin or Referer) are refused")
        if not request.raw_path.startswith("/"):  # absolute-form names another host
            raise ApiError(400, "the request target must be a path (origin-form)")
        host = request.headers.get("Host")
        if host is not None and not _loopback_host(host):
            raise ApiError(403, "the Host header must name loopback or the API socket")
        sockname = request.transport.get_extra_info("sockname") if request.transport else None
        if isinstance(sockname, tuple):  # TCP: the token is required
            scheme, _, given = request.headers.get("Authorization", "").strip().partition(" ")
            given = given.strip()
            if (not self._token or scheme.lower() != "bearer" or not given.isascii()
                    or not hmac.compare_digest(given.encode(), self._token.encode())):  # fmt: skip
                raise ApiError(401, "a bearer token is required on TCP (see api.token)")

    # -- routes ------------------------------------------------------------------------

    def _routes(self, r: web.UrlDispatcher) -> None:
        r.add_get("/v1/status", self.status)
        r.add_get("/v1/peers", self.peers)
        r.add_get("/v1/memories", self.recall)
        r.add_post("/v1/memories", self.remember)
        r.add_get("/v1/memories/{id}", self.memory)
        r.add_post("/v1/memories/{id}/retract", self.retract)
        r.add_get("/v1/records/{id}", self.record)
        r.add_get("/v1/breakers", self.breakers)
        r.add_get("/v1/breaker", self.breaker)
        r.add_post("/v1/breakers/trip", self.trip)
        r.add_post("/v1/breakers/reset", self.reset)
        r.add_get("/v1/benchmarks", self.benchmarks)
        r.add_post("/v1/benchmarks", self.record_benchmark)
        r.add_get("/v1/trust", self.trust_list)
        r.add_post("/v1/trust", self.trust_add)
        r.add_delete("/v1/trust/{key}", self.trust_remove)
        r.add_post("/v1/invitations", self.trust_invite)
        r.add_post("/v1/invitations/redeem", self.trust_join)
        r.add_post("/v1/key/rotate", self.key_rotate)
        r.add_post("/v1/sync", self.sync)
        r.add_get("/v1/export", self.export)
        r.add_post("/v1/import", self.import_)
        r.add_get("/v1/inspect", self.inspect)
        r.add_get("/v1/events", self.events)
        r.add_get("/openapi.json", self.openapi)
        r.add_get("/metrics", self.metrics)

    async def _read(self, fn: Callable[[Replica, Views], Any]) -> Any:
        return await asyncio.wait_for(self.node.query(fn), QUERY_TIMEOUT)

    async def status(self, request: web.Request) -> web.Response:
        _query(request, set())
        node = self.node
        counts = await self._read(lambda r, v: {**queries.counts(r, v.trust()),
                                                "keyring": len(r.keyring())})  # fmt: skip
        peers = node.peers()
        alive = sum(1 for p in peers if p.state == "alive")
        last = max((p.last_success for p in peers if p.last_success is not None), default=None)
        warnings = []
        if not peers:
            warnings.append("no peers: add --peer HOST:PORT, or enable discovery")
        elif not alive:
            warnings.append(f"none of {len(peers)} peers is reachable")
        if counts["keyring"] <= 1:
            warnings.append("the keyring has only this host: `gossip trust add KEY`")
        unknown = sum(1 for p in peers if p.state == "unknown-key")
        if unknown:
            warnings.append(f"{unknown} peer(s) do not trust this host or are not trusted")
        by_transport = dict(Counter(p.transport for p in peers))
        keyring_size = counts.pop("keyring")
        state_entries = counts.pop("state_entries")
        return _json({
            "id": node.id,
            "name": self.name,
            "address": node.address,
            "profile": node.profile.name,
            "transport": node.transport_mode,
            "pid": os.getpid(),
            "started_at": self.started_at,
            "api": {"socket": str(self.socket_path), "tcp": self.tcp_address},
            "discovery": self._discovery() if self._discovery is not None else [],
            "peers": {"alive": alive, "total": len(peers), "transport": by_transport},
            "records": counts,
            "state_entries": state_entries,
            "keyring": keyring_size,
            "store_bytes": queries.store_bytes(self.home),
            "last_exchange": last,
            "warnings": warnings,
        })  # fmt: skip

    async def peers(self, request: web.Request) -> web.Response:
        _query(request, set())
        return _json([p.to_json() for p in self.node.peers()])

    async def recall(self, request: web.Request) -> web.Response:
        q = _query(request, {"q", "category", "subject", "tag", "author", "limit",
                             "include_untrusted"})  # fmt: skip
        limit = _limit(q)
        untrusted = _flag(q, "include_untrusted")
        text = _nonempty_query(q, "q")
        author_text = _nonempty_query(q, "author")

        def job(r: Replica, v: Views) -> dict[str, Any]:
            return queries.recall(r, v, text, category=_nonempty_query(q, "category"),
                                  subject=_nonempty_query(q, "subject"),
                                  tag=_nonempty_query(q, "tag"), author=author_text,
                                  limit=limit, include_untrusted=untrusted)  # fmt: skip

        return _json(await self._read(job))

    async def remember(self, request: web.Request) -> web.Response:
        b = await _body(request, {"text", "category", "subject", "tags", "expires_in",
                                  "supersedes"}, {"text", "category"})  # fmt: skip
        text = _string(b["text"], "text", limit=MAX_TEXT)
        category = _string(b["category"], "category")
        subject = _string(b["subject"], "subject") if b.get("subject") is not None else None
        tags = _tags(b.get("tags", []))
        expires = None
        if b.get("expires_in") is not None:
            expires = _seconds(b["expires_in"], "expires_in")
        supersedes = None
        if b.get("supersedes") is not None:
            supersedes = _string(b["supersedes"], "supersedes")
            if not queries.RECORD_ID_PREFIX.fullmatch(supersedes) or len(supersedes) != 64:
                raise ApiError(400, "'supersedes' must be a record id (64 hex)", "supersedes")
        try:
            rid = await self.node.remember(text, category=category, subject=subject, tags=tags,
                                           expires_in=expires, supersedes=supersedes)  # fmt: skip
        except RecordError as e:
            raise ApiError(400, f"the memory cannot be signed: {e}", "text") from None
        return _json({"id": rid}, status=201)

    async def memory(self, request: web.Request) -> web.Response:
        _query(request, set())
        prefix = request.match_info["id"]

        def job(r: Replica, v: Views) -> dict[str, Any]:
            rid = queries.resolve_record(r, prefix, kind=KIND_MEMORY)
            return queries.show(r, v, rid)

        return _json(await self._read(job))

    async def record(self, request: web.Request) -> web.Response:
        _query(request, set())
        prefix = request.match_info["id"]
        return _json(await self._read(lambda r, v: queries.show(r, v, prefix)))

    async def retract(self, request: web.Request) -> web.Response:
        b = await _body(request, {"reason"})
        reason = _string(b["reason"], "reason", empty=True) if "reason" in b else ""
        prefix = request.match_info["id"]

        def job(r: Replica, v: Views) -> tuple[str, bool]:
            rid = queries.resolve_record(r, prefix, kind=KIND_MEMORY)
            rec = r.records()[rid]
            if rec.author != r.author:
                raise ApiError(409, f"memory {rid[:12]} was written by another host; only its "
                                    "author's retraction counts", "id")  # fmt: skip
            done = any(o.kind == KIND_RETRACT and o.author == r.author
                       and o.fields.get("target") == rid for o in r.records().values())  # fmt: skip
            return rid, done

        rid, done = await self._read(job)
        retraction = None if done else await self.node.retract(rid, reason=reason)
        return _json({"id": rid, "retraction": retraction, "already_retracted": done})

    async def breakers(self, request: web.Request) -> web.Response:
        q = _query(request, {"include_untrusted"})
        untrusted = _flag(q, "include_untrusted")
        found = await self._read(lambda r, v: v.breakers(include_untrusted=untrusted))
        return _json([b.to_json() for b in found])

    async def breaker(self, request: web.Request) -> web.Response:
        q = _query(request, {"name", "include_untrusted"})
        if "name" not in q:
            raise ApiError(400, "'name' is required", "name")
        name = _string(q["name"], "name")
        untrusted = _flag(q, "include_untrusted")
        found = await self._read(lambda r, v: v.breaker(name, include_untrusted=untrusted))
        merged = found if found is not None else Breaker(name, "closed", [], "", None, [])
        return _json(merged.to_json())

    async def trip(self, request: web.Request) -> web.Response:
        b = await _body(request, {"name", "reason", "cooldown", "failures"}, {"name", "cooldown"})
        name = _string(b["name"], "name")
        reason = _string(b.get("reason", ""), "reason", empty=True)
        cooldown = _seconds(b["cooldown"], "cooldown")
        failures = int(_number(b.get("failures", 0), "failures", low=0, high=2**31, integer=True))
        await self.node.trip_breaker(name, reason=reason, cooldown=cooldown, failures=failures)
        merged = self.node.breaker(name)
        return _json(merged.to_json())

    async def reset(self, request: web.Request) -> web.Response:
        b = await _body(request, {"name", "reason"}, {"name"})
        name = _string(b["name"], "name")
        reason = _string(b.get("reason", ""), "reason", empty=True)
        known = await self._read(lambda r, v: name in queries.breaker_names(r))
        if not known:
            raise ApiError(404, f"no breaker named {name!r:.80} here", "name")
        await self.node.reset_breaker(name, reason=reason)
        merged = self.node.breaker(name)
        return _json(merged.to_json())

    async def benchmarks(self, request: web.Request) -> web.Response:
        q = _query(request, {"subject", "metric", "include_untrusted"})
        untrusted = _flag(q, "include_untrusted")
        subject, metric = _nonempty_query(q, "subject"), _nonempty_query(q, "metric")
        found = await self._read(
            lambda r, v: v.benchmarks(subject, include_untrusted=untrusted)
        )
        return _json([b.to_json() for b in found if metric is None or b.metric == metric])

    async def record_benchmark(self, request: web.Request) -> web.Response:
        b = await _body(request, {"subject", "metric", "value", "unit"},
                        {"subject", "metric", "value"})  # fmt: skip
        subject = _string(b["subject"], "subject")
        if "|" in subject:
            raise ApiError(400, "'subject' cannot contain '|'", "subject")
        metric = _string(b["metric"], "metric")
        value = _number(b["value"], "value")
        unit = _string(b.get("unit", ""), "unit", empty=True)
        await self.node.record_benchmark(subject, metric, value, unit=unit)
        return _json({"subject": subject, "metric": metric, "value": value, "unit": unit},
                     status=201)  # fmt: skip

    async def trust_list(self, request: web.Request) -> web.Response:
        _query(request, set())
        return _json(queries.trust_entries(self.node.keyring(), self.node.trust_set(),
                                           self.node.id))  # fmt: skip

    async def trust_add(self, request: web.Request) -> web.Response:
        b = await _body(request, {"key", "name"}, {"key"})
        key = _string(b["key"], "key")
        name = _string(b.get("name", ""), "name", empty=True)
        try:
            from crdt.identity import public_key_bytes

            public_key_bytes(key)
        except GossipError as e:
            raise ApiError(400, f"'key' is not a public id: {e}", "key") from None
        if key == self.node.id:
            raise ApiError(400, "that is this host's own key; a host always trusts itself", "key")
        if (why := queries.revoked_note(key, self.node.trust_set())) is not None:
            raise ApiError(409, why, "key")
        was = self.node.keyring().get(key)
        self.node.trust(key, name)
        return _json({"id": key, "name": name, "updated": was is not None})

    async def trust_remove(self, request: web.Request) -> web.Response:
        q = _query(request, {"retroactive", "local"})
        retroactive, local = _flag(q, "retroactive"), _flag(q, "local")
        text = request.match_info["key"]
        trust = self.node.trust_set()
        named, key = await self._read(lambda r, v: queries.resolve_host(r, text, trust))
        if key == self.node.id:
            raise ApiError(400, "that is this host's own key; a host always trusts itself", "key")
        if not local and await self._read(lambda r, v: v.can_revoke(r.author, key)):
            rid = await self.node.revoke(key, retroactive=retroactive)
            return _json({"id": key, "removed": True, "revoked": rid})
        if (kept := queries.successor_to_keep(self.node.keyring(), key, trust)) is not None:
            self.node.trust(*kept)
        was = [self.node.distrust(k) for k in dict.fromkeys((named, key)) if k != self.node.id]
        if not any(was) and key not in trust:
            raise ApiError(404, f"{text:.60} is not in the keyring", "key")
        return _json({"id": key, "removed": True, "revoked": None})

    async def trust_invite(self, request: web.Request) -> web.Response:
        b = await _body(request, {"ttl", "name"})
        ttl = b.get("ttl", DEFAULT_TTL_S)
        if isinstance(ttl, bool) or not isinstance(ttl, int | float) or not 0 < ttl <= MAX_TTL_S:
            raise ApiError(400, f"'ttl' must be seconds, more than 0 and at most {MAX_TTL_S}",
                           "ttl")  # fmt: skip
        name = _string(b.get("name", ""), "name", empty=True)
        token = await self.node.invite(ttl=float(ttl), name=name)
        return _json({"token": token.encode(), "inviter": token.inviter,
                      "addresses": list(token.addresses), "expires_at": token.expires_at},
                     status=201)  # fmt: skip

    async def trust_join(self, request: web.Request) -> web.Response:
        b = await _body(request, {"token", "members"}, {"token"})
        token = _string(b["token"], "token", limit=MAX_TOKEN_CHARS)
        members = b.get("members", True)
        if not isinstance(members, bool):
            raise ApiError(400, "'members' must be true or false", "members")
        try:
            joined = await self.node.join(token, members=members)
        except InviteError as e:
            raise ApiError(400, str(e), "token") from None
        return _json(joined)

    async def key_rotate(self, request: web.Request) -> web.Response:
        await _body(request, set())
        previous = self.node.id
        try:
            new = await self.node.rotate_key()
        except IdentityError as e:  # the previous rotation's grace is not over
            raise ApiError(409, str(e)) from None
        return _json({"id": new, "previous": previous})

    async def sync(self, request: web.Request) -> web.Response:
        b = await _body(request, {"address"})
        started = time.perf_counter()
        if b.get("address") is not None:
            address = _string(b["address"], "address")
            try:
                check_address(address)
            except ConfigError as e:
                raise ApiError(400, str(e), "address") from None
            report = await self.node.sync_with(address)
        else:
            report = await self.node.sync_now()
        return _json({"exchanges": report.exchanges, "failures": report.failures,
                      "learned": report.learned,
                      "seconds": round(time.perf_counter() - started, 3)})  # fmt: skip

    async def export(self, request: web.Request) -> web.Response:
        q = _query(request, {"yjs"})
        if _flag(q, "yjs"):
            data = await self.node.query(lambda r, v: r.document_update())
        else:
            updates = await self.node.query(lambda r, v: r.updates_for({}))
            data = b"".join(encode_export(updates))
        return web.Response(body=data, content_type="application/octet-stream")

    async def import_(self, request: web.Request) -> web.Response:
        q = _query(request, {"name"})
        name = q.get("name") or "api"
        if request.content_length is not None and request.content_length > MAX_IMPORT:
            raise ApiError(413, f"an import is at most {MAX_IMPORT} bytes", "body")
        data = await request.content.read(MAX_IMPORT + 1)
        if len(data) > MAX_IMPORT:
            raise ApiError(413, f"an import is at most {MAX_IMPORT} bytes", "body")
        try:
            updates = decode_export(data, name)
        except ExportError as e:
            raise ApiError(400, str(e), "body") from None
        outcomes = await self.node.offer(updates, source=f"import:{name}")
        sv, trusted = await self._read(lambda r, v: (r.state_vector(), v.trust().keys))
        return _json(import_summary(outcomes, sv, trusted))

    async def inspect(self, request: web.Request) -> web.Response:
        _query(request, set())
        return _json(await self._read(lambda r, v: queries.inspect(r, v)))

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
            raise ApiError(400, "'Last-Event-ID' must be an event id (letters, digits, '-')",
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
