"""``crdt.rrf_fuse`` against cases worked by hand (Singularity Memory's rules, k = 60)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import crdt
from crdt.fusion import fuse


def test_single_lane_keeps_the_lane_order_by_score():
    # Given out of order: the lane is sorted by score first.
    lane = [("y", 0.50), ("z", 0.99), ("x", 0.10)]
    assert crdt.rrf_fuse({"semantic": lane}) == ["z", "y", "x"]
    fused = fuse({"semantic": lane})
    assert [f.score for f in fused] == pytest.approx([1 / 61, 1 / 62, 1 / 63])
    assert fused[0].ranks == {"semantic": 1}


def test_two_lanes_merge_a_document_in_both_first():
    lanes = {"semantic": [("a", 0.9), ("b", 0.8)], "bm25": [("b", 0.95), ("c", 0.7)]}
    # a: 1/61; b: 1/62 + 1/61; c: 1/62
    assert crdt.rrf_fuse(lanes) == ["b", "a", "c"]
    b = fuse(lanes)[0]
    assert b.score == pytest.approx(1 / 62 + 1 / 61)
    assert b.ranks == {"semantic": 2, "bm25": 1}


def test_a_duplicate_within_a_lane_counts_once_and_takes_no_rank():
    # Singularity Memory's fixture 007: dup 1/61 + 1/62, bm 1/61, other 1/62 (not 1/63:
    # the second "dup" is dropped before ranks are given).
    lanes = {
        "semantic": [("dup", 0.95), ("other", 0.85), ("dup", 0.75)],
        "bm25": [("bm", 1.00), ("dup", 0.90)],
    }
    fused = fuse(lanes)
    assert [f.id for f in fused] == ["dup", "bm", "other"]
    assert fused[2].score == pytest.approx(1 / 62)
    assert fused[0].score == pytest.approx(1 / 61 + 1 / 62)


def test_equal_fused_scores_go_to_the_larger_raw_sum():
    # Fixture 008: both score 1/61 + 1/62; raw sums 15 (high) and 11 (low).
    lanes = {
        "semantic": [("high-sum", 10.0), ("low-sum", 1.0)],
        "bm25": [("low-sum", 10.0), ("high-sum", 5.0)],
    }
    assert crdt.rrf_fuse(lanes) == ["high-sum", "low-sum"]
    # Equal raw sums too: the smaller id, so the order never depends on the input's.
    even = {"semantic": [("b", 1.0), ("a", 0.0)], "bm25": [("a", 1.0), ("b", 0.0)]}
    assert crdt.rrf_fuse(even) == ["a", "b"]


def test_empty_lanes():
    assert crdt.rrf_fuse({}) == []
    assert crdt.rrf_fuse({"semantic": [], "bm25": []}) == []
    assert crdt.rrf_fuse({"semantic": [], "bm25": [("x", 2.0), ("y", 1.0)]}) == ["x", "y"]


def test_weights_and_k():
    # Defaults: semantic 1.0, bm25 1.0, graph 0.5, temporal 0.3, any other lane 1.0.
    four = {lane: [("x", 0.5)] for lane in ("semantic", "bm25", "graph", "temporal")}
    assert fuse(four)[0].score == pytest.approx((1.0 + 1.0 + 0.5 + 0.3) / 61)
    assert fuse({"other": [("x", 1.0)]})[0].score == pytest.approx(1 / 61)
    # A heavier lane wins: a (semantic 1st) vs b (bm25 1st), bm25 weighted 2.
    lanes = {"semantic": [("a", 1.0)], "bm25": [("b", 1.0)]}
    assert crdt.rrf_fuse(lanes, {"bm25": 2.0}) == ["b", "a"]
    assert fuse(lanes, {"bm25": 2.0})[0].score == pytest.approx(2 / 61)
    # A weight of 0 is a weight (the lane counts for nothing), not "use the default".
    assert fuse(lanes, {"semantic": 0.0})[-1].score == 0.0
    # k: a small k favours the top ranks; k <= 0 means the default 60.
    assert fuse({"bm25": [("a", 2.0), ("b", 1.0)]}, k=1)[1].score == pytest.approx(1 / 3)
    assert fuse({"bm25": [("a", 1.0)]}, k=0)[0].score == pytest.approx(1 / 61)


def test_rrf_fuse_is_exported_from_crdt():
    assert "rrf_fuse" in crdt.__all__


@settings(max_examples=300, deadline=None)
@given(
    lane=st.lists(st.tuples(st.sampled_from("abcdefgh"), st.sampled_from([0.0, 0.5, 1.0, 2.0])),
                  max_size=8),
    weight=st.sampled_from([None, 1.0, 2.5, 0.0, -1.0, 1e-320]),
    k=st.sampled_from([60, 1, 0]),
    presorted=st.booleans(),
)  # fmt: skip
def test_one_lane_is_fused_as_any_other(lane, weight, k, presorted):
    """One lane alone skips the general merge (a recall in one mode): its answer is the
    general one's, for lanes in or out of order, duplicates, equal scores, odd weights."""
    if presorted:
        lane = sorted(lane, key=lambda r: -r[1])
    weights = None if weight is None else {"bm25": weight}
    # An empty second lane changes nothing but takes the general path.
    general = fuse({"bm25": lane, "semantic": []}, weights, k)
    assert fuse({"bm25": lane}, weights, k) == general
