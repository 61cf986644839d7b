"""The OpenAPI 3 description of the local API, served at ``/openapi.json`` and kept as
docs/openapi.json (``python -m gossip.openapi > docs/openapi.json``; a test checks that
the two match, that every route of ``api.py`` is in it, and runs schemathesis against
it). When a route or a field changes in api.py, change it here in the same commit.
"""

from __future__ import annotations

import json
import sys
from typing import Any

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
    return {**schema, "type": [schema["type"], "null"]}


STR: Schema = {"type": "string"}
INT: Schema = {"type": "integer"}
NUM: Schema = {"type": "number"}
BOOL: Schema = {"type": "boolean"}
MS: Schema = {"type": "integer", "description": "milliseconds since the epoch"}
EVENT_ID: Schema = {"type": "string", "pattern": "^[A-Za-z0-9-]{1,64}$",
                    "description": "an event's id (`run-seq`); anything else is a 400"}
TEXT: Schema = {"type": "string", "minLength": 1, "maxLength": 256, "pattern": r"\S"}
ANY_TEXT: Schema = {"type": "string", "maxLength": 256}

SCHEMAS: dict[str, Schema] = {
    "Error": _obj({"error": STR, "field": _null(STR)}),
    "Memory": _obj({
        "id": STR, "text": STR, "category": STR, "subject": _null(STR), "tags": _arr(STR),
        "author": STR, "ts": MS, "trusted": BOOL, "expires_at": _null(MS), "supersedes": _null(STR),
    }),
    "RecalledMemory": _obj({
        "id": STR, "text": STR, "category": STR, "subject": _null(STR), "tags": _arr(STR),
        "author": STR, "ts": MS, "trusted": BOOL, "expires_at": _null(MS), "supersedes": _null(STR),
        "author_name": _null(STR),
    }),
    "Recall": _obj({
        "memories": _arr(_ref("RecalledMemory")),
        "capped": {"type": "object", "additionalProperties": INT,
                   "description": "author -> memories hidden by the per-author quota"},
        "quota": _obj({"per_window": INT, "window_ms": INT}),
    }),
    "Record": _obj({"id": STR, "fields": {"type": "object"}, "body": STR, "sig": STR}),
    "Shown": _obj({
        "id": STR, "kind": STR, "author": STR, "author_name": _null(STR), "trusted": BOOL,
        "trust": {**STR, "description": "why it counts or not (keyring, successor, vouch, "
                  "revoked before/after its signature)"},
        "signature_ok": BOOL, "ts": MS, "retracted_by": _arr(STR), "memory": _null(_ref("Memory")),
        "provenance": _obj({"local": BOOL, "source": _null(STR), "received_at": _null(MS),
                            "checkpoint": BOOL}),
        "record": _ref("Record"),
    }),
    "Retracted": _obj({"id": STR, "retraction": _null(STR), "already_retracted": BOOL}),
    "Observation": _obj({
        "author": STR, "state": STR, "reason": STR, "failures": INT, "ts": MS,
        "tripped_at": _null(MS), "resets_at": _null(MS), "trusted": BOOL,
    }),
    "Breaker": _obj({
        "name": STR, "state": {"type": "string", "enum": ["open", "half_open", "closed"]},
        "tripped_by": _arr(STR), "reason": STR, "resets_at": _null(MS),
        "observations": _arr(_ref("Observation")),
    }),
    "Benchmark": _obj({
        "subject": STR, "metric": STR, "unit": STR,
        "values": {"type": "object", "additionalProperties": NUM}, "count": INT,
        "hosts": _arr(STR), "newest": MS, "stale": INT,
    }),
    "BenchmarkRecorded": _obj({"subject": STR, "metric": STR, "value": NUM, "unit": STR}),
    "Peer": _obj({
        "key": _null(STR), "name": STR, "addresses": _arr(STR), "address": STR, "source": STR,
        "state": STR, "last_success": _null(MS), "last_seen": _null(MS),
        "last_error": _null(STR), "failures": INT, "rtt_ms": _null(NUM), "bytes_in": INT,
        "bytes_out": INT, "they_lack": _null(INT), "we_lack": _null(INT), "next_attempt": MS,
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
        "warnings": _arr(STR),
    }),
    "TrustEntry": _obj({
        "id": STR, "name": STR, "self": BOOL, "trusted": BOOL,
        "how": {**STR, "description": "self, keyring, successor of …, vouched by …, revoked, "
                "revoked (retroactive), compromised (it named two successors), removed, "
                "not trusted"},
    }),
    "Trusted": _obj({"id": STR, "name": STR, "updated": BOOL}),
    "Distrusted": _obj({"id": STR, "removed": BOOL,
                        "revoked": {**_null(STR), "description": "the published revoke "
                                    "record's id; null for a local removal"}}),
    "Invitation": _obj({"token": STR, "inviter": STR, "addresses": _arr(STR), "expires_at": MS}),
    "Joined": _obj({"inviter": STR, "trusted": _arr(STR)}),
    "Rotated": _obj({"id": STR, "previous": STR}),
    "Created": _obj({"id": STR}),
    "ImportSummary": _obj({
        "updates": INT, "applied": INT, "duplicate": INT, "waiting": INT,
        "refused": _arr(_obj({"index": INT, "rule": STR, "detail": STR, "key": STR,
                              "author": _null(STR)})),
        "untrusted": {"type": "object", "additionalProperties": INT},
    }),
    "SyncReport": _obj({"exchanges": INT, "failures": INT, "learned": INT, "seconds": NUM}),
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


def _json_body(schema: Schema) -> Schema:
    return {"required": True, "content": {"application/json": {"schema": schema}}}


def _answer(description: str, schema: Schema) -> Schema:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


ERR = _ref("Error")
COMMON_ERRORS = {
    "400": _answer("malformed request; `field` names what is wrong", ERR),
    "401": _answer("TCP without the bearer token", ERR),
    "403": _answer("Origin/Referer present, or a foreign Host", ERR),
    "503": _answer("the replica did not answer in time, or the node is stopping", ERR),
}


def _op(summary: str, ok: tuple[str, str, Schema], *, params: list[Schema] | None = None,
        body: Schema | None = None, errors: dict[str, str] | None = None,
        body_optional: bool = False) -> Schema:  # fmt: skip
    code, description, schema = ok
    responses = {code: _answer(description, schema), **COMMON_ERRORS}
    for status, why in (errors or {}).items():
        responses[status] = _answer(why, ERR)
    if body is not None:
        responses["413"] = _answer("the body is over 64 KiB", ERR)
    out: Schema = {"summary": summary, "responses": responses}
    if params:
        out["parameters"] = params
    if body is not None:
        out["requestBody"] = _json_body(body)
        if body_optional:  # an empty body is the empty object
            out["requestBody"]["required"] = False
    return out


def _q(name: str, schema: Schema, description: str = "") -> Schema:
    out: Schema = {"name": name, "in": "query", "required": False, "schema": schema}
    if description:
        out["description"] = description
    return out


def _path(name: str, schema: Schema) -> Schema:
    return {"name": name, "in": "path", "required": True, "schema": schema}


UNTRUSTED = _q("include_untrusted", BOOL, "also count authors outside the keyring")
RECORD_ID = _path("id", {"type": "string", "pattern": "^[0-9a-fA-F]{6,64}$",
                         "description": "a record id or its first 6+ hex characters"})  # fmt: skip
NOT_FOUND = {"404": "nothing has that id (or a prefix of it)"}


def document() -> Schema:
    paths: dict[str, Schema] = {
        "/v1/status": {"get": _op("this host: node, peers, records, warnings",
                                  ("200", "status", _ref("Status")))},
        "/v1/peers": {"get": _op("the peer table", ("200", "peers", _arr(_ref("Peer"))))},
        "/v1/memories": {
            "get": _op("recall memories, with the trust filter, retractions, expiry, quotas",
                       ("200", "matching memories, best first", _ref("Recall")),
                       params=[_q("q", ANY_TEXT, "words to search for"),
                               _q("category", ANY_TEXT), _q("subject", ANY_TEXT),
                               _q("tag", ANY_TEXT),
                               _q("author", ANY_TEXT, "an id, a keyring name or a prefix"),
                               _q("limit", {"type": "integer", "minimum": 1, "maximum": 1000}),
                               UNTRUSTED],
                       errors=NOT_FOUND),
            "post": _op("write a memory (signed here, durable, pushed to peers)",
                        ("201", "the record id", _ref("Created")),
                        body=_obj({
                            "text": {**TEXT, "maxLength": 8192}, "category": TEXT,
                            "subject": _null(TEXT), "tags": {**_arr(TEXT), "maxItems": 32},
                            "expires_in": _null({"type": "number", "exclusiveMinimum": 0,
                                                 "maximum": 100 * 365 * 86400}),
                            "supersedes": _null({"type": "string",
                                                 "pattern": "^[0-9a-f]{64}$"}),
                        }, ["text", "category"])),
        },
        "/v1/memories/{id}": {"get": _op("one memory with its provenance",
                                         ("200", "the memory", _ref("Shown")),
                                         params=[RECORD_ID], errors=NOT_FOUND)},
        "/v1/memories/{id}/retract": {"post": _op(
            "retract one of this host's memories", ("200", "done", _ref("Retracted")),
            params=[RECORD_ID], body=_obj({"reason": ANY_TEXT}, []),
            errors={**NOT_FOUND, "409": "the memory was written by another host"})},
        "/v1/records/{id}": {"get": _op("any immutable record with its provenance",
                                        ("200", "the record", _ref("Shown")),
                                        params=[RECORD_ID], errors=NOT_FOUND)},
        "/v1/breakers": {"get": _op("every breaker, merged across trusted hosts",
                                    ("200", "breakers", _arr(_ref("Breaker"))),
                                    params=[UNTRUSTED])},
        "/v1/breaker": {"get": _op("one breaker (closed when nobody said anything)",
                                   ("200", "the breaker", _ref("Breaker")),
                                   params=[{**_q("name", TEXT), "required": True},
                                           UNTRUSTED])},
        "/v1/breakers/trip": {"post": _op(
            "open a breaker from this host", ("200", "the merged breaker", _ref("Breaker")),
            body=_obj({"name": TEXT, "reason": ANY_TEXT,
                       "cooldown": {"type": "number", "exclusiveMinimum": 0,
                                    "maximum": 100 * 365 * 86400},
                       "failures": {"type": "integer", "minimum": 0, "maximum": 2**31}},
                      ["name", "cooldown"]))},
        "/v1/breakers/reset": {"post": _op(
            "close a breaker from this host", ("200", "the merged breaker", _ref("Breaker")),
            body=_obj({"name": TEXT, "reason": ANY_TEXT}, ["name"]),
            errors={"404": "no host ever named that breaker"})},
        "/v1/benchmarks": {
            "get": _op("recency-weighted benchmark summaries",
                       ("200", "summaries", _arr(_ref("Benchmark"))),
                       params=[_q("subject", ANY_TEXT), _q("metric", ANY_TEXT), UNTRUSTED]),
            "post": _op("record this host's latest measurement",
                        ("201", "recorded", _ref("BenchmarkRecorded")),
                        body=_obj({"subject": {**TEXT, "pattern": r"^[^|]*\S[^|]*$"},
                                   "metric": TEXT, "value": NUM, "unit": ANY_TEXT},
                                  ["subject", "metric", "value"])),
        },
        "/v1/trust": {
            "get": _op("the keyring", ("200", "trusted keys", _arr(_ref("TrustEntry")))),
            "post": _op("trust a key (count its records, exchange with it)",
                        ("200", "trusted", _ref("Trusted")),
                        body=_obj({"key": {"type": "string",
                                           "pattern": "^[A-Za-z0-9_-]{42}[AEIMQUYcgkosw048]$"},
                                   "name": ANY_TEXT}, ["key"])),
        },
        "/v1/trust/{key}": {"delete": _op(
            "stop trusting a key (an id, a keyring name or a prefix)",
            ("200", "removed", _ref("Distrusted")),
            params=[_path("key", {"type": "string", "minLength": 1, "maxLength": 256}),
                    _q("retroactive", BOOL, "the published revocation hides all its records"),
                    _q("local", BOOL, "only remove it here, even if this host may revoke it")],
            errors={"404": "not in the keyring"})},
        "/v1/invitations": {"post": _op(
            "a single-use invitation token for a new host (docs/cli.md, trust invite)",
            ("201", "the token (one line; give it to the new host only)", _ref("Invitation")),
            body=_obj({"ttl": {"type": "number", "exclusiveMinimum": 0, "maximum": 2592000,
                               "description": "seconds it stays valid (default a day)"},
                       "name": ANY_TEXT}, []), body_optional=True)},
        "/v1/invitations/redeem": {"post": _op(
            "redeem an invitation: trust the inviter (and whom it trusts), prove the token",
            ("200", "trusted keys", _ref("Joined")),
            body=_obj({"token": {"type": "string", "maxLength": 4096},
                       "members": BOOL}, ["token"]))},
        "/v1/key/rotate": {"post": _op(
            "switch this host to a fresh key; the old one signs a successor record",
            ("200", "the new and the previous key", _ref("Rotated")), body=_obj({}, []),
            body_optional=True)},
        "/v1/sync": {"post": _op("one exchange now with every peer, or with `address`",
                                 ("200", "what moved", _ref("SyncReport")),
                                 body=_obj({"address": {"type": "string",
                                                        "description": "HOST:PORT"}}, []))},
        "/v1/export": {"get": {
            "summary": "every stored signed update as an export file (docs/cli.md), or with "
                       "yjs=true the document as one plain Yjs v1 update",
            "parameters": [_q("yjs", BOOL)],
            "responses": {"200": {"description": "the file",
                                  "content": {"application/octet-stream": {
                                      "schema": {"type": "string", "format": "binary"}}}},
                          **COMMON_ERRORS},
        }},
        "/v1/import": {"post": {
            "summary": "offer an export file's signed updates to the gate",
            "parameters": [_q("name", ANY_TEXT, "a name for the file, kept as the source")],
            "requestBody": {"required": True, "content": {"application/octet-stream": {
                "schema": {"type": "string", "format": "binary"}}}},
            "responses": {"200": _answer("what the gate did with each update",
                                         _ref("ImportSummary")),
                          "413": _answer("the file is over 256 MiB", ERR), **COMMON_ERRORS},
        }},
        "/v1/inspect": {"get": _op("document statistics",
                                   ("200", "statistics", _ref("Inspect")))},
        "/v1/events": {"get": {
            "summary": "the change feed, as server-sent events (see docs/api.md)",
            "parameters": [
                {"name": "Last-Event-ID", "in": "header", "required": False,
                 "schema": EVENT_ID},
                _q("last_event_id", EVENT_ID, "as the header, for clients that cannot set it"),
            ],
            "responses": {"200": {"description": "events: record, breaker, peer, lost, cutoff",
                                  "content": {"text/event-stream": {"schema": STR}}},
                          **COMMON_ERRORS},
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
    }
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "sm-gossip local API",
            "version": VERSION,
            "description": "HTTP over the Unix socket api.sock in the data dir (mode 0600), "
            "or loopback TCP with a bearer token (--api-listen). Requests carrying Origin or "
            "Referer, or a foreign Host, are refused. See docs/api.md.",
        },
        "servers": [{"url": "http://localhost"}],
        "components": {
            "schemas": SCHEMAS,
            "securitySchemes": {"token": {"type": "http", "scheme": "bearer",
                                          "description": "TCP only; the socket needs none"}},
        },
        "security": [{}, {"token": []}],
        "paths": paths,
    }


def main() -> None:
    json.dump(document(), sys.stdout, indent=2, sort_keys=True)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
