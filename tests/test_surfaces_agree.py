"""Every operation of the table gives the same answer, or the same refusal, through a
running daemon's local API (``RemoteSession``) and on the data dir itself
(``LocalSession``), from the same data. Two copies of one data dir: one served by a real
node and its local API on a Unix socket, one opened in-process. No mocks.
"""

from __future__ import annotations

import asyncio
import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from crdt import Replica, records
from gossip.api import LocalApi
from gossip.api.feed import Feed
from gossip.client import ApiConnection
from gossip.errors import Conflict, Invalid, NotFound, OpError
from gossip.node import Node
from gossip.ops import OPERATIONS
from gossip.ops.session import LocalSession, RemoteSession
from tests.test_api import FAST
from tests.test_node import create_hosts, vectors_built

pytestmark = pytest.mark.usefixtures("no_leaks")

# Answers that differ by nature between a running node and a data dir at rest: the
# process (pid, address, API, discovery, peers) and timing; each is compared on its keys.
VOLATILE = {"status", "peers", "sync", "export"}


def _same(value: Any) -> Any:
    return json.loads(json.dumps(value))


def _calls(other_memory: str, mine: str, stranger: str) -> list[tuple[str, dict[str, Any]]]:
    """One call of every operation (and refusals), in an order that changes the data the
    same way on both copies."""
    return [
        ("status", {}),
        ("peers", {}),
        ("peers_forget", {"key": "no-such-peer"}),  # 404 both ways
        ("inspect", {}),
        ("recall", {"q": "provider"}),
        ("recall", {"q": "provider", "include_untrusted": True}),
        ("recall", {"limit": 0}),
        ("recall", {"author": "nobody-at-all"}),
        ("show", {"id": mine}),
        ("show", {"id": "abcdef"}),
        ("memory", {"id": mine[:8]}),
        ("retract", {"id": other_memory}),  # another host's memory: refused
        ("breakers", {}),
        ("breaker", {"name": "kimi-coding/k2p5"}),
        ("breaker_reset", {"name": "never-named"}),
        ("bench_show", {}),
        ("bench_record", {"subject": "a|b", "metric": "p50", "value": 1}),
        ("trust_list", {}),
        ("trust_add", {"key": "not-a-key"}),
        ("trust_add", {"key": stranger, "name": "stranger"}),
        ("trust_remove", {"key": "no-such-host"}),
        ("export", {"yjs": False}),
        ("import", {"body": b"not an export"}),
        ("remember", {"text": "", "category": "learning"}),
        ("sync", {"address": "nowhere"}),
        ("banks", {}),
        ("bank_recall", {"bank": "default", "query": "provider", "budget": "low"}),
        ("bank_recall", {"bank": "default", "query": "provider", "max_tokens": 3}),
        ("bank_recall", {"bank": "nowhere", "query": "provider"}),
        ("bank_recall", {"bank": "default", "query": "x", "budget": "huge"}),
        ("recall", {"q": "provider", "bank": "nowhere"}),
        ("forget", {"bank": "default", "id": other_memory}),  # another host's: refused
        ("forget", {"bank": "elsewhere", "id": mine}),
        ("retain", {"bank": "default", "items": [{"content": "x", "tags": "no"}]}),
        ("bank_put", {"bank": "team", "name": "Team", "mission": "share"}),
        ("bank_put", {"bank": "team"}),
        ("bank_delete", {"bank": "default"}),
        ("bank_delete", {"bank": "team"}),
        ("bank_delete", {"bank": "nowhere"}),
        ("web_login", {}),  # no dashboard here (no agents' listener), nor at rest: 409
    ]


