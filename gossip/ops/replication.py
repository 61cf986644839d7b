"""This host among its peers: status, the peer table, sync now, export and import of
signed updates, document statistics.

Rules kept here for every surface: a sync address is a peer's HOST:PORT (not port 0, not
this node's own: refused every time, also once it answered with this node's key); a
failed exchange is reported with its cause; an import is at most ``MAX_IMPORT`` bytes
and every update in it goes through the gate; a sync that asks to go on until idle stops
after ``SYNC_ROUNDS``.
"""

from __future__ import annotations

from collections import Counter
from typing import TYPE_CHECKING, Any

from ..config import ConfigError, check_address
from ..errors import Conflict, Invalid, NotFound
from ..exportfile import ExportError, decode_export, encode_export, import_summary
from . import queries
from .fields import ADDRESS, ANY_TEXT, Field, Flag, Raw, Text
from .operation import Params, operation

if TYPE_CHECKING:
    from crdt import Replica
    from crdt.views import Views

    from .host import Host

MAX_IMPORT = 256 * 1024 * 1024  # an export file offered to an import
SYNC_ROUNDS = 10_000  # a catch-up arrives a message budget (4 MiB) per exchange
MAX_ERRORS = 16  # failed exchanges a sync report names, with their causes
PEERS = {"type": "array", "items": {"$ref": "#/components/schemas/Peer"}}


@operation("status", "GET", "/v1/status", "this host: node, peers, records, warnings",
           result="Status")  # fmt: skip
async def status(host: Host, p: Params) -> dict[str, Any]:
    def job(r: Replica, v: Views) -> dict[str, Any]:
        return {**queries.counts(v), "keyring": len(r.keyring()), "id": r.author,
                "semantic": None if v.semantic is None else v.semantic.status(),
                "preferred": None if v.preferred is None else v.preferred.status(),
                "unkept": v.unkept}

    counts = await host.read(job)
    peers = host.peers()
    alive = sum(1 for p in peers if p["state"] == "alive")
    last = max((p["last_success"] for p in peers if p["last_success"] is not None),
               default=None)  # fmt: skip
    warnings = []
    if not host.online:
        warnings.append("no daemon runs on this data dir: nothing replicates (`gossip serve`)")
    elif not peers:
        warnings.append("no peers: add --peer HOST:PORT, or enable discovery")
    elif not alive and (reachable := [p for p in peers if p["state"] != "unknown-key"]):
        warnings.append(f"none of {len(reachable)} peers is reachable")  # (unknown keys: below)
    if counts["unkept"]:
        warnings.append(f"the views are not kept on disk this run: {counts['unkept']}; they "
                        "are held in memory (nothing is lost) and a restart opens the file "
                        "again")  # fmt: skip
    if counts["keyring"] <= 1:
        warnings.append("the keyring has only this host: `gossip trust add KEY`")
    facts = {"agents": None, **host.facts()}
    facts["embeddings"] = endpoint = _endpoint(facts.get("embeddings"), counts["preferred"])
    if endpoint is not None and endpoint["ready"] and endpoint["reachable"]:
        counts["semantic"] = counts["preferred"]  # what recall uses now: the endpoint's
    vectors = counts["semantic"]
    if vectors is None:
        warnings.append("the embedded model cannot load here: recall is lexical only")
    elif vectors["pending"] and host.online:
        warnings.append(f"building vectors for {vectors['pending']} memories: recall is "
                        "lexical only until they are ready")  # fmt: skip
    if endpoint is not None and endpoint["reachable"] is False:
        warnings.append(f"the embeddings endpoint does not answer: {endpoint['error']}; the "
                        "semantic lane uses the embedded model")  # fmt: skip
    elif endpoint is not None and endpoint["reachable"] and not endpoint["ready"]:
        warnings.append(f"building vectors of {endpoint['index']} for {endpoint['pending']} "
                        "memories: the semantic lane uses the embedded model until then")
    unknown = sum(1 for p in peers if p["state"] == "unknown-key")
    if unknown:
        warnings.append(f"{unknown} peer(s) do not trust this host or are not trusted")
    agents = facts["agents"]
    if agents and agents["exposed"]:
        warnings.append(f"the agents' listener on {agents['listen']} is EXPOSED beyond this "
                        "machine: anyone who can reach it and has api.token reads and writes "
                        "memories ([agents] listen)")  # fmt: skip
    if agents and agents["error"]:
        warnings.append(f"the agents' listener is not running: {agents['error']}")
    return {
        "id": counts["id"],
        **facts,
        "peers": {"alive": alive, "total": len(peers),
                  "transport": dict(Counter(p["transport"] for p in peers))},
        "records": {k: counts[k] for k in ("total", "trusted", "untrusted")},
        "state_entries": counts["state_entries"],
        "keyring": counts["keyring"],
        "semantic": counts["semantic"],
        "store_bytes": queries.store_bytes(host.home),
        "last_exchange": last,
        "warnings": warnings,
    }  # fmt: skip


