"""Every ingest rule, each with a hand-built malicious update (invariants 1-6).

Each attack is rejected with a typed error naming its rule, and the victim replica's
document, store and views are byte-for-byte unchanged afterwards.
"""

from __future__ import annotations

import dataclasses

import pycrdt
import pytest
from pycrdt import Map

from crdt import Identity, RejectedUpdate, SignedRecord, UpdateError, records
from crdt.updates import SignedUpdate, derive_client
from tests.forge import (
    Writer,
    capture,
    clock_of,
    fingerprint,
    nested_memory,
    put_unparsed,
    signed,
    with_delete_set,
)

TS = 1_790_000_000_000


def memory(ident: Identity, text: str = "Provider X drops requests at 03:00 UTC") -> SignedRecord:
    return records.memory(ident, text, category="anti-pattern", subject="provider:x", ts=TS)


@pytest.fixture
def victim(open_replica):
    """A replica holding one honest memory and one breaker of its own."""
    r = open_replica("victim")
    r.put(memory(r.identity, "honest lesson"))
    r.put(records.breaker(r.identity, "kimi-coding/k2p5", state="open", ts=TS, reason="503"))
    return r


def assert_rejected(replica, update, rule: str) -> RejectedUpdate:
    before = fingerprint(replica)
    with pytest.raises(RejectedUpdate) as err:
        replica.ingest(update)
    assert err.value.rule == rule, err.value
    assert fingerprint(replica) == before
    return err.value


def test_honest_update_is_applied(victim):
    w = Writer()
    assert victim.ingest(w.put(memory(w.identity))) == "applied"
    assert any(r.author == w.id for r in victim.records().values())


def test_the_gate_builds_whole_objects(victim):
    """What the gate builds without ``__init__`` (``crdt.frozen.built``) has every field
    and compares equal to the same object built the usual way."""
    w = Writer()
    rec = memory(w.identity)
    su = w.put(rec)
    decoded = SignedUpdate.decode(su.raw)
    header = type(su.header)(**dataclasses.asdict(decoded.header))
    assert header == decoded.header == su.header
    assert SignedUpdate(su.header_bytes, su.sig, su.update, header) == decoded
    assert decoded.raw == su.raw
    parsed = SignedRecord.from_value(rec.to_value())
    assert parsed == rec and parsed.fields == rec.fields and parsed.sig_text == rec.sig_text
    (out,) = victim.ingest_batch([su.raw])
    assert dataclasses.asdict(out)["status"] == "applied"
    (row,) = [u for u in victim._store.iter_updates() if u.author == w.id]
    assert (row.client, row.start, row.end, row.raw) == (
        su.client, su.header.start, su.header.end, su.raw)  # fmt: skip


def test_bad_header_signature(victim):
    w = Writer()
    su = w.put(memory(w.identity))
    forged = SignedUpdate(su.header_bytes, bytes(64), su.update, su.header)
    assert_rejected(victim, forged, "header-signature")


def test_body_edited_after_signing(victim):
    """A record whose own signature does not verify, in an update its author signed: only
    that author can make one (the header signature covers the bytes, record-author the
    author), so the gate takes it on the header's word (issue 18) and readers that show
    the record alone say its signature does not verify."""
    w = Writer()
    rec = memory(w.identity)
    edited = SignedRecord(rec.body.replace(b"03:00", b"04:00"), rec.sig)
    su = w.write(lambda d: d["records"].__setitem__(edited.id, edited.to_value()))
    assert victim.ingest(su) == "applied"
    held = victim.get(edited.id)
    assert held is not None and held.author == w.id
    with pytest.raises(records.RecordError, match="does not verify"):
        held.verify()


def test_body_edited_by_another_author_is_refused(victim):
    """The same edited record relayed in another author's signed update: record-author."""
    w, relay = Writer(), Writer()
    rec = memory(w.identity)
    edited = SignedRecord(rec.body.replace(b"03:00", b"04:00"), rec.sig)
    su = relay.write(lambda d: d["records"].__setitem__(edited.id, edited.to_value()))
    assert_rejected(victim, su, "record-author")


@pytest.mark.parametrize("sig", [b"", b"\x00" * 63, b"\x00" * 65])
def test_record_sig_of_the_wrong_length(victim, sig):
    w = Writer()
    value = {"body": memory(w.identity).body.decode(), "sig": records.b64url(sig)}
    su = w.write(lambda d: d["records"].__setitem__(records.content_id(value["body"].encode()),
                                                      value))  # fmt: skip
    assert_rejected(victim, su, "record-invalid")


def test_update_bytes_edited_after_signing(victim):
    w = Writer()
    su = w.put(memory(w.identity))
    tampered = SignedUpdate(
        su.header_bytes, su.sig, su.update.replace(b"03:00", b"04:00"), su.header
    )
    assert_rejected(victim, tampered, "digest")


