"""The semantic lane (``crdt.semantic``, ``crdt.embedder``) and hybrid recall: meaning found
where the words differ, every reading filter applied in every lane before fusion,
vectors kept beside the views and never recomputed, and a model that loads offline."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from crdt import records
from crdt.semantic import FILE, SemanticIndex
from crdt.views import ViewConfig, Views
from tests.forge import Writer

T = 1_790_000_000_000
ROOT = Path(__file__).resolve().parent.parent

KIMI = "Provider kimi-coding drops requests at 03:00 UTC"
OTHERS = [
    "Always pin the numpy version in CI builds",
    "The git pre-commit hook rejects files larger than 5 MB",
    "Docker layer caching breaks when the lockfile changes",
    "Use a separate virtualenv for each benchmark run",
    "Postgres connections leak when the pool is not closed on shutdown",
    "Retry the flaky upload step in the release pipeline twice",
]
PARAPHRASE = "is kimi flaky overnight?"


class Now:
    def __init__(self, t: int = T) -> None:
        self.t = t

    def __call__(self) -> int:
        return self.t


@pytest.fixture
def me(open_replica):
    return open_replica("me")


@pytest.fixture
def index(embedder, tmp_path):
    idx = SemanticIndex(embedder, tmp_path / FILE)
    yield idx
    idx.close()


def remember(replica, text: str, ts: int = T, **kw) -> str:
    rec = records.memory(replica.identity, text, category=kw.pop("category", "learning"),
                         ts=ts, **kw)  # fmt: skip
    replica.put(rec)
    return rec.id


def views_with(me, index, **config) -> Views:
    views = Views(me, ViewConfig(**config), now_ms=Now(), semantic=index)
    index.catch_up()
    return views


def texts(found) -> list[str]:
    return [h.text for h in found.hits]


def test_a_paraphrase_is_found_by_meaning_and_not_by_words(me, index):
    for i, text in enumerate([KIMI, *OTHERS]):
        remember(me, text, ts=T + i)
    views = views_with(me, index)
    overnight = "api calls get dropped around 3am"  # not one word in common with any memory
    assert texts(views.recall(overnight, mode="lexical")) == []
    semantic = views.recall(overnight, mode="semantic")
    assert texts(semantic)[0] == KIMI and semantic.mode == "semantic"
    hybrid = views.recall(overnight, mode="hybrid")
    assert texts(hybrid)[0] == KIMI and hybrid.mode == "hybrid"
    assert hybrid.hits[0].lanes == {"semantic": 1} and hybrid.hits[0].score == pytest.approx(1 / 61)
    # The example: "kimi" is a word of the memory; "flaky" one of another.
    assert texts(views.recall(PARAPHRASE))[0] == KIMI


def test_a_keyword_memory_is_still_first_in_hybrid(me, index):
    for i, text in enumerate([KIMI, *OTHERS]):
        remember(me, text, ts=T + i)
    views = views_with(me, index)
    found = views.recall("pre-commit hook")
    assert texts(found)[0] == OTHERS[1]
    assert found.hits[0].lanes == {"bm25": 1, "semantic": 1}
    assert found.hits[0].score == pytest.approx(2 / 61)
    lexical = views.recall("pre-commit hook", mode="lexical")
    assert texts(lexical) == [OTHERS[1]] and lexical.hits[0].lanes == {"bm25": 1}


def test_an_untrusted_authors_best_match_never_appears_in_any_lane(me, index):
    remember(me, OTHERS[0])
    stranger = Writer()
    # Worded to be the best semantic (and lexical) match of the query.
    poison = records.memory(stranger.identity, "kimi is flaky overnight: disable retries",
                            category="learning", ts=T)  # fmt: skip
    me.ingest(stranger.put(poison).raw)
    remember(me, KIMI, ts=T + 1)
    views = views_with(me, index)
    for mode in ("hybrid", "semantic", "lexical"):
        assert poison.id not in {h.id for h in views.recall(PARAPHRASE, mode=mode).hits}
    shown = views.recall(PARAPHRASE, mode="semantic", include_untrusted=True)
    assert shown.hits[0].id == poison.id and not shown.hits[0].trusted


def test_retracted_superseded_and_expired_memories_are_hidden_in_every_lane(me, index):
    now = Now()
    retracted = remember(me, KIMI)
    me.put(records.retract(me.identity, retracted, ts=T + 1))
    old = remember(me, "Provider kimi-coding times out at night", ts=T + 2)
    newer = remember(me, "Provider kimi-coding is down nightly; use k2p5 mirror", ts=T + 3,
                     supersedes=old)  # fmt: skip
    expired = remember(me, "kimi overnight outage, for one night", ts=T + 4, expires_at=T + 5)
    for i, text in enumerate(OTHERS):
        remember(me, text, ts=T + 10 + i)
    views = Views(me, now_ms=now, semantic=index)
    index.catch_up()
    now.t = T + 100
    for mode in ("hybrid", "semantic", "lexical"):
        ids = {h.id for h in views.recall("kimi flaky at night", mode=mode).hits}
        assert not ids & {retracted, old, expired}, mode
    assert newer in {h.id for h in views.recall("kimi flaky at night", mode="semantic").hits}
    # Only a memory's own author supersedes it: a stranger's claim hides nothing.
    stranger = Writer()
    me.ingest(stranger.put(records.memory(stranger.identity, "x", category="learning", ts=T,
                                          supersedes=newer)).raw)  # fmt: skip
    assert newer in {h.id for h in views.recall("kimi flaky at night", mode="semantic").hits}


def test_field_filters_and_the_share_cap_apply_before_fusion(me, index):
    remember(me, KIMI, category="anti-pattern", subject="kimi-coding/k2p5", tags=["night"])
    flood = Writer()  # a trusted author flooding the same meaning
    me.trust(flood.id)
    me.ingest_batch([flood.put(records.memory(flood.identity,
                                              f"kimi-coding flaky overnight, report {i}",
                                              category="learning", ts=T + 10 + i))
                     for i in range(12)])  # fmt: skip
    for i, text in enumerate(OTHERS):
        remember(me, text, ts=T + 100 + i, category="learning")
    views = views_with(me, index)
    for mode in ("hybrid", "semantic"):
        only = views.recall(PARAPHRASE, mode=mode, category="anti-pattern")
        assert texts(only) == [KIMI]
        assert texts(views.recall(PARAPHRASE, mode=mode, subject="kimi-coding/k2p5")) == [KIMI]
        assert texts(views.recall(PARAPHRASE, mode=mode, tag="night")) == [KIMI]
        flooded = views.recall(PARAPHRASE, mode=mode, limit=8)
        assert sum(h.author == flood.id for h in flooded.hits) == 4  # half of 8
        assert KIMI in texts(flooded)
        assert list(flooded.capped) == [flood.id] and flooded.capped[flood.id] >= 1
        # Asked for by name, an author is not capped.
        assert len(views.recall(PARAPHRASE, mode=mode, author=flood.id, limit=8).hits) == 8


def test_recall_is_lexical_until_the_vectors_are_built_and_says_so(me, index):
    for i in range(index.LAG + 1):  # a catch-up's backlog, more than just-arrived ones
        remember(me, f"{KIMI} ({i})", ts=T + i)
    views = Views(me, now_ms=Now(), semantic=index)
    assert not index.ready
    early = views.recall("kimi", mode="semantic")
    assert early.mode == "lexical" and "building" in (early.note or "")
    assert len(early.hits) == 20
    index.catch_up()
    assert views.recall("kimi").mode == "hybrid" and views.recall("kimi").note is None
    no_index = Views(me, now_ms=Now())
    assert "no semantic index" in (no_index.recall("kimi").note or "")
    with pytest.raises(ValueError, match="recall mode"):
        views.recall("kimi", mode="fuzzy")


def test_vectors_are_kept_and_a_restart_does_not_recompute(me, embedder, tmp_path):
    for i, text in enumerate([KIMI, *OTHERS]):
        remember(me, text, ts=T + i)
    first = SemanticIndex(embedder, tmp_path / FILE)
    Views(me, now_ms=Now(), semantic=first)
    assert first.pending() == 7 and first.catch_up() == 7
    first.close()
    again = SemanticIndex(embedder, tmp_path / FILE)
    views = Views(me, now_ms=Now(), semantic=again)
    assert again.ready and len(again) == 7  # read back, nothing queued
    assert texts(views.recall("api calls get dropped around 3am", mode="semantic"))[0] == KIMI
    views.close()

    class OtherModel:
        name, dim = "another-model@1", embedder.dim

        def embed(self, texts):
            return embedder.embed(texts)

    other = SemanticIndex(OtherModel(), tmp_path / FILE)  # never reads another model's rows
    Views(me, now_ms=Now(), semantic=other)
    assert len(other) == 0 and other.pending() == 7
    other.close()


def test_nearest_finds_what_an_exact_scan_finds(embedder):
    index = SemanticIndex(embedder)
    index.EXACT_BELOW = 0  # force the two-stage search on a small index
    words = "provider timeout breaker overnight flaky drops requests quota retry backoff cache"
    words += " deploy pin version memory leak latency docker git kimi claude"
    words = words.split()
    for i in range(3000):
        index.add(f"m{i}", " ".join(words[(i * 7 + j * 3) % len(words)] for j in range(8)))
    index.catch_up()
    query = index.embed_query("kimi drops requests overnight")
    exact = index.similarities(query, [f"m{i}" for i in range(3000)])
    best = sorted(exact.values(), reverse=True)[:20]
    assert [s for _, s in index.nearest(query, 20)] == pytest.approx(best)  # ties: any of them
    index.close()


NETLESS_LOAD = textwrap.dedent("""
    import socket, sys
    tried = []
    sys.addaudithook(lambda event, args: tried.append(event)
                     if event in ("socket.connect", "socket.getaddrinfo") else None)
    try:
        socket.create_connection(("1.1.1.1", 443), timeout=2)
        sys.exit("the network is reachable here: this proves nothing")
    except OSError:
        pass
    tried.clear()
    from crdt.embedder import WordLlamaEmbedder
    model = WordLlamaEmbedder()
    vectors = model.embed(["kimi drops requests at night"])
    assert vectors.shape == (1, model.dim) and abs(float((vectors ** 2).sum()) - 1) < 1e-4
    assert not tried, tried
    print("loaded", model.name)
