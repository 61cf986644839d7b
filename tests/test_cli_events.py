"""The live feed in the terminal (issue 19, item 3): `gossip events` and `gossip recall
QUERY --follow` as a user runs them, real processes against a real daemon, across a
restart of that daemon. Every wait is bounded; every process is stopped at the end."""

from __future__ import annotations

import json
import os
import queue
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.daemons import Daemon, free_port, gossip, ok

WAIT_S = 30.0


class Follower:
    """A `gossip ...` process whose stdout lines are read on a thread, so a test can wait
    for a line with a time limit."""

    def __init__(self, home: Path, *args: str) -> None:
        env = {**os.environ, "GOSSIP_HOME": str(home), "PYTHONUNBUFFERED": "1"}
        self.proc = subprocess.Popen([sys.executable, "-m", "gossip.cli", *args], env=env,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     text=True)  # fmt: skip
        self.lines: queue.Queue[str] = queue.Queue()
        self.errors: list[str] = []
        threading.Thread(target=self._pump, args=(self.proc.stdout, self.lines.put),
                         daemon=True).start()  # fmt: skip
        threading.Thread(target=self._pump, args=(self.proc.stderr, self.errors.append),
                         daemon=True).start()  # fmt: skip

    @staticmethod
    def _pump(stream: Any, put: Any) -> None:
        for line in stream:
            put(line.rstrip("\n"))

    def next_matching(self, want: Any, what: str, timeout: float = WAIT_S) -> str:
        """The next stdout line for which ``want(line)`` holds (earlier ones are dropped)."""
        while True:
            try:
                line = self.lines.get(timeout=timeout)
            except queue.Empty:
                raise AssertionError(f"no line {what} within {timeout} s; stderr: "
                                     f"{self.errors}") from None  # fmt: skip
            if want(line):
                return line

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
        self.proc.wait(10)


@pytest.fixture
def followers() -> Iterator[list[Follower]]:
    started: list[Follower] = []
    yield started
    for f in started:
        f.stop()


def _daemon(tmp_path: Path, daemons: list) -> Daemon:
    home = tmp_path / "a"
    ok(home, "init", "--name", "a")
    d = Daemon(home, free_port(), [])
    daemons.append(d)
    return d.start()


def connected(follower: Follower, probe: Any) -> None:
    """Wait until ``follower`` follows the feed: a process takes a moment to start, and
    a feed shows what happens after one connects. ``probe(k)`` makes a change it shows."""
    for k in range(40):  # bounded: 40 probes, 0.5 s apart
        probe(k)
        try:
            follower.next_matching(lambda s, k=k: f"probe-{k}" in s, "for a probe", timeout=0.5)
            return
        except AssertionError:
            continue
    raise AssertionError(f"the follower never showed a probe; stderr: {follower.errors}")


def _json_of(kind: str) -> Any:
    return lambda line: json.loads(line)["kind"] == kind


def test_events_prints_each_kind_of_change_and_resumes_across_a_restart(
        tmp_path: Path, daemons: list, followers: list[Follower]) -> None:  # fmt: skip
    d = _daemon(tmp_path, daemons)
    feed = Follower(d.home, "events", "--json")
    followers.append(feed)
    human = Follower(d.home, "events", "--kind", "breaker")
    followers.append(human)

    connected(feed, lambda k: ok(d.home, "remember", f"probe-{k}", "--category", "test"))
    connected(human, lambda k: ok(d.home, "breaker", "trip", f"probe-{k}", "--reason", "t",
                                  "--cooldown", "60"))  # fmt: skip
    rid = ok(d.home, "remember", "provider x drops at 03:00", "--category", "anti-pattern")
    memory = json.loads(feed.next_matching(_json_of("memory"), "for the memory"))
    assert memory["type"] == "record" and memory["id"]
    assert memory["data"]["record"]["id"] == rid.strip()
    ok(d.home, "breaker", "trip", "kimi-coding/k2p5", "--reason", "5xx", "--cooldown", "60")
    breaker = json.loads(feed.next_matching(_json_of("breaker"), "for the breaker"))
    assert breaker["data"]["name"] == "kimi-coding/k2p5" and breaker["data"]["state"] == "open"
    line = human.next_matching(lambda s: "kimi-coding/k2p5" in s, "for the breaker, in words")
    assert "breaker" in line and "open" in line  # --kind breaker: only breakers come
    other = ok(tmp_path / "stranger", "init", "--name", "stranger").strip()
    ok(d.home, "trust", "add", other, "--name", "friend")
    trust = json.loads(feed.next_matching(_json_of("trust"), "for the trust change"))
    assert trust["data"]["added"] == [other] and trust["data"]["removed"] == []
    ok(d.home, "retract", rid.strip())
    retract = json.loads(feed.next_matching(_json_of("retract"), "for the retraction"))
    assert retract["data"]["record"]["fields"]["target"] == rid.strip()

    # A restart: the followers wait for the daemon and go on; the new daemon cannot
    # resume the old run's ids, so a `lost` line says to re-read the state.
    d.stop()
    d.start()
    lost = json.loads(feed.next_matching(lambda s: json.loads(s)["type"] == "lost",
                                         "for the lost event after the restart"))  # fmt: skip
    assert "re-read" in lost["data"]["reason"]
    ok(d.home, "remember", "provider y is flaky at night", "--category", "learning")
    again = json.loads(feed.next_matching(_json_of("memory"), "for a memory after the restart"))
    assert again["data"]["record"]["fields"]["text"] == "provider y is flaky at night"
    assert any("waiting for it" in e for e in feed.errors)


def test_recall_follow_prints_new_matches_only(
        tmp_path: Path, daemons: list, followers: list[Follower]) -> None:  # fmt: skip
    d = _daemon(tmp_path, daemons)
    ok(d.home, "remember", "provider x drops at 03:00", "--category", "anti-pattern")
    follow = Follower(d.home, "recall", "provider", "--mode", "lexical", "--follow", "--json")
    followers.append(follow)
    connected(follow, lambda k: ok(d.home, "remember", f"provider probe-{k}", "--category",
                                   "test"))  # fmt: skip
    # The first answer (an indented JSON array) holds the memory written before; then one
    # JSON object per line for each new match.
    ok(d.home, "remember", "an unrelated lesson about tests", "--category", "learning")
    ok(d.home, "remember", "provider z answers 429 under load", "--category", "learning")
    # (A probe written before the feed connected is shown late, at the next change, in
    # any order among that change's matches: skip the probes.)
    new = json.loads(follow.next_matching(lambda s: s.startswith('{"id"') and "probe-" not in s,
                                          "for the new match"))  # fmt: skip
    assert new["text"] == "provider z answers 429 under load"
    assert new["author_name"] == "self" and new["trusted"]


def test_without_a_daemon_the_feed_says_how_to_start_one(tmp_path: Path) -> None:
    home = tmp_path / "a"
    ok(home, "init", "--name", "a")
    for args in (("events",), ("recall", "x", "--follow")):
        out = gossip(home, *args, timeout=30)
        assert out.returncode == 1, out
        assert "no daemon runs" in out.stderr and "gossip serve" in out.stderr
        assert "Traceback" not in out.stderr
