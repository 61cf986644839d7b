"""Compaction: checkpoints (an author merging its own stored history into one signed
update) and snapshots (the materialised document, so that opening replays little).

A mixin of ``crdt.replica.Replica``. It owns the snapshot counters (``_snapshot_seq``,
``_snapshot_size``, ``_since_snapshot``); a checkpoint goes through the same commit as
any update (``_commit``), and a snapshot writes only the store's snapshot row. Neither
ever compacts another author's history (docs/data-model.md, "Checkpoints").
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import pycrdt
from pycrdt import Doc

from . import wire
from .errors import GossipError
from .heap import trim_heap
from .identity import Identity
from .ingest import Accepted
from .rules import Plan, Verdict, check_items
from .store import record_places
from .updates import SignedUpdate, check_structure, sign_update

if TYPE_CHECKING:
    from .replica import ReplicaLimits
    from .store import Store


class ReplicaCompaction:
    """Checkpoints and snapshots of ``Replica`` (its attributes are set by ``Replica``)."""

    identity: Identity
    author: str
    epoch: int
    client: int
    limits: ReplicaLimits
    now_ms: Callable[[], int]
    _main: Doc
    _store: Store
    _bindings: dict[int, tuple[str, int]]
    _snapshot_seq: int
    _snapshot_size: int
    _since_snapshot: int
    _holds_values: bool
    # and, from Replica: state_vector(), _commit(), _renull_document(), _or_reload(),
    # _check_writable()

    def checkpoint(self) -> SignedUpdate:
        """Merge our own stored history into one signed update and drop what it covers.

        Only an author compacts its own history. Other replicas take a checkpoint like any
        update but keep what they already hold (see docs/data-model.md, "Checkpoints")."""
        self._check_writable()
        mine = {c for c, (author, _) in self._bindings.items() if author == self.author}
        if self.client not in mine:
            raise GossipError("nothing to checkpoint: this replica has written nothing")
        history = [
            SignedUpdate.decode(u.raw).update
            for c in sorted(mine)
            for u in self._store.updates_after(c, 0)
        ]
        # Our items may continue items of our earlier epochs: give the fresh document
        # those too, then take only what our current client adds on top of them.
        fresh = Doc()
        fresh.apply_update(pycrdt.merge_updates(*history))
        sv = self.state_vector()
        others = {c: sv.get(c, 0) for c in mine if c != self.client}
        merged = fresh.get_update(wire.encode_state_vector(others))
        epochs = tuple(sorted(self._bindings[c][1] for c in others))
        su = sign_update(
            self.identity, epoch=self.epoch, update=merged, start=0, end=sv[self.client],
            ts=self.now_ms(), epochs=epochs, checkpoint=True,
        )  # fmt: skip
        try:
            scanned = check_structure(su, self.limits.structure)
            check_items(self.author, scanned)
        except GossipError as e:
            raise GossipError(f"cannot checkpoint this history: {e}") from None
        # The rows it replaces held its records' values: they are read from it now.
        places = record_places(su, scanned.record_spans)
        with self._or_reload():  # its commit may land although SQLite says it failed
            self._commit([Accepted(su, Plan(Verdict.DUPLICATE), "local", (), places)],
                         supersede=True)  # fmt: skip
        return su

    def _maybe_snapshot(self) -> None:
        threshold = max(
            self.limits.snapshot_min_bytes, int(self._snapshot_size * self.limits.snapshot_ratio)
        )
        if self._since_snapshot >= threshold:
            self.snapshot()

    def snapshot(self) -> None:
        """Store the materialised document so the next open skips replaying the log."""
        seq = self._store.last_seq()
        # Our own writes' records hold values in the document: the store holds them too.
        doc = self._renull_document() if self._holds_values else self._main.get_update()
        self._store.save_snapshot(seq, doc, self.now_ms())
        # The stored updates' bytes it covers, not its own size: with the records' values
        # nulled it is ~8x smaller than they are, and the refresh's cost (encoding the
        # document, built again if it holds values) grows with the document, so the
        # log-many refreshes of a burst stay so.
        covered = self._store.bytes_since(0)[1]
        self._snapshot_seq, self._snapshot_size, self._since_snapshot = seq, covered, 0
        del doc
        trim_heap()  # the document's update: its size again, held by the C heap
