"""Agents' front door benchmark: recall and retain through the Singularity-Memory
routes (docs/agents.md) against the local API, on the same daemon.

Per size (1k, 10k, 100k memories; --quick: 1k, 10k): one author's memories are written
straight into a replica (``common.build_store``, bank ``default``), then a real `gossip
serve` with its agents' listener is queried one request at a time over keep-alive
connections, alternately: the local API's ``GET /v1/memories?q=…&limit=20`` on its Unix
socket (the baseline) and ``POST /v1/default/banks/default/memories/recall`` ``{query,
limit: 20}`` on loopback TCP with the bearer token (provenance and first-seen time per
result). Then retain: ``POST …/memories/retain`` one memory at a time, acknowledged once
durable, against the local API's ``POST /v1/memories`` as the baseline. Latency is
client-side, from sending the request to the parsed JSON body.

Usage: python scripts/bench/agents.py [--quick] [--json FILE]
The last line is the headline.
"""

from __future__ import annotations

import asyncio
import random
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp
import common

GOAL_RECALL_RATIO = 1.2
GOAL_RETAIN_P99_MS = 5.0
BANK = "/v1/default/banks/default/memories"


async def measure(home: Path, port: int, queries: list[str],
                  retains: int) -> dict[str, list[float]]:  # fmt: skip
    token = (home / "api.token").read_text().strip()
    local = aiohttp.ClientSession(connector=aiohttp.UnixConnector(path=str(home / "api.sock")))
    agents = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=1),
                                   headers={"Authorization": f"Bearer {token}"})  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    out: dict[str, list[float]] = {"local": [], "agents": [], "local_hits": [],
                                   "agents_hits": [], "retain": [], "remember": []}  # fmt: skip

    async def ask(name: str, q: str) -> None:
        t0 = time.perf_counter()
        if name == "local":
            async with local.get("http://localhost/v1/memories",
                                 params={"q": q, "limit": "20"}) as r:  # fmt: skip
                body = await r.json()
                hits = len(body["memories"])
        else:
            async with agents.post(f"{base}{BANK}/recall", json={"query": q, "limit": 20}) as r:
                body = await r.json()
                hits = len(body["results"])
        if r.status != 200:
            raise RuntimeError(f"{name} answered {r.status}: {body}")
        out[name].append(time.perf_counter() - t0)
        out[f"{name}_hits"].append(hits)

    try:
        for i, q in enumerate(queries):
            for name in (("local", "agents") if i % 2 == 0 else ("agents", "local")):
                await ask(name, q)
        for i in range(retains):
            t0 = time.perf_counter()
            async with agents.post(f"{base}{BANK}/retain",
                                   json={"content": f"retained lesson {i} about a provider"}) as r:
                assert r.status == 200, await r.text()
            out["retain"].append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            async with local.post("http://localhost/v1/memories",
                                  json={"text": f"remembered lesson {i}",
                                        "category": "note"}) as r:  # fmt: skip
                assert r.status == 201, await r.text()
            out["remember"].append(time.perf_counter() - t0)
    finally:
        await local.close()
        await agents.close()
    return out


def run_size(n: int, tmp: Path, count: int, retains: int) -> dict[str, Any]:
    home = tmp / f"agents-{n}"
    common.build_store(home, n, seed=n)
    rng = random.Random(n)
    warm = [common.query_words(rng) for _ in range(20)]
    asked = [common.query_words(rng) for _ in range(count)]
    port = common.free_port()
    out: dict[str, Any] = {"n": n, "queries": count, "retains": retains}
    with common.daemon(home, agents=f"127.0.0.1:{port}"):
        deadline = time.monotonic() + 60
        while True:  # the agents' port binds just after the local API answers
            try:
                asyncio.run(measure(home, port, warm[:2], 0))
                break
            except aiohttp.ClientConnectorError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
        out["vectors_s"] = common.wait_vectors(home, n)  # a quiet daemon, its vectors built
        asyncio.run(measure(home, port, warm, 0))
        lat = asyncio.run(measure(home, port, asked, retains))
    for side in ("local", "agents", "retain", "remember"):
        ms = [x * 1000 for x in lat[side]]
        out[f"{side}_p50_ms"] = common.p50(ms)
        out[f"{side}_p99_ms"] = common.p99(ms)
    out["hits"] = sum(lat["agents_hits"]) / count
    return out


