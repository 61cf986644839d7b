"""The OpenAPI 3 description of the local API, served at ``/openapi.json`` and kept as
docs/openapi.json (``python -m gossip.api.openapi > docs/openapi.json``; a test checks that
the two match, that every route of ``api.py`` is in it, and runs schemathesis against
it). The paths are derived from the operations table (``gossip.ops``): their parameters
from the operations' fields, their answers from ``SCHEMAS`` below, which names the
shape of every operation's result.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from typing import Any

from ..errors import CODES
from ..ops import OPERATIONS, Operation
from ..ops.fields import NOT_BLANK, Field

VERSION = "1"

Schema = dict[str, Any]


def _obj(props: dict[str, Schema], required: list[str] | None = None, *,
         extra: bool = False) -> Schema:  # fmt: skip
    out: Schema = {"type": "object", "properties": props,
                   "required": sorted(props) if required is None else required,
                   "additionalProperties": extra}  # fmt: skip
    if not out["required"]:
        del out["required"]
    return out


def _ref(name: str) -> Schema:
    return {"$ref": f"#/components/schemas/{name}"}


def _arr(item: Schema) -> Schema:
    return {"type": "array", "items": item}


def _null(schema: Schema) -> Schema:
    if "$ref" in schema:
        return {"anyOf": [schema, {"type": "null"}]}
    if "type" not in schema:  # any value, null among them
        return schema
    return {**schema, "type": [schema["type"], "null"]}


STR: Schema = {"type": "string"}
INT: Schema = {"type": "integer"}
NUM: Schema = {"type": "number"}
BOOL: Schema = {"type": "boolean"}
MS: Schema = {"type": "integer", "description": "milliseconds since the epoch"}
EVENT_ID: Schema = {"type": "string", "pattern": "^[A-Za-z0-9-]{1,64}$",
                    "description": "an event's id (`run-seq`); anything else is a 400"}
TEXT: Schema = {"type": "string", "minLength": 1, "maxLength": 256, "pattern": NOT_BLANK}
ANY_TEXT: Schema = {"type": "string", "maxLength": 256}

# A memory's bank and the agents' fields (docs/agents.md); older records have none.
AGENT_FIELDS: dict[str, Schema] = {
    "bank": STR, "document_id": _null(STR), "context": _null(STR),
    "metadata": {"type": "object", "additionalProperties": STR}, "timestamp": _null(STR),
}
# Recall's ranking of a memory (null outside a recall): lane -> rank there, fused score.
RANKED: dict[str, Schema] = {
    "lanes": _null({"type": "object", "additionalProperties": INT}),
    "score": _null(NUM),
}

SCHEMAS: dict[str, Schema] = {
    "Error": _obj({
        "error": STR, "field": _null(STR),
        "code": {"enum": list(CODES), "description": "what went wrong, for programs: the "
                 "refusal's class (`gossip.errors`); the message is for people"},
    }),
    # The change feed's events (GET /v1/events): each SSE `event:` name, its `data:` JSON.
    "RecordEvent": _obj({
        "root": {"enum": ["records", "state"]}, "key": STR, "kind": STR, "author": STR,
        "trusted": BOOL, "record": _ref("Record"),
    }),
    "BreakerEvent": _obj({
        "name": STR, "state": {"enum": ["open", "half_open", "closed"],
                               "description": "merged across trusted hosts, after it"},
        "author": STR, "observed": {**STR, "description": "what that host now says"},
        "trusted": BOOL,
    }),
    "PeerEvent": _obj({"change": {"enum": ["added", "changed", "removed"]}, "peer": _ref("Peer")}),
    "LostEvent": _obj({"count": _null(INT), "reason": STR}, ["count"]),
    "CutoffEvent": _obj({"reason": STR, "resume_from": _null(STR)}),
    "Memory": _obj({
        "id": STR, "text": STR, "category": STR, "subject": _null(STR), "tags": _arr(STR),
        "author": STR, "ts": MS, "trusted": BOOL, "expires_at": _null(MS), "supersedes": _null(STR),
        **AGENT_FIELDS, **RANKED,
    }),
    "RecalledMemory": _obj({
        "id": STR, "text": STR, "category": STR, "subject": _null(STR), "tags": _arr(STR),
        "author": STR, "ts": MS, "trusted": BOOL, "expires_at": _null(MS), "supersedes": _null(STR),
        "author_name": _null(STR), **AGENT_FIELDS, **RANKED,
    }),
    "Recall": _obj({
        "memories": _arr(_ref("RecalledMemory")),
        "mode": {"enum": ["hybrid", "lexical", "semantic"],
                 "description": "the lanes that answered (lexical while vectors are built)"},
        "note": _null({**STR, "description": "why a lane asked for did not answer"}),
        "capped": {"type": "object", "additionalProperties": INT,
                   "description": "author -> memories hidden by the per-author share cap"},
        "quota": _obj({"author_share": {**NUM, "description": "the most of one recall's "
                                        "results one author other than this host may hold"}}),
    }),
    "Record": _obj({"id": STR, "fields": {"type": "object"}, "body": STR, "sig": STR}),
    "Shown": _obj({
        "id": STR, "kind": STR, "author": STR, "author_name": _null(STR), "trusted": BOOL,
        "trust": {**STR, "description": "why it counts or not (keyring, successor, vouch, "
                  "revoked before/after its signature)"},
        "signature_ok": BOOL, "ts": MS, "retracted_by": _arr(STR), "memory": _null(_ref("Memory")),
        "supersedes": _null({**_obj({"id": STR, "honoured": BOOL, "note": STR}),
                             "description": "what the memory's `supersedes` does: only a "
                             "memory of its own author is replaced; another's is ignored"}),
        "provenance": _obj({"local": BOOL, "source": _null(STR), "received_at": _null(MS),
                            "checkpoint": BOOL,
                            "item": {**_null(_obj({"client": INT, "clock": INT})),
                                     "description": "the Yjs item that holds the record: a "
                                     "replica whose state vector is above `clock` for "
                                     "`client` holds it (null: not in the store's log)"}}),
        "record": _ref("Record"),
        "delivery": {**_arr(_ref("Delivery")), "description": "which known peers hold the "
                     "record, from their state vectors as last learned (docs/cli.md)"},
    }),
    "Delivery": _obj({
        "key": _null(STR), "name": STR, "address": STR,
        "state": {**STR, "description": "the peer's state (`Peer.state`)"},
        "has": {**_null(BOOL), "description": "the peer holds the record (its state vector "
                "as of `as_of` says so, or it wrote it); false: not as of `as_of`; null: "
                "unknown (its state vector was never learned here)"},
        "as_of": {**_null(MS), "description": "when the peer's state vector was learned"},
        "age_ms": {**_null(INT), "description": "how old that knowledge is, in ms"},
    }),
    "Retracted": _obj({"id": STR, "retraction": {**STR, "description": "the retraction "
                                                  "record's id (the earlier one if it was "
                                                  "retracted already)"},
                       "already_retracted": BOOL}),
    "Observation": _obj({
        "author": STR, "state": STR, "reason": STR, "failures": INT, "ts": MS,
        "tripped_at": _null(MS), "resets_at": _null(MS), "trusted": BOOL,
    }),
    "Breaker": _obj({
        "name": STR, "state": {"type": "string", "enum": ["open", "half_open", "closed", "unknown"],
                               "description": "unknown: no trusted host said anything current"},
        "tripped_by": _arr(STR), "reason": STR, "resets_at": _null(MS),
        "observations": _arr(_ref("Observation")),
    }),
    "Benchmark": _obj({
        "subject": STR, "metric": STR, "unit": STR,
        "values": {"type": "object", "additionalProperties": NUM}, "count": INT,
        "hosts": _arr(STR), "newest": MS, "stale": INT,
        "observations": {**_arr(_obj({
            "author": STR, "recorded_at": MS, "summary": {"type": "object",
                                                          "additionalProperties": NUM},
            "weight": {**NUM, "description": "its weight in `values`: 0.5 ** (age relative "
                       "to the newest / half-life); the newest weighs 1"},
        })), "description": "each host's observation that counted, newest first"},
    }),
    "BenchmarkRecorded": _obj({"subject": STR, "metric": STR, "value": NUM, "unit": STR}),
    "Peer": _obj({
        "key": _null(STR), "name": STR, "addresses": _arr(STR), "address": STR, "source": STR,
        "state": {**STR, "description": "alive, suspect (not reached yet, or failing), down, "
                  "left (it said goodbye), unknown-key; `not-running` for every row when no "
                  "daemon runs (the peers its last run knew, peers.json, and the "
                  "configured ones)"},
        "reason": {**STR, "description": "why the row is in its state, in words (\"\" "
                   "when alive)"},
        "last_success": _null(MS), "last_seen": _null(MS),
        "last_error": _null(STR), "failures": INT, "rtt_ms": _null(NUM), "bytes_in": INT,
        "bytes_out": INT,
        "they_lack": {**_null(INT), "description": "records (Yjs items) this host holds "
                      "that the peer lacks: its state vector as of `sv_at` against ours "
                      "now; 0: up to date; null: never learned"},
        "we_lack": {**_null(INT), "description": "records the peer held at `sv_at` that "
                    "this host lacks now (what it wrote since is not counted); 0: up to "
                    "date; null: never learned"},
        "next_attempt": MS,
        "exchanges": INT,
        "sources": {**_arr(STR), "description": "every source that proposed this peer "
                    "(static, tailnet, exchange, mdns), strongest first; `source` is the first"},
        "claimed": {**BOOL, "description": "`key` is only what mDNS claims: no signed answer "
                    "has proved it yet"},
        "unproven": {**_arr(STR), "description": "the addresses (a tail of `addresses`) that "
                     "only mDNS proposed and no signed answer has come from yet"},
        "transport": {**STR, "description": "what carries our exchanges with this peer: "
                      "`tls` (pinned to its key), `plaintext` (--insecure-plaintext) or "
                      "`memory` (an in-process network)"},
        "sv_at": {**_null(MS), "description": "when the peer's state vector was last "
                  "learned (its answer to our exchange or push, or its own request): what "
                  "`they_lack` and `we_lack` are computed from; null: never"},
    }),
    "Status": _obj({
        "id": STR, "name": STR, "address": STR, "profile": STR, "pid": INT, "started_at": MS,
        "transport": {**STR, "description": "what the peer port speaks: `tls` or `plaintext`"},
        "api": _obj({"socket": STR, "tcp": _null(STR)}),
        "discovery": _arr(_obj({"source": STR, "state": STR, "detail": STR}, ["source", "state"],
                               extra=True)),
        "peers": _obj({"alive": INT, "total": INT,
                       "transport": {"type": "object", "additionalProperties": INT,
                                     "description": "peers per transport mode"}}),
        "records": _obj({"total": INT, "trusted": INT, "untrusted": INT}),
        "state_entries": INT, "keyring": INT, "store_bytes": INT, "last_exchange": _null(MS),
        "semantic": _null(_obj({"model": STR, "vectors": INT, "pending": INT, "ready": BOOL})),
        "warnings": _arr(STR),
        "agents": {**_null(_obj({"listen": STR, "url": _null(STR), "exposed": BOOL,
                                 "error": _null(STR)})),
                   "description": "the agents' listener (docs/agents.md); null when off"},
        "embeddings": {**_null(_obj({
            "url": STR, "model": STR, "index": _null(STR), "reachable": _null(BOOL),
            "error": _null(STR), "vectors": _null(INT), "pending": _null(INT), "ready": BOOL})),
            "description": "[embeddings]' endpoint (docs/reading.md): `index` names its "
            "model's vectors (null until it first answered), `reachable` whether its last "
            "answer came (null: not asked yet), `ready` whether recall uses them; null "
            "without [embeddings] or without a daemon"},
    }),
    "TrustEntry": _obj({
        "id": STR, "name": STR, "self": BOOL, "trusted": BOOL,
        "how": {**STR, "description": "self, keyring, successor of …, vouched by …, revoked, "
                "revoked (retroactive), compromised (it named two successors), removed, "
                "not trusted"},
    }),
    "Trusted": _obj({"id": STR, "name": STR, "updated": BOOL,
                     "fingerprint": {**STR, "description": "the id's short check, as "
                                     "`gossip id` prints it on that host"},
                     "seen": {**BOOL, "description": "a record or a peer of this key was "
                              "seen here"},
                     "note": {**_null(STR), "description": "what to check before relying "
                              "on the key (never seen here: compare the fingerprint)"}}),
    "PeerForgotten": _obj({"key": STR, "name": STR, "state": {**STR, "description":
                                                             "its state when forgotten"}}),
    "Distrusted": _obj({"id": STR, "removed": BOOL,
                        "revoked": {**_null(STR), "description": "the published revoke "
                                    "record's id; null for a local removal"},
                        "kept": {**_null(STR), "description": "the key a removed old key had "
                                 "rotated to, which stays trusted (added to the keyring)"}}),
    "Invitation": _obj({"token": STR, "inviter": STR, "addresses": _arr(STR), "expires_at": MS}),
    "WebLogin": _obj({"url": {**STR, "description": "the dashboard's login link: open it "
                              "within a minute; it works once (docs/ui.md)"},
                      "expires_at": MS}),
    "Joined": _obj({"inviter": STR, "trusted": _arr(STR)}),
    "Rotated": _obj({"id": STR, "previous": STR}),
    "Repaired": _obj({
        "kept": {**INT, "description": "stored updates that verified, in the new store"},
        "dropped": {**INT, "description": "stored updates that did not verify or could "
                    "not be read"},
        "waiting": {**INT, "description": "verified, but built on a dropped one: peers send "
                    "both again"},
        "keyring": {**INT, "description": "keyring entries kept (this host not counted)"},
        "removed": {**_null(INT), "description": "keys removed by hand, kept removed; null: "
                    "that list was unreadable (check `gossip trust list`)"},
        "moved_to": {**_null(STR), "description": "where the old files were moved, kept"},
        "readable": {**BOOL, "description": "whether the old store could be read at all"},
        "acknowledged": {**_null(INT), "description": "writes the high-water mark recorded"},
    }),
    "Created": _obj({"id": STR}),
    "ImportSummary": _obj({
        "updates": INT, "applied": INT, "duplicate": INT, "waiting": INT,
        "refused": _arr(_obj({"index": INT, "rule": STR, "detail": STR, "key": STR,
                              "author": _null(STR)})),
        "untrusted": {"type": "object", "additionalProperties": INT},
    }),
    "SyncReport": _obj({"exchanges": INT, "failures": INT, "learned": INT, "rounds": INT,
                        "errors": {**_arr(STR), "description": "why each failed exchange "
                                   "failed, `ADDRESS: cause` (at most 16)"},
                        "seconds": NUM}),
    "Inspect": _obj({
        "records_by_kind": {"type": "object", "additionalProperties": INT},
        "records_by_author": _arr(_obj({"author": STR, "name": _null(STR), "trusted": BOOL,
                                        "records": INT, "over_quota": INT})),
        "state_by_kind": {"type": "object", "additionalProperties": INT},
        "state_vector": _obj({"clients": INT, "clock_total": INT}),
        "store": _obj({"bytes": INT, "updates": INT, "pending": INT}),
        "document_bytes": INT,
        "rejected_by_rule": {"type": "object", "additionalProperties": INT},
    }),
}


def _answer(description: str, schema: Schema) -> Schema:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _binary(description: str) -> Schema:
    return {"description": description, "content": {"application/octet-stream": {
        "schema": {"type": "string", "format": "binary"}}}}  # fmt: skip


ERR = _ref("Error")
COMMON_ERRORS = {
    "400": _answer("malformed request; `field` names what is wrong", ERR),
    "401": _answer("TCP without the bearer token", ERR),
    "403": _answer("Origin/Referer present, or a foreign Host", ERR),
    "503": {**_answer("the replica did not answer in time, or the node is stopping", ERR),
            "headers": {"Retry-After": {"description": "seconds to wait before trying again",
                                        "required": True, "schema": INT}}},
}


def _param(f: Field) -> Schema:
    out: Schema = {"name": f.name, "in": f.where, "required": f.where == "path" or f.required,
                   "schema": f.kind.schema()}  # fmt: skip
    if f.help:
        out["description"] = f.help
    return out


def _operation(op: Operation) -> Schema:
    """The OpenAPI operation object of ``op``: its parameters, body and answers."""
    result = _ref(op.result) if isinstance(op.result, str) else op.result
    ok = _binary("the file") if op.binary else _answer(op.summary, result or {})
    responses = {"201" if op.created else "200": ok, **COMMON_ERRORS}
    for status, why in op.errors.items():
        responses[str(status)] = _answer(why, ERR)
    out: Schema = {"operationId": op.name, "summary": op.summary, "responses": responses}
    params = [_param(f) for f in op.fields if f.where in ("path", "query")]
    if params:
        out["parameters"] = params
    if op.raw is not None:
        out["requestBody"] = {"required": True, "content": {"application/octet-stream": {
            "schema": op.field(op.raw).kind.schema()}}}  # fmt: skip
    elif op.method in ("POST", "PUT", "PATCH"):
        body = op.body_fields
        props = {f.name: f.schema() if f.required else _null(f.schema()) for f in body}
        required = [f.name for f in body if f.required]
        out["requestBody"] = {"required": bool(required), "content": {"application/json": {
            "schema": _obj(props, required)}}}  # fmt: skip
        responses.setdefault("413", _answer("the body is over 64 KiB", ERR))
    return out


EVENT_ID: Schema = {"type": "string", "pattern": "^[A-Za-z0-9-]{1,64}$",
                    "description": "an event's id (`run-seq`); anything else is a 400"}
EVENTS = {"record": "RecordEvent", "breaker": "BreakerEvent", "peer": "PeerEvent",
          "lost": "LostEvent", "cutoff": "CutoffEvent"}  # SSE event name -> its data's schema
# The routes that are no operation: a stream, a text format, this document.
EXTRA_PATHS: dict[str, Schema] = {
    "/v1/events": {"get": {
        "summary": "the change feed, as server-sent events (see docs/api.md)",
        "parameters": [
            {"name": "Last-Event-ID", "in": "header", "required": False, "schema": EVENT_ID},
            {"name": "last_event_id", "in": "query", "required": False, "schema": EVENT_ID,
             "description": "as the header, for clients that cannot set it"},
        ],
        "responses": {"200": {
            "description": "server-sent events; each `data:` is the JSON object of its "
                           "`event:` name's schema (`x-events`)",
            "content": {"text/event-stream": {"schema": STR}},
            "x-events": {name: _ref(schema) for name, schema in EVENTS.items()},
        }, **COMMON_ERRORS},
    }},
    "/metrics": {"get": {
        "summary": "metrics in the Prometheus text format",
        "responses": {"200": {"description": "metrics",
                              "content": {"text/plain": {"schema": STR}}},
                      **COMMON_ERRORS},
    }},
    "/openapi.json": {"get": {
        "summary": "this document",
        "responses": {"200": _answer("the OpenAPI document", {"type": "object"}),
                      **COMMON_ERRORS},
    }},
}  # fmt: skip


def document() -> Schema:
    """The OpenAPI document of the local API, derived from ``gossip.ops.OPERATIONS``."""
    paths: dict[str, Schema] = {}
    for op in OPERATIONS.values():
        paths.setdefault(op.path, {})[op.method.lower()] = _operation(op)
    paths.update(EXTRA_PATHS)
    return envelope(
        "sm-gossip local API", VERSION,
        "HTTP over the Unix socket api.sock in the data dir (mode 0600), or loopback TCP "
        "with a bearer token (--api-listen). Requests carrying Origin or Referer, or a "
        "foreign Host, are refused. See docs/api.md.",
        server="http://localhost", schemas=SCHEMAS,
        token={"type": "http", "scheme": "bearer", "description": "TCP only; the socket "
               "needs none"},
        security=[{}, {"token": []}], paths=paths,
    )  # fmt: skip


def envelope(title: str, version: str, description: str, *, server: str,
             schemas: dict[str, Schema], token: Schema, security: list[Schema],
             paths: dict[str, Schema]) -> Schema:  # fmt: skip
    """An OpenAPI 3.1 document around ``paths`` (both listeners' documents)."""
    return {
        "openapi": "3.1.0",
        "info": {"title": title, "version": version, "description": description},
        "servers": [{"url": server}],
        "components": {"schemas": schemas, "securitySchemes": {"token": token}},
        "security": security,
        "paths": dict(sorted(paths.items())),
    }


def print_document(document: Callable[[], Schema]) -> None:
    """``python -m`` of a document's module: the document, as committed under docs/."""
    json.dump(document(), sys.stdout, indent=2, sort_keys=True)
    sys.stdout.write("\n")


if __name__ == "__main__":
    print_document(document)
