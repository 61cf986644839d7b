"""A node in its own process (run inside a network namespace by the mDNS tests).

    python tests/netns_child.py HOME LISTEN

Starts ``Node(HOME, listen=LISTEN, mdns=True, profile=local)`` with no peers, prints one
JSON line ``{"id": ..., "address": ...}``, then answers one JSON command per stdin line
with one JSON line on stdout:

    {"op": "remember", "text": ...}   -> {"id": record id}
    {"op": "recall", "text": ...}     -> {"texts": [trusted memories matching]}
    {"op": "records"}                 -> {"texts": [every memory text, trusted or not]}
    {"op": "peers"}                   -> {"peers": [PeerInfo.to_json(), ...]}
    {"op": "discovery"}               -> {"discovery": [DiscoveryStatus.to_json(), ...]}
    {"op": "trust", "key": ...}       -> {} once the key is in the keyring

End of stdin closes the node (mDNS goodbyes) and exits 0.
"""

from __future__ import annotations

import json
import logging
import sys
from typing import Any

from gossip.config import Profile
from gossip.node import Node


def main() -> None:
    home, listen = sys.argv[1], sys.argv[2]
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    profile = Profile.local().with_(interval=0.3)
    with Node(home, listen=listen, profile=profile, mdns=True).start_in_thread() as node:
        say({"id": node.id, "address": node.address})
        for line in sys.stdin:
            if not line.strip():
                continue
            cmd = json.loads(line)
            say(answer(node, cmd))


def answer(node: Any, cmd: dict[str, Any]) -> dict[str, Any]:
    op = cmd["op"]
    if op == "remember":
        return {"id": node.remember(cmd["text"])}
    if op == "recall":
        return {"texts": [m.text for m in node.recall(cmd["text"])]}
    if op == "records":
        recs = node.call(node.node.records()).values()
        return {"texts": sorted(str(r.fields["text"]) for r in recs if "text" in r.fields)}
    if op == "peers":
        return {"peers": [p.to_json() for p in node.peers()]}
    if op == "trust":
        node.trust(cmd["key"], f"peer {cmd['key'][:8]}")
        return {}
    if op == "discovery":
        return {"discovery": [d.to_json() for d in node.discovery()]}
    return {"error": f"unknown op {op!r}"}


def say(obj: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
