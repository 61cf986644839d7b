"""gossip: the network and the surfaces of sm-gossip (transport, discovery, daemon, CLI).

The public surface is what ``__all__`` names (pinned by tests/test_exported_members.py),
and these modules: ``errors`` (the error tree), ``client`` (best-effort client of a
daemon), ``connection`` (its API connection), ``config`` (config.toml, profiles),
``events`` (what ``Node.events()`` yields), ``node``, ``ops`` (the operations table),
``cli`` and ``transport.memnet`` (an in-memory network). Every other module is the
implementation: it may change without notice, and its docstring says what it owns.

The top-level names:
``Node`` to embed a host in an asyncio program (``NodeThread`` for a synchronous one;
``NodeConfig`` its options, resolved once over config.toml),
``Client`` to use a running daemon best-effort, ``Profile`` for timings, and the error
tree (``gossip.errors``; ``crdt``'s errors share its root ``GossipError``). ``Node``,
``NodeConfig``, ``NodeThread``, ``Client`` and ``Profile`` are imported on first use, so
that the CLI does not pay for the network stack.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"  # the distribution's version too (pyproject.toml reads it here)

from .errors import (
    Conflict,
    Forbidden,
    GossipError,
    Invalid,
    NotFound,
    OpError,
    TooLarge,
    Unauthorized,
    Unavailable,
    Unreachable,
)

if TYPE_CHECKING:
    from .client import Client
    from .config import Profile
    from .node import Node, NodeConfig, NodeThread

__all__ = [
    "Client",
    "Conflict",
    "Forbidden",
    "GossipError",
    "Invalid",
    "Node",
    "NodeConfig",
    "NodeThread",
    "NotFound",
    "OpError",
    "Profile",
    "TooLarge",
    "Unauthorized",
    "Unavailable",
    "Unreachable",
]

_LAZY = {"Node": "node", "NodeConfig": "node", "NodeThread": "node", "Client": "client",
         "Profile": "config"}  # fmt: skip


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'gossip' has no attribute {name!r}")
    from importlib import import_module

    return getattr(import_module(f".{module}", __name__), name)
