"""The mesh: ``peers`` (the peer table, ``--watch``), ``sync`` and ``inspect``.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from typing import Any

from .arguments import answer, command, seconds, session
from .terminal import Progress, byte_size, fit, note, now_ms, out, print_json, span, table


def _peer_rows(peers: list[dict[str, Any]], now: int) -> list[list[str]]:
    rows = []
    for p in peers:
        lag = "-" if p["they_lack"] is None else f"{p['they_lack']}/{p['we_lack']}"
        rows.append([
            (p["key"] or "?")[:8], fit(p["name"] or "-", 12), fit(p["address"], 21),
            p["source"], p["state"],
            span(now - p["last_success"]) if p["last_success"] else "never",
            "-" if p["rtt_ms"] is None else f"{p['rtt_ms']:.0f}ms", lag,
            f"{byte_size(p['bytes_in'])}/{byte_size(p['bytes_out'])}", p.get("transport") or "-",
        ])  # fmt: skip
    return rows


_PEER_HEADER = ["ID", "NAME", "ADDRESS", "SOURCE", "STATE", "LAST OK", "RTT", "LAG ↑/↓",
                "IN/OUT", "TRANSPORT"]  # fmt: skip


def cmd_peers(args: argparse.Namespace) -> int:
    with session(args) as s:
        if not s.remote:
            note("no daemon runs on this data dir: showing the configured peers")
        if args.watch:
            return _watch(lambda: s.call("peers"), args.interval)
        peers = s.call("peers")
    if args.json:
        print_json(peers)
        return 0
    if not peers:
        note("no peers")
        return 0
    table(_PEER_HEADER, _peer_rows(peers, now_ms()))
    return 0


def _watch(fetch: Callable[[], list[dict[str, Any]]], interval: float) -> int:
    """Redraw the peer table every ``interval`` seconds until Ctrl-C."""
    tty = sys.stdout.isatty()
    while True:
        peers = fetch()
        if tty:
            sys.stdout.write("\x1b[H\x1b[2J")
        out(f"gossip peers — {time.strftime('%H:%M:%S')} — every {interval:g}s, Ctrl-C stops")
        table(_PEER_HEADER, _peer_rows(peers, now_ms())) if peers else out("no peers")
        if not tty:
            out()
        sys.stdout.flush()
        time.sleep(interval)


def cmd_sync(args: argparse.Namespace) -> int:
    progress = Progress("syncing: updates learned", 0)
    progress.show()
    try:
        with session(args) as s:
            report = s.call("sync", address=args.address, until_idle=True)
    finally:
        progress.done()
    if args.json:
        print_json(report)
    else:
        out(f"{report['exchanges']} exchange(s) ok, {report['failures']} failed, "
             f"{report['learned']} update(s) learned in {report['seconds']:.2f}s")  # fmt: skip
        for error in report["errors"]:
            note(f"failed: {error}")
    return 1 if report["failures"] and not report["exchanges"] else 0


def cmd_inspect(args: argparse.Namespace) -> int:
    if (info := answer(args, "inspect")) is None:
        return 0
    kinds = ", ".join(f"{n} {k}" for k, n in info["records_by_kind"].items()) or "none"
    states = ", ".join(f"{n} {k}" for k, n in info["state_by_kind"].items()) or "none"
    sv, store = info["state_vector"], info["store"]
    out(f"records:       {kinds}")
    out(f"state:         {states}")
    out(f"state vector:  {sv['clients']} clients, {sv['clock_total']} items")
    out(f"store:         {byte_size(store['bytes'])} on disk, {store['updates']} signed updates, "
         f"{store['pending']} waiting")  # fmt: skip
    out(f"document:      {byte_size(info['document_bytes'])} as one Yjs update")
    rejected = ", ".join(f"{n} {rule}" for rule, n in info["rejected_by_rule"].items())
    out(f"rejected:      {rejected or 'none'} (since the daemon started)")
    if info["records_by_author"]:
        out()
        rows = [[a["author"][:12], fit(a["name"] or "-", 20),
                 "yes" if a["trusted"] else "no", str(a["records"]),
                 f"{a['over_quota']} hidden" if a["over_quota"] else "-"]
                for a in info["records_by_author"]]  # fmt: skip
        table(["AUTHOR", "NAME", "TRUSTED", "RECORDS", "OVER QUOTA"], rows)
    return 0



def register(sub: Any) -> None:
    """Add this module's commands to the subcommand parser ``sub``."""
    c = command(sub, "peers", cmd_peers, "the peer table: state, last success, rtt, lag")
    c.add_argument("--json", action="store_true", help="print a JSON array")
    c.add_argument("--watch", action="store_true", help="redraw every --interval seconds")
    c.add_argument("--interval", type=seconds, default=2.0, metavar="SECONDS")
    c = command(sub, "sync", cmd_sync, "exchange now with every peer (or ADDR) until caught up")
    c.add_argument("address", nargs="?", metavar="ADDR", help="a peer's HOST:PORT")
    c.add_argument("--json", action="store_true", help="print a JSON object")
    c = command(sub, "inspect", cmd_inspect, "document statistics: records by kind and author")
    c.add_argument("--json", action="store_true", help="print a JSON object")

