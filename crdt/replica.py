"""Replica: the pycrdt document, its ingest gate and its durable store — the only writer.

Every change, local or remote, takes the same path (invariants 1–7):

1. from the bytes alone — ``check_structure`` (client binding, digest, struct and
   delete-set shape, pycrdt's second opinion) and ``check_items`` (every value is a
   record of the update's author at the right key); then every signature of the batch,
   header and records, verified in bulk (``signatures``: worker processes for a large
   batch, overlapping the next batch's checks);
2. ``rules.plan`` — order and item-root rules against what we hold; an update that builds
   on something missing waits in a bounded buffer outside the document;
3. apply to the **twin** document, whose state vector must then advance exactly as the
   plans say (a second opinion from yrs on what the gate read);
4. commit to the store (durable), then apply the same bytes to the main document, and
   only then tell the listeners (``_commit`` says why nothing there can fail midway).

Junk never reaches step 3, so it never costs a twin rebuild. A rejection at step 3 or 4
rebuilds the twin from the main document, so a rejected update leaves document, store
and views byte-for-byte unchanged. Local writes are transactions on the twin, captured
as one Yjs update, signed, and run through the same checks.
"""

from __future__ import annotations

import gc
import logging
import secrets
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
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
    RejectedUpdate,
    StoreCorrupt,
    StoreError,
    UpdateError,
)
from .identity import (
    KEY_FILE,
    RETIRED_DIR,
    STAGED_KEY_FILE,
    Identity,
    b64url,
)
from .keyring import ReplicaKeys
from .lock import BorrowedLock, DataDirLock
from .pending import Candidate, PendingBuffer
from .reading import ReplicaReads, _belongs, _parsed
from .records import SignedRecord
from .rules import (
    ItemIndex,
    Plan,
    Verdict,
    check_items,
    plan,
)
from .signatures import start_verifying
from .store import REPAIR_HINT, STORE_FILE, NewUpdate, Store
from .updates import (
    ROOTS,
    SignedUpdate,
    StructureLimits,
    check_signature,
    check_structure,
    derive_client,
    sign_update,
)

ChangeListener = Callable[[str, str, "SignedRecord | None"], None]
Change = tuple[str, str, "dict[str, Any] | None"]  # (root, key, document value or None)

log = logging.getLogger(__name__)

@dataclass(frozen=True)
class ReplicaLimits:
    structure: StructureLimits = field(default_factory=StructureLimits)
    max_pending_updates: int = 4096  # out-of-order updates held outside the document
    max_pending_bytes: int = 64 * 1024 * 1024
    max_pending_per_author: int = 512
    # The snapshot is refreshed once the updates stored since the last one reach this
    # many bytes, or this share of the last snapshot's size, whichever is more: opening
    # replays (and re-verifies) at most that much, and a burst of ingest rewrites the
    # snapshot only a logarithmic number of times.
    snapshot_min_bytes: int = 8 * 1024 * 1024
    snapshot_ratio: float = 1.0
    batch_size: int = 2048  # updates checked and committed together by ingest_batch


@dataclass(frozen=True)
class Outcome:
    """What happened to one update offered to ``ingest_batch``."""

    status: str  # applied | duplicate | buffered | rejected
    error: GossipError | None = None
    update: SignedUpdate | None = None


