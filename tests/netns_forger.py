"""A liar on the LAN (run inside a network namespace by the mDNS tests).

    python tests/netns_forger.py IGNORED INTERFACE_IP[:PORT]

Sends forged mDNS records from INTERFACE_IP, unasked (as any host on the LAN can):
prints one JSON line ``{"id": "", "address": INTERFACE_IP}``, then answers one JSON
command per stdin line, once its packets are sent:

    {"op": "claim", "instances": [[name, id, [ip, ...]], ...]}  -> {}
        each instance: PTR, SRV (port 7471), TXT (id, v=<our protocol version>) and A records
    {"op": "goodbye", "names": [name, ...]}                     -> {}
        a PTR with TTL 0 for each instance (what a host that stops sends)
"""

from __future__ import annotations

import asyncio
import json
import sys
from typing import Any

from zeroconf import DNSOutgoing, IPVersion, const
from zeroconf.asyncio import AsyncServiceInfo, AsyncZeroconf

from gossip.discovery.mdns import SERVICE_TYPE
from gossip.protocol.messages import VERSION

PER_PACKET = 8  # instances per message: each message stays one UDP packet


def info(name: str, key: str = "", addresses: list[str] | None = None) -> AsyncServiceInfo:
    return AsyncServiceInfo(
        SERVICE_TYPE, name, port=7471, properties={"id": key, "v": str(VERSION), "name": "forged"},
        server=name.split(".")[0] + ".local.", parsed_addresses=addresses or ["10.213.0.254"],
    )  # fmt: skip


def send(zc: AsyncZeroconf, records: list[list[Any]]) -> None:
    for i in range(0, len(records), PER_PACKET):
        out = DNSOutgoing(const._FLAGS_QR_RESPONSE | const._FLAGS_AA)
        for group in records[i : i + PER_PACKET]:
            for record in group:
                out.add_answer_at_time(record, 0)
        zc.zeroconf.async_send(out)


async def main() -> None:
    ip = sys.argv[2].rsplit(":", 1)[0]
    zc = AsyncZeroconf(interfaces=[ip], ip_version=IPVersion.V4Only)
    await zc.zeroconf.async_wait_for_start()
    loop = asyncio.get_running_loop()
    print(json.dumps({"id": "", "address": ip}), flush=True)
    try:
        while line := await loop.run_in_executor(None, sys.stdin.readline):
            cmd = json.loads(line)
            if cmd["op"] == "claim":
                records = []
                for name, key, addresses in cmd["instances"]:
                    i = info(name, key, addresses)
                    records.append([i.dns_pointer(), i.dns_service(), i.dns_text(),
                                    *i.dns_addresses(version=IPVersion.V4Only)])  # fmt: skip
                send(zc, records)
            elif cmd["op"] == "goodbye":
                send(zc, [[info(name).dns_pointer(override_ttl=0)] for name in cmd["names"]])
            print(json.dumps({}), flush=True)
    finally:
        await zc.async_close()


if __name__ == "__main__":
    asyncio.run(main())