def test_record_claiming_another_author(victim):
    w = Writer()
    other = memory(victim.identity, "written by the victim, relayed by w")
    su = w.put(other)  # valid record, but w's update: w may not write victim's records
    assert_rejected(victim, su, "record-author")


def test_key_is_not_the_content_id(victim):
    w = Writer()
    rec = memory(w.identity)
    su = w.write(lambda d: d["records"].__setitem__("0" * 64, rec.to_value()))
    assert_rejected(victim, su, "content-id")


def test_overwrite_of_an_immutable_record(victim):
    (key, honest) = next(iter(victim.records().items()))
    # Another author overwrites the victim's record with its own body at the same key.
    w = Writer()
    w.sync_from(victim)
    su = w.write(lambda d: d["records"].__setitem__(key, memory(w.identity).to_value()))
    assert_rejected(victim, su, "foreign-origin")  # its item continues the victim's
    # The author itself may not overwrite its own record either (even with the same value).
    me = Writer(victim.identity, epoch=victim.epoch)
    me.sync_from(victim)
    su = me.write(lambda d: d["records"].__setitem__(key, honest.to_value()))
    assert_rejected(victim, su, "record-overwrite")


def test_deletion_of_a_record(victim):
    key = next(iter(victim.records()))
    me = Writer(victim.identity, epoch=victim.epoch)
    me.sync_from(victim)
    su = me.write(
        lambda d: (
            d["records"].pop(key),
            d["state"].__setitem__(*_breaker_kv(victim.identity, "other")),
        )
    )
    assert_rejected(victim, su, "record-delete")


def test_deletion_via_delete_set_only(victim):
    """A bare delete-set entry naming the author's own record item."""
    me = Writer(victim.identity, epoch=victim.epoch)
    me.sync_from(victim)
    start = clock_of(me.doc, me.client)
    upd = capture(me.doc, lambda d: d["state"].__setitem__(*_breaker_kv(victim.identity, "x")))
    upd = with_delete_set(upd, {me.client: ((0, 1),)})  # clock 0 is the victim's memory
    su = signed(victim.identity, upd, epoch=me.epoch, start=start, end=start + 1)
    assert_rejected(victim, su, "record-delete")


def _breaker_kv(ident: Identity, name: str, state: str = "open") -> tuple[str, dict]:
    rec = records.breaker(ident, name, state=state, ts=TS)
    return rec.doc_key()[1], rec.to_value()


def test_another_author_writes_someones_state_key(victim):
    w = Writer()
    w.sync_from(victim)
    key = next(iter(victim.state()))
    # w signs a breaker of its own but stores it under the victim's state key.
    _, value = _breaker_kv(w.identity, "kimi-coding/k2p5", "closed")
    su = w.write(lambda d: d["state"].__setitem__(key, value))
    assert_rejected(victim, su, "foreign-origin")
    # Same, for a key the victim has not written yet (no origin to trip over).
    fresh = Writer()
    key2 = f"breaker:{victim.author}:new-breaker"
    _, value2 = _breaker_kv(fresh.identity, "new-breaker")
    assert_rejected(
        victim, fresh.write(lambda d: d["state"].__setitem__(key2, value2)), "state-namespace"
    )


def test_update_carrying_structs_of_a_second_client(victim):
    w = Writer()
    other = Writer()
    mine = w.put(memory(w.identity, "mine"))
    theirs = other.put(memory(other.identity, "theirs"))
    both = pycrdt.merge_updates(mine.update, theirs.update)
    su = signed(w.identity, both, epoch=w.epoch, start=0, end=1)
    assert_rejected(victim, su, "foreign-struct")


def test_client_id_not_derived_from_author(victim):
    w = Writer()
    squat = derive_client(victim.author, victim.epoch)  # the victim's own client id
    d = pycrdt.Doc(client_id=squat)
    d.get("records", type=Map)
    rec = memory(w.identity)
    upd = capture(d, lambda d: d["records"].__setitem__(rec.id, rec.to_value()))
    su = signed(w.identity, upd, epoch=w.epoch, start=0, end=1, client=squat)
    assert_rejected(victim, su, "client-binding")


