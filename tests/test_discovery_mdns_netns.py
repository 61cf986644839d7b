"""mDNS discovery over real multicast between Linux network namespaces.

Topology (all created by the test, nothing touches the host's own network): a "switch"
namespace holding a bridge, and one namespace per node joined to it by a veth pair,
addresses 10.213.0.0/24. Each node is a real process (tests/netns_child.py) started with
``ip netns exec``, with ``mdns=True`` and no peer configured anywhere.

These tests need root (``ip netns add``). Without it they skip, saying why; where the
environment says ``CI`` they fail instead, so that CI never skips them silently.
Namespaces (and with them every veth and the bridge) and processes are removed in
``finally`` blocks, even when a test fails.
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from crdt import Replica
from gossip.discovery.mdns import GONE_CONFIRM_S, MAX_SEEN, SERVICE_TYPE, instance_name
from gossip.peers import MAX_MDNS_ROWS
from tests.daemons import wait_for

CHILD = Path(__file__).with_name("netns_child.py")
ROOT = Path(__file__).resolve().parents[1]
FORGER = Path(__file__).with_name("netns_forger.py")
PREFIX = f"smg{os.getpid() % 100000}"  # + "a-" for the shared LAN, "b-" for one test
SUBNET = "10.213.0"
pytestmark = pytest.mark.slow


def ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    r = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=20)
    if check and r.returncode != 0:
        raise RuntimeError(f"ip {' '.join(args)}: {r.stderr.strip()}")
    return r


def netns_unusable() -> str | None:
    """Why network namespaces cannot be made here, or None."""
    if not sys.platform.startswith("linux"):
        return "network namespaces are Linux only"
    if shutil.which("ip") is None:
        return "no `ip` command (iproute2)"
    if os.geteuid() != 0:
        return "`ip netns add` needs root"
    probe = f"{PREFIX}probe"
    r = ip("netns", "add", probe, check=False)
    if r.returncode != 0:
        return f"`ip netns add` failed: {r.stderr.strip()}"
    ip("netns", "del", probe, check=False)
    return None


def require_netns() -> None:
    reason = netns_unusable()
    if reason is None:
        return
    if os.environ.get("CI"):
        pytest.fail(f"the network namespace tests must run in CI, but: {reason}")
    pytest.skip(f"needs network namespaces: {reason}")


def our_namespaces(prefix: str) -> list[str]:
    out = ip("netns", "list", check=False).stdout.split("\n")
    return [line.split()[0] for line in out if line.startswith(prefix)]


class Child:
    """One node process in a namespace, spoken to in JSON lines. ``started`` waits for
    its first line (its id and address)."""

    def __init__(
        self, ns: str, home: Path, address: str, log: Path, script: Path = CHILD
    ) -> None:
        self.log = log
        self._err = log.open("w")
        # The child imports this checkout's packages, not whatever the interpreter has
        # installed (an editable install of another worktree).
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(
            [str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])])}  # fmt: skip
        self.proc = subprocess.Popen(
            ["ip", "netns", "exec", ns, sys.executable, str(script), str(home), address],
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._err,
            text=True,
        )
        self._lines: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()
        self.id = self.address = ""

    def started(self, timeout: float = 30.0) -> Child:
        hello = self._next(timeout, "the node to start")
        self.id = hello["id"]
        self.address = hello["address"]
        return self

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self._lines.put(line)
        self._lines.put(None)

    def _next(self, timeout: float, what: str) -> dict[str, Any]:
        try:
            line = self._lines.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError(f"no answer within {timeout} s ({what}); {self.tail()}") from None
        if line is None:
            raise AssertionError(f"the node exited ({what}); {self.tail()}")
        return json.loads(line)

    def ask(self, op: str, **args: Any) -> dict[str, Any]:
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps({"op": op, **args}) + "\n")
        self.proc.stdin.flush()
        return self._next(15.0, op)

    def peers(self) -> list[dict[str, Any]]:
        return self.ask("peers")["peers"]

    def row(self, key: str) -> dict[str, Any] | None:
        return next((p for p in self.peers() if p["key"] == key), None)

    def recalls(self, text: str) -> bool:
        return text in self.ask("recall", text=text)["texts"]

    def stop(self, timeout: float = 15.0) -> int:
        """Close stdin: the node closes (goodbyes) and exits."""
        with contextlib.suppress(OSError, ValueError):
            assert self.proc.stdin is not None
            self.proc.stdin.close()
        try:
            return self.proc.wait(timeout)
        finally:
            self.kill()

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        self._err.close()

    def tail(self) -> str:
        with contextlib.suppress(OSError):
            return "stderr: " + self.log.read_text()[-2000:]
        return ""


class Lan:
    """Namespaces on one bridge, and the node processes in them. Leaving the ``with``
    kills the processes and deletes every namespace it made, whatever happened."""

    def __init__(self, tmp: Path, prefix: str) -> None:
        self.tmp = tmp
        self.prefix = prefix
        self.switch = f"{prefix}sw"
        self.made: list[str] = []
        self.children: list[Child] = []

    def __enter__(self) -> Lan:
        return self

    def __exit__(self, *exc: object) -> None:
        for child in self.children:
            with contextlib.suppress(Exception):
                child.kill()
        for ns in reversed(self.made):  # deleting a namespace deletes its links
            ip("netns", "del", ns, check=False)

    def _netns(self, name: str) -> str:
        ip("netns", "add", name)
        self.made.append(name)
        ip("-n", name, "link", "set", "lo", "up")
        return name

    def build(self, hosts: int) -> list[tuple[str, str]]:
        """A switch and ``hosts`` namespaces on it: [(namespace, ip)]."""
        self._netns(self.switch)
        ip("-n", self.switch, "link", "add", "br0", "type", "bridge")
        ip("-n", self.switch, "link", "set", "br0", "up")
        out = []
        for i in range(hosts):
            ns = self._netns(f"{self.prefix}{i}")
            port = f"p{i}"
            ip("-n", ns, "link", "add", "eth0", "type", "veth", "peer", "name", port,
               "netns", self.switch)  # fmt: skip
            ip("-n", self.switch, "link", "set", port, "master", "br0", "up")
            address = f"{SUBNET}.{i + 1}"
            ip("-n", ns, "addr", "add", f"{address}/24", "dev", "eth0")
            ip("-n", ns, "link", "set", "eth0", "up")
            out.append((ns, address))
        return out

    def start(
        self, ns: str, home: Path, address: str, *, timeout: float = 30.0, script: Path = CHILD
    ) -> Child:
        child = Child(ns, home, address, self.tmp / f"{ns}.log", script)
        self.children.append(child)  # before waiting for it: killed on leaving, whatever
        return child.started(timeout)


def until(condition: Callable[[], Any], what: str, timeout: float = 30.0) -> Any:
    return wait_for(condition, what, timeout)


def make_keys(homes: list[Path], trusted: list[Path]) -> None:
    """Keys in every home; each of ``trusted`` trusts the others of ``trusted``, and
    homes outside it trust all of ``trusted`` (they will try, and be refused)."""
    ids = {}
    for home in homes:
        with Replica.open(home) as r:
            ids[home] = r.author
    for home in homes:
        with Replica.open(home) as r:
            for other in trusted:
                if other != home:
                    r.trust(ids[other], other.name)


@pytest.fixture(scope="module")
def lan(tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[Child]]:
    """Four nodes: a, b, c trust each other; d trusts them but nobody trusts d."""
    require_netns()
    tmp = tmp_path_factory.mktemp("netns")
    homes = [tmp / n for n in ("a", "b", "c", "d")]
    make_keys(homes, trusted=homes[:3])
    with Lan(tmp, f"{PREFIX}a-") as net:
        spots = net.build(len(homes))
        yield [
            net.start(ns, home, f"{address}:7471")
            for (ns, address), home in zip(spots, homes, strict=True)
        ]
    assert not our_namespaces(f"{PREFIX}a-"), "a namespace was left behind"


def test_a_memory_reaches_every_trusted_namespace_through_mdns_alone(lan: list[Child]):
    a, b, c, _ = lan
    text = "Provider X drops requests at 03:00 UTC (written in namespace a)"
    a.ask("remember", text=text)
    until(lambda: b.recalls(text) and c.recalls(text), "the memory in b and c", timeout=30)
    for node, others in ((a, (b, c)), (b, (a, c)), (c, (a, b))):
        for other in others:
            row = until(lambda n=node, o=other: n.row(o.id), "a row by key")
            assert "mdns" in row["sources"] and "static" not in row["sources"], row
            assert other.address in row["addresses"]
    status = {d["source"]: d for d in a.ask("discovery")["discovery"]}
    assert status["mdns"]["state"] == "ok" and "host(s) seen" in status["mdns"]["detail"]
    assert status["static"]["state"] == "off"


def test_an_untrusted_key_is_discovered_but_never_exchanged_with(lan: list[Child]):
    a, b, c, d = lan
    secret = "planted by d, whom nobody trusts"
    d.ask("remember", text=secret)
    told = "written by a for the trusted only"
    a.ask("remember", text=told)
    for node in (a, b, c):
        row = until(lambda n=node: n.row(d.id), f"d in the table of {node.address}")
        assert row["state"] == "unknown-key" and row["sources"] == ["mdns"], row
    # d trusts the others and tries them: they refuse it (403), so d marks them.
    until(
        lambda: (r := d.row(a.id)) is not None and r["state"] == "unknown-key",
        "a refusing d",
    )
    # Something written after d's memory reaches everyone trusted: d had its chance.
    marker = "written after d's attempt"
    b.ask("remember", text=marker)
    until(lambda: a.recalls(marker) and c.recalls(marker), "the marker")
    for node in (a, b, c):
        assert secret not in node.ask("records")["texts"]
        row = node.row(d.id)
        assert row is not None and row["exchanges"] == 0 and row["last_seen"] is None, row
        assert row["state"] == "unknown-key"
    # Nor did d learn anything: it holds only what it wrote itself.
    learned = [t for t in d.ask("records")["texts"] if not t.startswith("planted by d")]
    assert learned == [], learned
    assert all(r["exchanges"] == 0 for r in d.peers()), d.peers()


def test_trusting_a_discovered_key_lets_it_in(lan: list[Child]):
    a, _, _, d = lan
    planted = "planted by d, to be read once a trusts d"
    d.ask("remember", text=planted)

    def discovered() -> bool:
        r = a.row(d.id)
        return r is not None and r["claimed"] and r["state"] == "unknown-key"

    until(discovered, "d discovered by a, its key a mere claim")
    assert not a.recalls(planted)
    a.ask("trust", key=d.id)  # what `gossip trust add <id from gossip peers>` does

    def proven() -> bool:
        r = a.row(d.id)
        return r is not None and r["state"] == "alive" and not r["claimed"]

    until(proven, "a exchanging with d once it trusts d's key")
    until(lambda: a.recalls(planted), "d's memory at a")


def test_a_stopped_node_says_goodbye(lan: list[Child]):
    a, b, c, _ = lan
    for node in (a, b):
        until(lambda n=node: (r := n.row(c.id)) and "mdns" in r["sources"], "c seen by mdns")
    assert c.stop() == 0

    # Its signed goodbye (LEAVE) makes it ``left`` at once; its mDNS goodbye, which no
    # answer contradicts, withdraws the mDNS source after GONE_CONFIRM_S.
    for node in (a, b):
        row = node.row(c.id)
        assert row is not None and row["state"] == "left", row

    def withdrawn(node: Child) -> bool:
        row = node.row(c.id)
        return row is None or ("mdns" not in row["sources"] and row["state"] == "left")

    until(lambda: withdrawn(a) and withdrawn(b), "c withdrawn after its goodbye", timeout=10)


def test_hosts_that_advertise_stay_listed_by_mdns(tmp_path: Path):
    """Issue 17, item 8: four namespaces, a, b, c trusted, d trusted by nobody. At 10 s
    and again after 40 s every host lists the others with source ``mdns`` and d as
    ``unknown-key`` (the row that tells a user to `gossip trust add` it), even after a
    forged goodbye for d's and c's instances (anyone on the LAN can send one) and after
    c restarts its mDNS (its goodbye, then its registration again)."""
    require_netns()
    homes = [tmp_path / n for n in ("a", "b", "c", "d")]
    make_keys(homes, trusted=homes[:3])
    with Lan(tmp_path, f"{PREFIX}g-") as net:
        spots = net.build(len(homes) + 1)
        a, b, c, d = (net.start(ns, home, f"{address}:7471")
                      for (ns, address), home in zip(spots, homes, strict=False))  # fmt: skip
        fns, f_ip = spots[-1]
        forger = net.start(fns, tmp_path, f"{f_ip}:0", script=FORGER)
        started = time.monotonic()

        def listed() -> bool:
            for node in (a, b, c):
                rows = {r["key"]: r for r in node.peers()}
                others = [o for o in (a, b, c) if o is not node]
                if any(o.id not in rows or "mdns" not in rows[o.id]["sources"]
                       or rows[o.id]["state"] != "alive" for o in others):  # fmt: skip
                    return False
                if d.id not in rows or rows[d.id]["state"] != "unknown-key":
                    return False
                if rows[d.id]["sources"] != ["mdns"]:
                    return False
            return True

        until(listed, "every host listing the others by mDNS", timeout=10)
        forger.ask("goodbye", names=[instance_name(d.id), instance_name(c.id)])
        # c's mDNS restarts (a new address on its interface: it says goodbye and
        # registers again, as after a DHCP or Wi-Fi change).
        ip("-n", spots[2][0], "addr", "add", f"{SUBNET}.102/24", "dev", "eth0")
        time.sleep(max(0.0, 40 - (time.monotonic() - started)))
        assert listed(), {n.address: n.peers() for n in (a, b, c)}
        for node in (a, b, c):
            row = node.row(d.id)
            assert row is not None and "gossip trust add" in row["reason"], row


def test_a_liar_on_the_lan_cannot_take_over_or_take_down_a_trusted_peer(tmp_path: Path):
    """From a namespace of its own, a forger advertises y's key with eight addresses of
    its own, forges goodbyes for that and for y's real instance, then floods the LAN
    with 600 instances of made-up keys. x keeps dialling y at its real address, keeps y
    up, and keeps at most MAX_MDNS_ROWS rows and MAX_SEEN instances of the flood."""
    require_netns()
    homes = [tmp_path / "x", tmp_path / "y"]
    make_keys(homes, trusted=homes)
    with Lan(tmp_path, f"{PREFIX}f-") as net:
        (xs, x_ip), (ys, y_ip), (zs, z_ip) = net.build(3)
        x = net.start(xs, homes[0], f"{x_ip}:7471")
        y = net.start(ys, homes[1], f"{y_ip}:7471")
        forger = net.start(zs, tmp_path, f"{z_ip}:0", script=FORGER)

        def y_at_x() -> dict[str, Any]:
            row = x.row(y.id)
            assert row is not None, "x lost its row of y"
            return row

        def synced() -> bool:
            row = x.row(y.id)
            return row is not None and "exchange" in row["sources"] and row["state"] == "alive"

        until(synced, "x syncing with y, and y's announcement at x")
        lies = [f"{SUBNET}.{200 + i}" for i in range(8)]
        forged = f"sm-gossip-forged.{SERVICE_TYPE}"
        forger.ask("claim", instances=[[forged, y.id, lies]])
        until(lambda: y_at_x()["unproven"], "the forged addresses at x")
        row = y_at_x()
        assert row["address"] == y.address and row["addresses"][0] == y.address, row
        assert set(row["unproven"]) <= {f"{ip}:7471" for ip in lies}, row
        assert row["state"] == "alive" and not row["claimed"] and row["name"] != "forged", row
        y.ask("remember", text="from y, after the forged claim")
        until(lambda: x.recalls("from y, after the forged claim"), "y's memory at x")

        # Goodbyes: the forged instance's, then y's real one (a goodbye is ignored while
        # another instance claims the same key).
        def seen() -> int:  # instances x's mDNS driver holds
            status = {d["source"]: d for d in x.ask("discovery")["discovery"]}
            return int(status["mdns"]["detail"].split(" host(s) seen")[0].rsplit(" ", 1)[1])

        assert seen() == 2
        forger.ask("goodbye", names=[forged])
        until(lambda: seen() == 1, "the forged instance gone at x")
        row = y_at_x()  # the forged instance's addresses went with it
        assert row["addresses"] == [y.address] and not row["unproven"], row
        # A forged goodbye of y's real instance: y, which still advertises, answers the
        # query x sends at once, and stays listed by mDNS.
        forger.ask("goodbye", names=[instance_name(y.id)])
        time.sleep(GONE_CONFIRM_S + 2)
        row = y_at_x()
        assert "mdns" in row["sources"] and seen() == 1, row
        assert row["state"] == "alive" and row["failures"] == 0, row

        fakes = [f"{i:043d}" for i in range(600)]
        flood = [[f"sm-gossip-fake{i}.{SERVICE_TYPE}", key, [f"10.213.{1 + i // 250}.{i % 250}"]]
                 for i, key in enumerate(fakes)]  # fmt: skip
        forger.ask("claim", instances=flood)
        until(lambda: x.row(fakes[-1]) is not None, "the end of the flood at x", timeout=30)
        peers = x.peers()
        unknown = [p for p in peers if p["state"] == "unknown-key"]
        assert 200 < len(unknown) <= MAX_MDNS_ROWS, len(unknown)
        assert seen() <= MAX_SEEN
        assert y_at_x()["state"] == "alive"
        y.ask("remember", text="from y, after the flood")
        until(lambda: x.recalls("from y, after the flood"), "y's memory at x after the flood")


def test_namespaces_and_processes_are_removed_when_a_test_fails(tmp_path: Path):
    require_netns()
    (tmp_path / "n").mkdir()
    prefix = f"{PREFIX}b-"
    with pytest.raises(RuntimeError, match="the test failed"), Lan(tmp_path, prefix) as net:
        (ns, address), *_ = net.build(2)
        child = net.start(ns, tmp_path / "n", f"{address}:7471")
        assert len(our_namespaces(prefix)) == 3
        raise RuntimeError("the test failed")
    assert child.proc.poll() is not None
    assert not our_namespaces(prefix)


def test_a_node_that_never_starts_is_killed_too(tmp_path: Path):
    """A child that never says hello (it hangs while starting) is still the Lan's to kill."""
    require_netns()
    hang = tmp_path / "hang.py"
    hang.write_text("import time\ntime.sleep(60)\n")
    prefix = f"{PREFIX}e-"
    net = Lan(tmp_path, prefix)
    with pytest.raises(AssertionError, match=r"no answer within 1\.0 s"), net:
        ((ns, address),) = net.build(1)
        net.start(ns, tmp_path / "n", f"{address}:7471", timeout=1.0, script=hang)
    assert [c.proc.poll() is not None for c in net.children] == [True]
    assert not our_namespaces(prefix)


