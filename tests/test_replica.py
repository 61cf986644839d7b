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


def test_put_of_the_same_record_twice_in_one_call_writes_it_once(open_replica):
    a = open_replica("a")
    rec = records.memory(a.identity, "the same twice", category="note", ts=TS)
    other = records.memory(a.identity, "another", category="note", ts=TS)
    su = a.put(rec, other, rec)  # one signed update that peers accept (no own deletes)
    assert su is not None and set(a.records()) == {rec.id, other.id}
    fresh = open_replica("fresh")
    assert fresh.ingest(su) == "applied" and set(fresh.records()) == {rec.id, other.id}


def test_an_update_waiting_on_a_later_one_in_the_same_batch_reports_applied(open_replica):
    r = open_replica("r")
    w = Writer()
    first = w.put(records.memory(w.identity, "one", category="c", ts=TS))
    second = w.put(records.memory(w.identity, "two", category="c", ts=TS))
    assert [o.status for o in r.ingest_batch([second, first])] == ["applied", "applied"]
    assert r.pending_count == 0


def test_a_failing_change_listener_loses_nothing_of_its_batch(open_replica):
    """Whatever fails after the store commit (here a listener, on the first record) must
    not leave the document behind the store: every update of the batch is in the
    document, the state vector and every other listener, and the failing listener is
    still called for the records after the one it failed on."""
    from crdt.views import Views

    r = open_replica("r")
    calls: list[str] = []
    seen: list[str] = []

    def fails_once(root: str, key: str, rec) -> None:
        calls.append(key)
        if len(calls) == 1:
            raise RuntimeError("a listener's bug")

    r.on_change(fails_once)
    r.on_change(lambda root, key, rec: seen.append(key))
    views = Views(r)
    try:
        writers = [Writer() for _ in range(3)]
        mems = [records.memory(w.identity, f"lesson {i}", category="c", ts=TS)
                for i, w in enumerate(writers)]  # fmt: skip
        outs = r.ingest_batch([w.put(m) for w, m in zip(writers, mems, strict=True)])
        assert [o.status for o in outs] == ["applied"] * 3
        ids = [m.id for m in mems]
        assert sorted(calls) == sorted(seen) == sorted(ids)
        assert set(ids) <= set(r.records())
        assert all(r.state_vector()[w.client] == 1 for w in writers)
        hits = views.recall("lesson", include_untrusted=True).hits
        assert sorted(h.id for h in hits) == sorted(ids)
        assert r.listener_failures == 1
    finally:
        views.close()


def test_the_gate_parses_each_body_once(open_replica):
    """The records the gate parsed are the ones listeners (the views) get: ingesting a
    batch with views and a listener attached parses each body exactly once."""
    import sys

    from crdt import records as records_module
    from crdt.views import Views

    r = open_replica("r")
    got = []
    r.on_change(lambda root, key, rec: got.append(rec))
    views = Views(r)
    writers = [Writer() for _ in range(5)]
    batch = [w.put(records.memory(w.identity, f"m{i}", category="c", ts=TS))
             for i, w in enumerate(writers)]  # fmt: skip
    parses = 0
    code = records_module._parse_body.__code__

    def profile(frame, event, arg):
        nonlocal parses
        if event == "call" and frame.f_code is code:
            parses += 1

    sys.setprofile(profile)
    try:
        outs = r.ingest_batch(batch)
    finally:
        sys.setprofile(None)
        views.close()
    assert [o.status for o in outs] == ["applied"] * 5
    assert parses == 5 and len(got) == 5


