"""The store's high-water mark: ``<home>/store.mark``, how many writes the store has
acknowledged, kept outside the SQLite files.

Why: SQLite reads its write-ahead log up to the first frame whose checksum fails and
silently ignores the rest, so a torn or damaged ``store.db-wal`` (or an older copy of the
store put back) opens cleanly with fewer updates, and ``quick_check`` passes. The store
counts its committed transactions (``meta.generation``, bumped inside each one) and,
after each commit, writes the count here; at open a store that holds fewer than the mark
says is refused loudly (``StoreLost``) instead of serving a silent loss. The mark names
the store it belongs to (``meta.store_id``), so a mark left by another store is ignored.

The mark is written after the commit is durable (in place, no fsync), so it never runs
ahead of the store: after a power cut it may lag (a loss it cannot see),
never lead (a false alarm). A mark that cannot be read is ignored with a warning.
Only ``store.py``, ``storefile.py`` (its checks at open) and ``repair.py`` use this module.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path

MARK_FILE = "store.mark"

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Mark:
    store_id: str
    generation: int


def read_mark(home: Path) -> Mark | None:
    """The mark in ``home``, or None (none written yet, or unreadable: logged)."""
    path = Path(home) / MARK_FILE
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as e:
        log.warning("%s cannot be read (%s): the store is opened without it", path, e)
        return None
    try:
        value = json.loads(raw)
        mark = Mark(str(value["store"]), int(value["generation"]))
    except (ValueError, TypeError, KeyError):
        log.warning("%s is damaged: the store is opened without it", path)
        return None
    return mark


def write_mark(home: Path, store_id: str, generation: int) -> None:
    """Record that the store ``store_id`` has committed ``generation`` writes: one small
    write in place, shorter than a disk sector, so it lands whole or not at all (its cost
    is within the noise of a durable write: docs/threat-model.md)."""
    path = Path(home) / MARK_FILE
    data = json.dumps({"store": store_id, "generation": generation}).encode()
    data = data.ljust(_SIZE - 1) + b"\n"  # fixed size: a shorter one never leaves a tail
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
        try:
            os.pwrite(fd, data, 0)
        finally:
            os.close(fd)
    except OSError as e:  # the write itself is durable; only the detector lags
        log.warning("cannot update %s: %s", path, e)


_SIZE = 128
