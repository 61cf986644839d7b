"""Metrics of a running node in the Prometheus text exposition format (version 0.0.4).

The format is a few lines of text; writing it here costs less than a dependency. Values
come from the peer table (snapshots) and from the replica's and views' own figures; nothing here is
kept between scrapes, so the counters are the peer table's own (they restart with the
daemon, which Prometheus handles as a counter reset).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from typing import TYPE_CHECKING

from ..peers import STATES, PeerInfo

if TYPE_CHECKING:
    from crdt import Replica
    from crdt.views import Views


def replica_figures(r: Replica, views: Views) -> dict[str, object]:
    """What a scrape needs from the replica (worker thread): counts the views keep
    (``Views.held``), never a decode of the document."""
    held = views.held()
    by_kind = Counter(held["records_by_kind"]) + Counter(held["state_by_kind"])
    return {"by_kind": dict(by_kind), "pending": r.store_stats()["pending"],
            "rejected": dict(r.rejected)}  # fmt: skip


def render(peers: Iterable[PeerInfo], figures: dict[str, object], store_bytes: int) -> str:
    rows = list(peers)
    out: list[str] = []

    def metric(name: str, kind: str, help_: str, samples: list[tuple[str, float]]) -> None:
        out.append(f"# HELP {name} {help_}")
        out.append(f"# TYPE {name} {kind}")
        for labels, value in samples:
            out.append(f"{name}{labels} {_num(value)}")

    states = Counter(p.state for p in rows)
    metric("gossip_peers", "gauge", "Peers by state.",
           [(f'{{state="{s}"}}', states.get(s, 0)) for s in STATES])  # fmt: skip
    metric("gossip_exchanges_total", "counter", "Completed exchanges this node started.",
           [("", sum(p.exchanges for p in rows))])  # fmt: skip
    metric("gossip_peer_failures", "gauge", "Consecutive failures, summed over peers.",
           [("", sum(p.failures for p in rows))])  # fmt: skip
    metric("gossip_bytes_in_total", "counter", "Bytes received from peers.",
           [("", sum(p.bytes_in for p in rows))])  # fmt: skip
    metric("gossip_bytes_out_total", "counter", "Bytes sent to peers.",
           [("", sum(p.bytes_out for p in rows))])  # fmt: skip
    by_kind = figures.get("by_kind", {})
    assert isinstance(by_kind, dict)
    metric("gossip_records", "gauge", "Records and state entries held, by kind.",
           [(f'{{kind="{_label(k)}"}}', v) for k, v in sorted(by_kind.items())])  # fmt: skip
    metric("gossip_updates_pending", "gauge", "Updates waiting for their predecessors.",
           [("", float(figures.get("pending", 0)))])  # type: ignore[arg-type]  # fmt: skip
    rejected = figures.get("rejected", {})
    assert isinstance(rejected, dict)
    metric("gossip_updates_rejected_total", "counter", "Updates the gate refused, by rule.",
           [(f'{{rule="{_label(k)}"}}', v) for k, v in sorted(rejected.items())])  # fmt: skip
    lag = max((p.we_lack or 0 for p in rows), default=0)
    metric("gossip_lag_items", "gauge",
           "Items the most advanced peer had that we lacked, at the last exchange.",
           [("", lag)])  # fmt: skip
    metric("gossip_store_bytes", "gauge", "Bytes of the store on disk.", [("", store_bytes)])
    return "\n".join(out) + "\n"


def _num(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else repr(float(value))


def _label(text: str) -> str:
    return text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