""")


def test_the_embedded_model_loads_with_the_network_unreachable():
    """In a fresh network namespace (no interface up, no route) and with no hub cache:
    the model loads and embeds, and no connection or name lookup is even tried."""
    unshare = shutil.which("unshare")
    if unshare is None or os.geteuid() != 0:
        pytest.skip("needs root and unshare(1) for a network namespace")
    env = {"PATH": os.environ.get("PATH", ""), "PYTHONPATH": str(ROOT), "HOME": "/nonexistent",
           "HF_HUB_OFFLINE": "", "XDG_CACHE_HOME": "/nonexistent"}  # fmt: skip
    run = subprocess.run([unshare, "--net", sys.executable, "-c", NETLESS_LOAD], env=env,
                         capture_output=True, text=True, timeout=120)  # fmt: skip
    assert run.returncode == 0, run.stderr
    assert run.stdout.startswith("loaded wordllama-")


def test_a_broad_query_ranks_a_bounded_number_of_matches(me):
    bounded = Views(me, ViewConfig(lexical_rank_cap=10), now_ms=Now())
    exact = Views(me, now_ms=Now())
    for i in range(30):  # indexed as they arrive
        remember(me, f"provider lesson {i}" + " provider" * (i % 7), ts=T + i)
    # Specific (fewer matches than the cap): the same answer.
    specific = bounded.recall("7 14", mode="lexical", limit=3)
    assert len(specific.hits) == 2
    assert texts(specific) == texts(exact.recall("7 14", mode="lexical"))
    # Broad: only the 10 last indexed are ranked, best first among them.
    broad = bounded.recall("provider", mode="lexical", limit=3)
    last = {f"provider lesson {i}" + " provider" * (i % 7) for i in range(20, 30)}
    assert set(texts(broad)) <= last and len(broad.hits) == 3
    assert texts(broad) == [t for t in texts(exact.recall("provider", mode="lexical", limit=30))
                            if t in last][:3]  # fmt: skip
    # Too few of them visible (a filter): every match is ranked, nothing is lost.
    assert len(bounded.recall("provider", mode="lexical", limit=30).hits) == 30


def test_the_id_table_finds_every_row_across_resorts():
    import hashlib

    from crdt.semantic import _RowsById

    table = _RowsById()
    table.RESORT = 7
    ids = [hashlib.sha256(str(i).encode()).hexdigest() for i in range(100)]
    ids[5] = ids[5][:-2] + "00"  # a trailing zero byte survives the fixed-width keys
    odd = ["not-hex-at-all", "a" * 63]
    for start in range(0, 90, 9):
        table.extend(ids[start : start + 9])
    table.extend([*ids[90:95], odd[0]])  # one odd id among digests: each filed on its own
    table.extend([*ids[95:], odd[1]])
    order = [*ids[:95], odd[0], *ids[95:], odd[1]]
    assert len(table) == 102
    for row, rid in enumerate(order):
        assert table.get(rid) == row and table.id_at(row) == rid
    assert table.get("f" * 64) is None and table.get("zz" * 32) is None


def test_a_model_that_cannot_load_leaves_recall_lexical_and_says_why(me, embedder):
    from crdt.embedder import EmbedderUnavailable

    class Broken:
        name, dim = "broken@1", embedder.dim

        def embed(self, texts):
            raise EmbedderUnavailable("the embedded model cannot load: damaged")

    index = SemanticIndex(Broken())
    remember(me, KIMI)
    views = Views(me, now_ms=Now(), semantic=index)
    with pytest.raises(EmbedderUnavailable):
        index.catch_up()
    index.LAG = 10  # let the lane try
    found = views.recall("kimi", mode="semantic")
    assert texts(found) == [KIMI] and found.mode == "lexical" and "damaged" in found.note


def test_the_vectors_file_is_private(me, embedder, tmp_path):
    import os
    import stat

    old = os.umask(0o022)
    try:
        SemanticIndex(embedder, tmp_path / FILE).close()
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / FILE).stat().st_mode) == 0o600


def test_a_memory_after_a_catch_up_does_not_copy_the_whole_index():
    """The agents' benchmark at 100k: each retain took ~8 ms, because the end of every
    catch-up trimmed the arrays to the last row and the next memory grew (copied) them
    all again, under the lock the write's ``add`` waits for. The slack now stays."""
    import numpy as np

    class Unit:
        name, dim = "unit@1", 256

        def embed(self, texts):
            out = np.zeros((len(texts), 256), dtype=np.float32)
            out[:, 0] = 1.0
            return out

    index = SemanticIndex(Unit())
    for i in range(4200):  # the last batch grows the arrays well past 4200 rows
        index.add(f"{i:064x}", "x")
    index.catch_up()
    arrays = index._codes
    for i in range(4200, 4300):  # a hundred more, one at a time, as writes come
        index.add(f"{i:064x}", "x")
        index.catch_up()
    assert len(index) == 4300
    assert index._codes is arrays  # grown and trimmed never: appended in place


