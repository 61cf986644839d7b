"""This machine's addresses (of its network namespace), read fresh on every call: what a
wildcard listener announces in the document and advertises over mDNS."""

from __future__ import annotations

import contextlib
import ipaddress
from collections.abc import Iterable

import ifaddr


def machine_addresses(interfaces: Iterable[str] = (), *, ipv6: bool = False) -> list[str]:
    """Addresses of the named interfaces (an entry may also be an address itself), or
    with none named every address that another host could reach: not loopback, not
    link-local. IPv4 only unless ``ipv6``. In interface order, without duplicates."""
    wanted = set(interfaces)
    found: list[str] = []
    with contextlib.suppress(OSError):
        for adapter in ifaddr.get_adapters():
            for ip in adapter.ips:
                text = ip.ip if isinstance(ip.ip, str) else ip.ip[0]  # v6: (addr, flow, scope)
                if not isinstance(ip.ip, str) and not ipv6:
                    continue
                try:
                    addr = ipaddress.ip_address(text)
                except ValueError:
                    continue
                if wanted:
                    if adapter.name in wanted or text in wanted:
                        found.append(text)
                elif not (addr.is_loopback or addr.is_link_local or addr.is_unspecified):
                    found.append(text)
    return list(dict.fromkeys(found))
