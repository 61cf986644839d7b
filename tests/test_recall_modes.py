"""Recall modes through the surfaces: the daemon's API builds the vectors in the background
(lexical and saying so until then, in the answer and in `status`), answers each mode with
every hit's lanes and fused score, refuses a bad mode with a 400; the CLI without a
daemon builds what is missing once, keeps it, and takes `--mode`."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from crdt import Replica, records
from crdt.semantic import FILE, SemanticIndex
from tests.daemons import gossip, ok
from tests.test_api import served
from tests.test_node import create_hosts, until

pytestmark = pytest.mark.usefixtures("no_leaks")

KIMI = "Provider kimi-coding drops requests at 03:00 UTC"
OTHERS = ["Always pin the numpy version in CI builds",
          "The git pre-commit hook rejects files larger than 5 MB",
          "Postgres connections leak when the pool is not closed on shutdown"]  # fmt: skip
PARAPHRASE = "api calls get dropped around 3am"  # no word in common with any of them


async def test_the_api_builds_vectors_in_the_background_and_answers_each_mode(
    tmp_path: Path, embedder
):
    home = tmp_path / "a"
    create_hosts([home])
    with Replica.open(home) as r:  # a backlog, as after a catch-up
        now = r.now_ms()
        r.put(*[records.memory(r.identity, f"lesson {i} about caching", category="learning",
                               ts=now - (200 - i) * 61_000) for i in range(200)])  # fmt: skip
    async with served(home) as s:
        for text in [KIMI, *OTHERS]:
            status, _ = await s.call("POST", "/v1/memories",
                                     json={"text": text, "category": "learning"})  # fmt: skip
            assert status == 201

        async def ready() -> bool:
            status, body = await s.call("GET", "/v1/status")
            return status == 200 and body["semantic"]["ready"] and body["semantic"]["pending"] == 0

        await until(ready, "the vectors", timeout=60)
        status, body = await s.call("GET", "/v1/status")
        assert body["semantic"]["vectors"] == 204 and body["semantic"]["model"].startswith(
            "wordllama-")
        assert not any("building vectors" in w for w in body["warnings"])
        status, body = await s.call("GET", "/v1/memories", params={"q": PARAPHRASE})
        assert status == 200 and body["mode"] == "hybrid" and body["note"] is None
        top = body["memories"][0]
        assert top["text"] == KIMI and top["lanes"] == {"semantic": 1}
        assert top["score"] == pytest.approx(1 / 61)
        status, body = await s.call("GET", "/v1/memories", params={"q": PARAPHRASE,
                                                                   "mode": "lexical"})
        assert status == 200 and body["memories"] == [] and body["mode"] == "lexical"
        status, body = await s.call("GET", "/v1/memories", params={"q": "pre-commit",
                                                                   "mode": "semantic"})
        assert body["memories"][0]["text"] == OTHERS[1] and body["mode"] == "semantic"
        status, body = await s.call("GET", "/v1/memories", params={"q": "x", "mode": "fuzzy"})
        assert status == 400 and body["field"] == "mode"
    # Kept beside the store: a restart reads them back, nothing to build again.
    index = SemanticIndex(embedder, home / FILE)
    assert len(index) == 204
    index.close()


def test_the_cli_takes_a_mode_and_builds_missing_vectors_once(tmp_path: Path, embedder):
    home = tmp_path / "h"
    ok(home, "init", "--name", "h")
    for text in [KIMI, *OTHERS]:
        ok(home, "remember", text, "--category", "learning")
    out = ok(home, "recall", PARAPHRASE, "--json")  # no daemon: built now, then kept
    assert json.loads(out)[0]["text"] == KIMI
    index = SemanticIndex(embedder, home / FILE)
    assert len(index) == 4
    index.close()
    shown = gossip(home, "recall", PARAPHRASE, "--mode", "lexical")
    assert shown.returncode == 0 and shown.stdout == ""
    shown = ok(home, "recall", "pre-commit hook")
    assert "[bm25 #1, semantic #1; 0.0328]" in shown
    bad = gossip(home, "recall", "x", "--mode", "fuzzy")
    assert bad.returncode == 2 and "invalid choice" in bad.stderr


def test_a_recall_without_a_daemon_embeds_a_bounded_share_of_a_backlog(tmp_path: Path, embedder):
    """A data dir with more memories lacking vectors than one call may embed (an import,
    say): each recall without a daemon makes at most OFFLINE_EMBED_LIMIT of them, so it
    never holds the data dir's lock for minutes, answers by words meanwhile and says how
    many are left; the next calls finish the job."""
    from gossip.ops.memories import OFFLINE_EMBED_LIMIT

    home = tmp_path / "h"
    ok(home, "init", "--name", "h")
    n = OFFLINE_EMBED_LIMIT + SemanticIndex.LAG + 100
    with Replica.open(home) as r:
        now = r.now_ms()
        for first in range(0, n, 1000):
            r.put(*[records.memory(r.identity, f"lesson {i} about provider quirks",
                                   category="learning", ts=now - (n - i) * 61_000)
                    for i in range(first, min(n, first + 1000))])  # fmt: skip
    shown = gossip(home, "recall", "provider quirks", "--limit", "1")
    assert shown.returncode == 0 and "[bm25 #1" in shown.stdout, shown
    assert f"({n - OFFLINE_EMBED_LIMIT} memories to embed)" in shown.stderr, shown.stderr
    index = SemanticIndex(embedder, home / FILE)
    assert len(index) == OFFLINE_EMBED_LIMIT
    index.close()
    last = json.loads(ok(home, "recall", "provider quirks", "--json", "--limit", "3"))
    assert any("semantic" in m["lanes"] for m in last), last  # the lane answers again
