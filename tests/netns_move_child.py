"""A static peer given by name moves to another address and is found again.

    ip netns exec NS python tests/netns_move_child.py HOSTS HOME_A HOME_B

Run inside a network namespace whose ``/etc/netns/NS/hosts`` is ``HOSTS`` (``ip netns
exec`` bind-mounts it over ``/etc/hosts``, so rewriting it in place renames hosts for
this process only). Node A knows B only as ``mover.test:PORT``; neither announces an
address (``advertise=[]``), so the name is A's only way to B. B listens on 127.0.0.2,
stops, and comes back on 127.0.0.3 while the name is moved: A must reach it again.
Prints "ok" and exits 0, or raises.
"""

from __future__ import annotations

import asyncio
import socket
import sys
import time
from pathlib import Path

from gossip.config import Profile
from gossip.node import Node

FAST = Profile.local()


def free_port() -> int:
    for _ in range(50):
        with socket.socket() as s1, socket.socket() as s2:
            s1.bind(("127.0.0.2", 0))
            port = s1.getsockname()[1]
            try:
                s2.bind(("127.0.0.3", port))
            except OSError:
                continue
            return port
    raise AssertionError("no port free on both addresses")


async def wait_recalled(node: Node, text: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not any(m.text == text for m in node.recall(text)):
        if time.monotonic() > deadline:
            raise AssertionError(f"{text!r} not recalled within {timeout} s: {node.peers()}")
        await asyncio.sleep(0.05)


async def main(hosts: Path, home_a: Path, home_b: Path) -> None:
    port = free_port()
    hosts.write_text("127.0.0.2 mover.test\n")  # in place: the bind mount follows the inode
    b = Node(home_b, listen=f"127.0.0.2:{port}", profile=FAST, advertise=[])
    await b.__aenter__()
    try:
        async with Node(home_a, listen="127.0.0.1:0", peers=[f"mover.test:{port}"],
                        profile=FAST, advertise=[]) as a:  # fmt: skip
            await b.remember("before the move")
            await wait_recalled(a, "before the move")
            await b.aclose()
            hosts.write_text("127.0.0.3 mover.test\n")
            b = Node(home_b, listen=f"127.0.0.3:{port}", profile=FAST, advertise=[])
            await b.__aenter__()
            await b.remember("after the move")
            await wait_recalled(a, "after the move")
            (row,) = a.peers()
            assert row.key == b.id and row.addresses == (f"mover.test:{port}",), row
    finally:
        await b.aclose()
    print("ok", flush=True)


if __name__ == "__main__":
    asyncio.run(main(Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3])))
