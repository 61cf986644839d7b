"""The read side (invariant 8): trust, retraction, expiry, quota, merged breakers and
recency-weighted benchmarks — with expected values computed by hand."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from crdt import records
from crdt.views import ViewConfig, Views
from tests.forge import Writer

T = 1_790_000_000_000
MIN = 60_000


class Now:
    def __init__(self, t: int = T) -> None:
        self.t = t

    def __call__(self) -> int:
        return self.t


@pytest.fixture
def now() -> Now:
    return Now()


@pytest.fixture
def me(open_replica):
    return open_replica("me")


def mem(w: Writer, text: str, ts: int = T, **kw) -> bytes:
    return w.put(records.memory(w.identity, text, category=kw.pop("category", "learning"),
                                ts=ts, **kw)).raw  # fmt: skip


def texts(recall) -> list[str]:
    return [h.text for h in recall.hits]


# -- trust -----------------------------------------------------------------------------


def test_untrusted_authors_are_hidden_unless_asked_for(me, now):
    views = Views(me, now_ms=now)
    me.put(records.memory(me.identity, "own lesson about provider x", category="c", ts=T))
    stranger = Writer()
    me.ingest(mem(stranger, "poisoned advice about provider x: disable retries"))
    assert texts(views.recall("provider")) == ["own lesson about provider x"]
    both = views.recall("provider", include_untrusted=True)
    assert {(h.text[:6], h.trusted) for h in both.hits} == {("own le", True), ("poison", False)}


def test_trust_add_and_remove_take_effect_at_once(me, now):
    views = Views(me, now_ms=now)
    friend = Writer()
    me.ingest(mem(friend, "friend's lesson"))
    assert texts(views.recall()) == []
    me.trust(friend.id, "friend")
    assert texts(views.recall()) == ["friend's lesson"]
    assert views.recall().hits[0].trusted
    assert me.distrust(friend.id)
    assert texts(views.recall()) == []


# -- retraction and expiry --------------------------------------------------------------


def test_only_the_authors_own_retraction_counts(me, now):
    views = Views(me, now_ms=now)
    friend, other = Writer(), Writer()
    me.trust(friend.id)
    me.trust(other.id)
    me.ingest(mem(friend, "a lesson", ts=T))
    target = next(iter(me.records()))
    me.ingest(other.put(records.retract(other.identity, target, ts=T + 1)))
    assert texts(views.recall()) == ["a lesson"]  # someone else's retraction: ignored
    me.ingest(friend.put(records.retract(friend.identity, target, ts=T + 2)))
    assert texts(views.recall()) == []
    assert views.memory(target) is not None  # still in the document, for audit


def test_expired_memories_are_hidden(me, now):
    views = Views(me, now_ms=now)
    me.put(records.memory(me.identity, "temporary", category="c", ts=T, expires_at=T + MIN))
    me.put(records.memory(me.identity, "lasting", category="c", ts=T))
    assert sorted(texts(views.recall())) == ["lasting", "temporary"]
    now.t = T + MIN
    assert texts(views.recall()) == ["lasting"]


# -- quota -------------------------------------------------------------------------------


def test_a_flooding_trusted_author_is_capped_and_recall_says_so(me, now):
    views = Views(me, now_ms=now)
    flood = Writer()
    me.trust(flood.id)
    me.ingest_batch([mem(flood, f"provider x spam {i}", ts=T + i) for i in range(40)])
    me.put(records.memory(me.identity, "provider x real lesson", category="c", ts=T + 100))
    got = views.recall("provider", limit=20)
    assert "provider x real lesson" in texts(got)
    assert sum(h.author == flood.id for h in got.hits) == 10  # half of the 20
    assert got.capped == {flood.id: 30}  # the rest of its 40, all ranked above the last hit
    # Its slots go to its best-ranked (equal words: its newest), never to its oldest.
    assert sorted(h.text for h in got.hits if h.author == flood.id) == sorted(
        f"provider x spam {i}" for i in range(30, 40)
    )
    # The share is of one recall's results, whatever its size; this host's own are never
    # capped, nor an author asked for by name.
    assert sum(h.author == flood.id for h in views.recall("provider", limit=6).hits) == 3
    assert len(views.recall("provider", author=flood.id, limit=100).hits) == 40
    assert views.over_quota() == {flood.id: 40 - 20}  # holds 40 of the 41 here: flagged


def test_recall_filters_and_ranking(me, now):
    views = Views(me, now_ms=now)
    put = me.put
    put(records.memory(me.identity, "kimi k2p5 times out at night", category="anti-pattern",
                       subject="kimi-coding/k2p5", tags=["outage"], ts=T))  # fmt: skip
    put(records.memory(me.identity, "kimi is fine by day", category="learning",
                       subject="kimi-coding/k2p5", ts=T + 1))  # fmt: skip
    put(records.memory(me.identity, "use the contract tests", category="contract", ts=T + 2))
    assert texts(views.recall()) == [
        "use the contract tests",
        "kimi is fine by day",
        "kimi k2p5 times out at night",
    ]  # fmt: skip  (no query: newest first)
    assert texts(views.recall("times out kimi"))[0] == "kimi k2p5 times out at night"
    assert texts(views.recall(category="contract")) == ["use the contract tests"]
    assert texts(views.recall(tag="outage")) == ["kimi k2p5 times out at night"]
    assert len(views.recall(subject="kimi-coding/k2p5").hits) == 2
    assert texts(views.recall(since=T + 2)) == ["use the contract tests"]
    assert texts(views.recall("k2p5/kimi: (03:00) AND")) != []  # punctuation is not syntax
    assert texts(views.recall("!!!")) == []
    assert len(views.recall(limit=1).hits) == 1


# -- breakers ------------------------------------------------------------------------------


def trip(w: Writer, name: str, ts: int, cooldown: int, reason: str = "timeouts") -> bytes:
    rec = records.breaker(w.identity, name, state="open", reason=reason, ts=ts,
                          tripped_at=ts, resets_at=ts + cooldown)  # fmt: skip
    return w.put(rec).raw


def reset(w: Writer, name: str, ts: int) -> bytes:
    return w.put(records.breaker(w.identity, name, state="closed", ts=ts)).raw


def test_breaker_merge_across_hosts(me, now):
    views = Views(me, ViewConfig(breaker_grace_ms=5 * MIN), now_ms=now)
    a, b, stranger = Writer(), Writer(), Writer()
    me.trust(a.id, "a")
    me.trust(b.id, "b")
    me.ingest_batch([trip(a, "k2p5", T, 10 * MIN, "503s"), reset(b, "k2p5", T)])
    br = views.breaker("k2p5")
    assert (br.state, br.tripped_by, br.reason, br.resets_at) == ("open", [a.id], "503s",
                                                                  T + 10 * MIN)  # fmt: skip
    # An untrusted host saying open changes nothing.
    me.ingest(trip(stranger, "other", T, 10 * MIN))
    assert views.breaker("other") is None
    assert views.breaker("other", include_untrusted=True).state == "open"
    me.ingest(reset(b, "other", T))
    assert views.breaker("other").state == "closed"
    # Past resets_at: half open during the grace period, then the observation is ignored.
    now.t = T + 10 * MIN
    assert views.breaker("k2p5").state == "half_open"
    now.t = T + 15 * MIN + 1
    br = views.breaker("k2p5")
    assert br.state == "closed" and [o.author for o in br.observations] == [b.id]
    # A host's newer observation replaces its older one (state is per author).
    me.ingest(trip(a, "k2p5", now.t, MIN))
    assert views.breaker("k2p5").state == "open"
    me.ingest(reset(a, "k2p5", now.t + 1))
    assert views.breaker("k2p5").state == "closed"
    assert [b.name for b in views.breakers()] == ["k2p5", "other"]


def test_no_breaker_is_held_open_past_the_cap(me, now):
    """Issue 17, item 9: "open until the year 3000" is clipped to ``breaker_max_open_ms``
    after it was signed; an observation signed in the future does not count."""
    views = Views(me, ViewConfig(breaker_grace_ms=5 * MIN, breaker_max_open_ms=60 * MIN),
                  now_ms=now)  # fmt: skip
    a, b = Writer(), Writer()
    me.trust(a.id, "a")
    me.trust(b.id, "b")
    year_3000 = 32_503_680_000_000
    rec = records.breaker(a.identity, "k2p5", state="open", reason="forever", ts=T,
                          tripped_at=T, resets_at=year_3000)  # fmt: skip
    me.ingest(a.put(rec).raw)
    br = views.breaker("k2p5")
    assert br.state == "open" and br.resets_at == T + 60 * MIN, br
    now.t = T + 60 * MIN + 1
    assert views.breaker("k2p5").state == "half_open"
    now.t = T + 66 * MIN
    assert views.breaker("k2p5") is None  # past the cap and the grace: no say at all
    # Signed an hour ahead of our clock: refused, whatever it claims.
    ahead = records.breaker(b.identity, "other", state="open", reason="ahead",
                            ts=now.t + 60 * MIN, tripped_at=now.t, resets_at=now.t + MIN)
    me.ingest(b.put(ahead).raw)
    assert views.breaker("other") is None


# -- benchmarks ----------------------------------------------------------------------------


def bench(w: Writer, value: float, recorded_at: int) -> bytes:
    rec = records.benchmark(w.identity, "kimi-coding/k2p5", "latency_ms",
                            summary={"value": value}, unit="ms", ts=recorded_at,
                            recorded_at=recorded_at)  # fmt: skip
    return w.put(rec).raw


def test_benchmarks_weighted_by_recency_and_stale_ones_rejected(tmp_path, now):
    from crdt import Replica

    day = 86_400_000
    now.t = T + 10 * day  # this host's clock: the observations arrive now
    me = Replica.open(tmp_path / "me", now_ms=now)
    views = Views(me, ViewConfig(bench_half_life_ms=day, bench_max_age_ms=3 * day), now_ms=now)
    a, b, c, stranger = Writer(), Writer(), Writer(), Writer()
    for w in (a, b, c):
        me.trust(w.id)
    me.ingest_batch([
        bench(a, 100.0, now.t),            # age 0: weight 1
        bench(b, 200.0, now.t - day),      # age 1 day: weight 1/2
        bench(c, 999.0, now.t - 4 * day),  # older than 3 days: rejected
        bench(stranger, 5000.0, now.t),    # untrusted: not counted
    ])  # fmt: skip
    s = views.benchmark("kimi-coding/k2p5", "latency_ms")
    assert s.values["value"] == pytest.approx((1 * 100 + 0.5 * 200) / 1.5)  # 133.33
    assert (s.count, s.stale, s.unit, sorted(s.hosts)) == (2, 1, "ms", sorted([a.id, b.id]))
    assert s.newest == now.t
    with_all = views.benchmark("kimi-coding/k2p5", "latency_ms", include_untrusted=True)
    assert with_all.values["value"] == pytest.approx((100 + 100 + 5000) / 2.5)
    assert [x.metric for x in views.benchmarks("kimi-coding/k2p5")] == ["latency_ms"]
    assert views.benchmarks("nothing") == []
    views.close()
    me.close()


# -- derived: incremental == rebuilt --------------------------------------------------------

ops = st.lists(
    st.tuples(
        st.integers(0, 2),  # writer
        st.sampled_from(["mem", "retract", "trip", "reset", "bench", "expire"]),
        st.integers(0, 5),  # a small number: text variant, target, value
    ),
    min_size=1,
    max_size=25,
)


@settings(
    max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(ops=ops, trusted=st.sets(st.integers(0, 2)))
def test_views_built_incrementally_equal_views_rebuilt(open_replica, ops, trusted):
    import itertools
    import uuid

    r = open_replica(f"p-{uuid.uuid4().hex[:8]}")
    now = Now(T + 30 * MIN)
    cfg = ViewConfig(author_share=0.2, breaker_grace_ms=MIN, backdate_skew_ms=MIN)
    live = Views(r, cfg, now_ms=now)
    writers = [Writer() for _ in range(3)]
    for i in trusted:
        r.trust(writers[i].id)
    ticks = itertools.count(T)
    mine: dict[int, list[str]] = {0: [], 1: [], 2: []}
    for who, op, n in ops:
        w, ts = writers[who], next(ticks)
        if op == "mem":
            rec = records.memory(w.identity, f"lesson {n} about provider", category=f"c{n % 2}",
                                 ts=ts)  # fmt: skip
            mine[who].append(rec.id)
        elif op == "expire":
            rec = records.memory(w.identity, f"short {n}", category="c", ts=ts,
                                 expires_at=T + n * 10 * MIN)  # fmt: skip
        elif op == "retract":
            pool = mine[who] or mine[(who + 1) % 3] or ["0" * 64]
            rec = records.retract(w.identity, pool[n % len(pool)], ts=ts)
        elif op == "trip":
            rec = records.breaker(w.identity, f"b{n % 2}", state="open", ts=ts, tripped_at=ts,
                                  resets_at=T + n * 10 * MIN)  # fmt: skip
        elif op == "reset":
            rec = records.breaker(w.identity, f"b{n % 2}", state="closed", ts=ts)
        else:
            rec = records.benchmark(w.identity, "s", f"m{n % 2}", summary={"value": float(n)},
                                    ts=ts, recorded_at=T - n * 3_600_000)  # fmt: skip
        r.ingest(w.put(rec))
    rebuilt = Views(r, cfg, now_ms=now)

    def outputs(v: Views) -> tuple:
        return (
            v.recall(limit=100).to_json(),
            v.recall(limit=100).capped,
            v.recall(limit=5).capped,
            v.recall("provider lesson", limit=100, include_untrusted=True).to_json(),
            [b.to_json() for b in v.breakers(include_untrusted=True)],
            [b.to_json() for b in v.breakers()],
            [b.to_json() for b in v.benchmarks(include_untrusted=True)],
        )

    assert outputs(live) == outputs(rebuilt)
    live.rebuild()
    assert outputs(live) == outputs(rebuilt)


# -- odd records from any author never break reading ----------------------------------------


def test_a_record_with_odd_fields_cannot_break_reading(me, now):
    from crdt.records import SignedRecord, canonical

    w = Writer()
    me.trust(w.id)
    bodies = [
        {"text": "huge expiry", "category": "c", "expires_at": 2**70},
        {"text": "tags not a list", "category": "c", "tags": 5},
        {"text": ["not", "text"], "category": "c"},
    ]
    for extra in bodies:
        body = canonical({"v": 1, "kind": "memory", "author": w.id, "ts": T, **extra})
        me.ingest(w.put(SignedRecord(body, w.identity.sign(body))))
    views = Views(me, now_ms=now)  # builds without raising
    assert sorted(texts(views.recall())) == ["huge expiry", "tags not a list"]


def test_a_single_benchmark_observation_is_reported_exactly(me, now):
    views = Views(me, now_ms=now)
    me.put(records.benchmark(me.identity, "s", "m", summary={"value": 3.0}, ts=T - 5 * MIN,
                             recorded_at=T - 5 * MIN))  # fmt: skip
    assert views.benchmark("s", "m").values == {"value": 3.0}


def test_benchmark_subject_and_metric_come_from_the_record(me, now):
    from crdt.records import SignedRecord, canonical

    views = Views(me, now_ms=now)
    w = Writer()
    me.trust(w.id)
    body = canonical({"v": 1, "kind": "benchmark", "author": w.id, "ts": T, "subject": "a|b",
                      "metric": "c", "summary": {"value": 1.0}, "recorded_at": T})  # fmt: skip
    me.ingest(w.put(SignedRecord(body, w.identity.sign(body))))
    assert [(b.subject, b.metric) for b in views.benchmarks()] == [("a|b", "c")]


def test_closed_views_stop_following_the_replica(me, now):
    with Views(me, now_ms=now) as views:
        me.put(records.memory(me.identity, "kept lesson", category="c", ts=T))
        assert texts(views.recall("lesson")) == ["kept lesson"]
    me.put(records.memory(me.identity, "later lesson", category="c", ts=T))  # no error
    views.close()  # idempotent
    with Views(me, now_ms=now) as fresh:  # a new view sees both
        assert sorted(texts(fresh.recall("lesson"))) == ["kept lesson", "later lesson"]
    assert me._listeners == []  # nothing left registered


def test_a_memory_as_json_has_every_field_once():
    from dataclasses import asdict, fields

    from crdt.views import Memory

    m = Memory("id", "text", "c", None, ["t"], "author", 1, True, None, "other")
    assert m.to_json() == asdict(m)
    assert list(m.to_json()) == [f.name for f in fields(Memory)]
    assert m.to_json()["tags"] is not m.tags


def test_the_word_index_holds_no_second_copy_of_the_texts(me, now):
    """FTS5 is contentless (issue 18: memory): memories holds each text once, the index
    only its words, and every lane still finds by them."""
    with Views(me, now_ms=now) as views:
        me.put(records.memory(me.identity, "Provider kimi drops requests", category="c",
                              subject="provider:kimi", tags=["outage"], ts=T))  # fmt: skip
        tables = {r[0] for r in views._db.execute("SELECT name FROM sqlite_master")}
        assert "memories_fts" in tables and "memories_fts_content" not in tables
        for q in ("drops", "kimi", "outage"):  # text, subject, tags
            assert texts(views.recall(q, mode="lexical")) == ["Provider kimi drops requests"]
