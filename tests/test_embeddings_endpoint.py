"""An OpenAI-compatible embeddings endpoint (``[embeddings]`` in config.toml) as the
semantic lane's model: a real aiohttp server on loopback stands in for the service (its
vectors are a hash of the words: it proves which model answered, not paraphrase quality).
A daemon whose endpoint does not answer at start uses the embedded model and says so;
once it answers, its vectors are built under their own name and recall uses them; when
it stops, a recall still answers, with the embedded model's index, and says so. The key
is sent as a bearer token and appears in no log line and no answer. Bad config is a
clear ConfigError."""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import socket
import sqlite3
from pathlib import Path

import numpy as np
import pytest
from aiohttp import web

from crdt.errors import EmbedderUnavailable
from gossip import config
from gossip.config import EmbeddingsSettings
from gossip.errors import ConfigError
from gossip.node import embedding
from gossip.node.remote_embedder import RemoteEmbedder
from tests.daemons import gossip
from tests.test_api import served
from tests.test_node import create_hosts, until
from tests.test_recall_modes import KIMI, OTHERS

pytestmark = pytest.mark.usefixtures("no_leaks")

KEY = "sk-test-0123456789abcdef-secret"  # what the endpoint wants; must leak nowhere
DIM = 96  # not a multiple of 64: the index pads it
RARE = "Rotate the zorblax credentials weekly"
PARAPHRASE = "api calls get dropped around 3am"


def hashed(text: str) -> list[float]:
    """A deterministic vector of ``text``'s words: each word a signed unit in a bucket."""
    v = [0.0] * DIM
    for word in text.lower().split():
        h = hashlib.sha256(word.strip("?.,!").encode()).digest()
        v[h[0] % DIM] += 1.0 if h[1] & 1 else -1.0
    return v


class Endpoint:
    """OpenAI's ``POST /v1/embeddings`` on 127.0.0.1, answering ``hashed`` vectors (in
    reverse order, each with its index), or 401 to a request without the key."""

    def __init__(self, port: int = 0) -> None:
        self.port = port
        self.inputs: list[str] = []
        self.auth: set[str | None] = set()
        self._runner: web.AppRunner | None = None

    async def _embeddings(self, request: web.Request) -> web.Response:
        self.auth.add(request.headers.get("Authorization"))
        if request.headers.get("Authorization") != f"Bearer {KEY}":
            return web.json_response({"error": {"message": f"Incorrect API key {KEY[:6]}"}},
                                     status=401)  # fmt: skip
        body = await request.json()
        assert body["model"] == "hash-words"
        self.inputs += body["input"]
        data = [{"object": "embedding", "index": i, "embedding": hashed(t)}
                for i, t in enumerate(body["input"])]  # fmt: skip
        return web.json_response({"object": "list", "data": data[::-1]})

    async def _moved(self, request: web.Request) -> web.Response:
        raise web.HTTPFound("/elsewhere")  # urllib would follow it, as a GET, with the key

    async def _elsewhere(self, request: web.Request) -> web.Response:
        self.auth.add(f"elsewhere {request.headers.get('Authorization')}")
        return web.json_response({"data": []})

    async def start(self) -> Endpoint:
        app = web.Application()
        app.router.add_post("/v1/embeddings", self._embeddings)
        app.router.add_post("/moved/embeddings", self._moved)
        app.router.add_route("*", "/elsewhere", self._elsewhere)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", self.port)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        return self

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def write_config(home: Path, port: int, **extra: str) -> None:
    lines = ["[embeddings]", f'url = "http://127.0.0.1:{port}/v1"', 'model = "hash-words"',
             'key_env = "SM_TEST_EMBEDDINGS_KEY"', *(f"{k} = {v}" for k, v in extra.items())]
    (home / "config.toml").write_text("\n".join(lines) + "\n")


