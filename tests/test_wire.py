"""The Yjs update reader (``crdt.wire``) against real pycrdt, and fuzzing of every decoder
that stands in front of the gate.

1. Whatever pycrdt writes, ``scan`` reads: every transaction update of random edits
   (plain values, overwrites, deletes, Text/Array roots, nested shared types, syncs between
   two documents), their merge and a whole-document update. The structs are contiguous per
   client and add up to the state-vector advance, and the delete set is exactly what
   pycrdt's own decoder leaves after removing the structs (the gate's second opinion).
2. The values the gate reads from an update's bytes (``Struct.values``, what it checks
   records on) are the values pycrdt stores from the same bytes — valid or mutated.
3. Junk in, ``UpdateError``/``RecordError``/``GossipError`` out — never an IndexError,
   ValueError, RecursionError or a pyo3 panic — and a replica that refuses an update is
   left byte-for-byte unchanged (invariant 6), alone or in the middle of a batch.
"""

from __future__ import annotations

import contextlib
import json
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

import pycrdt
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from pycrdt import Array, Doc, Map, Text

from crdt import (
    GossipError,
    Identity,
    RecordError,
    Replica,
    SignedUpdate,
    UpdateError,
    records,
    wire,
)
from crdt.updates import MAX_CLIENT, sign_update
from tests.forge import fingerprint, with_delete_set

