"""The mesh: ``peers`` (the peer table, ``--watch``; ``peers forget ID``), ``sync`` and
``inspect``.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from typing import Any

from .arguments import answer, command, seconds, session
from .terminal import Progress, byte_size, fit, in_sync, note, now_ms, out, print_json, span, table

ADDRESS_WIDTH = 21  # an IPv4 address and port; a longer one (IPv6) follows below the table


def _peer_rows(peers: list[dict[str, Any]], now: int) -> list[list[str]]:
    rows = []
    for p in peers:
        rows.append([
            (p["key"] or "?")[:8], fit(p["name"] or "-", 12),
            fit(p["address"] or "-", ADDRESS_WIDTH), p["source"], p["state"],
            span(now - p["last_success"]) if p["last_success"] else "never",
            "-" if p["rtt_ms"] is None else f"{p['rtt_ms']:.0f}ms",
            in_sync(p["they_lack"], p["we_lack"]),
            p.get("transport") or "-", p.get("reason") or "-",
        ])  # fmt: skip
    return rows


def _peer_table(peers: list[dict[str, Any]], now: int, *, reasons: bool = True) -> None:
    """The table, its REASON column giving way first; an address or a reason cut there
    follows in full below it (an unknown key's ``gossip trust add`` line must stay whole,
    an IPv6 address copyable). Without ``reasons`` (no daemon runs: every row's reason is
    that) there is no such column."""
    rows = _peer_rows(peers, now)
    if not reasons:
        table(_PEER_HEADER[:-1], [r[:-1] for r in rows])
        widths = None
    else:
        widths = table(_PEER_HEADER, rows, elastic=len(_PEER_HEADER) - 1)
    below = []
    for p, r in zip(peers, rows, strict=True):
        if len(p["address"] or "") > ADDRESS_WIDTH:
            below.append(f"{r[0]}  {r[1]}: address {p['address']}")
        if widths is not None and len(r[-1]) > widths[-1]:
            below.append(f"{r[0]}  {r[1]}: {r[-1]}")
    if below:
        out()
    for line in below:
        out(line)


# Bytes in and out are in --json: the reason says more to a human in the width.
# SYNC: N behind (it lacks N of ours), N ahead (it held N we lack); docs/cli.md.
_PEER_HEADER = ["ID", "NAME", "ADDRESS", "SOURCE", "STATE", "LAST OK", "RTT", "SYNC",
                "TRANSPORT", "REASON"]  # fmt: skip


def cmd_peers(args: argparse.Namespace) -> int:
    with session(args) as s:
        if not s.remote:
            note("no daemon runs on this data dir: showing the peers as its last run knew "
                 "them (peers.json), and the configured ones")
        if args.watch:
            return _watch(lambda: s.call("peers"), args.interval, reasons=s.remote)
        peers = s.call("peers")
    if args.json:
        print_json(peers)
        return 0
    if not peers:
        note("no peers")
        return 0
    _peer_table(peers, now_ms(), reasons=s.remote)
    return 0


def cmd_peers_forget(args: argparse.Namespace) -> int:
    with session(args) as s:
        gone = s.call("peers_forget", key=args.key)
    out(f"forgot {gone['key']} ({gone['name'] or 'no name'}, {gone['state']})")
    return 0


def _watch(fetch: Callable[[], list[dict[str, Any]]], interval: float, *,
           reasons: bool = True) -> int:  # fmt: skip
    """Redraw the peer table every ``interval`` seconds until Ctrl-C.

    Ctrl-C is ours while watching: it stops the sleep at once, and a fetch under way
    finishes first (a local session's event loop would otherwise take the signal and
    could lose it between its runs).
    """
    import signal

    stop, sleeping = False, False

    def interrupt(signum: int, frame: object) -> None:
        nonlocal stop
        stop = True
        if sleeping:
            raise KeyboardInterrupt

    tty = sys.stdout.isatty()
    previous = signal.signal(signal.SIGINT, interrupt)
    try:
        while True:
            peers = fetch()
            if stop:
                break
            if tty:
                sys.stdout.write("\x1b[H\x1b[2J")
            out(f"gossip peers — {time.strftime('%H:%M:%S')} — every {interval:g}s, "
                "Ctrl-C stops")
            _peer_table(peers, now_ms(), reasons=reasons) if peers else out("no peers")
            if not tty:
                out()
            sys.stdout.flush()
            sleeping = True
            if stop:  # it came while drawing
                break
            time.sleep(interval)
            sleeping = False
    except KeyboardInterrupt:  # it came while sleeping
        pass
    finally:
        signal.signal(signal.SIGINT, previous)
    return 130


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
    psub = c.add_subparsers(dest="action", required=False, metavar="ACTION")
    f = command(psub, "forget", cmd_peers_forget,
                "drop a peer's row (a host that left for good); a source that still "
                "proposes it, or the host itself, brings it back")
    f.add_argument("key", metavar="ID", help="the peer's id, or a prefix of it (`gossip peers`)")
    c = command(sub, "sync", cmd_sync, "exchange now with every peer (or ADDR) until caught up")
    c.add_argument("address", nargs="?", metavar="ADDR", help="a peer's HOST:PORT")
    c.add_argument("--json", action="store_true", help="print a JSON object")
    c = command(sub, "inspect", cmd_inspect, "document statistics: records by kind and author")
    c.add_argument("--json", action="store_true", help="print a JSON object")

