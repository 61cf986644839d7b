"""The trace of one simulated run: every decision, folded into one SHA-256.

Same seed, same trace hash: that is the determinism the simulator promises, and the
tests hold it to it (also across processes, whatever ``PYTHONHASHSEED`` is). Lines are
made of ints and strings only — never of anything whose text depends on the process
(object ids, set order, wall time). The last ``keep`` lines are kept for a failure
report; ``verbose`` keeps them all.
"""

from __future__ import annotations

import hashlib
from collections import deque


class Trace:
    def __init__(self, *, keep: int = 200, verbose: bool = False) -> None:
        self._hash = hashlib.sha256()
        self.lines: deque[str] = deque(maxlen=None if verbose else keep)
        self.count = 0

    def add(self, at: int, what: str, *fields: object) -> None:
        line = " ".join([str(at), what, *map(str, fields)])
        self._hash.update(line.encode() + b"\n")
        self.lines.append(line)
        self.count += 1

    @property
    def digest(self) -> str:
        return self._hash.hexdigest()
