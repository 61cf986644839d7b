"""The `gossip` command. So far: init, id, version (the rest arrives with later issues).

Every failure the user can cause ends in one line on stderr and exit code 1 or 2,
never a traceback.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from crdt import GossipError, Identity, Replica
from crdt.identity import KEY_FILE


def default_home() -> Path:
    """``$GOSSIP_HOME``, else the platform's per-user data dir."""
    if env := os.environ.get("GOSSIP_HOME"):
        return Path(env).expanduser()
    if sys.platform == "darwin":
        return Path.home() / "Library" / "Application Support" / "sm-gossip"
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "sm-gossip"


def cmd_init(args: argparse.Namespace) -> int:
    home: Path = args.home
    if (home / KEY_FILE).exists():
        print(f"gossip: {home} already has an identity ({KEY_FILE}); refusing to overwrite it",
              file=sys.stderr)  # fmt: skip
        return 1
    with Replica.open(home, create=True) as r:  # creates key and store under the lock
        print(r.author)
    return 0


def cmd_id(args: argparse.Namespace) -> int:
    print(Identity.load(args.home).public_id)
    return 0


def cmd_version(args: argparse.Namespace) -> int:
    from importlib.metadata import version

    print(f"sm-gossip {version('sm-gossip')}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="gossip", description="sm-gossip: replicated, signed agent knowledge"
    )
    p.add_argument("--home", type=Path, default=None,
                   help="data dir (default: $GOSSIP_HOME or the platform data dir)")  # fmt: skip
    sub = p.add_subparsers(dest="command", required=True)
    sub.add_parser("init", help="create this host's key and store").set_defaults(fn=cmd_init)
    sub.add_parser("id", help="print this host's public id").set_defaults(fn=cmd_id)
    sub.add_parser("version", help="print the version").set_defaults(fn=cmd_version)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    args.home = (args.home or default_home()).expanduser()
    try:
        return args.fn(args)
    except GossipError as e:
        print(f"gossip: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
