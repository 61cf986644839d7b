"""Creating a file durably and atomically: a crash leaves either no file or a whole one.

Used for the two files a data dir cannot do without (the host key and the store), so a
crash while creating one never leaves a half-made file that would later be refused.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path


def create_whole(path: Path, fill: Callable[[Path], None]) -> None:
    """Make ``path`` (mode 0600) by ``fill``-ing a temporary sibling, syncing it, and
    linking it into place. FileExistsError if ``path`` exists: nothing is overwritten."""
    tmp = path.with_name(f"{path.name}.tmp-{os.getpid()}")
    tmp.unlink(missing_ok=True)
    os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    try:
        os.chmod(tmp, 0o600)  # the umask must not widen it
        fill(tmp)
        fd = os.open(tmp, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        os.link(tmp, path)  # atomic, and fails rather than replace an existing file
    finally:
        tmp.unlink(missing_ok=True)
    fsync_dir(path.parent)


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