def test_pre_delete_attack(open_replica):
    """A delete set naming another writer's future clock is refused, and that writer's
    real record, arriving afterwards, is stored and readable."""
    honest = open_replica("honest")
    reader = open_replica("reader")
    attacker = Writer()
    next_clock = honest.state_vector().get(honest.client, 0)
    upd = capture(
        attacker.doc, lambda d: d["state"].__setitem__(*_breaker_kv(attacker.identity, "decoy"))
    )
    upd = with_delete_set(upd, {honest.client: ((next_clock, 1),)})
    su = signed(attacker.identity, upd, epoch=attacker.epoch, start=0, end=1)
    assert_rejected(reader, su, "foreign-delete")
    # Claiming the victim's epoch as one of "its own" does not help: the client is derived.
    su2 = signed(
        attacker.identity, upd, epoch=attacker.epoch, start=0, end=1, epochs=(honest.epoch,)
    )
    assert_rejected(reader, su2, "foreign-delete")
    # Without our gate this 6-byte delete would silently swallow the record (DESIGN.md).
    plain = pycrdt.Doc()
    plain.apply_update(b"\x00" + bytes([1]) + _varuint(honest.client) + b"\x01\x00\x01")
    # The honest record arrives later and is there.
    su_honest = honest.put(memory(honest.identity, "the real lesson"))
    assert reader.ingest(su_honest) == "applied"
    texts = [r.fields["text"] for r in reader.records().values()]
    assert texts == ["the real lesson"]


def _varuint(n: int) -> bytes:
    from crdt.wire import encode_varuint

    return encode_varuint(n)


def test_extra_root_type(victim):
    w = Writer()
    rec = memory(w.identity)
    su = w.write(lambda d: d.get("evil", type=Map).__setitem__(rec.id, rec.to_value()))
    assert_rejected(victim, su, "root")


def test_nested_shared_type(victim):
    w = Writer()
    key = f"breaker:{w.id}:nested"
    su = w.write(lambda d: d["state"].__setitem__(key, Map({"state": "open"})))
    assert_rejected(victim, su, "content-type")


def test_sequence_content_in_a_root(victim):
    """Text or array content hung off a root map is invisible to map readers: refused."""
    w = Writer()
    su = w.write(lambda d: d.get("records", type=pycrdt.Text).insert(0, "smuggled"))
    assert_rejected(victim, su, "content-type")
    w2 = Writer()
    su2 = w2.write(lambda d: d.get("state", type=pycrdt.Array).append({"body": "x"}))
    assert_rejected(victim, su2, "map-only")


def test_garbage_yjs_bytes_under_a_valid_signature(victim):
    w = Writer()
    su = signed(w.identity, b"\x01\x05\xff\xff", epoch=w.epoch, start=0, end=1)
    before = fingerprint(victim)
    with pytest.raises(UpdateError):
        victim.ingest(su)
    assert fingerprint(victim) == before


def test_oversize_update(open_replica):
    from crdt import ReplicaLimits
    from crdt.updates import StructureLimits

    small = ReplicaLimits(structure=StructureLimits(max_update_bytes=1024))
    r = open_replica("small")
    r.limits = small
    w = Writer()
    su = w.put(memory(w.identity, "x" * 2000))
    assert_rejected(r, su, "oversize")


def test_oversize_record_body_is_refused_when_signing():
    from crdt import RecordError

    with pytest.raises(RecordError, match="over the 16384"):
        memory(Identity.generate(), "x" * 17000)


def test_oversize_record_body_in_an_update(victim):
    """A >16 KiB body signed by hand (bypassing our constructor) is refused at ingest."""
    w = Writer()
    body = records.canonical(
        {
            "v": 1,
            "kind": "memory",
            "author": w.id,
            "ts": TS,
            "category": "learning",
            "text": "y" * 17000,
        }
    )
    rec = SignedRecord(body, w.identity.sign(body))
    su = w.write(lambda d: d["records"].__setitem__(rec.id, rec.to_value()))
    assert_rejected(victim, su, "record-invalid")


def test_state_record_in_the_records_map(victim):
    w = Writer()
    rec = records.breaker(w.identity, "b", state="open", ts=TS)
    su = w.write(lambda d: d["records"].__setitem__(rec.id, rec.to_value()))
    assert_rejected(victim, su, "state-kind")


def test_state_key_name_must_match_the_record(victim):
    w = Writer()
    rec = records.breaker(w.identity, "real-name", state="open", ts=TS)
    su = w.write(lambda d: d["state"].__setitem__(f"breaker:{w.id}:other-name", rec.to_value()))
    assert_rejected(victim, su, "state-key")


def test_non_record_value(victim):
    w = Writer()
    su = w.write(lambda d: d["state"].__setitem__(f"breaker:{w.id}:x", "just a string"))
    assert_rejected(victim, su, "record-invalid")


def test_out_of_order_updates_wait_outside_the_document(victim):
    w = Writer()
    first = w.put(memory(w.identity, "one"))
    second = w.put(memory(w.identity, "two"))
    before = fingerprint(victim)
    assert victim.ingest(second) == "buffered"
    assert fingerprint(victim) == before  # nothing pending inside the document
    assert victim.pending_count == 1
    assert victim.ingest(first) == "applied"
    assert victim.pending_count == 0
    texts = sorted(r.fields["text"] for r in victim.records().values() if r.author == w.id)
    assert texts == ["one", "two"]