SETTINGS = settings(
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

# --- pycrdt values and edits ------------------------------------------------------------

texts = st.text(st.characters(codec="utf-8"), max_size=6)  # astral chars: UTF-16 lengths
leaves = (
    st.none()
    | st.booleans()
    # pycrdt panics past i64, and writes i64::MAX as the float32 2**63 (lossy: the local
    # doc still says 2**63-1); record values are strings, so neither matters to the gate.
    | st.integers(-(2**63), 2**63 - 2)
    | st.floats(allow_nan=False)
    | texts
    | st.binary(max_size=6)
)
values = st.recursive(
    leaves,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(texts, inner, max_size=3),
    max_leaves=6,
)
keys = st.sampled_from(["a", "b", "c", "kind:author:name", "", "é😀"])
roots = st.sampled_from(["records", "state"])
picks = st.integers(0, 2**16)  # "which one" (modulo whatever exists at that moment)

ops = st.one_of(
    st.tuples(st.just("set"), roots, keys, values),
    st.tuples(st.just("del"), roots, picks),
    st.tuples(st.just("set-map"), roots, keys, st.dictionaries(texts, values, max_size=2)),
    st.tuples(st.just("set-array"), roots, keys, st.lists(values, max_size=3)),
    st.tuples(st.just("set-text"), roots, keys, texts),
    st.tuples(st.just("nested-set"), picks, keys, values),
    st.tuples(st.just("nested-del"), picks, picks),
    st.tuples(st.just("text-insert"), picks, texts.filter(bool)),
    st.tuples(st.just("text-delete"), picks, st.integers(1, 4)),
    st.tuples(st.just("array-insert"), picks, values),
    st.tuples(st.just("array-insert-type"), picks, st.sampled_from(["map", "array", "text"])),
    st.tuples(st.just("array-delete"), picks, st.integers(1, 3)),
)
# A step: one local transaction of several edits on doc 0 or 1, or a sync between them.
steps = st.one_of(
    st.tuples(st.just("txn"), st.integers(0, 1), st.lists(ops, min_size=1, max_size=5)),
    st.tuples(st.just("sync"), st.integers(0, 1), st.none()),
)


def _boundaries(s: str) -> list[int]:
    """pycrdt's Text indexes UTF-8 bytes: the offsets that fall between characters."""
    out, pos = [0], 0
    for ch in s:
        pos += len(ch.encode("utf-8"))
        out.append(pos)
    return out


def _nested_maps(doc: Doc) -> list[Map]:
    found: list[Map] = []

    def walk(node: Any) -> None:
        if isinstance(node, Map):
            for v in node.values():
                if isinstance(v, Map):
                    found.append(v)
                if isinstance(v, Map | Array):
                    walk(v)
        elif isinstance(node, Array):
            for v in node:
                if isinstance(v, Map):
                    found.append(v)
                if isinstance(v, Map | Array):
                    walk(v)

    for root in ("records", "state", "arr"):
        walk(doc[root])
    return found


def _apply_op(doc: Doc, op: tuple) -> None:
    kind = op[0]
    text: Text = doc["text"]
    arr: Array = doc["arr"]
    if kind == "set":
        doc[op[1]][op[2]] = op[3]
    elif kind == "del":
        m = doc[op[1]]
        names = sorted(m.keys())
        if names:
            del m[names[op[2] % len(names)]]
    elif kind == "set-map":
        doc[op[1]][op[2]] = Map(op[3])
    elif kind == "set-array":
        doc[op[1]][op[2]] = Array(op[3])
    elif kind == "set-text":
        doc[op[1]][op[2]] = Text(op[3])
    elif kind in ("nested-set", "nested-del"):
        maps = _nested_maps(doc)
        if maps:
            m = maps[op[1] % len(maps)]
            if kind == "nested-set":
                m[op[2]] = op[3]
            elif len(m):
                names = sorted(m.keys())
                del m[names[op[2] % len(names)]]
    elif kind == "text-insert":
        b = _boundaries(str(text))
        text.insert(b[op[1] % len(b)], op[2])
    elif kind == "text-delete":
        b = _boundaries(str(text))
        if len(b) > 1:
            i = op[1] % (len(b) - 1)
            j = min(i + op[2], len(b) - 1)
            del text[b[i] : b[j]]
    elif kind == "array-insert":
        arr.insert(op[1] % (len(arr) + 1), op[2])
    elif kind == "array-insert-type":
        shared = {"map": Map({"k": 1}), "array": Array([1, "x"]), "text": Text("hi😀")}[op[2]]
        arr.insert(op[1] % (len(arr) + 1), shared)
    elif kind == "array-delete":
        if len(arr):
            i = op[1] % len(arr)
            del arr[i : min(i + op[2], len(arr))]
    else:  # pragma: no cover
        raise AssertionError(op)


def _new_doc(client: int) -> Doc:
    d = Doc(client_id=client)
    for name, typ in (("records", Map), ("state", Map), ("text", Text), ("arr", Array)):
        d.get(name, type=typ)
    return d


def _sv(doc: Doc) -> dict[int, int]:
    return wire.decode_state_vector(doc.get_state())


_norm_ds = wire.normalize_delete_set


def check_update(
    update: bytes, before: dict[int, int], after: dict[int, int]
) -> wire.ScannedUpdate:
    """``update`` took a document from state vector ``before`` to ``after``: scan agrees."""
    scanned = wire.scan(update)
    by_client: dict[int, list[wire.Struct]] = {}
    for s in scanned.structs:
        assert s.length >= 1
        by_client.setdefault(s.client, []).append(s)
    advanced = {c for c in after if after[c] != before.get(c, 0)}
    assert set(by_client) == advanced
    for client, structs in by_client.items():
        clock = before.get(client, 0)
        for s in structs:  # one group per client, in clock order, no gaps
            assert s.clock == clock, (client, s, clock)
            clock += s.length
        assert clock == after[client]
    total = sum(s.length for s in scanned.structs)
    assert total == sum(after[c] - before.get(c, 0) for c in advanced)
    # pycrdt's decoder with every struct's client removed leaves exactly the delete set.
    sv = dict.fromkeys(by_client, MAX_CLIENT) or {0: MAX_CLIENT}
    rest = pycrdt.get_update(update, wire.encode_state_vector(sv))
    theirs = wire.scan(rest)
    assert theirs.structs == ()
    assert _norm_ds(theirs.delete_set) == _norm_ds(scanned.delete_set)
    return scanned


@settings(SETTINGS, max_examples=250)
@given(
    clients=st.lists(st.integers(0, MAX_CLIENT), min_size=2, max_size=2, unique=True),
    plan=st.lists(steps, min_size=1, max_size=10),
)
def test_scan_reads_every_pycrdt_update(clients: list[int], plan: list[tuple]) -> None:
    docs = [_new_doc(c) for c in clients]
    captured: list[list[bytes]] = [[], []]
    for i, d in enumerate(docs):
        d.observe(lambda e, i=i: captured[i].append(e.update))
    for kind, who, edits in plan:
        doc = docs[who]
        before = _sv(doc)
        n = len(captured[who])
        if kind == "txn":
            with doc.transaction():
                for op in edits:
                    _apply_op(doc, op)
        else:  # the other doc's news arrives as one remote transaction
            doc.apply_update(docs[1 - who].get_update(doc.get_state()))
        new = captured[who][n:]
        assert len(new) <= 1
        if new:
            scanned = check_update(new[0], before, _sv(doc))
            event(f"{kind}: delete set" if scanned.delete_set else f"{kind}: no deletes")
            refs = {wire.CONTENT_NAMES[s.ref] for s in scanned.structs}
            for ref in refs:
                event(f"content {ref}")
        else:
            assert _sv(doc) == before

    for i, doc in enumerate(docs):
        sv = _sv(doc)
        merged = pycrdt.merge_updates(*captured[i]) if captured[i] else b"\x00\x00"
        check_update(merged, {}, sv)
        whole = doc.get_update()
        check_update(whole, {}, sv)
        # The captured transactions are the whole document: a fresh Doc rebuilt from them
        # has the same state and content.
        fresh = _new_doc(424242)
        fresh.apply_update(merged)
        assert _sv(fresh) == sv
        for root in ("records", "state", "arr"):
            assert fresh[root].to_py() == doc[root].to_py()
        assert str(fresh["text"]) == str(doc["text"])


# --- the values the gate reads are the values pycrdt stores ------------------------------
# The gate checks each record from the update's bytes (``Struct.values``), before and
# whatever Yjs does with it; yrs decodes the same bytes into the document. If the two
# readers ever disagreed, a value could pass the gate and then land as something else.


def _same(x: Any) -> Any:
    """A comparable form: bytes and bytearray alike, bool apart from numbers, NaN == NaN."""
    if isinstance(x, bytes | bytearray):
        return ("bytes", bytes(x))
    if isinstance(x, bool):
        return ("bool", x)
    if isinstance(x, float) and x != x:
        return ("nan",)
    if isinstance(x, list):
        return ("list", tuple(_same(v) for v in x))
    if isinstance(x, dict):
        return ("dict", tuple(sorted((k, _same(v)) for k, v in x.items())))
    return ("value", x)


def _one_set(value: Any) -> bytes:
    d = _new_doc(5)
    out: list[bytes] = []
    sub = d.observe(lambda e: out.append(e.update))
    d["records"]["k"] = value
    d.unobserve(sub)
    return out[0]


def check_values_match_pycrdt(update: bytes) -> bool:
    """For an update whose structs are map items of ``records``: each item's value as the
    gate decodes it equals the value pycrdt holds at its key. False if either refuses it."""
    try:
        scanned = wire.scan(update)
        fresh = _new_doc(6)
        fresh.apply_update(update)
    except (UpdateError, ValueError):
        return False
    held = fresh["records"].to_py()
    items = [s for s in scanned.structs if s.ref == wire.ANY and s.parent_sub is not None]
    if len(items) == 1:  # the key's only item: what pycrdt holds there is this item
        (s,) = items
        assert s.values is not None
        if s.parent_root == "records" and len(s.values) == 1 and s.parent_sub in held:
            assert _same(s.values[0]) == _same(held[s.parent_sub]), (s, held)
    return True


@settings(SETTINGS, max_examples=300)
@given(
    value=st.recursive(
        leaves | st.integers(-(2**63), 2**63 - 1),
        lambda inner: st.lists(inner, max_size=3) | st.dictionaries(texts, inner, max_size=3),
        max_leaves=8,
    )
)
def test_scanned_values_equal_what_pycrdt_stores(value: Any) -> None:
    assert check_values_match_pycrdt(_one_set(value))


# --- fuzzing the decoders ----------------------------------------------------------------


def _yjs_corpus() -> list[bytes]:
    """Valid updates of every shape the reader knows: plain values, overwrites, deletes,
    sequences, nested types, two clients, merged and whole-document updates."""
    a, b = _new_doc(7), _new_doc(2**53 - 1)
    out: list[bytes] = []
    a.observe(lambda e: out.append(e.update))
    b.observe(lambda e: out.append(e.update))
    with a.transaction():
        a["records"]["k1"] = {"body": '{"v":1}', "sig": "abc"}
        a["records"]["k2"] = [1, 2.5, None, True, "x😀", b"\x00\xff", {"deep": [[-(2**40)]]}]
        a["state"]["s"] = 2**62
    with a.transaction():
        a["records"]["k1"] = "overwritten"
        del a["records"]["k2"]
    with b.transaction():
        b["text"].insert(0, "héllo 😀 wörld")
        b["arr"].insert(0, [1, "two", b"3"])
        b["state"]["nested"] = Map({"x": Text("t"), "y": Array([1])})
    b.apply_update(a.get_update())
    with b.transaction():
        b["records"]["k1"] = "b wins"
        del b["text"][0:3]  # "hé": pycrdt counts UTF-8 bytes
        b["arr"].insert(1, Map({"m": 1}))
        b["state"]["nested"]["x"] += "more"
    out.append(pycrdt.merge_updates(*out))
    out.append(a.get_update())
    out.append(b.get_update())
    out.append(b.get_update(a.get_state()))
    out.append(with_delete_set(out[0], {5: ((0, 3), (9, 1)), 2**40: ((2**50, 2),)}))
    return out


YJS_CORPUS = _yjs_corpus()

mutations = st.lists(
    st.tuples(
        st.sampled_from(["flip", "truncate", "insert", "delete", "set", "dup"]),
        st.integers(0, 2**16),
        st.binary(min_size=1, max_size=6),
    ),
    min_size=1,
    max_size=4,
)


def mutate(data: bytes, muts: list[tuple[str, int, bytes]]) -> bytes:
    out = bytearray(data)
    for kind, pos, extra in muts:
        i = pos % (len(out) + 1)
        if kind == "flip" and out:
            out[i % len(out)] ^= 1 << (extra[0] % 8)
        elif kind == "truncate":
            del out[i:]
        elif kind == "insert":
            out[i:i] = extra
        elif kind == "delete":
            del out[i : i + 1 + extra[0] % 8]
        elif kind == "set" and out:  # varuint and tag boundaries
            out[i % len(out)] = (0x00, 0x01, 0x7F, 0x80, 0xFF, extra[0])[extra[0] % 6]
        elif kind == "dup":
            out[i:i] = out[i : i + 1 + extra[0] % 16]
    return bytes(out)


def scan_or_update_error(data: bytes) -> wire.ScannedUpdate | None:
    try:
        return wire.scan(data)
    except UpdateError:
        return None


@settings(SETTINGS, max_examples=600)
@given(data=st.binary(max_size=200))
def test_scan_random_bytes(data: bytes) -> None:
    scan_or_update_error(data)


@settings(SETTINGS, max_examples=1000)
@given(base=st.sampled_from(YJS_CORPUS), muts=mutations)
def test_scan_mutated_updates(base: bytes, muts: list) -> None:
    scan_or_update_error(mutate(base, muts))


SINGLE_SETS = [
    _one_set(v)
    for v in (
        {"body": '{"v":1,"kind":"memory","author":"x"}', "sig": "c2ln"},
        [1, 2.5, None, True, "x😀", b"\x00\xff", {"deep": [[-(2**40)]]}],
        2**62,
        2**63 - 1,
        -5,
        1.5,
        "str",
    )
]


@settings(SETTINGS, max_examples=2000)
@given(base=st.sampled_from(SINGLE_SETS), muts=mutations)
def test_scanned_values_of_mutated_updates_equal_what_pycrdt_stores(
    base: bytes, muts: list
) -> None:
    event("both read it" if check_values_match_pycrdt(mutate(base, muts)) else "refused")


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"\x00",
        b"\xff" * 12,  # a varuint past 64 bits
        b"\x01\xff\xff\xff\xff\x0f",  # a huge struct count
        b"\x01\x01\x01\x00\x28\x01\x07records\x01k\xff\xff\xff\xff\x0f",  # a huge Any count
        # an Any value nested deeper than the limit: [[[[...]]]]
        b"\x01\x01\x01\x00\x28\x01\x07records\x01k\x01" + b"\x75\x01" * 5000 + b"\x7e\x00",
        b"\x00\x01\x01\x01\x00\x00\x00",  # trailing bytes after the delete set
        b"\x00\x02\x05\x00\x05\x00",  # a delete set naming one client twice
    ],
)
def test_scan_edge_cases_raise_update_error(data: bytes) -> None:
    with pytest.raises(UpdateError):
        wire.scan(data)


