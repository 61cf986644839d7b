"""Memories: ``remember``, ``recall``, ``retract``, and ``show`` of any record.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from crdt.views import MODES

from ..errors import CliError
from ..ops.memories import MAX_LIMIT
from .arguments import command, field_arg, field_help, session
from .events import follow_recall
from .terminal import ago, fit, note, now_ms, out, plural, print_json, span, until, who


def cmd_remember(args: argparse.Namespace) -> int:
    text = args.text
    if text == "-":  # the text on standard input, as it is (a trailing newline dropped)
        try:
            text = sys.stdin.buffer.read().decode("utf-8").removesuffix("\n")
        except UnicodeDecodeError as e:
            raise CliError(f"standard input is not UTF-8 text ({e.reason} at byte "
                           f"{e.start})") from None  # fmt: skip
    with session(args) as s:
        out(s.call("remember", text=text, category=args.category, subject=args.subject,
                    tags=args.tag, expires_in=args.expires_in, bank=args.bank,
                    idempotency_key=args.idempotency_key)["id"])  # fmt: skip
    return 0


def cmd_recall(args: argparse.Namespace) -> int:
    with session(args) as s:
        answer = s.call("recall", q=args.query, category=args.category, subject=args.subject,
                        tag=args.tag, author=args.author, limit=args.limit,
                        include_untrusted=args.include_untrusted, bank=args.bank,
                        mode=args.mode)  # fmt: skip
        hidden = 0  # nothing trusted matched: do untrusted authors' memories? (say so)
        if not answer["memories"] and not args.include_untrusted and not args.json:
            hidden = len(s.call("recall", q=args.query, category=args.category,
                                subject=args.subject, tag=args.tag, author=args.author,
                                limit=args.limit, include_untrusted=True, bank=args.bank,
                                mode=args.mode)["memories"])  # fmt: skip
    hits = answer["memories"]
    names = {m["author"]: m["author_name"] for m in hits if m["author_name"]}
    _show(hits, names, args.json)
    if not hits and not args.json:
        note("no memories match" + (f"; {plural(hidden, 'memory', 'memories')} by authors "
             "not trusted here would (--include-untrusted shows them)" if hidden else ""))
    if answer.get("note"):
        note(answer["note"])
    quota = answer["quota"]
    for who_id, n in sorted(answer["capped"].items()):
        note(f"hid {n} memories of {who(who_id, names)} over its share "
             f"(at most {quota['author_share']:.0%} of a recall)")  # fmt: skip
    if args.follow:
        return follow_recall(args, {m["id"] for m in hits},
                             lambda new: _show_new(new, names, args.json))  # fmt: skip
    return 0


def _show(hits: list[dict[str, Any]], names: dict[str, str], as_json: bool) -> None:
    """Recalled memories, as JSON or as human lines (each author by keyring name)."""
    if as_json:
        print_json(hits)
        return
    now = now_ms()
    for k, m in enumerate(hits):
        if k:
            out()
        head = [m["id"][:12], m["category"], m["subject"] or "-", ago(m["ts"], now)]
        by = who(m["author"], names) + ("" if m["trusted"] else " (untrusted)")
        found = ""
        if m.get("lanes"):  # which lanes found it, and its fused score
            ranks = ", ".join(f"{lane} #{rank}" for lane, rank in sorted(m["lanes"].items()))
            found = f"  [{ranks}; {m['score']:.4f}]"
        out("  ".join(head) + f"  by {by}{found}")
        for line in m["text"].splitlines() or [""]:
            out(f"    {line}")
        extra = []
        if m["tags"]:
            extra.append("tags: " + ", ".join(m["tags"]))
        if m["expires_at"] is not None:
            extra.append(f"expires {until(m['expires_at'], now)}")
        if extra:
            out("    " + "  ·  ".join(extra))


def _show_new(new: list[dict[str, Any]], names: dict[str, str], as_json: bool) -> None:
    """``recall --follow``'s new matches: one JSON object per line, or human lines."""
    names.update((m["author"], m["author_name"]) for m in new if m["author_name"])
    if as_json:
        for m in new:
            print(json.dumps(m, ensure_ascii=True), flush=True)
        return
    out()
    _show(new, names, False)


def cmd_retract(args: argparse.Namespace) -> int:
    with session(args) as s:
        answer = s.call("retract", id=args.id, reason=args.reason or "")
    if answer["already_retracted"]:
        note(f"memory {answer['id'][:12]} was already retracted")
    out(f"retracted {answer['id']}")
    return 0


