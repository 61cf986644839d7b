"""Signed updates by file: ``export`` and ``import`` (each update through the gate).
"""

from __future__ import annotations

import argparse
from typing import Any

from ..exportfile import decode_export
from .arguments import command, session
from .files import read_input, refuse_own_files, write_atomic
from .terminal import Progress, note, one_line, out, plural


def cmd_export(args: argparse.Namespace) -> int:
    refuse_own_files(args.home, args.file)
    with session(args) as s:
        data = s.call("export", yjs=args.yjs)
    count = None if args.yjs else len(decode_export(data, "the export"))
    n = write_atomic(args.file, [data])
    to_stdout = args.file == "-"
    what = (f"exported {count} signed updates" if count is not None
            else "wrote the document as one plain Yjs v1 update")  # fmt: skip
    (note if to_stdout else out)(
        f"{what} ({n} bytes) to {'stdout' if to_stdout else args.file}"
        + ("; for Yjs tools, not for `gossip import`" if count is None else ""))
    return 0


def cmd_import(args: argparse.Namespace) -> int:
    name = "stdin" if args.file == "-" else args.file
    data = read_input(args.file)
    updates = decode_export(data, name)
    progress = Progress("importing", len(updates))
    progress.show()
    try:
        with session(args, progress=lambda done, total: progress.show(done)) as s:
            summary = s.call("import", name=name, body=data)
    finally:
        progress.done()
    for k in summary["refused"]:
        where = [f"update {k['index'] + 1} of {summary['updates']}"]
        if k["author"]:
            where.append(f"author {k['author'][:12]}")
        if k["key"]:
            where.append(f"key {k['key'][:80]}")
        note(f"refused: {k['rule']}: {one_line(k['detail'])} ({', '.join(where)})")
    out(
        f"imported {name}: {plural(summary['updates'], 'update', 'updates')}: "
        f"{summary['applied']} applied, "
        f"{summary['duplicate']} already present, {summary['waiting']} waiting, "
        f"{len(summary['refused'])} refused"
    )
    if summary["waiting"]:
        note(
            f"note: {plural(summary['waiting'], 'update builds', 'updates build')} on updates "
            "this file lacks; "
            f"{'it was' if summary['waiting'] == 1 else 'they were'} not kept (import those "
            "first, then this file again)"
        )
    for author, n in sorted(summary["untrusted"].items()):
        note(
            f"note: {plural(n, 'update', 'updates')} by {author}, not trusted here: recall "
            f"hides {'it' if n == 1 else 'them'} until "
            f"`gossip trust add {author}`"
        )
    return 1 if summary["refused"] else 0



def register(sub: Any) -> None:
    """Add this module's commands to the subcommand parser ``sub``."""
    c = command(sub, "export", cmd_export, "write every stored signed update to a file")
    c.add_argument("file", metavar="FILE", help="the file to write ('-': stdout)")
    c.add_argument(
        "--yjs", action="store_true",
        help="write the document as one plain Yjs update instead (not importable)",
    )  # fmt: skip
    c = command(sub, "import", cmd_import, "offer an export's signed updates to the gate")
    c.add_argument("file", metavar="FILE", help="an export file ('-': stdin)")