# Signed updates and records from real replicas, with every content kind and both epochs.

CLOCK = iter(range(1_790_000_000_000, 1_800_000_000_000))


def _now() -> int:
    return next(CLOCK)


@contextmanager
def _replicas(*idents: Identity) -> Iterator[list[Replica]]:
    with tempfile.TemporaryDirectory(prefix="sm-wire-") as tmp:
        reps = [
            Replica.open(Path(tmp) / f"r{i}", ident, now_ms=_now) for i, ident in enumerate(idents)
        ]
        try:
            yield reps
        finally:
            for r in reps:
                r.close()


def _honest_history() -> tuple[list[SignedUpdate], dict[str, Identity]]:
    """A causal sequence of signed updates from three stores (two share a key)."""
    alice, bob = Identity.generate(), Identity.generate()
    out: list[SignedUpdate] = []
    with _replicas(alice, bob, alice) as (a, b, a2):

        def put(r: Replica, *recs: records.SignedRecord) -> None:
            su = r.put(*recs)
            assert su is not None
            out.append(su)
            for other in (a, b, a2):
                if other is not r:
                    other.ingest(su.raw)

        put(
            a,
            records.memory(
                alice,
                "Provider X drops requests at 03:00 UTC",
                category="anti-pattern",
                subject="provider:x",
                tags=["p"],
                ts=_now(),
            ),
        )
        put(
            a,
            records.breaker(
                alice, "kimi-coding/k2p5", state="open", reason="5xx", failures=3, ts=_now()
            ),
        )
        put(
            b,
            records.benchmark(
                bob, "provider:x", "latency_ms", summary={"p50": 12.5}, unit="ms", ts=_now()
            ),
        )
        put(a, records.breaker(alice, "kimi-coding/k2p5", state="half_open", ts=_now()))
        put(
            a2, records.breaker(alice, "kimi-coding/k2p5", state="closed", ts=_now())
        )  # other epoch
        put(
            b,
            records.memory(bob, "use retries", category="learning", ts=_now()),
            records.host(bob, name="bob", addrs=["10.0.0.2"], port=7946, protocol=1, ts=_now()),
        )
        put(a, records.retract(alice, out[0].header.digest, ts=_now()))
        put(a, records.breaker(alice, "kimi-coding/k2p5", state="open", ts=_now()))
    return out, {alice.public_id: alice, bob.public_id: bob}


