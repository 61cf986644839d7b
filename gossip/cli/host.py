"""This host: ``init``, ``id``, ``version``, ``serve``, ``mcp`` and ``status``.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
from pathlib import Path
from typing import Any

from crdt.identity import KEY_FILE, fingerprint

from .. import config
from ..errors import CliError
from .arguments import answer, command, field_arg, seconds, session
from .terminal import ago, fit, note, now_ms, out, plural, print_json


def cmd_init(args: argparse.Namespace) -> int:
    home: Path = args.home
    if (home / KEY_FILE).exists():
        from crdt.store import STORE_FILE

        hint = "" if (home / STORE_FILE).exists() else (
            "; its store is missing: `gossip repair` starts an empty one for this key")
        raise CliError(f"{home} already has an identity ({KEY_FILE}); refusing to overwrite "
                       f"it{hint}")  # fmt: skip
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
    from crdt import Replica

    with Replica.open(home, create=True) as r:  # creates key and store under the lock
        if cfg is not None:
            config.create(home, cfg)
        out(r.author)
    _agents_note(home)
    return 0


def _agents_note(home: Path, url: str | None = None) -> None:
    """On stderr: the lines an agent's environment needs (docs/agents.md)."""
    from ..api import env_lines, read_token

    listen = config.load(home).agents_listen
    if not listen:
        return
    note("for agents (Hermes, OpenClaw; docs/agents.md), once `gossip serve` runs:")
    for line in env_lines(url or f"http://{listen}", read_token(home)):
        note(f"  {line}")


def cmd_mcp(args: argparse.Namespace) -> int:
    from ..api.mcp import run_stdio

    home: Path = args.home
    if not (home / KEY_FILE).exists():
        raise CliError(f"no identity in {home}; run `gossip init` first")
    return run_stdio(home, args.bank)


def cmd_id(args: argparse.Namespace) -> int:
    from crdt import Identity

    key = Identity.load(args.home).public_id
    out(key)
    note(f"fingerprint {fingerprint(key)} (to compare out loud with what `trust add` shows)")
    return 0


def cmd_version(args: argparse.Namespace) -> int:
    from .. import __version__

    out(f"sm-gossip {__version__}")
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    with session(args) as s:
        st = s.call("status")
        st["daemon"] = s.remote
    if args.json:
        print_json(st)
        return 0
    now = now_ms()
    rec = st["records"]
    rows = [
        ("id", st["id"]),
        ("name", st["name"]),
        ("daemon", f"running, pid {st['pid']}" if st["daemon"] else "not running"),
        ("listen", st["address"] or "-"),
        ("profile", st["profile"]),
        ("transport", _transport_line(st)),
        ("discovery", [f"{d['source']} {d['state']}" + (f" ({d['detail']})" if d.get("detail")
                                                       else "") for d in st["discovery"]] or "-"),
        ("peers", f"{st['peers']['alive']} alive of {st['peers']['total']}"),
        ("records", f"{rec['total']} ({rec['trusted']} trusted, {rec['untrusted']} untrusted), "
                    f"{plural(st['state_entries'], 'state entry', 'state entries')}"),
        ("keyring", plural(st["keyring"], "key", "keys")),
        ("store", f"{st['store_bytes'] / 1024:.0f} KiB"),
        ("last exchange", ago(st["last_exchange"], now) if st["last_exchange"] else "never"),
    ]  # fmt: skip
    agents = st.get("agents")
    if agents:
        where = agents["url"] or f"not running ({agents['error']})"
        rows.append(("agents", where + ("  EXPOSED beyond this machine" if agents["exposed"]
                                        else "")))  # fmt: skip
    elif st["daemon"]:  # turned off: say so (`gossip web` sends people here to find out)
        rows.append(("agents", 'off (--agents-listen "" or [agents] listen = ""): no agents\' '
                               "API, MCP over HTTP or dashboard"))  # fmt: skip
    for k, v in rows:  # a list: one line each (the discovery sources), so none is cut
        for i, line in enumerate(v if isinstance(v, list) else [v]):
            out(f"{k + ':' if i == 0 else '':<15}{fit(str(line), 84)}")
    if agents and agents["url"]:
        from ..api import env_lines, read_token

        for line in env_lines(agents["url"], read_token(args.home)):
            out(line)
    for w in st["warnings"]:
        note(f"warning: {w}")
    return 0


