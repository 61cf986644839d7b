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


# The public modules gossip's docstring names, and the names each exports.
PUBLIC_MODULES = {
    "gossip.errors": None,  # the whole error tree: pinned by its own test below
    "gossip.client": ["ApiConnection", "ApiRefused", "ApiUnavailable", "Client"],
    "gossip.connection": ["API_SOCKET", "ApiConnection", "FeedMessage", "TOKEN_FILE"],
    "gossip.config": ["CONFIG_FILE", "Config", "ConfigError", "DEFAULT_AGENTS_LISTEN",
                      "DEFAULT_LISTEN", "DEFAULT_PORT", "MdnsSettings", "PROFILES", "Profile",
                      "TailnetSettings", "check_address", "check_name", "create",
                      "default_home", "load"],
    "gossip.events": ["BreakerChanged", "Event", "EventsLost", "PeerChanged", "RecordAdded",
                      "Subscription", "TrustChanged"],
    "gossip.node": ["INGEST_CHUNK", "Node", "NodeConfig", "NodeThread", "SyncReport",
                    "TransportFactory"],
    "gossip.ops": ["OPERATIONS", "Operation", "Params", "run"],
    "gossip.cli": ["EXPORT_MAGIC", "ExportError", "build_parser", "decode_export",
                   "default_home", "encode_export", "main"],
    "gossip.transport.memnet": ["DelayHook", "MemoryNetwork", "MemoryTransport"],
}  # fmt: skip


def test_the_public_modules_pin_their_names():
    import importlib

    for name, names in PUBLIC_MODULES.items():
        module = importlib.import_module(name)
        if names is not None:
            assert sorted(module.__all__) == sorted(names), name
        for member in module.__all__:
            assert getattr(module, member) is not None, (name, member)
