"""Invariant 5, the gate is confluent: whether an update is accepted, and under which rule
it is rejected, depends only on the update and its own author's earlier updates — never
on the order in which other authors' updates arrived.

A pool of signed updates — honest ones from real replicas, hostile ones built with
``tests.forge`` — and, for random pairs and triples of them, fresh replicas that receive
them in different orders (one at a time, or as one batch). The decision per update must
be the same in every order.

The hostile writers that collide with an honest key come in two flavours: with a Yjs
client id below the victim's (their item loses the concurrent-write conflict, so Yjs
hides it and fires no map event) and above it (their item wins). A gate that reads its
verdict off map events would accept the hidden loser in one order and reject it in the
other.
"""

from __future__ import annotations

import itertools
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pycrdt import Doc, Map

from crdt import GossipError, Identity, RejectedUpdate, Replica, records
from crdt.identity import b64url
from crdt.records import canonical
from crdt.updates import SignedUpdate, derive_client
from tests.forge import Writer, signed, with_delete_set

TS = 1_790_000_000_000
BREAKER = "kimi-coding/k2p5"


class _Clock:
    def __init__(self) -> None:
        self._ticks = itertools.count(TS)

    def __call__(self) -> int:
        return next(self._ticks)


@contextmanager
def _fresh_replicas(n: int) -> Iterator[list[Replica]]:
    with tempfile.TemporaryDirectory(prefix="sm-confl-") as tmp:
        clock = _Clock()
        reps = [
            Replica.open(Path(tmp) / f"r{i}", Identity.generate(), now_ms=clock) for i in range(n)
        ]
        try:
            yield reps
        finally:
            for r in reps:
                r.close()


def _writer_ordered(victim_client: int, *, below: bool) -> Writer:
    """A hostile writer whose Yjs client id is below (or above) ``victim_client``."""
    ident = Identity.generate()
    for epoch in itertools.count(1):
        client = derive_client(ident.public_id, epoch)
        if (client < victim_client) == below:
            return Writer(ident, epoch=epoch)
    raise AssertionError("unreachable")


def _foreign_author_record(forger: Identity, claimed: str) -> dict[str, str]:
    """A memory whose body names ``claimed`` as its author, signed by ``forger``."""
    body = canonical(
        {
            "v": 1,
            "kind": "memory",
            "author": claimed,
            "ts": TS,
            "text": "forged",
            "category": "learning",
            "tags": [],
        }
    )
    return {"body": body.decode(), "sig": b64url(forger.sign(body))}


def _set(root: str, key: str, value: Any) -> Callable[[Any], None]:
    return lambda d: d[root].__setitem__(key, value)


