"""The public names of ``gossip`` and ``crdt`` are pinned (as httpx's
test_exported_members.py pins its own): a name is added or removed on purpose, with this
list, never by accident; each one resolves and says where it lives.
"""

from __future__ import annotations

import crdt
import gossip

GOSSIP = ["Client", "Conflict", "Forbidden", "GossipError", "Invalid", "Node", "NodeConfig",
          "NodeThread", "NotFound", "OpError", "Profile", "TooLarge", "Unauthorized", "Unavailable",
          "Unreachable"]  # fmt: skip
CRDT = ["GossipError", "Identity", "IdentityError", "Outcome", "RecordError", "RejectedUpdate",
        "Replica", "ReplicaLimits", "SignedRecord", "SignedUpdate", "StoreCorrupt",
        "StoreError", "StoreLocked", "StoreLost", "UpdateError", "derive_client", "records",
        "rrf_fuse", "wire"]  # fmt: skip


def test_the_public_names_are_pinned():
    assert sorted(gossip.__all__) == GOSSIP
    assert sorted(crdt.__all__) == CRDT


def test_every_public_name_resolves_and_names_its_home():
    for package, names in ((gossip, GOSSIP), (crdt, CRDT)):
        for name in names:
            value = getattr(package, name)
            home = getattr(value, "__module__", None) or getattr(value, "__name__", "")
            assert home.startswith(("gossip", "crdt")), (name, home)


def test_every_error_shares_one_root():
    for name in GOSSIP + CRDT:
        value = getattr(gossip if name in GOSSIP else crdt, name)
        if isinstance(value, type) and issubclass(value, Exception):
            assert issubclass(value, gossip.GossipError), name
    assert gossip.GossipError is crdt.GossipError
