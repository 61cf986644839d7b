"""What the user sees: lines, tables, JSON and durations, with every character that
another host wrote made harmless for a terminal. Writes only to stdout and stderr.
"""

from __future__ import annotations

import json
import sys
import time
from typing import Any

from ..ops.offline import PROGRESS_OVER


def safe(text: str) -> str:
    """Text that may come from another host, made harmless for a terminal: control and
    format characters (escape sequences, carriage returns, bidi overrides) are shown as
    Python escapes instead of being obeyed. Line breaks are kept."""
    if text.isprintable():
        return text
    return "\n".join(
        "".join(c if c.isprintable() else repr(c)[1:-1] for c in line) for line in text.split("\n")
    )


def out(line: str = "") -> None:
    print(safe(line))


def note(line: str) -> None:
    print(safe(line), file=sys.stderr)


def print_json(value: Any) -> None:
    """Indented JSON; every character a terminal might obey is a \\u escape (still JSON)."""
    text = json.dumps(value, indent=2, ensure_ascii=False)
    if not text.replace("\n", "").isprintable():
        text = "".join(c if c.isprintable() or c == "\n" else _json_escape(c) for c in text)
    print(text)


def _json_escape(c: str) -> str:
    n = ord(c)
    if n <= 0xFFFF:
        return f"\\u{n:04x}"
    n -= 0x10000  # a UTF-16 surrogate pair, as JSON spells characters beyond the BMP
    return f"\\u{0xD800 + (n >> 10):04x}\\u{0xDC00 + (n & 0x3FF):04x}"


def who(author: str, keyring: dict[str, str]) -> str:
    """How a human sees an author: its keyring name, else its id's first 12 characters."""
    name = keyring.get(author)
    return name if name else author[:12]


def span(ms: int) -> str:
    """A duration as its two largest units: 45s, 4m59s, 2h5m, 3d4h."""
    s = round(abs(ms) / 1000)
    units = (("d", 86400), ("h", 3600), ("m", 60), ("s", 1))
    for k, (unit, size) in enumerate(units[:-1]):
        if s >= size:
            low, low_size = units[k + 1]
            rest = (s % size) // low_size
            return f"{s // size}{unit}" + (f"{rest}{low}" if rest else "")
    return f"{s}s"


def ago(ts: int, now: int) -> str:
    return f"{span(now - ts)} ago" if now >= ts else f"in {span(ts - now)}"


def until(ts: int | None, now: int) -> str:
    if ts is None:
        return "-"
    return f"in {span(ts - now)}" if ts > now else f"{span(now - ts)} ago"


def in_sync(they_lack: int | None, we_lack: int | None) -> str:
    """How a peer stands against this host, in words as Syncthing says it: ``up to
    date``; ``3 behind`` (it lacks 3 records we hold); ``2 ahead`` (it held 2 that we
    lack); ``3 behind, 2 ahead``; ``unknown`` (never learned)."""
    if they_lack is None or we_lack is None:
        return "unknown"
    words = [f"{they_lack} behind"] if they_lack else []
    words += [f"{we_lack} ahead"] if we_lack else []
    return ", ".join(words) or "up to date"


def number(v: float) -> str:
    return f"{v:.6g}"


TABLE_WIDTH = 100  # human tables fit this many columns: the widest cells are cut with …


def table(header: list[str], rows: list[list[str]], *, elastic: int | None = None) -> list[int]:
    """Print ``rows`` under ``header`` within ``TABLE_WIDTH``: the ``elastic`` column
    gives way first (down to its header's width), then the widest. Returns the widths."""
    rows = [[safe(c).replace("\n", "\\n") for c in row] for row in rows]
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]

    def over() -> int:
        return sum(widths) + 2 * (len(widths) - 1) - TABLE_WIDTH

    if elastic is not None and over() > 0:
        widths[elastic] = max(len(header[elastic]) + 2, widths[elastic] - over())
    while over() > 0 and max(widths) > 8:
        widths[widths.index(max(widths))] -= 1
    for row in [header, *rows]:
        cells = [fit(c, w).ljust(w) for c, w in zip(row, widths, strict=True)]
        out("  ".join(cells).rstrip())
    return widths


def now_ms() -> int:
    return time.time_ns() // 1_000_000


class Progress:
    """A one-line progress report on stderr, only when stderr is a terminal and the work
    is long enough to be worth it; it erases itself when done."""

    def __init__(self, what: str, total: int) -> None:
        self.what = what
        self.total = total
        self.active = sys.stderr.isatty() and (total == 0 or total > PROGRESS_OVER)
        self._last = 0.0

    def show(self, done: int | None = None) -> None:
        """``done`` of ``total`` (or a count, when the total is unknown; or just "…")."""
        now = time.monotonic()
        if not self.active or (now - self._last < 0.1 and (done or 0) < self.total):
            return
        self._last = now
        count = f" {done}" if done is not None else " …"
        if done is not None and self.total:
            count += f"/{self.total}"
        sys.stderr.write(f"\r{self.what}{count}\x1b[K")
        sys.stderr.flush()

    def done(self) -> None:
        if self.active:
            sys.stderr.write("\r\x1b[K")
            sys.stderr.flush()


def fit(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


def byte_size(n: int) -> str:
    for unit in ("B", "K", "M", "G"):
        if n < 1024 or unit == "G":
            return f"{n:.0f}{unit}" if unit == "B" else f"{n:.1f}{unit}"
        n /= 1024  # type: ignore[assignment]
    return str(n)


def one_line(text: str) -> str:
    return " ".join(text.split())


def shown_plainly(found: list[Any], as_json: bool, empty: str) -> bool:
    """Show ``found`` as JSON (``--json``), or say ``empty`` when there is nothing: True
    when that was all there was to show, False when a table is still wanted."""
    if as_json:
        print_json(found)
        return True
    if not found:
        note(empty)
        return True
    return False


def plural(n: int, one: str, many: str) -> str:
    """``1 key``, ``2 keys``."""
    return f"{n} {one if n == 1 else many}"