def _build_pool(home: Path) -> list[tuple[str, bytes]]:
    """(name, signed update bytes): honest first updates and chains, and forgeries."""
    pool: list[tuple[str, bytes]] = []

    def add(name: str, su: SignedUpdate | None) -> None:
        assert su is not None
        pool.append((name, su.raw))

    clock = _Clock()
    alice, bob = Identity.generate(), Identity.generate()
    a = Replica.open(home / "a", alice, now_ms=clock)
    a2 = Replica.open(home / "a2", alice, now_ms=clock)  # alice's second store: another epoch
    b = Replica.open(home / "b", bob, now_ms=clock)
    try:
        m_a = records.memory(
            alice,
            "Provider X drops requests at 03:00 UTC",
            category="anti-pattern",
            subject="provider:x",
            ts=TS,
        )
        br_a = records.breaker(alice, BREAKER, state="open", reason="503", failures=3, ts=TS)
        br_key = br_a.doc_key()[1]
        add("honest a0: memory + breaker", a.put(m_a, br_a))
        add(
            "honest a1: breaker overwrite",
            a.put(records.breaker(alice, BREAKER, state="half_open", ts=TS + 1)),
        )
        add(
            "honest b0: memory + benchmark",
            b.put(
                records.memory(bob, "use retries", category="learning", ts=TS),
                records.benchmark(bob, "provider:x", "latency_ms", summary={"p50": 12.0}, ts=TS),
            ),
        )
        for raw in a.updates_for({}):
            a2.ingest(raw)
        add(
            "honest a2-0: other epoch overwrites the breaker",
            a2.put(records.breaker(alice, BREAKER, state="closed", ts=TS + 2)),
        )
        add(
            "honest a2-1: other epoch memory",
            a2.put(records.memory(alice, "epoch two", category="learning", ts=TS + 3)),
        )

        # Collisions with alice's keys, by writers that lose and that win the Yjs conflict.
        for below in (True, False):
            tag = "loses" if below else "wins"

            def w(below: bool = below) -> Writer:
                return _writer_ordered(a.client, below=below)

            add(f"forged ({tag}): alice's memory replayed", w().put(m_a))
            add(f"forged ({tag}): alice's breaker replayed", w().put(br_a))
            x = w()
            own = records.breaker(x.identity, BREAKER, state="closed", ts=TS)
            add(
                f"forged ({tag}): own breaker at alice's state key",
                x.write(_set("state", br_key, own.to_value())),
            )
            x = w()
            mine = records.memory(x.identity, "mine", category="learning", ts=TS)
            add(
                f"forged ({tag}): own memory at alice's content id",
                x.write(_set("records", m_a.id, mine.to_value())),
            )
            x = w()
            add(
                f"forged ({tag}): alice-authored memory signed by the forger",
                x.write(
                    _set("records", m_a.id, _foreign_author_record(x.identity, alice.public_id))
                ),
            )

        # Forgeries that collide with nothing.
        x = Writer()
        fresh = records.breaker(x.identity, "fresh", state="open", ts=TS)
        add(
            "forged: own breaker at a fresh key of alice's namespace",
            x.write(_set("state", f"breaker:{alice.public_id}:fresh", fresh.to_value())),
        )
        x = Writer()
        mine = records.memory(x.identity, "mine", category="learning", ts=TS)
        add(
            "forged: memory at a wrong content id",
            x.write(_set("records", "0" * 64, mine.to_value())),
        )
        x = Writer()
        other = records.memory(x.identity, "other", category="learning", ts=TS)
        add(
            "forged: bad record signature",
            x.write(
                _set(
                    "records", mine.id, {"body": mine.body.decode(), "sig": other.to_value()["sig"]}
                )
            ),
        )
        add("forged: junk value", Writer().write(_set("records", "k", "junk")))
        x = Writer()
        st_rec = records.breaker(x.identity, "b", state="open", ts=TS)
        add("forged: breaker in records", x.write(_set("records", st_rec.id, st_rec.to_value())))
        x = Writer()
        add("forged: another root", x.write(lambda d: d.get("other", type=Map).__setitem__("k", 1)))
        x = Writer()
        m_x = records.memory(x.identity, "squat", category="learning", ts=TS)
        squat = x.put(m_x)
        add(
            "forged: squats alice's client id",
            signed(x.identity, squat.update, epoch=x.epoch, start=0, end=1, client=a.client),
        )
        x = Writer()
        m_x = records.memory(x.identity, "pre-delete", category="learning", ts=TS)
        base = x.put(m_x)
        add(
            "forged: pre-deletes alice's next item",
            signed(
                x.identity,
                with_delete_set(base.update, {a.client: ((clock_of_replica(a), 1),)}),
                epoch=x.epoch,
                start=0,
                end=1,
            ),
        )
        x = Writer()
        x.sync_from(a)
        add(
            "forged: overwrites alice's breaker item",
            x.write(_set("state", br_key, own.to_value())),
        )
        x = Writer()
        x.sync_from(a)
        add("forged: deletes alice's memory", x.write(lambda d: d["records"].__delitem__(m_a.id)))

        # One hostile writer's own history: valid, then an overwrite of its own record.
        v = Writer()
        m_v = records.memory(v.identity, "v", category="learning", ts=TS)
        b_v = records.breaker(v.identity, "vb", state="open", ts=TS)
        add(
            "chain v0: valid memory + breaker",
            v.write(
                lambda d: (
                    d["records"].__setitem__(m_v.id, m_v.to_value()),
                    d["state"].__setitem__(b_v.doc_key()[1], b_v.to_value()),
                )
            ),
        )
        m_v2 = records.memory(v.identity, "v2", category="learning", ts=TS)
        add(
            "chain v1: valid delete of its own state key (and a memory)",
            v.write(
                lambda d: (
                    d["state"].__delitem__(b_v.doc_key()[1]),
                    d["records"].__setitem__(m_v2.id, m_v2.to_value()),
                )
            ),
        )
        add("chain v2: overwrites its own record", v.write(_set("records", m_v.id, m_v.to_value())))

        # One author, two epochs, both overwriting one key that both have: the second
        # epoch's overwrite carries a breaker whose name is not the key's. Its client is
        # above the first epoch's, so its item wins the conflict and is always visible.
        i1, j1, j2 = two_epoch_overwrites(below=False)
        add("base c0: a breaker (epoch 1)", i1)
        add("chain c1: overwrites it (epoch 1)", j1)
        add("chain c2 (wins): concurrent overwrite naming another breaker (epoch 2)", j2)
    finally:
        for r in (a, a2, b):
            r.close()
    return pool


