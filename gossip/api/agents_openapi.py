"""The OpenAPI 3 description of the agents' listener (``gossip.api.agents``), served at its
``/openapi.json`` and kept as docs/agents-openapi.json (``python -m
gossip.api.agents_openapi > docs/agents-openapi.json``; a test checks the two match and runs
schemathesis against a real daemon). Derived from ``agents.ROUTES`` and the operations'
fields and result schemas, so it cannot drift from what the routes do.
"""

from __future__ import annotations

from typing import Any

from ..ops import OPERATIONS
from ..ops.banks import ITEM_FIELDS
from ..ops.memories import BANK_ID
from .agents import HEALTH, ROUTES, Route
from .openapi import SCHEMAS, _null, _obj, envelope, print_document

Schema = dict[str, Any]
ERR: Schema = {"$ref": "#/components/schemas/Error"}
STR: Schema = {"type": "string"}


def _answer(why: str, schema: Schema) -> Schema:
    return {"description": why, "content": {"application/json": {"schema": schema}}}


COMMON: dict[str, Schema] = {
    "400": _answer("a parameter is malformed (`field` names it)", ERR),
    "401": {**_answer("no bearer token, or the wrong one", ERR),
            "headers": {"WWW-Authenticate": {"schema": STR}}},
    "403": _answer("a web page (Origin, Referer) or a foreign Host", ERR),
    "503": _answer("the node cannot answer now", ERR),
}  # fmt: skip


def _body(route: Route) -> Schema | None:
    op = OPERATIONS[route.op]
    if route.body == "item":
        fields = ITEM_FIELDS
    elif route.body == "op":
        fields = tuple(f for f in op.body_fields)
    else:
        return None
    props = {f.name: f.schema() if f.required else _null(f.schema()) for f in fields}
    props.update({name: _null(kind.schema()) for name, kind in route.extra.items()})
    required = [f.name for f in fields if f.required]
    return {"required": bool(required), "content": {"application/json": {
        "schema": _obj(props, required)}}}  # fmt: skip


def _result(route: Route) -> Schema:
    op = OPERATIONS[route.op]
    result = op.result if isinstance(op.result, dict) else {"$ref": f"#/components/schemas/"
                                                             f"{op.result}"}  # fmt: skip
    if route.op == "retain" and route.body == "op":
        props = dict(result["properties"])
        props.pop("bank_id")
        return _obj({"success": {"type": "boolean"}, "bank_id": STR, "async": {"type": "boolean"},
                     **props})  # fmt: skip
    if route.op == "retain":
        return _obj({"success": {"type": "boolean"}, "id": STR, "memory_item_id": STR,
                     "unchanged": {"type": "boolean"}})  # fmt: skip
    return result


def _operation(route: Route) -> Schema:
    op = OPERATIONS[route.op]
    responses = {"200": _answer(route.summary, _result(route)), **COMMON}
    for status, why in op.errors.items():
        responses[str(status)] = _answer(why, ERR)
    params = []
    for name in ("workspace", "bank", "memory_id"):
        if "{" + name + "}" in route.path:
            schema = BANK_ID.schema() if name != "memory_id" else op.field("id").kind.schema()
            params.append({"name": name, "in": "path", "required": True, "schema": schema})
    out: Schema = {"operationId": f"{route.op}_{route.method.lower()}_{len(route.path)}",
                   "summary": route.summary, "responses": responses,
                   "description": f"runs the operation `{route.op}` (docs/agents.md)"}  # fmt: skip
    if params:
        out["parameters"] = params
    body = _body(route)
    if body is not None:
        out["requestBody"] = body
        responses["413"] = _answer("the body is over 64 KiB", ERR)
    return out


def document() -> Schema:
    """The OpenAPI document of the agents' listener."""
    paths: dict[str, Schema] = {}
    for route in ROUTES:
        paths.setdefault(route.path, {})[route.method.lower()] = _operation(route)
    for path in HEALTH:
        paths[path] = {"get": {"summary": "whether the node answers", "responses": {
            "200": _answer("it answers", _obj({"ok": {"type": "boolean"}, "status": STR,
                                               "service": STR, "id": STR, "name": STR})),
            "503": _answer("it does not", _obj({"ok": {"type": "boolean"}, "status": STR,
                                                "error": STR})),
            **{k: v for k, v in COMMON.items() if k != "503"}}}}  # fmt: skip
    paths["/openapi.json"] = {"get": {"summary": "this document", "responses": {
        "200": _answer("the OpenAPI document", {"type": "object"}), **COMMON}}}  # fmt: skip
    return envelope(
        "sm-gossip agents' API (Singularity Memory compatible)", "1",
        "Singularity Memory's HTTP contract on loopback (default 127.0.0.1:8888, `[agents] "
        "listen`), with who wrote each memory. Bearer token: the content of api.token. MCP "
        "over streamable HTTP at /mcp/ and /mcp/{bank}/ (not described here). See "
        "docs/agents.md.",
        server="http://127.0.0.1:8888", schemas={"Error": SCHEMAS["Error"]},
        token={"type": "http", "scheme": "bearer"}, security=[{"token": []}], paths=paths,
    )  # fmt: skip


if __name__ == "__main__":
    print_document(document)
