"""The simulated network: packets between hosts, and every way they can go wrong.

A packet is one request or one answer of the peer protocol (the same signed headers and
body a ``Transport`` would carry). ``send`` decides a packet's fate from the network's
current faults and the simulation's one ``random.Random``:

- **drop**: lost with the current drop probability (at sending, and again if a cut
  appears while it travels);
- **duplicate**: delivered twice with the duplication probability, each copy with its
  own delay (the second copy of a request is a replay: the receiver's nonce cache
  refuses it, as it would refuse an attacker's);
- **delay and reordering**: every copy waits ``base`` ms plus a random amount, and with
  the spike probability much longer, so later packets overtake earlier ones;
- **cuts**: directed links ``a -> b`` that carry nothing (a symmetric partition cuts both
  ways, an asymmetric one a single way, isolating a node cuts all its links); cuts are
  counted, so overlapping partitions heal independently;
- **clogging** (FoundationDB's term): packets from or to a clogged host are held, not
  lost, and go out (in random order, with fresh delays) once both ends are unclogged;
- **down hosts**: a packet for a host that is down, or that crashed and restarted since
  it was sent (a new incarnation: its connections died with it), is lost.

It never looks inside a packet: what the bytes mean is the hosts' business.
"""

from __future__ import annotations

import random
from collections import Counter
from dataclasses import dataclass, field
from typing import Protocol

from .loop import EventLoop
from .trace import Trace

REQUEST = "request"
ANSWER = "answer"


@dataclass(frozen=True)
class Packet:
    """One request (``kind`` REQUEST) or answer (ANSWER). ``ref`` correlates an answer
    with its request, as a connection would: the request's nonce."""

    kind: str
    src: str
    dst: str
    path: str
    headers: dict[str, str]
    body: bytes
    ref: str
    status: int = 200
    dst_incarnation: int = 0


@dataclass
class Faults:
    """The network's current misbehaviour (the fault schedule changes it over time)."""

    drop: float = 0.0
    duplicate: float = 0.0
    delay_ms: tuple[int, int] = (1, 30)  # uniform range of an ordinary delay
    spike: float = 0.0  # probability that a copy is delayed by up to spike_ms more
    spike_ms: int = 1500
    cuts: Counter[tuple[str, str]] = field(default_factory=Counter)
    clogged: Counter[str] = field(default_factory=Counter)


class Endpoint(Protocol):
    """What the network needs of a host."""

    name: str
    up: bool
    incarnation: int

    def receive(self, packet: Packet) -> None: ...


class Network:
    def __init__(self, loop: EventLoop, rng: random.Random, trace: Trace) -> None:
        self.loop = loop
        self.rng = rng
        self.trace = trace
        self.faults = Faults()
        self.hosts: dict[str, Endpoint] = {}
        self.in_flight = 0  # copies scheduled for delivery, not yet delivered or lost
        self._held: list[Packet] = []
        self.stats: Counter[str] = Counter()

    # -- faults -----------------------------------------------------------------------

    def cut(self, links: list[tuple[str, str]]) -> None:
        self.faults.cuts.update(links)

    def uncut(self, links: list[tuple[str, str]]) -> None:
        self.faults.cuts.subtract(links)
        self.faults.cuts = +self.faults.cuts  # drop zero counts

    def linked(self, a: str, b: str) -> bool:
        return self.faults.cuts[(a, b)] <= 0

    def clog(self, name: str) -> None:
        self.faults.clogged[name] += 1

    def unclog(self, name: str) -> None:
        self.faults.clogged[name] -= 1
        self.faults.clogged = +self.faults.clogged
        self._release()

    def clogged(self, name: str) -> bool:
        return self.faults.clogged[name] > 0

    def heal(self) -> None:
        """Every link restored, every host unclogged, no more drops, duplicates or spikes."""
        self.faults = Faults(delay_ms=self.faults.delay_ms)
        self._release()

    # -- traffic ----------------------------------------------------------------------

    def send(self, packet: Packet) -> None:
        t = self.loop.now
        tag = _tag(packet)
        self.stats[packet.kind] += 1
        if not self.linked(packet.src, packet.dst):
            self.stats["cut"] += 1
            self.trace.add(t, "cut", tag)
            return
        if self.faults.drop and self.rng.random() < self.faults.drop:
            self.stats["dropped"] += 1
            self.trace.add(t, "drop", tag)
            return
        copies = 2 if self.faults.duplicate and self.rng.random() < self.faults.duplicate else 1
        if copies == 2:
            self.stats["duplicated"] += 1
        for _ in range(copies):
            delay = self._delay()
            self.trace.add(t, "send", tag, delay)
            self._schedule(packet, delay)

    def _delay(self) -> int:
        lo, hi = self.faults.delay_ms
        delay = self.rng.randint(lo, hi)
        if self.faults.spike and self.rng.random() < self.faults.spike:
            delay += self.rng.randint(0, self.faults.spike_ms)
        return delay

    def _schedule(self, packet: Packet, delay: int) -> None:
        self.in_flight += 1
        self.loop.call_later(delay, lambda: self._arrive(packet))

    def _arrive(self, packet: Packet) -> None:
        self.in_flight -= 1
        t = self.loop.now
        tag = _tag(packet)
        if not self.linked(packet.src, packet.dst):
            self.stats["cut"] += 1
            self.trace.add(t, "cut-in-flight", tag)
            return
        if self.clogged(packet.src) or self.clogged(packet.dst):
            self.stats["held"] += 1
            self.trace.add(t, "held", tag)
            self._held.append(packet)
            return
        host = self.hosts.get(packet.dst)
        if host is None or not host.up or host.incarnation != packet.dst_incarnation:
            self.stats["lost"] += 1
            self.trace.add(t, "lost", tag)
            return
        self.stats["delivered"] += 1
        self.trace.add(t, "deliver", tag)
        host.receive(packet)

    def _release(self) -> None:
        """Send on, in random order, the held packets whose ends are both unclogged."""
        free = [p for p in self._held if not (self.clogged(p.src) or self.clogged(p.dst))]
        if not free:
            return
        self._held = [p for p in self._held if self.clogged(p.src) or self.clogged(p.dst)]
        self.rng.shuffle(free)
        for p in free:
            delay = self._delay()
            self.trace.add(self.loop.now, "release", _tag(p), delay)
            self._schedule(p, delay)

    @property
    def held(self) -> int:
        return len(self._held)

    def idle(self) -> bool:
        return self.in_flight == 0 and not self._held


def _tag(p: Packet) -> str:
    what = p.path if p.kind == REQUEST else f"{p.status}"
    return f"{p.kind}:{p.src}>{p.dst}:{what}:{p.ref[:8]}:{len(p.body)}"