def two_epoch_overwrites(*, below: bool) -> tuple[SignedUpdate, SignedUpdate, SignedUpdate]:
    """(i1, j1, j2): epoch 1 writes breaker key K (i1) and overwrites it (j1); epoch 2,
    having seen only i1, overwrites K concurrently with a breaker named otherwise (j2), an
    invalid value; epoch 2's client is ``below`` epoch 1's or above it."""
    carol = Identity.generate()
    e1, e2 = 1, 2
    c1 = derive_client(carol.public_id, e1)
    while (derive_client(carol.public_id, e2) < c1) != below:
        e2 += 1
    w1, w2 = Writer(carol, epoch=e1), Writer(carol, epoch=e2)
    first = records.breaker(carol, "n", state="open", ts=TS)
    key = first.doc_key()[1]
    i1 = w1.put(first)
    w2.doc.apply_update(i1.update)
    j1 = w1.put(records.breaker(carol, "n", state="closed", ts=TS + 1))
    wrong = records.breaker(carol, "another", state="open", ts=TS + 2)
    j2 = w2.write(_set("state", key, wrong.to_value()), epochs=(e1,))
    return i1, j1, j2


def _doc_content(r: Replica) -> dict[str, Any]:
    """The replica's document as plain Python, read back through a fresh pycrdt Doc."""
    d = Doc()
    maps = {root: d.get(root, type=Map) for root in ("records", "state")}
    d.apply_update(r.document_update())
    return {root: m.to_py() for root, m in maps.items()}


def clock_of_replica(r: Replica) -> int:
    return r.state_vector().get(r.client, 0)


class Pool(list):
    """(name, raw) pairs; a short repr keeps hypothesis' failure reports readable."""

    def __repr__(self) -> str:
        return f"<pool of {len(self)} updates>"


@pytest.fixture(scope="module")
def pool(tmp_path_factory: pytest.TempPathFactory) -> Pool:
    return Pool(_build_pool(tmp_path_factory.mktemp("pool")))


def _rule(e: GossipError) -> str:
    return f"rejected:{e.rule}" if isinstance(e, RejectedUpdate) else f"rejected:{type(e).__name__}"


Decision = tuple[bool, frozenset[str]]  # (stored in the end, rejection rules ever seen)


def _decisions(
    r: Replica, offered: list[bytes], seen: dict[bytes, set[str]]
) -> dict[bytes, Decision]:
    """After the deliveries: what became of each update. Updates not stored are offered
    once more, so one rejected from the wait buffer (silently) names its rule too."""
    stored = set(r.updates_for({}))
    for raw in offered:
        if raw not in stored:
            try:
                r.ingest(raw, source="probe")
            except GossipError as e:
                seen[raw].add(_rule(e))
    stored = set(r.updates_for({}))
    return {raw: (raw in stored, frozenset(seen[raw])) for raw in offered}


def _one_by_one(r: Replica, order: list[bytes]) -> dict[bytes, Decision]:
    seen: dict[bytes, set[str]] = {raw: set() for raw in order}
    for raw in order:
        try:
            r.ingest(raw, source="test")
        except GossipError as e:
            seen[raw].add(_rule(e))
    return _decisions(r, order, seen)


def _as_batch(r: Replica, order: list[bytes]) -> dict[bytes, Decision]:
    seen: dict[bytes, set[str]] = {raw: set() for raw in order}
    for raw, out in zip(order, r.ingest_batch(order, source="test"), strict=True):
        if out.error is not None:
            seen[raw].add(_rule(out.error))
    return _decisions(r, order, seen)


@st.composite
def orders(draw: st.DrawFn, n: int) -> tuple[list[int], list[int]]:
    """2-3 distinct pool indices and a second order of the same ones."""
    picked = draw(st.lists(st.integers(0, n - 1), min_size=2, max_size=3, unique=True))
    return picked, list(draw(st.permutations(picked)))


