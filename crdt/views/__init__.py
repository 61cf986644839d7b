"""The read side: recall, breakers and benchmarks, as a reader should see them.

Replication is not judgement (invariant 8): the document holds every valid author's
records. Judgement happens here, when reading:

- **trust** — only authors of the effective trusted set count (``crdt.trust``: the
  keyring, which always includes this host, plus honoured successors and, with
  ``follow_vouches``, vouched keys, minus revoked and removed keys; a revoked key's
  records up to its revocation still count), unless the caller asks for untrusted ones
  too (they are then marked ``trusted: false``);
- **retraction** — a memory is hidden once *its own author* retracts it (anyone else's
  retraction of it is ignored), and once it has expired;
- **share cap** — each author other than this host holds at most ``author_share`` (half)
  of one recall's results, so a flooding writer, even a trusted one, cannot bury everyone
  else; recall says how many it hid;
- **time** — an author's signed time is bounded by when this host first stored the
  record: never newer than that, and for ranking never far older (``bounded_time``);
- **staleness** — a breaker observation past its ``resets_at`` plus a grace period no longer
  counts; a benchmark observation older than ``bench_max_age`` is rejected, and the rest
  are weighted by recency (half-life), their ``recorded_at`` never after first-seen.

Everything here is derived: ``Views`` builds its tables from the replica's document and
keeps them current from the replica's change feed; ``rebuild()`` gives the same answers.
It never writes to the document and holds no state that cannot be rebuilt. In a data dir
the tables are kept in ``views.sqlite`` and resumed at the next open (``kept``).

Split by kind: ``core`` (the façade: building, trust), ``kept`` (the views' file: resume
or rebuild), ``config`` (``ViewConfig``),
``recall`` (memories: recall's lanes, fusion, lookup), ``filters`` (the conditions every
recall lane applies: retraction, expiry, trust window, quota), ``banks``, ``signals``
(breakers and benchmarks), ``tally`` (what status and metrics count). None of them
imports ``gossip``.
"""

from typing import TYPE_CHECKING, Any

from .config import DAY_MS, HOUR_MS, MODES, ViewConfig

if TYPE_CHECKING:
    from .core import Views
    from .recall import Memory, Recall, embedded_text
    from .signals import Benchmark, BenchObservation, Breaker, BreakerObservation

__all__ = [
    "DAY_MS",
    "HOUR_MS",
    "MODES",
    "BenchObservation",
    "Benchmark",
    "Breaker",
    "BreakerObservation",
    "Memory",
    "Recall",
    "ViewConfig",
    "Views",
    "embedded_text",
]

# The reading policy is imported at once; the views themselves on first use, so that a
# command that only needs ``ViewConfig`` or ``MODES`` does not pay for the replica.
_LAZY = {"Views": "core", "Memory": "recall", "Recall": "recall", "embedded_text": "recall",
         "Benchmark": "signals", "BenchObservation": "signals", "Breaker": "signals",
         "BreakerObservation": "signals"}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'crdt.views' has no attribute {name!r}")
    from importlib import import_module

    return getattr(import_module(f".{module}", __name__), name)
