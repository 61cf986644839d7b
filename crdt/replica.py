"""Replica: the pycrdt document, its ingest gate and its durable store — the only writer.

This module is the façade: opening (store, key, epoch, a crashed rotation finished), the
document (built from the store, and again after a rejection that touched it), and local
writes (``put``). Each other concern lives in its own module, mixed in: ``crdt.ingest``
(the gate's driver, the commit, the listeners), ``crdt.pending`` (the out-of-order
buffer), ``crdt.reading`` (records, state, provenance), ``crdt.keyring`` (trust and key
rotation), ``crdt.checkpoints`` (checkpoints and snapshots). Nothing here reads the
views or judges trust.

Every change, local or remote, takes the same path (invariants 1–7):

1. from the bytes alone — ``check_structure`` (client binding, digest, struct and
   delete-set shape, pycrdt's second opinion) and ``check_items`` (every value is a
   record of the update's author at the right key); then the header signature of every
   update of the batch (it covers the records' bytes: docs/threat-model.md, "Record
   signatures"), verified in bulk (``signatures``: worker processes for a large batch,
   overlapping the next batch's checks);
2. ``rules.plan`` — order and item-root rules against what we hold; an update that builds
   on something missing waits in a bounded buffer outside the document;
3. apply to the document, each record's value nulled (``wire.nulled``: the store reads it
   from the stored update; ~48 MB at 100k memories instead of ~140); its state vector
   must then advance exactly as the plans say (a second opinion from yrs on what the
   gate read);
4. commit to the store (durable), and only then tell the listeners (``_commit``).

Junk never reaches step 3. Should yrs disagree with the gate at step 3, or the store
fail to commit at step 4, the document is read back from the store (``_reload_document``:
its snapshot and the updates stored since), so a rejected update leaves document, store
and views byte-for-byte unchanged. There is no second document to validate on (a twin,
as pycrdt's typed documents have): step 2 already decides, from the item index, that an
update integrates whole, so step 3 disagreeing is a bug or an attack, rare enough to pay
a reload, and not worth a second copy of every struct (~40 MB at 100k memories). Local
writes are transactions on the document, captured as one Yjs update, signed, and run
through the same checks; their values stay in the document until the next snapshot.
"""

from __future__ import annotations

import secrets
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pycrdt import Doc, Map

from . import wire
from .checkpoints import ReplicaCompaction
from .errors import (
    GossipError,
    IdentityError,
    RecordError,
    StoreCorrupt,
    StoreError,
)
from .heap import trim_heap
from .identity import (
    KEY_FILE,
    RETIRED_DIR,
    STAGED_KEY_FILE,
    Identity,
)
from .ingest import Accepted, BatchListener, Change, ChangeListener, ReplicaIngest
from .ingest import Outcome as Outcome  # its old home: `from crdt.replica import Outcome`
from .keyring import ReplicaKeys
from .lock import BorrowedLock, DataDirLock
from .pending import PendingBuffer
from .reading import ReplicaReads
from .records import SignedRecord
from .rules import (
    ItemIndex,
    Verdict,
    check_items,
    plan,
)
from .signatures import start_verifying
from .store import REPAIR_HINT, STORE_FILE, Store, record_places
from .updates import (
    ROOTS,
    SignedUpdate,
    StructureLimits,
    check_signature,
    check_structure,
    derive_client,
    sign_update,
)


@dataclass(frozen=True)
class ReplicaLimits:
    structure: StructureLimits = field(default_factory=StructureLimits)
    max_pending_updates: int = 4096  # out-of-order updates held outside the document
    max_pending_bytes: int = 64 * 1024 * 1024
    max_pending_per_author: int = 512
    # The snapshot is refreshed once the updates stored since the last one reach this
    # many bytes, or this share of the stored updates' bytes the last one covers,
    # whichever is more: opening replays (and re-verifies) at most that much, and a burst
    # of ingest rewrites the snapshot only a logarithmic number of times.
    snapshot_min_bytes: int = 8 * 1024 * 1024
    snapshot_ratio: float = 1.0
    batch_size: int = 2048  # updates checked and committed together by ingest_batch