async def test_every_operation_answers_alike_through_the_daemon_and_embedded(tmp_path: Path):
    a, b, s = tmp_path / "a", tmp_path / "b", tmp_path / "s"
    _me, _other, stranger = create_hosts([a, b, s], trusted=[a, b])
    with Replica.open(b) as rb:
        theirs = rb.put(records.memory(rb.identity, "provider y is flaky", category="learning",
                                       ts=rb.now_ms()))  # fmt: skip
        assert theirs is not None
        other_memory = next(iter(rb.records()))
    with Replica.open(a) as ra:
        ra.put(records.memory(ra.identity, "provider x drops at 03:00", category="anti-pattern",
                              ts=ra.now_ms()))  # fmt: skip
        ra.ingest(theirs.raw)
        mine = next(k for k, v in ra.records().items() if v.author == ra.author)
    copy = tmp_path / "copy"
    shutil.copytree(a, copy)

    calls = _calls(other_memory, mine, stranger)
    covered = {name for name, _ in calls}
    # Every read and every refusal is compared; the writes that need a network or change
    # keys (join, invite, key_rotate) have tests of their own in test_keys*.py, and repair
    # (offline only: a daemon refuses it) in test_repair_cli.py.
    assert covered | {"join", "invite", "key_rotate", "remember", "retract", "breaker_trip",
                      "sync", "retain", "repair"} >= set(OPERATIONS)  # fmt: skip

    def run(session: Any) -> list[Any]:
        out = []
        for name, params in calls:
            try:
                answer = session.call(name, **params)
            except OpError as e:
                out.append(("refused", type(e).__name__, e.status, e.field, str(e)))
                continue
            if name in VOLATILE:
                answer = sorted(answer) if isinstance(answer, dict) else type(answer).__name__
            out.append(_same(answer))
        return out

    # advertise=[]: the node writes no host announcement, so both copies hold the same.
    async with Node(a, profile=FAST, advertise=[]) as node:
        # Its vectors are built in the background; the embedded side builds them at once.
        await vectors_built(node)
        api = LocalApi(node, Feed(), home=a, name="a")
        await api.start()
        try:
            remote = await asyncio.to_thread(run, RemoteSession(ApiConnection(a, timeout=10.0)))
        finally:
            await api.close()

    def embedded() -> list[Any]:
        with LocalSession(copy) as session:
            return run(session)

    local = await asyncio.to_thread(embedded)
    for (name, params), r, x in zip(calls, remote, local, strict=True):
        if name == "status":
            continue  # the keys differ: a daemon's status says more (compared below)
        assert r == x, (name, params)
    refusals = {name: r[1] for (name, _), r in zip(calls, remote, strict=True)
                if isinstance(r, tuple)}  # fmt: skip
    assert refusals["retract"] == Conflict.__name__  # an embedder's retract agrees too
    assert refusals["breaker_reset"] == NotFound.__name__
    assert refusals["bench_record"] == refusals["remember"] == Invalid.__name__
    assert refusals["import"] == Invalid.__name__ and refusals["sync"] == Invalid.__name__
    assert refusals["web_login"] == Conflict.__name__
    assert set(remote[0]) >= set(local[0])  # status: the same keys, and a daemon's own


async def test_an_embedders_node_keeps_the_same_rules(tmp_path: Path):
    """``Node.retract`` of another host's memory is refused as the API refuses it, and
    ``Node.trust`` of a revoked key as ``trust add`` refuses it."""
    a, b = tmp_path / "a", tmp_path / "b"
    create_hosts([a, b], trusted=[a, b])
    with Replica.open(b) as rb:
        su = rb.put(records.memory(rb.identity, "theirs", category="learning", ts=rb.now_ms()))
        assert su is not None
        theirs = next(iter(rb.records()))
    with Replica.open(a) as ra:
        ra.ingest(su.raw)
    async with Node(a, profile=FAST) as node:
        with pytest.raises(Conflict, match="not by this host"):
            await node.retract(theirs)
        rid = await node.remember("mine", category="learning")
        first = await node.retract(rid)
        assert await node.retract(rid) == first  # already retracted: the same retraction
        with pytest.raises(Invalid, match="own key"):
            node.trust(node.id)
