"""The ingest pipeline: signed updates through the gate into the store and the document,
then the listeners told (steps 1–4 of ``crdt.replica``'s docstring).

A mixin of ``crdt.replica.Replica``. It owns the batch machinery (chunks, signature
waits, the rounds that apply updates to the main document), the commit of accepted
updates (``_commit``: the store, then the listeners) and the change and commit
listeners. It hands updates that must wait to the pending buffer (``crdt.pending``) and
never decides a rule itself (``crdt.rules`` and ``crdt.updates`` do); it never writes
keys or the keyring.
"""

from __future__ import annotations

import gc
import logging
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, NamedTuple

from pycrdt import Doc, Map

from . import wire
from .errors import GossipError, RejectedUpdate, UpdateError
from .frozen import built
from .pending import Candidate, PendingBuffer
from .reading import _belongs, _parsed
from .records import SignedRecord
from .rules import ItemIndex, Plan, Verdict, check_items, plan
from .signatures import start_verifying
from .store import NewUpdate, RecordPlaces, record_places
from .updates import SignedUpdate, check_structure

if TYPE_CHECKING:
    from .replica import ReplicaLimits
    from .store import Store

ChangeListener = Callable[[str, str, "SignedRecord | None"], None]
Change = tuple[str, str, Any]  # (root, key, document value, or DELETED)
DELETED = object()  # a key's value was deleted (a null is a record's value, ``Replica``)
Told = tuple[str, str, "SignedRecord | None"]  # (root, key, record or None: deleted)
BatchListener = Callable[[list[Told]], None]

log = logging.getLogger("crdt.replica")


@dataclass(frozen=True)
class Outcome:
    """What happened to one update offered to ``ingest_batch``."""

    status: str  # applied | duplicate | buffered | rejected
    error: GossipError | None = None
    update: SignedUpdate | None = None


