"""Status and metrics count from the views' tally (crdt/views/tally.py), never from a
decode of the document: after every kind of change, the tally's figures equal those of
a full decode (what `counts` and `replica_figures` computed before) and those of views
rebuilt from scratch. And the lookups by id that once decoded them all (show,
retract) give the decode's answers."""

from __future__ import annotations

from collections import Counter

from crdt import Replica, records
from crdt.identity import Identity
from crdt.views import Views
from gossip.api.metrics import replica_figures
from gossip.ops.queries import counts, resolve_record
from tests.forge import Writer

T = 1_790_000_000_000


def decoded(r: Replica, views: Views) -> dict:
    """The figures from every record of the document, decoded (the old way)."""
    held = r.records()
    trust = views.trust()
    trusted = sum(1 for rec in held.values() if trust.counts(rec.author, rec.ts))
    return {
        "records_by_kind": dict(Counter(rec.kind for rec in held.values())),
        "records_by_author": dict(Counter(rec.author for rec in held.values())),
        "trusted": trusted,
        "state_by_kind": dict(Counter(k.split(":", 1)[0] for k in r.state())),
    }


def check(r: Replica, views: Views) -> dict:
    want = decoded(r, views)
    assert views.held() == want
    fresh = Views(r)  # rebuilt from the document: the same figures
    try:
        assert fresh.held() == want
    finally:
        fresh.close()
    total = len(r.records())
    assert counts(views) == {"total": total, "trusted": want["trusted"],
                             "untrusted": total - want["trusted"],
                             "state_entries": len(r.state())}  # fmt: skip
    by_kind = Counter(rec.kind for _, rec in r.iter_records())
    by_kind.update(k.split(":", 1)[0] for k in r.state())
    assert replica_figures(r, views)["by_kind"] == dict(by_kind)
    return want


def test_the_tally_matches_a_full_decode_through_every_kind_of_change(open_replica):
    me = open_replica("me")
    views = Views(me, now_ms=lambda: T + 1_000_000)
    check(me, views)

    # Own writes: memories (one expired, one superseding another), a bank, a retraction.
    first = me.put(records.memory(me.identity, "first", category="learning", ts=T))
    (first_id,) = me.records()
    me.put(records.memory(me.identity, "second", category="learning", ts=T + 1,
                          supersedes=first_id))  # fmt: skip
    me.put(records.memory(me.identity, "gone", category="learning", ts=T + 2,
                          expires_at=T + 3))  # fmt: skip
    me.put(records.bank(me.identity, "ops", ts=T + 3, name="Ops"))
    me.put(records.retract(me.identity, first_id, ts=T + 4))
    assert first is not None
    # State: a breaker tripped then reset (one entry, overwritten), a benchmark.
    me.put(records.breaker(me.identity, "svc", state="open", ts=T + 5))
    me.put(records.breaker(me.identity, "svc", state="closed", ts=T + 6))
    me.put(records.benchmark(me.identity, "model-a", "latency", summary={"p50": 1.0},
                             ts=T + 7))  # fmt: skip
    want = check(me, views)
    assert want["records_by_kind"] == {"memory": 3, "bank": 1, "retract": 1}
    assert want["state_by_kind"] == {"breaker": 1, "benchmark": 1}

    # An untrusted author, then trust added and removed again.
    stranger = Writer()
    for i in range(3):
        me.ingest(stranger.put(records.memory(stranger.identity, f"s{i}", category="c",
                                              ts=T + 10 + i)))  # fmt: skip
    assert check(me, views)["trusted"] == 5
    me.trust(stranger.id, "stranger")
    assert check(me, views)["trusted"] == 8
    me.distrust(stranger.id)
    assert check(me, views)["trusted"] == 5

    # The same update twice, and the same record again from another epoch of its author.
    friend = Writer()
    me.trust(friend.id, "friend")
    again = friend.put(records.memory(friend.identity, "f-first", category="c", ts=T + 50))
    me.ingest(again)
    me.ingest(again)
    rec = records.memory(friend.identity, "f-twice", category="c", ts=T + 40)
    me.ingest(friend.put(rec))
    # (a client above the first wins the key: the document says the value changed)
    other_epoch = next(w for e in range(1, 1000)
                       if (w := Writer(friend.identity, epoch=e)).client > friend.client)
    seen: list[str] = []
    me.on_change(lambda root, key, rec: seen.append(key))
    assert me.ingest(other_epoch.put(rec)) == "applied"
    assert seen == [rec.id]  # told again: counted once
    ret = records.retract(friend.identity, rec.id, ts=T + 41)  # (a record the table lacks)
    me.ingest(friend.put(ret))
    assert me.ingest(other_epoch.put(ret)) == "applied"
    assert seen[-1] == ret.id
    # Written out of time order (the tally sorts an author's times when it must).
    for ts in (T + 30, T + 20, T + 60):
        me.ingest(friend.put(records.memory(friend.identity, f"f{ts}", category="c", ts=ts)))
    check(me, views)

    # The friend revokes itself at T + 45: its records up to then still count.
    me.ingest(friend.put(records.revoke(friend.identity, friend.id, ts=T + 70, at=T + 45)))
    want = check(me, views)
    assert friend.id not in views.trust()
    assert friend.id in views.trust().cutoffs
    # f-twice (T+40), its retraction (T+41), f30, f20; not f-first, f60, the revoke
    assert want["trusted"] == 5 + 4
    # More of its records after the cutoff, before and after it: the sort again.
    me.ingest(friend.put(records.memory(friend.identity, "f-late", category="c", ts=T + 80)))
    me.ingest(friend.put(records.memory(friend.identity, "f-early", category="c", ts=T + 1)))
    assert check(me, views)["trusted"] == 5 + 5

    # A key rotation: the successor is trusted through the record, and its writes count.
    new = Identity.generate()
    me.rotate(new)
    me.put(records.memory(me.identity, "after rotation", category="learning", ts=T + 90))
    check(me, views)

    # Lookups that once decoded every record (show, retract): the same answers.
    held = me.records()
    for rid, rec in held.items():
        assert resolve_record(me, rid[:10]) == rid
        want_kind = resolve_record(me, rid, kind="memory") if rec.kind == "memory" else None
        assert want_kind in (None, rid)
        assert views.retractions(rid, rec.author) == sorted(
            o.id for o in held.values()
            if o.kind == "retract" and o.author == rec.author and o.fields.get("target") == rid
        )  # fmt: skip
    assert views.retractions(first_id, held[first_id].author) != []  # (its old key)
    views.close()


def test_a_reopened_replica_counts_the_same(open_replica, tmp_path):
    me = open_replica("me")
    views = Views(me)
    stranger = Writer()
    for i in range(5):
        me.put(records.memory(me.identity, f"m{i}", category="c", ts=T + i))
        me.ingest(stranger.put(records.memory(stranger.identity, f"s{i}", category="c",
                                              ts=T + i)))  # fmt: skip
    want = check(me, views)
    assert want["trusted"] == 5 and sum(want["records_by_kind"].values()) == 10
    views.rebuild()
    assert views.held() == want
    views.close()