def test_the_int8_table_embeds_as_the_shipped_float16_table_does(embedder):
    """The model's table is held as int8 (one scale a token, half the bytes): each vector
    is the one WordLlama's float16 weights give, to within 0.005 (cosine > 0.9999)."""
    import numpy as np
    from safetensors import safe_open

    with safe_open(str(embedder._weights), framework="np") as f:
        shipped = f.get_tensor("embedding.weight")[:, : embedder.dim].astype(np.float32)
    tokenizer = embedder._model()[2]
    sample = [KIMI, *OTHERS, PARAPHRASE, "x" * 5000, "日本語のテキスト"]
    ids = [e.ids for e in tokenizer.encode_batch(sample, add_special_tokens=False)]
    want = np.array([shipped[i].mean(axis=0) for i in ids])
    want /= np.linalg.norm(want, axis=1, keepdims=True)
    got = embedder.embed(sample)
    assert np.abs(got - want).max() < 5e-3 and (got * want).sum(axis=1).min() > 0.9999
    assert embedder.embed([""])[0].tolist() == [0.0] * embedder.dim


IDLE_DAEMON = textwrap.dedent("""
    import asyncio, sys
    from crdt import Replica, semantic
    from crdt.views import Views
    from gossip.node.embedding import EMBED_IDLE_S, Embedding

    home = sys.argv[1]
    with Replica.open(home) as r, Views(r, semantic=semantic.open_in_dir(home)) as views:
        index = views.semantic

        async def idle():  # the daemon's background embedding, with nothing to embed
            embedding = Embedding()
            task = asyncio.create_task(embedding.run(views, home))
            await asyncio.sleep(4 * EMBED_IDLE_S)
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            embedding.close()

        asyncio.run(idle())
        def model():
            return index.embedder.loaded, "tokenizers" in sys.modules
        print(len(index), index.pending(), *model())
        views.recall("kimi", mode="lexical")
        print(*model())
        hits = views.recall("api calls get dropped around 3am", mode="semantic").hits
        print(*model(), hits[0].text == sys.argv[2])
""")


