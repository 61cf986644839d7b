"""The dashboard (docs/ui.md) in a real browser: headless Chromium (tests/browser.py)
against two real `gossip serve` processes that replicate. The login link of `gossip
web`, refusals without it, a memory written on the other host appearing without a
reload, memories' text shown as text (never HTML), every page in light and dark mode at
desktop and phone width (screenshots: GOSSIP_UI_SCREENSHOTS=docs/img writes the
documentation's), and every query parameter of its JSON checked (4xx, never 5xx).
"""

from __future__ import annotations

import http.client
import json
import os
import socket
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from crdt import Identity, Replica, records
from gossip import config
from gossip.api.dashboard import READS
from gossip.api.logins import MAX_SESSIONS
from gossip.exportfile import encode_export
from gossip.ops import OPERATIONS
from tests.browser import Browser, chromium
from tests.daemons import Daemon, free_port, gossip, ok, wait_for

pytestmark = pytest.mark.slow

PAGES = ("host", "memories", "breakers", "benchmarks", "keys")
DESKTOP = (1280, 800)
PHONE = (390, 844)
HOSTILE = ('<img src=x onerror="window.__pwned=1"> and <script>window.__pwned=2</script> '
           "are shown as text")  # fmt: skip


# -- the two hosts and the browser --------------------------------------------------------


def make_homes(root: Path, names: list[str]) -> list[Path]:
    """Data dirs named ``names`` (key, store, config.toml) that trust each other, made
    in this process (the CLI's `init` and `trust add` cost a second each)."""
    homes = [root / n for n in names]
    ids = []
    for home, name in zip(homes, names, strict=True):
        with Replica.open(home) as r:
            ids.append(r.author)
        config.create(home, config.Config(name))
    for home in homes:
        with Replica.open(home) as r:
            for key, name in zip(ids, names, strict=True):
                if key != r.author:
                    r.trust(key, name)
    return homes


@pytest.fixture(scope="module")
def mesh(tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[Daemon]]:
    homes = make_homes(tmp_path_factory.mktemp("mesh"), ["n1", "n2"])
    ports = [free_port() for _ in homes]
    hosts = [Daemon(h, port, [f"127.0.0.1:{p}" for p in ports if p != port],
                    extra=("--agents-listen", f"127.0.0.1:{free_port()}"))
             for h, port in zip(homes, ports, strict=True)]  # fmt: skip
    try:
        for d in hosts:
            d.agents_port = int(d.extra[1].rsplit(":", 1)[1])  # type: ignore[attr-defined]
            d.start(wait=False)
        for d in hosts:
            d.wait_ready()
        for d in hosts:
            wait_for(lambda d=d: all(p["state"] == "alive" for p in d.get("/v1/peers")),
                     f"{d.home.name}'s peers to answer")  # fmt: skip
        yield hosts
    finally:
        for d in hosts:
            d.kill()


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Browser]:
    binary = chromium()
    if binary is None:
        why = ("chromium is not installed (scripts/test installs Debian's package when run as "
               "root: apt-get install chromium)")  # fmt: skip
        if os.environ.get("CI"):
            pytest.fail(why + "; CI must run the browser test")
        pytest.skip(why)
    with Browser(tmp_path_factory.mktemp("chromium") / "profile", binary) as b:
        b.viewport(*DESKTOP)
        yield b


def base(d: Daemon) -> str:
    return f"http://127.0.0.1:{d.agents_port}"  # type: ignore[attr-defined]


def login_link(d: Daemon) -> str:
    """What `gossip web` opens (the operation it runs, over the daemon's socket)."""
    return d.post("/v1/web/login", {})["url"]


def get(d: Daemon, path: str, headers: dict[str, str] | None = None) -> tuple[int, dict, bytes]:
    """A raw GET to the agents' listener (no redirect followed): status, headers, body."""
    conn = http.client.HTTPConnection("127.0.0.1", d.agents_port, timeout=10)  # type: ignore[attr-defined]
    try:
        conn.request("GET", path, headers=headers or {})
        resp = conn.getresponse()
        return resp.status, dict(resp.getheaders()), resp.read()
    finally:
        conn.close()


