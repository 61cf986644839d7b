"""Delivery status (issue 19, item 2): `gossip show ID` says which known peers hold a
record, and `gossip peers` says "up to date" or "N behind" both ways, from each peer's
state vector as last learned. Real `gossip serve` processes on loopback."""

from __future__ import annotations

import json
import signal
from pathlib import Path

import pytest

from crdt import Replica, records
from gossip.errors import NotFound
from gossip.ops.session import LocalSession
from tests.daemons import make_cluster, ok, wait_for

pytestmark = pytest.mark.slow


def _delivery(home: Path, rid: str) -> dict[str, dict]:
    return {d["name"]: d for d in json.loads(ok(home, "show", rid, "--json"))["delivery"]}


def test_show_and_peers_say_who_has_a_record(tmp_path: Path, daemons: list):
    n1, n2 = make_cluster(tmp_path, 2)
    for d in (n1, n2):
        daemons.append(d.start())
    rid = ok(n1.home, "remember", "provider x drops at 03:00", "--category", "learning").strip()
    wait_for(lambda: rid in ok(n2.home, "recall", "provider", "--json"), "the memory on n2")

    # n1 learns from n2's answer (to its push, or to the next exchange) that n2 holds it.
    wait_for(lambda: _delivery(n1.home, rid)["n2"]["has"] is True, "n1 to see n2 has it")
    entry = _delivery(n1.home, rid)["n2"]
    assert entry["state"] == "alive" and entry["as_of"] is not None and entry["age_ms"] >= 0
    human = ok(n1.home, "show", rid[:10])
    assert "delivery:  1 of 1 peer have it" in human and "has it" in human, human
    # n2 names the peer that delivered it as it names the author (not its key's start).
    assert "first received from n1 " in ok(n2.home, "show", rid), ok(n2.home, "show", rid)
    # n1 wrote it: n2 knows n1 holds it, whatever n2 learned of n1's state vector.
    assert _delivery(n2.home, rid)["n1"]["has"] is True

    def row(d, name: str) -> dict:
        return {p["name"]: p for p in d.peers_json()}.get(name, {})

    wait_for(lambda: row(n1, "n2").get("they_lack") == 0 == row(n1, "n2").get("we_lack"),
             "n1 to see n2 up to date both ways")  # fmt: skip
    assert row(n1, "n2")["sv_at"] is not None
    table = ok(n1.home, "peers")
    assert "SYNC" in table and all(len(line) <= 100 for line in table.splitlines()), table
    n2_line = next(line for line in table.splitlines() if " n2 " in line)
    assert "up to date" in n2_line, table

    # Written while n2 is stopped: not yet at n2, and n2 is 1 behind.
    assert n2.stop(signal.SIGTERM) == 0, n2.log
    late = ok(n1.home, "remember", "written while n2 is down", "--category", "learning").strip()
    entry = _delivery(n1.home, late)["n2"]
    assert entry["has"] is False and entry["state"] == "left", entry
    assert _delivery(n1.home, rid)["n2"]["has"] is True  # the first one it still has
    assert "not yet" in ok(n1.home, "show", late)
    assert (row(n1, "n2")["they_lack"], row(n1, "n2")["we_lack"]) == (1, 0)
    n2_line = next(line for line in ok(n1.home, "peers").splitlines() if " n2 " in line)
    assert "1 behind" in n2_line and "ahead" not in n2_line, n2_line

    # With no daemon, n1 answers from peers.json, which its daemon wrote when it stopped:
    # the same answers, as of then.
    known_at = row(n1, "n2")["sv_at"]
    assert n1.stop(signal.SIGTERM) == 0, n1.log
    offline = _delivery(n1.home, late)["n2"]
    assert (offline["has"], offline["state"], offline["as_of"]) == (False, "not-running", known_at)
    assert _delivery(n1.home, rid)["n2"]["has"] is True
    rows = json.loads(ok(n1.home, "peers", "--json"))
    assert [(r["name"], r["they_lack"], r["we_lack"], r["sv_at"]) for r in rows] == [
        ("n2", 1, 0, known_at)], rows
    human = ok(n1.home, "peers")
    assert "1 behind" in human and "not-running" in human and "REASON" not in human, human
    assert all(len(line) <= 100 for line in human.splitlines()), human
    # Restarted while n2 is still down, n1's daemon starts from what it knew.
    n1.start()
    wait_for(lambda: row(n1, "n2").get("state") in ("suspect", "down"), "n1 to try n2")
    assert _delivery(n1.home, late)["n2"]["has"] is False
    assert (row(n1, "n2")["they_lack"], row(n1, "n2")["sv_at"]) == (1, known_at)

    n2.start()
    wait_for(lambda: _delivery(n1.home, late)["n2"]["has"] is True, "n2 to catch up")
    wait_for(lambda: row(n1, "n2").get("they_lack") == 0, "n1 to see n2 up to date again")
    for d in (n1, n2):
        assert d.stop(signal.SIGTERM) == 0, d.log


def test_show_reads_only_the_record_it_names(tmp_path: Path):
    """`show` parses the records its prefix names, not every record (1.6 s at 10k before):
    its answer is the same, retractions and supersession included (from the views)."""
    home = tmp_path / "a"
    with Replica.open(home) as r:
        ts = r.now_ms()
        old = records.memory(r.identity, "old lesson", category="c", ts=ts)
        new = records.memory(r.identity, "new lesson", category="c", ts=ts + 1,
                             supersedes=old.id)  # fmt: skip
        r.put(old, new)
        gone = records.retract(r.identity, new.id, ts=ts + 2, reason="wrong")
        r.put(gone)
    with LocalSession(home) as s:
        shown = s.call("show", id=new.id[:8])
        assert shown["retracted_by"] == [gone.id] and shown["supersedes"]["honoured"] is True
        assert shown["delivery"] == [] and shown["provenance"]["item"]["clock"] == 1
        assert s.call("show", id=old.id)["retracted_by"] == []
        with pytest.raises(NotFound, match="no memory with an id starting"):
            s.call("memory", id=gone.id[:10])  # a retraction: a record, not a memory
        assert s.call("show", id=gone.id[:10])["kind"] == "retract"