class ReplicaIngest:
    """The gate's driver in ``Replica`` (its attributes are set by ``Replica``)."""

    limits: ReplicaLimits
    now_ms: Callable[[], int]
    rejected: Counter[str]
    listener_failures: int
    untold: int
    _store: Store
    _main: Doc
    _main_maps: dict[str, Map]
    _index: ItemIndex
    _bindings: dict[int, tuple[str, int]]
    _pending: PendingBuffer
    _listeners: list[ChangeListener]
    _changes: list[Change]
    _subscriptions: list[Any]
    _batch_listeners: list[BatchListener]
    _since_snapshot: int
    commit_time: int  # when the last commit was made (ms): a listener's "first seen"
    # and, from Replica: state_vector(), _or_reload(), _check_writable(),
    # _maybe_snapshot()

    def on_change(self, listener: ChangeListener) -> None:
        """Call ``listener(root, key, record_or_None)`` for each change of the document.

        Called from inside ``put``/``ingest_batch`` once the change is durable, in the
        caller's thread; a listener must not call back into the replica."""
        self._observe()
        self._listeners.append(listener)

    def off_change(self, listener: ChangeListener) -> None:
        """Stop calling ``listener`` (a no-op if it was not registered)."""
        if listener in self._listeners:
            self._listeners.remove(listener)

    def on_changes(self, listener: BatchListener) -> None:
        """Call ``listener(changes)`` once per commit (a ``put``, a chunk of an
        ``ingest_batch``) with what it changed, in order: ``(root, key, record_or_None)``
        as ``on_change`` tells them, for work done once per batch rather than once per
        record (the views' ``executemany``). Same thread and rules as ``on_change``."""
        self._observe()
        self._batch_listeners.append(listener)

    def off_changes(self, listener: BatchListener) -> None:
        if listener in self._batch_listeners:
            self._batch_listeners.remove(listener)

    def _observe(self) -> None:
        if not self._listeners and not self._batch_listeners:
            self._subscribe()

    def _subscribe(self) -> None:
        """Observe the main document's maps (again, for a document built anew).

        On yrs' own map (``integrated``), not pycrdt's wrapper: the wrapper turns each
        event's target, path and transaction into Python objects for every update applied
        (8 µs an update against 2 µs, docs/benchmarks.md "Ingest"), and the values here
        are plain (the gate admits no shared types), so the event's ``keys`` are the same
        either way. The subscriptions live as long as the document."""
        self._subscriptions = [
            m.integrated.observe(self._main_observer(root)) for root, m in self._main_maps.items()
        ]

    def _main_observer(self, root: str) -> Callable[[Any], None]:
        """Only notes what changed: it runs inside yrs' apply, where a failure would stop
        the rest of the batch from reaching the document (``_tell``, after, does the rest),
        so it never raises (a failure to note a change is logged and counted)."""

        def on_event(event: Any) -> None:
            try:
                for key, ch in event.keys.items():
                    value = ch.get("newValue") if ch["action"] != "delete" else DELETED
                    self._changes.append((root, key, value))
            except Exception:
                self.listener_failures += 1
                self.untold += 1
                log.exception("noting a change of the %s map failed", root)

        return on_event

    def _tell(self, parsed: Sequence[SignedRecord]) -> None:
        """Tell the listeners what the last commit changed, with the records the gate
        parsed (a body is parsed once). One listener failing on one change (a batch
        listener: on its batch) is logged and counted; it never keeps the other changes
        or listeners from being told."""
        changes, self._changes = self._changes, []
        if not changes or not (self._listeners or self._batch_listeners):
            return
        by_body = {rec.body: rec for rec in parsed}
        told: list[Told] = []
        nulled = [key for root, key, value in changes if value is None and root == "records"]
        # A record's value is a null in the main document (``Replica``): the gate's parse
        # of it, else the store's copy.
        by_id = {rec.id: rec for rec in parsed} if nulled else {}
        if nulled and not all(key in by_id for key in nulled):
            by_id.update(self._stored_records([k for k in nulled if k not in by_id]))
        for root, key, value in changes:
            rec = None
            if value is None and root == "records":
                rec = by_id.get(key)
                if rec is None:
                    continue
            elif isinstance(value, dict):
                body, sig = value.get("body"), value.get("sig")
                rec = by_body.get(body.encode("utf-8", "surrogatepass")) if isinstance(
                    body, str) else None  # fmt: skip
                if rec is None or rec.sig_text != sig:
                    rec = _parsed(value)
                if rec is None or (root == "state" and not _belongs(rec, key)):
                    continue
            told.append((root, key, rec))
        for batch_listener in list(self._batch_listeners):
            try:
                batch_listener(told)
            except Exception:
                self.listener_failures += 1
                log.exception("a change listener failed on a batch of %d", len(told))
        for root, key, rec in told if self._listeners else ():
            for listener in list(self._listeners):
                try:
                    listener(root, key, rec)
                except Exception:
                    self.listener_failures += 1
                    log.exception("a change listener failed on %s/%s", root, key[:80])

    def ingest(self, update: SignedUpdate | bytes, *, source: str = "") -> str:
        """Offer one signed update; returns applied/duplicate/buffered or raises the error."""
        (out,) = self.ingest_batch([update], source=source)
        if out.error is not None:
            raise out.error
        return out.status

    def ingest_batch(
        self,
        updates: Sequence[SignedUpdate | bytes],
        *,
        source: str = "",
        chunk: int | None = None,
        between: Callable[[int], None] | None = None,
    ) -> list[Outcome]:
        """Offer many signed updates; all accepted ones are durable when this returns.

        Taken in chunks of ``chunk`` updates (default ``limits.batch_size``), so memory
        stays bounded however large a peer's delta is. For each chunk, first everything
        that needs no replica: decoding, structure, the records each item carries, and
        all their signatures. Only then does anything touch the document. The chunks overlap:
        while this thread checks the next one, worker processes verify the signatures of
        this one. ``between(done)`` is called after each chunk but the last is committed
        (``done``: the updates offered so far), while the next chunk's signatures verify:
        for a progress report, or the reads a node queued meanwhile (it must not write).
        """
        self._check_writable()
        size = max(1, chunk or self.limits.batch_size)
        chunks = [updates[k : k + size] for k in range(0, len(updates), size)]
        out: list[Outcome] = []
        with cyclic_gc_paused():
            prepared = self._prepare(chunks[0], source) if chunks else None
            for k in range(len(chunks)):
                assert prepared is not None
                current = prepared
                prepared = self._prepare(chunks[k + 1], source) if k + 1 < len(chunks) else None
                out.extend(self._finish(current))
                if between is not None and prepared is not None:
                    between(len(out))
        for o in out:
            if o.status == "rejected":
                err = o.error
                self.rejected[err.rule if isinstance(err, RejectedUpdate) else "malformed"] += 1
        return out

    def _prepare(self, updates: Sequence[SignedUpdate | bytes], source: str) -> _Prepared:
        """The replica-free checks of one chunk; its signatures start verifying meanwhile."""
        prep = _Prepared([None] * len(updates))
        triples: list[tuple[str, bytes, bytes]] = []
        listened = bool(self._listeners or self._batch_listeners)
        for i, u in enumerate(updates):
            su = None
            try:
                su = u if isinstance(u, SignedUpdate) else SignedUpdate.decode(u)
                scanned = check_structure(su, self.limits.structure, signature=False)
                items = check_items(su.author, scanned)
            except GossipError as e:
                prep.outcomes[i] = Outcome("rejected", e, su)
                continue
            # Only the header's signature: it covers the digest of the update bytes, so
            # every byte of every record value, and check_items refused any record not by
            # the header's author (record-author). A record's own signature adds nothing
            # an outsider could forge past this; readers that present a record alone
            # check it (SignedRecord.verify). docs/threat-model.md, "Record signatures".
            triples.append((su.author, su.sig, su.header_bytes))
            parsed = tuple([rec for _, _, rec in items])
            ids = tuple([rec.id for rec in parsed])
            places = record_places(su, scanned.record_spans)
            kept = parsed if listened else ()
            prep.checked.append((Candidate(i, su, scanned, source, ids, places, kept), 1))
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
            header_ok = oks[pos]
            pos += n_sigs
            if header_ok:
                ready.append(c)
                continue
            err = RejectedUpdate(
                "header-signature", "a header signature does not verify", author=c.su.author
            )
            outcomes[c.index] = Outcome("rejected", err, c.su)
        for i, outcome in self._apply_ready(ready):
            outcomes[i] = outcome
        return [o or Outcome("rejected", UpdateError("not processed")) for o in outcomes]

    # -- the gate's driver -----------------------------------------------------------

    def _apply_ready(self, ready: list[Candidate]) -> list[tuple[int, Outcome]]:
        """Plan, apply to the document and commit; then retry the waiting updates whose
        dependency this advanced, until nothing more moves.

        Optimistic: a whole batch is applied to the main document, and its state vector
        is compared with the plans' once at the end. A mismatch (yrs read an update
        differently from the gate) or a rejection that touched the document reloads the
        document from the store and reruns the batch, one checked update at a time or
        without the culprit. Returns (caller's index, outcome), the last for an index
        being final (an update first buffered may be applied once a later one of the
        batch fills its gap); updates from earlier calls' buffer report nothing.
        """
        results: list[tuple[int, Outcome]] = []
        mine = {id(c) for c in ready}  # later outcomes of one update replace earlier ones

        def report(c: Candidate, outcome: Outcome) -> None:
            if id(c) in mine:
                results.append((c.index, outcome))

        cands = ready
        careful = False
        with self._or_reload():
            while cands:
                rnd = self._round(cands, careful=careful)
                for c, err in rnd.rejected + rnd.failed:
                    report(c, Outcome("rejected", err, c.su))
                if rnd.failed or rnd.incomplete:
                    self._reload_document()
                    careful = careful or rnd.incomplete
                    gone = {id(c) for c, _ in rnd.rejected + rnd.failed}
                    cands = [c for c in cands if id(c) not in gone]
                    continue
                self._commit([Accepted(c.su, p, c.source, c.ids, c.places)
                              for c, p in rnd.batch],
                             [rec for c, _ in rnd.batch for rec in c.records])  # fmt: skip
                for c, _ in rnd.batch:
                    report(c, built(Outcome, status="applied", error=None, update=c.su))
                for c in rnd.duplicates:
                    report(c, built(Outcome, status="duplicate", error=None, update=c.su))
                for c in rnd.waiting:
                    err = self._pending.hold(c)
                    report(c, Outcome("buffered" if err is None else "rejected", err, c.su))
                cands = self._pending.take({c.su.client for c, _ in rnd.batch})
        return results

    def _round(self, cands: list[Candidate], *, careful: bool) -> _Round:
        """Plan each update against what we hold and apply those that may go to the main
        document, the records' values nulled (``wire.nulled``: the store reads them from
        the stored update). Nothing here is durable yet: ``_commit`` follows, and a
        failure reloads the document (``_apply_ready``)."""
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
                    self._main.apply_update(c.doc_update)
                    if careful:
                        got = wire.decode_state_vector(self._main.get_state())
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
        if rnd.batch and not careful and self.state_vector() != sv:
            rnd.incomplete = True
        return rnd

    def _commit(
        self,
        items: list[Accepted],
        parsed: Sequence[SignedRecord] = (),
        *,
        supersede: bool = False,
    ) -> None:
        """Make accepted updates durable, then tell. Each item: an update the main
        document has taken (``_round``; our own write's transaction, or a checkpoint's,
        which changes nothing there), its plan, who delivered it and the ids of the
        records the gate read from it (stored as first seen now, unless seen before);
        ``parsed``: those records, for the listeners (one missing is parsed again from
        the document); ``supersede``: our own checkpoint, which replaces the rows it
        covers. ``commit_time`` is when, for the listeners.

        The caller reads the document back from the store should anything here raise
        (``_or_reload``); once the store has committed, nothing here can fail midway: the
        listeners run only after it, each call on its own (``_tell``)."""
        if not items:
            return
        now = self.commit_time = self.now_ms()
        try:
            self._store.append(
                [
                    built(
                        NewUpdate, client=su.client, start=su.header.start, end=su.header.end,
                        author=su.author, epoch=su.header.epoch,
                        checkpoint=su.header.checkpoint, raw=su.raw, source=source,
                        received_at=now, runs=p.runs, records=ids, places=places,
                    )
                    for su, p, source, ids, places in items
                ],
                supersede=supersede,
            )  # fmt: skip
        except BaseException:
            # SQLite may report a COMMIT failed that landed all the same: the listeners
            # were not told, so kept views must not claim to cover what the store holds.
            self.untold += 1
            raise
        for su, p, *_ in items:
            self._bindings.setdefault(su.client, (su.author, su.header.epoch))
            for start, end, root in p.runs:
                self._index.add(su.client, start, end, root)
            self._since_snapshot += len(su.raw)
        try:
            self._tell(parsed)
        finally:  # durable already: a listener's failure must not skip the snapshot
            self._maybe_snapshot()


class Accepted(NamedTuple):
    """One update the gate accepted, on its way into the store and the document."""

    su: SignedUpdate
    plan: Plan
    source: str  # who delivered it
    ids: tuple[str, ...]  # the records it carries (their first_seen)
    places: RecordPlaces  # where in its raw bytes its records' values are (first_seen)


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
    failed: list[tuple[Candidate, GossipError]] = field(default_factory=list)  # doc touched
    incomplete: bool = False  # an update did not apply whole: redo the round carefully


@contextmanager
def cyclic_gc_paused() -> Iterator[None]:
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
