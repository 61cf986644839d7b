"""Benchmark views: each (subject, metric) summarised across hosts, weighted by
recency, stale observations rejected.

A mixin of ``crdt.views.Views``: it reads the benchmark table the core keeps
(``_benches``) and the trusted set; it never writes anything.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

from ..records import SignedRecord
from ..trust import TrustSet
from .common import _int, _locked
from .config import ViewConfig


@dataclass(frozen=True)
class Benchmark:
    """One (subject, metric), summarised across hosts, weighted by recency."""

    subject: str
    metric: str
    unit: str
    values: dict[str, float]  # summary key -> recency-weighted mean
    count: int  # observations that counted
    hosts: list[str]
    newest: int  # recorded_at of the newest observation that counted
    stale: int  # observations rejected as too old

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


class BenchmarkViews:
    """Benchmarks of ``Views`` (its attributes are set by ``Views``)."""

    config: ViewConfig
    now_ms: Callable[[], int]
    _trust: TrustSet
    _benches: dict[tuple[str, str], dict[str, SignedRecord]]  # (subject, metric) -> author

    @_locked
    def benchmarks(
        self, subject: str | None = None, *, include_untrusted: bool = False
    ) -> list[Benchmark]:
        out = []
        for subj, metric in sorted(self._benches):
            if subject is not None and subj != subject:
                continue
            b = self.benchmark(subj, metric, include_untrusted=include_untrusted)
            if b is not None:
                out.append(b)
        return out

    @_locked
    def benchmark(
        self, subject: str, metric: str, *, include_untrusted: bool = False
    ) -> Benchmark | None:
        """Each counted host's latest observation, weighted by ``0.5 ** (age / half-life)``
        (ages relative to the newest, which changes no ratio); observations older than
        ``bench_max_age`` are rejected (and counted as stale)."""
        now = self.now_ms()
        trust = self._trust
        cfg = self.config
        counted: list[tuple[int, dict[str, Any], str, str]] = []  # recorded, summary, ..
        stale = 0
        for author, rec in sorted(self._benches.get((subject, metric), {}).items()):
            if not trust.counts(author, rec.ts) and not include_untrusted:
                continue
            f = rec.fields
            recorded = _int(f.get("recorded_at"))
            summary = f.get("summary")
            if recorded is None or not isinstance(summary, dict):
                continue
            if now - recorded > cfg.bench_max_age_ms:
                stale += 1
                continue
            counted.append((recorded, summary, author, str(f.get("unit", ""))))
        if not counted and not stale:
            return None
        newest = max((c[0] for c in counted), default=0)
        sums: dict[str, float] = {}
        weights: dict[str, float] = {}
        for recorded, summary, _, _ in counted:
            # Weights relative to the newest observation: one observation is reported
            # exactly, and a weight never underflows.
            weight = 0.5 ** ((newest - recorded) / cfg.bench_half_life_ms)
            for k, v in summary.items():
                if isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v):
                    sums[k] = sums.get(k, 0.0) + weight * v
                    weights[k] = weights.get(k, 0.0) + weight
        hosts = [c[2] for c in counted]
        unit = next((c[3] for c in counted if c[3]), "")
        values = {k: sums[k] / weights[k] for k in sorted(sums) if weights[k] > 0}
        return Benchmark(subject, metric, unit, values, len(hosts), hosts, newest, stale)
