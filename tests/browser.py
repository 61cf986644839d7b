"""A real browser for tests: headless Chromium (Debian's ``chromium`` package; scripts/test
installs it where missing) driven over the DevTools protocol with aiohttp's websocket
client, so no driver package and no browser download. Sync methods, for sync tests: the
protocol runs on an event loop in a thread of its own.

Chromium starts with a fresh profile and without its background services (updates,
sync, safe browsing, QUIC), so it connects to nothing but the pages a test opens.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import itertools
import json
import os
import shutil
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import aiohttp

FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-default-apps", "--disable-extensions", "--mute-audio",
         "--hide-scrollbars", "--remote-debugging-port=0")  # fmt: skip
CALL_TIMEOUT = 20.0


def chromium() -> str | None:
    """The Chromium binary, or None."""
    for name in ("chromium", "chromium-browser"):
        found = shutil.which(name)
        if found:
            return found
    return "/usr/bin/chromium" if os.access("/usr/bin/chromium", os.X_OK) else None


class BrowserError(AssertionError):
    pass


class Browser:
    """One headless Chromium with one page. ``errors`` collects the page's uncaught
    exceptions and its console errors (CSP violations among them)."""

    def __init__(self, profile: Path, binary: str) -> None:
        self.profile = profile
        self.binary = binary
        self.errors: list[str] = []
        self._proc: subprocess.Popen[bytes] | None = None
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._ids = itertools.count(1)
        self._waiting: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self._ws: aiohttp.ClientWebSocketResponse | None = None
        self._http: aiohttp.ClientSession | None = None
        self._session = ""

    # -- lifecycle ---------------------------------------------------------------------

    def start(self) -> Browser:
        self.profile.mkdir(parents=True, exist_ok=True)
        log = open(self.profile.parent / f"{self.profile.name}.log", "ab")  # noqa: SIM115
        self._proc = subprocess.Popen([self.binary, *FLAGS, f"--user-data-dir={self.profile}",
                                       "about:blank"], stdout=log, stderr=subprocess.STDOUT)
        log.close()
        port_file = self.profile / "DevToolsActivePort"
        deadline = time.monotonic() + 30
        while not (port_file.exists() and len(port_file.read_text().splitlines()) >= 2):
            if self._proc.poll() is not None or time.monotonic() > deadline:
                raise BrowserError(f"chromium did not start (exit {self._proc.poll()})")
            time.sleep(0.05)
        port, path = port_file.read_text().splitlines()[:2]
        self._thread.start()
        self._run(self._connect(f"ws://127.0.0.1:{port}{path}"))
        return self

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self._run(self._disconnect(), timeout=5)
        self._loop.call_soon_threadsafe(self._loop.stop)
        if self._thread.is_alive():
            self._thread.join(5)
        if self._proc is not None and self._proc.poll() is None:
            self._proc.terminate()
            try:
                self._proc.wait(10)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait(10)
        shutil.rmtree(self.profile, ignore_errors=True)

    def __enter__(self) -> Browser:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- the protocol ------------------------------------------------------------------

    def _run(self, coro: Any, timeout: float = CALL_TIMEOUT) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout)

    async def _connect(self, url: str) -> None:
        self._http = aiohttp.ClientSession()
        self._ws = await self._http.ws_connect(url, max_msg_size=64 * 2**20)
        asyncio.get_running_loop().create_task(self._read())
        target = await self._send("Target.createTarget", {"url": "about:blank"})
        attached = await self._send("Target.attachToTarget",
                                    {"targetId": target["targetId"], "flatten": True})
        self._session = attached["sessionId"]
        for domain in ("Page", "Runtime", "Log"):
            await self._send(f"{domain}.enable", {}, page=True)

    async def _disconnect(self) -> None:
        if self._ws is not None:
            await self._ws.close()
        if self._http is not None:
            await self._http.close()

    async def _read(self) -> None:
        assert self._ws is not None
        async for msg in self._ws:
            if msg.type != aiohttp.WSMsgType.TEXT:
                break
            data = json.loads(msg.data)
            if "id" in data:
                future = self._waiting.pop(data["id"], None)
                if future is not None and not future.done():
                    future.set_result(data)
            else:
                self._event(data)
        for future in self._waiting.values():
            if not future.done():
                future.set_exception(BrowserError("the browser closed its connection"))

    def _event(self, data: dict[str, Any]) -> None:
        method, params = data.get("method"), data.get("params", {})
        if method == "Runtime.exceptionThrown":
            d = params["exceptionDetails"]
            self.errors.append(f"exception: {d.get('exception', {}).get('description') or d}")
        elif method == "Runtime.consoleAPICalled" and params.get("type") == "error":
            self.errors.append("console: " + " ".join(str(a.get("value", a.get("description")))
                                                      for a in params.get("args", [])))
        elif method == "Log.entryAdded" and params["entry"].get("level") == "error":
            entry = params["entry"]
            self.errors.append(f"log ({entry.get('source')}): {entry.get('text')} "
                               f"{entry.get('url', '')}")  # fmt: skip

    async def _send(self, method: str, params: dict[str, Any], *, page: bool = False) -> Any:
        assert self._ws is not None
        n = next(self._ids)
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._waiting[n] = future
        msg: dict[str, Any] = {"id": n, "method": method, "params": params}
        if page:
            msg["sessionId"] = self._session
        await self._ws.send_str(json.dumps(msg))
        answer = await future
        if "error" in answer:
            raise BrowserError(f"{method}: {answer['error']}")
        return answer.get("result", {})

    def call(self, method: str, **params: Any) -> Any:
        """A DevTools command to the page (``Page.navigate``, ``Emulation…``)."""
        return self._run(self._send(method, params, page=True))

    # -- what tests do -----------------------------------------------------------------

    def evaluate(self, expression: str) -> Any:
        """The JSON value of a JavaScript expression in the page (promises awaited)."""
        out = self.call("Runtime.evaluate", expression=expression, returnByValue=True,
                        awaitPromise=True)  # fmt: skip
        if "exceptionDetails" in out:
            raise BrowserError(f"{expression[:80]}: {out['exceptionDetails']}")
        return out["result"].get("value")

    def goto(self, url: str) -> None:
        """Open ``url`` and wait until the page has loaded."""
        out = self.call("Page.navigate", url=url)
        if out.get("errorText"):
            raise BrowserError(f"{url}: {out['errorText']}")
        self.wait("document.readyState === 'complete'", f"{url} to load")

    def wait(self, expression: str, what: str, timeout: float = 10.0) -> Any:
        """Wait until ``expression`` is truthy in the page; its value."""
        deadline = time.monotonic() + timeout
        while True:
            value = self.evaluate(expression)
            if value:
                return value
            if time.monotonic() > deadline:
                raise BrowserError(f"timed out after {timeout} s waiting for {what}")
            time.sleep(0.05)

    def viewport(self, width: int, height: int, *, mobile: bool = False) -> None:
        self.call("Emulation.setDeviceMetricsOverride", width=width, height=height,
                  deviceScaleFactor=1, mobile=mobile)  # fmt: skip

    def color_scheme(self, scheme: str) -> None:
        """``light`` or ``dark``, as prefers-color-scheme says it."""
        self.call("Emulation.setEmulatedMedia",
                  features=[{"name": "prefers-color-scheme", "value": scheme}])

    def screenshot(self, path: Path, *, full: bool = True) -> None:
        """A PNG of the page (the whole page when ``full``)."""
        params: dict[str, Any] = {"format": "png"}
        if full:
            size = self.evaluate("[document.documentElement.scrollWidth, "
                                 "document.documentElement.scrollHeight]")
            params["clip"] = {"x": 0, "y": 0, "width": size[0], "height": min(size[1], 2400),
                              "scale": 1}
            params["captureBeyondViewport"] = True
        out = self.call("Page.captureScreenshot", **params)
        path.write_bytes(base64.b64decode(out["data"]))