def _endpoint(endpoint: dict[str, Any] | None,
              index: dict[str, Any] | None) -> dict[str, Any] | None:  # fmt: skip
    """``[embeddings]``'s endpoint (the node's facts) with its model's index here."""
    if endpoint is None:
        return None
    held = index or {"vectors": None, "pending": None, "ready": False}
    return {**endpoint, **{k: held[k] for k in ("vectors", "pending", "ready")}}


@operation("peers", "GET", "/v1/peers", "the peer table", result=PEERS)
async def peers(host: Host, p: Params) -> list[dict[str, Any]]:
    return host.peers()


@operation(
    "peers_forget", "DELETE", "/v1/peers/{key}",
    "drop a row of the peer table (a host that left for good); a live source (mDNS while "
    "it advertises, the tailnet, the static list) or the host itself brings it back",
    Field("key", Text(), "path", required=True,
          help="the peer's public id, or a prefix of it (`gossip peers`)"),
    result="PeerForgotten", writes=True,
    errors={404: "no peer row has that id", 409: "no daemon runs: the table is the daemon's"},
)  # fmt: skip
async def peers_forget(host: Host, p: Params) -> dict[str, Any]:
    rows = [r for r in host.peers() if r["key"] and r["key"].startswith(p.key)]
    if not rows:
        raise NotFound(f"no peer row has the id {p.key!r} (`gossip peers` lists them)", "key")
    if len(rows) > 1:
        raise Invalid(f"{p.key!r} names {len(rows)} peers: give more of the id", "key")
    (row,) = rows
    if not host.online:
        raise Conflict("no daemon runs on this data dir: the peer table is the daemon's")
    if not host.forget_peer(row["key"]):  # it went meanwhile
        raise NotFound(f"no peer row has the id {p.key!r} (`gossip peers` lists them)", "key")
    return {"key": row["key"], "name": row["name"], "state": row["state"]}


@operation(
    "sync", "POST", "/v1/sync", "one exchange now with every peer, or with `address`",
    Field("address", ADDRESS, help="a peer's HOST:PORT"),
    Field("until_idle", Flag(), default=False,
          help=f"go on while an exchange teaches something (a catch-up), at most "
               f"{SYNC_ROUNDS} rounds"),
    result="SyncReport", writes=True, slow=True,
)  # fmt: skip
async def sync(host: Host, p: Params) -> dict[str, Any]:
    import time

    if p.address is not None:
        try:
            check_address(p.address)
        except ConfigError as e:
            raise Invalid(str(e), "address") from None
    started = time.perf_counter()
    total: dict[str, Any] = {"exchanges": 0, "failures": 0, "learned": 0, "rounds": 0}
    errors: list[str] = []
    while True:
        try:
            report = await host.sync_round(p.address)
        except ConfigError as e:  # this node's own address (even once it answered), port 0
            raise Invalid(str(e), "address") from None
        for k in ("exchanges", "failures", "learned"):
            total[k] += report[k]
        errors += [e for e in report["errors"] if e not in errors][: MAX_ERRORS - len(errors)]
        total["rounds"] += 1
        if not p.until_idle or not report["learned"] or total["rounds"] >= SYNC_ROUNDS:
            break
    return {**total, "errors": errors, "seconds": round(time.perf_counter() - started, 3)}


@operation(
    "export", "GET", "/v1/export",
    "every stored signed update as an export file (docs/cli.md), or with yjs=true the "
    "document as one plain Yjs v1 update",
    Field("yjs", Flag(), "query", default=False), binary=True, slow=True,
)  # fmt: skip
async def export(host: Host, p: Params) -> bytes:
    if p.yjs:
        return await host.read(lambda r, v: r.document_update())
    updates = await host.read(lambda r, v: r.updates_for({}))
    return b"".join(encode_export(updates))


@operation(
    "import", "POST", "/v1/import", "offer an export file's signed updates to the gate",
    Field("name", ANY_TEXT, "query", default="api", help="a name for the file, kept as the source"),
    Field("body", Raw(MAX_IMPORT), required=True, help="an export file"),
    raw="body", result="ImportSummary", writes=True, slow=True,
    errors={413: f"the file is over {MAX_IMPORT // 2**20} MiB"},
)  # fmt: skip
async def import_(host: Host, p: Params) -> dict[str, Any]:
    name = p.name or "api"
    try:
        updates = decode_export(p.body, name)
    except ExportError as e:
        raise Invalid(str(e), "body") from None
    outcomes = await host.ingest(updates, f"import:{name}")
    sv, trusted = await host.read(lambda r, v: (r.state_vector(), v.trust().keys))
    return import_summary(outcomes, sv, trusted)


@operation("inspect", "GET", "/v1/inspect", "document statistics", result="Inspect")
async def inspect(host: Host, p: Params) -> dict[str, Any]:
    return await host.read(queries.inspect)