def cmd_web(args: argparse.Namespace) -> int:
    if (link := answer(args, "web_login")) is None:
        return 0
    out(link["url"])
    if not args.no_open and _graphical():
        import webbrowser

        with contextlib.suppress(Exception):  # no browser: the link is printed anyway
            if webbrowser.open(link["url"]):
                note("opened in your browser; the link works once, within a minute")
                return 0
    note("open this link within a minute: it works once, then the browser keeps a session "
         "cookie instead (the API token never reaches the browser)")
    return 0


def _graphical() -> bool:
    """Whether a browser opens in a window here (over SSH, Python would pick a text
    browser that takes the terminal over)."""
    return (sys.platform in ("darwin", "win32") or bool(os.environ.get("DISPLAY"))
            or bool(os.environ.get("WAYLAND_DISPLAY")))  # fmt: skip


def _transport_line(st: dict[str, Any]) -> str:
    """``tls (pinned to host keys)`` and how many peers use each mode."""
    mode = st.get("transport") or "-"
    text = {"tls": "tls (pinned to host keys)",
            "plaintext": "plaintext (--insecure-plaintext: readable on the wire)"}.get(mode, mode)
    per = (st.get("peers") or {}).get("transport") or {}
    if per:
        text += "; peers: " + ", ".join(f"{n} {m or '?'}" for m, n in sorted(per.items()))
    return text


def cmd_serve(args: argparse.Namespace) -> int:
    from ..daemon import ServeSettings, configure_logging, run

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



def cmd_repair(args: argparse.Namespace) -> int:
    if (report := answer(args, "repair")) is None:
        return 0
    out(f"kept {report['kept']} stored update(s) that verify, dropped {report['dropped']} "
        f"that did not, {report['waiting']} waiting for a dropped one")  # fmt: skip
    if not report["readable"]:
        note("the old store could not be read at all: this host starts empty")
    if report["moved_to"]:
        note(f"the old files are in {report['moved_to']} (delete them once you no longer "
             "need them)")  # fmt: skip
    if report["removed"] is None:
        note("warning: the list of keys removed by hand was unreadable: check `gossip trust "
             "list` and remove them again")  # fmt: skip
    note(f"kept: {KEY_FILE}, {report['keyring']} key(s) of the keyring; peers send the rest "
         "again at the next exchange (`gossip serve`, or `gossip sync HOST:PORT`)")
    return 0


def register(sub: Any) -> None:
    """Add this module's commands to the subcommand parser ``sub``."""
    c = command(sub, "init", cmd_init, "create this host's key, config and store")
    c.add_argument("--name", help="this host's display name (default: the hostname)")
    command(sub, "id", cmd_id, "print this host's public id")
    command(sub, "version", cmd_version, "print the version")
    c = command(sub, "repair", cmd_repair, "rebuild a damaged store from what still verifies "
                "(no daemon; host.key kept; peers send the rest)")  # fmt: skip
    c.add_argument("--json", action="store_true", help="print a JSON object")

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
    c.add_argument("--lock-wait", type=seconds, default=10.0, metavar="SECONDS",
                   help="wait this long for a command holding the data dir (default 10)")
    c.add_argument("--insecure-plaintext", action="store_true",
                   help="serve and reach peers without TLS (only inside an encrypted tailnet; "
                        "every peer must agree; default: config.toml, else TLS)")

    c = command(sub, "mcp", cmd_mcp, "serve MCP on stdin/stdout for an agent (Claude Code, "
                "Cursor): through the daemon, else on the data dir call by call")  # fmt: skip
    c.add_argument("--bank", type=field_arg("recall", "bank"), default="default", metavar="BANK",
                   help="the memory bank its tools use (default: default)")  # fmt: skip

    c = command(sub, "status", cmd_status, "this host: daemon, peers, records, warnings")
    c.add_argument("--json", action="store_true", help="print a JSON object")
    c = command(sub, "web", cmd_web, "open the dashboard (docs/ui.md) with a one-time login "
                "link; the daemon serves it on its agents' listener")  # fmt: skip
    c.add_argument("--no-open", action="store_true", help="only print the link")
    c.add_argument("--json", action="store_true", help="print a JSON object {url, expires_at}")