HISTORY, IDENTITIES = _honest_history()
SIGNED_CORPUS = [su.raw for su in HISTORY]


@settings(SETTINGS, max_examples=300)
@given(data=st.binary(max_size=300))
def test_signed_update_decode_random_bytes(data: bytes) -> None:
    with contextlib.suppress(UpdateError):
        SignedUpdate.decode(data)


@settings(SETTINGS, max_examples=500)
@given(base=st.sampled_from(SIGNED_CORPUS), muts=mutations)
def test_signed_update_decode_mutated(base: bytes, muts: list) -> None:
    with contextlib.suppress(UpdateError):
        SignedUpdate.decode(mutate(base, muts))


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=10),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=4)
    ),
    max_leaves=12,
)
VALID_RECORD = records.memory(Identity.generate(), "a lesson", category="learning", ts=1)
body_fields = st.fixed_dictionaries(
    {},
    optional={
        "v": json_values | st.integers(-2, 3),
        "kind": json_values | st.sampled_from(["memory", "breaker", "a:b", ""]),
        "author": json_values
        | st.just(VALID_RECORD.author)
        | st.text(alphabet="-_aA0=", max_size=44),
        "ts": json_values | st.integers(-5, 2**70),
        "text": json_values,
    },
)


@st.composite
def record_values(draw: st.DrawFn) -> object:
    choice = draw(st.integers(0, 3))
    if choice == 0:
        return draw(json_values)
    body: Any
    if choice == 1:
        body = json.dumps(draw(body_fields))
    elif choice == 2:
        body = draw(
            st.text(max_size=40)
            | st.just("[" * 100_000)
            | st.just("[" * 15_000)
            | st.just('{"v":' + "9" * 5000 + "}")
        )
    else:
        body = mutate(VALID_RECORD.body, draw(mutations)).decode("utf-8", "surrogateescape")
    sig = draw(
        st.just(VALID_RECORD.to_value()["sig"])
        | st.text(max_size=90)
        | st.text(alphabet="ABCabc012-_=+/", max_size=90)
        | json_values
    )
    value: dict[Any, Any] = {"body": body, "sig": sig}
    extra = draw(st.dictionaries(st.text(max_size=4) | st.integers(), json_values, max_size=1))
    value.update(extra)
    return value