async def test_the_endpoint_builds_its_own_index_and_recall_falls_back_when_it_stops(
    tmp_path: Path, embedder, monkeypatch, caplog
):
    caplog.set_level(logging.DEBUG)
    monkeypatch.setenv("SM_TEST_EMBEDDINGS_KEY", KEY)
    monkeypatch.setattr(embedding, "RETRY_S", (0.1, 0.4))  # asked again soon: a short test
    home = tmp_path / "a"
    create_hosts([home])
    port = free_port()
    write_config(home, port)
    endpoint = Endpoint(port)
    answers: list[str] = []
    async with served(home) as s:
        async def call(method: str, path: str, **kw):
            status, body = await s.call(method, path, **kw)
            answers.append(json.dumps(body))
            return status, body

        for text in [KIMI, *OTHERS, RARE]:
            memory = {"text": text, "category": "learning"}
            assert (await call("POST", "/v1/memories", json=memory))[0] == 201
        views = s.node._views
        await until(lambda: views.semantic.ready and not views.semantic.pending(),
                    "the embedded model's vectors", timeout=60)  # fmt: skip
        # The endpoint does not answer: the embedded model's index serves, status says why.
        await until(lambda: s.node.embedding.remote.reachable is False, "a failed probe")
        _, st = await call("GET", "/v1/status")
        assert st["embeddings"]["reachable"] is False and st["embeddings"]["index"] is None
        assert st["semantic"]["model"].startswith("wordllama-")
        assert any("embeddings endpoint does not answer" in w for w in st["warnings"])
        _, found = await call("GET", "/v1/memories", params={"q": "zorblax", "mode": "semantic"})
        assert found["mode"] == "semantic" and found["memories"]
        assert found["note"].startswith(f"http://127.0.0.1:{port}/v1 has not answered (")
        assert found["note"].endswith("): the semantic lane used the embedded model")

        # It answers: its vectors are built under their own name, then recall uses them.
        await endpoint.start()
        name = f"openai:127.0.0.1:{port}/hash-words@{DIM}"

        async def built() -> bool:
            _, st = await call("GET", "/v1/status")
            return st["embeddings"]["ready"] and st["embeddings"]["pending"] == 0
        await until(built, "the endpoint's vectors", timeout=30)
        _, st = await call("GET", "/v1/status")
        assert st["embeddings"]["index"] == name and st["embeddings"]["reachable"] is True
        assert st["embeddings"]["vectors"] == 5 and st["semantic"]["model"] == name
        assert not any("embeddings" in w for w in st["warnings"])
        assert set(RARE.split()) <= set(" ".join(endpoint.inputs).split())  # the memories
        _, found = await call("GET", "/v1/memories", params={"q": "zorblax", "mode": "semantic"})
        assert found["note"] is None and found["memories"][0]["text"] == RARE
        # The query's vector came from the endpoint, once: fetched before the read job
        # (off the replica's thread), taken by the recall in it.
        assert endpoint.inputs[-1] == "zorblax" and endpoint.inputs.count("zorblax") == 1
        assert not s.node.embedding.remote._fetched
        assert endpoint.auth == {f"Bearer {KEY}"}

        # It stops: the next recall waits at most the query timeout, then the embedded
        # model's index answers; the answer and status say so.
        await endpoint.stop()
        _, found = await call("GET", "/v1/memories", params={"q": PARAPHRASE, "mode": "hybrid"})
        assert found["mode"] == "hybrid" and found["memories"][0]["text"] == KIMI
        assert f"{name}: http://127.0.0.1:{port}/v1 failed: " in found["note"]
        assert f"the semantic lane used {views.semantic.model}" in found["note"]
        _, st = await call("GET", "/v1/status")
        assert st["embeddings"]["reachable"] is False
        assert st["semantic"]["model"] == views.semantic.model  # what recall uses now
        assert any("does not answer" in w for w in st["warnings"])
    logged = "\n".join(r.getMessage() for r in caplog.records) + caplog.text
    assert "embeddings endpoint" in logged and KEY not in logged and KEY[:10] not in logged
    assert not any(KEY[:10] in a for a in answers)
    # Each model's vectors under its own name, the endpoint's in a file of their own.
    for file, model in (("embeddings.sqlite", views.semantic.model),
                        ("embeddings-endpoint.sqlite", name)):  # fmt: skip
        db = sqlite3.connect(home / file)
        assert db.execute("SELECT DISTINCT model FROM vectors").fetchall() == [(f"{model}#q4",)]
        db.close()


