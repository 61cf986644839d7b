"""Invariant "replicas converge": readers that receive the same signed updates in any
order — one at a time or in batches, with duplicates — end with the same document, the
same records and state, nothing pending, and exactly the content Yjs itself makes of
those updates.

Real replicas in temporary data dirs, real pycrdt, hypothesis choosing what the writers
write and the order each reader hears it in.
"""

from __future__ import annotations

import itertools
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pycrdt
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pycrdt import Doc, Map

from crdt import Identity, Replica, SignedUpdate, records

SETTINGS = settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
N_READERS = 3


class _Clock:
    def __init__(self) -> None:
        self._ticks = itertools.count(1_790_000_000_000)

    def __call__(self) -> int:
        return next(self._ticks)


@contextmanager
def _homes() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="sm-conv-") as tmp:
        yield Path(tmp)


class _Opened:
    """Opens replicas under one temp dir and closes them all at the end."""

    def __init__(self, root: Path) -> None:
        self.root, self.clock, self.all = root, _Clock(), []
        self._n = itertools.count()

    def open(self, identity: Identity | None = None) -> Replica:
        r = Replica.open(self.root / f"r{next(self._n)}", identity, now_ms=self.clock)
        self.all.append(r)
        return r

    def close(self) -> None:
        for r in self.all:
            r.close()


@contextmanager
def _replicas() -> Iterator[_Opened]:
    with _homes() as root:
        opened = _Opened(root)
        try:
            yield opened
        finally:
            opened.close()


# --- what writers do ---------------------------------------------------------------------

BREAKERS = ("kimi-coding/k2p5", "provider:x")  # few names: many overwrites of one key
SUBJECTS = ("provider:x", "provider:y")

write_ops = st.one_of(
    st.tuples(
        st.just("memory"),
        st.text(min_size=1, max_size=12).filter(str.strip),
        st.sampled_from(["anti-pattern", "learning", "contract"]),
    ),
    st.tuples(
        st.just("breaker"),
        st.sampled_from(BREAKERS),
        st.sampled_from(["open", "half_open", "closed"]),
    ),
    st.tuples(
        st.just("benchmark"),
        st.sampled_from(SUBJECTS),
        st.floats(0, 1e6, allow_nan=False, allow_infinity=False),
    ),
)


def _record(op: tuple, ident: Identity, ts: int) -> records.SignedRecord:
    kind = op[0]
    if kind == "memory":
        return records.memory(ident, op[1], category=op[2], ts=ts, tags=["t"])
    if kind == "breaker":
        return records.breaker(ident, op[1], state=op[2], reason="r", failures=ts % 7, ts=ts)
    return records.benchmark(ident, op[1], "latency_ms", summary={"p50": op[2]}, unit="ms", ts=ts)


def _write(r: Replica, ops: list[tuple]) -> None:
    """One local transaction holding one or several records."""
    r.put(*(_record(op, r.identity, r.now_ms()) for op in ops))


def _sync(src: Replica, dst: Replica) -> None:
    """Anti-entropy, one way: ``dst`` takes what ``src`` has past ``dst``'s state vector."""
    outs = dst.ingest_batch(src.updates_for(dst.state_vector()), source="sync")
    assert all(o.status != "rejected" for o in outs), [o.error for o in outs]


def _all_updates(writers: list[Replica]) -> list[bytes]:
    seen: dict[bytes, None] = {}
    for w in writers:
        for raw in w.updates_for({}):
            seen.setdefault(raw, None)
    return list(seen)


# --- how readers hear it -----------------------------------------------------------------


