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
import os
import re
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from crdt import (
    GossipError,
    Identity,
    Replica,
)
from crdt.files import fsync_dir
from crdt.identity import KEY_FILE, RETIRED_DIR
from crdt.lock import LOCK_FILE
from crdt.semantic import FILE as VECTORS_FILE
from crdt.store import STORE_FILE
from crdt.views import MODES

from . import config
from .config import default_home
from .errors import Invalid
from .exportfile import EXPORT_MAGIC, ExportError, decode_export, encode_export
from .invites import DEFAULT_TTL_S, INVITES_FILE
from .ops import OPERATIONS
from .ops.fields import Kind, Seconds, TextList
from .ops.memories import MAX_LIMIT
from .ops.offline import INGEST_CHUNK
from .ops.session import Session, open_session

__all__ = ["EXPORT_MAGIC", "ExportError", "decode_export", "default_home", "encode_export", "main"]

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


# -- the session: the daemon, when one runs (invariant 10) -----------------------------


def _session(args: argparse.Namespace,
             progress: Callable[[int, int], None] | None = None) -> Session:  # fmt: skip
    """The operations of ``--home``: through the daemon's API when one runs, else on the
    data dir itself, which must exist (``gossip init`` creates it)."""
    home: Path = args.home
    session = open_session(home, progress=progress)
    if not session.remote and not home.is_dir():
        raise CliError(f"no data dir at {home}; run `gossip init` first")
    return session


def _now() -> int:
    return time.time_ns() // 1_000_000


class _Progress:
    """A one-line progress report on stderr, only when stderr is a terminal and the work
    is long enough to be worth it; it erases itself when done."""

    def __init__(self, what: str, total: int) -> None:
        self.what = what
        self.total = total
        self.active = sys.stderr.isatty() and (total == 0 or total > INGEST_CHUNK)
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


def _arg(operation: str, name: str) -> Callable[[str], Any]:
    """The argument type of field ``name`` of ``operation``: the field's own check, so a
    bad value is a usage error (exit 2) saying what every surface says."""
    f = OPERATIONS[operation].field(name)
    return _kind(f.kind.item if isinstance(f.kind, TextList) else f.kind, name)


def _kind(kind: Kind, name: str) -> Callable[[str], Any]:
    def parse(text: str) -> Any:
        try:
            return kind.parse(text, name)
        except Invalid as e:
            raise argparse.ArgumentTypeError(str(e)) from None

    parse.__name__ = name  # argparse says "invalid NAME value" for other errors
    return parse


_seconds = _kind(Seconds(), "seconds")


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
    _agents_note(home)
    return 0


def _agents_note(home: Path, url: str | None = None) -> None:
    """On stderr: the lines an agent's environment needs (docs/agents.md)."""
    from .agents import env_lines
    from .api import read_token

    listen = config.load(home).agents_listen
    if not listen:
        return
    _note("for agents (Hermes, OpenClaw; docs/agents.md), once `gossip serve` runs:")
    for line in env_lines(url or f"http://{listen}", read_token(home)):
        _note(f"  {line}")


def cmd_mcp(args: argparse.Namespace) -> int:
    from .mcp_server import run_stdio

    home: Path = args.home
    if not (home / KEY_FILE).exists():
        raise CliError(f"no identity in {home}; run `gossip init` first")
    return run_stdio(home, args.bank)


def cmd_id(args: argparse.Namespace) -> int:
    _out(Identity.load(args.home).public_id)
    return 0


def cmd_version(args: argparse.Namespace) -> int:
    from importlib.metadata import version

    _out(f"sm-gossip {version('sm-gossip')}")
    return 0


def cmd_remember(args: argparse.Namespace) -> int:
    with _session(args) as s:
        _out(s.call("remember", text=args.text, category=args.category, subject=args.subject,
                    tags=args.tag, expires_in=args.expires_in, bank=args.bank)["id"])  # fmt: skip
    return 0


