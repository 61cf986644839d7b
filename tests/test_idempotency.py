"""Idempotent writes (issue 20): a ``remember`` retried with its ``idempotency_key`` is one
memory — sent again in sequence, concurrently while the first is being written, after a
restart of the node, and with no daemon at all; the same key for another memory is a 409.
A breaker nobody has tripped reads ``unknown``, not ``closed``.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from gossip.errors import Conflict, Invalid
from gossip.node import Node
from gossip.ops import run
from gossip.ops.session import LocalSession
from tests.daemons import gossip, ok
from tests.test_node import FAST, create_hosts

MEMORY = {"text": "provider x drops requests at 03:00 UTC", "category": "anti-pattern",
          "subject": "provider:x", "tags": ["outage"]}  # fmt: skip


async def _count(node: Node) -> int:
    answer = await run(node.ops, "recall", {"q": "provider drops", "limit": 100})
    return len(answer["memories"])


async def test_a_retried_remember_is_one_memory_even_across_a_restart(tmp_path: Path):
    home = tmp_path / "a"
    create_hosts([home])
    params = {**MEMORY, "idempotency_key": "9b1f0c2e-retry-1"}
    async with Node(home, profile=FAST) as node:
        first = await run(node.ops, "remember", params)
        again = await run(node.ops, "remember", params)
        assert again == first
        # Two attempts at once (the first timed out at the client, not here): one memory.
        both = await asyncio.gather(*(run(node.ops, "remember", {**params,
                                                                  "idempotency_key": "k-2"})
                                      for _ in range(3)))  # fmt: skip
        assert len({b["id"] for b in both}) == 1
        assert await _count(node) == 2
        with pytest.raises(Conflict) as refused:
            await run(node.ops, "remember", {**params, "text": "something else"})
        assert refused.value.field == "idempotency_key" and refused.value.status == 409
        with pytest.raises(Invalid):
            await run(node.ops, "remember", {**params, "idempotency_key": "no spaces"})
        unkeyed = await run(node.ops, "remember", MEMORY)
        assert unkeyed["id"] not in (first["id"], both[0]["id"])  # no key: a new memory
        assert (await run(node.ops, "breaker", {"name": "never-named"}))["state"] == "unknown"
    async with Node(home, profile=FAST) as node:  # the key is in the signed record: kept
        assert await run(node.ops, "remember", params) == first
        assert await _count(node) == 3

    def offline() -> None:  # and without a daemon, the same rule
        with LocalSession(home) as s:
            assert s.call("remember", **params) == first
            assert s.call("breaker", name="never-named")["state"] == "unknown"

    await asyncio.to_thread(offline)


def test_the_cli_takes_an_idempotency_key(tmp_path: Path):
    home = tmp_path / "a"
    ok(home, "init", "--name", "a")
    args = ("remember", "one lesson", "--category", "learning", "--idempotency-key", "cli-1")
    first = ok(home, *args).strip()
    assert ok(home, *args).strip() == first
    refused = gossip(home, "remember", "another", "--category", "learning",
                     "--idempotency-key", "cli-1")  # fmt: skip
    assert refused.returncode != 0 and "idempotency key" in refused.stderr
