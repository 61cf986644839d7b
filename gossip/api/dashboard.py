"""The dashboard: a read-only web page of this host, its peers, memories, breakers,
benchmarks and keys, at ``/ui/`` on the agents' listener (docs/ui.md).

Rules this module keeps:

- Its JSON comes from the operations table only: ``/ui`` + an operation's own path for
  each read of ``READS`` (``/ui/v1/peers``, ``/ui/v1/memories?q=…``), its parameters
  checked by the operation's fields as on the local API; and the change feed at
  ``/ui/v1/events``. Nothing here reads the replica itself.
- Who: the listener's guard (``guard.py``) still refuses a foreign ``Host``, and here
  accepts a browser only from our own pages (``guard.same_origin``); instead of the
  token, a session cookie (HttpOnly, SameSite=Strict) that ``/ui/login?code=…`` gives
  once for a one-time code (``logins.py``; `gossip web` asks for one, op ``web_login``).
  Without it a page is a 401 saying to run `gossip web`, and JSON a 401 too.
- What a browser may do with our pages: a strict Content-Security-Policy (our own files
  only, no inline script or style, no frames), no referrer, nothing cached. The files
  are plain HTML, CSS and JavaScript in ``static/`` (package data, no build step); the
  page renders every text it is given as text (``textContent``), never as HTML.
"""

from __future__ import annotations

import html
from importlib import resources
from typing import Any

from aiohttp import web

from ..errors import Conflict, Unauthorized
from ..ops import OPERATIONS
from ..ops.online import NodeHost
from ..ops.web import NO_DASHBOARD
from .feed import Feed
from .guard import read_query, run_op
from .local import stream_events
from .logins import CODE_TTL_S, SESSION_TTL_S, Logins

# The operations the dashboard reads (each a GET that writes nothing).
READS = ("status", "peers", "recall", "memory", "show", "banks", "breakers", "breaker",
         "bench_show", "trust_list", "inspect")  # fmt: skip
PAGE_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; script-src 'self'; style-src 'self'; "
    "img-src 'self'; connect-src 'self'; base-uri 'none'; form-action 'self'; "
    "frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Resource-Policy": "same-origin",
}
STATIC = {"app.js": "text/javascript", "style.css": "text/css", "icon.svg": "image/svg+xml"}
LOG_IN = "log in first: run `gossip web` on this host (it opens a one-time login link)"