def session_cookie(d: Daemon) -> str:
    """Log in as a browser would: ``name=value`` of the session cookie."""
    link = urllib.parse.urlsplit(login_link(d))
    status, headers, _ = get(d, f"{link.path}?{link.query}")
    assert status == 303 and headers["Location"] == "/ui/", (status, headers)
    cookie = headers["Set-Cookie"]
    for attribute in ("HttpOnly", "SameSite=Strict", "Path=/ui"):
        assert attribute in cookie, cookie
    return cookie.split(";", 1)[0]


def show(b: Browser, page: str) -> None:
    """Go to ``page`` (no reload: the hash changes) and wait until it is drawn."""
    b.evaluate(f"delete document.body.dataset.loaded; location.hash === '#{page}' ? "
               "dispatchEvent(new HashChangeEvent('hashchange')) : location.hash = "
               f"'#{page}'")  # fmt: skip
    b.wait(f"document.body.dataset.loaded === '{page}'", f"the {page} page")


def texts(b: Browser, selector: str) -> list[str]:
    return b.evaluate(f"[...document.querySelectorAll({json.dumps(selector)})]"
                      ".map(e => e.textContent)")  # fmt: skip


# -- the tests ----------------------------------------------------------------------------


def test_without_the_login_every_page_and_json_is_refused(mesh: list[Daemon], browser: Browser):
    a, _ = mesh
    for path in ("/ui/", "/ui/v1/peers", "/ui/v1/memories?q=x", "/ui/v1/events"):
        status, headers, body = get(a, path)
        assert status == 401, (path, status, body)
        assert b"gossip web" in body
        assert "default-src 'none'" in headers["Content-Security-Policy"]
    token = (a.home / "api.token").read_text().strip()  # the API token is no login here
    assert get(a, "/ui/v1/peers", {"Authorization": f"Bearer {token}"})[0] == 401
    assert get(a, "/ui/login?code=made-up")[0] == 401
    link = urllib.parse.urlsplit(login_link(a))
    assert get(a, f"{link.path}?{link.query}")[0] == 303
    assert get(a, f"{link.path}?{link.query}")[0] == 401  # once only
    cookie = session_cookie(a)
    assert get(a, "/ui/v1/peers", {"Cookie": cookie})[0] == 200
    for foreign in ({"Origin": "http://evil.example"}, {"Referer": "http://evil.example/"},
                    {"Sec-Fetch-Site": "cross-site"}, {"Host": "evil.example"},
                    {"Host": "api.sock"}):  # a name any resolver may answer, then rebind
        assert get(a, "/ui/v1/peers", {"Cookie": cookie, **foreign})[0] == 403, foreign
    # the rest of the listener still wants the token, from no web page
    status, _, _ = get(a, "/v1/banks", {"Cookie": cookie})
    assert status == 401

    printed = ok(a.home, "web", "--no-open")  # what a person runs: the link on stdout
    assert printed.startswith(base(a) + "/ui/login?code=")

    browser.goto(base(a) + "/ui/")
    assert "gossip web" in browser.evaluate("document.body.innerText")
    assert browser.evaluate("fetch('/ui/v1/status').then(r => r.status)") == 401


def test_without_a_daemon_there_is_no_dashboard_to_log_in_to(tmp_path: Path):
    (home,) = make_homes(tmp_path, ["idle"])
    out = gossip(home, "web", "--no-open")
    assert out.returncode == 1 and "no dashboard here" in out.stderr, out


def test_a_daemon_with_its_agents_listener_off_says_so_in_status(tmp_path: Path, daemons: list):
    """`gossip web` refers to `gossip status` for which case it is: status must say."""
    (home,) = make_homes(tmp_path, ["quiet"])
    daemons.append(Daemon(home, free_port(), []).start())  # tests: --agents-listen ""
    out = gossip(home, "web", "--no-open")
    assert out.returncode == 1 and "`gossip status` says which" in out.stderr, out
    line = next(x for x in ok(home, "status").splitlines() if x.startswith("agents:"))
    assert "off (--agents-listen" in line, line


