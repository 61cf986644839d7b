"""mDNS discovery on the LAN: advertise ``_sm-gossip._tcp.local.`` and browse for others.

Our service instance carries the port in its SRV record and, in TXT, ``id`` (the full
43-character public id), ``v`` (protocol version) and ``name`` (display name). Other
instances become ``Sighting``s handed to the node. A host stays seen for as long as it
advertises: a goodbye (TTL 0, which anyone on the LAN can forge, and which a host that
restarts its mDNS sends just before it registers again) only calls ``on_gone`` once a
fresh query (sent at once) has had ``GONE_CONFIRM_S`` seconds without an answer from
the instance; and at every rescan an instance in zeroconf's cache that we hold no
sighting of (a resolve that timed out, a lost event) is resolved again. Shutdown
unregisters our instance, which sends goodbyes.

What it trusts: nothing. A TXT ``id`` is a *claim*, unproven: the node puts it on the
peer row so that a human can ``gossip trust add`` it, but a key outside the keyring is
never exchanged with, and for a key inside it the exchange's signed answer
(``expected_key``) proves the claim or fails; the addresses it gives are claims too,
never dialled before the peer's proven ones. Anyone on the LAN can advertise anything,
as many instances as it likes: we hold at most ``MAX_SEEN`` of them and resolve at most
``MAX_RESOLVING`` at a time.

``parse_service`` is pure (TXT and addresses in, ``Sighting`` out); ``MdnsDiscovery`` is
the thin driver over ``zeroconf.asyncio``. IPv4 only: link-local IPv6 addresses need a
scope that an HTTP URL cannot carry portably.
"""

from __future__ import annotations

import asyncio
import hashlib
import ipaddress
import logging
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

from zeroconf import DNSOutgoing, DNSQuestion, IPVersion, ServiceStateChange, Zeroconf, const
from zeroconf.asyncio import AsyncServiceBrowser, AsyncServiceInfo, AsyncZeroconf

from ..config import MdnsSettings
from ..transport.http import join_address, split_address
from . import OFF, OK, WARNING, DiscoveryError, DiscoveryStatus
from .addresses import machine_addresses

log = logging.getLogger(__name__)

SERVICE_TYPE = "_sm-gossip._tcp.local."
RESOLVE_TIMEOUT_MS = 3000  # an answer on a LAN takes milliseconds; a lost packet is re-asked
# Seconds between attempts to start while no interface is usable, and between checks
# that the interfaces' addresses are unchanged (DHCP, Wi-Fi): a change restarts mDNS.
RESCAN = 30.0
MAX_ADDRESSES = 8
# Anyone on the LAN can advertise thousands of instances. We keep at most MAX_SEEN of
# them (the least recently resolved go first), queue at most MAX_SEEN names to resolve
# (the oldest go first), and resolve them with at most MAX_RESOLVING tasks.
MAX_SEEN = 256
MAX_RESOLVING = 32
# Seconds a goodbye waits for the instance to answer a fresh query before it counts: a
# LAN answers in milliseconds; a forged goodbye, or a restart's, is answered.
GONE_CONFIRM_S = 2.0
_PUBLIC_ID = re.compile(r"[A-Za-z0-9_-]{43}")


def fingerprint(public_id: str) -> str:
    """A short, DNS-safe stand-in for a public id (instance and host names)."""
    return hashlib.sha256(public_id.encode()).hexdigest()[:16]


def instance_name(public_id: str) -> str:
    return f"sm-gossip-{fingerprint(public_id)}.{SERVICE_TYPE}"


def txt_properties(public_id: str, name: str, version: int) -> dict[str, str]:
    """Our TXT record: every value well under the 255-byte limit."""
    return {"id": public_id, "v": str(version), "name": name[:64]}


@dataclass(frozen=True)
class Sighting:
    """Another instance as its records describe it."""

    service: str  # the instance name
    key: str | None  # the id its TXT claims (unproven), None if absent or malformed
    name: str  # the display name its TXT claims
    addresses: tuple[str, ...]  # "ip:port"


