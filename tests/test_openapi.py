"""The OpenAPI document of the local API: the served one is docs/openapi.json, every
route of api/local.py is in it, and schemathesis finds no 5xx and no answer that breaks it
(a few hundred generated cases against a real daemon, over loopback TCP with the token).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import hypothesis
import pytest
import schemathesis
from schemathesis.checks import positive_data_acceptance

from gossip.api.openapi import document
from tests.daemons import Daemon, free_port, ok

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "openapi.json"

# Streams that never end (events), exchanges with whatever address is generated (sync)
# and export files, which no schema can tell from random bytes (import), are tested by
# hand in test_api.py and test_serve.py; key rotation (a new host key per call) in
# test_keys.py.
schema = schemathesis.openapi.from_dict(document())
fuzzed = (
    schema.exclude(path="/v1/events").exclude(path="/v1/sync").exclude(path="/v1/import")
    .exclude(path="/v1/key/rotate")
)  # fmt: skip


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
    token = (daemon.home / "api.token").read_text().strip()
    # Every check but "a schema-valid request is accepted": some refusals are rules the
    # schema cannot say (this host's own key cannot leave the keyring; a record must
    # exist before it is retracted), answered 4xx as documented, and which request meets
    # them depends on what earlier cases did to the daemon.
    case.call_and_validate(base_url=api_url, headers={"Authorization": f"Bearer {token}"},
                           excluded_checks=[positive_data_acceptance])  # fmt: skip


def test_the_peer_schema_has_every_field_of_a_peer_row():
    from dataclasses import fields

    from gossip.peers import PeerInfo

    schema = document()["components"]["schemas"]["Peer"]
    assert set(schema["properties"]) == {f.name for f in fields(PeerInfo)}
