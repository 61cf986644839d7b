"""A node listening on a wildcard address announces this machine's addresses, and
announces again when they change (DHCP, Wi-Fi): tested in a network namespace of our own
whose only interface changes its address under a running node (a real process)."""

from __future__ import annotations

import json
import os
import queue
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

from .test_discovery_mdns_netns import require_netns

NS = f"smg-readdr-{os.getpid()}"

CHILD = textwrap.dedent(
    """
    import asyncio, json, sys
    from gossip import Node
    from gossip.config import Profile
    from gossip.events import RecordAdded

    async def main():
        profile = Profile.local().with_(readdress=0.2)
        async with Node(sys.argv[1], listen="0.0.0.0:0", profile=profile) as node:
            def show(rec):
                print(json.dumps(rec.fields["addrs"]), flush=True)
            show((await node.hosts())[node.id])
            async for event in node.events():
                if isinstance(event, RecordAdded) and event.kind == "host":
                    if event.author == node.id:
                        show(event.record)

    asyncio.run(main())
    """
)


def ip(*args: str) -> None:
    subprocess.run(["ip", "-n", NS, *args], check=True, capture_output=True, timeout=10)


@pytest.fixture
def namespace():
    require_netns()  # skips saying why, or fails where CI is set
    subprocess.run(["ip", "netns", "add", NS], check=True, capture_output=True, timeout=10)
    try:
        ip("link", "set", "lo", "up")
        # A veth pair with both ends inside (no dummy driver everywhere): d0 gets the address.
        ip("link", "add", "d0", "type", "veth", "peer", "name", "d1")
        ip("link", "set", "d0", "up")
        ip("link", "set", "d1", "up")
        ip("addr", "add", "10.203.0.1/24", "dev", "d0")
        yield NS
    finally:
        subprocess.run(["ip", "netns", "del", NS], capture_output=True, timeout=10)


def test_a_changed_address_is_announced_again(namespace, tmp_path: Path):
    child = subprocess.Popen(
        ["ip", "netns", "exec", namespace, sys.executable, "-c", CHILD, str(tmp_path / "h")],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    lines: queue.Queue[str] = queue.Queue()
    reader = threading.Thread(target=lambda: [lines.put(x) for x in child.stdout], daemon=True)
    reader.start()

    def next_announcement(deadline: float) -> list[str]:
        try:
            return json.loads(lines.get(timeout=max(0.0, deadline - time.monotonic())))
        except queue.Empty:
            child.kill()  # then its stderr ends
            raise AssertionError(f"no announcement; node stderr: {child.stderr.read()}") from None

    try:
        assert next_announcement(time.monotonic() + 30) == ["10.203.0.1"]
        ip("addr", "add", "10.204.0.2/24", "dev", "d0")  # another subnet: deleting the
        # primary address of a subnet would delete its secondaries too
        ip("addr", "del", "10.203.0.1/24", "dev", "d0")
        deadline = time.monotonic() + 20
        seen = next_announcement(deadline)
        while seen != ["10.204.0.2"]:  # may pass through both addresses first
            assert seen in (["10.203.0.1", "10.204.0.2"], ["10.204.0.2", "10.203.0.1"]), seen
            seen = next_announcement(deadline)
    finally:
        child.kill()
        child.wait(10)
        reader.join(10)
