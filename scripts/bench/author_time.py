"""Author-chosen time and the per-author share (issue 17, items 3 and 4): the issue's
reproductions on one replica with its views, no network, for before/after figures.

Each other author is a real replica of its own whose signed updates the victim ingests;
every host's clock is one fake clock, so that "arrival" is exact. Cases: 600
keyword-stuffed memories backdated one per past hour against one honest lesson; a memory
dated ten years ahead against one written an hour later; three 120 ms benchmarks against
one 99999 dated a year ahead (then 8 days later); 200 memories in 50 minutes on one host.

Usage: python scripts/bench/author_time.py (from the repository's root). Prints one line
per case; docs/threat-model.md ("Author-chosen time") gives the figures before and after.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from crdt import Replica, records
from crdt.views import Views

T = 1_790_000_000_000
HOUR = 3_600_000
DAY = 24 * HOUR


class Clock:
    def __init__(self) -> None:
        self.t = T

    def __call__(self) -> int:
        return self.t


def main() -> None:
    tmp = Path(tempfile.mkdtemp())
    now = Clock()
    victim = Replica.open(tmp / "victim", now_ms=now)
    views = Views(victim, now_ms=now)

    def author(name: str) -> Replica:
        r = Replica.open(tmp / name, now_ms=now)
        victim.trust(r.author)
        return r

    def write(r: Replica, rec: records.SignedRecord) -> None:
        su = r.put(rec)
        assert su is not None
        victim.ingest(su.raw)

    flood = author("flood")
    stuffed = "provider x timeout " * 8
    su = flood.put(*[records.memory(flood.identity, f"{stuffed} {i}", category="learning",
                                    ts=T - i * HOUR) for i in range(600)])  # fmt: skip
    assert su is not None
    victim.ingest(su.raw)
    lesson = "provider x timeout at 03:00 UTC: retry with backoff after 30 s"
    victim.put(records.memory(victim.identity, lesson, category="learning", ts=T))
    top = views.recall("provider x timeout", limit=20, mode="lexical").hits
    ranked = [h.text for h in views.recall("provider x timeout", limit=1000,
                                           mode="lexical").hits]  # fmt: skip
    rank = ranked.index(lesson) + 1 if lesson in ranked else None
    print(f"backdated flood, top 20: {sum(h.author == flood.author for h in top)} from the "
          f"flood; the lesson {'in' if lesson in [h.text for h in top] else 'not in'} it "
          f"(its rank in a recall of 1000: {rank})")

    future = author("future")
    write(future, records.memory(future.identity, "dated ten years ahead", category="c",
                                 ts=T + 3650 * DAY))  # fmt: skip
    now.t += HOUR
    victim.put(records.memory(victim.identity, "written an hour later", category="c", ts=now.t))
    print(f"newest first: {views.recall(limit=1).hits[0].text!r}")

    for i, (value, at) in enumerate([(120.0, now.t)] * 3 + [(99999.0, now.t + 365 * DAY)]):
        host = author(f"bench{i}")
        write(host, records.benchmark(host.identity, "kimi", "latency_ms",
                                      summary={"p50": value}, ts=at, recorded_at=at))  # fmt: skip
    b = views.benchmark("kimi", "latency_ms")
    assert b is not None
    print(f"benchmark p50: {b.values['p50']:.2f} over {b.count} observations")
    now.t += 8 * DAY
    b = views.benchmark("kimi", "latency_ms")
    assert b is not None
    print(f"8 days later: {b.count} counted, {b.stale} stale")

    busy = Replica.open(tmp / "busy", now_ms=now)
    mine = Views(busy, now_ms=now)
    for i in range(1, 201):
        now.t += 15_000
        busy.put(records.memory(busy.identity, f"flaky test t{i} on CI", category="learning",
                                ts=now.t))  # fmt: skip
    everything = mine.recall(limit=500)
    print(f"200 own memories in 50 minutes: {len(everything.hits)} found, "
          f"{sum(everything.capped.values())} hidden")


if __name__ == "__main__":
    main()
