"""The `gossip` command. Each command goes through the local API of the daemon when one
runs on the data dir, and opens the replica itself when none does (the lock decides).

Owns argument parsing, output (human and ``--json``) and the export file format. Reading
policy lives in ``crdt.views``, the gate in ``crdt.replica``: this module only calls them,
and must never write to a document or a store except through ``Replica``.

Every failure the user can cause ends in one line on stderr and exit code 1 (2 for a
usage error), never a traceback unless ``--debug``. ``gossip serve`` itself lives in
``daemon.py``; this module only parses its flags.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import re
import sys
import tempfile
import time
import traceback
import urllib.parse
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from crdt import (
    GossipError,
    Identity,
    Replica,
    StoreLocked,
    records,
)
from crdt.files import fsync_dir
from crdt.identity import KEY_FILE, RETIRED_DIR, public_key_bytes
from crdt.lock import LOCK_FILE, DataDirLock
from crdt.records import KIND_BREAKER, KIND_MEMORY, KIND_RETRACT, split_state_key
from crdt.store import STORE_FILE
from crdt.views import Benchmark, Breaker, Memory, Recall, ViewConfig, Views

from . import config, queries
from .client import ApiConnection, ApiRefused, ApiUnavailable
from .config import default_home
from .exportfile import EXPORT_MAGIC, ExportError, decode_export, encode_export, import_summary
from .http import join_address, split_address
from .invites import DEFAULT_TTL_S, INVITES_FILE

__all__ = ["EXPORT_MAGIC", "ExportError", "decode_export", "default_home", "encode_export", "main"]

# A command waits this long for a data dir another process holds briefly (another CLI
# command): long enough for any single command to finish, short enough to notice a daemon.
LOCK_WAIT_S = 5.0
# A command that finds the data dir held waits this long for a starting daemon's API.
DAEMON_WAIT_S = 10.0
API_TIMEOUT_S = 30.0  # a request to the daemon (a sync may take a few exchanges)
IMPORT_TIMEOUT_S = 600.0  # an export or import of a large store through the daemon
IMPORT_CHUNK = 512  # updates per replica call in an embedded import (progress between)

_MAX_SECONDS = 100 * 365 * 86400
MAX_LIMIT = 1000  # recall --limit: the local API answers at most this many
_HEX_PREFIX = re.compile(r"[0-9a-f]{6,64}")


class CliError(GossipError):
    """Something the user asked for cannot be done; the message says why."""


def _write_atomic(path: str, chunks: Iterable[bytes]) -> int:
    """Write to a temporary sibling, sync, rename over ``path`` ("-": stdout). Bytes written."""
    if path == "-":
        out = sys.stdout.buffer
        n = sum(out.write(c) for c in chunks)
        out.flush()
        return n
    target = Path(path)
    parent = target.parent
    if not parent.is_dir():
        raise CliError(f"cannot write {target}: no directory {parent}")
    if target.is_dir():
        raise CliError(f"cannot write {target}: it is a directory")
    fd, tmp = tempfile.mkstemp(dir=parent, prefix=f".{target.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            n = sum(f.write(c) for c in chunks)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    fsync_dir(parent)
    return n


def _read_input(path: str) -> bytes:
    if path == "-":
        return sys.stdin.buffer.read()
    p = Path(path)
    if p.is_dir():
        raise CliError(f"{p} is a directory, not an export file")
    return p.read_bytes()


# -- helpers --------------------------------------------------------------------------


@contextmanager
def _replica(args: argparse.Namespace) -> Iterator[Replica]:
    """The replica of ``--home``, which must exist (``gossip init`` creates it)."""
    home: Path = args.home
    if not home.is_dir():
        raise CliError(f"no data dir at {home}; run `gossip init` first")
    config.load(home)  # a broken config file is reported before anything else happens
    with Replica.open(home, create=False, lock_wait=LOCK_WAIT_S) as r:
        yield r


def _safe(text: str) -> str:
    """Text that may come from another host, made harmless for a terminal: control and
    format characters (escape sequences, carriage returns, bidi overrides) are shown as
    Python escapes instead of being obeyed. Line breaks are kept."""
    if text.isprintable():
        return text
    return "\n".join(
        "".join(c if c.isprintable() else repr(c)[1:-1] for c in line) for line in text.split("\n")
    )


def _out(line: str = "") -> None:
    print(_safe(line))


def _note(line: str) -> None:
    print(_safe(line), file=sys.stderr)


def _json(value: Any) -> None:
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


def _who(author: str, keyring: dict[str, str]) -> str:
    """How a human sees an author: its keyring name, else its id's first 12 characters."""
    name = keyring.get(author)
    return name if name else author[:12]


def _span(ms: int) -> str:
    """A duration as its two largest units: 45s, 4m59s, 2h5m, 3d4h."""
    s = round(abs(ms) / 1000)
    units = (("d", 86400), ("h", 3600), ("m", 60), ("s", 1))
    for k, (unit, size) in enumerate(units[:-1]):
        if s >= size:
            low, low_size = units[k + 1]
            rest = (s % size) // low_size
            return f"{s // size}{unit}" + (f"{rest}{low}" if rest else "")
    return f"{s}s"


def _ago(ts: int, now: int) -> str:
    return f"{_span(now - ts)} ago" if now >= ts else f"in {_span(ts - now)}"


def _until(ts: int | None, now: int) -> str:
    if ts is None:
        return "-"
    return f"in {_span(ts - now)}" if ts > now else f"{_span(now - ts)} ago"


def _number(v: float) -> str:
    return f"{v:.6g}"


TABLE_WIDTH = 100  # human tables fit this many columns: the widest cells are cut with …


def _table(header: list[str], rows: list[list[str]]) -> None:
    rows = [[_safe(c).replace("\n", "\\n") for c in row] for row in rows]
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    while sum(widths) + 2 * (len(widths) - 1) > TABLE_WIDTH and max(widths) > 8:
        widths[widths.index(max(widths))] -= 1
    for row in [header, *rows]:
        cells = [_fit(c, w).ljust(w) for c, w in zip(row, widths, strict=True)]
        _out("  ".join(cells).rstrip())


# -- the daemon, when one runs (invariant 10) -------------------------------------------


def _daemon(args: argparse.Namespace) -> ApiConnection | None:
    """The running daemon's API, or None when no process holds the data dir (then the
    command opens the replica itself). A daemon that holds the data dir but does not
    answer yet (it is starting) is waited for, up to ``DAEMON_WAIT_S``; so is another
    command that holds it briefly."""
    home: Path = args.home
    if not home.is_dir() or not (home / KEY_FILE).exists():
        return None
    api = ApiConnection(home, timeout=API_TIMEOUT_S)
    deadline = time.monotonic() + DAEMON_WAIT_S
    while True:
        if api.socket_path.exists() and api.alive(timeout=2.0):
            return api
        holder = _lock_holder(home)
        if holder is None:
            return None
        if time.monotonic() > deadline:
            raise CliError(
                f"the data dir {home} is in use by {holder}, and no daemon API answers at "
                f"{api.socket_path}"
            )
        time.sleep(0.05)