def cmd_recall(args: argparse.Namespace) -> int:
    with _session(args) as s:
        answer = s.call("recall", q=args.query, category=args.category, subject=args.subject,
                        tag=args.tag, author=args.author, limit=args.limit,
                        include_untrusted=args.include_untrusted, bank=args.bank,
                        mode=args.mode)  # fmt: skip
    hits = answer["memories"]
    names = {m["author"]: m["author_name"] for m in hits if m["author_name"]}
    if args.json:
        _json(hits)
    else:
        now = _now()
        for k, m in enumerate(hits):
            if k:
                _out()
            head = [m["id"][:12], m["category"], m["subject"] or "-", _ago(m["ts"], now)]
            who = _who(m["author"], names) + ("" if m["trusted"] else " (untrusted)")
            found = ""
            if m.get("lanes"):  # which lanes found it, and its fused score
                ranks = ", ".join(f"{lane} #{rank}" for lane, rank in sorted(m["lanes"].items()))
                found = f"  [{ranks}; {m['score']:.4f}]"
            _out("  ".join(head) + f"  by {who}{found}")
            for line in m["text"].splitlines() or [""]:
                _out(f"    {line}")
            extra = []
            if m["tags"]:
                extra.append("tags: " + ", ".join(m["tags"]))
            if m["expires_at"] is not None:
                extra.append(f"expires {_until(m['expires_at'], now)}")
            if extra:
                _out("    " + "  ·  ".join(extra))
        if not hits:
            _note("no memories match")
    if answer.get("note"):
        _note(answer["note"])
    quota = answer["quota"]
    for who_id, n in sorted(answer["capped"].items()):
        _note(f"hid {n} memories of {_who(who_id, names)} over its quota "
              f"({quota['per_window']} per {_span(quota['window_ms'])})")  # fmt: skip
    return 0


def cmd_retract(args: argparse.Namespace) -> int:
    with _session(args) as s:
        answer = s.call("retract", id=args.id, reason=args.reason or "")
    if answer["already_retracted"]:
        _note(f"memory {answer['id'][:12]} was already retracted")
    _out(f"retracted {answer['id']}")
    return 0


def cmd_breaker_trip(args: argparse.Namespace) -> int:
    with _session(args) as s:
        s.call("breaker_trip", name=args.name, reason=args.reason, cooldown=args.cooldown,
               failures=args.failures)  # fmt: skip
    now = _now()
    _out(f"{args.name}: open, resets {_until(now + round(args.cooldown * 1000), now)}")
    return 0


def cmd_breaker_reset(args: argparse.Namespace) -> int:
    with _session(args) as s:
        merged = s.call("breaker_reset", name=args.name, reason=args.reason)
        names = _names(s) if merged["state"] != "closed" else {}
    _out(f"{args.name}: closed by this host")
    if merged["state"] != "closed":
        by = ", ".join(_who(a, names) for a in merged["tripped_by"])
        _note(f"note: {args.name} is still {merged['state']} for readers here: "
              f"tripped by {by}, resets {_until(merged['resets_at'], _now())}")  # fmt: skip
    return 0


def _names(s: Session) -> dict[str, str]:
    """Names to show authors by, as `trust list` gives them."""
    return {e["id"]: e["name"] for e in s.call("trust_list") if e["name"]}


def cmd_breaker_list(args: argparse.Namespace) -> int:
    with _session(args) as s:
        found = s.call("breakers", include_untrusted=args.include_untrusted)
        names = _names(s) if found and not args.json else {}
    if args.json:
        _json(found)
        return 0
    if not found:
        _note("no breakers")
        return 0
    now = _now()
    rows = [
        [b["name"], b["state"], _until(b["resets_at"], now),
         ", ".join(_who(a, names) for a in b["tripped_by"]) or "-", b["reason"] or "-"]
        for b in found
    ]  # fmt: skip
    _table(["NAME", "STATE", "RESETS", "TRIPPED BY", "REASON"], rows)
    return 0


def cmd_bench_record(args: argparse.Namespace) -> int:
    with _session(args) as s:
        s.call("bench_record", subject=args.subject, metric=args.metric, value=args.value,
               unit=args.unit)  # fmt: skip
    _out(f"{args.subject} {args.metric} = {args.value}{' ' + args.unit if args.unit else ''}")
    return 0


