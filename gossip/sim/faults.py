"""The fault schedule of one run, drawn from the run's ``random.Random`` before it starts.

A schedule is a list of ``Step``s — at a virtual instant, do one thing — so a run can
print what it will do, and a test can write a schedule by hand. ``schedule`` draws, for
a run of ``duration_ms``:

- the network's baseline for the whole fault phase: a drop rate, a duplication rate, a
  delay range and a probability of long delay spikes (reordering);
- a few *episodes*, each starting at a random instant and undone after a random length:
  a burst of drops, duplicates or spikes; a symmetric partition (two random sides); an
  asymmetric one (a random set of links cut one way only); isolating one node;
  clogging a random subset of nodes, then unclogging them one at a time in random order;
  a crash followed by a restart from the node's own disk; a jump of one node's clock
  (its skew stays within a third of the auth window, so two clocks never differ by more
  than two thirds of it, and delays and clogs are kept short enough for the rest);
- the writes: at random instants, on random nodes, a memory, a breaker state, a
  benchmark observation, a retraction of one of the node's memories, or a checkpoint
  of the node's own history.

A third of the episodes last until ``duration_ms``, where everything heals: links
restored, nodes unclogged and restarted, no more drops, duplicates or spikes. The run
then waits for quiescence.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

# Memories are most writes; a retraction (of one of the node's own memories) and a
# checkpoint (the node compacting its own history, Replica.checkpoint) now and then.
KINDS = ("memory",) * 6 + ("breaker",) * 2 + ("benchmark",) * 2 + ("retract", "checkpoint")
EPISODES = (
    "drops", "duplicates", "spikes", "partition", "asymmetric", "isolate", "clog",
    "crash", "crash", "skew",
)  # fmt: skip


@dataclass(frozen=True)
class Step:
    """At ``at`` ms (from the start of the run), do ``action`` with ``args``."""

    at: int
    action: str
    args: tuple[object, ...] = ()

    def __str__(self) -> str:
        return f"{self.at:>7} {self.action} {' '.join(map(str, self.args))}".rstrip()


@dataclass(frozen=True)
class Baseline:
    drop: float
    duplicate: float
    delay_ms: tuple[int, int]
    spike: float


def baseline(rng: random.Random) -> Baseline:
    return Baseline(
        drop=rng.choice((0.0, 0.0, 0.02, 0.05, 0.1, 0.2)),
        duplicate=rng.choice((0.0, 0.02, 0.1)),
        delay_ms=rng.choice(((1, 5), (1, 30), (5, 100))),
        spike=rng.choice((0.0, 0.01, 0.05)),
    )


def schedule(
    rng: random.Random,
    names: list[str],
    *,
    duration_ms: int,
    writes: int,
    episodes: int,
    window_ms: int,
) -> list[Step]:
    """A random fault schedule for nodes ``names``; sorted by time (stable)."""
    steps: list[Step] = []
    skew_max = window_ms // 3
    for _ in range(episodes):
        kind = rng.choice(EPISODES)
        start = rng.randrange(0, duration_ms)
        length = rng.randint(200, min(10_000, duration_ms))
        # A third of the episodes last until the heal, so that the heal has work to do.
        end = duration_ms if rng.random() < 0.3 else min(start + length, duration_ms)
        if kind in ("drops", "duplicates", "spikes"):
            rate = {"drops": 0.5, "duplicates": 0.3, "spikes": 0.3}[kind] * rng.random()
            steps.append(Step(start, f"{kind}-on", (round(rate, 3),)))
            steps.append(Step(end, f"{kind}-off", (round(rate, 3),)))
        elif kind == "partition":
            side = rng.sample(names, rng.randint(1, len(names) - 1))
            links = [(a, b) for a in side for b in names if b not in side]
            links += [(b, a) for a, b in links]
            steps.append(Step(start, "cut", tuple(links)))
            steps.append(Step(end, "uncut", tuple(links)))
        elif kind == "asymmetric":
            pairs = [(a, b) for a in names for b in names if a != b]
            links = rng.sample(pairs, rng.randint(1, len(pairs) // 2))
            steps.append(Step(start, "cut", tuple(links)))
            steps.append(Step(end, "uncut", tuple(links)))
        elif kind == "isolate":
            node = rng.choice(names)
            links = [(node, b) for b in names if b != node]
            links += [(b, a) for a, b in links]
            steps.append(Step(start, "cut", tuple(links)))
            steps.append(Step(end, "uncut", tuple(links)))
        elif kind == "clog":
            subset = rng.sample(names, rng.randint(1, len(names)))
            steps += [Step(start, "clog", (n,)) for n in subset]
            for n in subset:  # each unclogged at its own instant: a random order
                steps.append(Step(min(start + rng.randint(100, 5000), duration_ms), "unclog", (n,)))
        elif kind == "crash":
            node = rng.choice(names)
            steps.append(Step(start, "crash", (node,)))
            steps.append(Step(end, "restart", (node,)))
        elif kind == "skew":
            steps.append(Step(start, "skew", (rng.choice(names), rng.randint(-skew_max, skew_max))))
    for n in range(writes):
        at = rng.randrange(0, duration_ms)
        steps.append(Step(at, "write", (rng.choice(names), rng.choice(KINDS), n)))
    steps.sort(key=lambda s: s.at)
    return steps
