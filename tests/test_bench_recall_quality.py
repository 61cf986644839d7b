"""Smoke test of scripts/bench/recall_quality.py on its real corpus and model (a tiny cost
run): the generator keeps its promises, and the lanes keep their ordering of quality. It
checks what the run found, never how long it took."""

from __future__ import annotations

import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[1] / "scripts" / "bench"
sys.path.insert(0, str(BENCH))

import lessons  # noqa: E402
import recall_quality  # noqa: E402


def test_the_corpus_has_one_right_lesson_per_query_and_paraphrases_share_few_words():
    corpus = lessons.corpus()
    asked = lessons.queries(corpus)
    assert len(corpus) >= 2000 and len({x.key for x in corpus}) == len(corpus)
    assert sum(q.style == "paraphrase" for q in asked) >= 200
    assert sum(q.style == "keyword" for q in asked) == 100
    by_key = {x.key: x for x in corpus}
    for q in asked:
        lesson = by_key[q.relevant]
        if q.style == "paraphrase":
            name = q.relevant.split(":", 1)[1]
            shared = lessons.content_words(q.text, name) & lessons.content_words(lesson.text, name)
            assert len(shared) <= 1, (q.text, lesson.text)
    assert lessons.corpus() == corpus and lessons.queries(corpus) == asked  # seeded


def test_quality_and_cost_run_and_meaning_beats_words_on_paraphrases(tmp_path: Path, embedder):
    result: dict = {"quality": [], "cost": []}
    recall_quality.quality_table(tmp_path, [embedder], result)
    q = result["quality"][0]
    assert q["paraphrase_semantic_recall5"] > q["paraphrase_lexical_recall5"] + 0.2
    assert q["paraphrase_hybrid_recall5"] > q["paraphrase_lexical_recall5"]
    assert q["keyword_hybrid_recall5"] >= q["keyword_lexical_recall5"] == 1.0
    recall_quality.cost_table(tmp_path, [300], 5, embedder, result)
    c = result["cost"][0]
    assert c["reopen_pending"] == 0  # a restart recomputes nothing
    assert 0 < c["vector_bytes"] < c["payload_bytes"]
    assert all(c[f"{k}_{m}_p99_ms"] >= c[f"{k}_{m}_p50_ms"] > 0
               for k in ("specific", "broad") for m in ("lexical", "semantic", "hybrid"))
    assert recall_quality.goals(result) and recall_quality.tables(result, 5)