def cmd_bench_show(args: argparse.Namespace) -> int:
    with _session(args) as s:
        found = s.call("bench_show", subject=args.subject,
                       include_untrusted=args.include_untrusted)  # fmt: skip
        names = _names(s) if found and not args.json else {}
    if args.json:
        _json(found)
        return 0
    if not found:
        _note("no benchmarks")
        return 0
    now = _now()
    rows = []
    for b in found:
        values = b["values"]
        if set(values) == {"value"}:
            value = _number(values["value"])
        else:
            value = ", ".join(f"{k}={_number(v)}" for k, v in values.items()) or "-"
        hosts = ", ".join(_who(a, names) for a in b["hosts"]) or "-"
        newest = _ago(b["newest"], now) if b["count"] else "-"
        stale = f" (+{b['stale']} stale)" if b["stale"] else ""
        rows.append([b["subject"], b["metric"], value, b["unit"] or "-", hosts + stale, newest])
    _table(["SUBJECT", "METRIC", "VALUE", "UNIT", "HOSTS", "NEWEST"], rows)
    return 0


def cmd_trust_add(args: argparse.Namespace) -> int:
    with _session(args) as s:
        answer = s.call("trust_add", key=args.key, name=args.name or "")
    label = f" as {args.name}" if args.name else ""
    _out(f"{'updated' if answer['updated'] else 'trusted'} {args.key}{label}")
    return 0


def cmd_trust_remove(args: argparse.Namespace) -> int:
    """Publish a signed revoke when this host may (it vouched for the key, or the key is
    one it rotated away from), else remove the key here only."""
    if not args.key:
        raise CliError("give the key to remove: its id, its keyring name or a prefix of its id")
    with _session(args) as s:
        answer = s.call("trust_remove", key=args.key, retroactive=args.retroactive,
                        local=args.local)  # fmt: skip
    key, revoked, kept = answer["id"], answer["revoked"], answer["kept"]
    if kept:
        _note(f"{key[:12]}… had rotated to {kept}, which stays trusted (added to "
              "the keyring); remove it by name to stop trusting that host")  # fmt: skip
    if revoked:
        _out(f"revoked {key} (signed revoke record {revoked[:12]}; peers that trust it through "
             "this host's invitation or rotation stop trusting it)")  # fmt: skip
    else:
        _out(f"removed {key}")
    return 0


def cmd_trust_list(args: argparse.Namespace) -> int:
    with _session(args) as s:
        entries = s.call("trust_list")
    if args.json:
        _json(entries)
    else:
        for e in entries:
            how = "" if e["how"] in ("self", "keyring") else f"  [{e['how']}]"
            _out(f"{e['id']}  {e['name']}".rstrip() + how)
    return 0