@settings(SETTINGS, max_examples=600)
@given(value=record_values())
def test_record_from_value_fuzz(value: object) -> None:
    try:
        rec = records.SignedRecord.from_value(value)
    except RecordError:
        return
    with contextlib.suppress(RecordError):  # parsed: verifying says yes or RecordError
        rec.verify()


def test_record_from_value_accepts_the_real_thing() -> None:
    rec = records.SignedRecord.from_value(VALID_RECORD.to_value())
    rec.verify()
    assert rec == VALID_RECORD


# --- a replica refusing junk stays unchanged ----------------------------------------------


@st.composite
def forged_variants(draw: st.DrawFn) -> tuple[int, bytes]:
    """(index into HISTORY, bytes to offer): a mutation of the signed frame, or of the Yjs
    update and/or header re-signed by the real author (an authenticated but hostile peer)."""
    i = draw(st.integers(0, len(HISTORY) - 1))
    su = HISTORY[i]
    how = draw(st.sampled_from(["raw", "yjs", "header", "delete-set"]))
    if how == "raw":
        return i, mutate(su.raw, draw(mutations))
    h = su.header
    update = su.update
    fields: dict[str, Any] = {"start": h.start, "end": h.end, "epochs": h.epochs}
    if how == "yjs":
        update = mutate(update, draw(mutations))
    elif how == "delete-set":
        client = draw(st.sampled_from([h.client, *(x.client for x in HISTORY), 12345]))
        clock = draw(st.integers(0, h.end + 2))
        update = with_delete_set(update, {client: ((clock, draw(st.integers(1, 3))),)})
    else:
        fields = {
            "start": max(0, h.start + draw(st.integers(-2, 2))),
            "end": max(0, h.end + draw(st.integers(-2, 2))),
            "epochs": tuple(draw(st.lists(st.integers(0, 2**52), max_size=2))),
        }
        if draw(st.booleans()):
            update = mutate(update, draw(mutations))
    ident = IDENTITIES[h.author]
    forged = sign_update(ident, epoch=h.epoch, update=update, ts=h.ts, **fields)
    if how == "header" and draw(st.booleans()):
        forged_h = replace(forged.header, checkpoint=True)
        hb = forged_h.encode()
        forged = SignedUpdate(hb, ident.sign(hb), update, forged_h)
    return i, forged.raw