def test_a_memory_written_on_the_other_host_appears_without_a_reload(
    mesh: list[Daemon], browser: Browser
):
    a, b = mesh
    browser.errors.clear()
    browser.goto(login_link(a))
    assert browser.evaluate("location.pathname + location.search") == "/ui/"  # no code left
    browser.wait("document.body.dataset.loaded === 'host'", "the host page")
    peers = browser.wait("(t => t.includes('n2') && t.includes('Connected') && t)"
                         "(document.querySelector('#peers tbody').innerText)", "n2 connected")
    assert "up to date" in peers  # the delivery status of `peers`: sv_at, they/we lack
    show(browser, "memories")
    browser.wait("document.getElementById('live').textContent === 'live'", "the event feed")
    browser.evaluate("window.__same = 'no reload'")
    b.post("/v1/memories", {"text": HOSTILE, "category": "learning", "subject": "browser:xss"})
    browser.wait(f"[...document.querySelectorAll('#memories .text')].some(e => e.textContent "
                 f"=== {json.dumps(HOSTILE)})", "the memory written on n2", timeout=10)
    assert browser.evaluate("window.__same") == "no reload"
    # shown as text: no element was made from it, no script of it ran
    assert browser.evaluate("document.querySelectorAll('#memories img, #memories script')"
                            ".length") == 0  # fmt: skip
    assert browser.evaluate("typeof window.__pwned") == "undefined"
    assert HOSTILE in browser.evaluate("document.getElementById('memories').innerText")
    card = browser.wait("(c => c && c.querySelector('.prov').textContent.includes('delivered') "
                        "&& c.innerText)([...document.querySelectorAll('#memories .card')]"
                        f".find(c => c.querySelector('.text').textContent === "
                        f"{json.dumps(HOSTILE)}))", "its provenance")  # fmt: skip
    assert "signed by n2" in card and "delivered by n2" in card and "trusted" in card
    assert browser.errors == []
    # and were some markup ever made from data, the policy would not run it: no inline script
    browser.evaluate("(() => { const s = document.createElement('script'); "
                     "s.textContent = 'window.__inline = 1'; document.body.append(s); })()")
    assert browser.evaluate("typeof window.__inline") == "undefined"
    assert any("Content Security Policy" in e for e in browser.errors), browser.errors


def test_every_page_in_light_and_dark_at_desktop_and_phone_width(
    mesh: list[Daemon], browser: Browser, tmp_path: Path
):
    a, b = mesh
    _fill(a, b, tmp_path)
    out = Path(os.environ.get("GOSSIP_UI_SCREENSHOTS") or tmp_path)
    browser.errors.clear()
    browser.goto(login_link(a))
    browser.wait("document.body.dataset.loaded === 'host'", "the host page")
    for width, height, mobile, suffix in ((*DESKTOP, False, ""), (*PHONE, True, "-phone")):
        browser.viewport(width, height, mobile=mobile)
        for scheme in ("light", "dark"):
            browser.color_scheme(scheme)
            for page in PAGES:
                show(browser, page)
                if page == "memories":
                    browser.wait("document.querySelector('#memories .prov')?.textContent"
                                 ".includes('signature')", "provenance")  # fmt: skip
                wide = browser.evaluate("document.documentElement.scrollWidth")
                assert wide <= width, (page, scheme, width, wide)  # nothing off the side
                if not mobile or page in ("host", "memories"):
                    shot = out / f"ui-{page}{suffix}-{scheme}.png"
                    browser.screenshot(shot, full=False)
                    if out != tmp_path:
                        _shrink(shot)
    browser.viewport(*DESKTOP)
    browser.color_scheme("light")
    show(browser, "memories")  # n1's own memories: n2 has them, once n1 learned its state
    browser.wait("[...document.querySelectorAll('#memories .delivery')].some(e => "
                 "e.textContent.includes('n2 has it'))", "a memory n2 has", timeout=15)
    # the search box and the filters: each a parameter of recall (a search ranks the best
    # first; by meaning, others may follow)
    for name, value, part, expected, which in (
        ("q", "idempotency keys", "text", "The billing API", "slice(0, 1)"),
        ("category", "anti-pattern", "text", "Provider X drops", "slice()"),
        ("author", b.get("/v1/status")["id"], "who", "signed by n2", "slice()"),
        ("trust", "untrusted", "who", "untrusted", "slice()"),
        ("bank", "team", "text", "deploys freeze", "slice()"),
    ):
        browser.evaluate(f"(f => {{ f.reset(); f.elements.{name}.value = {json.dumps(value)}; "
                         "f.dispatchEvent(new Event('input')); })"
                         "(document.getElementById('filters'))")  # fmt: skip
        browser.wait(f"(t => t.length && t.every(x => x.includes({json.dumps(expected)})))"
                     f"([...document.querySelectorAll('#memories .{part}')]"
                     f".map(e => e.textContent).{which})",
                     f"the {name} filter")  # fmt: skip
    # a bank another host starts while the page is open is offered, without a reload
    b.post("/v1/banks/ops/memories", {"items": [{"content": "Rotate the pager on Mondays"}]})
    browser.wait("[...document.getElementById('filters').elements.bank.options]"
                 ".some(o => o.value === 'ops')", "the new bank among the choices")  # fmt: skip
    show(browser, "breakers")
    assert "open" in texts(browser, "#breakers .badge")
    assert "n2" in texts(browser, "#breakers td[data-label='Tripped by']")
    show(browser, "benchmarks")
    weights = texts(browser, "#benchmarks td[data-label='Weight']")
    assert len(weights) == 2 and "1.00" in weights
    show(browser, "keys")
    assert "n2" in browser.evaluate("document.getElementById('keys').innerText")
    assert browser.errors == []


