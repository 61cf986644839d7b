"""Zero configuration on a LAN: `gossip init` and `gossip serve` with no flag at all (the
lan profile, 0.0.0.0:7471, mDNS on) in two network namespaces joined by a veth pair:
each daemon finds the other by mDNS alone, a memory crosses, and a daemon stopped with
SIGTERM says goodbye. Real processes, real multicast, namespaces of our own."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.daemons import ok, wait_for
from tests.test_discovery_mdns_netns import require_netns

pytestmark = pytest.mark.slow

PREFIX = f"smg-zc{os.getpid()}-"


def ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, timeout=10)


@pytest.fixture
def lan():
    """Two namespaces, a and b, on 10.78.0.0/24; removed whatever happens."""
    require_netns()
    names = [PREFIX + "a", PREFIX + "b"]
    try:
        for ns in names:
            ip("netns", "add", ns)
            ip("-n", ns, "link", "set", "lo", "up")
        ip("link", "add", "zc0", "netns", names[0], "type", "veth", "peer", "name", "zc1",
           "netns", names[1])  # fmt: skip
        for k, ns in enumerate(names):
            ip("-n", ns, "addr", "add", f"10.78.0.{k + 1}/24", "dev", f"zc{k}")
            ip("-n", ns, "link", "set", f"zc{k}", "up")
        yield names
    finally:
        for ns in names:
            subprocess.run(["ip", "netns", "del", ns], capture_output=True, timeout=10)


def test_init_and_serve_with_no_flags_find_each_other_on_a_lan(lan, tmp_path: Path):
    homes = [tmp_path / "a", tmp_path / "b"]
    ids = [ok(h, "init", "--name", h.name).strip() for h in homes]
    ok(homes[0], "trust", "add", ids[1], "--name", "b")
    ok(homes[1], "trust", "add", ids[0], "--name", "a")
    procs: list[subprocess.Popen[bytes]] = []
    logs = [tmp_path / "a.log", tmp_path / "b.log"]
    try:
        for ns, home, log in zip(lan, homes, logs, strict=True):
            with log.open("wb") as out:
                procs.append(subprocess.Popen(
                    ["ip", "netns", "exec", ns, sys.executable, "-m", "gossip.cli", "serve",
                     "--home", str(home)],
                    stdout=out, stderr=subprocess.STDOUT,
                ))  # fmt: skip

        def status(home: Path) -> dict:
            args = ["status", "--json", "--home", str(home)]
            out = subprocess.run([sys.executable, "-m", "gossip.cli", *args],
                                 capture_output=True, timeout=30)  # fmt: skip
            return json.loads(out.stdout) if out.returncode == 0 else {}

        for home in homes:  # the CLI reaches each daemon through its api.sock
            wait_for(lambda h=home: status(h).get("daemon"), f"the daemon of {home.name}")
        st = status(homes[0])
        assert st["profile"] == "lan" and st["address"].endswith(":7471"), st
        rid = ok(homes[0], "remember", "found by mDNS alone", "--category", "learning").strip()

        def recalled() -> bool:
            hits = json.loads(ok(homes[1], "recall", "mDNS", "--json"))
            return any(h["id"] == rid for h in hits)

        wait_for(recalled, "the memory to cross by mDNS discovery", timeout=45)
        (row,) = json.loads(ok(homes[1], "peers", "--json"))
        assert row["key"] == ids[0] and "mdns" in row["sources"], row

        procs[0].send_signal(signal.SIGTERM)
        assert procs[0].wait(15) == 0, logs[0].read_text()

        def gone() -> bool:
            rows = json.loads(ok(homes[1], "peers", "--json"))
            return all(r["state"] == "down" or "mdns" not in r["sources"] for r in rows)

        wait_for(gone, "b to hear a's goodbye", timeout=20)
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait(10)