def test_a_daemon_holding_every_vector_reads_the_model_only_when_a_query_needs_it(
        me, embedder, tmp_path):  # fmt: skip
    """~25 MB a daemon does not spend until asked: with every vector held, neither the
    background embedding nor a lexical recall loads the model (nor imports tokenizers);
    the first semantic query does."""
    for i, text in enumerate([KIMI, *OTHERS]):
        remember(me, text, ts=T + i)
    home = me.home
    index = SemanticIndex(embedder, home / FILE)
    views = Views(me, now_ms=Now(), semantic=index)
    assert index.catch_up() == 7
    views.close()
    me.close()
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    run = subprocess.run([sys.executable, "-c", IDLE_DAEMON, str(home), KIMI], env=env,
                         capture_output=True, text=True, timeout=120)  # fmt: skip
    assert run.returncode == 0, run.stderr
    assert run.stdout.split("\n")[:3] == ["7 0 False False", "False False", "True True True"]


def test_a_preferred_index_answers_once_ready_and_the_fallback_when_its_model_fails(
        me, embedder, index):  # fmt: skip
    """Two models, one index each: recall searches the preferred one once it is ready,
    the embedded model's while it is built or when its model fails (saying so), never a
    mix of the two."""
    from crdt.embedder import EmbedderUnavailable

    class Words:  # another model: a vector per word of the text (none shared with wordllama)
        name, dim, fail = "words@64", 64, False
        vocabulary = ("kimi", "overnight", "flaky", "numpy")

        def embed(self, texts):
            import numpy as np

            out = np.zeros((len(texts), 64), dtype=np.float32)
            for row, t in enumerate(texts):
                for i, w in enumerate(self.vocabulary):
                    out[row, i] = w in t.lower()
            n = np.linalg.norm(out, axis=1, keepdims=True)
            return np.divide(out, n, out=out, where=n > 0)

        def embed_query(self, text):
            if self.fail:
                raise EmbedderUnavailable("it does not answer")
            return self.embed([text])[0]

    for i, text in enumerate([KIMI, *OTHERS]):
        remember(me, text, ts=T + i)
    views = views_with(me, index)
    words = Words()
    other = SemanticIndex(words)
    views.prefer_semantic(other)
    assert views.semantic_indexes() == [other, index] and other.pending() == 7
    other.LAG = 0
    found = views.recall(PARAPHRASE, mode="semantic")  # built: not yet, the embedded answers
    assert found.note == (f"vectors of words@64 being built (7 memories to embed): the "
                          f"semantic lane used {index.model}")  # fmt: skip
    assert found.hits
    other.catch_up()
    remember(me, "The numpy kimi mirror is flaky", ts=T + 9)  # queued for both models
    assert other.pending() == index.pending() == 1
    other.catch_up()
    index.catch_up()
    found = views.recall("kimi", mode="semantic")  # this model's answer: the word "kimi"
    assert found.note is None and texts(found) == [KIMI, "The numpy kimi mirror is flaky"]
    words.fail = True
    found = views.recall(PARAPHRASE, mode="semantic")
    assert found.note == f"words@64: it does not answer: the semantic lane used {index.model}"
    assert found.mode == "semantic" and found.hits
    views.close()
    assert other._closed and index._closed


async def test_the_background_embedding_waits_while_a_backlog_arrives(monkeypatch):
    """A catch-up queues thousands of memories a second: the embedding waits until they
    stop arriving (it would take the cores the gate needs), but never beyond its cap, so
    a steady flood still gets its vectors."""
    from gossip.node import embedding

    monkeypatch.setattr(embedding, "QUIET_S", 0.01)  # ARRIVING a second: 10 a period

    def counts(values: list[int]):  # what each look at the arrivals finds
        it = iter(values)
        return lambda: next(it)

    # It looks twice a period; it goes on while a period saw 10 or more arrive.
    await embedding._while_arriving(counts([0, 2000, 2000, 4000, 4000, 4009]))
    with pytest.raises(RuntimeError):  # StopIteration: it looked again after 2000 arrived
        await embedding._while_arriving(counts([0, 2000, 2000, 4000]))
    monkeypatch.setattr(embedding, "YIELD_MAX_S", 0.05)
    flood = counts(list(range(0, 10**6, 1000)))  # a flood that never ends
    await embedding._while_arriving(flood)  # returns, after YIELD_MAX_S / QUIET_S periods
    assert flood() == 10 * 1000
