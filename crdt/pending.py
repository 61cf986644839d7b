"""The pending buffer: signed updates that passed every check but build on one we do not
hold yet, kept outside the document until it arrives (invariant 4).

Owns only the buffer and its bounds (count and bytes, overall and per author). It never
touches the document or the store: the ingest pipeline (``crdt.ingest``) hands
it what must wait and takes back what may be planned again.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from . import wire
from .errors import RejectedUpdate
from .records import SignedRecord
from .store import RecordPlaces
from .updates import SignedUpdate

if TYPE_CHECKING:
    from .replica import ReplicaLimits

PendingKey = tuple[int, int, str]  # (client, start clock, digest)


@dataclass(eq=False)
class Candidate:
    """One checked update on its way through the gate (``crdt.ingest``)."""

    index: int  # position in the batch of the ingest_batch call that brought it
    su: SignedUpdate
    scanned: wire.ScannedUpdate
    source: str
    ids: tuple[str, ...] = ()  # the ids of the records it carries (their first_seen)
    places: RecordPlaces = ()  # where its records' values are in its raw bytes

    @property
    def doc_update(self) -> bytes:
        """What the main document takes: the update, its records' values nulled."""
        return wire.nulled(self.su.update, self.scanned.record_spans)
    # The records the gate parsed (check_items), kept for the listeners only: with none,
    # a chunk's records would stay alive to its commit for nothing (docs/benchmarks.md).
    records: tuple[SignedRecord, ...] = ()
    missing: tuple[int, int] | None = None  # what it waited for when last planned


def pending_key(su: SignedUpdate) -> PendingKey:
    return (su.client, su.header.start, su.header.digest)


class PendingBuffer:
    """Updates waiting for another, oldest first, bounded in count and bytes, overall and
    per author: one author flooding the buffer only ever evicts its own oldest entries,
    and anything evicted is fetched again by a later pull."""

    def __init__(self, limits: Callable[[], ReplicaLimits]) -> None:
        self._limits = limits  # read at each call: a replica's limits may be replaced
        self._held: OrderedDict[PendingKey, Candidate] = OrderedDict()
        self._waiting_on: dict[int, set[PendingKey]] = {}  # client -> pending keys
        self._bytes = 0

    def __len__(self) -> int:
        return len(self._held)

    def hold(self, c: Candidate) -> RejectedUpdate | None:
        """Keep ``c`` until what it waits for arrives; None once held (or already held),
        the error if it is too large to hold at all."""
        su = c.su
        key = pending_key(su)
        if key in self._held:
            return None
        limits = self._limits()
        max_bytes = limits.max_pending_bytes
        if len(su.raw) > max_bytes:
            return RejectedUpdate("oversize", "too large to buffer")
        mine = [k for k, p in self._held.items() if p.su.author == su.author]
        while len(mine) >= limits.max_pending_per_author:
            self._drop(mine.pop(0))
        while self._held and (
            len(self._held) >= limits.max_pending_updates or self._bytes + len(su.raw) > max_bytes
        ):
            self._drop(next(iter(self._held)))
        self._held[key] = c
        self._bytes += len(su.raw)
        waits_for = c.missing[0] if c.missing else su.client
        self._waiting_on.setdefault(waits_for, set()).add(key)
        return None

    def take(self, advanced: set[int]) -> list[Candidate]:
        """Remove and return, oldest first, the held updates waiting on ``advanced``."""
        keys = set().union(*(self._waiting_on.get(c, ()) for c in advanced))
        taken = [c for k, c in self._held.items() if k in keys]
        for k in keys:
            self._drop(k)
        return taken

    def _drop(self, key: PendingKey) -> None:
        c = self._held.pop(key, None)
        if c is None:
            return
        self._bytes -= len(c.su.raw)
        waits_for = c.missing[0] if c.missing else c.su.client
        keys = self._waiting_on.get(waits_for)
        if keys is not None:
            keys.discard(key)
            if not keys:
                del self._waiting_on[waits_for]
