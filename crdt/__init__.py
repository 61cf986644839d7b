"""crdt: the replicated state of sm-gossip — signed records, signed updates, the ingest
gate, the durable store. No network code lives here, and nothing here imports ``gossip``.
"""

from __future__ import annotations

from . import records, wire
from .errors import (
    GossipError,
    IdentityError,
    RecordError,
    RejectedUpdate,
    StoreCorrupt,
    StoreError,
    StoreLocked,
    UpdateError,
)
from .fusion import rrf_fuse
from .identity import Identity
from .records import SignedRecord
from .replica import Outcome, Replica, ReplicaLimits
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
    "UpdateError",
    "derive_client",
    "records",
    "rrf_fuse",
    "wire",
]
