"""The embeddable node (``from gossip import Node``), split by concern:

- ``config.py``: ``NodeConfig``, its options resolved once (flags over config.toml);
- ``node.py``: ``Node``, the facade: lifecycle, the replica's worker thread, the one
  write path, and the small core the parts use;
- ``actions.py`` / ``reads.py``: the two halves of its public surface (writes through
  the operations of ``gossip.ops``, trust, rotate, invite, sync; degraded reads);
- ``changes.py``: the change feed (``Node.events()``);
- ``replication.py``: the driver of the sans-I/O gossiper (anti-entropy, eager push,
  serving peers, sync now);
- ``membership.py``: the host announcement, peer exchange, mDNS and tailnet discovery;
- ``rotation.py``: a key rotation's grace and the retired keys;
- ``joining.py``: invitations;
- ``embedding.py``: the semantic lane's vectors, built in the background;
- ``rest.py``: the C heap's free pages given back once activity has passed;
- ``thread.py``: ``NodeThread``, a node for synchronous programs.
"""

from __future__ import annotations

from ..transport import TransportFactory
from .config import NodeConfig
from .node import Node
from .replication import INGEST_CHUNK, SyncReport
from .thread import NodeThread

__all__ = ["INGEST_CHUNK", "Node", "NodeConfig", "NodeThread", "SyncReport", "TransportFactory"]
