"""Reading a replica: its records and state as the document holds them, the stored
signed updates a peer lacks, and where each record came from (provenance, receipts).

Owns no state: a mixin of ``crdt.replica.Replica`` that reads the main document
(``_main_maps``, ``_main``), the client bindings and the store. It never writes to the
document or the store, and never judges trust (that is ``crdt.views``').
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from . import wire
from .errors import GossipError, RecordError, StoreCorrupt
from .records import SignedRecord
from .storefile import REPAIR_HINT
from .updates import SignedUpdate

if TYPE_CHECKING:
    from pycrdt import Doc, Map

    from .pending import PendingBuffer
    from .store import Store


class ReplicaReads:
    """The read-only half of ``Replica`` (its attributes are set by ``Replica``)."""

    _main: Doc
    _main_maps: dict[str, Map]
    _bindings: dict[int, tuple[str, int]]
    _store: Store
    _pending: PendingBuffer

    def state_vector(self) -> dict[int, int]:
        return wire.decode_state_vector(self._main.get_state())

    def records(self) -> dict[str, SignedRecord]:
        """Every immutable record, by content id (no trust filter: that is the views')."""
        return {key: rec for chunk in self.record_chunks() for key, rec in chunk}

    def record_ids(self) -> list[str]:
        """The keys of every immutable record, none parsed (a value that does not parse is
        not a record: ``get`` says None for it)."""
        return list(self._main_maps["records"].keys())

    def iter_records(self) -> Iterator[tuple[str, SignedRecord]]:
        """Every immutable record with its content id (``record_chunks``, one by one)."""
        for chunk in self.record_chunks():
            yield from chunk

    def record_chunks(self, size: int = 4096, keys: list[str] | None = None,
                      ) -> Iterator[list[tuple[str, SignedRecord]]]:  # fmt: skip
        """Every immutable record with its content id (those of ``keys`` only, if
        given), ``size`` at a time, each chunk read in one document transaction (a
        whole-store scan: the views' rebuild).

        Not ``records()``: that holds every record parsed at once (for 100k records, over
        200 MB that the heap then keeps, fragmented). Records that arrive meanwhile may or
        may not be included; none is seen twice."""
        values = self._main_maps["records"]
        keys = list(values.keys()) if keys is None else keys
        for k in range(0, len(keys), size):
            raw = []
            with self._main.transaction():
                for key in keys[k : k + size]:
                    with contextlib.suppress(KeyError):  # (``get`` would look it up twice)
                        raw.append((key, values[key]))
            yield self._records_from(raw)

    def _records_from(self, raw: list[tuple[str, Any]]) -> list[tuple[str, SignedRecord]]:
        """The records of (key, document value) pairs: a null is a record's value the
        store reads from the update that carried it (``Store.record_values``); a value
        that does not parse is no record."""
        nulled = [key for key, value in raw if value is None]
        stored = self._stored_records(nulled) if nulled else {}
        out = []
        for key, value in raw:
            rec = stored.get(key) if value is None else _parsed(value)
            if rec is not None:
                out.append((key, rec))
        return out

    def _stored_records(self, keys: list[str]) -> dict[str, SignedRecord]:
        """The store's copy of the records of ``keys`` (what the main document nulls)."""
        out = {}
        for key, raw in self._store.record_values(keys).items():
            try:
                rec = SignedRecord.from_value(wire.decode_value(raw))
            except GossipError:
                continue  # a value an older gate took that no longer parses: no record
            if rec.id != key:
                raise StoreCorrupt(f"{self._store.path}: the stored value of record "
                                   f"{key[:12]}… is damaged ({REPAIR_HINT})")  # fmt: skip
            out[key] = rec
        return out

    def position(self) -> tuple[str, int, str | None]:
        """(store id, seq of the last stored update, ``Store.update_mark`` of it): how
        far derived data kept beside the store (the views) covers it."""
        seq = self._store.last_seq()
        return self._store.get_meta("store_id") or "", seq, self._store.update_mark(seq)

    def covers(self, store_id: str, seq: int, mark: str | None) -> bool:
        """Does this store hold, as what ``position`` once said, the update at ``seq``
        (so everything stored since is in the updates after it)?"""
        return (store_id == self._store.get_meta("store_id") and seq <= self._store.last_seq()
                and mark == self._store.update_mark(seq))  # fmt: skip

    def record_keys_after(self, seq: int) -> list[str]:
        """The keys of the immutable records the updates stored after ``seq`` carry, in
        store order, each once (whether or not the document held them before)."""
        keys: dict[str, None] = {}
        for u in self._store.iter_updates(after_seq=seq):
            for st in wire.scan(SignedUpdate.decode(u.raw).update).structs:
                if st.parent_root == "records" and st.parent_sub is not None:
                    keys[st.parent_sub] = None
        return list(keys)

    def state(self) -> dict[str, SignedRecord]:
        """Every author's latest state records, by ``kind:author:name``; a value that does
        not belong at its key (see ``rules.check_items``) is skipped."""
        return {k: r for k, r in self._read_root("state").items() if _belongs(r, k)}

    def get(self, key: str) -> SignedRecord | None:
        root = "state" if ":" in key else "records"
        value = self._main_maps[root].get(key)
        if value is None and root == "records" and key in self._main_maps[root]:
            return self._stored_records([key]).get(key)
        rec = _parsed(value)
        if rec is None:
            return None
        return rec if root == "records" or _belongs(rec, key) else None

    def _read_root(self, root: str) -> dict[str, SignedRecord]:
        out = {k: _parsed(v) for k, v in self._main_maps[root].items()}
        return {k: rec for k, rec in out.items() if rec is not None}

    def document_update(self) -> bytes:
        """The whole document as one Yjs update, every record's value in it (an export
        for Yjs, comparisons): the main document's, its nulls filled from the store."""

        return wire.with_record_values(self._main.get_update(), self._store.record_values)

    def updates_for(self, peer_sv: dict[int, int]) -> list[bytes]:
        """Stored signed updates (verbatim) holding anything past ``peer_sv``, in order."""
        return list(self.iter_updates_for(peer_sv))

    def iter_updates_for(self, peer_sv: dict[int, int]) -> Iterator[bytes]:
        """``updates_for``, read from the store only as far as the caller takes it (an
        exchange takes what fits one message). Take what you need with no write here in
        between (an exchange does, within one job of the replica's thread): a checkpoint
        of ours written meanwhile would drop rows it has listed but not yet read."""
        for client in sorted(self._bindings):
            yield from self._store.raw_after(client, peer_sv.get(client, 0))

    def provenance(self, client: int, clock: int) -> dict[str, Any] | None:
        """Who wrote clock ``clock`` of ``client``, which peer delivered it, and when."""
        u = self._store.find_update(client, clock)
        if u is None:
            return None
        return {"author": u.author, "source": u.source, "received_at": u.received_at}

    def origin(self, record_id: str) -> dict[str, Any] | None:
        """Provenance of immutable record ``record_id``: the earliest stored update of its
        author that carries its key (a Yjs map key is stored as plain UTF-8), with the
        peer that delivered it and when, and the Yjs item that holds it (``client``,
        ``clock``: one record is one item, so a replica whose state vector is above
        ``clock`` for ``client`` holds it). None if the record is not here."""
        rec = self.get(record_id) if ":" not in record_id else None
        if rec is None:
            return None
        author = rec.author
        needle = record_id.encode()
        for client, who, _epoch in self._store.clients():
            if who != author:
                continue
            for u in self._store.updates_after(client, 0):
                if needle not in u.raw:
                    continue  # (the id may also be in another record, a retraction's)
                clock = _item_clock(SignedUpdate.decode(u.raw).update, record_id)
                if clock is not None:
                    return {"author": u.author, "source": u.source,
                            "received_at": u.received_at, "client": u.client,
                            "clock": clock, "checkpoint": u.checkpoint}  # fmt: skip
        return None

    def receipts(self, records: list[str] | None = None) -> dict[str, int]:
        """When this host first stored each record (of ``records`` only, if given):
        record id -> the ``received_at`` of the first stored update that carried it (the
        store's ``first_seen``: local, never replicated, kept through checkpoints)."""
        return self._store.first_seen(records)

    def authors(self) -> set[str]:
        """Every author with an update in the store (this host's own included)."""
        return {author for author, _ in self._bindings.values()}

    def store_stats(self) -> dict[str, int]:
        """Sizes of the durable store, for `gossip inspect` and the metrics."""
        return {"updates": self._store.update_count(), "pending": len(self._pending),
                "clients": len(self._bindings)}  # fmt: skip


def _item_clock(update: bytes, record_id: str) -> int | None:
    """The clock of the item of ``update`` that sets ``records[record_id]``, if any."""
    for st in wire.scan(update).structs:
        if st.parent_root == "records" and st.parent_sub == record_id:
            return st.clock
    return None


def _parsed(value: object) -> SignedRecord | None:
    """The record a document value holds, None if none or if it does not parse (the gate
    refuses such values now; a store written before it refused them may hold some)."""
    if value is None:
        return None
    try:
        return SignedRecord.from_value(value)
    except RecordError:
        return None


def _belongs(rec: SignedRecord, key: str) -> bool:
    """Does this state value sit at the key its own kind and name give?"""
    try:
        return rec.doc_key() == ("state", key)
    except GossipError:
        return False
