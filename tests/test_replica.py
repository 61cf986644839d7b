"""Replica behaviour beyond single gate rules: checkpoints, buffering, provenance."""

from __future__ import annotations

import pytest

from crdt import GossipError, Replica, ReplicaLimits, records
from tests.forge import Writer

TS = 1_790_000_000_000


def test_checkpoint_compacts_history_and_replays_identically(open_replica):
    a = open_replica("a")
    for i in range(40):
        a.put(records.breaker(a.identity, "b1", state="open" if i % 2 else "closed", ts=TS + i,
                              reason="x" * 200))  # fmt: skip
    a.put(records.memory(a.identity, "keep me", category="learning", ts=TS))
    before = sum(map(len, a.updates_for({})))
    partial = open_replica("partial")
    partial.ingest_batch(a.updates_for({})[:10])

    cp = a.checkpoint()
    after = a.updates_for({})
    assert after == [cp.raw]
    assert len(cp.raw) < before / 5

    fresh = open_replica("fresh")
    assert fresh.ingest(cp) == "applied"
    assert fresh.state_vector() == a.state_vector()
    assert {k: r.body for k, r in fresh.state().items()} == {
        k: r.body for k, r in a.state().items()
    }
    assert [r.fields["text"] for r in fresh.records().values()] == ["keep me"]

    # A replica that holds part of the history takes the rest from the checkpoint; it
    # keeps what it had (it cannot cheaply prove the checkpoint tells the same history).
    assert partial.ingest(cp) == "applied"
    assert partial.state_vector() == a.state_vector()
    assert {k: r.body for k, r in partial.state().items()} == {
        k: r.body for k, r in a.state().items()
    }
    assert cp.raw in partial.updates_for({})
    # A replica that already holds everything stores nothing new.
    assert fresh.ingest(cp) == "duplicate"


def test_checkpoint_of_nothing_is_a_clear_error(open_replica):
    with pytest.raises(GossipError, match="nothing to checkpoint"):
        open_replica("empty").checkpoint()


def test_pending_buffer_is_bounded(tmp_path, clock):
    r = Replica.open(tmp_path / "r", limits=ReplicaLimits(max_pending_updates=5), now_ms=clock)
    try:
        w = Writer()
        ups = [w.put(records.memory(w.identity, f"m{i}", category="c", ts=TS)) for i in range(12)]
        outs = r.ingest_batch(ups[1:])  # clock 0 missing: all wait
        assert {o.status for o in outs} == {"buffered"}
        assert r.pending_count == 5
        assert r.ingest(ups[0]) == "applied"  # the newest 5 stay buffered...
        assert len(r.records()) == 1  # ...but they do not follow clock 0 yet
        r.ingest_batch(ups[1:7])  # a later pull refetches what was evicted
        assert len(r.records()) == 12 and r.pending_count == 0
    finally:
        r.close()


def test_duplicates_are_idempotent(open_replica):
    r = open_replica("r")
    w = Writer()
    su = w.put(records.memory(w.identity, "once", category="c", ts=TS))
    assert [o.status for o in r.ingest_batch([su, su, su.raw])] == [
        "applied", "duplicate", "duplicate",
    ]  # fmt: skip
    assert r.ingest(su) == "duplicate"
    assert len(r.updates_for({})) == 1


def test_provenance_and_change_listener(open_replica):
    r = open_replica("r")
    seen = []
    r.on_change(lambda root, key, rec: seen.append((root, key, rec.kind if rec else None)))
    w = Writer()
    su = w.put(records.memory(w.identity, "hello", category="c", ts=TS))
    r.ingest(su, source="peer-b")
    assert seen == [("records", next(iter(r.records())), "memory")]
    prov = r.provenance(w.client, 0)
    assert prov is not None and prov["author"] == w.id and prov["source"] == "peer-b"
    mine = r.put(records.breaker(r.identity, "br", state="open", ts=TS))
    assert mine is not None and seen[-1][0] == "state"
    assert r.provenance(r.client, 0)["source"] == "local"


def test_put_refuses_records_of_another_author(open_replica):
    r = open_replica("r")
    w = Writer()
    with pytest.raises(GossipError, match="own records"):
        r.put(records.memory(w.identity, "not yours", category="c", ts=TS))


def test_put_of_a_record_already_held_is_a_no_op(open_replica):
    r = open_replica("r")
    rec = records.memory(r.identity, "same", category="c", ts=TS)
    assert r.put(rec) is not None
    assert r.put(rec) is None
    assert len(r.updates_for({})) == 1


def test_an_update_waiting_on_a_later_one_in_the_same_batch_reports_applied(open_replica):
    r = open_replica("r")
    w = Writer()
    first = w.put(records.memory(w.identity, "one", category="c", ts=TS))
    second = w.put(records.memory(w.identity, "two", category="c", ts=TS))
    assert [o.status for o in r.ingest_batch([second, first])] == ["applied", "applied"]
    assert r.pending_count == 0