class Replica(ReplicaReads, ReplicaKeys, ReplicaCompaction):
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
        self._trust_listeners: list[Callable[[], None]] = []
        self._commit_listeners: list[Callable[[], None]] = []
        # Read by views from any thread: replaced whole, never mutated in place.
        self._keyring: dict[str, str] = {self.author: "self", **store.keyring()}
        self._removed: frozenset[str] = frozenset(store.removed())
        self._main = Doc(client_id=self.client)
        self._main_maps = {r: self._main.get(r, type=Map) for r in ROOTS}
        self._snapshot_seq = 0
        self._snapshot_size = 0
        self._since_snapshot = 0
        try:
            self._load()
        except GossipError as e:
            raise StoreCorrupt(f"{store.path}: stored data is damaged: {e}; "
                               f"{REPAIR_HINT}") from None
        except Exception as e:  # pycrdt refusing bytes we stored
            raise StoreCorrupt(f"{store.path}: stored document is damaged: {e}; "
                               f"{REPAIR_HINT}") from None
        self._build_twin()

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

    def _load(self) -> None:
        snap = self._store.load_snapshot()
        if snap is not None:
            self._snapshot_seq, doc = snap
            self._snapshot_size = len(doc)
            self._main.apply_update(doc)
        # Updates newer than the snapshot are replayed; SQLite cannot see damage inside a
        # blob, so each one is checked as a peer's would be (digest, binding, signature).
        tail = []
        for u in self._store.iter_updates(after_seq=self._snapshot_seq):
            su = SignedUpdate.decode(u.raw)
            check_signature(su, verify_signature=False)
            if (su.client, su.header.start, su.header.end) != (u.client, u.start, u.end):
                raise StoreCorrupt("an update's header does not match its row")
            tail.append(su)
            self._since_snapshot += len(u.raw)
        oks = start_verifying([(su.author, su.sig, su.header_bytes) for su in tail])()
        if not all(oks):
            raise StoreCorrupt("a stored update's signature does not verify")
        for su in tail:
            self._main.apply_update(su.update)
        for client, author, epoch in self._store.clients():
            self._bindings[client] = (author, epoch)
        for client, start, end, root in self._store.item_runs():
            self._index.add(client, start, end, root)

    def _build_twin(self) -> None:
        """Drop the twin; it is rebuilt from the main document when next needed (so a
        replica that is only read never pays for it)."""
        self._twin_doc: Doc | None = None

    @property
    def _twin(self) -> Doc:
        if self._twin_doc is None:
            twin = Doc(client_id=self.client)
            self._twin_maps = {r: twin.get(r, type=Map) for r in ROOTS}
            twin.apply_update(self._main.get_update())
            self._twin_doc = twin
        return self._twin_doc

    # -- listeners -----------------------------------------------------------------

    def on_change(self, listener: ChangeListener) -> None:
        """Call ``listener(root, key, record_or_None)`` for each change of the document.

        Called from inside ``put``/``ingest_batch`` once the change is durable, in the
        caller's thread; a listener must not call back into the replica."""
        if not self._listeners:
            for root, m in self._main_maps.items():
                m.observe(self._main_observer(root))
        self._listeners.append(listener)

    def on_commit(self, listener: Callable[[], None]) -> None:
        """Call ``listener()`` once after each batch of changes (a ``put``, a chunk of an
        ``ingest_batch``), after the ``on_change`` calls it made: for work worth doing
        once per batch rather than once per record."""
        self._commit_listeners.append(listener)

    def off_commit(self, listener: Callable[[], None]) -> None:
        if listener in self._commit_listeners:
            self._commit_listeners.remove(listener)

    def off_change(self, listener: ChangeListener) -> None:
        """Stop calling ``listener`` (a no-op if it was not registered)."""
        if listener in self._listeners:
            self._listeners.remove(listener)

    def _main_observer(self, root: str) -> Callable[[Any], None]:
        """Only notes what changed: it runs inside yrs' apply, where a failure would stop
        the rest of the batch from reaching the document (``_tell``, after, does the rest)."""

        def on_event(event: Any) -> None:
            for key, ch in event.keys.items():
                value = ch.get("newValue") if ch["action"] != "delete" else None
                self._changes.append((root, key, value))

        return on_event

    def _tell(self, parsed: Sequence[SignedRecord]) -> None:
        """Tell the listeners what the last commit changed, with the records the gate
        parsed (a body is parsed once). One listener failing on one change is logged and
        counted; it never keeps the other changes or listeners from being told."""
        changes, self._changes = self._changes, []
        if not changes or not self._listeners:
            return
        by_value = {(rec.body.decode("utf-8"), b64url(rec.sig)): rec for rec in parsed}
        for root, key, value in changes:
            rec = None
            if isinstance(value, dict):
                rec = by_value.get((value.get("body"), value.get("sig"))) or _parsed(value)
                if rec is None or (root == "state" and not _belongs(rec, key)):
                    continue
            for listener in list(self._listeners):
                try:
                    listener(root, key, rec)
                except Exception:
                    self.listener_failures += 1
                    log.exception("a change listener failed on %s/%s", root, key[:80])

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
        sv_before = self.state_vector()
        captured: list[bytes] = []
        twin = self._twin
        subscription = twin.observe(lambda event: captured.append(event.update))
        try:
            with twin.transaction():
                for rec in fresh:
                    root, key = rec.doc_key()
                    self._twin_maps[root][key] = rec.to_value()
        except BaseException:
            self._build_twin()
            raise
        finally:
            twin.unobserve(subscription)
        (update,) = captured
        start = sv_before.get(self.client, 0)
        end = wire.decode_state_vector(self._twin.get_state())[self.client]
        deleted = wire.scan(update).delete_set
        # Our transaction may overwrite values of our earlier epochs (a store recreated for
        # this key): name those epochs, so peers accept the delete set.
        epochs = tuple(
            {self._bindings[c][1] for c in deleted if c in self._bindings} - {self.epoch}
        )
        su = sign_update(
            self.identity, epoch=self.epoch, update=update, start=start, end=end,
            ts=self.now_ms(), epochs=epochs,
        )  # fmt: skip
        try:
            # Our own writes pass the same gate as anyone's (minus re-verifying our own
            # signatures): a bug here must not put into the document what peers refuse.
            scanned = check_structure(su, self.limits.structure, signature=False)
            check_items(self.author, scanned)
            p = plan(su, scanned, sv_before, self._index, self._bindings)
            if p.verdict is not Verdict.APPLY:
                raise GossipError(f"internal error: our own write planned as {p.verdict}")
            self._commit([(su, p, "local")], fresh)
        except BaseException:
            self._build_twin()
            raise
        return su

    def _already_holds(self, rec: SignedRecord) -> bool:
        root, key = rec.doc_key()
        return root == "records" and key in self._main_maps[root]

    def ingest(self, update: SignedUpdate | bytes, *, source: str = "") -> str:
        """Offer one signed update; returns applied/duplicate/buffered or raises the error."""
        (out,) = self.ingest_batch([update], source=source)
        if out.error is not None:
            raise out.error
        return out.status

    def ingest_batch(
        self, updates: Sequence[SignedUpdate | bytes], *, source: str = ""
    ) -> list[Outcome]:
        """Offer many signed updates; all accepted ones are durable when this returns.

        Taken in chunks of ``limits.batch_size``, so memory stays bounded however large a
        peer's delta is. For each chunk, first everything that needs no replica: decoding,
        structure, the records each item carries, and all their signatures. Only then
        does anything touch the twin. The chunks overlap: while this thread checks the
        next one, worker processes verify the signatures of this one.
        """
        size = self.limits.batch_size
        chunks = [updates[k : k + size] for k in range(0, len(updates), size)]
        out: list[Outcome] = []
        with _cyclic_gc_paused():
            prepared = self._prepare(chunks[0], source) if chunks else None
            for k in range(len(chunks)):
                assert prepared is not None
                current = prepared
                prepared = self._prepare(chunks[k + 1], source) if k + 1 < len(chunks) else None
                out.extend(self._finish(current))
        for o in out:
            if o.status == "rejected":
                err = o.error
                self.rejected[err.rule if isinstance(err, RejectedUpdate) else "malformed"] += 1
        return out

    def _prepare(self, updates: Sequence[SignedUpdate | bytes], source: str) -> _Prepared:
        """The replica-free checks of one chunk; its signatures start verifying meanwhile."""
        prep = _Prepared([None] * len(updates))
        triples: list[tuple[str, bytes, bytes]] = []
        for i, u in enumerate(updates):
            su = None
            try:
                su = u if isinstance(u, SignedUpdate) else SignedUpdate.decode(u)
                scanned = check_structure(su, self.limits.structure, signature=False)
                items = check_items(su.author, scanned)
            except GossipError as e:
                prep.outcomes[i] = Outcome("rejected", e, su)
                continue
            triples.append((su.author, su.sig, su.header_bytes))
            triples.extend((rec.author, rec.sig, rec.body) for _, _, rec in items)
            parsed = tuple(rec for _, _, rec in items)
            prep.checked.append((Candidate(i, su, scanned, source, parsed), 1 + len(items)))
            if len(triples) >= 512:
                prep.waits.append(start_verifying(triples))
                triples = []
        prep.waits.append(start_verifying(triples))
        return prep

    def _finish(self, prep: _Prepared) -> list[Outcome]:
        """Wait for a chunk's signatures, then plan, apply and commit what verified."""
        outcomes = prep.outcomes
        oks = [ok for wait in prep.waits for ok in wait()]
        ready: list[Candidate] = []
        pos = 0
        for c, n_sigs in prep.checked:
            header_ok, records_ok = oks[pos], all(oks[pos + 1 : pos + n_sigs])
            pos += n_sigs
            if header_ok and records_ok:
                ready.append(c)
                continue
            rule, what = (
                ("header-signature", "header") if not header_ok else ("record-invalid", "record")
            )
            err = RejectedUpdate(rule, f"a {what} signature does not verify", author=c.su.author)
            outcomes[c.index] = Outcome("rejected", err, c.su)
        for i, outcome in self._apply_ready(ready):
            outcomes[i] = outcome
        return [o or Outcome("rejected", UpdateError("not processed")) for o in outcomes]

    # -- the gate's driver -----------------------------------------------------------

    def _apply_ready(self, ready: list[Candidate]) -> list[tuple[int, Outcome]]:
        """Plan, twin-apply and commit; then retry the waiting updates whose dependency
        this advanced, until nothing more moves.

        Optimistic: a whole batch is applied to the twin, and the twin's state vector is
        compared with the plans' once at the end. A mismatch (yrs read an update
        differently from the gate) or a rejection that touched the twin rebuilds the twin
        and reruns the batch, one checked update at a time or without the culprit.
        Returns (caller's index, outcome), the last for an index being final (an update
        first buffered may be applied once a later one of the batch fills its gap);
        updates from earlier calls' buffer report nothing.
        """
        results: list[tuple[int, Outcome]] = []
        mine = {id(c) for c in ready}  # later outcomes of one update replace earlier ones

        def report(c: Candidate, outcome: Outcome) -> None:
            if id(c) in mine:
                results.append((c.index, outcome))

        cands = ready
        careful = False
        while cands:
            rnd = self._twin_round(cands, careful=careful)
            for c, err in rnd.rejected + rnd.failed:
                report(c, Outcome("rejected", err, c.su))
            if rnd.failed or rnd.incomplete:
                self._build_twin()
                careful = careful or rnd.incomplete
                gone = {id(c) for c, _ in rnd.rejected + rnd.failed}
                cands = [c for c in cands if id(c) not in gone]
                continue
            try:
                self._commit([(c.su, p, c.source) for c, p in rnd.batch],
                             [rec for c, _ in rnd.batch for rec in c.records])  # fmt: skip
            except BaseException:
                self._build_twin()
                raise
            for c, _ in rnd.batch:
                report(c, Outcome("applied", None, c.su))
            for c in rnd.duplicates:
                report(c, Outcome("duplicate", None, c.su))
            for c in rnd.waiting:
                err = self._pending.hold(c)
                report(c, Outcome("buffered" if err is None else "rejected", err, c.su))
            cands = self._pending.take({c.su.client for c, _ in rnd.batch})
        return results

    def _twin_round(self, cands: list[Candidate], *, careful: bool) -> _Round:
        rnd = _Round()
        sv = self.state_vector()
        index = self._index.overlay()
        bindings = dict(self._bindings)
        remaining = cands
        progress = True
        while progress and remaining:
            progress = False
            still: list[Candidate] = []
            for c in remaining:
                try:
                    p = plan(c.su, c.scanned, sv, index, bindings)
                except GossipError as e:
                    rnd.rejected.append((c, e))  # nothing touched yet
                    continue
                if p.verdict is Verdict.WAIT:
                    c.missing = p.missing
                    still.append(c)
                    continue
                if p.verdict is Verdict.DUPLICATE:
                    rnd.duplicates.append(c)
                    continue
                try:
                    self._twin.apply_update(c.su.update)
                    if careful:
                        got = wire.decode_state_vector(self._twin.get_state())
                        if got.get(c.su.client, 0) != c.su.header.end:
                            raise RejectedUpdate(
                                "clock-range",
                                "the update did not apply whole (it builds on items not here)",
                                author=c.su.author,
                            )
                except GossipError as e:
                    rnd.failed.append((c, e))
                    return rnd
                except (KeyboardInterrupt, SystemExit):
                    raise
                except BaseException as e:  # yrs refused it (a pyo3 panic is no Exception)
                    rnd.failed.append((c, UpdateError(f"pycrdt refused the update: {e}")))
                    return rnd
                sv[c.su.client] = c.su.header.end
                bindings.setdefault(c.su.client, (c.su.author, c.su.header.epoch))
                for start, end, root in p.runs:
                    index.add(c.su.client, start, end, root)
                rnd.batch.append((c, p))
                progress = True
            remaining = still
        rnd.waiting = remaining
        if rnd.batch and not careful and wire.decode_state_vector(self._twin.get_state()) != sv:
            rnd.incomplete = True
        return rnd

    def _commit(
        self,
        items: list[tuple[SignedUpdate, Plan, str]],
        parsed: Sequence[SignedRecord] = (),
        *,
        supersede: bool = False,
    ) -> None:
        """Make accepted updates durable, apply them to the main document, then tell.
        ``parsed``: the records the gate read from them; ``supersede``: our own
        checkpoint, which replaces the rows it covers.

        Once the store has committed, the document must follow, whole: so nothing of ours
        runs inside yrs' apply (the observer only notes the change), the records are the
        gate's, already parsed and bounded (never parsed again, so never failing here),
        and listeners run only once every update of the batch is in the document, each
        call on its own (``_tell``). What is left is yrs applying to the main document
        the bytes it just took on the twin, which holds the same content."""
        if not items:
            return
        now = self.now_ms()
        self._store.append(
            [
                NewUpdate(
                    client=su.client, start=su.header.start, end=su.header.end,
                    author=su.author, epoch=su.header.epoch, checkpoint=su.header.checkpoint,
                    raw=su.raw, source=source, received_at=now, runs=p.runs,
                )
                for su, p, source in items
            ],
            supersede=supersede,
        )  # fmt: skip
        try:
            for su, p, _ in items:
                self._bindings.setdefault(su.client, (su.author, su.header.epoch))
                for start, end, root in p.runs:
                    self._index.add(su.client, start, end, root)
                if p.verdict is Verdict.APPLY:
                    self._main.apply_update(su.update)
                self._since_snapshot += len(su.raw)
        except BaseException:
            self._tell(parsed)  # what did reach the document; no snapshot of it (the
            raise  # next open replays the store, which holds the whole batch)
        try:
            self._tell(parsed)
            for listener in list(self._commit_listeners):
                listener()
        finally:  # durable already: a listener's failure must not skip the snapshot
            self._maybe_snapshot()

