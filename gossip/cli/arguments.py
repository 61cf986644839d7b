"""Turning arguments into values: each field's own check as an argparse type (so a bad
value is a usage error saying what every surface says), the parser class, and the
session of ``--home`` (the daemon's API when one runs, else the data dir).
"""

from __future__ import annotations

import argparse
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..errors import CliError, Invalid
from ..ops import OPERATIONS
from ..ops.fields import Kind, Seconds, TextList
from ..ops.session import Session, open_session
from .terminal import print_json


def session(args: argparse.Namespace,
             progress: Callable[[int, int], None] | None = None) -> Session:  # fmt: skip
    """The operations of ``--home``: through the daemon's API when one runs, else on the
    data dir itself, which must exist (``gossip init`` creates it)."""
    home: Path = args.home
    session = open_session(home, progress=progress)
    if not session.remote and not home.is_dir():
        raise CliError(f"no data dir at {home}; run `gossip init` first")
    return session


def answer(args: argparse.Namespace, operation: str, **params: Any) -> Any:
    """``operation``'s answer for a human, or None once it is printed as JSON (--json)."""
    with session(args) as s:
        value = s.call(operation, **params)
    if args.json:
        print_json(value)
        return None
    return value


def field_arg(operation: str, name: str) -> Callable[[str], Any]:
    """The argument type of field ``name`` of ``operation``: the field's own check, so a
    bad value is a usage error (exit 2) saying what every surface says."""
    f = OPERATIONS[operation].field(name)
    return kind_arg(f.kind.item if isinstance(f.kind, TextList) else f.kind, name)


def field_help(operation: str, name: str) -> str:
    """The help line of field ``name`` of ``operation`` (its limits stated there once)."""
    return OPERATIONS[operation].field(name).help.replace("%", "%%")  # argparse formats it


def kind_arg(kind: Kind, name: str) -> Callable[[str], Any]:
    def parse(text: str) -> Any:
        try:
            return kind.parse(text, name)
        except Invalid as e:
            raise argparse.ArgumentTypeError(str(e)) from None

    parse.__name__ = name  # argparse says "invalid NAME value" for other errors
    return parse


seconds = kind_arg(Seconds(), "seconds")


_PUBLIC_ID = re.compile(r"[A-Za-z0-9_-]{43}")
_ID_PREFIX = re.compile(r"-[A-Za-z0-9_][A-Za-z0-9_-]{3,41}")  # not "--…": a long option


class Parser(argparse.ArgumentParser):
    """An argparse parser that never mistakes a public id, or the prefix of one that
    commands take (`gossip peers forget -cWCaBg`), for an option.

    One public id in 64 starts with '-' (base64url); `gossip trust add -eBQ…` must
    still work without the user knowing to write `--`. A prefix counts as one when it is
    no option of this parser and does not start with one of its short options (``-n5``).
    """

    def _parse_optional(self, arg_string: str) -> Any:
        known = self._option_string_actions
        prefix = _ID_PREFIX.fullmatch(arg_string) and arg_string[:2] not in known
        if arg_string not in known and (_PUBLIC_ID.fullmatch(arg_string) or prefix):
            return None  # a positional argument (or an option's value)
        return super()._parse_optional(arg_string)


def common_options() -> argparse.ArgumentParser:
    """--home and --debug, accepted after the subcommand too (default: leave unset)."""
    p = Parser(add_help=False, argument_default=argparse.SUPPRESS)
    p.add_argument("--home", type=Path,
                   help="data dir (default: $GOSSIP_HOME or the platform data dir)")  # fmt: skip
    p.add_argument("--debug", action="store_true", help="show tracebacks of errors")
    return p


def needs_action(args: argparse.Namespace) -> int:  # pragma: no cover - argparse exits
    raise CliError("missing action")


def not_utf8(args: argparse.Namespace) -> str | None:
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



_COMMON = common_options()


def command(parent: Any, name: str, fn: Callable[[argparse.Namespace], int],
            help: str) -> argparse.ArgumentParser:  # fmt: skip
    """A subcommand of ``parent`` that runs ``fn``, with --home and --debug."""
    c = parent.add_parser(name, help=help, description=help, parents=[_COMMON])
    c.set_defaults(fn=fn)
    return c
