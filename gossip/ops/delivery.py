"""Delivery status: which known peers hold a record, from what we know of their state
vectors (``show``'s ``delivery``).

A record is one Yjs item, ``(client, clock)`` (``Replica.origin``); a peer holds it when
the state vector it last gave us (in the answer to our exchange or push, or in a request
of its own) is above ``clock`` for ``client``. That knowledge has an age (``as_of``): a
peer that said "no" a minute ago may have it now, never the other way round (a replica
never loses an item). The peer that wrote the record holds it whatever we know.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .host import Host


def delivery(host: Host, shown: dict[str, Any]) -> list[dict[str, Any]]:
    """One entry per known peer (not the strangers mDNS claims): ``key``, ``name``,
    ``address``, ``state``, ``has`` (true, false, or null: unknown), ``as_of`` (ms since
    the epoch its state vector was learned; null: never) and ``age_ms``."""
    from ..peers import holds  # here: the peer table's modules only for `show`

    item = shown["provenance"]["item"]
    vectors = host.peer_vectors()
    now = host.now_ms()
    out = []
    for row in host.peers():
        if row["claimed"] and row["state"] == "unknown-key":
            continue  # an mDNS claim of a key we do not trust: not a peer of ours
        key = row["key"]
        sv = vectors.get(key) if key is not None else None
        has: bool | None = None
        if key is not None and key == shown["author"]:
            has = True  # it signed the record
        elif sv is not None and item is not None:
            has = holds(sv, item["client"], item["clock"])
        at = row.get("sv_at")
        out.append({"key": key, "name": row["name"], "address": row["address"],
                    "state": row["state"], "has": has, "as_of": at,
                    "age_ms": None if at is None else max(0, now - at)})  # fmt: skip
    return out
