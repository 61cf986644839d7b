"""gossip: the network and the surfaces of sm-gossip (transport, discovery, daemon, CLI).

The replicated state lives in ``crdt``; this package re-exports its error tree so that
callers catch one ``GossipError``. ``Node`` (and ``NodeThread``, ``Profile``) are
imported on first use, so that the CLI does not pay for the network stack.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from crdt.errors import GossipError

if TYPE_CHECKING:
    from .config import Profile
    from .node import Node, NodeThread

__all__ = ["GossipError", "Node", "NodeThread", "Profile"]


def __getattr__(name: str) -> Any:
    if name in ("Node", "NodeThread"):
        from . import node

        return getattr(node, name)
    if name == "Profile":
        from .config import Profile

        return Profile
    raise AttributeError(f"module 'gossip' has no attribute {name!r}")