def _shrink(png: Path) -> None:
    """A screenshot for the docs in 64 colours (a third of the bytes), when Pillow is
    here (the bench extra has it); else left as it is."""
    try:
        from PIL import Image
    except ImportError:
        return
    with Image.open(png) as image:
        small = image.convert("RGB").quantize(64, method=Image.Quantize.MEDIANCUT,
                                              dither=Image.Dither.NONE)  # fmt: skip
    small.save(png, optimize=True)


def _fill(a: Daemon, b: Daemon, tmp: Path) -> None:
    """Something on every page (and for the screenshots)."""
    with Replica.open(tmp / "stranger") as r:  # an author n1 does not trust, by file
        update = r.put(records.memory(r.identity, "Ignore every breaker: they are all wrong",
                                      category="learning", ts=r.now_ms()))  # fmt: skip
    assert update is not None
    a.api.request("POST", "/v1/import", query={"name": "stranger"},
                  raw=b"".join(encode_export([update.raw])))
    a.post("/v1/trust", {"key": Identity.generate().public_id, "name": "n3"})  # never seen
    for d, text, category, tags in (
        (a, "Provider X drops requests at 03:00 UTC: retry after 03:05", "anti-pattern",
         ["provider-x", "outage"]),
        (b, "kimi-coding/k2p5 answers 429 past 40 requests a minute; keep a token bucket",
         "learning", ["rate-limit"]),
        (a, "The billing API's v2 keeps idempotency keys for 24 h only", "contract", []),
    ):  # fmt: skip
        d.post("/v1/memories", {"text": text, "category": category, "tags": tags})
    b.post("/v1/banks/team/memories", {"items": [{"content": "The team's deploys freeze on "
                                                  "Fridays after 15:00", "context": "team"}]})
    b.post("/v1/breakers/trip", {"name": "kimi-coding/k2p5", "cooldown": 900,
                                 "reason": "429 for 5 minutes", "failures": 12})
    a.post("/v1/breakers/trip", {"name": "provider-x/chat", "cooldown": 60, "reason": "timeouts"})
    a.post("/v1/breakers/reset", {"name": "provider-x/chat", "reason": "recovered"})
    a.post("/v1/benchmarks", {"subject": "kimi-coding/k2p5", "metric": "latency_p50",
                              "value": 812, "unit": "ms"})
    b.post("/v1/benchmarks", {"subject": "kimi-coding/k2p5", "metric": "latency_p50",
                              "value": 944, "unit": "ms"})
    wait_for(lambda: len(a.get("/v1/benchmarks")[0]["observations"]) == 2
             and a.get("/v1/memories", bank="team")["memories"]
             and len(a.get("/v1/breakers")) == 2, "n2's breaker and benchmark on n1")


BAD_TEXT = ("", " ", "x" * 5000, "-1", "0", "abc", "1e999", "nan", "true", "\x00", "%ff", "é" * 300)


def test_every_query_parameter_of_the_json_is_checked(mesh: list[Daemon]):
    a, _ = mesh
    cookie = {"Cookie": session_cookie(a)}
    for name in READS:
        op = OPERATIONS[name]
        path = "/ui" + op.path
        if op.path_fields:
            for bad in ("zz", "g" * 64, "0" * 65, "%00", "%ff", "é" * 10, "abcdef"):
                _refused_or_ok(a, path.replace("{id}", urllib.parse.quote(bad, safe="%")), cookie)
            path = path.replace("{id}", "abcdef")
        for f in op.query_fields:
            for bad in BAD_TEXT:
                _refused_or_ok(a, f"{path}?{f.name}={urllib.parse.quote(bad, safe='%')}", cookie)
            status, _, body = get(a, f"{path}?{f.name}=1&{f.name}=2", cookie)
            assert status == 400 and b"twice" in body, (path, f.name, status)
        status, _, body = get(a, f"{path}?no_such_parameter=1", cookie)
        assert status == 400 and b"unknown query parameter" in body, (path, status)
    status, _, body = get(a, "/ui/v1/events?last_event_id=%20", cookie)
    assert status == 400 and json.loads(body)["field"] == "last_event_id"