async def test_a_refused_key_and_wrong_answers_are_errors_without_the_key(tmp_path: Path):
    endpoint = await Endpoint().start()
    try:
        url = f"http://127.0.0.1:{endpoint.port}/v1"
        wrong = RemoteEmbedder(EmbeddingsSettings(url, "hash-words", "K"), {"K": "sk-wrong-1"})
        with pytest.raises(EmbedderUnavailable) as e:
            await asyncio.to_thread(wrong.probe)
        assert "401" in str(e.value) and "refused" in str(e.value) and "sk-" not in str(e.value)
        assert wrong.down and wrong.status()["reachable"] is False
        with pytest.raises(EmbedderUnavailable):  # down: a query fails at once
            wrong.embed_query("x")
        right = RemoteEmbedder(EmbeddingsSettings(url, "hash-words", "K"), {"K": KEY})
        rows = await asyncio.to_thread(right.embed, ["a b", "c", ""])
        assert rows.shape == (3, 128) and rows.dtype == np.float32  # padded to 128
        assert np.allclose(np.linalg.norm(rows[:2], axis=1), 1) and not rows[2].any()
        assert right.name == f"openai:127.0.0.1:{endpoint.port}/hash-words@{DIM}"
        await asyncio.to_thread(right.prefetch, "flaky kimi")  # before a recall's read job
        moved = RemoteEmbedder(EmbeddingsSettings(f"http://127.0.0.1:{endpoint.port}/moved",
                                                  "hash-words", "K"), {"K": KEY})  # fmt: skip
        with pytest.raises(EmbedderUnavailable, match="HTTP 302"):  # the key never follows
            await asyncio.to_thread(moved.probe)
        assert not any(a and a.startswith("elsewhere") for a in endpoint.auth)
        other = RemoteEmbedder(EmbeddingsSettings(url, "hash-words", "K", dim=64), {"K": KEY})
        with pytest.raises(EmbedderUnavailable, match="96 dimensions, not 64"):
            await asyncio.to_thread(other.embed, ["a"])
    finally:
        await endpoint.stop()
    expected = np.array(hashed("flaky kimi") + [0.0] * 32)  # padded from 96 to 128
    assert np.allclose(right.embed_query("flaky kimi"), expected / np.linalg.norm(expected))
    with pytest.raises(EmbedderUnavailable):  # taken once; the endpoint is gone now
        right.embed_query("flaky kimi")


@pytest.mark.parametrize(("section", "says"), [
    ('url = "ftp://h/v1"\nmodel = "m"', "must be an http(s) URL"),
    ('url = "http://u:pw@h/v1"\nmodel = "m"', "must not hold credentials"),
    ('url = "http://h/v1"\nmodel = ""', "'model' in [embeddings]"),
    ('url = "http://h/v1"\nmodel = "m"\nkey_env = "sk-abc123"', "the NAME of an environment"),
    ('url = "http://h/v1"\nmodel = "m"\ndim = 0', "'dim' in [embeddings]"),
    ('url = "http://h/v1"\nmodel = "m"\nkey = "sk-1"', "unknown setting 'key'"),
])  # fmt: skip
def test_bad_embeddings_settings_are_refused(tmp_path: Path, section: str, says: str):
    (tmp_path / "config.toml").write_text(f"[embeddings]\n{section}\n")
    with pytest.raises(ConfigError) as e:
        config.load(tmp_path)
    assert says in str(e.value) and "sk-1" not in str(e.value)


def test_serve_refuses_a_key_variable_that_is_not_set(tmp_path: Path, monkeypatch):
    monkeypatch.delenv("SM_TEST_EMBEDDINGS_KEY", raising=False)
    home = tmp_path / "h"
    create_hosts([home])
    write_config(home, free_port())
    run = gossip(home, "serve", "--listen", "127.0.0.1:0", "--profile", "local",
                 "--no-mdns")  # fmt: skip
    assert run.returncode == 1, run.stderr
    assert "key_env names SM_TEST_EMBEDDINGS_KEY, which is not set" in run.stderr
    assert "Traceback" not in run.stderr


def test_embeddings_settings_are_read_and_written_back(tmp_path: Path):
    (tmp_path / "config.toml").write_text('[embeddings]\nurl = "https://api.example/v1/"\n'
                                          'model = " text-embedding-3-small "\n'
                                          'key_env = "OPENAI_API_KEY"\ndim = 512\n')  # fmt: skip
    cfg = config.load(tmp_path)
    assert cfg.embeddings == EmbeddingsSettings("https://api.example/v1",
                                                "text-embedding-3-small", "OPENAI_API_KEY", 512)
    again = tmp_path / "again"
    again.mkdir()
    config.create(again, cfg)
    assert config.load(again) == cfg
    assert config.load(tmp_path.parent / "nothing-here").embeddings is None
