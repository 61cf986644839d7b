"""Smoke tests of the benchmark modules in scripts/bench/: each runs its real machinery
(nodes on loopback, the write hub process, a catch-up) at a tiny size, so that a change
that breaks a benchmark is caught by CI. They check what the run found, never how long
it took; the benchmarks themselves are run by `scripts/bench/all`."""

from __future__ import annotations

import random
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "scripts" / "bench"
sys.path.insert(0, str(BENCH))

import availability  # noqa: E402
import catchup  # noqa: E402
import convergence  # noqa: E402
import ingest  # noqa: E402
import restart  # noqa: E402
from common import create_hosts  # noqa: E402


def test_ideal_epidemic_needs_at_least_log_rounds() -> None:
    rng = random.Random(1)
    rounds = [convergence.ideal_rounds(16, 2, rng) for _ in range(50)]
    assert min(rounds) >= 2  # push-pull at most triples the informed per round: 1, 3, 9, 27
    assert max(rounds) <= 10


async def test_convergence_runs_real_and_naive_gossip(tmp_path: Path) -> None:
    r = await convergence.run_size(3, 1, 1, tmp_path)
    for mode in ("off", "on"):
        assert r[f"{mode}_rounds_mean"] >= 0
        assert r[f"{mode}_ms_p99"] >= r[f"{mode}_ms_p50"] > 0
    assert r["off_rounds_mean"] >= 1  # eager push off: only rounds carry the record
    naive = r["naive"]
    assert naive["rounds_mean"] >= 1
    # Every naive exchange carries the whole document (measured before the trial's
    # record joined it) both ways.
    assert naive["idle_bytes"] > naive["doc_bytes"]
    assert r["idle_bytes"] < naive["idle_bytes"]


async def test_catch_up_holds_every_record(tmp_path: Path) -> None:
    seed, other, fresh = tmp_path / "seed", tmp_path / "other", tmp_path / "fresh"
    create_hosts([seed, other, fresh])
    updates = catchup.build_cluster(seed, [other], 30)
    assert len(updates) >= 6  # 2 authors x 30 records, 10 per update
    clients = {}
    for home in (seed, other):
        from crdt import Replica

        with Replica.open(home) as r:
            clients[r.client] = r.state_vector()[r.client]
    elapsed, progress, wire, document, rounds = await catchup.catch_up(seed, fresh, clients)
    assert progress[-1][1] == sum(clients.values())
    assert rounds >= 1 and wire["received"] > 0 and elapsed > 0
    assert len(catchup.signatures(updates)) == len(updates) + 60  # headers + records
    assert catchup.apply_seconds(document) > 0


async def test_availability_hub_loses_writes_after_it_dies(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(availability, "INTERVAL", 0.1)
    hub = await availability.run_hub(3, 4, tmp_path)
    # The first write is polled by every client before the kill; the second may not be
    # (a client that had not polled it yet never will).
    assert hub["before"]["took"][0] is not None
    assert hub["after"]["reached"] == 0 and hub["writes_refused"] == 2


async def test_availability_gossip_survives_a_dead_node(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(availability, "INTERVAL", 0.1)
    g = await availability.run_gossip(3, 4, tmp_path)
    assert g["before"]["writes"] == g["after"]["writes"] == 2
    # With one of three nodes dead, the two survivors still exchange every round.
    assert all(t is not None for t in g["after"]["took"])


def test_cli_import_measures_a_whole_gossip_import() -> None:
    r = ingest.cli_import(40, raw_rate=1000.0, runs=1)
    assert r["records"] == 40 and r["wall_s"] > 0 and r["start_s"] > 0


def test_restart_waits_until_a_recall_answers(tmp_path: Path) -> None:
    home = restart.prepared(tmp_path, 20)
    seconds = restart.restart_once(home, "provider")
    assert seconds > 0
    assert not (home / "api.sock").exists()  # stopped again: the socket is gone