def cmd_show(args: argparse.Namespace) -> int:
    with session(args) as s:
        shown = s.call("show", id=args.id)
    if args.json:
        print_json(shown)
        return 0
    now = now_ms()
    prov = shown["provenance"]
    author = shown["author_name"] or shown["author"][:12]
    if prov["local"]:
        came = "written on this host"
    elif prov["source"]:
        names = {d["key"]: d["name"] for d in shown["delivery"] if d.get("name")}
        source = prov["source"]  # a peer's key (named as the author is), or import:FILE whole
        source = names.get(source) or (source[:12] if ":" not in source else source)
        came = f"first received from {source} {ago(prov['received_at'], now)}"
    else:
        came = "origin unknown (compacted)"
    lines = [
        f"{shown['kind']} {shown['id']}",
        f"author:    {author} ({'trusted' if shown['trusted'] else 'NOT trusted'}), "
        f"signature {'ok' if shown['signature_ok'] else 'INVALID'}",
        f"trust:     {shown['trust']}",
        f"signed:    {ago(shown['ts'], now)}",
        f"came:      {came}",
    ]
    if shown["retracted_by"]:
        lines.append(f"retracted: by its author ({shown['retracted_by'][0][:12]})")
    sup = shown.get("supersedes")
    if sup:
        lines.append(f"replaces:  {sup['id'][:12]}: {sup['note']}")
    for line in lines:
        out(line)
    fields = {k: v for k, v in shown["record"]["fields"].items()
              if k not in ("v", "kind", "author", "ts")}  # fmt: skip
    for k, v in sorted(fields.items()):
        text = v if isinstance(v, str) else json.dumps(v, ensure_ascii=False)
        out(f"{k + ':':<11}{text}")
    _delivery(shown["delivery"])
    return 0


def _delivery(peers: list[dict[str, Any]]) -> None:
    """Which known peers hold the record: a summary line, then one line per peer."""
    if not peers:
        out("delivery:  no known peers")
        return
    have = sum(1 for p in peers if p["has"])
    unknown = sum(1 for p in peers if p["has"] is None)
    summary = f"{have} of {plural(len(peers), 'peer', 'peers')} have it"
    if unknown:
        summary += f" ({unknown} unknown)"
    out(f"delivery:  {summary}")
    for p in peers:
        name = p["name"] or (p["key"] or "")[:12] or p["address"]
        has = {True: "has it", False: "not yet", None: "unknown"}[p["has"]]
        known = "never learned" if p["age_ms"] is None else f"as of {span(p['age_ms'])} ago"
        out(f"  {fit(name, 20):<20}  {has:<8}  {known} ({p['state']})")



def register(sub: Any) -> None:
    """Add this module's commands to the subcommand parser ``sub``."""
    c = command(sub, "show", cmd_show, "one record with its provenance")
    c.add_argument("id", type=field_arg("show", "id"), metavar="ID",
                   help="a record id, or its first 6+ characters")  # fmt: skip
    c.add_argument("--json", action="store_true", help="print a JSON object")
    c = command(sub, "remember", cmd_remember, "write a memory; prints its record id")
    c.add_argument("text", type=field_arg("remember", "text"), metavar="TEXT",
                   help=f"{field_help('remember', 'text')}; `-` reads it from standard input")
    c.add_argument("--category", required=True, type=field_arg("remember", "category"),
                   help="anti-pattern, learning, contract, …")  # fmt: skip
    c.add_argument("--subject", help="what it is about, e.g. provider:x")
    c.add_argument("--tag", action="append", default=[], type=field_arg("remember", "tags"),
                   help="a tag (repeat for more)")  # fmt: skip
    c.add_argument("--expires-in", type=field_arg("remember", "expires_in"), metavar="SECONDS",
                   help="hide it from readers after this many seconds")  # fmt: skip
    c.add_argument("--bank", type=field_arg("remember", "bank"), metavar="BANK",
                   help="the memory bank (default: default; docs/agents.md)")  # fmt: skip
    c.add_argument("--idempotency-key", type=field_arg("remember", "idempotency_key"),
                   metavar="KEY", help="an id of this write: run again with it, it writes "
                   "nothing and prints the same id")  # fmt: skip

    c = command(sub, "recall", cmd_recall, "search the memories of trusted authors")
    c.add_argument("query", nargs="?", metavar="QUERY", help="words to search for")
    c.add_argument("--category")
    c.add_argument("--subject")
    c.add_argument("--tag")
    c.add_argument("--author", help="a public id, a keyring name, or an id's first characters")
    c.add_argument("--limit", type=field_arg("recall", "limit"), default=20, metavar="N",
                   help=f"at most N memories (1 to {MAX_LIMIT}; default 20)")  # fmt: skip
    c.add_argument("--include-untrusted", action="store_true",
                   help="also show authors outside the keyring")  # fmt: skip
    c.add_argument("--bank", type=field_arg("recall", "bank"), metavar="BANK",
                   help="the memory bank to search (default: default)")  # fmt: skip
    c.add_argument("--mode", choices=MODES, default="hybrid",
                   help="hybrid: words and meaning, fused (default); lexical: words; "
                   "semantic: meaning")  # fmt: skip
    c.add_argument("--json", action="store_true", help="print a JSON array")
    c.add_argument("--follow", action="store_true",
                   help="then print matching new memories as they arrive (the daemon's "
                        "feed; Ctrl-C stops)")  # fmt: skip

    c = command(sub, "retract", cmd_retract, "retract one of this host's memories")
    c.add_argument("id", type=field_arg("show", "id"), metavar="ID",
                   help="the memory's record id, or its first 6+ characters")  # fmt: skip
    c.add_argument("--reason", help="why (kept in the retraction record)")

