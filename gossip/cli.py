"""The `gossip` command, embedded mode: each command opens the replica itself.

Owns argument parsing, output (human and ``--json``) and the export file format. Reading
policy lives in ``crdt.views``, the gate in ``crdt.replica``: this module only calls them,
and must never write to a document or a store except through ``Replica``.

Every failure the user can cause ends in one line on stderr and exit code 1 (2 for a
usage error), never a traceback unless ``--debug``. When the daemon exists, the commands
that need the data dir will go through its local API instead (DESIGN.md, invariant 10).
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
import traceback
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from crdt import GossipError, Identity, RejectedUpdate, Replica, UpdateError, records, wire
from crdt.files import fsync_dir
from crdt.identity import KEY_FILE, public_key_bytes
from crdt.lock import LOCK_FILE
from crdt.records import KIND_BREAKER, KIND_MEMORY, KIND_RETRACT, split_state_key
from crdt.store import STORE_FILE
from crdt.views import Views

from . import config
from .config import default_home

__all__ = ["EXPORT_MAGIC", "ExportError", "decode_export", "default_home", "encode_export", "main"]

# A command waits this long for a data dir another process holds briefly (another CLI
# command): long enough for any single command to finish, short enough to notice a daemon.
LOCK_WAIT_S = 5.0

EXPORT_MAGIC = b"sm-gossip export 1\n"
_EXPORT_PREFIX = b"sm-gossip export "
_MAX_EXPORT_ITEM = 1 << 30  # no single signed update comes near this (the gate caps at 64 MiB)
_MAX_SECONDS = 100 * 365 * 86400
_HEX_PREFIX = re.compile(r"[0-9a-f]{6,64}")


class CliError(GossipError):
    """Something the user asked for cannot be done; the message says why."""


class ExportError(GossipError):
    """A file is not an sm-gossip export (bad magic, unknown version, truncated)."""


# -- the export file format ---------------------------------------------------------


def encode_export(updates: Iterable[bytes]) -> Iterator[bytes]:
    """``EXPORT_MAGIC``, then each signed update as varuint(length) || bytes."""
    yield EXPORT_MAGIC
    for raw in updates:
        yield wire.encode_varuint(len(raw))
        yield raw


def decode_export(data: bytes, name: str = "input") -> list[bytes]:
    """The signed updates of an export file, verbatim; ExportError if it is not one.

    Only the framing is checked here: each update is judged by the gate on import."""
    if not data.startswith(EXPORT_MAGIC):
        if data.startswith(_EXPORT_PREFIX):
            version = data[len(_EXPORT_PREFIX) :].split(b"\n", 1)[0][:20]
            raise ExportError(
                f"{name} is an sm-gossip export of version {version.decode('ascii', 'replace')}; "
                "this gossip reads version 1"
            )
        raise ExportError(f"{name} is not an sm-gossip export (no 'sm-gossip export 1' header)")
    out: list[bytes] = []
    pos = len(EXPORT_MAGIC)
    view = memoryview(data)
    while pos < len(data):
        try:
            length, pos = wire.read_varuint(data, pos)
        except UpdateError:
            length = None
        if length is None or length > _MAX_EXPORT_ITEM or pos + length > len(data):
            raise ExportError(
                f"{name} is not an sm-gossip export: it ends inside update {len(out) + 1} "
                "(truncated?)"
            )
        out.append(bytes(view[pos : pos + length]))
        pos += length
    return out


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


def _table(header: list[str], rows: list[list[str]]) -> None:
    rows = [[_safe(c) for c in row] for row in rows]
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    for row in [header, *rows]:
        _out("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())


def _resolve_author(r: Replica, text: str, *, known: Iterable[str] = ()) -> str:
    """A full public id from an id, a keyring name, or a unique id prefix (>= 6 chars)."""
    keyring = r.keyring()
    pool = set(keyring) | set(known)
    if text in pool:
        return text
    named = [a for a, n in keyring.items() if n == text]
    if len(named) == 1:
        return named[0]
    if len(named) > 1:
        raise CliError(f"{len(named)} keyring entries are named {text!r}; give the key")
    if len(text) >= 6:
        prefixed = sorted(a for a in pool if a.startswith(text))
        if len(prefixed) == 1:
            return prefixed[0]
        if len(prefixed) > 1:
            raise CliError(f"{text!r} is the start of {len(prefixed)} authors; give more of it")
    try:
        public_key_bytes(text)
    except GossipError:
        raise CliError(f"no author {text!r} here (give a public id or a keyring name)") from None
    return text


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
    with _replica(args) as r:
        views = Views(r)
        author = None
        if args.author is not None:
            authors = {rec.author for rec in r.records().values()}
            author = _resolve_author(r, args.author, known=authors)
        result = views.recall(
            args.query, category=args.category, subject=args.subject, tag=args.tag,
            author=author, limit=args.limit, include_untrusted=args.include_untrusted,
        )  # fmt: skip
        keyring = r.keyring()
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
    with _replica(args) as r:
        known = set()
        for key in r.state():
            kind, _, name = split_state_key(key)
            if kind == KIND_BREAKER:
                known.add(name)
        if args.name not in known:
            raise CliError(f"no breaker named {args.name!r} here (see `gossip breaker list`)")
        now = r.now_ms()
        r.put(records.breaker(r.identity, args.name, state="closed", ts=now, reason=args.reason))
        merged = Views(r).breaker(args.name)
        keyring = r.keyring()
    _out(f"{args.name}: closed by this host")
    if merged is not None and merged.state != "closed":
        by = ", ".join(_who(a, keyring) for a in merged.tripped_by)
        _note(
            f"note: {args.name} is still {merged.state} for readers here: "
            f"tripped by {by}, resets {_until(merged.resets_at, now)}"
        )
    return 0


def cmd_breaker_list(args: argparse.Namespace) -> int:
    with _replica(args) as r:
        breakers = Views(r).breakers(include_untrusted=args.include_untrusted)
        keyring = r.keyring()
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
    with _replica(args) as r:
        benches = Views(r).benchmarks(args.subject, include_untrusted=args.include_untrusted)
        keyring = r.keyring()
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
    with _replica(args) as r:
        if args.key == r.author:
            raise CliError("that is this host's own key; a host always trusts itself")
        was = r.keyring().get(args.key)
        r.trust(args.key, args.name or "")
    label = f" as {args.name}" if args.name else ""
    _out(f"{'updated' if was is not None else 'trusted'} {args.key}{label}")
    return 0


def cmd_trust_remove(args: argparse.Namespace) -> int:
    with _replica(args) as r:
        keyring = r.keyring()
        key = _resolve_author(r, args.key, known=())
        if key == r.author:
            raise CliError("that is this host's own key; a host always trusts itself")
        if key not in keyring or not r.distrust(key):
            raise CliError(f"{args.key} is not in the keyring (see `gossip trust list`)")
    _out(f"removed {key}")
    return 0


def cmd_trust_list(args: argparse.Namespace) -> int:
    with _replica(args) as r:
        keyring = r.keyring()
        me = r.author
    entries = [{"id": k, "name": n, "self": k == me} for k, n in keyring.items()]
    if args.json:
        _json(entries)
    else:
        for e in entries:
            _out(f"{e['id']}  {e['name']}".rstrip())
    return 0


# The files of a data dir that an output file must never replace: writing an export over
# one of them would lose the host's key or its store for good.
_OWN_FILES = (KEY_FILE, STORE_FILE, f"{STORE_FILE}-wal", f"{STORE_FILE}-shm",
              f"{STORE_FILE}-journal", config.CONFIG_FILE, LOCK_FILE)  # fmt: skip


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
    updates = decode_export(_read_input(args.file), name)
    with _replica(args) as r:
        outcomes = r.ingest_batch(updates, source=f"import:{name}")
        sv = r.state_vector()
        keyring = r.keyring()
    counts = {"applied": 0, "duplicate": 0, "waiting": 0, "refused": 0}
    untrusted: dict[str, int] = {}
    for k, o in enumerate(outcomes):
        su = o.update
        status = o.status
        if status == "buffered" and su is not None and sv.get(su.client, 0) >= su.header.end:
            status = "applied"  # it waited for a later update of the same file, then applied
        if status == "applied" and su is not None and su.author not in keyring:
            untrusted[su.author] = untrusted.get(su.author, 0) + 1
        if status == "rejected":
            counts["refused"] += 1
            err = o.error
            where = [f"update {k + 1} of {len(outcomes)}"]
            if su is not None:
                where.append(f"author {su.author[:12]}")
            if isinstance(err, RejectedUpdate):
                rule, detail = err.rule, err.detail
                if err.key:
                    where.append(f"key {err.key[:80]}")
            else:
                rule = "malformed" if isinstance(err, UpdateError) else type(err).__name__
                detail = str(err)
            _note(f"refused: {rule}: {_one_line(detail)} ({', '.join(where)})")
        elif status == "buffered":
            counts["waiting"] += 1
        else:
            counts[status] += 1
    _out(
        f"imported {name}: {len(outcomes)} updates: {counts['applied']} applied, "
        f"{counts['duplicate']} already present, {counts['waiting']} waiting, "
        f"{counts['refused']} refused"
    )
    if counts["waiting"]:
        _note(
            f"note: {counts['waiting']} updates build on updates this file lacks; they were "
            "not kept (import those first, then this file again)"
        )
    for author, n in sorted(untrusted.items()):
        _note(
            f"note: {n} updates by {author}, not in your keyring: recall hides them until "
            f"`gossip trust add {author}`"
        )
    return 1 if counts["refused"] else 0


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
    c.add_argument("--limit", type=_positive_int, default=20, metavar="N")
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
    c = command(tsub, "remove", cmd_trust_remove, "stop trusting an author")
    c.add_argument("key", metavar="KEY", help="a public id or a keyring name")
    c = command(tsub, "list", cmd_trust_list, "the keyring (this host is 'self')")
    c.add_argument("--json", action="store_true", help="print a JSON array")

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


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
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
