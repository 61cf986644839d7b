"""The files a command reads and writes besides the data dir: export files written
atomically, and the data dir's own files, which an output must never replace.
"""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile
from collections.abc import Iterable
from pathlib import Path

from crdt.files import fsync_dir
from crdt.identity import KEY_FILE
from crdt.lock import LOCK_FILE
from crdt.mark import MARK_FILE

from .. import config
from ..errors import CliError
from ..invites import INVITES_FILE


def write_atomic(path: str, chunks: Iterable[bytes]) -> int:
    """Write to a temporary sibling, sync, rename over ``path`` ("-": stdout). Bytes written."""
    if path == "-":
        out = sys.stdout.buffer
        n = sum(out.write(c) for c in chunks)
        out.flush()
        return n
    target = Path(path)
    parent = target.parent
    if not parent.is_dir():
        raise CliError(f"cannot write {target}: no directory {parent}")
    if target.is_dir():
        raise CliError(f"cannot write {target}: it is a directory")
    fd, tmp = tempfile.mkstemp(dir=parent, prefix=f".{target.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            n = sum(f.write(c) for c in chunks)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    fsync_dir(parent)
    return n


def read_input(path: str) -> bytes:
    if path == "-":
        return sys.stdin.buffer.read()
    p = Path(path)
    if p.is_dir():
        raise CliError(f"{p} is a directory, not an export file")
    return p.read_bytes()


def _own_files() -> tuple[str, ...]:
    """The files of a data dir that an output file must never replace: writing an export
    over one of them would lose the host's key or its store for good."""
    from crdt.semantic import ENDPOINT_FILE  # here: numpy only for a command that writes
    from crdt.semantic import FILE as VECTORS_FILE
    from crdt.store import STORE_FILE
    from crdt.views.kept import VIEWS_FILE

    from ..peerfile import PEER_FILE

    return (KEY_FILE, STORE_FILE, f"{STORE_FILE}-wal", f"{STORE_FILE}-shm", MARK_FILE,
            f"{STORE_FILE}-journal", config.CONFIG_FILE, LOCK_FILE, INVITES_FILE,
            "api.token", VECTORS_FILE, f"{VECTORS_FILE}-wal", f"{VECTORS_FILE}-shm",
            f"{VECTORS_FILE}-journal", PEER_FILE, ENDPOINT_FILE, f"{ENDPOINT_FILE}-wal",
            f"{ENDPOINT_FILE}-shm", f"{ENDPOINT_FILE}-journal", VIEWS_FILE,
            f"{VIEWS_FILE}-wal", f"{VIEWS_FILE}-shm", f"{VIEWS_FILE}-journal")  # fmt: skip


def refuse_own_files(home: Path, path: str) -> None:
    """CliError if writing ``path`` would replace one of a data dir's own files: this
    host's (``home``), or another data dir's (a folder holding a ``host.key``). The
    directory part is resolved (``..``, symlinked dirs); the last part is not, since a
    rename replaces a symlink itself, not what it points to."""
    if path == "-":
        return
    target = Path(path)
    if target.name not in _own_files():
        return
    with contextlib.suppress(OSError):
        parent = target.parent.resolve()
        if parent == home.resolve() or (parent / KEY_FILE).exists():
            raise CliError(
                f"refusing to write {path}: it is a data dir's own {target.name}; "
                "choose another file"
            )
