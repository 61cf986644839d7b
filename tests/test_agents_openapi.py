"""The OpenAPI document of the agents' listener: the served one is
docs/agents-openapi.json, every route is in it, and schemathesis finds no 5xx and no
answer off the schema against a real daemon (over loopback with the token)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import hypothesis
import pytest
import schemathesis
from schemathesis.checks import positive_data_acceptance

from gossip.api.agents import ROUTES
from gossip.api.agents_openapi import document
from tests.daemons import Daemon, free_port, ok, wait_for
from tests.test_agents import Agent

DOC = Path(__file__).resolve().parent.parent / "docs" / "agents-openapi.json"
schema = schemathesis.openapi.from_dict(document())


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    home = tmp_path_factory.mktemp("agents-fuzz") / "a"
    ok(home, "init", "--name", "fuzz")
    port = free_port()
    d = Daemon(home, free_port(), [], extra=("--agents-listen", f"127.0.0.1:{port}"))
    d.agents_port = port  # type: ignore[attr-defined]
    d.start()
    try:
        wait_for(lambda: (d.get("/v1/status").get("agents") or {}).get("url"), "the agents' port")
        yield d
    finally:
        d.kill()


def test_docs_agents_openapi_json_is_the_served_document(daemon: Daemon):
    kept = json.loads(DOC.read_text())
    assert kept == json.loads(json.dumps(document())), (
        "docs/agents-openapi.json is stale: python -m gossip.api.agents_openapi > "
        "docs/agents-openapi.json"
    )
    assert Agent(daemon).ok("GET", "/openapi.json") == kept


def test_every_route_is_described():
    described = {(m, p) for p, ops in document()["paths"].items() for m in ops}
    assert {(r.method.lower(), r.path) for r in ROUTES} <= described
    assert {("get", "/healthz"), ("get", "/health"), ("get", "/openapi.json")} <= described


@pytest.mark.slow
@schema.parametrize()
@hypothesis.settings(max_examples=30, deadline=None, derandomize=True,
                     suppress_health_check=list(hypothesis.HealthCheck))  # fmt: skip
def test_schemathesis_finds_no_5xx_and_no_answer_off_the_schema(case, daemon):
    token = (daemon.home / "api.token").read_text().strip()
    # A schema-valid request may still be refused by a rule the schema cannot say (an
    # unknown bank, another host's memory): answered 4xx as documented.
    case.call_and_validate(base_url=f"http://127.0.0.1:{daemon.agents_port}",
                           headers={"Authorization": f"Bearer {token}"},
                           excluded_checks=[positive_data_acceptance])  # fmt: skip
