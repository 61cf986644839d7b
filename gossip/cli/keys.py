"""Whose records count: ``trust add|remove|list|invite|join`` and ``key rotate``.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from crdt.identity import RETIRED_DIR

from ..errors import CliError
from ..invites import DEFAULT_TTL_S
from .arguments import command, field_arg, field_help, needs_action, session
from .terminal import note, now_ms, out, print_json, until


def cmd_trust_add(args: argparse.Namespace) -> int:
    with session(args) as s:
        answer = s.call("trust_add", key=args.key, name=args.name or "",
                        fingerprint=args.fingerprint)  # fmt: skip
    label = f" as {args.name}" if args.name else ""
    out(f"{'updated' if answer['updated'] else 'trusted'} {args.key}{label} "
        f"(fingerprint {answer['fingerprint']})")  # fmt: skip
    if answer["note"]:
        note(f"warning: {answer['note']}")
    return 0


def cmd_trust_remove(args: argparse.Namespace) -> int:
    """Publish a signed revoke when this host may (it vouched for the key, or the key is
    one it rotated away from), else remove the key here only."""
    if not args.key:
        raise CliError("give the key to remove: its id, its keyring name or a prefix of its id")
    with session(args) as s:
        answer = s.call("trust_remove", key=args.key, retroactive=args.retroactive,
                        local=args.local)  # fmt: skip
    key, revoked, kept = answer["id"], answer["revoked"], answer["kept"]
    if kept:
        note(f"{key[:12]}… had rotated to {kept}, which stays trusted (added to "
              "the keyring); remove it by name to stop trusting that host")  # fmt: skip
    if revoked:
        out(f"revoked {key} (signed revoke record {revoked[:12]}; peers that trust it through "
             "this host's invitation or rotation stop trusting it)")  # fmt: skip
    else:
        out(f"removed {key}")
    return 0


def cmd_trust_list(args: argparse.Namespace) -> int:
    with session(args) as s:
        entries = s.call("trust_list")
    if args.json:
        print_json(entries)
    else:
        for e in entries:
            how = "" if e["how"] in ("self", "keyring") else f"  [{e['how']}]"
            out(f"{e['id']}  {e['name']}".rstrip() + how)
    return 0


def cmd_trust_invite(args: argparse.Namespace) -> int:
    with session(args) as s:
        answer = s.call("invite", ttl=args.ttl, name=args.name)
    out(answer["token"])
    note(f"single use, expires {until(answer['expires_at'], now_ms())}: on the new host, run "
          "`gossip trust join` and paste it (keep the token secret)")  # fmt: skip
    return 0


def _read_token(args: argparse.Namespace) -> str:
    """The token: from stdin (one line; typed without echo at a terminal), so that the
    secret is in no process's command line and no shell history. One given as an
    argument still works, with a warning."""
    from ..invites import MAX_TOKEN_CHARS

    if args.token not in (None, "-"):
        note("warning: a token on the command line is visible to other local users and "
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
    with session(args) as s:
        joined = s.call("join", token=token, members=not args.only_inviter)
    if args.json:
        print_json(joined)
        return 0
    out(f"joined: trusting {joined['inviter']} (the inviter)")
    others = [k for k in joined["trusted"] if k != joined["inviter"]]
    if others:
        out(f"and {len(others)} host(s) it trusts: {', '.join(k[:12] for k in others)}")
    return 0


def cmd_key_rotate(args: argparse.Namespace) -> int:
    with session(args) as s:
        answer = s.call("key_rotate")
    out(answer["id"])
    note(f"rotated: {answer['previous'][:12]}… signed a successor record for this key; it is "
          f"kept in {RETIRED_DIR}/ (0600). Peers that trust the old key trust the new one once "
          "they have the record.")  # fmt: skip
    return 0



def register(sub: Any) -> None:
    """Add this module's commands to the subcommand parser ``sub``."""
    trust = command(sub, "trust", needs_action, "the keyring: whose records count")
    tsub = trust.add_subparsers(dest="action", required=True, metavar="ACTION")
    c = command(tsub, "add", cmd_trust_add, "trust an author's records when reading")
    c.add_argument("key", metavar="KEY", help="the author's public id (`gossip id` there)")
    c.add_argument("--name", help=field_help("trust_add", "name"))
    c.add_argument("--fingerprint", metavar="FP", help=field_help("trust_add", "fingerprint"))
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
    c.add_argument("--ttl", type=field_arg("invite", "ttl"), default=DEFAULT_TTL_S,
                   metavar="SECONDS",
                   help="how long it stays valid (default a day, at most 30 days)")
    c.add_argument("--name", default="", help="the keyring name the new host will get")
    c = command(tsub, "join", cmd_trust_join, "redeem an invitation token from a member")
    c.add_argument("token", metavar="TOKEN", nargs="?", default=None,
                   help="the smg1.… line `trust invite` printed; best left out: it is then "
                        "read from stdin, out of the process list and shell history")  # fmt: skip
    c.add_argument("--only-inviter", action="store_true",
                   help="trust only the inviter, not the hosts it trusts")
    c.add_argument("--json", action="store_true", help="print a JSON object")

    key = command(sub, "key", needs_action, "this host's signing key")
    ksub = key.add_subparsers(dest="action", required=True, metavar="ACTION")
    command(ksub, "rotate", cmd_key_rotate,
            "switch to a fresh key; the old one signs a successor record")

