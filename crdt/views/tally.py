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
from collections.abc import Iterable

from ..records import KIND_MEMORY, SignedRecord
from ..trust import TrustSet


class Tally:
    def __init__(self) -> None:
        self.by_kind: Counter[str] = Counter()
        # author -> its records' signed times (8 bytes a record: 0.8 MB for 100k)
        self._times: dict[str, array[int]] = {}
        self._unsorted: set[str] = set()  # authors whose times were appended to since a sort
        self._others: set[str] = set()  # ids of the records not in the memories table
        self.state: dict[str, str] = {}  # state key -> its kind

    def add_record(self, rec: SignedRecord, fresh: bool | None) -> bool:
        """``rec`` was told; ``fresh``: the memories table took it (True), had it
        (False), or does not hold it (None: the id decides). Returns whether it counted."""
        if fresh is False:
            return False
        if fresh is None:
            if rec.id in self._others:
                return False
            self._others.add(rec.id)
        self._count(rec.kind, rec.author, rec.ts)
        return True

    def _count(self, kind: str, author: str, ts: int) -> None:
        self.by_kind[kind] += 1
        self._times.setdefault(author, array("q")).append(ts)
        self._unsorted.add(author)

    @classmethod
    def load(cls, memories: dict[str, array[int]],
             others: Iterable[tuple[str, str, str, int]]) -> Tally:  # fmt: skip
        """The tally of views kept on disk: each author's memories' signed times (sorted),
        and (id, kind, author, ts) of each record counted outside the memories table
        (the state entries are set afresh, from the document)."""
        tally = cls()
        tally._times = memories
        tally.by_kind[KIND_MEMORY] = sum(len(ts) for ts in memories.values())
        for rid, kind, author, ts in others:
            tally._others.add(rid)
            tally._count(kind, author, ts)
        return tally

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
