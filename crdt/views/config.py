"""``ViewConfig``: the reading policy of the views (share cap, time, staleness, lanes),
each default next to the trade-off it makes. Plain data: reads nothing, touches nothing.
"""

from __future__ import annotations

from dataclasses import dataclass

HOUR_MS = 3_600_000
DAY_MS = 24 * HOUR_MS
BREAKER_FUTURE_MS = 5 * 60_000  # clocks of honest hosts agree better than this (NTP)
MODES = ("hybrid", "lexical", "semantic")  # recall's lanes: both fused, bm25 alone, vectors alone


@dataclass(frozen=True)
class ViewConfig:
    """Reading policy. Each default is a trade-off, said next to it."""

    # Each author other than this host holds at most this share of one recall's results
    # (at least one; in every lane before fusion, and after it): a flood, trusted or not,
    # never fills another host's recall, whatever times it signs. This host's own
    # memories, and authors asked for by name, are never capped. ``[recall] author_share``.
    author_share: float = 0.5
    # An author's signed time is bounded by when this host first stored the record
    # (``first_seen``): never newer than that (a future date neither tops newest-first
    # recall nor re-weights benchmarks), and, where authors are ranked against each
    # other, never more than this before it. ``[recall] backdate_skew`` (seconds).
    backdate_skew_ms: int = DAY_MS
    # False: signed times as signed, first-seen ignored — only to compare what replicas
    # hold (``gossip.sim.check``: first-seen is local by design, so ranks may differ).
    first_seen_bound: bool = True
    # A breaker observation counts until its resets_at plus this grace (as half_open
    # during the grace): a host that tripped it and went quiet does not hold it forever.
    breaker_grace_ms: int = 10 * 60_000
    # No observation holds a breaker open longer than this after it was signed (its
    # ``resets_at`` is clipped): any author can claim "open until the year 3000", and an
    # outage that outlives a day is re-tripped by whoever still sees it. An observation
    # signed further ahead than BREAKER_FUTURE_MS of our clock does not count at all.
    # ``[breakers] max_open`` (seconds) in config.toml.
    breaker_max_open_ms: int = DAY_MS
    # Benchmark observations lose half their weight every half-life, and are rejected
    # once older than the max age: recent measurements win, stale ones never mislead.
    bench_half_life_ms: int = DAY_MS
    bench_max_age_ms: int = 7 * DAY_MS
    # Trust the keys that trusted keys vouch for (invitations, `trust.follow_vouches`):
    # off by default, so that only a human adds keys to this host's trust.
    follow_vouches: bool = False
    # Recall's lanes. Each lane offers its best `lane_depth` visible memories (or the limit,
    # if larger) to reciprocal rank fusion (``crdt.fusion``): deep enough that a memory
    # second-best in both lanes beats one that is first in one lane only.
    lane_depth: int = 30
    fusion_k: int = 60
    fusion_weights: tuple[tuple[str, float], ...] = (("bm25", 1.0), ("semantic", 1.0))
    # A vector neighbour less similar than this (cosine) is no match at all, so that a query
    # about nothing held gets few answers rather than the least unrelated memories. For the
    # embedded model, 0.2 keeps 98 % of the right answers of the benchmark's paraphrases.
    semantic_min_similarity: float = 0.2
    # A query matching more memories than this by its words ranks only the most recently
    # indexed this many (crdt.views.Views._bm25_lane): a vague question costs the same at
    # 100k memories as at 3k, and the semantic lane still looks at every memory.
    lexical_rank_cap: int = 1000

    def __post_init__(self) -> None:
        share = self.author_share
        if isinstance(share, bool) or not isinstance(share, int | float) or not 0 < share <= 1:
            raise ValueError(f"author_share must be more than 0 and at most 1, not {share!r}")
        if self.backdate_skew_ms < 0:
            raise ValueError("backdate_skew_ms must not be negative")

    def share_of(self, n: int) -> int:
        """How many of ``n`` results one author may hold: ``author_share`` of them, at
        least one."""
        return max(1, int(self.author_share * n))
