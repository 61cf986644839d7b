"""The OpenAPI document of the local API: the served one is docs/openapi.json, every
route of api/local.py is in it, and schemathesis finds no 5xx and no answer that breaks it
(a few hundred generated cases against a real daemon, over loopback TCP with the token).
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from pathlib import Path

import hypothesis
import pytest
import schemathesis
from schemathesis.checks import CHECKS
from schemathesis.config import SchemathesisConfig

from gossip.api.openapi import document
from gossip.config import ConfigError, check_address
from tests.daemons import Daemon, free_port, ok

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "openapi.json"

# The whole local API but the change feed, a stream that never ends (tested by hand in
# test_api.py, its payloads against their schemas below). A sync address that the node
# would dial is replaced by a closed loopback port: tests send only to loopback.
# Three bodies carry signed, MAC'd or check data that no schema can describe (an export
# file's signed updates, an invitation token's secret, a fingerprint that must be the
# key's): for those, and only those, a schema-valid request may also be refused 400.
CONTENT_CHECKED = ("/v1/import", "/v1/invitations/redeem", "/v1/trust")
ACCEPTED = ["2xx", "3xx", "401", "403", "404", "409", "429", "5xx"]  # schemathesis' own
config = SchemathesisConfig.from_dict({"operations": [
    {"include-path": path,
     "checks": {"positive_data_acceptance": {"expected-statuses": [*ACCEPTED, "400"]}}}
    for path in CONTENT_CHECKED
]})  # fmt: skip
schema = schemathesis.openapi.from_dict(document(), config=config)
fuzzed = schema.exclude(path="/v1/events")
CLOSED = "127.0.0.1:1"


def test_docs_openapi_json_is_the_served_document(daemon: Daemon):
    kept = json.loads(DOC.read_text())
    assert kept == json.loads(json.dumps(document())), (
        "docs/openapi.json is stale: python -m gossip.api.openapi > docs/openapi.json"
    )
    assert daemon.get("/openapi.json") == kept


def test_every_route_is_described():
    from aiohttp import web

    from gossip.api import LocalApi

    app = web.Application()
    LocalApi._routes(LocalApi.__new__(LocalApi), app.router)
    routes = {(r.method.lower(), r.resource.canonical) for r in app.router.routes()
              if r.method != "HEAD"}  # fmt: skip
    described = {(m, p) for p, ops in document()["paths"].items() for m in ops}
    assert routes == described


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    home = tmp_path_factory.mktemp("fuzz") / "a"
    ok(home, "init", "--name", "fuzz")
    d = Daemon(home, free_port(), [], extra=("--api-listen", f"127.0.0.1:{free_port()}"))
    d.start()
    try:
        yield d
    finally:
        d.kill()


@pytest.fixture(scope="module")
def api_url(daemon: Daemon) -> str:
    return f"http://{daemon.api.request('GET', '/v1/status')['api']['tcp']}"


@pytest.mark.slow
@fuzzed.parametrize()
@hypothesis.settings(max_examples=40, deadline=None, derandomize=True,
                     suppress_health_check=list(hypothesis.HealthCheck))  # fmt: skip
def test_schemathesis_finds_no_5xx_and_no_answer_off_the_schema(case, daemon, api_url):
    """Every check schemathesis has (issue 17, item 9): no 5xx, answers and headers as
    documented, schema-valid requests accepted (or refused 404/409 by a rule of the
    state, as documented), schema-invalid ones refused."""
    checks = CHECKS.get_all()  # the OpenAPI ones are registered once a schema is loaded
    assert {"positive_data_acceptance", "negative_data_rejection"} <= {c.__name__ for c in checks}
    token = (daemon.home / "api.token").read_text().strip()
    body = case.body if isinstance(case.body, dict) else None
    if case.path == "/v1/sync" and body is not None and isinstance(body.get("address"), str):
        with contextlib.suppress(ConfigError):
            check_address(body["address"])
            body["address"] = CLOSED  # it would be dialled: loopback only
    case.call_and_validate(base_url=api_url, headers={"Authorization": f"Bearer {token}"},
                           checks=checks)  # fmt: skip


def test_the_peer_schema_has_every_field_of_a_peer_row():
    from dataclasses import fields

    from gossip.peers import PeerInfo

    schema = document()["components"]["schemas"]["Peer"]
    assert set(schema["properties"]) == {f.name for f in fields(PeerInfo)}


def test_every_event_payload_matches_its_schema():
    """Issue 17, item 9: the change feed's `data:` objects have schemas (``x-events``),
    and what the feed sends for each kind of node event matches them."""
    import jsonschema

    from crdt import Identity, records
    from gossip.api.feed import Feed, event_json
    from gossip.events import BreakerChanged, EventsLost, PeerChanged, RecordAdded
    from gossip.peers import PeerTable

    doc = document()
    events = doc["paths"]["/v1/events"]["get"]["responses"]["200"]["x-events"]
    who = Identity.generate()
    memory = records.memory(who, "a lesson", category="learning", ts=1)
    trip = records.breaker(who, "k2p5", state="open", reason="503s", ts=1, tripped_at=1,
                           resets_at=2)  # fmt: skip
    table = PeerTable("m" * 43, backoff_base_ms=1, backoff_cap_ms=2)
    row = table.add(["10.0.0.1:7471"], "static")
    assert row is not None
    feed = Feed()
    sent = [
        event_json(RecordAdded("records", memory.id, memory, True)),
        event_json(BreakerChanged("k2p5", "open", who.public_id, "open", trip, True)),
        event_json(PeerChanged("added", row.info())),
        event_json(EventsLost(3)),
        (lambda e: (e.type, e.data))(feed.listen("nope-1").queue[0]),  # cannot resume
        (lambda e: (e.type, e.data))(feed.cutoff_event(None)),
    ]
    assert {name for name, _ in sent} == set(events)
    for name, data in sent:
        check = jsonschema.Draft202012Validator({**events[name], "components": doc["components"]})
        errors = list(check.iter_errors(data))
        assert not errors, (name, data, errors[0].message)
