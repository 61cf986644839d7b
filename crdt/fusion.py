"""Reciprocal rank fusion: many ranked lanes in, one ranking out. Pure functions, no I/O.

The rules are Singularity Memory's, so a recall here and one there rank alike
(``internal/retrieve/rrf.go``, ``ReciprocalRankFusion``, in singularity-ng/singularity-memory;
its fixtures ``eval-workspace/memory-recall/fixtures/v1/*.json`` are the cases the tests
re-work by hand):

- each lane is sorted by its raw score, highest first (a stable sort here, where Go's
  ``sort.Slice`` leaves equal scores in no promised order);
- within a lane only an id's first occurrence counts, and only unique ids take a rank;
- a document's fused score is the sum over the lanes that hold it of
  ``weight[lane] / (k + rank)``, rank counted from 1;
- a lane's weight is the one given, else the default below, else 1.0; ``k <= 0`` means 60;
- ties go to the larger sum of the raw scores that counted, then to the smaller id.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

K = 60
# Singularity Memory's defaults; graph and temporal lanes do not exist here (yet).
DEFAULT_WEIGHTS: Mapping[str, float] = {"semantic": 1.0, "bm25": 1.0, "graph": 0.5,
                                        "temporal": 0.3}  # fmt: skip


@dataclass(frozen=True)
class Fused:
    """One document of the fused ranking: its fused score and its rank in each lane."""

    id: str
    score: float
    ranks: dict[str, int] = field(default_factory=dict)  # lane -> rank (from 1)


def rrf_fuse(
    lanes: Mapping[str, Sequence[tuple[str, float]]],
    weights: Mapping[str, float] | None = None,
    k: int = K,
) -> list[str]:
    """The fused ranking of ``lanes`` (lane name -> ``(id, score)`` pairs), ids best first."""
    return [f.id for f in fuse(lanes, weights, k)]


def fuse(
    lanes: Mapping[str, Sequence[tuple[str, float]]],
    weights: Mapping[str, float] | None = None,
    k: int = K,
) -> list[Fused]:
    """``rrf_fuse`` with each document's fused score and lane ranks (what recall shows)."""
    if k <= 0:
        k = K
    if len(lanes) == 1 and (one := _one_lane(*next(iter(lanes.items())), weights, k)):
        return one
    scores: dict[str, float] = {}
    raw: dict[str, float] = {}
    ranks: dict[str, dict[str, int]] = {}
    for lane, results in lanes.items():
        weight = _weight(lane, weights)
        ordered = sorted(results, key=lambda r: -r[1])
        seen: set[str] = set()
        for doc, score in ordered:
            if doc in seen:
                continue
            seen.add(doc)
            rank = len(seen)
            scores[doc] = scores.get(doc, 0.0) + weight / (k + rank)
            raw[doc] = raw.get(doc, 0.0) + score
            ranks.setdefault(doc, {})[lane] = rank
    best = sorted(scores, key=lambda d: (-scores[d], -raw[d], d))
    return [Fused(d, scores[d], ranks[d]) for d in best]


def _one_lane(lane: str, results: Sequence[tuple[str, float]],
              weights: Mapping[str, float] | None, k: int) -> list[Fused] | None:  # fmt: skip
    """``fuse`` of one lane already sorted by score with each id once (a recall's lane),
    without sorting or counting: its order, ``weight / (k + rank)`` each. None where that
    shortcut would not be ``fuse``'s answer (out of order, a duplicate, equal scores)."""
    weight = _weight(lane, weights)
    out = [Fused(doc, weight / (k + rank), {lane: rank})
           for rank, (doc, _) in enumerate(results, 1)]  # fmt: skip
    ordered = all(results[i][1] >= results[i + 1][1] and out[i].score > out[i + 1].score
                  for i in range(len(out) - 1))  # fmt: skip
    return out if ordered and len({d for d, _ in results}) == len(out) else None


def _weight(lane: str, weights: Mapping[str, float] | None) -> float:
    if weights is not None and lane in weights:
        return weights[lane]
    return DEFAULT_WEIGHTS.get(lane, 1.0)
