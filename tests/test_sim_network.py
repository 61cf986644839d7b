"""The simulator's clock and network on their own (gossip/sim/loop.py, network.py):
virtual time, bounded runs, and each fault doing what docs/reliability.md says."""

from __future__ import annotations

import random

import pytest

from gossip.sim.loop import EventBudgetExceeded, EventLoop
from gossip.sim.network import REQUEST, Endpoint, Network, Packet
from gossip.sim.trace import Trace


class Sink(Endpoint):
    def __init__(self, net: Network, name: str) -> None:
        self.name, self.up, self.incarnation = name, True, 1
        self.got: list[tuple[int, str]] = []
        self.net = net
        net.hosts[name] = self

    def receive(self, packet: Packet) -> None:
        self.got.append((self.net.loop.now, packet.ref))


def world(seed: int = 1) -> tuple[EventLoop, Network, Sink, Sink]:
    loop = EventLoop(start_ms=0, max_events=10_000)
    net = Network(loop, random.Random(seed), Trace())
    return loop, net, Sink(net, "a"), Sink(net, "b")


def packet(ref: str, src: str = "a", dst: str = "b") -> Packet:
    return Packet(REQUEST, src, dst, "/v1/sync", {}, b"x", ref=ref, dst_incarnation=1)


def test_the_loop_runs_in_virtual_time_in_order_and_is_bounded() -> None:
    loop = EventLoop(start_ms=1000, max_events=3)
    seen: list[tuple[int, str]] = []
    loop.call_later(50, lambda: seen.append((loop.now, "late")))
    loop.call_later(10, lambda: seen.append((loop.now, "first")))
    loop.call_later(10, lambda: seen.append((loop.now, "second")))  # same ms: in order
    loop.call_later(20, lambda: seen.append((loop.now, "cancelled"))).cancel()
    loop.run(until=1030)
    assert seen == [(1010, "first"), (1010, "second")] and loop.now == 1030
    loop.run(until=2000)
    assert seen[-1] == (1050, "late")
    for k in range(5):
        loop.call_later(k, lambda: None)
    with pytest.raises(EventBudgetExceeded):
        loop.run(until=10_000)


def test_delays_reorder_and_a_seed_repeats_them() -> None:
    def arrivals(seed: int) -> list[str]:
        loop, net, _, b = world(seed)
        net.faults.delay_ms = (1, 100)
        for k in range(20):
            net.send(packet(str(k)))
        loop.run(until=1000)
        return [ref for _, ref in b.got]

    first = arrivals(3)
    assert sorted(first, key=int) == [str(k) for k in range(20)]
    assert first != sorted(first, key=int)  # reordered
    assert arrivals(3) == first and arrivals(4) != first


def test_drops_and_duplicates() -> None:
    loop, net, _, b = world()
    net.faults.drop, net.faults.duplicate = 0.5, 0.5
    for k in range(400):
        net.send(packet(str(k)))
    loop.run(until=1000)
    refs = [ref for _, ref in b.got]
    assert 100 < net.stats["dropped"] < 300 and net.stats["duplicated"] > 50
    assert len(refs) > len(set(refs))  # some arrived twice
    assert net.idle()


def test_a_one_way_cut_and_a_cut_appearing_in_flight() -> None:
    loop, net, a, b = world()
    net.cut([("a", "b")])
    net.send(packet("ab"))
    net.send(packet("ba", src="b", dst="a"))
    loop.run(until=100)
    assert b.got == [] and [r for _, r in a.got] == ["ba"]
    net.uncut([("a", "b")])
    net.send(packet("in-flight"))
    net.cut([("a", "b")])
    loop.run(until=200)
    assert b.got == [] and net.stats["cut"] == 2


def test_clogged_packets_are_held_then_released() -> None:
    loop, net, _, b = world()
    net.clog("b")
    net.clog("b")  # two overlapping clogs: both must end
    for k in range(10):
        net.send(packet(str(k)))
    loop.run(until=1000)
    assert b.got == [] and net.held == 10
    net.unclog("b")
    loop.run(until=2000)
    assert b.got == []
    net.unclog("b")
    loop.run(until=3000)
    assert sorted(r for _, r in b.got) == sorted(str(k) for k in range(10))
    assert all(t >= 2000 for t, _ in b.got) and net.idle()


def test_a_packet_for_a_crashed_or_restarted_host_is_lost() -> None:
    loop, net, _, b = world()
    net.send(packet("before"))
    b.incarnation = 2  # crashed and restarted while the packet travelled
    loop.run(until=100)
    b.up = False
    net.send(Packet(REQUEST, "a", "b", "/v1/sync", {}, b"", ref="down", dst_incarnation=2))
    loop.run(until=200)
    assert b.got == [] and net.stats["lost"] == 2
