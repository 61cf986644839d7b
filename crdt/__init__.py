"""crdt: the replicated state of sm-gossip — signed records, signed updates, the ingest
gate, the durable store. No network code lives here, and nothing here imports ``gossip``.

The errors are imported at once; every other public name on first use, so that a
program (the `gossip` command) that only needs an error class or a record's kind does
not pay for pycrdt, the store and the embedding model.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .errors import (
    GossipError,
    IdentityError,
    RecordError,
    RejectedUpdate,
    StoreCorrupt,
    StoreError,
    StoreLocked,
    StoreLost,
    UpdateError,
)

if TYPE_CHECKING:
    from . import records, wire
    from .fusion import rrf_fuse
    from .identity import Identity
    from .ingest import Outcome
    from .records import SignedRecord
    from .replica import Replica, ReplicaLimits
    from .updates import SignedUpdate, derive_client

__all__ = [
    "GossipError",
    "Identity",
    "IdentityError",
    "Outcome",
    "RecordError",
    "RejectedUpdate",
    "Replica",
    "ReplicaLimits",
    "SignedRecord",
    "SignedUpdate",
    "StoreCorrupt",
    "StoreError",
    "StoreLocked",
    "StoreLost",
    "UpdateError",
    "derive_client",
    "records",
    "rrf_fuse",
    "wire",
]

_LAZY = {
    "Identity": "identity", "Outcome": "ingest", "Replica": "replica",
    "ReplicaLimits": "replica", "SignedRecord": "records", "SignedUpdate": "updates",
    "derive_client": "updates", "rrf_fuse": "fusion",
}  # fmt: skip


def __getattr__(name: str) -> Any:
    from importlib import import_module

    if name in ("records", "wire"):
        return import_module(f".{name}", __name__)
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'crdt' has no attribute {name!r}")
    return getattr(import_module(f".{module}", __name__), name)
