"""`gossip serve` as an operator runs it: real processes on loopback, real signals
(SIGTERM, SIGKILL), the CLI against a running daemon and without one."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from crdt.lock import DataDirLock
from tests.daemons import Daemon, free_port, gossip, make_cluster, ok, wait_for

pytestmark = pytest.mark.slow


def test_serve_logs_events_and_stops_cleanly_on_sigterm(tmp_path: Path, daemons: list):
    home = tmp_path / "a"
    ok(home, "init", "--name", "a")
    dead = f"127.0.0.1:{free_port()}"  # a static peer nobody answers at
    d = Daemon(home, free_port(), [dead]).start()
    daemons.append(d)
    wait_for(lambda: f"peer ? {dead} is suspect via static" in d.log, "the peer log line")
    sock = home / "api.sock"
    assert stat.S_IMODE(sock.stat().st_mode) == 0o600
    status = json.loads(ok(home, "status", "--json"))
    assert status["daemon"] is True and status["pid"] == d.proc.pid
    assert status["address"] == d.address and status["profile"] == "local"
    rid = ok(home, "remember", "written through the daemon", "--category", "learning").strip()
    ok(home, "breaker", "trip", "provider:x", "--reason", "503s", "--cooldown", "60")
    wait_for(lambda: "breaker provider:x is open" in d.log, "the breaker log line")
    assert f"wrote memory {rid[:16]}" in d.log and f"serving {home}" in d.log
    # export and import go through the daemon too
    other = tmp_path / "b"
    ok(other, "init", "--name", "b")
    ok(other, "remember", "from another host, by file", "--category", "learning")
    ok(other, "export", str(tmp_path / "b.exp"))
    out = gossip(home, "import", str(tmp_path / "b.exp"))
    assert out.returncode == 0 and "1 applied" in out.stdout, (out.stdout, out.stderr)
    assert "not trusted here" in out.stderr
    assert "exported 4 signed updates" in ok(home, "export", str(tmp_path / "a.exp"))
    again = ok(home, "import", str(tmp_path / "a.exp"))
    assert "4 already present" in again
    started = time.monotonic()
    assert d.stop(signal.SIGTERM) == 0
    assert time.monotonic() - started < 5, d.log
    assert "stopped in" in d.log and "Traceback" not in d.log
    assert not sock.exists()
    # Without the daemon, the same commands open the data dir themselves.
    status = json.loads(ok(home, "status", "--json"))
    assert status["daemon"] is False and status["records"]["untrusted"] == 1
    assert json.loads(ok(home, "recall", "daemon", "--json"))[0]["id"] == rid
    shown = json.loads(ok(home, "show", rid[:8], "--json"))
    assert shown["id"] == rid and shown["provenance"]["local"] is True


def test_a_command_that_lost_the_lock_to_a_starting_daemon_talks_to_it(tmp_path: Path,
                                                                      daemons: list):
    """The race behind "a starting daemon reads as not running" (found when the CLI
    started faster): the data dir was free when the command chose to open it itself, and
    a daemon took the lock first. The lock decides: the command talks to the daemon."""
    from gossip.ops.session import LocalSession

    home = tmp_path / "a"
    ok(home, "init")
    session = LocalSession(home, lock_wait=0.2)  # chosen while nobody held the data dir
    try:
        d = Daemon(home, free_port(), []).start()
        daemons.append(d)
        st = session.call("status")
        assert session.remote and st["pid"] == d.proc.pid, st
        assert session.call("remember", text="through the daemon", category="c")["id"]
    finally:
        session.close()
    assert "through the daemon" in ok(home, "recall", "daemon")


def test_serve_and_cli_wait_for_each_other_around_the_lock(tmp_path: Path, daemons: list):
    home = tmp_path / "a"
    ok(home, "init")
    lock = DataDirLock(home)
    lock.acquire()  # as a long CLI command would
    try:
        d = Daemon(home, free_port(), []).start(wait=False)
        daemons.append(d)
        wait_for(lambda: "waiting for the data dir" in d.log, "the daemon to wait")
        # A command run now finds the data dir held and waits for the daemon's API.
        env = {**os.environ, "GOSSIP_HOME": str(home)}
        cli = subprocess.Popen([sys.executable, "-m", "gossip.cli", "status", "--json"],
                               env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)  # fmt: skip
    finally:
        lock.release()
    try:
        out, err = cli.communicate(timeout=30)
    finally:
        if cli.poll() is None:
            cli.kill()
    assert cli.returncode == 0, err
    assert json.loads(out)["daemon"] is True
    d.wait_ready()
    assert d.stop(signal.SIGINT) == 0  # Ctrl-C stops it as cleanly as SIGTERM
    assert "stopped in" in d.log


def test_sigterm_ends_the_wait_for_the_data_dir(tmp_path: Path, daemons: list):
    home = tmp_path / "a"
    ok(home, "init")
    lock = DataDirLock(home)
    lock.acquire()
    try:
        d = Daemon(home, free_port(), [], extra=("--lock-wait", "60")).start(wait=False)
        daemons.append(d)
        wait_for(lambda: "waiting for the data dir" in d.log, "the daemon to wait")
        started = time.monotonic()
        assert d.stop(signal.SIGTERM) == 0
        assert time.monotonic() - started < 5 and "stopped before starting" in d.log
    finally:
        lock.release()


def test_a_second_daemon_on_the_same_data_dir_is_refused(tmp_path: Path, daemons: list):
    home = tmp_path / "a"
    ok(home, "init")
    daemons.append(Daemon(home, free_port(), []).start())
    # Its answering API proves it is a daemon, not a short command: refused at once, not
    # after the whole --lock-wait (new-user test), naming the pid that holds the dir.
    started = time.monotonic()
    second = gossip(home, "serve", "--listen", "127.0.0.1:0", "--no-mdns", "--lock-wait", "60",
                    "--agents-listen", "")  # fmt: skip
    assert second.returncode == 1 and time.monotonic() - started < 30
    assert "a daemon already serves" in second.stderr and "(pid " in second.stderr
    assert "Traceback" not in second.stderr


def test_three_daemons_replicate_survive_kill9_and_report_a_dead_peer(
    tmp_path: Path, daemons: list
):
    cluster = make_cluster(tmp_path, 3)
    for d in cluster:
        daemons.append(d.start())
    n1, n2, n3 = cluster
    rid = ok(n1.home, "remember", "kimi times out above 30k tokens",
             "--category", "anti-pattern").strip()  # fmt: skip
    for d in (n2, n3):
        wait_for(lambda d=d: ok(d.home, "recall", "kimi", "--json") != "[]\n",
                 f"the memory on {d.home.name}")  # fmt: skip
    ok(n2.home, "breaker", "trip", "provider:x", "--reason", "503s", "--cooldown", "600")
    for d in (n1, n3):
        wait_for(lambda d=d: any(b["state"] == "open" for b in d.get("/v1/breakers")),
                 f"the breaker on {d.home.name}")  # fmt: skip
    shown = json.loads(ok(n2.home, "show", rid, "--json"))
    assert shown["provenance"]["local"] is False and shown["author_name"] == "n1"

    n3.kill()  # SIGKILL: no goodbye, the lock dies with it, api.sock stays behind
    assert (n3.home / "api.sock").exists()

    def n3_dead() -> bool:
        rows = {p["name"]: p for p in n1.peers_json()}
        return rows.get("n3", {}).get("state") in ("suspect", "down")

    wait_for(n3_dead, "n1 to see n3 dead", timeout=15)
    table = ok(n1.home, "peers")
    assert all(len(line) <= 100 for line in table.splitlines()[:4]), table
    assert "n3" in table and "alive" in table and "REASON" in table
    n3_row = {p["name"]: p for p in n1.peers_json()}["n3"]
    assert n3_row["reason"] and n3_row["last_error"][:20] in table, (n3_row, table)

    # Without its daemon, n3's CLI works on the data dir (the stale socket is ignored).
    assert json.loads(ok(n3.home, "status", "--json"))["daemon"] is False
    late = ok(n2.home, "remember", "written while n3 was down", "--category", "learning")
    n3.start()
    wait_for(lambda: late.strip() in ok(n3.home, "recall", "while down", "--json"),
             "n3 to catch up after its restart")  # fmt: skip
    wait_for(lambda: {p["name"]: p["state"] for p in n1.peers_json()}.get("n3") == "alive",
             "n1 to see n3 alive again")  # fmt: skip
    synced = ok(n1.home, "sync", "--json")
    assert json.loads(synced)["exchanges"] >= 1
    for d in cluster:
        assert d.stop(signal.SIGTERM) == 0, d.log


def test_new_commands_without_a_daemon(tmp_path: Path):
    home = tmp_path / "a"
    ok(home, "init", "--name", "a")
    # A tailnet's IPv6 address, wider than its column, follows in full below the table
    # (listed only: without a daemon `gossip peers` dials nobody).
    v6 = "[fd7a:115c:a1e0::2a01:b3c4]:7471"
    (home / "config.toml").write_text(f'name = "a"\npeers = ["{v6}"]\n')
    table = ok(home, "peers")
    assert f": address {v6}" in table and all(len(line) <= 100 for line in table.splitlines())
    (home / "config.toml").write_text('name = "a"\npeers = ["127.0.0.1:9"]\n')
    rid = ok(home, "remember", "an embedded lesson", "--category", "learning").strip()
    peers = json.loads(ok(home, "peers", "--json"))
    assert [(p["address"], p["state"]) for p in peers] == [("127.0.0.1:9", "not-running")]
    info = json.loads(ok(home, "inspect", "--json"))
    assert info["records_by_kind"] == {"memory": 1} and info["store"]["updates"] == 1
    human = ok(home, "inspect")
    assert "1 memory" in human and all(len(line) <= 100 for line in human.splitlines())
    assert rid in ok(home, "show", rid[:10])
    missing = gossip(home, "show", "abcdef12")
    assert missing.returncode == 1 and "no record with an id starting abcdef12" in missing.stderr
    # sync without a daemon runs a node just for the exchange; a dead peer is a failure
    sync = gossip(home, "sync", "--json")
    assert sync.returncode == 1 and json.loads(sync.stdout)["failures"] == 1


def test_peers_watch_redraws_until_interrupted(tmp_path: Path):
    home = tmp_path / "a"
    ok(home, "init")
    env = {**os.environ, "GOSSIP_HOME": str(home)}
    watch = subprocess.Popen([sys.executable, "-m", "gossip.cli", "peers", "--watch",
                              "--interval", "0.2"], env=env, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)  # fmt: skip
    try:
        assert watch.stdout is not None
        heads = 0
        deadline = time.monotonic() + 20
        while heads < 2 and time.monotonic() < deadline:
            heads += watch.stdout.readline().startswith("gossip peers — ")
        assert heads == 2
        watch.send_signal(signal.SIGINT)
        assert watch.wait(10) == 130
    finally:
        if watch.poll() is None:
            watch.kill()
            watch.wait()


def on_a_terminal(home: Path, *args: str) -> tuple[subprocess.CompletedProcess, bytes]:
    """Run `gossip ARGS` with stderr on a pseudo-terminal (where progress shows) and
    stdout piped; returns the process and what the terminal got."""
    master, slave = os.openpty()
    try:
        env = {**os.environ, "GOSSIP_HOME": str(home)}
        out = subprocess.run([sys.executable, "-m", "gossip.cli", *args], env=env,
                             stdout=subprocess.PIPE, stderr=slave, timeout=120)  # fmt: skip
        os.close(slave)
        slave = -1
        seen = b""
        with contextlib.suppress(OSError):  # EIO once the child's side is closed
            while chunk := os.read(master, 65536):
                seen += chunk
    finally:
        os.close(master)
        if slave != -1:
            os.close(slave)
    return out, seen


def test_a_long_import_shows_progress_on_a_terminal_only(tmp_path: Path):
    from crdt import Replica, records

    with Replica.open(tmp_path / "src") as r:
        for k in range(600):
            r.put(records.memory(r.identity, f"lesson {k}", category="learning", ts=r.now_ms()))
    ok(tmp_path / "src", "export", str(tmp_path / "src.exp"))
    home = tmp_path / "a"
    ok(home, "init")
    out, seen = on_a_terminal(home, "import", str(tmp_path / "src.exp"))
    assert out.returncode == 0 and b"600 applied" in out.stdout
    assert b"importing 600/600" in seen
    piped = gossip(home, "import", str(tmp_path / "src.exp"))  # stderr is a pipe: quiet
    assert "importing" not in piped.stderr and "600 already present" in piped.stdout


def test_sync_catches_up_past_one_message(tmp_path: Path, daemons: list):
    """More than one message budget (4 MiB) behind: `gossip sync` goes on until caught up."""
    n1, n2 = make_cluster(tmp_path, 2)
    daemons.append(n1.start())
    for i in range(600):  # 600 × 8 KB ≈ 4.9 MB
        n1.post("/v1/memories", {"text": f"lesson {i} " + "x" * 8_000, "category": "bulk"})
    out, seen = on_a_terminal(n2.home, "sync", n1.address, "--json")
    assert out.returncode == 0 and b"syncing: updates learned" in seen, seen
    report = json.loads(out.stdout)  # no daemon on n2: a node for the command
    assert report["failures"] == 0 and report["learned"] >= 600, report
    assert report["rounds"] >= 2  # until a round learns nothing
    status = json.loads(ok(n2.home, "status", "--json"))
    assert status["records"]["trusted"] >= 600, status["records"]
    again = json.loads(ok(n2.home, "sync", n1.address, "--json"))
    assert (again["learned"], again["rounds"]) == (0, 1)


def test_a_stopped_daemon_is_left_and_can_be_forgotten(tmp_path: Path, daemons: list):
    """Issue 17, item 8: SIGTERM sends its goodbye (LEAVE): the other table says ``left``
    and why; `gossip peers forget ID` drops the row (a prefix of the id will do)."""
    n1, n2 = make_cluster(tmp_path, 2)
    for d in (n1, n2):
        daemons.append(d.start())
    wait_for(lambda: {p["name"]: p["state"] for p in n1.peers_json()}.get("n2") == "alive",
             "n1 to see n2 alive")  # fmt: skip
    n2_id = {p["name"]: p["key"] for p in n1.peers_json()}["n2"]
    assert n2.stop(signal.SIGTERM) == 0, n2.log
    row = {p["name"]: p for p in n1.peers_json()}["n2"]
    assert row["state"] == "left" and row["reason"] == "it said goodbye (stopped)", row
    table = ok(n1.home, "peers")
    assert "left" in table and "it said goodbye" in table, table
    assert "forgot " + n2_id in ok(n1.home, "peers", "forget", n2_id[:10])
    assert "n2" not in {p["name"] for p in n1.peers_json()}
    again = gossip(n1.home, "peers", "forget", n2_id[:10])
    assert again.returncode != 0 and "no peer row" in again.stderr, again
    # Its host announcement stays in the document: rounds go on, the row stays gone.
    time.sleep(1)  # five rounds at the local profile's 0.2 s
    assert "n2" not in {p["name"] for p in n1.peers_json()}