def run(quick: bool) -> dict[str, Any]:
    sizes = [1_000, 10_000] if quick else [1_000, 10_000, 100_000]
    count = 200 if quick else 1000
    retains = 100 if quick else 500
    print(f"agents: {count} specific queries per size, agents' route vs local API; "
          f"{retains} retains")  # fmt: skip
    print("      N | agents p50/p99 ms | local p50/p99 ms | p99 ratio | retain p50/p99 ms | "
          "remember p50/p99 ms")
    rows, results = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for n in sizes:
            r = run_size(n, Path(tmp), count, retains)
            results.append(r)
            print(f"{n:7} | {r['agents_p50_ms']:6.2f} / {r['agents_p99_ms']:6.2f} | "
                  f"{r['local_p50_ms']:6.2f} / {r['local_p99_ms']:6.2f} | "
                  f"{r['agents_p99_ms'] / r['local_p99_ms']:6.2f}x | "
                  f"{r['retain_p50_ms']:6.2f} / {r['retain_p99_ms']:6.2f} | "
                  f"{r['remember_p50_ms']:6.2f} / {r['remember_p99_ms']:6.2f}", flush=True)
            rows.append([f"{n:,}", f"{r['agents_p50_ms']:.2f}", f"{r['agents_p99_ms']:.2f}",
                         f"{r['local_p50_ms']:.2f}", f"{r['local_p99_ms']:.2f}",
                         common.ratio(r["agents_p99_ms"], r["local_p99_ms"]),
                         f"{r['retain_p99_ms']:.2f}", f"{r['remember_p99_ms']:.2f}"])  # fmt: skip
    last = results[-1]
    ratio = last["agents_p99_ms"] / last["local_p99_ms"]
    goals = [
        {"goal": f"recall p99 through the agents' route ≤ {GOAL_RECALL_RATIO:g}x the local "
                 "API's at 100k memories", "value": f"{ratio:.2f}x at {last['n']:,}",
         "met": ratio <= GOAL_RECALL_RATIO},
        {"goal": f"retain acknowledged (durable) at p99 ≤ {GOAL_RETAIN_P99_MS:g} ms",
         "value": f"p99 {last['retain_p99_ms']:.2f} ms at {last['n']:,}",
         "met": last["retain_p99_ms"] <= GOAL_RETAIN_P99_MS},
    ]  # fmt: skip
    notes = [
        "The agents' route answers from the same replica thread and index as the local API; "
        "it adds TCP with a bearer token instead of the Unix socket, the JSON body, and per "
        "result the Singularity Memory shape with provenance (author, trust, signed and "
        "first-seen times). A retain is one signed record, durable in SQLite (WAL, fsync) "
        "before the answer, as `POST /v1/memories` is (the baseline column).",
    ]
    if quick:
        notes.append(f"--quick: the goals (at 100k memories) are judged at {last['n']:,}.")
    return {
        "name": "agents",
        "title": "Agents' front door: recall and retain through the Singularity-Memory routes",
        "command": "python scripts/bench/agents.py" + (" --quick" if quick else ""),
        "headline": (f"agents: recall p99 {last['agents_p99_ms']:.2f} ms at {last['n']} = "
                     f"{ratio:.2f}x the local API; retain p99 {last['retain_p99_ms']:.2f} ms"),
        "goals": goals,
        "tables": [{
            "caption": f"Latency (ms): {count} specific queries (limit 20), {retains} retains",
            "columns": ["memories", "agents p50", "agents p99", "local p50", "local p99",
                        "p99 agents / local", "retain p99", "remember p99 (local API)"],
            "rows": rows,
        }],
        "notes": notes,
        "plots": [],
        "sizes": results,
    }


def plot(result: dict[str, Any], outdir: Path) -> list[str]:
    return []


if __name__ == "__main__":
    common.main(run, __doc__)
