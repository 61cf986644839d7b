"""The main document holds the records' values as nulls; the store holds the values.

``wire.without_values`` nulls every value of an update; a document built from it must be,
to yrs, the same document: the same state vector, the same updates accepted (whole, in
part or not at all), the same bytes from a local transaction. The replica's document is
built that way (the records' values nulled) from its snapshot and its stored updates, and
built so again after a rejection that touched it, so it never holds a second copy of the
records the store holds, and a rejection leaves no trace.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest
from hypothesis import event, given, settings
from hypothesis import strategies as st
from pycrdt import Doc, Map

from crdt import Identity, Replica, records, wire
from crdt.errors import StoreError
from crdt.replica import ReplicaLimits
from tests.forge import Writer, capture, fingerprint, structs_of
from tests.test_gate import memory
from tests.test_wire import HISTORY, REFERENCE, SETTINGS, _content_of, _now, forged_variants

ROOTS = ("records", "state")


def _doc(client: int) -> Doc:
    d = Doc(client_id=client)
    for r in ROOTS:
        d.get(r, type=Map)
    return d


def _copies(main: Doc, client: int) -> tuple[Doc, Doc]:
    full, hollow = _doc(client), _doc(client)
    full.apply_update(main.get_update())
    hollow.apply_update(wire.without_values(main.get_update()))
    return full, hollow


def _history() -> Doc:
    """A document of two authors: sets, overwrites of one key, a key deleted."""
    a, b = _doc(11), _doc(22)
    ups = [
        capture(a, lambda d: d["records"].update({"r1": {"body": "x" * 50, "sig": "s"}})),
        capture(a, lambda d: d["state"].__setitem__("k", {"body": "v1", "n": [1, 2.5, None]})),
    ]
    for u in ups:
        b.apply_update(u)
    ups.append(capture(b, lambda d: d["records"].__setitem__("r2", {"body": "y", "sig": "t"})))
    ups.append(capture(a, lambda d: d["state"].__setitem__("k", {"body": "v2"})))
    a.apply_update(ups[2])
    ups.append(capture(a, lambda d: d["state"].pop("k")))
    return a


def test_without_values_keeps_every_struct_and_the_delete_set():
    main = _history()
    update = main.get_update()
    hollow = wire.without_values(update)
    assert len(hollow) < len(update)
    full, twin = wire.scan(update), wire.scan(hollow)
    assert twin.delete_set == full.delete_set
    assert [s._replace(values=None) for s in twin.structs] == [
        s._replace(values=None) for s in full.structs
    ]
    assert all(v is None for s in twin.structs if s.values for v in s.values)
    assert wire.without_values(hollow) == hollow


def test_a_document_without_values_takes_what_a_full_copy_takes():
    main = _history()
    full, hollow = _copies(main, 33)
    assert structs_of(hollow) == structs_of(full) == structs_of(main)
    assert set(hollow["records"].keys()) == set(main["records"].keys())
    assert hollow["records"]["r1"] is None
    # Later updates: one whole, one that builds on an item neither copy holds (held back
    # by yrs, the state vector not advancing), then the one it was missing.
    c = _doc(44)
    c.apply_update(main.get_update())
    first = capture(c, lambda d: d["state"].__setitem__("j", {"body": "w1"}))
    second = capture(c, lambda d: d["state"].__setitem__("j", {"body": "w2"}))
    for u in (second, first):
        full.apply_update(u)
        hollow.apply_update(u)
        assert structs_of(hollow) == structs_of(full)
    assert hollow["state"]["j"] == full["state"]["j"] == {"body": "w2"}
    assert structs_of(hollow) == structs_of(full)


def test_a_local_transaction_on_a_document_without_values_is_the_same_update():
    main = _history()
    full, hollow = _copies(main, 11)  # our own client: we continue our clocks

    def edit(d: Doc) -> None:
        d["records"]["r1"] = {"body": "z", "sig": "u"}  # an overwrite of a held key
        d["state"]["new"] = {"body": "n"}

    # (Compared as read, not as bytes: yrs writes a value's keys in hash order.)
    assert wire.scan(capture(hollow, edit)) == wire.scan(capture(full, edit))


def test_the_document_holds_no_values_of_what_the_replica_held(open_replica, tmp_path, clock):
    r = open_replica("r")
    old = [memory(r.identity, f"lesson {i}") for i in range(3)]
    r.put(*old)
    r.close()
    r = Replica.open(tmp_path / "r", now_ms=clock)
    try:
        assert all(r._main["records"][rec.id] is None for rec in old)
        new = memory(r.identity, "one more lesson")
        r.put(new)
        assert r._main["records"][new.id] == new.to_value()  # our write's, until a snapshot
        assert {k: v.body for k, v in r.records().items()} == {
            rec.id: rec.body for rec in [*old, new]}
        # A rejection now leaves everything as it was, the document's structs too.
        w = Writer()
        honest = memory(w.identity, "theirs")
        assert r.ingest(w.put(honest)) == "applied"
        assert r._main["records"][honest.id] is None
        before = fingerprint(r)
        assert before[-1]
        forged = w.put(records.memory(r.identity, "not mine", category="fact", ts=1))
        outs = r.ingest_batch([forged.raw])
        assert outs[0].status == "rejected"
        assert fingerprint(r) == before
    finally:
        r.close()


def test_a_snapshot_nulls_the_values_our_writes_put_in_the_document(open_replica, tmp_path,
                                                                     clock):  # fmt: skip
    r = open_replica("r")
    first = memory(r.identity, "first")
    r.put(first)
    assert r._main["records"][first.id] is not None
    r.close()
    r = Replica.open(tmp_path / "r", now_ms=clock,
                     limits=ReplicaLimits(snapshot_min_bytes=1, snapshot_ratio=0.0))  # fmt: skip
    try:
        seq = r._snapshot_seq
        second = memory(r.identity, "second")
        r.put(second)
        assert r._snapshot_seq > seq
        assert r._main["records"][second.id] is None  # the snapshot built it anew, nulled
        assert wire.scan(r._store.load_snapshot()[1]).record_spans  # holds the records' keys
        third = memory(r.identity, "third")
        r.put(third)
        assert {first.id, second.id, third.id} <= set(r.records())
        assert r.get(second.id) == second
    finally:
        r.close()


def test_a_commit_the_store_refuses_leaves_the_document_as_the_store_is(open_replica):
    """A write the store cannot commit (here SQLite refusing every write) was already in
    the document: the document is read back from the store, and the next write, once the
    store takes writes again, goes through."""
    r = open_replica("r")
    kept = memory(r.identity, "kept")
    r.put(kept)
    before = fingerprint(r)
    r._store._db.execute("PRAGMA query_only = 1")
    lost = memory(r.identity, "lost")
    with pytest.raises(StoreError, match="readonly"):
        r.put(lost)
    w = Writer()
    with pytest.raises(StoreError, match="readonly"):
        r.ingest(w.put(memory(w.identity, "theirs")))
    r._store._db.execute("PRAGMA query_only = 0")
    assert fingerprint(r) == before
    assert lost.id not in r.record_ids()
    again = memory(r.identity, "again")
    r.put(again)
    assert set(r.records()) == {kept.id, again.id}


@settings(SETTINGS, max_examples=60)
@given(variant=forged_variants(), position=st.integers(0, 2**8))
def test_a_mutated_update_refused_by_a_document_without_values_commits_only_the_rest(
    variant: tuple[int, bytes], position: int
) -> None:
    """``tests/test_wire.py``'s batch with a mutated update in it, offered to a replica
    reopened on the history before it: its document holds none of the values it holds."""
    i, raw = variant
    with tempfile.TemporaryDirectory(prefix="sm-doc-") as tmp:
        ident = Identity.generate()
        with Replica.open(Path(tmp), ident, now_ms=_now) as r:
            for su in HISTORY[:i]:
                r.ingest(su.raw)
        with Replica.open(Path(tmp), ident, now_ms=_now) as r:
            batch = [su.raw for su in HISTORY[i:]]
            at = position % (len(batch) + 1)
            batch.insert(at, raw)
            outs = r.ingest_batch(batch, source="fuzz")
            if outs[at].status == "rejected":
                event(f"batch rejected: {getattr(outs[at].error, 'rule', '?')}")
                assert _content_of(r) == REFERENCE
                assert fingerprint(r)[-1]


def test_anything_raised_between_a_round_and_its_commit_leaves_no_trace(tmp_path):
    """An interrupt (or a MemoryError) after the document took an update and before the
    store did: the document is read back from the store, so our state vector never
    claims what no stored update holds, and the same update, offered again, applies.
    Here the injected clock raises where the commit (or our own write's signing) asks it
    the time."""
    armed: list[BaseException] = []

    def now() -> int:
        if armed:
            raise armed.pop()
        return 1_790_000_000_000

    r = Replica.open(tmp_path / "r", now_ms=now)
    try:
        w = Writer()
        su = w.put(memory(w.identity, "theirs"))
        before = fingerprint(r)
        armed.append(KeyboardInterrupt())
        with pytest.raises(KeyboardInterrupt):
            r.ingest(su)
        assert fingerprint(r) == before
        assert r.ingest(su) == "applied"
        mine = memory(r.identity, "mine")
        before = fingerprint(r)
        armed.append(MemoryError())
        with pytest.raises(MemoryError):
            r.put(mine)
        assert fingerprint(r) == before
        assert r.put(mine).header.start == 0  # our clocks are not skipped
        assert {w.id, r.author} == {rec.author for rec in r.records().values()}
    finally:
        r.close()