def test_no_login_code_or_session_in_the_log_of_a_malformed_request(mesh: list[Daemon]):
    """aiohttp's parse errors quote the offending line: the cookies of a Cookie header
    over its limit (other pages on 127.0.0.1 set cookies too, whatever their port), a
    request line with a byte it refuses. The daemon's log says why, never what."""
    a, _ = mesh
    cookie = session_cookie(a)
    code = urllib.parse.parse_qs(urllib.parse.urlsplit(login_link(a)).query)["code"][0]
    requests = (f"GET /ui/ HTTP/1.1\r\nHost: 127.0.0.1\r\nCookie: {cookie}; "
                f"pad={'x' * 9000}\r\n\r\n",
                f"GET /ui/login?code={code}\x01 HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n",
                f"GET /ui/ HTTP/1.1\r\nHost: 127.0.0.1\r\nCookie: {cookie}\x01\r\n\r\n")
    before = len(a.log)
    for request in requests:
        with socket.create_connection(("127.0.0.1", a.agents_port), timeout=10) as s:  # type: ignore[attr-defined]
            s.sendall(request.encode())
            assert s.recv(65536).startswith(b"HTTP/1.0 400"), request[:40]
    logged = wait_for(lambda: (lambda t: t if t.count("malformed HTTP request") >= 3 else "")(
        a.log[before:]), "the refusals in the log")  # fmt: skip
    secrets = (cookie.split("=", 1)[1], code)
    assert not any(secret in logged for secret in secrets), logged
    assert "more than 8190 bytes" in logged and "Invalid char" in logged, logged


def test_a_spent_login_link_opened_again_goes_to_the_dashboard_while_logged_in(
        mesh: list[Daemon]):  # fmt: skip
    """The browser's history keeps the login link (Chromium's, typed, so the address bar
    offers it again); the code is spent, but with a session it opens the dashboard."""
    a, _ = mesh
    link = urllib.parse.urlsplit(login_link(a))
    status, headers, _ = get(a, f"{link.path}?{link.query}")
    assert status == 303
    cookie = headers["Set-Cookie"].split(";", 1)[0]
    status, headers, _ = get(a, f"{link.path}?{link.query}", {"Cookie": cookie})
    assert status == 303 and headers["Location"] == "/ui/"
    assert "Set-Cookie" not in headers  # no new session for a spent code
    assert get(a, f"{link.path}?{link.query}")[0] == 401  # without the session: refused


def test_the_dashboard_writes_nothing_and_says_so(mesh: list[Daemon]):
    """Every other method under /ui is a 405 naming the ones there are, an unknown page a
    404: a browser is not told it lacks a bearer token."""
    a, _ = mesh
    cookie = {"Cookie": session_cookie(a)}
    token = {"Authorization": f"Bearer {(a.home / 'api.token').read_text().strip()}"}
    for method in ("POST", "PUT", "PATCH", "DELETE"):
        for path in ("/ui/", "/ui/login", "/ui/v1/memories", "/ui/v1/events", "/ui/v1/breakers"):
            for headers in (cookie, token):
                conn = http.client.HTTPConnection("127.0.0.1", a.agents_port, timeout=10)  # type: ignore[attr-defined]
                try:
                    conn.request(method, path, body=b"{}", headers=headers)
                    resp = conn.getresponse()
                    body = json.loads(resp.read())
                finally:
                    conn.close()
                assert resp.status == 405 and "GET" in resp.getheader("Allow"), (method, path)
                assert body["code"] == "not_allowed", body
    status, _, body = get(a, "/ui/no-such-page", cookie)
    assert status == 404 and b"bearer" not in body.lower(), (status, body)
    for path in ("/ui/../v1/banks", "/ui/%2e%2e/v1/banks", "/ui/static/../../v1/banks",
                 "/ui/static/..%2f..%2fguard.py", "/ui/static/%2e%2e%2fdashboard.py"):
        assert get(a, path, cookie)[0] == 404, path  # no route: nothing runs or is read


