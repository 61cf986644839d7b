"""Membership: who this host says it is and where (its host announcement), and whom it
learns of (trusted hosts' announcements, mDNS, the tailnet). Discovery only proposes
addresses: keys come from the keyring (invariant 9).

Owns the announcement's addresses, the discovery drivers and what the tailnet last
listed. Reads the peer table and the effective trust through the node; writes the
document only through ``Replica.put`` in the node's worker.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING

from crdt import SignedRecord, records
from crdt.records import KIND_HOST

from .. import protocol
from ..config import MdnsSettings, TailnetSettings
from ..discovery import OFF, OK, DiscoveryStatus
from ..discovery.addresses import machine_addresses
from ..discovery.mdns import MdnsDiscovery, Sighting
from ..discovery.tailnet import TailnetDiscovery, TailnetPeer
from ..transport.http import join_address, split_address

if TYPE_CHECKING:
    from .node import Node

log = logging.getLogger("gossip.node")


class Membership:
    """This node's announcement and its sources of peers."""

    def __init__(self, node: Node, *, advertise: Sequence[str] | None, static: Sequence[str],
                 mdns: bool, tailnet: bool) -> None:  # fmt: skip
        self.node = node
        self.advertise = list(advertise) if advertise is not None else None
        self.static = list(static)
        self.use_mdns = mdns
        self.use_tailnet = tailnet
        self.mdns_settings: MdnsSettings | None = None
        self.tailnet_settings: TailnetSettings | None = None
        self.mdns: MdnsDiscovery | None = None
        self.tailnet: TailnetDiscovery | None = None
        self._tailnet_seen: dict[str, tuple[str, ...]] = {}  # node -> addresses

    # -- our announcement, and theirs ---------------------------------------------------

    def addresses(self) -> list[str]:
        """The addresses an invitation names: the announced ones, with our port."""
        host, port = split_address(self.node.address)
        hosts = self.advertise if self.advertise else advertised(host)
        return [join_address(h.strip("[]"), port) for h in hosts]

    def announce(self) -> list[SignedRecord]:
        """In the worker: write our host announcement if it changed; return every host
        announcement (peer exchange)."""
        node = self.node
        replica = node.replica
        host, port = split_address(node.address)
        addrs = self.advertise if self.advertise is not None else advertised(host)
        if not addrs:  # advertise=[]: a short-lived node (`gossip sync`) leaves ours alone
            return self.host_records()
        # ``transport``: so that a peer can say "it speaks TLS, we do not" (additive:
        # older peers relay the field untouched).
        wanted = {"name": node.name, "addrs": addrs, "port": port,
                  "protocol": protocol.VERSION, "transport": node.transport_mode}  # fmt: skip
        current = replica.get(f"{KIND_HOST}:{replica.author}:self")
        if current is None or {k: current.fields.get(k) for k in wanted} != wanted:
            replica.put(records.host(replica.identity, ts=node.now_ms(), **wanted))
        return self.host_records()

    def host_records(self) -> list[SignedRecord]:
        """In the worker: every host announcement, ours too."""
        return [r for k, r in self.node.replica.state().items() if k.startswith(f"{KIND_HOST}:")]

    def learn_hosts(self, hosts: Iterable[SignedRecord]) -> None:
        """Announcements by trusted authors become peers (source "exchange")."""
        node = self.node
        table = node.table_or_none
        if table is None:
            return
        now = node.now_ms()
        trust, retired = node.trust_set(), node.rotation.retired_keys
        for rec in hosts:
            if rec.author not in trust.keys or rec.author == table.self_key:
                continue
            if rec.author in retired or trust.current(rec.author) != rec.author:
                continue  # a rotated key: its successor announces the host
            addresses = announced_addresses(rec)
            if addresses:
                name = rec.fields.get("name")
                table.add(addresses, "exchange", key=rec.author,
                          name=name if isinstance(name, str) else "", now=now)  # fmt: skip

    def forget(self, key: str) -> bool:
        """``gossip peers forget``: drop the row of ``key``; its host announcement does
        not bring it back until it reaches us or a live source proposes it (mDNS while it
        advertises, the tailnet, the static list). False if no row has that key."""
        table = self.node.table_or_none
        row = table.by_key(key) if table is not None else None
        if table is None or row is None:
            return False
        table.forget(row)
        return True

    # -- discovery ----------------------------------------------------------------------

    def status(self) -> list[DiscoveryStatus]:
        """How each source of peers is doing (``Node.discovery``)."""
        table = self.node.table_or_none
        rows = table.rows() if table is not None else []

        def count(source: str) -> int:
            return sum(source in r.sources for r in rows)

        if self.static:
            detail = f"{len(self.static)} configured, {count('static')} in the peer table"
            out = [DiscoveryStatus("static", OK, detail)]
        else:
            out = [DiscoveryStatus("static", OFF, "no peers configured")]
        for source, driver in (("tailnet", self.tailnet), ("mdns", self.mdns)):
            if driver is not None:
                out.append(driver.status)
            else:
                out.append(DiscoveryStatus(source, OFF, "not enabled"))
        out.append(DiscoveryStatus("exchange", OK, f"{count('exchange')} peer(s) "
                                                   "from trusted host announcements"))  # fmt: skip
        return out

    def start(self) -> None:
        """Make the discovery drivers the node asked for (their tasks run in its group)."""
        node = self.node
        _, port = split_address(node.address)
        if self.use_mdns:
            self.mdns = MdnsDiscovery(
                self.mdns_settings or MdnsSettings(), public_id=node.id, name=node.name,
                listen=node.address, version=protocol.VERSION,
                on_seen=self._mdns_seen, on_gone=self._mdns_gone,
            )  # fmt: skip
        if self.use_tailnet:
            self.tailnet = TailnetDiscovery(
                self.tailnet_settings or TailnetSettings(), port=port,
                on_peers=self._tailnet_peers,
            )  # fmt: skip

    def _mdns_seen(self, s: Sighting) -> None:
        """An mDNS instance: its addresses, with its claimed key (the table keeps a key
        we do not trust as ``unknown-key``, never exchanged with)."""
        table = self.node.table_or_none
        if table is not None:
            table.add(list(s.addresses), "mdns", key=s.key, name=s.name,
                      now=self.node.now_ms(), claim=True)  # fmt: skip

    def _mdns_gone(self, s: Sighting) -> None:
        table = self.node.table_or_none
        if table is None or self.mdns is None:
            return
        if s.key and any(o.key == s.key for o in self.mdns.seen):
            # Another instance claims the same key: one goodbye does not end the row,
            # but the addresses only the gone instance proposed go.
            row = table.by_key(s.key)
            if row is not None:
                kept = {a for o in self.mdns.seen if o.key == s.key for a in o.addresses}
                table.unpropose(row, [a for a in s.addresses if a not in kept])
            return
        row = (table.by_key(s.key) if s.key else None) or next(
            (r for a in s.addresses if (r := table.by_address(a)) is not None), None
        )
        if row is not None:
            table.withdraw(row, "mdns", self.node.now_ms())

    def _tailnet_peers(self, peers: list[TailnetPeer]) -> None:
        """The tailnet's current online peers: add them, withdraw those gone."""
        table = self.node.table_or_none
        if table is None:
            return
        now = self.node.now_ms()
        current = {p.node: p.addresses for p in peers}
        for node, addresses in self._tailnet_seen.items():
            if node not in current:
                row = next((r for a in addresses if (r := table.by_address(a)) is not None), None)
                if row is not None:
                    table.withdraw(row, "tailnet", now)
        for p in peers:
            table.add(list(p.addresses), "tailnet", name=p.host_name, now=now)
        self._tailnet_seen = current

    async def close(self) -> None:
        """mDNS goodbyes, while the node still answers; for good (its task must not
        register us again while the node closes)."""
        if self.mdns is not None:
            try:
                await self.mdns.close()
            except Exception:
                log.exception("stopping mDNS of %s failed", self.node.address_or_none)


def announced_addresses(rec: SignedRecord) -> list[str]:
    """``addrs`` x ``port`` of a host announcement; [] if malformed (any author may
    write anything; only trusted authors' announcements get here)."""
    f = rec.fields
    addrs, port = f.get("addrs"), f.get("port")
    if not isinstance(addrs, list) or not isinstance(port, int) or isinstance(port, bool):
        return []
    if not 0 < port < 65536:
        return []
    out = []
    for a in addrs[:8]:
        if isinstance(a, str) and a and a.isprintable() and " " not in a and len(a) <= 255:
            out.append(join_address(a.strip("[]"), port))
    return out


def advertised(host: str) -> list[str]:
    """The addresses to announce for a server bound to ``host``: itself, or for a
    wildcard bind this machine's reachable addresses (loopback if it has none). ``::``
    takes IPv4 too, as a dual-stack socket serves both."""
    if host not in ("0.0.0.0", "::", ""):
        return [host]
    found = machine_addresses(ipv6=host == "::")
    return found or (["::1"] if host == "::" else ["127.0.0.1"])
