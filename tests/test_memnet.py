"""The in-memory network's own promises: addresses, partitions, drops, delays, and that
its faults are deterministic given its ``random.Random`` (the conformance of its serving
rules with HTTP is in test_transport.py)."""

from __future__ import annotations

import asyncio
import random

import pytest

from crdt import Identity
from gossip.transport import SYNC_PATH, PeerUnreachable, auth
from gossip.transport.memnet import MemoryNetwork

pytestmark = pytest.mark.usefixtures("no_leaks")


class Host:
    def __init__(self, net: MemoryNetwork, keys: set[str], clock) -> None:
        self.identity = Identity.generate()
        keys.add(self.identity.public_id)
        self.received: list[tuple[bytes, str]] = []
        self.transport = net.transport(self.identity, auth.Verifier(lambda: keys, clock),
                                       now_ms=clock, timeout=0.2)  # fmt: skip
        self.address = ""

    async def handle(self, path: str, body: bytes, key: str) -> bytes:
        self.received.append((body, key))
        return b"echo " + body

    async def start(self) -> Host:
        self.address = await self.transport.start("10.0.0.1:0", self.handle)
        return self


@pytest.fixture
async def hosts(clock):
    """``await hosts(net, n)``: n started hosts that all trust each other."""
    made: list[Host] = []
    keys: set[str] = set()

    async def make(net: MemoryNetwork, n: int) -> list[Host]:
        new = [await Host(net, keys, clock).start() for _ in range(n)]
        made.extend(new)
        return new

    yield make
    for h in made:
        await h.transport.close()


async def ok(a: Host, b: Host) -> bool:
    try:
        body, key = await a.transport.request(b.address, SYNC_PATH, b"hi",
                                              expected_key=b.identity.public_id)  # fmt: skip
    except PeerUnreachable:
        return False
    assert (body, key) == (b"echo hi", b.identity.public_id)
    return True


async def test_addresses_are_allocated_and_released(hosts):
    net = MemoryNetwork()
    a, b = await hosts(net, 2)
    assert a.address != b.address and a.address.startswith("10.0.0.1:")
    assert set(net.addresses) == {a.address, b.address}
    c = Host(net, set(), a.transport.now_ms)
    with pytest.raises(OSError, match="in use"):
        await c.transport.start(a.address, c.handle)
    assert await ok(a, b)
    await b.transport.close()
    assert b.address not in net.addresses
    with pytest.raises(PeerUnreachable, match="nobody listens"):
        await a.transport.request(b.address, SYNC_PATH, b"hi")
    v6 = net.transport(a.identity, a.transport.verifier, now_ms=a.transport.now_ms)
    assert await v6.start("[fd00::1]:7471", a.handle) == "[fd00::1]:7471"
    await v6.close()


async def test_partition_cuts_both_ways_until_healed(hosts):
    net = MemoryNetwork()
    a, b, c = await hosts(net, 3)
    net.partition(a.address, [b.address, c.address])
    assert not await ok(a, b) and not await ok(b, a) and not await ok(c, a)
    assert await ok(b, c) and await ok(c, b)
    assert b.received == [(b"hi", c.identity.public_id)]  # nothing crossed the cut
    net.heal()
    assert await ok(a, b) and await ok(c, a)


async def test_a_client_that_never_listens_can_be_partitioned_by_name(hosts, clock):
    net = MemoryNetwork()
    (a,) = await hosts(net, 1)
    keys = {a.identity.public_id}
    client = Host(net, keys, clock)
    a.transport.verifier.keyring = lambda: keys
    assert client.transport.name.startswith("client-")
    assert await ok(client, a)
    net.partition(client.transport.name, a.address)
    assert not await ok(client, a)


async def run_lossy(seed: int, hosts) -> tuple[list[bool], int, int]:
    net = MemoryNetwork(rng=random.Random(seed), drop_rate=0.3)
    a, b = await hosts(net, 2)
    outcomes = [await ok(a, b) for _ in range(60)]
    return outcomes, len(b.received), net.stats.requests


async def test_drops_are_deterministic_given_the_random(hosts):
    first, served, delivered = await run_lossy(42, hosts)
    again, _, _ = await run_lossy(42, hosts)
    other, _, _ = await run_lossy(43, hosts)
    assert first == again and first != other
    assert 20 < sum(first) < 50
    # Some answers were lost after the request was served: the server saw more than
    # the client got back.
    assert served > sum(first) == delivered


async def test_delay_hook_sees_both_legs_and_the_timeout_applies(hosts):
    legs: list[tuple[str, str]] = []
    stuck = asyncio.Event()

    async def delay(source: str, target: str) -> None:
        legs.append((source, target))
        if stuck.is_set():
            await asyncio.Event().wait()  # a link that never delivers

    net = MemoryNetwork(delay=delay)
    a, b = await hosts(net, 2)
    assert await ok(a, b)
    assert legs == [(a.address, b.address), (b.address, a.address)]
    stuck.set()
    with pytest.raises(PeerUnreachable, match="no answer within"):
        await a.transport.request(b.address, SYNC_PATH, b"hi")


async def test_the_handler_gets_its_own_bytes(hosts):
    net = MemoryNetwork()
    a, b = await hosts(net, 2)
    buf = bytearray(b"mutable")
    await a.transport.request(b.address, SYNC_PATH, buf)  # type: ignore[arg-type]
    buf[:] = b"changed"
    assert b.received[0][0] == b"mutable" and type(b.received[0][0]) is bytes