def test_rejected_update_in_a_batch_leaves_the_rest(victim):
    w = Writer()
    good1 = w.put(memory(w.identity, "good one"))
    bad = Writer().put(memory(victim.identity, "claims victim"))
    good2 = w.put(memory(w.identity, "good two"))
    outs = victim.ingest_batch([good1, bad, good2])
    assert [o.status for o in outs] == ["applied", "rejected", "applied"]
    assert outs[1].error.rule == "record-author"


def test_unknown_fields_and_kinds_are_relayed_byte_exactly(open_replica):
    a, b, c = open_replica("a"), open_replica("b"), open_replica("c")
    body = (
        b'{"author":"' + a.author.encode() + b'","future_field":{"z":1,"a":[1,2]},'
        b'"kind":"premonition","text":"\\u00e9t\xc3\xa9","ts":1790000000000,"v":7}'
    )
    rec = SignedRecord(body, a.identity.sign(body))
    a.put(rec)
    b.ingest_batch(a.updates_for(b.state_vector()))
    c.ingest_batch(b.updates_for(c.state_vector()))  # relayed by b, never re-encoded
    assert c.records()[rec.id].body == body
    assert b.updates_for({}) == a.updates_for({}) == c.updates_for({})


# -- deeply nested bodies (issue 17 item 1) ----------------------------------------------


def test_a_deeply_nested_body_is_refused_and_the_rest_of_its_batch_applies(open_replica):
    """A body nesting ~980 levels once parsed in the gate (at a test's stack depth) and
    then broke the main document's observer, a few frames deeper: the batch was durable
    in the store but the honest update after it was missing from the document, the state
    vector and recall. Where that window lies depends on the caller's stack, so this walks
    the nesting through it: each body past the limit is refused by name, whatever the
    stack, and the rest of its batch applies everywhere at once."""
    from crdt.views import Views

    victim = open_replica("victim")
    seen: list[str] = []
    victim.on_change(lambda root, key, rec: seen.append(key))
    views = Views(victim)
    depths = range(800, 1000, 2)
    try:
        for depth in depths:
            mallory, honest = Writer(), Writer()
            text = f"honest lesson {depth}"
            rec = records.memory(honest.identity, text, category="learning", ts=TS)
            batch = [put_unparsed(mallory, nested_memory(mallory, depth)), honest.put(rec)]
            outs = victim.ingest_batch(batch)
            assert [o.status for o in outs] == ["rejected", "applied"], outs
            assert outs[0].error.rule in ("record-depth", "record-invalid")  # TEMP
            assert rec.id in victim.records() and rec.id in seen
            assert victim.get(rec.id) == rec
            sv = victim.state_vector()
            assert sv.get(honest.client) == 1 and mallory.client not in sv
            hits = views.recall(text, include_untrusted=True).hits
            assert [h.id for h in hits if h.author == honest.id] == [rec.id]
            # The same author's next update builds on the refused one: it waits outside
            # the document (invariant 4), it is never half-applied.
            after = mallory.put(records.memory(mallory.identity, text, category="c", ts=TS))
            assert victim.ingest(after) == "buffered"
    finally:
        views.close()
    assert victim.rejected["record-depth"] == len(depths)


def test_a_body_at_the_nesting_limit_is_accepted(victim):
    from crdt.records import MAX_BODY_DEPTH

    w = Writer()
    at_limit = nested_memory(w, MAX_BODY_DEPTH)
    assert victim.ingest(put_unparsed(w, at_limit)) == "applied"
    assert victim.records()[at_limit.id].body == at_limit.body
    err = assert_rejected(victim, put_unparsed(w, nested_memory(w, MAX_BODY_DEPTH + 1)),
                          "record-depth")  # fmt: skip
    assert f"{MAX_BODY_DEPTH}" in err.detail
    # Brackets inside strings are text, not nesting.
    w = Writer()
    body = records.canonical({"v": 1, "kind": "memory", "author": w.id, "ts": TS,
                              "text": "[" * 5000 + '\\"{'})  # fmt: skip
    texty = SignedRecord(body, w.identity.sign(body))
    assert victim.ingest(put_unparsed(w, texty)) == "applied"


def test_a_deeply_nested_body_is_refused_when_signing():
    from crdt import RecordError

    w = Writer()
    records.sign(w.identity, "memory", {"deep": _nested_list(31)}, ts=TS)  # 32 with the body
    with pytest.raises(RecordError, match="nests"):
        records.sign(w.identity, "memory", {"deep": _nested_list(40)}, ts=TS)
    with pytest.raises(RecordError, match="not plain JSON"):  # past the encoder's stack
        records.sign(w.identity, "memory", {"deep": _nested_list(5000)}, ts=TS)


def _nested_list(depth: int) -> list:
    out: list = []
    for _ in range(depth - 1):
        out = [out]
    return out