def test_a_stored_body_the_gate_now_refuses_is_skipped_by_readers(tmp_path, clock):
    """A store written before the nesting bound may hold a body past it: opening it and
    every read (records, get, recall) skip that one record instead of failing."""
    from crdt import wire
    from crdt.store import NewUpdate, Store, record_places
    from crdt.views import Views
    from tests.forge import nested_memory, put_unparsed

    home = tmp_path / "old"
    Replica.open(home, now_ms=clock).close()
    w = Writer()
    deep = nested_memory(w, 40)
    su = put_unparsed(w, deep)
    good = records.memory(w.identity, "kept lesson", category="c", ts=TS)
    su2 = w.put(good)
    store = Store.open(home)
    try:  # what an older gate accepted, as it stored it
        store.append([NewUpdate(client=u.client, start=u.header.start, end=u.header.end,
                                author=u.author, epoch=u.header.epoch, checkpoint=False,
                                raw=u.raw, source="old", received_at=TS,
                                runs=((u.header.start, u.header.end, "records"),),
                                places=record_places(u, wire.scan(u.update).record_spans))
                      for u in (su, su2)])  # fmt: skip
    finally:
        store.close()
    with Replica.open(home, now_ms=clock) as r:
        assert r.state_vector()[w.client] == 2
        assert set(r.records()) == {good.id}
        assert [k for k, _ in r.iter_records()] == [good.id]
        assert r.get(deep.id) is None and r.origin(deep.id) is None
        with Views(r) as views:
            assert [h.id for h in views.recall("lesson", include_untrusted=True).hits] == [good.id]


def test_origin_names_the_records_own_item_also_after_a_checkpoint(open_replica):
    """A record is one Yjs item: ``origin``'s (client, clock) is that item, so "a peer's
    state vector is above clock" means it holds the record (delivery status) — also for
    records written several to an update, or merged into a checkpoint (whose update
    starts at clock 0), and not confused by a retraction that quotes the id."""
    a = open_replica("a")
    first = records.memory(a.identity, "first", category="learning", ts=TS)
    a.put(first)
    pair = [records.memory(a.identity, f"pair {i}", category="learning", ts=TS + 1 + i)
            for i in range(2)]  # fmt: skip
    a.put(*pair)
    a.put(records.retract(a.identity, first.id, ts=TS + 5, reason="quotes its id"))
    expected = {first.id: 0, pair[0].id: 1, pair[1].id: 2}
    for rid, clock in expected.items():
        where = a.origin(rid)
        assert (where["client"], where["clock"]) == (a.client, clock)
    a.checkpoint()
    for rid, clock in expected.items():
        where = a.origin(rid)
        assert (where["clock"], where["checkpoint"]) == (clock, True)
    b = open_replica("b")
    b.ingest_batch(a.updates_for({}))
    assert b.origin(pair[1].id)["clock"] == 2


def test_ingest_batch_runs_between_its_chunks_with_each_one_committed(open_replica):
    """``between`` (a node's queued reads, an import's progress) runs after each chunk
    but the last, when what came before is durable and readable; the outcomes are the
    same as in one chunk."""
    w = Writer()
    ups = [w.put(records.memory(w.identity, f"m{i}", category="c", ts=TS)) for i in range(7)]
    r = open_replica("r")
    seen: list[tuple[int, int]] = []
    outs = r.ingest_batch(ups, chunk=3, between=lambda done: seen.append((done, len(r.records()))))
    assert [o.status for o in outs] == ["applied"] * 7
    assert seen == [(3, 3), (6, 6)]
    assert len(r.records()) == 7


def test_updates_read_lazily_are_those_stored_in_the_same_order(open_replica):
    """``iter_updates_for`` (what an exchange reads) reads the store in parts; it gives
    each client's stored updates past the peer's clock, in the store's order (by start,
    then arrival), across parts and with a checkpoint beside the older updates it covers."""
    from crdt.store import RAW_CHUNK

    a, b = open_replica("a"), open_replica("b")
    for w in (a, b):
        for i in range(RAW_CHUNK + 10):
            w.put(records.memory(w.identity, f"{w.author[:4]} {i}", category="c", ts=TS))
    both = open_replica("both")
    both.ingest_batch(a.updates_for({}) + b.updates_for({})[:20])
    cp = b.checkpoint()
    both.ingest(cp)  # b's [0, k) beside the 20 it had

    def stored(sv):  # what the exchange read before: every row at once, per client
        return [u.raw for c in sorted(both._bindings)
                for u in both._store.updates_after(c, sv.get(c, 0))]  # fmt: skip

    for sv in ({}, a.state_vector(), {b.client: 5, 12345: 1}, {a.client: 3}, both.state_vector()):
        assert list(both.iter_updates_for(sv)) == stored(sv)
    got = list(both.iter_updates_for({}))
    assert len(got) == RAW_CHUNK + 10 + 21 and cp.raw in got
    of_a = set(a.updates_for({}))
    assert [u for u in got if u not in of_a].index(cp.raw) == 1  # start 0, stored second