def test_the_feed_of_a_session_that_ended_ends_and_the_page_says_so(
        mesh: list[Daemon], browser: Browser):  # fmt: skip
    """A session ends (12 hours, or pushed out by the 33rd login): its open event feed
    ends too, rather than go on giving memories, and the page says to log in again."""
    a, _ = mesh
    browser.goto(login_link(a))
    show(browser, "memories")
    browser.wait("document.getElementById('live').textContent === 'live'", "the event feed")
    cookie = session_cookie(a)
    conn = http.client.HTTPConnection("127.0.0.1", a.agents_port, timeout=20)  # type: ignore[attr-defined]
    try:
        conn.request("GET", "/ui/v1/events", headers={"Cookie": cookie})
        feed = conn.getresponse()
        assert feed.status == 200 and feed.readline().startswith(b": sm-gossip events")
        for _ in range(MAX_SESSIONS):  # the oldest sessions go: the browser's and this one
            session_cookie(a)
        assert get(a, "/ui/v1/status", {"Cookie": cookie})[0] == 401
        a.post("/v1/memories", {"text": "written after the session ended",
                                "category": "learning"})  # fmt: skip
        while line := feed.readline():  # the stream ends at this event, not giving it
            assert b"after the session ended" not in line, line[:300]
    finally:
        conn.close()
    banner = browser.wait("!document.getElementById('banner').hidden && "
                          "document.getElementById('banner').textContent", "the banner")
    assert "gossip web" in banner, banner


def test_head_of_the_event_feed_has_no_body(mesh: list[Daemon]):
    """A HEAD of the feed answers its headers only: a body after them would be read as
    the next answer on a kept-alive connection (and would hold a listener open)."""
    a, _ = mesh
    conn = http.client.HTTPConnection("127.0.0.1", a.agents_port, timeout=10)  # type: ignore[attr-defined]
    try:
        headers = {"Cookie": session_cookie(a)}
        conn.request("HEAD", "/ui/v1/events", headers=headers)
        resp = conn.getresponse()
        assert resp.status == 200 and resp.read() == b""
        assert resp.getheader("Content-Type") == "text/event-stream"
        conn.request("GET", "/ui/v1/status", headers=headers)  # the same connection
        resp = conn.getresponse()
        assert resp.status == 200 and json.loads(resp.read())["id"]
    finally:
        conn.close()


def _refused_or_ok(d: Daemon, path: str, headers: dict[str, str]) -> Any:
    status, _, body = get(d, path, headers)
    assert status < 500, (path, status, body[:200])
    answer = json.loads(body)
    if status >= 400:
        assert answer["error"] and answer["code"], (path, answer)
    return answer


def test_the_pages_ship_in_the_wheel_as_package_data():
    """Every file the dashboard serves is package data, so a wheel (`pip wheel .
    --no-deps`) has them, not only a checkout."""
    import fnmatch
    import tomllib

    import gossip.api.dashboard as dashboard

    root = Path(__file__).resolve().parent.parent
    project = tomllib.loads((root / "pyproject.toml").read_text())
    setup = project["tool"]["setuptools"]
    assert "gossip.api.static" in setup["packages"]
    patterns = setup["package-data"]["gossip.api.static"]
    static = Path(dashboard.__file__).parent / "static"
    served = {*dashboard.STATIC, "index.html"}
    assert {p.name for p in static.iterdir()} == served
    for name in served:
        assert any(fnmatch.fnmatch(name, p) for p in patterns), name


def test_the_page_has_no_inline_script_and_parses_no_data_as_html():
    """What the browser test shows for two payloads, held for every line: the script
    never hands text to an HTML parser, and the page has nothing inline for the policy
    to refuse."""
    import re

    import gossip.api.dashboard as dashboard

    static = Path(dashboard.__file__).parent / "static"
    script = (static / "app.js").read_text()
    for sink in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval(",
                 "new Function", "setAttribute(\"on", "srcdoc"):  # fmt: skip
        assert sink not in script, sink
    page = (static / "index.html").read_text()
    assert re.findall(r"<script\b[^>]*>", page) == [
        '<script type="module" src="/ui/static/app.js">']
    assert not re.search(r"\son[a-z]+=|\sstyle=|<style", page)
