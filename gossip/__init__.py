"""gossip: the network and the surfaces of sm-gossip (transport, discovery, daemon, CLI).

The replicated state lives in ``crdt``; this package re-exports its error tree so that
callers catch one ``GossipError``.
"""

from __future__ import annotations

from crdt.errors import GossipError

__all__ = ["GossipError"]