class Dashboard:
    """The dashboard of one running node, mounted by ``AgentsApi`` on its listener."""

    def __init__(self, host: NodeHost, feed: Feed, logins: Logins | None = None) -> None:
        for name in READS:
            op = OPERATIONS[name]
            assert op.method == "GET" and not op.writes, name
        self.host = host
        self.feed = feed
        self.logins = logins or Logins()
        self.url: str | None = None  # the listener's, once it serves
        self.cookie = "smg_session"

    def serving(self, url: str) -> None:
        """The listener is bound to ``url``: login links may be given. The cookie's name
        has the port: cookies are shared by every port of a host."""
        port = url.rsplit(":", 1)[-1]
        for wildcard, loopback in (("0.0.0.0", "127.0.0.1"), ("[::]", "[::1]")):
            url = url.replace(f"//{wildcard}:", f"//{loopback}:")  # a link to open here
        self.url = url
        self.cookie = f"smg_session_{port}"

    def login_link(self) -> dict[str, Any]:
        """A one-time login link (op ``web_login``)."""
        if self.url is None:
            raise Conflict(NO_DASHBOARD)
        code = self.logins.code()
        return {"url": f"{self.url}/ui/login?code={code}",
                "expires_at": self.host.now_ms() + int(CODE_TTL_S * 1000)}  # fmt: skip

    # -- routes ------------------------------------------------------------------------

    def add_routes(self, app: web.Application) -> None:
        r = app.router
        for path in ("/ui", "/ui/"):
            r.add_get(path, _browser(self.index))
        r.add_get("/ui/login", _browser(self.login))
        r.add_get("/ui/static/{name}", _browser(self.static))
        for name in READS:
            r.add_get("/ui" + OPERATIONS[name].path, _browser(self._endpoint(name)))
        r.add_get("/ui/v1/events", _browser(self.events))
        app.on_response_prepare.append(_page_headers)

    def _logged_in(self, request: web.Request) -> bool:
        return self.logins.valid(request.cookies.get(self.cookie))

    def _endpoint(self, name: str) -> Any:
        op = OPERATIONS[name]

        async def endpoint(request: web.Request) -> web.Response:
            if not self._logged_in(request):
                raise Unauthorized(LOG_IN)
            return await run_op(op, self.host, request)

        endpoint.__name__ = f"ui_{name}"
        return endpoint

    async def events(self, request: web.Request) -> web.StreamResponse:
        if not self._logged_in(request):
            raise Unauthorized(LOG_IN)
        return await stream_events(request, self.feed,
                                   allowed=lambda: self._logged_in(request))  # fmt: skip

    async def index(self, request: web.Request) -> web.Response:
        read_query(request, set())
        if request.path == "/ui":
            raise web.HTTPFound("/ui/")
        if not self._logged_in(request):
            return _message(401, "Log in to this dashboard", LOG_IN + ".")
        return web.Response(body=_file("index.html"), content_type="text/html", charset="utf-8")

    async def login(self, request: web.Request) -> web.Response:
        code = read_query(request, {"code"}).get("code", "")
        session = self.logins.redeem(code) if code else None
        if session is None and self._logged_in(request):  # a spent link, from the history
            raise web.HTTPSeeOther("/ui/")
        if session is None:
            return _message(401, "This login link does not work",
                            "It was used already, or it is more than a minute old, or it "
                            "belongs to a daemon that restarted since. Run `gossip web` "
                            "again for a new one.")  # fmt: skip
        out = web.Response(status=303, headers={"Location": "/ui/"})
        out.set_cookie(self.cookie, session, path="/ui", max_age=int(SESSION_TTL_S),
                       httponly=True, samesite="Strict")  # fmt: skip
        return out

    async def static(self, request: web.Request) -> web.Response:
        read_query(request, set())
        name = request.match_info["name"]
        if name not in STATIC:
            raise web.HTTPNotFound()
        return web.Response(body=_file(name), content_type=STATIC[name])


def _browser(handler: Any) -> Any:
    """Mark ``handler`` as a route a browser uses (``Guard.browser``)."""

    async def route(request: web.Request) -> web.StreamResponse:
        return await handler(request)

    route.browser = True  # type: ignore[attr-defined]
    route.__name__ = getattr(handler, "__name__", "ui")
    return route


def is_browser_route(request: web.Request) -> bool:
    """Whether ``request`` is for a route of the dashboard. Under ``/ui`` with no route
    for it, it is too: its 404 or 405 runs nothing, and says so (rather than ask a
    browser for the token)."""
    info = request.match_info
    if info.http_exception is not None:
        return request.path == "/ui" or request.path.startswith("/ui/")
    return bool(getattr(info.handler, "browser", False))


async def _page_headers(request: web.Request, response: web.StreamResponse) -> None:
    if is_browser_route(request):
        response.headers.update(PAGE_HEADERS)


def _file(name: str) -> bytes:
    return resources.files(__package__).joinpath("static", name).read_bytes()


def _message(status: int, title: str, text: str) -> web.Response:
    """A page that only says something (no script)."""
    body = (f'<!doctype html><html lang="en"><head><meta charset="utf-8"><meta name="viewport" '
            f'content="width=device-width, initial-scale=1"><title>{html.escape(title)} · '
            f'sm-gossip</title><link rel="stylesheet" href="/ui/static/style.css"></head>'
            f'<body><main class="message"><h1>{html.escape(title)}</h1><p>{html.escape(text)}'
            f"</p></main></body></html>")  # fmt: skip
    return web.Response(status=status, text=body, content_type="text/html")
