"""A deterministic simulator of sm-gossip (like FoundationDB's simulator and TigerBeetle's
VOPR): 3–9 hosts running the real replication code over a simulated network, with a
virtual clock and one ``random.Random(seed)``, through drops, duplicates, delays and
reordering, partitions (symmetric, asymmetric, one node isolated), clogging, crashes
with restart from disk, and clock skew; then heal, quiescence, and a check that every
replica is the same and no acknowledged write was lost (docs/reliability.md).

Theory of operation:

- ``loop.py`` — virtual time and a heap of scheduled calls; nothing waits for real time.
- ``network.py`` — packets between hosts and the faults that befall them.
- ``host.py`` — one host: a real ``crdt.Replica`` on SQLite, and the sans-I/O
  ``gossip.protocol.Gossiper`` (the replication policy a node runs), ``gossip.peers`` and
  ``gossip.transport.auth``, driven as ``gossip.node`` drives them. Crash and restart from the disk
  as it is.
- ``faults.py`` — the fault schedule, drawn from the seed (or written by hand).
- ``check.py`` — the invariants checked after quiescence (convergence, set-full).
- ``world.py`` — one run: build, play, heal, settle, check, clean up; the trace hash.
- ``seeds.py`` — many seeds, here or in worker processes.
- ``__main__.py`` — ``scripts/simulate``: many seeds, a summary, replay commands.

Why not ``gossip.transport.memnet`` with asyncio: its requests are awaited calls in real time
(``asyncio.timeout``), it neither duplicates nor reorders, and its nonces come from
``os.urandom``; a virtual clock needs every wait to be an event of its own loop. So the
simulator drives the sans-I/O pieces itself, and ``gossip.node``'s own glue (tasks,
worker thread, transport) stays outside it, tested by tests/test_node.py instead; the
policy does not (both drive the same ``Gossiper``).

Same seed and config, same trace hash — in any process, whatever ``PYTHONHASHSEED``.
"""

from __future__ import annotations

from .faults import Step
from .seeds import run_seeds
from .world import Config, Result, run

__all__ = ["Config", "Result", "Step", "run", "run_seeds"]
