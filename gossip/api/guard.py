"""Who may call the daemon's HTTP surfaces, and how every refusal looks; shared by the
local API (``local``) and the agents' listener (``agents``), so both keep one rule.

- A browser page must never reach them: a request carrying ``Origin`` or ``Referer``, or
  a ``Host`` that is not loopback's (or on the socket its name, or on an address the user
  exposed on purpose its own), is refused 403 before anything else (the rule Tailscale's
  LocalAPI follows; DNS rebinding needs a name). The one exception is the dashboard
  (``dashboard.py``, on the agents' listener): there a browser is accepted from the
  dashboard's own pages or from no page (``same_origin``), and its session cookie
  stands for the token.
- Where a token is needed (TCP), ``Authorization: Bearer <api.token>`` is checked in
  constant time; none or a wrong one is a 401 with ``WWW-Authenticate``.
- Every refusal is JSON, ``{"error": message, "field": name-or-null, "code": name}``
  (``code`` is the ``OpError`` class's, ``gossip.errors``: what a client matches on); a
  5xx means a bug here or a node that cannot answer, never a malformed request; a 503
  says when to try again (``Retry-After``).

Also reading JSON requests and writing JSON answers, and the token file (0600).
Nothing here knows a route; nothing here reads a private key.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import ipaddress
import json
import logging
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiohttp import web

from crdt import GossipError, RecordError

from ..config import ConfigError
from ..errors import Forbidden, Invalid, OpError, TooLarge, Unauthorized, code_of
from ..ops import Operation
from ..ops.fields import ANY_TEXT, Text
from ..ops.host import Host

log = logging.getLogger(__name__)

API_SOCKET = "api.sock"
TOKEN_FILE = "api.token"
MAX_BODY = 64 * 1024  # a record body is at most 16 KiB; no JSON request needs more
# A Host header: a bracketed IPv6 literal or a name / IPv4 address, then maybe a port.
_HOST = re.compile(r"(?:\[(?P<ip6>[0-9a-f:.]+)\]|(?P<name>[a-z0-9._-]+))(?::[0-9]{1,5})?")


@dataclass
class Guard:
    """The caller checks and the error middleware of one HTTP surface. ``token_needed``
    says whether a request must carry the token (the local API: on TCP only);
    ``own_host`` accepts a Host header beyond loopback (an address exposed on purpose)."""

    surface: str  # in log lines: "local API", "agents' API"
    token: str | None
    token_needed: Callable[[web.Request], bool]
    no_token: str  # the 401's message: where the token is
    own_host: Callable[[str], bool] = lambda header: False
    # Whether a request is for a route a browser uses (the dashboard, ``dashboard.py``):
    # there a same-origin page is accepted, and the route checks its own login.
    browser: Callable[[web.Request], bool] = lambda request: False

    def check(self, request: web.Request) -> None:
        browser = self.browser(request)
        if browser:
            same_origin(request)
        elif "Origin" in request.headers or "Referer" in request.headers:
            raise Forbidden("requests from web pages (Origin or Referer) are refused")
        if not request.raw_path.startswith("/"):  # absolute-form names another host
            raise Invalid("the request target must be a path (origin-form)")
        host = request.headers.get("Host")
        on_tcp = self.token_needed(request)  # the socket's name is no TCP listener's
        if host is not None and not (loopback_host(host, socket=not on_tcp)
                                     or self.own_host(host)):  # fmt: skip
            raise Forbidden("the Host header must name loopback or the API socket "
                            "(DNS rebinding is refused)")  # fmt: skip
        if not browser and self.token_needed(request):
            scheme, _, given = request.headers.get("Authorization", "").strip().partition(" ")
            given = given.strip()
            if (not self.token or scheme.lower() != "bearer" or not given.isascii()
                    or not hmac.compare_digest(given.encode(), self.token.encode())):  # fmt: skip
                if scheme.lower() == "bearer" and given:  # one was sent: say it is not ours
                    raise Unauthorized("that bearer token is not this host's (another data "
                                       f"dir's api.token?); {self.no_token}")  # fmt: skip
                raise Unauthorized(self.no_token)

    @web.middleware
    async def middleware(self, request: web.Request,
                         handler: Callable[..., Any]) -> web.StreamResponse:  # fmt: skip
        try:
            self.check(request)
            return await handler(request)
        except OpError as e:
            answer = error(e.status, str(e), e.field, e.code)
            if e.status == 401:
                answer.headers["WWW-Authenticate"] = 'Bearer realm="sm-gossip"'
            if e.status == 413 and not request.content.is_eof():
                await _close_unread(request, answer)
            return answer
        except web.HTTPException as e:
            if e.status < 400:
                raise
            reason = f"the body is larger than {MAX_BODY} bytes" if e.status == 413 else e.reason
            answer = error(e.status, reason, "body" if e.status == 413 else None)
            if "Allow" in e.headers:  # 405 says which methods the route has
                answer.headers["Allow"] = e.headers["Allow"]
            return answer
        except RecordError as e:
            return error(400, str(e), None)
        except TimeoutError:
            return error(503, "the replica did not answer in time; try again", None)
        except GossipError as e:
            return error(503, f"the node cannot answer: {e}", None)
        except (ConnectionResetError, asyncio.CancelledError):
            raise
        except Exception:
            log.exception("%s: %s %s failed", self.surface, request.method, request.path)
            return error(500, "internal error (logged by the daemon)", None)


def same_origin(request: web.Request) -> None:
    """A browser's request must come from our own pages, or from no page at all (a link
    opened from a terminal, a bookmark): another site's ``Origin``, ``Referer`` or
    ``Sec-Fetch-Site`` is refused."""
    own = f"http://{request.headers.get('Host', '').lower()}"
    origin = request.headers.get("Origin")
    referer = request.headers.get("Referer")
    site = request.headers.get("Sec-Fetch-Site")
    if ((origin is not None and origin.lower() != own)
            or (referer is not None and not referer.lower().startswith(own + "/"))
            or (site is not None and site not in ("same-origin", "none"))):  # fmt: skip
        raise Forbidden("requests from other web pages are refused")


# -- reading a request, writing an answer ---------------------------------------------


async def op_values(op: Operation, request: web.Request) -> dict[str, Any]:
    """The parameters of ``op`` as this request gives them: path segments and query
    parameters parsed from text (an empty text parameter is not given), the rest from
    the JSON body (or the raw body)."""
    values: dict[str, Any] = {}
    for f in op.path_fields:
        values[f.name] = f.parse(request.match_info[f.name])
    for name, text in read_query(request, {f.name for f in op.query_fields}).items():
        f = op.field(name)
        if text or not isinstance(f.kind, Text):
            values[name] = f.parse(text)
    if op.raw is not None:
        kind = op.field(op.raw).kind
        values[op.raw] = await read_raw(request, getattr(kind, "limit", MAX_BODY))
    elif op.method in ("POST", "PUT", "PATCH"):
        body = await read_body(request)
        known = {f.name for f in op.body_fields}
        for name in sorted(body):
            if name not in known:
                listed = f"known: {', '.join(sorted(known))}" if known else "it takes none"
                raise Invalid(f"unknown field {name[:40]!r} ({listed})", name[:40])
        values.update(body)
    return values


async def run_op(op: Operation, host: Host, request: web.Request) -> web.Response:
    """``op`` run on ``host`` with the request's parameters; its answer as JSON (bytes
    for an export)."""
    params = op.check(await op_values(op, request))
    result = await op.handler(host, params)
    if op.binary:
        return web.Response(body=result, content_type="application/octet-stream")
    return answer(result, status=201 if op.created else 200)


async def read_body(request: web.Request) -> dict[str, Any]:
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


async def read_raw(request: web.Request, limit: int) -> bytes:
    if request.content_length is not None and request.content_length > limit:
        raise TooLarge(f"the body is over {limit} bytes", "body")
    data = await request.content.read(limit + 1)
    if len(data) > limit:
        raise TooLarge(f"the body is over {limit} bytes", "body")
    return data


def _no_constant(name: str) -> None:
    raise ValueError(f"{name} is not JSON")


def read_query(request: web.Request, allowed: set[str]) -> dict[str, str]:
    """The query parameters, each at most once; an unknown one is refused, not ignored."""
    out: dict[str, str] = {}
    for name, value in request.query.items():
        if name not in allowed:
            known = ", ".join(sorted(allowed)) or "none"
            raise Invalid(f"unknown query parameter {name[:40]!r} (known: {known})", name[:40])
        if name in out:
            raise Invalid(f"query parameter {name[:40]!r} given twice", name[:40])
        out[name] = ANY_TEXT.check(value, name)
    return out


async def _close_unread(request: web.Request, answer: web.Response) -> None:
    """Send ``answer`` now and close the connection, leaving the body unread. Otherwise
    aiohttp would go on reading (and dropping) what the client sends for its lingering
    time, even after the client has gone."""
    answer.force_close()
    await answer.prepare(request)
    await answer.write_eof()
    request.protocol.force_close()  # the transport closes once the answer is flushed


def answer(value: Any, status: int = 200) -> web.Response:
    """A JSON answer; ASCII, so a lone surrogate in a name we echo cannot fail to encode."""
    return web.Response(text=json.dumps(value, ensure_ascii=True), status=status,
                        content_type="application/json")  # fmt: skip


RETRY_AFTER_S = 1  # a 503 is a replica busy for a moment, or a node stopping


def error(status: int, message: str, field: str | None, code: str | None = None) -> web.Response:
    """An error answer; ``code`` defaults to the one of ``status``'s ``OpError`` class."""
    out = answer({"error": message, "field": field, "code": code or code_of(status)},
                 status=status)  # fmt: skip
    if status == 503:
        out.headers["Retry-After"] = str(RETRY_AFTER_S)
    return out


# -- addresses and the token ----------------------------------------------------------


def is_loopback(host: str) -> bool:
    host = host.strip("[]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def host_name(header: str) -> str | None:
    """The name or IP literal a Host header gives (its port dropped), lower case; None
    when anything else follows it (``[::1].evil.com``, ``localhost:abc``)."""
    m = _HOST.fullmatch(header.strip().lower())
    if m is None:
        return None
    if m["ip6"] is not None:
        return m["ip6"] if ":" in m["ip6"] else None
    return str(m["name"])


def loopback_host(header: str, *, socket: bool = True) -> bool:
    """Whether a Host header names loopback, or the socket when ``socket`` (any numeric
    port). On TCP ``api.sock`` is refused: any resolver may answer that name, then rebind
    it to loopback."""
    name = host_name(header)
    if name is None:
        return False
    return name == "localhost" or is_loopback(name) or (socket and name == API_SOCKET)


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
