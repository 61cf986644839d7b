"""The `gossip` command. Each command goes through the local API of the daemon when one
runs on the data dir, and opens the replica itself when none does (the lock decides):
either way it makes one or two calls of the operations table (``gossip.ops``) and shows
the answer. No command holds a rule or a limit of its own.

Every failure the user can cause ends in one line on stderr and exit code 1 (2 for a
usage error), never a traceback unless ``--debug``. ``gossip serve`` itself lives in
``gossip.daemon``; this package only parses its flags.

One module per group of commands (``host``, ``mesh``, ``memories``, ``events``,
``signals``, ``keys``, ``transfer``), each registering its own subcommands; ``terminal`` owns what
the user sees, ``arguments`` how arguments become values, ``files`` the export files.
"""

from __future__ import annotations

import sys
from typing import Any

__all__ = ["EXPORT_MAGIC", "ExportError", "build_parser", "decode_export", "default_home",
           "encode_export", "main"]  # fmt: skip

# Imported on first use: `gossip --version` must not pay for the commands' imports.
_LAZY = {"EXPORT_MAGIC": "..exportfile", "ExportError": "..exportfile",
         "decode_export": "..exportfile", "encode_export": "..exportfile",
         "default_home": "..config", "build_parser": ".run"}  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    """The `gossip` command (``argv``: its arguments, default ``sys.argv[1:]``)."""
    words = sys.argv[1:] if argv is None else argv
    if list(words) in (["--version"], ["version"]):
        from .. import __version__

        print(f"sm-gossip {__version__}")
        return 0
    from .run import run

    return run(argv)


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'gossip.cli' has no attribute {name!r}")
    from importlib import import_module

    return getattr(import_module(module, __name__), name)