@settings(
    max_examples=200,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(data=st.data(), with_base=st.booleans())
def test_decision_does_not_depend_on_arrival_order(
    pool: Pool, data: st.DataObject, with_base: bool
) -> None:
    first, second = data.draw(orders(len(pool)), label="orders")
    if first == second:
        second = list(reversed(first))
    names = {pool[i][1]: pool[i][0] for i in first}
    o1, o2 = [pool[i][1] for i in first], [pool[i][1] for i in second]
    base = [raw for name, raw in pool if name.startswith("base") and raw not in names]
    with _fresh_replicas(4) as (r1, r2, r3, r4):
        if with_base:  # the same prefix for everyone: later chain links can apply
            for r in (r1, r2, r3, r4):
                for raw in base:
                    assert r.ingest(raw) == "applied"
        results = {
            "one by one, first order": _one_by_one(r1, o1),
            "one by one, second order": _one_by_one(r2, o2),
            "one batch, first order": _as_batch(r3, o1),
            "one batch, second order": _as_batch(r4, o2),
        }
    by_update = {names[raw]: {how: res[raw] for how, res in results.items()} for raw in o1}
    for name, per_order in by_update.items():
        assert len(set(per_order.values())) == 1, (name, per_order, by_update)


def test_pool_holds_honest_and_hostile_updates(pool: Pool) -> None:
    """Sanity of the pool itself: after its prerequisites every honest update is accepted
    and every forged one rejected (so the property above compares real decisions)."""
    honest = [raw for name, raw in pool if name.startswith("honest")]
    chain_v0 = next(raw for name, raw in pool if name.startswith("chain v0"))
    chain_v1 = next(raw for name, raw in pool if name.startswith("chain v1"))
    for name, raw in pool:
        with _fresh_replicas(1) as (r,):
            for h in honest:
                r.ingest(h)
            assert r.pending_count == 0
            if name.startswith(("chain v1", "chain v2")):
                assert r.ingest(chain_v0) == "applied"
            if name.startswith("chain v2"):
                assert r.ingest(chain_v1) == "applied"
            if name.startswith("chain c"):
                assert r.ingest(next(raw for name, raw in pool if name.startswith("base c0")))
            try:
                status = r.ingest(raw)
            except RejectedUpdate as e:
                assert name.startswith(("forged", "chain v2", "chain c2")), (name, e)
                continue
            # chain c2 (a misplaced overwrite of the author's own key) is policy: the gate
            # may refuse it or store it for readers to skip; the property only asks that
            # the decision be the same in every order.
            assert name.startswith(
                ("honest", "base", "chain v0", "chain v1", "chain c1", "chain c2")
            ), name
            assert status in ("applied", "duplicate")


def test_hidden_loser_of_a_key_conflict_is_rejected_in_both_orders(tmp_path: Path) -> None:
    """The deterministic core of the property: a forged write to an honest author's key
    whose Yjs item loses the conflict (so no map event shows it) is still rejected when it
    arrives after the honest write — and the forger's next update then waits on every
    replica alike, instead of being applied on some and stuck on others."""
    clock = _Clock()
    alice = Identity.generate()
    with Replica.open(tmp_path / "a", alice, now_ms=clock) as a:
        m_a = records.memory(alice, "honest lesson", category="learning", ts=TS)
        honest = a.put(m_a)
        assert honest is not None
        x = _writer_ordered(a.client, below=True)
        forged = x.put(m_a)  # alice's own record replayed at its own content id
        follow_up = x.put(records.memory(x.identity, "later, valid", category="learning", ts=TS))
        outcomes = []
        with _fresh_replicas(2) as (r1, r2):
            for r, order in ((r1, [honest, forged, follow_up]), (r2, [forged, honest, follow_up])):
                got = []
                for su in order:
                    try:
                        got.append(r.ingest(su.raw))
                    except RejectedUpdate as e:
                        got.append(e.rule)
                outcomes.append(got)
            assert r1.state_vector() == r2.state_vector()
            assert set(r1.records()) == set(r2.records())
        assert outcomes[0][1] == "record-author", outcomes
        assert outcomes[1][0] == "record-author", outcomes


@pytest.mark.parametrize("below", [True, False], ids=["hidden", "visible"])
def test_concurrent_misplaced_overwrite_of_own_key_is_decided_alike(below: bool) -> None:
    """Same author, two epochs. Epoch 2 overwrites key K concurrently with epoch 1, with a
    breaker whose name is not K's. With epoch 2's client the lower one, its item is hidden
    as soon as epoch 1's overwrite is there, and no map event ever shows it.

    A gate that judged overwrites by map events accepted it in order (i1, j1, j2) and
    rejected it in (i1, j2, j1): replicas then disagreed on epoch 2's clock for good, its
    later updates applying on one and waiting forever on the other. Whatever the policy
    (the gate now checks overwrites from their bytes only; readers skip a record that does
    not belong at its key), the decision and the result must not depend on the order."""
    i1, j1, j2 = two_epoch_overwrites(below=below)
    decisions = []
    with _fresh_replicas(4) as reps:
        orders = ([i1, j1, j2], [i1, j2, j1], [j2, j1, i1], [j1, j2, i1])
        for r, order in zip(reps, orders, strict=True):
            seen: dict[bytes, set[str]] = {su.raw: set() for su in order}
            for su in order:
                try:
                    r.ingest(su.raw)
                except GossipError as e:
                    seen[su.raw].add(_rule(e))
            got = _decisions(r, [i1.raw, j1.raw, j2.raw], seen)
            decisions.append({n: got[su.raw] for n, su in (("i1", i1), ("j1", j1), ("j2", j2))})
        assert all(d == decisions[0] for d in decisions), decisions
        first = reps[0]
        for r in reps:
            assert r.pending_count == 0
            assert r.state_vector() == first.state_vector()
            assert r.state() == first.state()
            assert _doc_content(r) == _doc_content(first)
        # what readers see at K is a breaker named as K says, or nothing
        for key, rec in first.state().items():
            assert key.endswith(":" + rec.fields["name"])