def parse_service(
    service: str,
    properties: Mapping[str, str | None],
    ips: Iterable[str],
    port: int | None,
    *,
    version: int,
) -> Sighting | None:
    """A ``Sighting`` from what an instance's records say, or None if it is not a peer
    we can talk to (another protocol version, no port, no usable address)."""
    if not port or not 0 < port < 65536:
        return None
    if properties.get("v") != str(version):
        return None
    claimed = properties.get("id") or ""
    key = claimed if _PUBLIC_ID.fullmatch(claimed) else None
    name = properties.get("name") or ""
    name = name[:64] if name.isprintable() else ""
    addresses: list[str] = []
    for ip in ips:
        try:
            parsed = ipaddress.ip_address(ip.split("%")[0])
        except ValueError:
            continue
        if parsed.is_loopback or parsed.is_link_local or parsed.is_unspecified:
            continue
        addresses.append(join_address(str(parsed), port))
    addresses = list(dict.fromkeys(addresses))[:MAX_ADDRESSES]
    if not addresses:
        return None
    return Sighting(service, key, name, tuple(addresses))


def interface_addresses(interfaces: Iterable[str] = ()) -> list[str]:
    """The IPv4 addresses to use: those of the named interfaces (or the addresses given
    as such); with none named, every non-loopback IPv4 address of this host."""
    return machine_addresses(interfaces)


def _advertised(host: str, interfaces: list[str]) -> tuple[list[str], str]:
    """The addresses to advertise for a server bound to ``host``, and why there are
    none if there are none (then we only browse: we can still dial the others)."""
    if host in ("0.0.0.0", "", "::"):
        return interfaces, ""
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:  # a host name: its interfaces' addresses
        return interfaces, ""
    if ip.is_loopback:
        return [], f"listening on {host} (loopback): other hosts cannot reach us"
    if ip.version != 4:
        return [], f"listening on {host}: mDNS here advertises IPv4 only"
    return [host], ""