def cmd_trust_invite(args: argparse.Namespace) -> int:
    with _session(args) as s:
        answer = s.call("invite", ttl=args.ttl, name=args.name)
    _out(answer["token"])
    _note(f"single use, expires {_until(answer['expires_at'], _now())}: on the new host, run "
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
    token = _nonempty_token(_read_token(args))
    with _session(args) as s:
        joined = s.call("join", token=token, members=not args.only_inviter)
    if args.json:
        _json(joined)
        return 0
    _out(f"joined: trusting {joined['inviter']} (the inviter)")
    others = [k for k in joined["trusted"] if k != joined["inviter"]]
    if others:
        _out(f"and {len(others)} host(s) it trusts: {', '.join(k[:12] for k in others)}")
    return 0


def cmd_key_rotate(args: argparse.Namespace) -> int:
    with _session(args) as s:
        answer = s.call("key_rotate")
    _out(answer["id"])
    _note(f"rotated: {answer['previous'][:12]}… signed a successor record for this key; it is "
          f"kept in {RETIRED_DIR}/ (0600). Peers that trust the old key trust the new one once "
          "they have the record.")  # fmt: skip
    return 0


# The files of a data dir that an output file must never replace: writing an export over
# one of them would lose the host's key or its store for good.
_OWN_FILES = (KEY_FILE, STORE_FILE, f"{STORE_FILE}-wal", f"{STORE_FILE}-shm",
              f"{STORE_FILE}-journal", config.CONFIG_FILE, LOCK_FILE, INVITES_FILE,
              "api.token", VECTORS_FILE, f"{VECTORS_FILE}-wal", f"{VECTORS_FILE}-shm",
              f"{VECTORS_FILE}-journal")  # fmt: skip


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
    with _session(args) as s:
        data = s.call("export", yjs=args.yjs)
    count = None if args.yjs else len(decode_export(data, "the export"))
    n = _write_atomic(args.file, [data])
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
    progress = _Progress("importing", len(updates))
    progress.show()
    try:
        with _session(args, progress=lambda done, total: progress.show(done)) as s:
            summary = s.call("import", name=name, body=data)
    finally:
        progress.done()
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


def cmd_status(args: argparse.Namespace) -> int:
    with _session(args) as s:
        st = s.call("status")
        st["daemon"] = s.remote
    if args.json:
        _json(st)
        return 0
    now = _now()
    rec = st["records"]
    rows = [
        ("id", st["id"]),
        ("name", st["name"]),
        ("daemon", f"running, pid {st['pid']}" if st["daemon"] else "not running"),
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
    agents = st.get("agents")
    if agents:
        where = agents["url"] or f"not running ({agents['error']})"
        rows.append(("agents", where + ("  EXPOSED beyond this machine" if agents["exposed"]
                                        else "")))  # fmt: skip
    for k, v in rows:
        _out(f"{k + ':':<15}{_fit(str(v), 84)}")
    if agents and agents["url"]:
        from .agents import env_lines
        from .api import read_token

        for line in env_lines(agents["url"], read_token(args.home)):
            _out(line)
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


def cmd_peers(args: argparse.Namespace) -> int:
    with _session(args) as s:
        if not s.remote:
            _note("no daemon runs on this data dir: showing the configured peers")
        if args.watch:
            return _watch(lambda: s.call("peers"), args.interval)
        peers = s.call("peers")
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
    with _session(args) as s:
        shown = s.call("show", id=args.id)
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


def cmd_sync(args: argparse.Namespace) -> int:
    progress = _Progress("syncing: updates learned", 0)
    progress.show()
    try:
        with _session(args) as s:
            report = s.call("sync", address=args.address, until_idle=True)
    finally:
        progress.done()
    if args.json:
        _json(report)
    else:
        _out(f"{report['exchanges']} exchange(s) ok, {report['failures']} failed, "
             f"{report['learned']} update(s) learned in {report['seconds']:.2f}s")  # fmt: skip
    return 1 if report["failures"] and not report["exchanges"] else 0


def cmd_inspect(args: argparse.Namespace) -> int:
    with _session(args) as s:
        info = s.call("inspect")
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
        insecure_plaintext=args.insecure_plaintext or None, agents_listen=args.agents_listen,
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
    c.add_argument("--agents-listen", metavar="ADDR",
                   help="the agents' HTTP (Singularity Memory routes, MCP at /mcp/; "
                        "docs/agents.md); default: [agents] listen, else 127.0.0.1:8888; "
                        "'' turns it off")  # fmt: skip
    c.add_argument("--lock-wait", type=_seconds, default=10.0, metavar="SECONDS",
                   help="wait this long for a command holding the data dir (default 10)")
    c.add_argument("--insecure-plaintext", action="store_true",
                   help="serve and reach peers without TLS (only inside an encrypted tailnet; "
                        "every peer must agree; default: config.toml, else TLS)")

    c = command(sub, "mcp", cmd_mcp, "serve MCP on stdin/stdout for an agent (Claude Code, "
                "Cursor): through the running daemon")  # fmt: skip
    c.add_argument("--bank", type=_arg("recall", "bank"), default="default", metavar="BANK",
                   help="the memory bank its tools use (default: default)")  # fmt: skip

    c = command(sub, "status", cmd_status, "this host: daemon, peers, records, warnings")
    c.add_argument("--json", action="store_true", help="print a JSON object")
    c = command(sub, "peers", cmd_peers, "the peer table: state, last success, rtt, lag")
    c.add_argument("--json", action="store_true", help="print a JSON array")
    c.add_argument("--watch", action="store_true", help="redraw every --interval seconds")
    c.add_argument("--interval", type=_seconds, default=2.0, metavar="SECONDS")
    c = command(sub, "show", cmd_show, "one record with its provenance")
    c.add_argument("id", type=_arg("show", "id"), metavar="ID",
                   help="a record id, or its first 6+ characters")  # fmt: skip
    c.add_argument("--json", action="store_true", help="print a JSON object")
    c = command(sub, "sync", cmd_sync, "exchange now with every peer (or ADDR) until caught up")
    c.add_argument("address", nargs="?", metavar="ADDR", help="a peer's HOST:PORT")
    c.add_argument("--json", action="store_true", help="print a JSON object")
    c = command(sub, "inspect", cmd_inspect, "document statistics: records by kind and author")
    c.add_argument("--json", action="store_true", help="print a JSON object")

    c = command(sub, "remember", cmd_remember, "write a memory; prints its record id")
    c.add_argument("text", type=_arg("remember", "text"), metavar="TEXT")
    c.add_argument("--category", required=True, type=_arg("remember", "category"),
                   help="anti-pattern, learning, contract, …")  # fmt: skip
    c.add_argument("--subject", help="what it is about, e.g. provider:x")
    c.add_argument("--tag", action="append", default=[], type=_arg("remember", "tags"),
                   help="a tag (repeat for more)")  # fmt: skip
    c.add_argument("--expires-in", type=_arg("remember", "expires_in"), metavar="SECONDS",
                   help="hide it from readers after this many seconds")  # fmt: skip
    c.add_argument("--bank", type=_arg("remember", "bank"), metavar="BANK",
                   help="the memory bank (default: default; docs/agents.md)")  # fmt: skip

    c = command(sub, "recall", cmd_recall, "search the memories of trusted authors")
    c.add_argument("query", nargs="?", metavar="QUERY", help="words to search for")
    c.add_argument("--category")
    c.add_argument("--subject")
    c.add_argument("--tag")
    c.add_argument("--author", help="a public id, a keyring name, or an id's first characters")
    c.add_argument("--limit", type=_arg("recall", "limit"), default=20, metavar="N",
                   help=f"at most N memories (1 to {MAX_LIMIT}; default 20)")  # fmt: skip
    c.add_argument("--include-untrusted", action="store_true",
                   help="also show authors outside the keyring")  # fmt: skip
    c.add_argument("--bank", type=_arg("recall", "bank"), metavar="BANK",
                   help="the memory bank to search (default: default)")  # fmt: skip
    c.add_argument("--mode", choices=MODES, default="hybrid",
                   help="hybrid: words and meaning, fused (default); lexical: words; "
                   "semantic: meaning")  # fmt: skip
    c.add_argument("--json", action="store_true", help="print a JSON array")

    c = command(sub, "retract", cmd_retract, "retract one of this host's memories")
    c.add_argument("id", type=_arg("show", "id"), metavar="ID",
                   help="the memory's record id, or its first 6+ characters")  # fmt: skip
    c.add_argument("--reason", help="why (kept in the retraction record)")

    breaker = command(sub, "breaker", _needs_subcommand, "circuit breakers across hosts")
    bsub = breaker.add_subparsers(dest="action", required=True, metavar="ACTION")
    c = command(bsub, "trip", cmd_breaker_trip, "open a breaker from this host")
    c.add_argument("name", type=_arg("breaker_trip", "name"), metavar="NAME")
    c.add_argument("--reason", required=True)
    c.add_argument("--cooldown", required=True, type=_arg("breaker_trip", "cooldown"),
                   metavar="SECONDS",
                   help="it resets after this many seconds")  # fmt: skip
    c.add_argument("--failures", type=_arg("breaker_trip", "failures"), default=0, metavar="N")
    c = command(bsub, "reset", cmd_breaker_reset, "close a breaker from this host")
    c.add_argument("name", metavar="NAME")
    c.add_argument("--reason", default="")
    c = command(bsub, "list", cmd_breaker_list, "breakers merged across trusted hosts")
    c.add_argument("--include-untrusted", action="store_true")
    c.add_argument("--json", action="store_true", help="print a JSON array")

    bench = command(sub, "bench", _needs_subcommand, "benchmark observations across hosts")
    esub = bench.add_subparsers(dest="action", required=True, metavar="ACTION")
    c = command(esub, "record", cmd_bench_record, "record this host's latest measurement")
    c.add_argument("subject", type=_arg("bench_record", "subject"), metavar="SUBJECT")
    c.add_argument("metric", type=_arg("bench_record", "metric"), metavar="METRIC")
    c.add_argument("value", type=_arg("bench_record", "value"), metavar="VALUE")
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
    c.add_argument("--ttl", type=_arg("invite", "ttl"), default=DEFAULT_TTL_S, metavar="SECONDS",
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