def _lock_holder(home: Path) -> str | None:
    """Who holds the data dir's lock now ("pid N"), or None if nobody does."""
    lock = DataDirLock(home)
    try:
        lock.acquire(wait=0.0)
    except StoreLocked as e:
        found = re.search(r"in use by (pid \d+|another process)", str(e))
        return found.group(1) if found else "another process"
    lock.release()
    return None


def _call(api: ApiConnection, method: str, path: str, body: dict[str, Any] | None = None,
          **query: Any) -> Any:  # fmt: skip
    """A request to the daemon; its refusal or silence becomes a CliError."""
    try:
        return api.request(method, path, body, query=query or None)
    except ApiRefused as e:
        raise CliError(str(e)) from None
    except ApiUnavailable as e:
        raise CliError(f"{e} (is `gossip serve` still running?)") from None


def _now() -> int:
    return time.time_ns() // 1_000_000


def _memory(d: dict[str, Any]) -> Memory:
    return Memory(**{k: d.get(k) for k in Memory.__dataclass_fields__})


class _Progress:
    """A one-line progress report on stderr, only when stderr is a terminal and the work
    is long enough to be worth it; it erases itself when done."""

    def __init__(self, what: str, total: int) -> None:
        self.what = what
        self.total = total
        self.active = sys.stderr.isatty() and (total == 0 or total > IMPORT_CHUNK)
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


