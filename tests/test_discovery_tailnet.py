"""Tailnet discovery: parsing ``tailscale status --json`` and nodes finding each other
through a fake ``tailscale`` executable on PATH.

The fixture follows the field names of tailscale's ``ipnstate.Status`` (``Version``,
``BackendState``, ``Self``, ``Peer`` keyed ``nodekey:<hex>``, ``HostName``,
``DNSName`` with its trailing dot, ``TailscaleIPs``, ``Online``, ``OS``, ``Tags`` absent
on untagged nodes, ``CurrentTailnet``, times in RFC 3339). Only the addresses differ
from a real tailnet: ``TailscaleIPs`` hold the 127.0.0.x loopback addresses where the
test's nodes really listen, so that the proposals can be dialled.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
import signal
import socket
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from gossip.config import Profile, TailnetSettings
from gossip.discovery import DiscoveryError
from gossip.discovery.tailnet import TailnetDiscovery, parse_status
from gossip.node import Node

from .test_node import create_hosts, recalled, until

SUFFIX = "tail4f2c.ts.net"


def peer_status(
    host: str, ips: list[str], *, online: bool = True, tags: list[str] | None = None, os="linux"
) -> dict[str, Any]:
    """One ``ipnstate.PeerStatus`` as ``tailscale status --json`` prints it."""
    digest = hashlib.sha256(host.encode()).hexdigest()
    out: dict[str, Any] = {
        "ID": f"n{digest[:10]}CNTRL",
        "PublicKey": f"nodekey:{digest}",
        "HostName": host,
        "DNSName": f"{host}.{SUFFIX}.",
        "OS": os,
        "UserID": 31337,
        "TailscaleIPs": ips,
        "AllowedIPs": [f"{ip}/32" if ":" not in ip else f"{ip}/128" for ip in ips],
        "Addrs": ["192.0.2.10:41641"],
        "CurAddr": "",
        "Relay": "fra",
        "RxBytes": 1234,
        "TxBytes": 5678,
        "Created": "2025-03-14T09:26:53.589793Z",
        "LastWrite": "2026-11-27T12:00:01.123456789Z",
        "LastSeen": "2026-11-27T11:58:00Z" if not online else "0001-01-01T00:00:00Z",
        "LastHandshake": "2026-11-27T12:00:00.5Z",
        "Online": online,
        "ExitNode": False,
        "ExitNodeOption": False,
        "Active": online,
        "PeerAPIURL": [f"http://{ips[0]}:40463"] if ips else [],
        "InNetworkMap": True,
        "InMagicSock": True,
        "InEngine": True,
        "KeyExpiry": "2027-05-01T00:00:00Z",
    }
    if tags is not None:  # untagged nodes have no Tags at all
        out["Tags"] = tags
    return out


def status(
    self_host: str, peers: list[dict[str, Any]], *, backend: str = "Running"
) -> dict[str, Any]:
    """A whole ``ipnstate.Status``."""
    me = peer_status(self_host, ["100.100.1.1", "fd7a:115c:a1e0::1"])
    return {
        "Version": "1.78.1-t6a4d2a1b7-g2c0e6f4a1",
        "TUN": True,
        "BackendState": backend,
        "HaveNodeKey": True,
        "AuthURL": "",
        "TailscaleIPs": me["TailscaleIPs"],
        "Self": me,
        "Health": [],
        "MagicDNSSuffix": SUFFIX,
        "CurrentTailnet": {
            "Name": "ops@example.com",
            "MagicDNSSuffix": SUFFIX,
            "MagicDNSEnabled": True,
        },
        "CertDomains": [f"{self_host}.{SUFFIX}"],
        "Peer": {p["PublicKey"]: p for p in peers},
        "User": {"31337": {"ID": 31337, "LoginName": "ops@example.com", "DisplayName": "Ops"}},
        "ClientVersion": None,
    }


# -- parsing -----------------------------------------------------------------------------


def test_online_peers_are_proposed_ipv4_first_with_their_dns_name():
    raw = json.dumps(
        status("me", [
            peer_status("b", ["fd7a:115c:a1e0::2", "100.100.1.2"], tags=["tag:gossip"]),
            peer_status("gone", ["100.100.1.3"], online=False),
        ])
    )  # fmt: skip
    view = parse_status(raw, port=7471)
    assert view.running and view.tailnet == "ops@example.com"
    (b,) = view.peers
    assert b.node.startswith("nodekey:") and b.host_name == "b"
    assert b.addresses == (
        "100.100.1.2:7471",
        "[fd7a:115c:a1e0::2]:7471",
        f"b.{SUFFIX}:7471",  # without the trailing dot
    )
    assert view.offline == 1 and view.filtered == 0


def test_filters_by_tag_and_host_name_glob():
    raw = json.dumps(
        status("me", [
            peer_status("gossip-1", ["100.100.1.2"], tags=["tag:gossip", "tag:prod"]),
            peer_status("gossip-2", ["100.100.1.3"]),  # untagged: no Tags field
            peer_status("printer", ["100.100.1.4"], tags=["tag:gossip"]),
        ])
    )  # fmt: skip
    assert [p.host_name for p in parse_status(raw, port=1).peers] == [
        "gossip-1", "gossip-2", "printer"
    ]  # fmt: skip
    tagged = parse_status(raw, port=1, tags=["tag:gossip"])
    assert [p.host_name for p in tagged.peers] == ["gossip-1", "printer"]
    assert tagged.filtered == 1
    both = parse_status(raw, port=1, tags=["tag:gossip"], hostname="GOSSIP-*")
    assert [p.host_name for p in both.peers] == ["gossip-1"] and both.filtered == 2


@pytest.mark.parametrize(
    "doc",
    [
        {},  # nothing at all
        {"BackendState": "Running", "Peer": None},
        {"BackendState": "Running", "Peer": []},
        {"BackendState": "Running", "Peer": {"nodekey:1": "not an object"}},
        {"BackendState": "Running", "Peer": {"nodekey:1": {"Online": "yes"}}},
        {"BackendState": "Running", "Peer": {"nodekey:1": {"Online": True}}},  # no IPs
        {"BackendState": "Running", "Peer": {"nodekey:1": {
            "Online": True, "TailscaleIPs": [7, None, "not-an-ip"], "Tags": "tag:x",
            "DNSName": 3, "HostName": ["x"], "SomethingNew": {"a": 1}}}},
        {"BackendState": 3, "CurrentTailnet": "x", "Self": None},
    ],
)  # fmt: skip
def test_missing_or_odd_fields_never_crash_it(doc):
    view = parse_status(json.dumps(doc), port=7471)
    assert view.peers == ()


def test_unknown_fields_are_ignored():
    doc = status("me", [peer_status("b", ["100.100.1.2"])])
    doc["FutureField"] = {"x": [1, 2]}
    doc["Peer"][next(iter(doc["Peer"]))]["AnotherNewOne"] = True
    assert [p.host_name for p in parse_status(json.dumps(doc), port=1).peers] == ["b"]


def test_garbage_is_a_discovery_error():
    for raw in (b"", b"not json{", b"[1, 2]", b"\xff\xfe", b'"Running"'):
        with pytest.raises(DiscoveryError, match="tailscale status"):
            parse_status(raw, port=7471)


def test_a_backend_not_running_proposes_nobody():
    raw = json.dumps(status("me", [peer_status("b", ["100.100.1.2"])], backend="Stopped"))
    view = parse_status(raw, port=7471)
    assert not view.running and view.backend_state == "Stopped" and view.peers == ()


# -- the driver and nodes, with a fake `tailscale` on PATH -------------------------------


class FakeTailscale:
    """A ``tailscale`` executable first on PATH that prints ``status.json`` (or exits 1
    for any other subcommand, as the real one does for a bad one)."""

    def __init__(self, tmp: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        self.dir = tmp / "bin"
        self.dir.mkdir()
        self.file = tmp / "status.json"
        exe = self.dir / "tailscale"
        exe.write_text(
            f"#!{sys.executable}\n"
            "import sys\n"
            "if sys.argv[1:] != ['status', '--json']:\n"
            "    sys.exit('usage: tailscale status --json')\n"
            f"sys.stdout.write(open({str(self.file)!r}).read())\n"
        )
        exe.chmod(0o755)
        monkeypatch.setenv("PATH", str(self.dir))  # nothing else: a real tailscale stays out

    def serve(self, doc: dict[str, Any] | str) -> None:
        self.file.write_text(doc if isinstance(doc, str) else json.dumps(doc, indent=2))


@pytest.fixture
def fake(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> FakeTailscale:
    return FakeTailscale(tmp_path, monkeypatch)


def free_port(hosts: list[str]) -> int:
    """A port free on every one of ``hosts`` (each node has its own loopback address,
    and a tailnet proposes one port for all)."""
    for _ in range(50):
        with contextlib.ExitStack() as stack:
            first = stack.enter_context(socket.socket())
            first.bind((hosts[0], 0))
            port = first.getsockname()[1]
            try:
                for h in hosts[1:]:
                    stack.enter_context(socket.socket()).bind((h, port))
            except OSError:
                continue
            return port
    raise AssertionError("no port free on every loopback address")


pytestmark = pytest.mark.usefixtures("no_leaks")
FAST = Profile.local()


@pytest.fixture
async def stack() -> AsyncIterator[contextlib.AsyncExitStack]:
    async with contextlib.AsyncExitStack() as s:
        yield s


async def test_nodes_find_each_other_from_the_tailnet(
    tmp_path: Path, fake: FakeTailscale, stack: contextlib.AsyncExitStack
):
    names = ["gossip-a", "gossip-b", "gossip-c", "printer", "gossip-off"]
    ips = [f"127.0.0.{i + 2}" for i in range(len(names))]
    port = free_port(ips)
    homes = [tmp_path / n for n in names]
    await asyncio.to_thread(create_hosts, homes)
    # b and c are online and tagged; "printer" is tagged but filtered out by name;
    # "gossip-off" is offline. All of them really listen and trust each other.
    fake.serve(status("gossip-a", [
        peer_status("gossip-b", [ips[1], "fd7a:115c:a1e0::b"], tags=["tag:gossip"]),
        peer_status("gossip-c", [ips[2]], tags=["tag:gossip"], os="macOS"),
        peer_status("printer", [ips[3]], tags=["tag:gossip"]),
        peer_status("gossip-off", [ips[4]], tags=["tag:gossip"], online=False),
    ]))  # fmt: skip
    settings = TailnetSettings(tags=("tag:gossip",), hostname="gossip-*", interval=0.2)
    others = [
        await stack.enter_async_context(Node(h, listen=f"{ip}:{port}", profile=FAST))
        for h, ip in zip(homes[1:], ips[1:], strict=True)
    ]
    a = await stack.enter_async_context(
        Node(homes[0], listen=f"{ips[0]}:{port}", profile=FAST, tailnet=True,
             tailnet_settings=settings)
    )  # fmt: skip
    b, c, printer, off = others
    text = "found through the tailnet"
    await a.remember(text)
    await until(lambda: recalled(b, text), "the memory at b")
    await until(lambda: recalled(c, text), "the memory at c")
    rows = {r.key: r for r in a.peers()}
    assert rows[b.id].sources[0] == "tailnet" and rows[b.id].address == f"{ips[1]}:{port}"
    assert f"gossip-b.{SUFFIX}:{port}" in rows[b.id].addresses
    assert rows[c.id].source == "tailnet"
    assert printer.id not in rows and off.id not in rows
    assert not any(f"{ips[3]}:" in x or f"{ips[4]}:" in x for r in a.peers() for x in r.addresses)
    assert not await recalled(printer, text) and not await recalled(off, text)
    (tailnet,) = [d for d in a.discovery() if d.source == "tailnet"]
    assert tailnet.state == "ok" and "2 peer(s) online" in tailnet.detail
    assert "1 offline" in tailnet.detail and "1 filtered out" in tailnet.detail

    # Re-read: c goes offline (withdrawn: down, as b's announcements still name it).
    fake.serve(status("gossip-a", [
        peer_status("gossip-b", [ips[1]], tags=["tag:gossip"]),
        peer_status("gossip-c", [ips[2]], tags=["tag:gossip"], online=False),
    ]))  # fmt: skip

    def c_withdrawn() -> bool:
        row = next((r for r in a.peers() if r.key == c.id), None)
        return row is None or "tailnet" not in row.sources

    await until(c_withdrawn, "c withdrawn from the tailnet")


async def test_garbage_a_stopped_backend_and_a_missing_binary_are_warnings(
    tmp_path: Path, fake: FakeTailscale, stack: contextlib.AsyncExitStack
):
    settings = TailnetSettings(interval=0.1)
    fake.serve("this is not {json")
    node = await stack.enter_async_context(
        Node(tmp_path / "a", profile=FAST, tailnet=True, tailnet_settings=settings)
    )

    def tailnet_status() -> tuple[str, str]:
        (d,) = [d for d in node.discovery() if d.source == "tailnet"]
        return d.state, d.detail

    await until(lambda: tailnet_status()[0] == "warning", "a warning")
    assert "not JSON" in tailnet_status()[1]
    fake.serve(status("a", [peer_status("b", ["127.0.0.9"])], backend="NeedsLogin"))
    await until(lambda: "NeedsLogin" in tailnet_status()[1], "the backend state reported")
    assert tailnet_status()[0] == "warning" and node.peers() == []
    (fake.dir / "tailscale").unlink()
    await until(lambda: "not found" in tailnet_status()[1], "the missing binary reported")
    assert node.running
    await node.remember("still works")
    assert await recalled(node, "still works")


async def test_a_status_file_instead_of_the_command(tmp_path: Path):
    path = tmp_path / "status.json"
    path.write_text(json.dumps(status("a", [peer_status("b", ["100.100.1.2"])])))
    seen: list[list[str]] = []
    driver = TailnetDiscovery(
        TailnetSettings(file=str(path), command=("/nonexistent/tailscale",)),
        port=7471,
        on_peers=lambda peers: seen.append([p.host_name for p in peers]),
    )
    view = await driver.read_once()
    assert view is not None and seen == [["b"]] and driver.status.state == "ok"
    path.unlink()
    assert await driver.read_once() is None
    assert driver.status.state == "warning" and "cannot read" in driver.status.detail


def running(pid: int) -> bool:
    """Whether process ``pid`` still runs (a zombie waiting for its reaper does not)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] not in ("Z", "X")


