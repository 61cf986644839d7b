"""One short, rate-limited warning for a malformed request, instead of a traceback each.

aiohttp logs every request it cannot parse (a bad header, a broken chunk, a port
scanner) at ERROR with a full traceback. On a port that anybody on the LAN can reach,
that lets an unauthenticated stranger fill the log, and it reads like a bug of ours
when it is the other side's. Each of our servers gives aiohttp a ``ServerLog`` instead
of its logger: a parse error becomes one WARNING line naming the address and the
reason, at most ``burst`` of them per ``window`` seconds for that server; the next line
let through says how many were left out. Everything else is logged unchanged.

The line says why, never what: aiohttp's message quotes the offending bytes (a Cookie
header over its limit, a request line with a byte it refuses), which can hold a session
cookie, a login code or a token, so the quote and what follows it are dropped.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable, MutableMapping
from typing import Any

from aiohttp.http_exceptions import HttpProcessingError

# Where aiohttp's message starts quoting the request: b'…', bytearray(b'…'), '…', "…".
_QUOTE = re.compile(r"""(?:bytearray\()?b?['"]""")


class ServerLog(logging.LoggerAdapter):  # type: ignore[type-arg]
    """What aiohttp's request handler logs through (``web.Server(..., logger=...)``)."""

    def __init__(
        self,
        logger: logging.Logger,
        *,
        burst: int = 5,
        window: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__(logger, {})
        self.burst = burst
        self.window = window
        self.clock = clock
        self._window_start = -window
        self._logged = 0
        self.left_out = 0  # since the last line let through

    def log(self, level: int, msg: object, *args: object, **kwargs: Any) -> None:
        exc = kwargs.get("exc_info")
        if not isinstance(exc, HttpProcessingError):
            super().log(level, msg, *args, **kwargs)
            return
        now = self.clock()
        if now - self._window_start >= self.window:
            self._window_start, self._logged = now, 0
        if self._logged >= self.burst:
            self.left_out += 1
            return
        self._logged += 1
        remote = args[0] if args else "?"
        reason = reason_of(exc)
        more = f" ({self.left_out} more left out)" if self.left_out else ""
        self.left_out = 0
        self.logger.warning(
            "refused a malformed HTTP request from %s: %d %s%s", remote, exc.code, reason, more
        )

    def process(self, msg: Any, kwargs: MutableMapping[str, Any]) -> tuple[Any, Any]:
        return msg, kwargs


def reason_of(exc: HttpProcessingError) -> str:
    """Why aiohttp refused a request, without the bytes it quotes."""
    said = _QUOTE.split(str(exc.message), maxsplit=1)[0]
    return " ".join(said.split()).rstrip(" :.")[:200] or type(exc).__name__
