"""Smoke tests of the benchmark helpers (scripts/bench/): the parts every benchmark's
figures rest on — percentiles, the power-law fit, stores built fast, the hub baseline,
websocket frame sizes, the report — with real replicas, SQLite and aiohttp servers.
They need only the test extra and take a few seconds; the benchmarks themselves run
with `scripts/bench/all`, never in CI."""

from __future__ import annotations

import math
import sys
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web

BENCH = Path(__file__).resolve().parents[1] / "scripts" / "bench"
sys.path.insert(0, str(BENCH))

import common  # noqa: E402
import hub  # noqa: E402
import report  # noqa: E402
import run_all  # noqa: E402
import ysync  # noqa: E402

from crdt import Replica  # noqa: E402
from crdt.views import Views  # noqa: E402


def test_percentiles_and_power_fit() -> None:
    values = [float(v) for v in range(1, 101)]
    assert common.p50(values) == 51.0
    assert common.p99(values) == 99.0
    k, a = common.power_fit([1, 10, 100], [3, 30, 300])
    assert math.isclose(k, 1.0) and math.isclose(a, 3.0)
    k, _ = common.power_fit([4, 8, 16], [5, 5, 5])
    assert abs(k) < 1e-9
    with pytest.raises(ValueError):
        common.power_fit([4, 4], [1, 2])


def test_machine_and_rss_describe_this_process() -> None:
    m = common.machine()
    assert m["cores"] >= 1 and m["cpu"] and m["python"] and m["date"]
    r = common.rss()
    assert 0 < r["rss"] <= r["hwm"]


def test_build_store_writes_memories_every_recall_can_find(tmp_path: Path) -> None:
    payload = common.build_store(tmp_path / "h", 250, batch=100)
    with Replica.open(tmp_path / "h") as r:
        held = r.records()
        assert len(held) == 250
        assert payload == sum(len(x.body) + len(x.sig) for x in held.values())
        word = common.RARE_WORDS[0]
        expected = {rid for rid, x in held.items() if word in x.fields["text"].split()}
        with Views(r) as v:
            # no memory is hidden by the per-author quota: every match can be recalled
            found = v.recall(word, limit=1000)
            assert {m.id for m in found.hits} == expected and not found.capped


async def test_hub_answers_like_the_local_api(tmp_path: Path) -> None:
    db = tmp_path / "hub.sqlite3"
    rows = [(f"id{i}", f"lesson {i} about {w}", "fact", "", "[]", "k", i)
            for i, w in enumerate(["retry", "retry backoff", "quota"])]  # fmt: skip
    hub.fill(db, rows)
    runner = web.AppRunner(hub.app(db))
    await runner.setup()
    port = common.free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        async with aiohttp.ClientSession() as s:
            base = f"http://127.0.0.1:{port}/v1/memories"
            async with s.get(base, params={"q": "backoff retry"}) as r:
                ids = [m["id"] for m in (await r.json())["memories"]]
            assert ids == ["id1", "id0"]  # both words first
            async with s.get(base, params={"q": "!!"}) as r:
                assert (await r.json())["memories"] == []
            async with s.get(base, params={"q": "retry", "limit": "x"}) as r:
                assert r.status == 400
    finally:
        await runner.cleanup()


def test_websocket_frame_sizes() -> None:
    assert ysync.frame_bytes(100, masked=False) == 102
    assert ysync.frame_bytes(534, masked=True) == 542
    assert ysync.frame_bytes(70_000, masked=False) == 70_010


def test_report_renders_results_and_failures() -> None:
    machine = common.machine()
    ok = {
        "name": "recall", "status": "ok", "title": "Recall", "command": "python x.py",
        "headline": "recall: p99 1 ms", "seconds": 3.0,
        "goals": [{"goal": "p99 ≤ 5 ms", "value": "1 ms", "met": True}],
        "tables": [{"caption": "latency", "columns": ["N", "p99"], "rows": [[1000, "1|2"]]}],
        "notes": ["why it costs what it costs"], "plots": ["recall.png"],
    }  # fmt: skip
    failed = {"name": "bytes", "status": "failed", "error": "boom"}
    md = report.render({"command": "scripts/bench/all --quick", "machine": machine,
                        "results": [ok, failed]})  # fmt: skip
    assert "`recall: p99 1 ms`" in md and "| 1000 | 1\\|2 |" in md
    assert "![Recall](img/recall.png)" in md and "why it costs" in md
    assert "Not measured in this run: failed — boom" in md
    assert md.count(f"{machine['cores']} cores, {machine['cpu']}") == 2  # table and plot


def test_report_keeps_each_modules_history_and_the_header_note() -> None:
    machine = common.machine()
    entry = {"name": "restart", "status": "ok", "title": "Restart", "command": "python x.py",
             "headline": "restart: 1 s", "notes": ["what it measures"], "plots": []}  # fmt: skip
    gone = {"name": "no_such_benchmark", "status": "ok", "title": "Gone", "command": "-",
            "headline": "gone", "history": ["kept as it was"]}  # fmt: skip
    doc = {"command": "scripts/bench/all --only restart", "machine": machine,
           "results": [entry, gone]}  # fmt: skip
    fresh = report.with_history(doc)
    history = fresh["results"][0]["history"]
    assert history and any("persistent views" in block for block in history)
    assert fresh["results"][1]["history"] == ["kept as it was"]  # no module: as it was
    md = report.render(fresh)
    assert md.index("what it measures") < md.index(history[0]) < md.index("kept as it was")
    assert "Do not edit by hand" in md and "Otherwise" not in md
    noted = report.render({**fresh, "note": "on 2026-12-04 the entry of x was edited by hand"})
    assert "; on 2026-12-04 the entry of x was edited by hand. Otherwise do not edit" in noted


def test_the_driver_reports_a_missing_benchmark() -> None:
    entry = run_all.run_one("no_such_benchmark", True, 10.0)
    assert entry["status"] == "missing"


def test_the_driver_keeps_earlier_figures_it_could_not_remeasure() -> None:
    old_recall = {"name": "recall", "status": "ok", "headline": "recall: old"}
    old_memory = {"name": "memory", "status": "ok", "headline": "memory: old"}
    failed = {"name": "recall", "status": "failed", "error": "boom"}
    fresh_bytes = {"name": "bytes", "status": "ok", "headline": "bytes: new"}
    out = run_all.merge([old_recall, old_memory], [fresh_bytes, failed], ["bytes", "recall"])
    assert [e["name"] for e in out] == ["bytes", "recall", "memory"]  # in ORDER
    assert out[1]["headline"] == "recall: old" and out[1]["stale"] == "failed: boom"
    assert out[2] == old_memory  # not run this time: kept as it was
