"""Attacks found by a cold review of the gate, kept as regression tests.

Each builds raw Yjs bytes that pycrdt itself would never produce, signs them with the
attacker's own key, and checks the replica refuses them and stays unchanged.
"""

from __future__ import annotations

import itertools

import pytest

from crdt import Identity, RejectedUpdate, records
from crdt.rules import plan
from crdt.updates import derive_client, sign_update
from crdt.wire import encode_varuint as V
from crdt.wire import scan
from tests.forge import (
    Writer,
    any_item_after,
    any_item_at,
    deleted_item_at,
    fingerprint,
    ygroup,
    yupdate,
)

TS = 1_790_000_000_000


def epoch_where(ident: Identity, pred) -> int:
    return next(e for e in itertools.count(1) if pred(derive_client(ident.public_id, e)))


def refused(replica, su, rule: str) -> None:
    before = fingerprint(replica)
    with pytest.raises(RejectedUpdate) as err:
        replica.ingest(su)
    assert err.value.rule == rule, err.value
    assert fingerprint(replica) == before


def test_a_deleted_item_at_someone_elses_state_key_is_refused(open_replica):
    """An item born deleted at the victim's key, with a larger client id, would win the
    key's conflict and hide the victim's value (and block the victim's next write)."""
    victim = open_replica("victim")
    victim.put(records.breaker(victim.identity, "k2p5", state="open", ts=TS))
    key = next(iter(victim.state()))
    atk = Identity.generate()
    epoch = epoch_where(atk, lambda c: c > victim.client)
    client = derive_client(atk.public_id, epoch)
    upd = yupdate([ygroup(client, 0, [deleted_item_at("state", key)])])
    refused(victim, sign_update(atk, epoch=epoch, update=upd, start=0, end=1, ts=TS),
            "state-namespace")  # fmt: skip
    assert victim.put(records.breaker(victim.identity, "k2p5", state="closed", ts=TS + 1))


def test_a_deleted_item_under_records_is_refused(open_replica):
    r = open_replica("r")
    atk = Writer()
    upd = yupdate([ygroup(atk.client, 0, [deleted_item_at("records", "0" * 64)])])
    su = sign_update(atk.identity, epoch=atk.epoch, update=upd, start=0, end=1, ts=TS)
    refused(r, su, "record-delete")


def test_a_checkpoint_may_not_redescribe_clocks_we_hold(open_replica):
    """Clock 0 is a record here. A 'checkpoint' re-describing clock 0 as a state item and
    continuing it at clock 1 would, once yrs skips clock 0, overwrite the record."""
    r = open_replica("r")
    w = Writer()
    rec = records.memory(w.identity, "immutable", category="learning", ts=TS)
    r.ingest(w.put(rec))
    bogus = records.breaker(w.identity, "b", state="open", ts=TS)
    upd = yupdate([ygroup(w.client, 0, [
        any_item_at("state", bogus.doc_key()[1], bogus.to_value()),
        any_item_after((w.client, 0), bogus.to_value()),
    ])])  # fmt: skip
    hb = sign_update(w.identity, epoch=w.epoch, update=upd, start=0, end=2, ts=TS)
    from dataclasses import replace

    from crdt.updates import SignedUpdate

    header = replace(hb.header, checkpoint=True)
    cp = SignedUpdate(header.encode(), w.identity.sign(header.encode()), upd, header)
    refused(r, cp, "record-overwrite")
    assert r.records()[rec.id].body == rec.body
    # Without the checkpoint flag an overlapping update is refused outright.
    refused(r, hb, "clock-range")


def test_clocks_beyond_u32_never_reach_the_document(open_replica):
    r = open_replica("r")
    rebuilds = []
    reload = r._reload_document
    r._reload_document = lambda: (rebuilds.append(1), reload())
    atk = Identity.generate()
    junk = []
    for e in range(1, 6):
        c = derive_client(atk.public_id, e)
        upd = yupdate([ygroup(c, 0, [deleted_item_at("state", f"breaker:{atk.public_id}:x",
                                                     2**32 + 1)])])  # fmt: skip
        junk.append(sign_update(atk, epoch=e, update=upd, start=0, end=2**32 + 1, ts=TS))
    outs = r.ingest_batch(junk)
    assert {o.error.rule for o in outs} == {"clock-range"}
    assert rebuilds == []


