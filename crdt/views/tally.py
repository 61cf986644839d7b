"""What the document holds, counted as it changes: records by kind and, per author, their
signed times; state entries by key. ``gossip status`` and ``/metrics`` read these
figures (``Views.figures``) instead of decoding every record of the document on each
call, so a poll costs O(authors), never O(records).

Fed by the views' change feed (``Views._on_change``) and by their rebuild, in the
replica's thread. A record is counted once: a memory the views' table took is new by
that table's own ``INSERT OR IGNORE``; any other record (retractions, banks, trust
records, unknown kinds, a memory the table refused) by its id, kept here.
"""

from __future__ import annotations

import bisect
from array import array
from collections import Counter

from ..records import SignedRecord
from ..trust import TrustSet


class Tally:
    def __init__(self) -> None:
        self.by_kind: Counter[str] = Counter()
        # author -> its records' signed times (8 bytes a record: 0.8 MB for 100k)
        self._times: dict[str, array[int]] = {}
        self._unsorted: set[str] = set()  # authors whose times were appended to since a sort
        self._others: set[str] = set()  # ids of the records not in the memories table
        self.state: dict[str, str] = {}  # state key -> its kind

    def add_record(self, rec: SignedRecord, fresh: bool | None) -> None:
        """``rec`` was told; ``fresh``: the memories table took it (True), had it
        (False), or does not hold it (None: the id decides)."""
        if fresh is False:
            return
        if fresh is None:
            if rec.id in self._others:
                return
            self._others.add(rec.id)
        self.by_kind[rec.kind] += 1
        self._times.setdefault(rec.author, array("q")).append(rec.ts)
        self._unsorted.add(rec.author)

    def set_state(self, key: str, rec: SignedRecord | None) -> None:
        if rec is None:
            self.state.pop(key, None)
        else:
            self.state[key] = key.split(":", 1)[0]

    def records(self) -> int:
        return sum(self.by_kind.values())

    def by_author(self) -> dict[str, int]:
        return {a: len(ts) for a, ts in self._times.items()}

    def counted(self, trust: TrustSet) -> int:
        """Records a reader counts under ``trust`` (``TrustSet.counts``): every record of a
        trusted key, and a revoked key's records signed up to its cutoff."""
        n = sum(len(self._times.get(a, ())) for a in trust.keys)
        for author, cutoff in trust.cutoffs.items():
            times = self._times.get(author)
            if times is None or author in trust.keys:
                continue
            if author in self._unsorted:
                # (nearly sorted already: an author writes in time order)
                times = self._times[author] = array("q", sorted(times))
                self._unsorted.discard(author)
            n += bisect.bisect_right(times, cutoff)
        return n