@dataclass(eq=False)
class _Prepared:
    """One chunk of ``ingest_batch`` between its replica-free checks and its commit."""

    outcomes: list[Outcome | None]
    checked: list[tuple[Candidate, int]] = field(default_factory=list)  # with signature count
    waits: list[Callable[[], list[bool]]] = field(default_factory=list)


@dataclass(eq=False)
class _Round:
    batch: list[tuple[Candidate, Plan]] = field(default_factory=list)
    duplicates: list[Candidate] = field(default_factory=list)
    waiting: list[Candidate] = field(default_factory=list)
    rejected: list[tuple[Candidate, GossipError]] = field(default_factory=list)  # untouched
    failed: list[tuple[Candidate, GossipError]] = field(default_factory=list)  # twin touched
    incomplete: bool = False  # an update did not apply whole: redo the round carefully


@contextmanager
def _cyclic_gc_paused() -> Iterator[None]:
    """No cyclic garbage collection during a batch.

    A batch keeps a few objects per update alive until it returns (its outcomes), and
    each full collection walks all of them: at 100k updates in one batch, collections
    took a quarter of the time. A batch makes next to no cyclic garbage (reference
    counting frees the rest), and the first collection after it finds what there is.
    The switch is process-wide, so only the call that turned it off turns it back on."""
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()


def _ms() -> int:
    return time.time_ns() // 1_000_000
