"""Signal views, the state records hosts publish about the world: breakers (each name
merged across hosts: open while a fresh counted observation says so, half_open through
the grace period, closed otherwise) and benchmarks (each subject and metric summarised
across hosts, weighted by recency, stale observations rejected).

A mixin of ``crdt.views.Views``: it reads the breaker and benchmark tables the core
keeps (``_breakers``, ``_benches``) and the trusted set; it never writes anything.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

from ..records import SignedRecord
from ..trust import TrustSet
from .common import _int, _locked, bounded_time
from .config import BREAKER_FUTURE_MS, ViewConfig


@dataclass(frozen=True)
class BreakerObservation:
    author: str
    state: str
    reason: str
    failures: int
    ts: int
    tripped_at: int | None
    resets_at: int | None
    trusted: bool


@dataclass(frozen=True)
class Breaker:
    """One breaker name, merged across hosts."""

    name: str
    state: str  # open | half_open | closed
    tripped_by: list[str]  # authors whose fresh observation says open
    reason: str  # the newest such observation's reason
    resets_at: int | None  # when the last of them resets
    observations: list[BreakerObservation]

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class BenchObservation:
    """One host's latest observation that counted, and its weight in the summary."""

    author: str
    recorded_at: int  # bounded by when this host first stored it
    weight: float  # 0.5 ** (age relative to the newest / half-life); the newest weighs 1
    summary: dict[str, float]


@dataclass(frozen=True)
class Benchmark:
    """One (subject, metric), summarised across hosts, weighted by recency."""

    subject: str
    metric: str
    unit: str
    values: dict[str, float]  # summary key -> recency-weighted mean
    count: int  # observations that counted
    hosts: list[str]
    newest: int  # recorded_at of the newest observation that counted (bounded by first-seen)
    stale: int  # observations rejected as too old
    observations: list[BenchObservation] = field(default_factory=list)  # newest first

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


class SignalViews:
    """Breakers and benchmarks of ``Views`` (its attributes are set by ``Views``)."""

    config: ViewConfig
    now_ms: Callable[[], int]
    _trust: TrustSet
    _breakers: dict[str, dict[str, SignedRecord]]  # name -> author -> record
    _benches: dict[tuple[str, str], dict[str, SignedRecord]]  # (subject, metric) -> author
    _arrived: dict[str, int]  # state record id -> first stored here (ms)

    # -- breakers ----------------------------------------------------------------------

    @_locked
    def breakers(self, *, include_untrusted: bool = False) -> list[Breaker]:
        """Every breaker any counted host has an opinion on, merged, by name."""
        return [
            b
            for name in sorted(self._breakers)
            if (b := self.breaker(name, include_untrusted=include_untrusted)) is not None
        ]

    @_locked
    def breaker(self, name: str, *, include_untrusted: bool = False) -> Breaker | None:
        """Open while any fresh counted observation says open and has not reached its
        ``resets_at``; half_open from then until the grace period ends (or when a host
        says half_open); closed otherwise."""
        now = self.now_ms()
        trust = self._trust
        grace = self.config.breaker_grace_ms
        obs: list[BreakerObservation] = []
        order: dict[str, int] = {}  # author -> its signed time, never after first-seen
        for author, rec in self._breakers.get(name, {}).items():
            trusted = trust.counts(author, rec.ts)
            if not (trusted or include_untrusted):
                continue
            f = rec.fields
            resets = _int(f.get("resets_at"))
            tripped = _int(f.get("tripped_at"))
            if rec.ts > now + BREAKER_FUTURE_MS:
                continue  # signed in the future: refused (it would hold the cap off)
            if resets is not None:  # open at most max_open after it was signed (or tripped)
                start = min(rec.ts, tripped) if tripped is not None else rec.ts
                resets = min(resets, start + self.config.breaker_max_open_ms)
            if resets is not None and now > resets + grace:
                continue  # stale: past its reset and the grace period
            obs.append(
                BreakerObservation(author, str(f.get("state", "")), str(f.get("reason", "")),
                                   _int(f.get("failures")) or 0, rec.ts,
                                   tripped, resets, trusted)
            )  # fmt: skip
            order[author] = bounded_time(rec.ts, self._arrived.get(rec.id))
        if not obs:
            return None
        obs.sort(key=lambda o: (-order[o.author], o.author))
        opened = [o for o in obs if o.state == "open" and o.resets_at is not None]
        live = [o for o in opened if o.resets_at is not None and now < o.resets_at]
        if live:
            state, culprits = "open", live
        elif opened or any(o.state == "half_open" for o in obs):
            state = "half_open"
            culprits = opened or [o for o in obs if o.state == "half_open"]
        else:
            state, culprits = "closed", []
        resets = max((o.resets_at for o in culprits if o.resets_at is not None), default=None)
        return Breaker(
            name=name,
            state=state,
            tripped_by=sorted({o.author for o in culprits}),
            reason=culprits[0].reason if culprits else "",
            resets_at=resets,
            observations=obs,
        )

    # -- benchmarks --------------------------------------------------------------------

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
        ``bench_max_age`` are rejected (and counted as stale). An observation's
        ``recorded_at`` is never after this host first stored it (``bounded_time``): one
        dated ahead neither outweighs the others nor escapes staleness."""
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
            recorded = bounded_time(recorded, self._arrived.get(rec.id))
            if now - recorded > cfg.bench_max_age_ms:
                stale += 1
                continue
            counted.append((recorded, summary, author, str(f.get("unit", ""))))
        if not counted and not stale:
            return None
        newest = max((c[0] for c in counted), default=0)
        sums: dict[str, float] = {}
        weights: dict[str, float] = {}
        observed = []
        for recorded, summary, author, _ in counted:
            # Weights relative to the newest observation: one observation is reported
            # exactly, and a weight never underflows.
            weight = 0.5 ** ((newest - recorded) / cfg.bench_half_life_ms)
            used = {}
            for k, v in summary.items():
                if isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v):
                    sums[k] = sums.get(k, 0.0) + weight * v
                    weights[k] = weights.get(k, 0.0) + weight
                    used[str(k)] = float(v)
            observed.append(BenchObservation(author, recorded, weight, used))
        observed.sort(key=lambda o: (-o.recorded_at, o.author))
        hosts = [c[2] for c in counted]
        unit = next((c[3] for c in counted if c[3]), "")
        values = {k: sums[k] / weights[k] for k in sorted(sums) if weights[k] > 0}
        return Benchmark(subject, metric, unit, values, len(hosts), hosts, newest, stale,
                         observed)  # fmt: skip
