"""The gate's twin holds the main document's structs without its values.

``wire.without_values`` nulls every value of an update; a document built from it must be,
to yrs, the same document: the same state vector, the same updates accepted (whole, in
part or not at all), the same bytes from a local transaction. The replica builds its
twin that way, so it holds no second copy of the records it held before.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from hypothesis import event, given, settings
from hypothesis import strategies as st
from pycrdt import Doc, Map

from crdt import Identity, Replica, records, wire
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


def test_a_twin_without_values_takes_what_a_full_copy_takes():
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


def test_a_local_transaction_on_the_twin_is_the_same_update():
    main = _history()
    full, hollow = _copies(main, 11)  # our own client: we continue our clocks

    def edit(d: Doc) -> None:
        d["records"]["r1"] = {"body": "z", "sig": "u"}  # an overwrite of a held key
        d["state"]["new"] = {"body": "n"}

    # (Compared as read, not as bytes: yrs writes a value's keys in hash order.)
    assert wire.scan(capture(hollow, edit)) == wire.scan(capture(full, edit))


def test_the_twin_holds_no_values_of_what_the_replica_held(open_replica, tmp_path, clock):
    r = open_replica("r")
    old = [memory(r.identity, f"lesson {i}") for i in range(3)]
    r.put(*old)
    r.close()
    r = Replica.open(tmp_path / "r", now_ms=clock)
    try:
        new = memory(r.identity, "one more lesson")
        r.put(new)
        twin = r._twin_doc
        assert twin is not None and structs_of(twin) == structs_of(r._main)
        assert all(twin["records"][rec.id] is None for rec in old)
        assert twin["records"][new.id] == new.to_value()  # what it took since: real
        # A rejection now leaves everything as it was, the twin's structs too.
        w = Writer()
        honest = memory(w.identity, "theirs")
        assert r.ingest(w.put(honest)) == "applied"
        before = fingerprint(r)
        assert before[-1]
        forged = w.put(records.memory(r.identity, "not mine", category="fact", ts=1))
        outs = r.ingest_batch([forged.raw])
        assert outs[0].status == "rejected"
        assert fingerprint(r) == before
    finally:
        r.close()


def test_a_snapshot_drops_the_twin_and_what_it_took(open_replica, tmp_path, clock):
    r = open_replica("r")
    r.put(memory(r.identity, "first"))
    assert r._twin_doc is not None
    r.close()
    r = Replica.open(tmp_path / "r", now_ms=clock,
                     limits=ReplicaLimits(snapshot_min_bytes=1, snapshot_ratio=0.0))  # fmt: skip
    try:
        seq = r._snapshot_seq
        r.put(memory(r.identity, "second"))
        assert r._snapshot_seq > seq
        assert r._twin_doc is None  # built again, without values, when next needed
        third = memory(r.identity, "third")
        r.put(third)
        assert third.id in r.records()
    finally:
        r.close()


@settings(SETTINGS, max_examples=60)
@given(variant=forged_variants(), position=st.integers(0, 2**8))
def test_a_mutated_update_refused_by_a_twin_without_values_commits_only_the_rest(
    variant: tuple[int, bytes], position: int
) -> None:
    """``tests/test_wire.py``'s batch with a mutated update in it, offered to a replica
    reopened on the history before it: its twin is built without the values it holds."""
    i, raw = variant
    with tempfile.TemporaryDirectory(prefix="sm-twin-") as tmp:
        ident = Identity.generate()
        with Replica.open(Path(tmp), ident, now_ms=_now) as r:
            for su in HISTORY[:i]:
                r.ingest(su.raw)
        with Replica.open(Path(tmp), ident, now_ms=_now) as r:
            assert r._twin is not None  # built now, from what the store held
            batch = [su.raw for su in HISTORY[i:]]
            at = position % (len(batch) + 1)
            batch.insert(at, raw)
            outs = r.ingest_batch(batch, source="fuzz")
            if outs[at].status == "rejected":
                event(f"batch rejected: {getattr(outs[at].error, 'rule', '?')}")
                assert _content_of(r) == REFERENCE
                assert fingerprint(r)[-1]