def _fit(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


# -- argument types (a bad value is a usage error: exit 2) ------------------------------


def _positive_seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive number of seconds: {text!r}")
    if value > _MAX_SECONDS:  # timestamps stay well inside 64-bit integers (SQLite, JS)
        raise argparse.ArgumentTypeError(f"must be at most {_MAX_SECONDS} seconds (100 years)")
    return value


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be positive: {text!r}")
    return value


def _ttl(text: str) -> float:
    value = _positive_seconds(text)
    if value > 30 * 86400:  # the API's own bound
        raise argparse.ArgumentTypeError("must be at most 2592000 seconds (30 days)")
    return value


def _limit(text: str) -> int:
    value = _positive_int(text)
    if value > MAX_LIMIT:  # the API's own bound: the same answer with or without a daemon
        raise argparse.ArgumentTypeError(f"must be at most {MAX_LIMIT}: {text!r}")
    return value


def _count(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must not be negative: {text!r}")
    return value


def _finite_number(text: str) -> int | float:
    try:
        value: int | float = int(text)
    except ValueError:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"must be a finite number: {text!r}")
    return value


def _nonempty(what: str) -> Callable[[str], str]:
    def check(text: str) -> str:
        if not text.strip():
            raise argparse.ArgumentTypeError(f"{what} must not be empty")
        return text

    return check


def _bench_subject(text: str) -> str:
    _nonempty("a subject")(text)
    if "|" in text:  # the state key is subject|metric: a '|' would split it elsewhere
        raise argparse.ArgumentTypeError(f"a benchmark subject cannot contain '|': {text!r}")
    return text


def _record_prefix(text: str) -> str:
    text = text.lower()
    if not _HEX_PREFIX.fullmatch(text):
        raise argparse.ArgumentTypeError(
            f"a record id (or its start) is 6 to 64 hex characters, got {text!r:.80}"
        )
    return text


# -- commands -------------------------------------------------------------------------


def cmd_init(args: argparse.Namespace) -> int:
    home: Path = args.home
    if (home / KEY_FILE).exists():
        raise CliError(f"{home} already has an identity ({KEY_FILE}); refusing to overwrite it")
    cfg_path = home / config.CONFIG_FILE
    if cfg_path.exists():
        existing = config.load(home)  # keep a config written beforehand, if it is valid
        if args.name is not None and config.check_name(args.name) != existing.name:
            raise CliError(
                f"{cfg_path} already names this host {existing.name!r}; edit it or drop --name"
            )
        cfg = None
    else:
        cfg = config.Config(config.check_name(args.name)) if args.name else config.Config.default()
    with Replica.open(home, create=True) as r:  # creates key and store under the lock
        if cfg is not None:
            config.create(home, cfg)
        _out(r.author)
    return 0


def cmd_id(args: argparse.Namespace) -> int:
    _out(Identity.load(args.home).public_id)
    return 0


def cmd_version(args: argparse.Namespace) -> int:
    from importlib.metadata import version

    _out(f"sm-gossip {version('sm-gossip')}")
    return 0


def cmd_remember(args: argparse.Namespace) -> int:
    if (api := _daemon(args)) is not None:
        body: dict[str, Any] = {"text": args.text, "category": args.category, "tags": args.tag}
        if args.subject is not None:
            body["subject"] = args.subject
        if args.expires_in is not None:
            body["expires_in"] = args.expires_in
        _out(_call(api, "POST", "/v1/memories", body)["id"])
        return 0
    with _replica(args) as r:
        now = r.now_ms()
        expires = None if args.expires_in is None else now + round(args.expires_in * 1000)
        rec = records.memory(
            r.identity, args.text, category=args.category, subject=args.subject,
            tags=args.tag, expires_at=expires, ts=now,
        )  # fmt: skip
        r.put(rec)
        _out(rec.id)
    return 0


def cmd_recall(args: argparse.Namespace) -> int:
    if (api := _daemon(args)) is not None:
        answer = _call(api, "GET", "/v1/memories", q=args.query, category=args.category,
                       subject=args.subject, tag=args.tag, author=args.author,
                       limit=args.limit, include_untrusted=args.include_untrusted)  # fmt: skip
        hits = [_memory(d) for d in answer["memories"]]
        keyring = {d["author"]: d["author_name"] for d in answer["memories"] if d["author_name"]}
        result = Recall(hits, answer["capped"])
        now = _now()
        cfg = ViewConfig(quota_per_window=answer["quota"]["per_window"],
                         quota_window_ms=answer["quota"]["window_ms"])  # fmt: skip
    else:
        with _replica(args) as r:
            views = Views(r, _view_config(args))
            author = None
            if args.author is not None:
                author = queries.author_keys(r, args.author, views.trust())
            result = views.recall(
                args.query, category=args.category, subject=args.subject, tag=args.tag,
                author=author, limit=args.limit, include_untrusted=args.include_untrusted,
            )  # fmt: skip
            keyring = queries.author_names(r, views)
            now = r.now_ms()
            cfg = views.config
    if args.json:
        _json([{**m.to_json(), "author_name": keyring.get(m.author)} for m in result.hits])
    else:
        for k, m in enumerate(result.hits):
            if k:
                _out()
            head = [m.id[:12], m.category, m.subject or "-", _ago(m.ts, now)]
            who = _who(m.author, keyring) + ("" if m.trusted else " (untrusted)")
            _out("  ".join(head) + f"  by {who}")
            for line in m.text.splitlines() or [""]:
                _out(f"    {line}")
            extra = []
            if m.tags:
                extra.append("tags: " + ", ".join(m.tags))
            if m.expires_at is not None:
                extra.append(f"expires {_until(m.expires_at, now)}")
            if extra:
                _out("    " + "  ·  ".join(extra))
        if not result.hits:
            _note("no memories match")
    window = _span(cfg.quota_window_ms)
    for who_id, n in sorted(result.capped.items()):
        _note(
            f"hid {n} memories of {_who(who_id, keyring)} over its quota "
            f"({cfg.quota_per_window} per {window})"
        )
    return 0


def cmd_retract(args: argparse.Namespace) -> int:
    prefix: str = args.id
    if (api := _daemon(args)) is not None:
        answer = _call(api, "POST", f"/v1/memories/{prefix}/retract", {"reason": args.reason or ""})
        if answer["already_retracted"]:
            _note(f"memory {answer['id'][:12]} was already retracted")
        _out(f"retracted {answer['id']}")
        return 0
    with _replica(args) as r:
        held = r.records()
        matches = sorted(
            rid for rid, rec in held.items() if rid.startswith(prefix) and rec.kind == KIND_MEMORY
        )
        if not matches:
            raise CliError(f"no memory with an id starting {prefix}")
        if len(matches) > 1:
            shown = ", ".join(m[:16] for m in matches[:3])
            raise CliError(
                f"{prefix} is the start of {len(matches)} memory ids ({shown}…); give more of it"
            )
        target = held[matches[0]]
        if target.author != r.author:
            raise CliError(
                f"memory {target.id[:12]} was written by {_who(target.author, r.keyring())}, "
                "not by this host; readers honour only a memory's own author's retraction "
                "(to stop seeing that author, `gossip trust remove` it)"
            )
        for rec in held.values():
            if (
                rec.kind == KIND_RETRACT
                and rec.author == r.author
                and rec.fields.get("target") == target.id
            ):
                _note(f"memory {target.id[:12]} was already retracted")
                break
        else:
            r.put(records.retract(r.identity, target.id, ts=r.now_ms(), reason=args.reason or ""))
        _out(f"retracted {target.id}")
    return 0


def cmd_breaker_trip(args: argparse.Namespace) -> int:
    if (api := _daemon(args)) is not None:
        now = _now()
        _call(api, "POST", "/v1/breakers/trip", {"name": args.name, "reason": args.reason,
              "cooldown": args.cooldown, "failures": args.failures})  # fmt: skip
        _out(f"{args.name}: open, resets {_until(now + round(args.cooldown * 1000), now)}")
        return 0
    with _replica(args) as r:
        now = r.now_ms()
        resets = now + round(args.cooldown * 1000)
        r.put(
            records.breaker(
                r.identity, args.name, state="open", ts=now, reason=args.reason,
                failures=args.failures, tripped_at=now, resets_at=resets,
            )
        )  # fmt: skip
    _out(f"{args.name}: open, resets {_until(resets, now)}")
    return 0


def cmd_breaker_reset(args: argparse.Namespace) -> int:
    if (api := _daemon(args)) is not None:
        answer = _call(api, "POST", "/v1/breakers/reset", {"name": args.name,
                                                           "reason": args.reason})  # fmt: skip
        merged: Breaker | None = Breaker(**answer)
        keyring = {k["id"]: k["name"] for k in _call(api, "GET", "/v1/trust")}
        now = _now()
    else:
        with _replica(args) as r:
            known = set()
            for key in r.state():
                kind, _, name = split_state_key(key)
                if kind == KIND_BREAKER:
                    known.add(name)
            if args.name not in known:
                raise CliError(f"no breaker named {args.name!r} here (see `gossip breaker list`)")
            now = r.now_ms()
            r.put(records.breaker(r.identity, args.name, state="closed", ts=now,
                                  reason=args.reason))  # fmt: skip
            views = Views(r, _view_config(args))
            merged = views.breaker(args.name)
            keyring = queries.author_names(r, views)
    _out(f"{args.name}: closed by this host")
    if merged is not None and merged.state != "closed":
        by = ", ".join(_who(a, keyring) for a in merged.tripped_by)
        _note(
            f"note: {args.name} is still {merged.state} for readers here: "
            f"tripped by {by}, resets {_until(merged.resets_at, now)}"
        )
    return 0


def cmd_breaker_list(args: argparse.Namespace) -> int:
    if (api := _daemon(args)) is not None:
        found = _call(api, "GET", "/v1/breakers", include_untrusted=args.include_untrusted)
        if args.json:
            _json(found)
            return 0
        breakers = [Breaker(**b) for b in found]
        keyring = {k["id"]: k["name"] for k in _call(api, "GET", "/v1/trust")}
        now = _now()
    else:
        with _replica(args) as r:
            views = Views(r, _view_config(args))
            breakers = views.breakers(include_untrusted=args.include_untrusted)
            keyring = queries.author_names(r, views)
            now = r.now_ms()
    if args.json:
        _json([b.to_json() for b in breakers])
        return 0
    if not breakers:
        _note("no breakers")
        return 0
    rows = [
        [b.name, b.state, _until(b.resets_at, now),
         ", ".join(_who(a, keyring) for a in b.tripped_by) or "-", b.reason or "-"]
        for b in breakers
    ]  # fmt: skip
    _table(["NAME", "STATE", "RESETS", "TRIPPED BY", "REASON"], rows)
    return 0


def cmd_bench_record(args: argparse.Namespace) -> int:
    if (api := _daemon(args)) is not None:
        _call(api, "POST", "/v1/benchmarks", {"subject": args.subject, "metric": args.metric,
                                              "value": args.value, "unit": args.unit})  # fmt: skip
    else:
        with _replica(args) as r:
            now = r.now_ms()
            r.put(
                records.benchmark(
                    r.identity, args.subject, args.metric, summary={"value": args.value},
                    unit=args.unit, ts=now, recorded_at=now,
                )
            )  # fmt: skip
    _out(f"{args.subject} {args.metric} = {args.value}{' ' + args.unit if args.unit else ''}")
    return 0


def cmd_bench_show(args: argparse.Namespace) -> int:
    if (api := _daemon(args)) is not None:
        found = _call(api, "GET", "/v1/benchmarks", subject=args.subject,
                      include_untrusted=args.include_untrusted)  # fmt: skip
        if args.json:
            _json(found)
            return 0
        benches = [Benchmark(**b) for b in found]
        keyring = {k["id"]: k["name"] for k in _call(api, "GET", "/v1/trust")}
        now = _now()
    else:
        with _replica(args) as r:
            views = Views(r, _view_config(args))
            benches = views.benchmarks(args.subject, include_untrusted=args.include_untrusted)
            keyring = queries.author_names(r, views)
            now = r.now_ms()
    if args.json:
        _json([b.to_json() for b in benches])
        return 0
    if not benches:
        _note("no benchmarks")
        return 0
    rows = []
    for b in benches:
        if set(b.values) == {"value"}:
            value = _number(b.values["value"])
        else:
            value = ", ".join(f"{k}={_number(v)}" for k, v in b.values.items()) or "-"
        hosts = ", ".join(_who(a, keyring) for a in b.hosts) or "-"
        newest = _ago(b.newest, now) if b.count else "-"
        stale = f" (+{b.stale} stale)" if b.stale else ""
        rows.append([b.subject, b.metric, value, b.unit or "-", hosts + stale, newest])
    _table(["SUBJECT", "METRIC", "VALUE", "UNIT", "HOSTS", "NEWEST"], rows)
    return 0


def cmd_trust_add(args: argparse.Namespace) -> int:
    try:
        public_key_bytes(args.key)
    except GossipError as e:
        raise CliError(f"cannot trust {args.key!r:.60}: {e}") from None
    if (api := _daemon(args)) is not None:
        answer = _call(api, "POST", "/v1/trust", {"key": args.key, "name": args.name or ""})
        was = "" if answer["updated"] else None
    else:
        with _replica(args) as r, Views(r, _view_config(args)) as views:
            if args.key == r.author:
                raise CliError("that is this host's own key; a host always trusts itself")
            if (why := queries.revoked_note(args.key, views.trust())) is not None:
                raise CliError(why)
            was = r.keyring().get(args.key)
            r.trust(args.key, args.name or "")
    label = f" as {args.name}" if args.name else ""
    _out(f"{'updated' if was is not None else 'trusted'} {args.key}{label}")
    return 0


def cmd_trust_remove(args: argparse.Namespace) -> int:
    """Publish a signed revoke when this host may (it vouched for the key, or the key is
    one it rotated away from), else remove the key here only."""
    if not args.key:
        raise CliError("give the key to remove: its id, its keyring name or a prefix of its id")
    if (api := _daemon(args)) is not None:
        path = f"/v1/trust/{urllib.parse.quote(args.key, safe='')}"
        answer = _call(api, "DELETE", path, retroactive=str(args.retroactive).lower(),
                       local=str(args.local).lower())  # fmt: skip
        key, revoked = answer["id"], answer["revoked"]
    else:
        with _replica(args) as r, Views(r) as views:
            trust = views.trust()
            named, key = queries.resolve_host(r, args.key, trust)
            if key == r.author:
                raise CliError("that is this host's own key; a host always trusts itself")
            revoked = None
            if not args.local and views.can_revoke(r.author, key):
                rec = records.revoke(r.identity, key, ts=_now(), retroactive=args.retroactive)
                r.put(rec)
                revoked = rec.id
            else:
                kept = queries.successor_to_keep(r.keyring(), key, trust)
                if kept:
                    r.trust(*kept)
                was = [r.distrust(k) for k in dict.fromkeys((named, key)) if k != r.author]
                if not any(was) and key not in trust:
                    raise CliError(f"{args.key} is not in the keyring (see `gossip trust list`)")
                if kept:
                    _note(f"{key[:12]}… had rotated to {kept[0]}, which stays trusted (added to "
                          "the keyring); remove it by name to stop trusting that host")  # fmt: skip
    if revoked:
        _out(f"revoked {key} (signed revoke record {revoked[:12]}; peers that trust it through "
             "this host's invitation or rotation stop trusting it)")  # fmt: skip
    else:
        _out(f"removed {key}")
    return 0


def cmd_trust_list(args: argparse.Namespace) -> int:
    if (api := _daemon(args)) is not None:
        entries = _call(api, "GET", "/v1/trust")
    else:
        with _replica(args) as r, Views(r, _view_config(args)) as views:
            entries = queries.trust_entries(r.keyring(), views.trust(), r.author)
    if args.json:
        _json(entries)
    else:
        for e in entries:
            how = "" if e["how"] in ("self", "keyring") else f"  [{e['how']}]"
            _out(f"{e['id']}  {e['name']}".rstrip() + how)
    return 0


def _view_config(args: argparse.Namespace) -> ViewConfig:
    """Reading policy from the config file ([trust] follow_vouches)."""
    return ViewConfig(follow_vouches=config.load(args.home).follow_vouches)


def cmd_trust_invite(args: argparse.Namespace) -> int:
    if (api := _daemon(args)) is not None:
        answer = _call(api, "POST", "/v1/invitations", {"ttl": args.ttl, "name": args.name})
        token, expires = answer["token"], answer["expires_at"]
    else:
        from .invites import Invitations
        from .node import _advertised

        cfg = config.load(args.home)
        host, port = split_address(cfg.listen)
        addresses = [join_address(h.strip("[]"), port) for h in _advertised(host)]
        tok = Invitations(args.home).issue(Identity.load(args.home).public_id, addresses,
                                           now=_now(), ttl_s=args.ttl, name=args.name)  # fmt: skip
        token, expires = tok.encode(), tok.expires_at
    _out(token)
    _note(f"single use, expires {_until(expires, _now())}: on the new host, run "
          "`gossip trust join` and paste it (keep the token secret)")  # fmt: skip
    return 0


def _read_token(args: argparse.Namespace) -> str:
    """The token: from stdin (one line; typed without echo at a terminal), so that the
    secret is in no process's command line and no shell history. One given as an
    argument still works, with a warning."""
    from .invites import MAX_TOKEN_CHARS

    if args.token not in (None, "-"):
        _note("warning: a token on the command line is visible to other local users and "
              "kept in shell history; next time run `gossip trust join` and paste it")  # fmt: skip
        return str(args.token)
    try:
        if sys.stdin is not None and sys.stdin.isatty():
            import getpass

            return getpass.getpass("invitation token (not shown): ")
        return sys.stdin.readline(MAX_TOKEN_CHARS + 2).strip()
    except (AttributeError, OSError, ValueError, EOFError, UnicodeError):
        raise CliError("no token: paste it on stdin (`gossip trust join`)") from None


def _nonempty_token(token: str) -> str:
    if not token:
        raise CliError("no token on stdin: paste the one `gossip trust invite` printed")
    return token


def cmd_trust_join(args: argparse.Namespace) -> int:
    from .invites import InviteError, decode

    args.token = _nonempty_token(_read_token(args))
    try:
        decode(args.token)  # a damaged token is refused before anything else happens
    except InviteError as e:
        raise CliError(str(e)) from None
    if (api := _daemon(args)) is not None:
        joined = _call(api, "POST", "/v1/invitations/redeem",
                       {"token": args.token, "members": not args.only_inviter})  # fmt: skip
    else:
        joined = _join_embedded(args)
    if args.json:
        _json(joined)
        return 0
    _out(f"joined: trusting {joined['inviter']} (the inviter)")
    others = [k for k in joined["trusted"] if k != joined["inviter"]]
    if others:
        _out(f"and {len(others)} host(s) it trusts: {', '.join(k[:12] for k in others)}")
    return 0


def _join_embedded(args: argparse.Namespace) -> dict[str, Any]:
    """No daemon: run a node here just long enough to redeem the token."""
    import asyncio

    from .invites import InviteError
    from .node import Node

    cfg = config.load(args.home)

    async def run() -> dict[str, Any]:
        async with Node(args.home, listen="127.0.0.1:0", profile=cfg.profile,
                        advertise=[]) as node:  # fmt: skip
            try:
                joined = await node.join(args.token, members=not args.only_inviter)
            except InviteError as e:
                raise CliError(str(e)) from None
            # One exchange now: the inviter's document (its hosts' announcements) is
            # here when the daemon starts, so it finds its peers.
            await node.sync_now()
            return joined

    return asyncio.run(run())


def cmd_key_rotate(args: argparse.Namespace) -> int:
    if (api := _daemon(args)) is not None:
        answer = _call(api, "POST", "/v1/key/rotate", {})
        new, old = answer["id"], answer["previous"]
    else:
        with _replica(args) as r:
            old = r.author
            r.rotate(Identity.generate())
            new = r.author
    _out(new)
    _note(f"rotated: {old[:12]}… signed a successor record for this key; it is kept in "
          f"{RETIRED_DIR}/ (0600). Peers that trust the old key trust the new one once "
          "they have the record.")  # fmt: skip
    return 0


# The files of a data dir that an output file must never replace: writing an export over
# one of them would lose the host's key or its store for good.
_OWN_FILES = (KEY_FILE, STORE_FILE, f"{STORE_FILE}-wal", f"{STORE_FILE}-shm",
              f"{STORE_FILE}-journal", config.CONFIG_FILE, LOCK_FILE, INVITES_FILE)  # fmt: skip


def _refuse_own_files(home: Path, path: str) -> None:
    """CliError if writing ``path`` would replace one of ``home``'s own files. The
    directory part is resolved (``..``, symlinked dirs); the last part is not, since a
    rename replaces a symlink itself, not what it points to."""
    if path == "-":
        return
    target = Path(path)
    with contextlib.suppress(OSError):
        where = target.parent.resolve() / target.name
        if where in {home.resolve() / name for name in _OWN_FILES}:
            raise CliError(
                f"refusing to write {path}: it is the data dir's own {target.name}; "
                "choose another file"
            )


def cmd_export(args: argparse.Namespace) -> int:
    _refuse_own_files(args.home, args.file)
    if (api := _daemon(args)) is not None:
        try:
            data = api.request("GET", "/v1/export", query={"yjs": args.yjs}, binary=True,
                               timeout=IMPORT_TIMEOUT_S)  # fmt: skip
        except (ApiRefused, ApiUnavailable) as e:
            raise CliError(str(e)) from None
        payload = [data]
        count = None if args.yjs else len(decode_export(data, "the daemon's export"))
    else:
        with _replica(args) as r:
            if args.yjs:
                payload = [r.document_update()]
                count = None
            else:
                updates = r.updates_for({})
                payload = list(encode_export(updates))
                count = len(updates)
    n = _write_atomic(args.file, payload)
    where = "stdout" if args.file == "-" else args.file
    say = _note if args.file == "-" else _out
    if count is None:
        say(f"wrote the document as one plain Yjs v1 update ({n} bytes) to {where}; "
            "for Yjs tools, not for `gossip import`")  # fmt: skip
    else:
        say(f"exported {count} signed updates ({n} bytes) to {where}")
    return 0


def cmd_import(args: argparse.Namespace) -> int:
    name = "stdin" if args.file == "-" else args.file
    data = _read_input(args.file)
    updates = decode_export(data, name)
    if (api := _daemon(args)) is not None:
        progress = _Progress(f"importing {len(updates)} updates through the daemon", 0)
        progress.show()
        try:
            summary = api.request("POST", "/v1/import", raw=data, query={"name": name},
                                  timeout=IMPORT_TIMEOUT_S)  # fmt: skip
            progress.done()
        except ApiRefused as e:
            raise CliError(str(e)) from None
        except ApiUnavailable as e:
            raise CliError(f"{e} (is `gossip serve` still running?)") from None
    else:
        with _replica(args) as r, Views(r, _view_config(args)) as views:
            outcomes = []
            progress = _Progress("importing", len(updates))
            for k in range(0, len(updates), IMPORT_CHUNK):
                outcomes += r.ingest_batch(updates[k : k + IMPORT_CHUNK], source=f"import:{name}")
                progress.show(len(outcomes))
            progress.done()
            summary = import_summary(outcomes, r.state_vector(), views.trust().keys)
    for k in summary["refused"]:
        where = [f"update {k['index'] + 1} of {summary['updates']}"]
        if k["author"]:
            where.append(f"author {k['author'][:12]}")
        if k["key"]:
            where.append(f"key {k['key'][:80]}")
        _note(f"refused: {k['rule']}: {_one_line(k['detail'])} ({', '.join(where)})")
    _out(
        f"imported {name}: {summary['updates']} updates: {summary['applied']} applied, "
        f"{summary['duplicate']} already present, {summary['waiting']} waiting, "
        f"{len(summary['refused'])} refused"
    )
    if summary["waiting"]:
        _note(
            f"note: {summary['waiting']} updates build on updates this file lacks; they were "
            "not kept (import those first, then this file again)"
        )
    for author, n in sorted(summary["untrusted"].items()):
        _note(
            f"note: {n} updates by {author}, not trusted here: recall hides them until "
            f"`gossip trust add {author}`"
        )
    return 1 if summary["refused"] else 0


def _status_embedded(args: argparse.Namespace) -> dict[str, Any]:
    cfg = config.load(args.home)
    with _replica(args) as r, Views(r, _view_config(args)) as views:
        counts = queries.counts(r, views.trust())
        keyring = r.keyring()
        author = r.author
    warnings = ["no daemon runs on this data dir: nothing replicates (`gossip serve`)"]
    if len(keyring) <= 1:
        warnings.append("the keyring has only this host: `gossip trust add KEY`")
    return {
        "id": author, "name": cfg.name, "address": None, "profile": cfg.profile, "pid": None,
        "transport": "plaintext" if cfg.insecure_plaintext else "tls",
        "started_at": None, "api": None,
        "discovery": [{"source": "static", "state": "off",
                       "detail": f"{len(cfg.peers)} configured"}],
        "peers": {"alive": 0, "total": len(cfg.peers)},
        "records": {k: counts[k] for k in ("total", "trusted", "untrusted")},
        "state_entries": counts["state_entries"], "keyring": len(keyring),
        "store_bytes": queries.store_bytes(args.home), "last_exchange": None,
        "warnings": warnings,
    }  # fmt: skip


def cmd_status(args: argparse.Namespace) -> int:
    api = _daemon(args)
    st = _call(api, "GET", "/v1/status") if api is not None else _status_embedded(args)
    st["daemon"] = api is not None
    if args.json:
        _json(st)
        return 0
    now = _now()
    rec = st["records"]
    rows = [
        ("id", st["id"]),
        ("name", st["name"]),
        ("daemon", f"running, pid {st['pid']}" if api is not None else "not running"),
        ("listen", st["address"] or "-"),
        ("profile", st["profile"]),
        ("transport", _transport_line(st)),
        ("discovery", "; ".join(f"{d['source']} {d['state']}" + (f" ({d['detail']})"
                                if d.get("detail") else "") for d in st["discovery"]) or "-"),
        ("peers", f"{st['peers']['alive']} alive of {st['peers']['total']}"),
        ("records", f"{rec['total']} ({rec['trusted']} trusted, {rec['untrusted']} untrusted), "
                    f"{st['state_entries']} state entries"),
        ("keyring", f"{st['keyring']} keys"),
        ("store", f"{st['store_bytes'] / 1024:.0f} KiB"),
        ("last exchange", _ago(st["last_exchange"], now) if st["last_exchange"] else "never"),
    ]  # fmt: skip
    for k, v in rows:
        _out(f"{k + ':':<15}{_fit(str(v), 84)}")
    for w in st["warnings"]:
        _note(f"warning: {w}")
    return 0


def _transport_line(st: dict[str, Any]) -> str:
    """``tls (pinned to host keys)`` and how many peers use each mode."""
    mode = st.get("transport") or "-"
    text = {"tls": "tls (pinned to host keys)",
            "plaintext": "plaintext (--insecure-plaintext: readable on the wire)"}.get(mode, mode)
    per = (st.get("peers") or {}).get("transport") or {}
    if per:
        text += "; peers: " + ", ".join(f"{n} {m or '?'}" for m, n in sorted(per.items()))
    return text


def _peer_rows(peers: list[dict[str, Any]], now: int) -> list[list[str]]:
    rows = []
    for p in peers:
        lag = "-" if p["they_lack"] is None else f"{p['they_lack']}/{p['we_lack']}"
        rows.append([
            (p["key"] or "?")[:8], _fit(p["name"] or "-", 12), _fit(p["address"], 21),
            p["source"], p["state"],
            _span(now - p["last_success"]) if p["last_success"] else "never",
            "-" if p["rtt_ms"] is None else f"{p['rtt_ms']:.0f}ms", lag,
            f"{_bytes(p['bytes_in'])}/{_bytes(p['bytes_out'])}", p.get("transport") or "-",
        ])  # fmt: skip
    return rows


_PEER_HEADER = ["ID", "NAME", "ADDRESS", "SOURCE", "STATE", "LAST OK", "RTT", "LAG ↑/↓",
                "IN/OUT", "TRANSPORT"]  # fmt: skip


def _bytes(n: int) -> str:
    for unit in ("B", "K", "M", "G"):
        if n < 1024 or unit == "G":
            return f"{n:.0f}{unit}" if unit == "B" else f"{n:.1f}{unit}"
        n /= 1024  # type: ignore[assignment]
    return str(n)


def _configured_peers(args: argparse.Namespace) -> list[dict[str, Any]]:
    cfg = config.load(args.home)
    transport = "plaintext" if cfg.insecure_plaintext else "tls"
    return [{"key": None, "name": "", "addresses": [a], "address": a, "source": "static",
             "state": "not-running", "last_success": None, "last_seen": None,
             "last_error": None, "failures": 0, "rtt_ms": None, "bytes_in": 0,
             "bytes_out": 0, "they_lack": None, "we_lack": None, "next_attempt": 0,
             "exchanges": 0, "transport": transport} for a in cfg.peers]  # fmt: skip


def cmd_peers(args: argparse.Namespace) -> int:
    api = _daemon(args)
    if api is None and not args.home.is_dir():
        raise CliError(f"no data dir at {args.home}; run `gossip init` first")
    if api is None:
        _note("no daemon runs on this data dir: showing the configured peers")

    def fetch() -> list[dict[str, Any]]:
        return _call(api, "GET", "/v1/peers") if api is not None else _configured_peers(args)

    if args.watch:
        return _watch(fetch, args.interval)
    peers = fetch()
    if args.json:
        _json(peers)
        return 0
    if not peers:
        _note("no peers")
        return 0
    _table(_PEER_HEADER, _peer_rows(peers, _now()))
    return 0


def _watch(fetch: Callable[[], list[dict[str, Any]]], interval: float) -> int:
    """Redraw the peer table every ``interval`` seconds until Ctrl-C."""
    tty = sys.stdout.isatty()
    while True:
        peers = fetch()
        if tty:
            sys.stdout.write("\x1b[H\x1b[2J")
        _out(f"gossip peers — {time.strftime('%H:%M:%S')} — every {interval:g}s, Ctrl-C stops")
        _table(_PEER_HEADER, _peer_rows(peers, _now())) if peers else _out("no peers")
        if not tty:
            _out()
        sys.stdout.flush()
        time.sleep(interval)


def cmd_show(args: argparse.Namespace) -> int:
    if (api := _daemon(args)) is not None:
        shown = _call(api, "GET", f"/v1/records/{args.id}")
    else:
        with _replica(args) as r:
            try:
                shown = queries.show(r, Views(r, _view_config(args)), args.id)
            except queries.LookupFailed as e:
                raise CliError(str(e)) from None
    if args.json:
        _json(shown)
        return 0
    now = _now()
    prov = shown["provenance"]
    who = shown["author_name"] or shown["author"][:12]
    if prov["local"]:
        came = "written on this host"
    elif prov["source"]:
        came = f"first received from {prov['source'][:12]} {_ago(prov['received_at'], now)}"
    else:
        came = "origin unknown (compacted)"
    lines = [
        f"{shown['kind']} {shown['id']}",
        f"author:    {who} ({'trusted' if shown['trusted'] else 'NOT trusted'}), "
        f"signature {'ok' if shown['signature_ok'] else 'INVALID'}",
        f"trust:     {shown['trust']}",
        f"signed:    {_ago(shown['ts'], now)}",
        f"came:      {came}",
    ]
    if shown["retracted_by"]:
        lines.append(f"retracted: by its author ({shown['retracted_by'][0][:12]})")
    for line in lines:
        _out(line)
    fields = {k: v for k, v in shown["record"]["fields"].items()
              if k not in ("v", "kind", "author", "ts")}  # fmt: skip
    for k, v in sorted(fields.items()):
        text = v if isinstance(v, str) else json.dumps(v, ensure_ascii=False)
        _out(f"{k + ':':<11}{text}")
    return 0


SYNC_ROUNDS = 10_000  # a catch-up arrives a message budget (4 MiB) per exchange


def cmd_sync(args: argparse.Namespace) -> int:
    progress = _Progress("syncing: updates learned", 0)
    total = {"exchanges": 0, "failures": 0, "learned": 0, "rounds": 0}
    started = time.perf_counter()

    def add(report: dict[str, Any]) -> bool:
        """Count one round; go on while it learned something (a catch-up continues)."""
        for k in ("exchanges", "failures", "learned"):
            total[k] += report[k]
        total["rounds"] += 1
        progress.show(total["learned"])
        return report["learned"] > 0 and total["rounds"] < SYNC_ROUNDS

    try:
        if (api := _daemon(args)) is not None:
            body = {"address": args.address} if args.address else {}
            while add(_call(api, "POST", "/v1/sync", body)):
                pass
        else:
            # The node's own first round may learn before ours: count what was stored.
            total["learned"] = _sync_embedded(args, add)
    finally:
        progress.done()
    report = {**total, "seconds": round(time.perf_counter() - started, 3)}
    if args.json:
        _json(report)
    else:
        _out(f"{report['exchanges']} exchange(s) ok, {report['failures']} failed, "
             f"{report['learned']} update(s) learned in {report['seconds']:.2f}s")  # fmt: skip
    return 1 if report["failures"] and not report["exchanges"] else 0


def _sync_embedded(args: argparse.Namespace, add: Callable[[dict[str, Any]], bool]) -> int:
    """No daemon: run a node here just long enough to catch up with the peers; returns
    how many signed updates it stored."""
    import asyncio

    from .node import Node

    cfg = config.load(args.home)
    peers = [args.address] if args.address else list(cfg.peers)
    if not peers:
        raise CliError("no peers configured and no ADDR given: nothing to sync with")
    with _replica(args) as r:
        before = r.store_stats()["updates"]

    async def run() -> int:
        # advertise=[]: this node lives for one command; peers must not learn its port.
        async with Node(args.home, listen="127.0.0.1:0", peers=peers, profile=cfg.profile,
                        advertise=[], tls=not cfg.insecure_plaintext) as node:  # fmt: skip
            while True:
                rep = await node.sync_now()
                report = {"exchanges": rep.exchanges, "failures": rep.failures,
                          "learned": rep.learned}  # fmt: skip
                if not add(report):
                    return await node.query(lambda r, _: r.store_stats()["updates"]) - before

    return asyncio.run(run())


def cmd_inspect(args: argparse.Namespace) -> int:
    if (api := _daemon(args)) is not None:
        info = _call(api, "GET", "/v1/inspect")
    else:
        with _replica(args) as r, Views(r, _view_config(args)) as views:
            info = queries.inspect(r, views)
    if args.json:
        _json(info)
        return 0
    kinds = ", ".join(f"{n} {k}" for k, n in info["records_by_kind"].items()) or "none"
    states = ", ".join(f"{n} {k}" for k, n in info["state_by_kind"].items()) or "none"
    sv, store = info["state_vector"], info["store"]
    _out(f"records:       {kinds}")
    _out(f"state:         {states}")
    _out(f"state vector:  {sv['clients']} clients, {sv['clock_total']} items")
    _out(f"store:         {_bytes(store['bytes'])} on disk, {store['updates']} signed updates, "
         f"{store['pending']} waiting")  # fmt: skip
    _out(f"document:      {_bytes(info['document_bytes'])} as one Yjs update")
    rejected = ", ".join(f"{n} {rule}" for rule, n in info["rejected_by_rule"].items())
    _out(f"rejected:      {rejected or 'none'} (since the daemon started)")
    if info["records_by_author"]:
        _out()
        rows = [[a["author"][:12], _fit(a["name"] or "-", 20),
                 "yes" if a["trusted"] else "no", str(a["records"]),
                 f"{a['over_quota']} hidden" if a["over_quota"] else "-"]
                for a in info["records_by_author"]]  # fmt: skip
        _table(["AUTHOR", "NAME", "TRUSTED", "RECORDS", "OVER QUOTA"], rows)
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    from .daemon import ServeSettings, configure_logging, run

    home: Path = args.home
    if not (home / KEY_FILE).exists():
        raise CliError(f"no identity in {home}; run `gossip init` first")
    settings = ServeSettings.resolve(
        home, listen=args.listen, peers=args.peer, profile=args.profile, mdns=args.mdns,
        tailnet=args.tailnet, api_listen=args.api_listen, lock_wait=args.lock_wait,
        insecure_plaintext=args.insecure_plaintext or None,
    )  # fmt: skip
    configure_logging(args.debug)
    return run(settings)


# -- parser ---------------------------------------------------------------------------


_PUBLIC_ID = re.compile(r"[A-Za-z0-9_-]{43}")


class _Parser(argparse.ArgumentParser):
    """An argparse parser that never mistakes a public id for an option.

    One public id in 64 starts with '-' (base64url); `gossip trust add -eBQ…` must
    still work without the user knowing to write `--`.
    """

    def _parse_optional(self, arg_string: str) -> Any:
        if _PUBLIC_ID.fullmatch(arg_string) and arg_string not in self._option_string_actions:
            return None  # a positional argument (or an option's value)
        return super()._parse_optional(arg_string)


def _common() -> argparse.ArgumentParser:
    """--home and --debug, accepted after the subcommand too (default: leave unset)."""
    p = _Parser(add_help=False, argument_default=argparse.SUPPRESS)
    p.add_argument("--home", type=Path,
                   help="data dir (default: $GOSSIP_HOME or the platform data dir)")  # fmt: skip
    p.add_argument("--debug", action="store_true", help="show tracebacks of errors")
    return p


def build_parser() -> argparse.ArgumentParser:
    common = _common()
    p = _Parser(
        prog="gossip",
        description="sm-gossip: replicated, signed agent knowledge (embedded mode)",
        epilog="exit codes: 0 ok, 1 error, 2 usage; see docs/cli.md",
    )
    p.add_argument("--home", type=Path, default=None,
                   help="data dir (default: $GOSSIP_HOME or the platform data dir)")  # fmt: skip
    p.add_argument("--debug", action="store_true", default=False,
                   help="show tracebacks of errors")  # fmt: skip
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(
        parent: Any, name: str, fn: Callable[[argparse.Namespace], int], help: str
    ) -> argparse.ArgumentParser:
        c = parent.add_parser(name, help=help, description=help, parents=[common])
        c.set_defaults(fn=fn)
        return c

    c = command(sub, "init", cmd_init, "create this host's key, config and store")
    c.add_argument("--name", help="this host's display name (default: the hostname)")
    command(sub, "id", cmd_id, "print this host's public id")
    command(sub, "version", cmd_version, "print the version")

    c = command(sub, "serve", cmd_serve, "run the daemon in the foreground (SIGTERM stops it)")
    c.add_argument("--listen", metavar="HOST:PORT",
                   help="peer server address (default: config.toml, else 0.0.0.0:7471)")
    c.add_argument("--peer", action="append", default=[], metavar="HOST:PORT",
                   help="a static peer, added to config.toml's (repeat for more)")
    c.add_argument("--profile", choices=config.PROFILES,
                   help="network timings (default: config.toml, else lan)")
    c.add_argument("--mdns", action=argparse.BooleanOptionalAction, default=None,
                   help="find peers on the LAN by mDNS (default: on for the lan profile)")
    c.add_argument("--tailnet", action=argparse.BooleanOptionalAction, default=None,
                   help="find peers with `tailscale status --json` (default: on for the "
                        "tailnet profile)")
    c.add_argument("--api-listen", metavar="127.0.0.1:PORT",
                   help="also serve the local API on loopback TCP (bearer token in api.token)")
    c.add_argument("--lock-wait", type=_positive_seconds, default=10.0, metavar="SECONDS",
                   help="wait this long for a command holding the data dir (default 10)")
    c.add_argument("--insecure-plaintext", action="store_true",
                   help="serve and reach peers without TLS (only inside an encrypted tailnet; "
                        "every peer must agree; default: config.toml, else TLS)")

    c = command(sub, "status", cmd_status, "this host: daemon, peers, records, warnings")
    c.add_argument("--json", action="store_true", help="print a JSON object")
    c = command(sub, "peers", cmd_peers, "the peer table: state, last success, rtt, lag")
    c.add_argument("--json", action="store_true", help="print a JSON array")
    c.add_argument("--watch", action="store_true", help="redraw every --interval seconds")
    c.add_argument("--interval", type=_positive_seconds, default=2.0, metavar="SECONDS")
    c = command(sub, "show", cmd_show, "one record with its provenance")
    c.add_argument("id", type=_record_prefix, metavar="ID",
                   help="a record id, or its first 6+ characters")  # fmt: skip
    c.add_argument("--json", action="store_true", help="print a JSON object")
    c = command(sub, "sync", cmd_sync, "exchange now with every peer (or ADDR) until caught up")
    c.add_argument("address", nargs="?", metavar="ADDR", help="a peer's HOST:PORT")
    c.add_argument("--json", action="store_true", help="print a JSON object")
    c = command(sub, "inspect", cmd_inspect, "document statistics: records by kind and author")
    c.add_argument("--json", action="store_true", help="print a JSON object")

    c = command(sub, "remember", cmd_remember, "write a memory; prints its record id")
    c.add_argument("text", type=_nonempty("the text"), metavar="TEXT")
    c.add_argument("--category", required=True, type=_nonempty("the category"),
                   help="anti-pattern, learning, contract, …")  # fmt: skip
    c.add_argument("--subject", help="what it is about, e.g. provider:x")
    c.add_argument("--tag", action="append", default=[], type=_nonempty("a tag"),
                   help="a tag (repeat for more)")  # fmt: skip
    c.add_argument("--expires-in", type=_positive_seconds, metavar="SECONDS",
                   help="hide it from readers after this many seconds")  # fmt: skip

    c = command(sub, "recall", cmd_recall, "search the memories of trusted authors")
    c.add_argument("query", nargs="?", metavar="QUERY", help="words to search for")
    c.add_argument("--category")
    c.add_argument("--subject")
    c.add_argument("--tag")
    c.add_argument("--author", help="a public id, a keyring name, or an id's first characters")
    c.add_argument("--limit", type=_limit, default=20, metavar="N",
                   help=f"at most N memories (1 to {MAX_LIMIT}; default 20)")  # fmt: skip
    c.add_argument("--include-untrusted", action="store_true",
                   help="also show authors outside the keyring")  # fmt: skip
    c.add_argument("--json", action="store_true", help="print a JSON array")

    c = command(sub, "retract", cmd_retract, "retract one of this host's memories")
    c.add_argument("id", type=_record_prefix, metavar="ID",
                   help="the memory's record id, or its first 6+ characters")  # fmt: skip
    c.add_argument("--reason", help="why (kept in the retraction record)")

    breaker = command(sub, "breaker", _needs_subcommand, "circuit breakers across hosts")
    bsub = breaker.add_subparsers(dest="action", required=True, metavar="ACTION")
    c = command(bsub, "trip", cmd_breaker_trip, "open a breaker from this host")
    c.add_argument("name", type=_nonempty("a breaker name"), metavar="NAME")
    c.add_argument("--reason", required=True)
    c.add_argument("--cooldown", required=True, type=_positive_seconds, metavar="SECONDS",
                   help="it resets after this many seconds")  # fmt: skip
    c.add_argument("--failures", type=_count, default=0, metavar="N")
    c = command(bsub, "reset", cmd_breaker_reset, "close a breaker from this host")
    c.add_argument("name", metavar="NAME")
    c.add_argument("--reason", default="")
    c = command(bsub, "list", cmd_breaker_list, "breakers merged across trusted hosts")
    c.add_argument("--include-untrusted", action="store_true")
    c.add_argument("--json", action="store_true", help="print a JSON array")

    bench = command(sub, "bench", _needs_subcommand, "benchmark observations across hosts")
    esub = bench.add_subparsers(dest="action", required=True, metavar="ACTION")
    c = command(esub, "record", cmd_bench_record, "record this host's latest measurement")
    c.add_argument("subject", type=_bench_subject, metavar="SUBJECT")
    c.add_argument("metric", type=_nonempty("a metric"), metavar="METRIC")
    c.add_argument("value", type=_finite_number, metavar="VALUE")
    c.add_argument("--unit", default="")
    c = command(esub, "show", cmd_bench_show, "recency-weighted summaries across trusted hosts")
    c.add_argument("subject", nargs="?", metavar="SUBJECT")
    c.add_argument("--include-untrusted", action="store_true")
    c.add_argument("--json", action="store_true", help="print a JSON array")

    trust = command(sub, "trust", _needs_subcommand, "the keyring: whose records count")
    tsub = trust.add_subparsers(dest="action", required=True, metavar="ACTION")
    c = command(tsub, "add", cmd_trust_add, "trust an author's records when reading")
    c.add_argument("key", metavar="KEY", help="the author's public id (`gossip id` there)")
    c.add_argument("--name", help="a name to show instead of the id")
    c = command(tsub, "remove", cmd_trust_remove,
                "stop trusting an author (a signed revoke when this host vouched for it)")
    c.add_argument("key", metavar="KEY", help="a public id or a keyring name")
    c.add_argument("--retroactive", action="store_true",
                   help="the revocation hides all its records, not only later ones")
    c.add_argument("--local", action="store_true",
                   help="only remove it here, publish no revoke record")
    c = command(tsub, "list", cmd_trust_list,
                "trusted keys (this host is 'self') and how each is trusted")
    c.add_argument("--json", action="store_true", help="print a JSON array")
    c = command(tsub, "invite", cmd_trust_invite, "print a single-use invitation token")
    c.add_argument("--ttl", type=_ttl, default=DEFAULT_TTL_S, metavar="SECONDS",
                   help="how long it stays valid (default a day, at most 30 days)")
    c.add_argument("--name", default="", help="the keyring name the new host will get")
    c = command(tsub, "join", cmd_trust_join, "redeem an invitation token from a member")
    c.add_argument("token", metavar="TOKEN", nargs="?", default=None,
                   help="the smg1.… line `trust invite` printed; best left out: it is then "
                        "read from stdin, out of the process list and shell history")  # fmt: skip
    c.add_argument("--only-inviter", action="store_true",
                   help="trust only the inviter, not the hosts it trusts")
    c.add_argument("--json", action="store_true", help="print a JSON object")

    key = command(sub, "key", _needs_subcommand, "this host's signing key")
    ksub = key.add_subparsers(dest="action", required=True, metavar="ACTION")
    command(ksub, "rotate", cmd_key_rotate,
            "switch to a fresh key; the old one signs a successor record")

    c = command(sub, "export", cmd_export, "write every stored signed update to a file")
    c.add_argument("file", metavar="FILE", help="the file to write ('-': stdout)")
    c.add_argument(
        "--yjs", action="store_true",
        help="write the document as one plain Yjs update instead (not importable)",
    )  # fmt: skip
    c = command(sub, "import", cmd_import, "offer an export's signed updates to the gate")
    c.add_argument("file", metavar="FILE", help="an export file ('-': stdin)")
    return p


def _needs_subcommand(args: argparse.Namespace) -> int:  # pragma: no cover - argparse exits
    raise CliError("missing action")


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _not_utf8(args: argparse.Namespace) -> str | None:
    """The first argument that is not valid UTF-8 (Python keeps such bytes as lone
    surrogates), other than a file name, which may be any bytes."""
    for name, value in vars(args).items():
        if name in _FILE_ARGUMENTS:
            continue
        for v in value if isinstance(value, list) else [value]:
            if isinstance(v, str):
                try:
                    v.encode("utf-8")
                except UnicodeEncodeError:
                    return name
    return None


_FILE_ARGUMENTS = {"file"}


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if (bad := _not_utf8(args)) is not None:  # a usage error, daemon or not
        parser.error(f"argument {bad}: not valid UTF-8")
    args.home = (args.home or default_home()).expanduser()
    try:
        return args.fn(args)
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # The reader went away (`gossip recall | head`): say nothing more, like cat does.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 1
    except (GossipError, OSError) as e:
        if args.debug:
            traceback.print_exc()
        message = str(e)
        if isinstance(e, OSError) and e.filename is not None and e.strerror:
            message = f"{e.filename}: {e.strerror}"
        _note(f"gossip: {_one_line(message)}")
        return 1
    except Exception as e:
        if args.debug:
            traceback.print_exc()
        _note(
            f"gossip: unexpected error: {type(e).__name__}: {_one_line(str(e))} "
            "(run with --debug for details)"
        )
        return 1


if __name__ == "__main__":
    sys.exit(main())