async def test_a_hanging_command_and_its_children_are_killed_at_the_timeout(tmp_path: Path):
    """A `tailscale` that is a wrapper script whose child hangs: the child keeps the
    pipes open when the wrapper dies, so killing the wrapper alone is not enough."""
    pids = tmp_path / "pids"
    exe = tmp_path / "tailscale"
    exe.write_text(
        "#!/bin/sh\n"
        f"echo $$ >> {pids}\n"
        f"sh -c 'echo $$ >> {pids}; exec sleep 30'\n"
    )
    exe.chmod(0o755)
    driver = TailnetDiscovery(
        TailnetSettings(command=(str(exe), "status", "--json")),
        port=7471,
        on_peers=lambda peers: None,
        command_timeout=1.0,
    )
    started: list[int] = []
    try:
        async with asyncio.timeout(1.0 + 20.0):  # the timeout, then killing and reaping
            assert await driver.read_once() is None
        assert driver.status.state == "warning" and "no answer within 1 s" in driver.status.detail
        started = [int(p) for p in pids.read_text().split()]
        assert len(started) == 2  # the wrapper and its child
        await until(lambda: not any(running(p) for p in started), "every process gone", 5.0)
        # Cancelled while the command runs: the same.
        pids.unlink()
        task = asyncio.create_task(driver.read_once())
        await until(lambda: pids.exists() and len(pids.read_text().split()) == 2, "it runs")
        started = [int(p) for p in pids.read_text().split()]
        task.cancel()
        async with asyncio.timeout(20.0):  # a bound against hanging, not a speed claim
            await asyncio.gather(task, return_exceptions=True)
        await until(lambda: not any(running(p) for p in started), "every process gone", 5.0)
    finally:
        for pid in started + ([int(p) for p in pids.read_text().split()] if pids.exists() else []):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