@settings(SETTINGS, max_examples=400)
@given(variant=forged_variants())
def test_ingest_of_mutated_updates_raises_only_gossip_errors(variant: tuple[int, bytes]) -> None:
    i, raw = variant
    with _replicas(Identity.generate()) as (r,):
        for su in HISTORY[:i]:  # the replica holds everything the original builds on
            assert r.ingest(su.raw) == "applied"
        before = fingerprint(r)
        try:
            status = r.ingest(raw, source="fuzz")
        except GossipError as e:
            event(f"rejected: {getattr(e, 'rule', type(e).__name__)}")
            assert fingerprint(r) == before
            # still usable: the genuine update goes in afterwards
            assert r.ingest(HISTORY[i].raw) == "applied"
            return
        event(status)
        if status in ("buffered", "duplicate"):
            assert fingerprint(r) == before
        # whatever it was, offering the rest of the honest history raises nothing else
        for su in HISTORY[i:]:
            with contextlib.suppress(GossipError):
                r.ingest(su.raw)


def _content_of(r: Replica) -> tuple:
    return (
        r.state_vector(),
        {k: v.body for k, v in r.records().items()},
        {k: v.body for k, v in r.state().items()},
        sorted(r.updates_for({})),
        r.pending_count,
    )


def _reference_content() -> tuple:
    with _replicas(Identity.generate()) as (r,):
        for su in HISTORY:
            r.ingest(su.raw)
        return _content_of(r)


REFERENCE = _reference_content()


@settings(SETTINGS, max_examples=150)
@given(variant=forged_variants(), position=st.integers(0, 2**8))
def test_batch_with_a_mutated_update_commits_only_the_rest(
    variant: tuple[int, bytes], position: int
) -> None:
    """One batch: the honest history from update ``i`` on, with a mutated update somewhere
    in it. Nothing raises; when the mutation is rejected, the replica ends exactly where
    one that never saw it does (nothing of it was committed, the document agrees)."""
    i, raw = variant
    with _replicas(Identity.generate()) as (r,):
        for su in HISTORY[:i]:
            r.ingest(su.raw)
        batch = [su.raw for su in HISTORY[i:]]
        at = position % (len(batch) + 1)
        batch.insert(at, raw)
        outs = r.ingest_batch(batch, source="fuzz")
        assert len(outs) == len(batch)
        for out in outs:
            assert out.status in ("applied", "duplicate", "buffered", "rejected")
            assert (out.error is None) == (out.status != "rejected")
            assert out.error is None or isinstance(out.error, GossipError)
        if outs[at].status == "rejected":
            event(f"batch rejected: {getattr(outs[at].error, 'rule', '?')}")
            assert _content_of(r) == REFERENCE
            assert fingerprint(r)[-1]  # the document holds what the store holds
