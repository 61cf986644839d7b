"""The `gossip` command's parser and dispatch: every group of commands registers its
subcommands here, and a failure the user can cause ends in one line (``main``'s rules).
Imported only once a command needs more than ``--version``."""

from __future__ import annotations

import argparse
import os
import sys
import traceback
from pathlib import Path

from crdt import GossipError

from .. import __version__
from ..config import default_home
from . import events, host, keys, memories, mesh, signals, transfer
from .arguments import Parser, not_utf8
from .terminal import note, one_line

__all__ = ["build_parser", "run"]


def build_parser() -> argparse.ArgumentParser:
    p = Parser(
        prog="gossip",
        description="sm-gossip: replicated, signed agent knowledge (embedded mode)",
        epilog="exit codes: 0 ok, 1 error, 2 usage; see docs/cli.md",
    )
    p.add_argument("--home", type=Path, default=None,
                   help="data dir (default: $GOSSIP_HOME or the platform data dir)")  # fmt: skip
    p.add_argument("--debug", action="store_true", default=False,
                   help="show tracebacks of errors")  # fmt: skip
    p.add_argument("--version", action="version", version=f"sm-gossip {__version__}")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for group in (host, mesh, memories, events, signals, keys, transfer):
        group.register(sub)
    return p


def run(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if (bad := not_utf8(args)) is not None:  # a usage error, daemon or not
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
        note(f"gossip: {one_line(message)}")
        return 1
    except Exception as e:
        if args.debug:
            traceback.print_exc()
        note(
            f"gossip: unexpected error: {type(e).__name__}: {one_line(str(e))} "
            "(run with --debug for details)"
        )
        return 1