def test_another_epoch_must_be_bound_to_the_author_here(open_replica):
    """``epochs`` in a header is trusted only through the replica's own bindings: a client
    id derived from the attacker's key and some epoch, but already bound to the victim
    (a 53-bit collision, simulated here by claiming the victim's client), is refused."""
    victim = open_replica("victim")
    victim.put(records.breaker(victim.identity, "b", state="open", ts=TS))
    atk = Writer()
    bindings = dict(victim._bindings)
    other = derive_client(atk.id, 999)
    bindings[other] = (victim.author, victim.epoch)  # as if the 53-bit ids collided
    delete_in_other = V(1) + V(other) + V(1) + V(0) + V(1)  # one range: clock 0, length 1
    item = deleted_item_at("state", f"breaker:{atk.id}:x")
    upd = yupdate([ygroup(atk.client, 0, [item])], delete_in_other)
    su = sign_update(atk.identity, epoch=atk.epoch, update=upd, start=0, end=1, ts=TS,
                     epochs=(999,))  # fmt: skip
    with pytest.raises(RejectedUpdate) as err:
        plan(su, scan(su.update), victim.state_vector(), victim._index, bindings)
    assert err.value.rule == "client-binding"


def test_a_received_checkpoint_never_drops_stored_history(open_replica):
    r = open_replica("r")
    a = open_replica("a")
    for i in range(3):
        a.put(records.memory(a.identity, f"m{i}", category="learning", ts=TS + i))
    r.ingest_batch(a.updates_for({}))
    cp = a.checkpoint()
    outs = r.ingest_batch([cp, cp])
    assert [o.status for o in outs] == ["duplicate", "duplicate"]
    assert len(r.updates_for({})) == 3
    r.close()
    r2 = open_replica("r")
    assert sorted(rec.fields["text"] for rec in r2.records().values()) == ["m0", "m1", "m2"]


def test_checkpoint_after_a_store_was_recreated_for_the_same_key(open_replica):
    ident = Identity.generate()
    old = open_replica("old", ident)
    first = old.put(records.breaker(ident, "b", state="open", ts=TS))
    new = open_replica("new", ident)  # same key, fresh store: a new epoch
    new.ingest(first)
    new.put(records.breaker(ident, "b", state="closed", ts=TS + 1))  # overwrites epoch 1
    cp = new.checkpoint()
    assert cp.header.epochs == (old.epoch,)
    peer = open_replica("peer")
    assert {o.status for o in peer.ingest_batch(new.updates_for({}))} == {"applied"}
    assert [r.fields["state"] for r in peer.state().values()] == ["closed"]


def test_a_waiting_flood_costs_honest_ingest_nothing(open_replica):
    """Updates buffered because they wait for another are retried only when what they
    wait for advances, and one author's flood evicts only its own entries."""
    from crdt import ReplicaLimits

    r = open_replica("r")
    r.limits = ReplicaLimits(max_pending_per_author=8)
    flood = Writer()
    ups = [flood.put(records.memory(flood.identity, f"f{i}", category="c", ts=TS))
           for i in range(30)]  # fmt: skip
    honest = Writer()
    h_ups = [honest.put(records.memory(honest.identity, f"h{i}", category="c", ts=TS))
             for i in range(2)]  # fmt: skip
    assert r.ingest(h_ups[1]) == "buffered"
    assert {o.status for o in r.ingest_batch(ups[1:])} == {"buffered"}
    assert r.pending_count == 9  # 8 of the flood, and the honest one
    assert r.ingest(h_ups[0]) == "applied"
    assert sorted(x.fields["text"] for x in r.records().values()) == ["h0", "h1"]
