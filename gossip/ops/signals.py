"""Circuit breakers and benchmark observations: this host's say, and what readers see
merged across trusted hosts.

Rules kept here for every surface: a breaker is reset only if some host ever named it
(a typo must not publish a closed breaker nobody has); a breaker no trusted host has a
current say on reads ``unknown``, never ``closed`` (the caller chooses what that means);
a trip's cooldown is at most the views' ``breaker_max_open_ms`` (``[breakers]
max_open``), which also clips everyone's; a benchmark subject cannot hold ``|`` (the
state key is ``subject|metric``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from crdt import records

from ..errors import Conflict, NotFound
from . import queries
from .fields import ANY_TEXT, TEXT, Field, Number, Seconds, Text
from .memories import UNTRUSTED
from .operation import Params, operation

if TYPE_CHECKING:
    from crdt import Identity, SignedRecord
    from crdt.views import Breaker

    from .host import Host

BREAKERS = {"type": "array", "items": {"$ref": "#/components/schemas/Breaker"}}
BENCHMARKS = {"type": "array", "items": {"$ref": "#/components/schemas/Benchmark"}}
UNKNOWN = "unknown"  # no trusted host said anything current: not the same as closed
NAME = Field("name", TEXT, required=True, help="the breaker's name, e.g. kimi-coding/k2p5")
REASON = Field("reason", ANY_TEXT, default="")
MAX_OPEN_S = 365 * 86400  # the largest [breakers] max_open a config may set


async def _merged(host: Host, name: str, include_untrusted: bool = False) -> dict[str, Any]:
    found = await host.read(lambda r, v: v.breaker(name, include_untrusted=include_untrusted))
    return (found if found is not None else unknown_breaker(name)).to_json()


def unknown_breaker(name: str) -> Breaker:
    """What a reader knows of a breaker no trusted host has a current say on."""
    from crdt.views import Breaker

    return Breaker(name, UNKNOWN, [], "", None, [])


@operation(
    "breakers", "GET", "/v1/breakers", "every breaker, merged across trusted hosts",
    UNTRUSTED, result=BREAKERS,
)  # fmt: skip
async def breakers(host: Host, p: Params) -> list[dict[str, Any]]:
    found = await host.read(lambda r, v: v.breakers(include_untrusted=p.include_untrusted))
    return [b.to_json() for b in found]


@operation(
    "breaker", "GET", "/v1/breaker",
    "one breaker (unknown when no trusted host said anything current)",
    Field("name", TEXT, "query", required=True), UNTRUSTED, result="Breaker",
)  # fmt: skip
async def breaker(host: Host, p: Params) -> dict[str, Any]:
    return await _merged(host, p.name, p.include_untrusted)


@operation(
    "breaker_trip", "POST", "/v1/breakers/trip", "open a breaker from this host",
    NAME, REASON,
    Field("cooldown", Seconds(high=MAX_OPEN_S), required=True,
          help="it resets after this many seconds (at most [breakers] max_open, a day)"),
    Field("failures", Number(low=0, high=2**31, integer=True), default=0),
    result="Breaker", writes=True,
    errors={409: "the cooldown is over this host's [breakers] max_open"},
)  # fmt: skip
async def breaker_trip(host: Host, p: Params) -> dict[str, Any]:
    cap_ms = await host.read(lambda r, v: v.config.breaker_max_open_ms)
    if p.cooldown * 1000 > cap_ms:
        raise Conflict(f"'cooldown' is over this host's cap of {cap_ms / 1000:g} seconds "
                      "([breakers] max_open in config.toml): trip it again if it lasts",
                      "cooldown")  # fmt: skip

    def make(identity: Identity, now: int) -> SignedRecord:
        return records.breaker(identity, p.name, state="open", reason=p.reason,
                               failures=p.failures, tripped_at=now,
                               resets_at=now + round(p.cooldown * 1000), ts=now)  # fmt: skip

    await host.write(make)
    return await _merged(host, p.name)


@operation(
    "breaker_reset", "POST", "/v1/breakers/reset", "close a breaker from this host",
    NAME, REASON, result="Breaker", writes=True,
    errors={404: "no host ever named that breaker"},
)  # fmt: skip
async def breaker_reset(host: Host, p: Params) -> dict[str, Any]:
    if not await host.read(lambda r, v: p.name in queries.breaker_names(r)):
        raise NotFound(f"no breaker named {p.name!r:.80} here (see `gossip breaker list`)",
                       "name")  # fmt: skip
    await host.write(
        lambda i, now: records.breaker(i, p.name, state="closed", reason=p.reason, ts=now)
    )
    return await _merged(host, p.name)


@operation(
    "bench_show", "GET", "/v1/benchmarks", "recency-weighted benchmark summaries",
    Field("subject", ANY_TEXT, "query"), Field("metric", ANY_TEXT, "query"), UNTRUSTED,
    result=BENCHMARKS,
)  # fmt: skip
async def bench_show(host: Host, p: Params) -> list[dict[str, Any]]:
    found = await host.read(
        lambda r, v: v.benchmarks(p.subject or None, include_untrusted=p.include_untrusted)
    )
    return [b.to_json() for b in found if not p.metric or b.metric == p.metric]


@operation(
    "bench_record", "POST", "/v1/benchmarks", "record this host's latest measurement",
    Field("subject", Text(refuse="|"), required=True, help="what was measured"),
    Field("metric", TEXT, required=True),
    Field("value", Number(), required=True),
    Field("unit", ANY_TEXT, default=""),
    result="BenchmarkRecorded", created=True, writes=True,
)  # fmt: skip
async def bench_record(host: Host, p: Params) -> dict[str, Any]:
    summary = {"value": p.value}
    await host.write(lambda i, now: records.benchmark(i, p.subject, p.metric, summary=summary,
                                                      unit=p.unit, ts=now))  # fmt: skip
    return {"subject": p.subject, "metric": p.metric, "value": p.value, "unit": p.unit}