class Replica(ReplicaIngest, ReplicaReads, ReplicaKeys, ReplicaCompaction):
    """Open with ``Replica.open(home, identity)``; close it (or use ``with``).

    Not thread-safe: one owner calls it (the daemon's event loop hands it to a thread).
    """

    def __init__(
        self,
        home: Path,
        identity: Identity,
        store: Store,
        lock: DataDirLock,
        limits: ReplicaLimits,
        now_ms: Callable[[], int],
        *,
        owner: str | None = None,
    ) -> None:
        self.home = home
        self.identity = identity
        self.author = owner or identity.public_id
        self.limits = limits
        self.now_ms = now_ms
        self._store = store
        self._lock = lock
        epoch = store.get_meta("epoch")
        assert epoch is not None
        self.epoch = int(epoch)
        self.client = derive_client(self.author, self.epoch)
        self._index = ItemIndex()
        self._bindings: dict[int, tuple[str, int]] = {}  # client -> (author, epoch)
        self._pending = PendingBuffer(lambda: self.limits)
        # Updates refused since this replica was opened, by rule (metrics, `gossip inspect`).
        self.rejected: Counter[str] = Counter()
        self._listeners: list[ChangeListener] = []
        self._changes: list[Change] = []  # what the main document's observer saw, to tell
        # Listener calls that raised (logged; the change is in the document regardless).
        self.listener_failures = 0
        # Changes the listeners were not told (the observer could not note one): derived
        # data kept beside the store must not claim to cover it.
        self.untold = 0
        self._trust_listeners: list[Callable[[], None]] = []
        self._batch_listeners: list[BatchListener] = []  # one call per commit
        # Read by views from any thread: replaced whole, never mutated in place.
        self._keyring: dict[str, str] = {self.author: "self", **store.keyring()}
        self._removed: frozenset[str] = frozenset(store.removed())
        self._subscriptions: list[Any] = []  # the observers on the main document's maps
        # Set by a failed reload of the document from the store: nothing more is written.
        self._broken: str | None = None
        self._snapshot_seq = 0
        self._snapshot_size = 0
        self._since_snapshot = 0
        self.commit_time = now_ms()
        try:
            self._load()
        except GossipError as e:
            raise StoreCorrupt(f"{store.path}: stored data is damaged: {e}; "
                               f"{REPAIR_HINT}") from None
        except Exception as e:  # pycrdt refusing bytes we stored
            raise StoreCorrupt(f"{store.path}: stored document is damaged: {e}; "
                               f"{REPAIR_HINT}") from None
        if store.get_meta("snapshot_nulled") == "0":  # a snapshot taken with the values
            self._holds_values = True
            self.snapshot()
        trim_heap()  # the snapshot's bytes and the tail's decoding: ~90 MB held at 100k

    # -- lifecycle -------------------------------------------------------------------

    @classmethod
    def open(
        cls,
        home: Path | str,
        identity: Identity | None = None,
        *,
        limits: ReplicaLimits | None = None,
        now_ms: Callable[[], int] | None = None,
        create: bool = True,
        lock_wait: float = 0.0,
        lock: DataDirLock | BorrowedLock | None = None,
    ) -> Replica:
        """Open (or create) the replica in ``home``; holds the data-dir lock until closed
        (``lock``: one the caller holds and releases itself, as `gossip repair` does:
        a ``BorrowedLock``, whose release is a no-op). A store is
        created with a new key, or where none was (``Store.refuse_lost``)."""
        home = Path(home).expanduser()
        if create:
            home.mkdir(parents=True, exist_ok=True, mode=0o700)
        elif not home.is_dir() or not any((home / f).exists() for f in (KEY_FILE, STORE_FILE)):
            # Checked before the lock, whose file would otherwise be left in a directory
            # that is not a data dir (`--home ''` is the current directory).
            raise StoreError(f"no data dir at {home}; run `gossip init` first")
        if lock is None:
            lock = DataDirLock(home)
            lock.acquire(wait=lock_wait)
        try:
            for leftover in home.glob("*.tmp-*"):  # from a crash while creating key or store
                leftover.unlink(missing_ok=True)
            has_store = (home / STORE_FILE).exists()
            if not has_store and (home / KEY_FILE).exists():
                Store.refuse_lost(home)  # a store moved away is never silently rebuilt
            if identity is None:
                if (home / KEY_FILE).exists() or not create:
                    identity = Identity.load(home)
                elif has_store:
                    Store.open(home).close()  # a damaged store is the first thing to report
                    raise IdentityError(
                        f"{home / STORE_FILE} exists but {home / KEY_FILE} does not: restore the "
                        "key, or move store.db and store.mark away and run `gossip init` to "
                        "start as a new host"
                    )
                else:
                    identity = Identity.create(home)
            if not has_store:
                if not create:
                    how = ("run `gossip repair` to start an empty one for this host key "
                           "(peers send the rest)") if (home / KEY_FILE).exists() else (
                           "run `gossip init` first")  # fmt: skip
                    raise StoreError(f"no store at {home / STORE_FILE}; {how}")
                # A new store gets a fresh random epoch, so this key's client never reuses
                # clocks it may have used in a store that was lost (invariant 10).
                epoch = str(secrets.randbits(52))
                Store.create(home, {"author": identity.public_id, "epoch": epoch})
            store = Store.open(home)
            try:
                author = store.get_meta("author")
                finish = (
                    author is not None and author != identity.public_id
                    and (home / RETIRED_DIR / f"{author}.key").exists()
                )  # fmt: skip
                if finish:  # a rotation that crashed after installing the new key
                    replica = cls(home, identity, store, lock, limits or ReplicaLimits(),
                                  now_ms or _ms, owner=author)  # fmt: skip
                    replica._adopt(identity, str(author))
                    return replica
                if author != identity.public_id:
                    raise StoreError(
                        f"{store.path} belongs to {str(author)[:12]}…, not to this host key "
                        f"{identity.public_id[:12]}…: put that host's key back, or "
                        "`gossip repair` to keep what verifies under this key"
                    )
                replica = cls(home, identity, store, lock, limits or ReplicaLimits(),
                              now_ms or _ms)  # fmt: skip
                if (home / STAGED_KEY_FILE).exists():
                    replica._finish_staged_rotation()
                return replica
            except BaseException:
                store.close()
                raise
        except BaseException:
            lock.release()
            raise

    def close(self) -> None:
        self._store.close()
        self._lock.release()

    def __enter__(self) -> Replica:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _load(self, *, verify: bool = True) -> None:
        """Document, snapshot counters, client bindings and item index, as the store holds
        them (``_load_document``; at open, and to read them back: ``_reload_document``)."""
        doc, counters = self._load_document(verify=verify)
        self._load_bindings()
        self._use(doc)
        self._snapshot_seq, self._snapshot_size, self._since_snapshot = counters

    def _load_bindings(self) -> None:
        """The client bindings and the item index, as the store's updates make them."""
        bindings = {client: (author, epoch) for client, author, epoch in self._store.clients()}
        index = ItemIndex()
        for client, start, end, root in self._store.item_runs():
            index.add(client, start, end, root)
        self._bindings, self._index = bindings, index

    def _load_document(self, *, verify: bool) -> tuple[Doc, tuple[int, int, int]]:
        """The main document as the store holds it: the snapshot, then the updates stored
        after it with the records' values nulled; and the snapshot's counters (its seq,
        the stored bytes it covers, the bytes stored since). ``verify``: each of those
        updates is checked as a peer's would be (digest, binding, signature), since SQLite
        cannot see damage inside a blob (at open; a reload reads what this process has
        checked itself)."""
        doc = self._rebuilt()
        snap = self._store.load_snapshot()
        seq, covered, since = 0, 0, 0
        if snap is not None:
            seq, update = snap
            # The stored updates' bytes it covers (``snapshot``).
            covered = self._store.bytes_since(0)[1] - self._store.bytes_since(seq)[1]
            doc.apply_update(update)
            del update
        tail = []
        for u in self._store.iter_updates(after_seq=seq):
            su = SignedUpdate.decode(u.raw)
            if verify:
                check_signature(su, verify_signature=False)
                if (su.client, su.header.start, su.header.end) != (u.client, u.start, u.end):
                    raise StoreCorrupt("an update's header does not match its row")
            tail.append(su)
            since += len(u.raw)
        if verify:
            oks = start_verifying([(su.author, su.sig, su.header_bytes) for su in tail])()
            if not all(oks):
                raise StoreCorrupt("a stored update's signature does not verify")
        for su in tail:
            doc.apply_update(wire.without_values(su.update, "records"))
        return doc, (seq, covered, since)

    def _use(self, doc: Doc) -> None:
        """Make ``doc`` the main document (its observers follow it): built from the store,
        or from the document's own bytes with its records' values nulled."""
        self._main = doc
        self._main_maps = {r: doc.get(r, type=Map) for r in ROOTS}
        self._holds_values = False
        self._changes = []
        if self._subscriptions:
            self._subscribe()

    def _reload_document(self) -> None:
        """The main document may hold what the store does not (an update yrs read
        otherwise than the gate did, a commit that failed, anything raised between a
        round and its commit): build it again from the store, with the bindings and the
        item index (a commit SQLite reported failed may have landed all the same), so a
        rejected update leaves no trace (invariant 6). Should that fail too, the replica
        takes no more writes: its document and its store may no longer agree."""
        try:
            self._load(verify=False)
        except BaseException as e:
            self._broken = f"the document could not be read back from the store: {e}"
            raise
        trim_heap()  # the document dropped

    def _renull_document(self) -> bytes:
        """The main document again, from its own bytes with every record's value nulled
        (returned: a snapshot stores them): our own writes put values there (they are
        read from the store too), and a new client id (a rotated key) needs a new
        document for its local transactions."""
        update = wire.without_values(self._main.get_update(), "records")
        self._use(self._rebuilt(update))
        return update

    def _rebuilt(self, update: bytes | None = None) -> Doc:
        """A document of our client id with the two roots, built from ``update``."""
        doc = Doc(client_id=self.client)
        for r in ROOTS:
            doc.get(r, type=Map)
        if update is not None:
            doc.apply_update(update)
        return doc

    def _check_writable(self) -> None:
        if self._broken is not None:
            raise StoreError(f"{self._store.path}: {self._broken}; reopen the replica "
                             "(restart the daemon)")

    @contextmanager
    def _or_reload(self) -> Iterator[None]:
        """Whatever raises in here (a round, a commit, an interrupt between them) may have
        left the document ahead of the store: it is read back before the error goes on."""
        try:
            yield
        except BaseException:
            self._reload_document()
            raise

    @property
    def pending_count(self) -> int:
        return len(self._pending)

    def integrity_check(self) -> list[str]:
        return self._store.integrity_check()

    # -- writing ---------------------------------------------------------------------

    def put(self, *records: SignedRecord) -> SignedUpdate | None:
        """Write our own records in one transaction; returns once durable (None: nothing new)."""
        for rec in records:
            rec.verify()
            if rec.author != self.author:
                raise RecordError("put() writes this host's own records; ingest others' updates")
        # An immutable record given twice (the same body: the same id) is written once;
        # setting its key twice in one transaction would delete our own first item.
        fresh = list({r.id if r.doc_key()[0] == "records" else id(r): r for r in records
                      if not self._already_holds(r)}.values())  # fmt: skip
        if not fresh:
            return None
        self._check_writable()
        sv_before = self.state_vector()
        captured: list[bytes] = []
        doc = self._main
        subscription = doc.observe(lambda event: captured.append(event.update))
        with self._or_reload():  # the transaction is in the document before the store
            try:
                with doc.transaction():
                    for rec in fresh:
                        root, key = rec.doc_key()
                        self._main_maps[root][key] = rec.to_value()
            finally:
                doc.unobserve(subscription)
            self._holds_values = True  # until the next snapshot nulls them (``snapshot``)
            (update,) = captured
            start = sv_before.get(self.client, 0)
            end = self.state_vector()[self.client]
            deleted = wire.scan(update).delete_set
            # Our transaction may overwrite values of our earlier epochs (a store recreated
            # for this key): name those epochs, so peers accept the delete set.
            epochs = tuple(
                {self._bindings[c][1] for c in deleted if c in self._bindings} - {self.epoch}
            )
            su = sign_update(
                self.identity, epoch=self.epoch, update=update, start=start, end=end,
                ts=self.now_ms(), epochs=epochs,
            )  # fmt: skip
            # Our own writes pass the same gate as anyone's (minus re-verifying our own
            # signatures): a bug here must not put into the store what peers refuse.
            scanned = check_structure(su, self.limits.structure, signature=False)
            check_items(self.author, scanned)
            p = plan(su, scanned, sv_before, self._index, self._bindings)
            if p.verdict is not Verdict.APPLY:
                raise GossipError(f"internal error: our own write planned as {p.verdict}")
            ids = tuple([r.id for r in fresh])
            places = record_places(su, scanned.record_spans)
            self._commit([Accepted(su, p, "local", ids, places)], fresh)
        return su

    def _already_holds(self, rec: SignedRecord) -> bool:
        root, key = rec.doc_key()
        return root == "records" and key in self._main_maps[root]


def _ms() -> int:
    return time.time_ns() // 1_000_000