@st.composite
def delivery(draw: st.DrawFn, n: int) -> list[list[int]]:
    """A schedule over ``n`` updates: a permutation plus duplicates, cut into chunks; a
    chunk of one goes through ``ingest``, a longer one through ``ingest_batch``."""
    order = list(draw(st.permutations(range(n))))
    for dup in draw(st.lists(st.integers(0, n - 1), max_size=max(1, n // 2))):
        order.insert(draw(st.integers(0, len(order))), dup)
    chunks: list[list[int]] = []
    i = 0
    while i < len(order):
        size = draw(st.sampled_from([1, 1, 2, 3, 5, len(order)]))
        chunks.append(order[i : i + size])
        i += size
    return chunks


def _deliver(reader: Replica, updates: list[bytes], chunks: list[list[int]]) -> None:
    for chunk in chunks:
        if len(chunk) == 1:
            status = reader.ingest(updates[chunk[0]], source="test")
            assert status in ("applied", "duplicate", "buffered"), status
        else:
            outs = reader.ingest_batch([updates[k] for k in chunk], source="test")
            bad = [(o.status, o.error) for o in outs if o.status == "rejected"]
            assert not bad, bad


def _content(update: bytes) -> dict[str, object]:
    d = Doc()
    maps = {r: d.get(r, type=Map) for r in ("records", "state")}
    d.apply_update(update)
    return {r: m.to_py() for r, m in maps.items()}


def assert_converged(readers: list[Replica], updates: list[bytes]) -> None:
    """Every reader holds the same thing, all of it, and what Yjs makes of the updates."""
    first = readers[0]
    for r in readers:
        assert r.pending_count == 0
        assert r.state_vector() == first.state_vector()
        assert {k: v.body for k, v in r.records().items()} == {
            k: v.body for k, v in first.records().items()
        }
        assert {k: v.body for k, v in r.state().items()} == {
            k: v.body for k, v in first.state().items()
        }
        assert sorted(r.updates_for({})) == sorted(updates)  # stored all of it, verbatim
    merged = pycrdt.merge_updates(*(SignedUpdate.decode(u).update for u in updates))
    expected = _content(merged)
    for r in readers:
        assert _content(r.document_update()) == expected
    # and the views read exactly the document's values
    assert {k: v.to_value() for k, v in first.records().items()} == expected["records"]
    assert {k: v.to_value() for k, v in first.state().items()} == expected["state"]
    # and the read side gives every reader the same answers (same clock, same trust)
    outputs = {_view_outputs(r) for r in readers}
    assert len(outputs) == 1


def _view_outputs(r: Replica) -> str:
    import json

    from crdt.views import Views

    def untrusting(x: object) -> object:  # whom a replica trusts is its own business
        if isinstance(x, dict):
            return {k: untrusting(v) for k, v in x.items() if k != "trusted"}
        if isinstance(x, list):
            return [untrusting(v) for v in x]
        return x

    v = Views(r, now_ms=lambda: 1_790_000_000_000)
    out = [
        v.recall(limit=1000, include_untrusted=True).to_json(),
        [b.to_json() for b in v.breakers(include_untrusted=True)],
        [b.to_json() for b in v.benchmarks(include_untrusted=True)],
    ]
    return json.dumps(untrusting(out), sort_keys=True)


def _readers_receive(opened: _Opened, updates: list[bytes], data: st.DataObject) -> list[Replica]:
    readers = [opened.open(Identity.generate()) for _ in range(N_READERS)]
    for reader in readers:
        _deliver(reader, updates, data.draw(delivery(len(updates)), label="delivery"))
    return readers


# --- the properties ----------------------------------------------------------------------

transactions = st.lists(write_ops, min_size=1, max_size=3)  # records in one put()


@SETTINGS
@given(
    n_writers=st.integers(2, 3),
    plan=st.lists(st.tuples(st.integers(0, 2), transactions), min_size=1, max_size=10),
    data=st.data(),
)
def test_independent_writers_converge(n_writers: int, plan: list, data: st.DataObject) -> None:
    with _replicas() as opened:
        writers = [opened.open(Identity.generate()) for _ in range(n_writers)]
        # every writer overwrites one breaker several times
        for w in writers:
            for state in ("open", "half_open", "closed"):
                _write(w, [("breaker", BREAKERS[0], state)])
        for who, ops in plan:
            _write(writers[who % n_writers], ops)
        updates = _all_updates(writers)
        readers = _readers_receive(opened, updates, data)
        assert_converged(readers, updates)
        # nothing lost: every writer's latest value of each key is what readers hold
        for w in writers:
            for key, rec in w.state().items():
                assert readers[0].state()[key].body == rec.body
            for key in w.records():
                assert key in readers[0].records()


step = st.one_of(
    st.tuples(st.just("write"), st.integers(0, 2), transactions),
    st.tuples(st.just("sync"), st.integers(0, 2), st.integers(0, 2)),
)


@SETTINGS
@given(
    n_writers=st.integers(2, 3),
    steps=st.lists(step, min_size=1, max_size=12),
    data=st.data(),
)
def test_writers_that_exchange_midway_converge(
    n_writers: int, steps: list, data: st.DataObject
) -> None:
    with _replicas() as opened:
        writers = [opened.open(Identity.generate()) for _ in range(n_writers)]
        a, b = writers[0], writers[1]
        # A writes and overwrites; B hears it, then writes and overwrites its own keys
        # while A's items are present (so B's overwrites build on B's earlier items).
        _write(a, [("breaker", BREAKERS[0], "open"), ("memory", "from a", "learning")])
        _write(b, [("breaker", BREAKERS[0], "open")])
        _write(a, [("breaker", BREAKERS[0], "closed")])
        _sync(a, b)
        _write(b, [("breaker", BREAKERS[0], "half_open"), ("benchmark", SUBJECTS[0], 1.0)])
        _write(b, [("breaker", BREAKERS[0], "closed")])
        for kind, x, y in steps:
            if kind == "write":
                _write(writers[x % n_writers], y)
            elif x % n_writers != y % n_writers:
                _sync(writers[x % n_writers], writers[y % n_writers])
        updates = _all_updates(writers)
        readers = _readers_receive(opened, updates, data)
        assert_converged(readers, updates)
        # writers that finally hear everything agree with the readers
        for w in writers:
            for other in writers:
                if other is not w:
                    _sync(other, w)
        assert_converged([*readers, *writers], updates)


@SETTINGS
@given(
    steps=st.lists(
        st.one_of(
            st.tuples(
                st.just("write"),
                st.integers(0, 1),
                st.sampled_from(["open", "half_open", "closed"]),
            ),
            st.tuples(st.just("sync"), st.integers(0, 1), st.none()),
            st.tuples(
                st.just("memory"),
                st.integers(0, 1),
                st.text(min_size=1, max_size=8).filter(str.strip),
            ),
        ),
        max_size=10,
    ),
    data=st.data(),
)
def test_one_key_two_epochs_converge(steps: list, data: st.DataObject) -> None:
    """The same identity writes from two stores (two epochs, two Yjs clients), both to the
    same breaker key, one after syncing from the other: everyone accepts everything and
    agrees."""
    ident = Identity.generate()
    with _replicas() as opened:
        stores = [opened.open(ident), opened.open(ident)]
        assert stores[0].epoch != stores[1].epoch and stores[0].client != stores[1].client
        name = BREAKERS[0]
        _write(stores[0], [("breaker", name, "open")])
        _write(stores[0], [("breaker", name, "half_open")])
        _sync(stores[0], stores[1])
        _write(stores[1], [("breaker", name, "closed")])  # overwrites the other epoch's item
        # the write that follows a sync wins everywhere: it is the newest item of the key
        latest = stores[1].state()
        for kind, who, arg in steps:
            s = stores[who]
            if kind == "write":
                _write(s, [("breaker", name, arg)])
            elif kind == "memory":
                _write(s, [("memory", arg, "learning")])
            else:
                _sync(stores[1 - who], s)
        _sync(stores[0], stores[1])
        _sync(stores[1], stores[0])
        if not steps:
            assert stores[0].state() == latest
        updates = _all_updates(stores)
        readers = _readers_receive(opened, updates, data)
        assert_converged([*readers, *stores], updates)
        assert len(readers[0].state()) == 1