RESCAN_SCRIPT = """
import asyncio, subprocess, time
from gossip.config import MdnsSettings
from gossip.discovery.mdns import MdnsDiscovery

async def main():
    d = MdnsDiscovery(MdnsSettings(), public_id="A" * 43, name="x", listen="0.0.0.0:7471",
                      version=1, on_seen=print, on_gone=print)
    task = asyncio.create_task(d.run(rescan=0.2))
    async def until(text):
        deadline = time.monotonic() + 10
        while text not in d.status.detail:
            assert time.monotonic() < deadline, d.status
            await asyncio.sleep(0.05)
    await until("advertising 10.213.1.1 port")
    subprocess.run(["ip", "addr", "add", "10.213.2.1/24", "dev", "eth0"], check=True)
    await until("advertising 10.213.1.1, 10.213.2.1 port")
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    assert d.status.state == "off", d.status
    print("ok")

asyncio.run(main())
"""


def test_a_new_interface_address_is_advertised_after_a_rescan(tmp_path: Path):
    require_netns()
    ns = f"{PREFIX}d-rescan"
    try:
        ip("netns", "add", ns)
        ip("-n", ns, "link", "set", "lo", "up")
        ip("-n", ns, "link", "add", "eth0", "type", "veth", "peer", "name", "eth1")
        ip("-n", ns, "addr", "add", "10.213.1.1/24", "dev", "eth0")
        ip("-n", ns, "link", "set", "eth0", "up")
        ip("-n", ns, "link", "set", "eth1", "up")
        r = subprocess.run(
            ["ip", "netns", "exec", ns, sys.executable, "-c", RESCAN_SCRIPT],
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert r.returncode == 0 and r.stdout.strip().endswith("ok"), r.stderr[-3000:]
    finally:
        ip("netns", "del", ns, check=False)
    assert not our_namespaces(ns)