class MdnsDiscovery:
    """Advertises this node and browses for others while ``run`` runs. Callbacks are
    called on the event loop, never concurrently."""

    def __init__(
        self,
        settings: MdnsSettings,
        *,
        public_id: str,
        name: str,
        listen: str,
        version: int,
        on_seen: Callable[[Sighting], None],
        on_gone: Callable[[Sighting], None],
    ) -> None:
        self.settings = settings
        self.public_id = public_id
        self.name = name
        self.listen = listen
        self.version = version
        self.on_seen = on_seen
        self.on_gone = on_gone
        self.status = DiscoveryStatus("mdns", OK, "starting")
        self.service = instance_name(public_id)
        self._zc: AsyncZeroconf | None = None
        self._browser: AsyncServiceBrowser | None = None
        self._resolving: set[asyncio.Task[None]] = set()
        self._pending: dict[str, None] = {}  # names to resolve, oldest first
        self._seen: dict[str, Sighting] = {}
        self._leaving: dict[str, asyncio.TimerHandle] = {}  # goodbyes being confirmed
        self._asked_at = 0.0  # loop time of our last query after a goodbye
        self._advertising = ""
        self._interfaces: list[str] = []
        self._problem = ""  # why we cannot advertise, if we cannot
        self._closed = False  # by close(): never start again

    @property
    def seen(self) -> list[Sighting]:
        return list(self._seen.values())

    async def run(self, rescan: float = RESCAN) -> None:
        """Start, and every ``rescan`` seconds restart if the interfaces' addresses
        changed (or retry if it could not start); stop (goodbyes) when cancelled or
        closed."""
        try:
            while not self._closed:
                if self._zc is None or interface_addresses(self.settings.interfaces) != (
                    self._interfaces
                ):
                    await self.stop()
                    if self._closed:  # closed while the old instance said goodbye
                        break
                    try:
                        await self.start()
                    except DiscoveryError as e:
                        self._set(WARNING, str(e))
                    except Exception as e:  # zeroconf on an odd network: report, never crash
                        log.exception("mDNS discovery failed to start")
                        self._set(WARNING, f"cannot start: {type(e).__name__}: {e}")
                        await self.stop()
                else:
                    self._reconcile()
                await asyncio.sleep(rescan)
        finally:
            await asyncio.shield(self.stop())

    async def close(self) -> None:
        """Stop for good: goodbyes now, and ``run`` never starts again (it returns)."""
        self._closed = True
        await self.stop()

    async def start(self) -> None:
        """Open the multicast sockets, register our instance, start browsing."""
        if self._closed:
            raise DiscoveryError("mDNS discovery is closed")
        interfaces = interface_addresses(self.settings.interfaces)
        log.debug("mDNS: starting on %s", ", ".join(interfaces) or "no interface")
        self._interfaces = interfaces
        if not interfaces:
            which = ", ".join(self.settings.interfaces) or "any interface"
            raise DiscoveryError(f"no IPv4 address on {which} to advertise on")
        host, port = split_address(self.listen)
        advertised, self._problem = _advertised(host, interfaces)
        try:
            zc = AsyncZeroconf(interfaces=interfaces, ip_version=IPVersion.V4Only)
        except OSError as e:
            raise DiscoveryError(f"cannot open mDNS sockets on {interfaces}: {e}") from None
        self._zc = zc
        try:
            if advertised:
                info = AsyncServiceInfo(
                    SERVICE_TYPE,
                    self.service,
                    port=port,
                    properties=txt_properties(self.public_id, self.name, self.version),
                    server=f"sm-gossip-{fingerprint(self.public_id)}.local.",
                    parsed_addresses=advertised,
                )
                # A restarted node may still be in others' caches: take its name back.
                await zc.async_register_service(info, allow_name_change=False,
                                                cooperating_responders=True)  # fmt: skip
        except Exception as e:
            await self.stop(quiet=True)
            raise DiscoveryError(f"cannot register {self.service}: {e}") from None
        if self._zc is not zc:  # stopped while registering (the node is closing)
            return
        self._browser = AsyncServiceBrowser(
            zc.zeroconf, SERVICE_TYPE, handlers=[self._on_state_change]
        )
        self._advertising = (
            f"advertising {', '.join(advertised)} port {port} on {', '.join(interfaces)}"
            if advertised
            else f"browsing only on {', '.join(interfaces)}"
        )
        self._counted()

    async def stop(self, *, quiet: bool = False) -> None:
        """Stop browsing, send goodbyes, close the sockets. Idempotent."""
        self._pending.clear()
        for timer in self._leaving.values():
            timer.cancel()
        self._leaving.clear()
        for task in list(self._resolving):
            task.cancel()
        if self._resolving:
            await asyncio.wait(self._resolving)
        browser, self._browser = self._browser, None
        if browser is not None:
            await browser.async_cancel()
        zc, self._zc = self._zc, None
        if zc is not None:
            try:
                await zc.async_close()  # unregisters our instance: goodbyes (TTL 0)
            except Exception:
                log.exception("closing mDNS failed")
            if not quiet:
                self._set(OFF, "stopped")

    def _on_state_change(
        self,
        zeroconf: Zeroconf,
        service_type: str,
        name: str,
        state_change: ServiceStateChange,
    ) -> None:
        if name == self.service or service_type != SERVICE_TYPE:
            return
        if state_change is ServiceStateChange.Removed:
            self._pending.pop(name, None)
            if name in self._seen and name not in self._leaving:
                self._ask_again()
                self._leaving[name] = asyncio.get_running_loop().call_later(
                    GONE_CONFIRM_S, self._gone, name
                )
            return
        if self._zc is None:
            return
        self._queue(name)

    def _queue(self, name: str) -> None:
        """Resolve ``name`` (again): to the end of the queue, a resolver if one is free."""
        self._pending.pop(name, None)
        self._pending[name] = None
        while len(self._pending) > MAX_SEEN:
            del self._pending[next(iter(self._pending))]
        if len(self._resolving) < MAX_RESOLVING:
            task = asyncio.get_running_loop().create_task(self._resolve_pending(), name="mdns")
            self._resolving.add(task)
            task.add_done_callback(self._resolving.discard)

    def _ask_again(self) -> None:
        """After a goodbye: ask every instance of our type to answer now (at most once a
        second), so that one still advertising is seen again before ``GONE_CONFIRM_S``."""
        zc = self._zc
        loop = asyncio.get_running_loop()
        if zc is None or loop.time() - self._asked_at < 1.0:
            return
        self._asked_at = loop.time()
        out = DNSOutgoing(const._FLAGS_QR_QUERY)
        out.add_question(DNSQuestion(SERVICE_TYPE, const._TYPE_PTR, const._CLASS_IN))
        try:
            zc.zeroconf.async_send(out)
        except Exception as e:  # a closing Zeroconf
            log.debug("mDNS: query after a goodbye failed: %s", e)

    def _gone(self, name: str) -> None:
        """A goodbye that no answer contradicted: the instance is gone."""
        self._leaving.pop(name, None)
        gone = self._seen.pop(name, None)
        if gone is not None:
            log.info("mDNS: %s said goodbye", gone.name or name)
            self.on_gone(gone)
            self._counted()

    def _reconcile(self) -> None:
        """At a rescan: every instance of our type in zeroconf's cache that we hold no
        sighting of (its resolve timed out, an event was lost) is resolved again; the
        cache, not the events, says who advertises."""
        zc = self._zc
        if zc is None:
            return
        cache = zc.zeroconf.cache
        now = asyncio.get_running_loop().time() * 1000  # zeroconf's clock: loop ms
        for record in cache.async_all_by_details(SERVICE_TYPE, const._TYPE_PTR, const._CLASS_IN):
            name = getattr(record, "alias", "")
            if (name and name != self.service and not record.is_expired(now)
                    and (name not in self._seen or name in self._leaving)
                    and name not in self._pending):  # fmt: skip
                self._queue(name)

    async def _resolve_pending(self) -> None:
        while self._pending and self._zc is not None:
            name = next(iter(self._pending))
            del self._pending[name]
            await self._resolve(name)

    async def _resolve(self, name: str) -> None:
        zc = self._zc
        if zc is None:
            return
        info = AsyncServiceInfo(SERVICE_TYPE, name)
        try:
            if not await info.async_request(zc.zeroconf, RESOLVE_TIMEOUT_MS):
                log.debug("mDNS: %s did not resolve", name)
                return
        except Exception as e:  # a closing Zeroconf, a malformed record
            log.debug("mDNS: resolving %s failed: %s", name, e)
            return
        sighting = parse_service(
            name,
            info.decoded_properties,
            info.parsed_addresses(IPVersion.V4Only),
            info.port,
            version=self.version,
        )
        if sighting is None or sighting.key == self.public_id:
            return
        leaving = self._leaving.pop(name, None)
        if leaving is not None:  # it answered: the goodbye was forged, or a restart's
            leaving.cancel()
        self._seen.pop(name, None)  # to the end: the most recently resolved
        self._seen[name] = sighting
        while len(self._seen) > MAX_SEEN:
            del self._seen[next(iter(self._seen))]
        self.on_seen(sighting)
        self._counted()

    def _counted(self) -> None:
        if self._zc is not None:
            detail = f"{self._advertising}; {len(self._seen)} host(s) seen"
            if self._problem:
                self._set(WARNING, f"{self._problem}; {detail}")
            else:
                self._set(OK, detail)

    def _set(self, state: str, detail: str) -> None:
        if state == WARNING and detail != self.status.detail:
            log.warning("mDNS discovery: %s", detail)
        self.status = DiscoveryStatus("mdns", state, detail)


__all__ = [
    "SERVICE_TYPE",
    "MdnsDiscovery",
    "Sighting",
    "instance_name",
    "interface_addresses",
    "parse_service",
    "txt_properties",
]
