"""The live feed in the terminal: ``gossip events`` (every change as it happens) and
``gossip recall QUERY --follow`` (new memories that match, as they arrive), both read
from the daemon's change feed (``GET /v1/events``, docs/api.md).

A feed is a daemon's: without one running there is nothing to follow, and the command
says so. When the daemon goes away mid-stream (a restart), the command waits for it and
resumes from the last event it printed (a ``lost`` line says when that cannot be done).
Ctrl-C stops it. Text another host wrote is shown escaped (``terminal.safe``).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable, Iterator
from typing import Any

from ..connection import ApiConnection, FeedMessage
from ..errors import CliError, Unreachable
from .arguments import command, session
from .terminal import note, out, who

# What --kind filters on: a memory, a retraction, a breaker change, a benchmark, a trust
# change (the trusted set, or a vouch/revoke/successor record), a peer's state, a host
# announcement (hidden unless asked: every host re-announces itself now and then).
KINDS = ("memory", "retract", "breaker", "bench", "trust", "peer", "host")
DEFAULT_KINDS = tuple(k for k in KINDS if k != "host")
_RECORD_KINDS = {"memory": "memory", "retract": "retract", "benchmark": "bench",
                 "host": "host", "vouch": "trust", "revoke": "trust", "successor": "trust",
                 "bank": "memory"}  # fmt: skip
RETRY_S = 1.0  # how often a command whose daemon went away looks for it again


def kind_of(message: FeedMessage) -> str | None:
    """The --kind of a feed message; None for one nobody asked to see (a breaker's
    record: its ``breaker`` event says it)."""
    if message.type == "record":
        return _RECORD_KINDS.get(str((message.data or {}).get("kind")))
    return {"breaker": "breaker", "trust": "trust", "peer": "peer"}.get(message.type)


def follow(api: ApiConnection, since: str | None) -> Iterator[FeedMessage]:
    """The daemon's feed after ``since``, across restarts of the daemon, until Ctrl-C.
    ``lost`` and ``cutoff`` messages are yielded too (the caller says them)."""
    last = since
    waiting = False
    while True:
        try:
            for message in api.events(last):
                if waiting:
                    note("the daemon is back; resuming")
                    waiting = False
                if message.id:
                    last = message.id
                yield message
        except Unreachable as e:
            if last is None and not waiting and not api.alive():
                raise CliError(f"no daemon runs on {api.home}: the live feed is the daemon's "
                               "(`gossip serve`)") from e  # fmt: skip
            if not waiting:
                note(f"the daemon went away ({e}); waiting for it (Ctrl-C stops)")
                waiting = True
        else:
            if not waiting:  # ended by the daemon: it stops, or cut us off
                note("the daemon ended the feed; waiting for it (Ctrl-C stops)")
                waiting = True
        time.sleep(RETRY_S)


def line(message: FeedMessage, names: dict[str, str]) -> str:
    """One human line for a feed message."""
    data: dict[str, Any] = message.data if isinstance(message.data, dict) else {}
    stamp = time.strftime("%H:%M:%S")
    kind = kind_of(message) or message.type
    if message.type == "record":
        rec = data.get("record") or {}
        fields = rec.get("fields") or {}
        by = who(str(data.get("author", "")), names) + ("" if data.get("trusted") else
                                                        " (untrusted)")  # fmt: skip
        rid = str(rec.get("id", ""))[:12]
        if fields.get("kind") == "memory":
            text = " ".join(str(fields.get("text", "")).split())
            what = f"{rid} {fields.get('category', '-')} {fields.get('subject') or '-'}: {text}"
        elif fields.get("kind") == "retract":
            what = f"{str(fields.get('target', ''))[:12]} retracted"
        elif fields.get("kind") == "benchmark":
            what = f"{fields.get('subject')} {fields.get('metric')} = {fields.get('values')}"
        elif fields.get("kind") in ("vouch", "revoke", "successor"):
            what = f"{fields.get('kind')} {str(fields.get('key', ''))[:12]}"
        else:
            what = f"{fields.get('kind')} {rid}"
        return f"{stamp}  {kind:<8} {what}  by {by}"
    if message.type == "breaker":
        by = who(str(data.get("author", "")), names)
        return (f"{stamp}  {kind:<8} {data.get('name')} is {data.get('state')} "
                f"({by} says {data.get('observed')})")  # fmt: skip
    if message.type == "peer":
        p = data.get("peer") or {}
        name = p.get("name") or str(p.get("key") or "?")[:12]
        why = p.get("reason") or p.get("last_error")
        reason = f" ({why})" if why and p.get("state") != "alive" else ""
        return (f"{stamp}  {kind:<8} {name} {p.get('address', '')} {data.get('change')}: "
                f"{p.get('state')}{reason}")  # fmt: skip
    if message.type == "trust":
        added = ", ".join(who(k, names) for k in data.get("added") or []) or "-"
        removed = ", ".join(who(k, names) for k in data.get("removed") or []) or "-"
        return f"{stamp}  {kind:<8} trusted now: {added}; no longer: {removed}"
    return f"{stamp}  {message.type:<8} {json.dumps(data, ensure_ascii=False)}"


def say_gap(message: FeedMessage) -> bool:
    """Say a ``lost`` or ``cutoff`` message on stderr; True if it was one."""
    data = message.data if isinstance(message.data, dict) else {}
    if message.type == "lost":
        count = data.get("count")
        note(f"lost {count if count is not None else 'some'} event(s)"
             + (f": {data['reason']}" if data.get("reason") else "")
             + "; what they said is in `gossip recall`, `breaker list`, `peers`")  # fmt: skip
        return True
    if message.type == "cutoff":
        note("this command fell behind the feed and was cut off; resuming")
        return True
    return False


def _names(args: argparse.Namespace) -> dict[str, str]:
    with session(args) as s:
        return {e["id"]: e["name"] for e in s.call("trust_list") if e["name"]}


def _daemon(args: argparse.Namespace) -> ApiConnection:
    with session(args) as s:
        if not s.remote:
            raise CliError(f"no daemon runs on {args.home}: the live feed is the daemon's "
                           "(start `gossip serve`)")  # fmt: skip
    return ApiConnection(args.home)


def cmd_events(args: argparse.Namespace) -> int:
    api = _daemon(args)
    names = _names(args)
    wanted = set(args.kind or DEFAULT_KINDS)
    for message in follow(api, args.since):
        if message.type in ("lost", "cutoff"):
            if args.json:
                _ndjson(message)
            else:
                say_gap(message)
            continue
        if message.type == "trust":
            names = _names(args)  # a key just trusted may have a name now
        if kind_of(message) not in wanted:
            continue
        if args.json:
            _ndjson(message)
        else:
            out(line(message, names))
            sys.stdout.flush()
    return 0  # pragma: no cover - follow ends only by Ctrl-C or an error


def _ndjson(message: FeedMessage) -> None:
    print(json.dumps({"id": message.id or None, "type": message.type,
                      "kind": kind_of(message), "data": message.data},
                     ensure_ascii=True), flush=True)  # fmt: skip


def follow_recall(args: argparse.Namespace, shown: set[str],
                  show: Callable[[list[dict[str, Any]]], None]) -> int:  # fmt: skip
    """``recall --follow``: after the first answer, each new memory (and each gap in the
    feed) is looked for with the same recall (so every rule of recall applies: trust,
    bank, filters, the lanes), and the matches not shown yet are shown."""
    api = _daemon(args)
    for message in follow(api, None):
        # A gap (a restart, a cut-off) needs no word here: the recall below finds what it
        # may have hidden.
        if message.type not in ("lost", "cutoff") and kind_of(message) != "memory":
            continue
        with session(args) as s:
            answer = s.call("recall", q=args.query, category=args.category,
                            subject=args.subject, tag=args.tag, author=args.author,
                            limit=args.limit, include_untrusted=args.include_untrusted,
                            bank=args.bank, mode=args.mode)  # fmt: skip
        new = [m for m in answer["memories"] if m["id"] not in shown]
        shown.update(m["id"] for m in new)
        if new:
            show(new)
            sys.stdout.flush()
    return 0  # pragma: no cover - follow ends only by Ctrl-C or an error


def register(sub: Any) -> None:
    """Add this module's commands to the subcommand parser ``sub``."""
    c = command(sub, "events", cmd_events, "print changes as they happen (the daemon's "
                "feed): memories, retractions, breakers, trust, peers")  # fmt: skip
    c.add_argument("--kind", action="append", choices=KINDS, metavar="KIND",
                   help=f"only these kinds (repeat; {', '.join(KINDS)}; default all but "
                        "host)")  # fmt: skip
    c.add_argument("--since", metavar="ID",
                   help="resume after this event id (as --json prints them)")
    c.add_argument("--json", action="store_true", help="one JSON object per line")
