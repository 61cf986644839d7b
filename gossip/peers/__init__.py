"""The peer table: who our peers are, where they are, how they are doing; sans I/O.

It owns, per peer: its key (unknown for a configured address until it first answers),
name, addresses, where we heard of it (``source``), health, backoff, round-trip time,
bytes exchanged and lag. It decides whom to sync with next and whom to push to. It never
touches a socket, a replica or the wall clock: the node tells it what happened and
when (``now`` in ms), and it draws randomness from the ``random.Random`` it was given, so
the simulator and the tests replay it exactly.

States (the words ``gossip peers`` shows; each row also says why, ``reason``)::

    suspect ──ok / it reached us──▶ alive ──fail──▶ suspect ──(down_after failures)──▶ down
    (not reached yet, or failing)     ▲                                                 │
       │                              └──────────ok / it reached us────────────────────┘
       ├──403 / answer from a key not in our keyring──▶ unknown-key
       └──(any state) its signed goodbye (LEAVE)──▶ left ──ok / it reached us──▶ alive

``alive`` comes with the first success, ours or theirs: a signed request from the peer
(an exchange or a push it started) proves it is up, so a peer that comes back after a
partition is ``alive`` as soon as data flows, not a round later. ``left`` is a peer that
said it stops (``on_leave``): failing to reach it is expected, so failures leave it
``left`` (retried at the cap, like ``down``). ``forget`` drops a row; a host
announcement of its key (source ``exchange``) does not bring it back until the peer
reaches us or a live source (static, tailnet, mDNS) proposes it again.

Lag is what we know of the peer's state vector (its last one, ``last_sv``) against ours
now (``ours``, which the node keeps current: our writes, and every state vector of ours an
exchange saw): while a peer is down, what we wrote since shows as what it lacks.

A failure backs a peer off exponentially (``base * 2**(failures-1)``, capped), with
jitter (each delay is drawn from its upper half) so that a mesh that lost a peer at
the same moment does not retry it in lockstep. A ``down`` peer is still retried, at the
cap. An ``unknown-key`` peer waits for a human: it is retried at the cap, and at once
when our keyring changes. A peer that reaches *us* is retried at once too (it may just
have restarted).

Keys come from two places only: the answer of a peer whose signature verified against
our keyring, and a host announcement in the document by a trusted author. Discovery
(static list, mDNS, tailnet) proposes addresses, never keys (invariant 9); the id an
mDNS record claims is kept as a *claim* (``claimed``): shown, so that a human can trust
it, but never dialled unless it is in our keyring (``trusts``), and proven or refuted by
the first signed answer. The addresses mDNS proposes are claims too (``unproven``): they
never evict an address from a static, tailnet or exchange proposal or one a signed answer
came from; they come after those (within ``MAX_ADDRESSES``), so they are tried last, and
an answer from one proves it. Rows that only mDNS knows, with no trusted key, are capped
(``MAX_MDNS_ROWS``, the oldest go): a flood of fake instances costs bounded memory.

A row remembers every source that proposed it (``sources``); a source that withdraws it
(``withdraw``) removes it or, if others still know it, only drops that source (for
``tailnet``, whose word is its own daemon's, it also marks the row ``down``).
"""

from __future__ import annotations

from .rows import (
    ALIVE,
    DOWN,
    LEFT,
    MAX_ADDRESSES,
    MAX_MDNS_ROWS,
    SOURCES,
    STATES,
    SUSPECT,
    UNKNOWN_KEY,
    Peer,
    PeerInfo,
    PeerListener,
    holds,
    lag,
)
from .table import PeerTable

__all__ = ["ALIVE", "DOWN", "LEFT", "MAX_ADDRESSES", "MAX_MDNS_ROWS", "SOURCES", "STATES",
           "SUSPECT", "UNKNOWN_KEY", "Peer", "PeerInfo", "PeerListener", "PeerTable",
           "holds", "lag"]  # fmt: skip
