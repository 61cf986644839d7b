"""Signals shared across hosts: ``breaker trip|reset|list`` and ``bench record|show``.
"""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, Any

from .arguments import command, field_arg, needs_action, session
from .terminal import ago, note, now_ms, number, out, shown_plainly, table, until, who

if TYPE_CHECKING:
    from ..ops.session import Session


def cmd_breaker_trip(args: argparse.Namespace) -> int:
    with session(args) as s:
        s.call("breaker_trip", name=args.name, reason=args.reason, cooldown=args.cooldown,
               failures=args.failures)  # fmt: skip
    now = now_ms()
    out(f"{args.name}: open, resets {until(now + round(args.cooldown * 1000), now)}")
    return 0


def cmd_breaker_reset(args: argparse.Namespace) -> int:
    with session(args) as s:
        merged = s.call("breaker_reset", name=args.name, reason=args.reason)
        names = _names(s) if merged["state"] != "closed" else {}
    out(f"{args.name}: closed by this host")
    if merged["state"] != "closed":
        by = ", ".join(who(a, names) for a in merged["tripped_by"])
        note(f"note: {args.name} is still {merged['state']} for readers here: "
              f"tripped by {by}, resets {until(merged['resets_at'], now_ms())}")  # fmt: skip
    return 0


def _names(s: Session) -> dict[str, str]:
    """Names to show authors by, as `trust list` gives them."""
    return {e["id"]: e["name"] for e in s.call("trust_list") if e["name"]}


def cmd_breaker_list(args: argparse.Namespace) -> int:
    with session(args) as s:
        found = s.call("breakers", include_untrusted=args.include_untrusted)
        names = _names(s) if found and not args.json else {}
    if shown_plainly(found, args.json, "no breakers"):
        return 0
    now = now_ms()
    rows = [
        [b["name"], b["state"], until(b["resets_at"], now),
         ", ".join(who(a, names) for a in b["tripped_by"]) or "-", b["reason"] or "-"]
        for b in found
    ]  # fmt: skip
    table(["NAME", "STATE", "RESETS", "TRIPPED BY", "REASON"], rows)
    return 0


def cmd_bench_record(args: argparse.Namespace) -> int:
    with session(args) as s:
        s.call("bench_record", subject=args.subject, metric=args.metric, value=args.value,
               unit=args.unit)  # fmt: skip
    out(f"{args.subject} {args.metric} = {args.value}{' ' + args.unit if args.unit else ''}")
    return 0


def cmd_bench_show(args: argparse.Namespace) -> int:
    with session(args) as s:
        found = s.call("bench_show", subject=args.subject,
                       include_untrusted=args.include_untrusted)  # fmt: skip
        names = _names(s) if found and not args.json else {}
    if shown_plainly(found, args.json, "no benchmarks"):
        return 0
    now = now_ms()
    rows = []
    for b in found:
        values = b["values"]
        if set(values) == {"value"}:
            value = number(values["value"])
        else:
            value = ", ".join(f"{k}={number(v)}" for k, v in values.items()) or "-"
        hosts = ", ".join(who(a, names) for a in b["hosts"]) or "-"
        newest = ago(b["newest"], now) if b["count"] else "-"
        stale = f" (+{b['stale']} stale)" if b["stale"] else ""
        rows.append([b["subject"], b["metric"], value, b["unit"] or "-", hosts + stale, newest])
    table(["SUBJECT", "METRIC", "VALUE", "UNIT", "HOSTS", "NEWEST"], rows)
    return 0



def register(sub: Any) -> None:
    """Add this module's commands to the subcommand parser ``sub``."""
    breaker = command(sub, "breaker", needs_action, "circuit breakers across hosts")
    bsub = breaker.add_subparsers(dest="action", required=True, metavar="ACTION")
    c = command(bsub, "trip", cmd_breaker_trip, "open a breaker from this host")
    c.add_argument("name", type=field_arg("breaker_trip", "name"), metavar="NAME")
    c.add_argument("--reason", required=True)
    c.add_argument("--cooldown", required=True, type=field_arg("breaker_trip", "cooldown"),
                   metavar="SECONDS",
                   help="it resets after this many seconds")  # fmt: skip
    c.add_argument("--failures", type=field_arg("breaker_trip", "failures"), default=0, metavar="N")
    c = command(bsub, "reset", cmd_breaker_reset, "close a breaker from this host")
    c.add_argument("name", metavar="NAME")
    c.add_argument("--reason", default="")
    c = command(bsub, "list", cmd_breaker_list, "breakers merged across trusted hosts")
    c.add_argument("--include-untrusted", action="store_true")
    c.add_argument("--json", action="store_true", help="print a JSON array")

    bench = command(sub, "bench", needs_action, "benchmark observations across hosts")
    esub = bench.add_subparsers(dest="action", required=True, metavar="ACTION")
    c = command(esub, "record", cmd_bench_record, "record this host's latest measurement")
    c.add_argument("subject", type=field_arg("bench_record", "subject"), metavar="SUBJECT")
    c.add_argument("metric", type=field_arg("bench_record", "metric"), metavar="METRIC")
    c.add_argument("value", type=field_arg("bench_record", "value"), metavar="VALUE")
    c.add_argument("--unit", default="")
    c = command(esub, "show", cmd_bench_show, "recency-weighted summaries across trusted hosts")
    c.add_argument("subject", nargs="?", metavar="SUBJECT")
    c.add_argument("--include-untrusted", action="store_true")
    c.add_argument("--json", action="store_true", help="print a JSON array")

