"""One writer per data directory: an OS lock (flock) on ``<home>/lock``.

The lock dies with its process, so a SIGKILLed daemon never leaves a stale lock behind.
The file holds the owner's pid only so that the error can name it.
"""

from __future__ import annotations

import fcntl
import os
import time
from pathlib import Path

from .errors import StoreLocked

LOCK_FILE = "lock"


class DataDirLock:
    def __init__(self, home: Path) -> None:
        self.path = Path(home) / LOCK_FILE
        self._fd: int | None = None

    def acquire(self, *, wait: float = 0.0) -> None:
        """Take the lock, retrying for up to ``wait`` seconds; StoreLocked names the holder."""
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        deadline = time.monotonic() + wait
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    holder = _read_pid(fd)
                    os.close(fd)
                    who = f"pid {holder}" if holder else "another process"
                    raise StoreLocked(
                        f"data dir {self.path.parent} is in use by {who} "
                        "(one writer per data dir: stop it, or talk to it through its API)"
                    ) from None
                time.sleep(0.05)
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None

    @property
    def held(self) -> bool:
        return self._fd is not None


def _read_pid(fd: int) -> int | None:
    try:
        return int(os.pread(fd, 32, 0).decode().strip() or 0) or None
    except (OSError, ValueError):
        return None


class BorrowedLock:
    """A held ``DataDirLock`` lent to someone who must not release it (a Replica opened
    by `gossip repair`, which keeps the lock from start to end): ``release`` does nothing."""

    def __init__(self, lock: DataDirLock) -> None:
        if not lock.held:
            raise RuntimeError("only a held lock can be lent")
        self._lock = lock

    def acquire(self, *, wait: float = 0.0) -> None:
        raise RuntimeError("a borrowed lock is already held")

    def release(self) -> None:
        pass

    @property
    def held(self) -> bool:
        return self._lock.held
