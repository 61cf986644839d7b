"""Tailnet discovery: the online peers of ``tailscale status --json``.

``parse_status`` is pure: the JSON of tailscale's ``ipnstate.Status`` in, the peers to
propose out. It is tolerant: it reads only the fields it needs (``BackendState``,
``CurrentTailnet.Name``, ``Peer`` keyed ``nodekey:<hex>`` with ``HostName``,
``DNSName``, ``TailscaleIPs``, ``Online``, ``Tags``), and a missing or mistyped field
skips that peer or that field, never the whole read. Only output that is not a JSON
object at all is a ``DiscoveryError``.

``TailnetDiscovery`` is the thin driver: every ``interval`` it runs the command (no
shell, with a timeout, in a process group of its own that is killed whole when the
command times out or the read is cancelled: a wrapper script's children go too) or
reads the file, and hands the current peers to the node. A
missing binary, a failing command or a backend that is not ``Running`` is a warning in
``status`` (logged once when it changes), never an exception or a tight retry loop.

What it trusts: nothing about keys. Tailscale tells us which machines are online and at
which addresses; whether such a machine is a peer is decided by the exchange's signed
answer against our keyring.
"""

from __future__ import annotations

import asyncio
import contextlib
import fnmatch
import ipaddress
import json
import logging
import os
import signal
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..config import TailnetSettings
from ..transport.http import join_address
from . import OK, WARNING, DiscoveryError, DiscoveryStatus

log = logging.getLogger(__name__)

COMMAND_TIMEOUT = 10.0  # seconds; `tailscale status` answers in milliseconds
REAP_TIMEOUT = 5.0  # seconds to wait for a killed command to be gone
MAX_OUTPUT = 32 * 1024 * 1024  # bytes; a tailnet of thousands of nodes is a few MB


@dataclass(frozen=True)
class TailnetPeer:
    """One online peer that passed the filters."""

    node: str  # its key in ``Peer`` ("nodekey:<hex>")
    host_name: str
    dns_name: str  # MagicDNS name without its trailing dot; "" if none
    addresses: tuple[str, ...]  # "ip:port", IPv4 first, then IPv6, then the DNS name


@dataclass(frozen=True)
class TailnetView:
    """What one read of the status says."""

    backend_state: str  # "Running", "Stopped", "NeedsLogin", ... ("" if absent)
    tailnet: str  # CurrentTailnet.Name ("" if absent)
    peers: tuple[TailnetPeer, ...]  # online, passing the filters (none unless Running)
    offline: int  # peers skipped because not Online
    filtered: int  # online peers skipped by the tag or host-name filter

    @property
    def running(self) -> bool:
        return self.backend_state == "Running"


def parse_status(
    raw: bytes | str,
    *,
    port: int,
    tags: Iterable[str] = (),
    hostname: str | None = None,
) -> TailnetView:
    """Parse ``tailscale status --json`` output into the peers to propose at ``port``.

    ``tags``: keep only peers carrying one of them (untagged nodes have no ``Tags``).
    ``hostname``: keep only peers whose ``HostName`` matches this glob (case-blind)."""
    try:
        data = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as e:
        raise DiscoveryError(f"tailscale status is not JSON: {e}") from None
    if not isinstance(data, dict):
        raise DiscoveryError("tailscale status is not a JSON object")
    state = _str(data.get("BackendState"))
    tailnet = _str(_dict(data.get("CurrentTailnet")).get("Name"))
    wanted_tags = set(tags)
    found: list[TailnetPeer] = []
    offline = filtered = 0
    peers = _dict(data.get("Peer"))
    for node, peer in sorted(peers.items()):
        if not isinstance(peer, dict):
            continue
        if peer.get("Online") is not True:
            offline += 1
            continue
        host = _str(peer.get("HostName"))
        peer_tags = {t for t in _list(peer.get("Tags")) if isinstance(t, str)}
        if (wanted_tags and not wanted_tags & peer_tags) or (
            hostname is not None and not fnmatch.fnmatch(host.lower(), hostname.lower())
        ):
            filtered += 1
            continue
        dns = _str(peer.get("DNSName")).rstrip(".")
        addresses = _addresses(_list(peer.get("TailscaleIPs")), dns, port)
        if addresses:
            found.append(TailnetPeer(str(node), host, dns, addresses))
    return TailnetView(
        backend_state=state,
        tailnet=tailnet,
        peers=tuple(found) if state == "Running" else (),
        offline=offline,
        filtered=filtered,
    )


def _addresses(ips: list[Any], dns: str, port: int) -> tuple[str, ...]:
    v4: list[str] = []
    v6: list[str] = []
    for ip in ips:
        if not isinstance(ip, str):  # ip_address(7) would be 0.0.0.7
            continue
        with contextlib.suppress(ValueError):
            parsed = ipaddress.ip_address(ip)
            if not parsed.is_unspecified and not parsed.is_multicast:
                (v4 if parsed.version == 4 else v6).append(join_address(str(parsed), port))
    name = [join_address(dns, port)] if dns and dns.isprintable() and " " not in dns else []
    return tuple(dict.fromkeys([*v4, *v6, *name]))


def _str(value: object) -> str:
    return value if isinstance(value, str) else ""


def _dict(value: object) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _list(value: object) -> list[Any]:
    return value if isinstance(value, list) else []


class TailnetDiscovery:
    """Re-reads the tailnet every ``settings.interval`` seconds and calls
    ``on_peers(peers)`` with the full current list after each successful read of a
    running tailnet (the node adds the new ones and withdraws those gone)."""

    def __init__(
        self,
        settings: TailnetSettings,
        *,
        port: int,
        on_peers: Callable[[list[TailnetPeer]], None],
        command_timeout: float = COMMAND_TIMEOUT,
    ) -> None:
        self.settings = settings
        self.command_timeout = command_timeout
        self.port = settings.port or port
        self.on_peers = on_peers
        self.status = DiscoveryStatus("tailnet", OK, "not read yet")
        self.view: TailnetView | None = None

    async def run(self) -> None:
        """Read, then wait ``interval``, forever (until cancelled)."""
        while True:
            try:
                await self.read_once()
            except Exception as e:  # a bug here must not stop replication
                log.exception("tailnet discovery failed")
                self._set(WARNING, f"failed: {type(e).__name__}: {e}")
            await asyncio.sleep(self.settings.interval)

    async def read_once(self) -> TailnetView | None:
        """One read; never raises but CancelledError."""
        s = self.settings
        try:
            raw = await (self._read_file(s.file) if s.file else self._run_command(s.command))
            view = parse_status(raw, port=self.port, tags=s.tags, hostname=s.hostname)
        except DiscoveryError as e:
            self._set(WARNING, str(e))
            return None
        self.view = view
        if not view.running:
            state = view.backend_state or "missing"
            self._set(WARNING, f"tailscale is not running (BackendState {state!r}); no peers")
            return view
        self.on_peers(list(view.peers))
        skipped = [f"{view.offline} offline"] if view.offline else []
        skipped += [f"{view.filtered} filtered out"] if view.filtered else []
        self._set(OK, f"{len(view.peers)} peer(s) online in tailnet {view.tailnet or '?'}"
                      + (f" ({', '.join(skipped)})" if skipped else ""))  # fmt: skip
        return view

    async def _read_file(self, path: str) -> bytes:
        try:
            return await asyncio.to_thread(_read_at_most, Path(path).expanduser(), MAX_OUTPUT)
        except OSError as e:
            raise DiscoveryError(f"cannot read tailscale status file {path}: {e}") from None

    async def _run_command(self, command: tuple[str, ...]) -> bytes:
        shown = " ".join(command)
        try:
            proc = await asyncio.create_subprocess_exec(
                *command,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                start_new_session=True,  # its own process group: killed whole below
            )
        except FileNotFoundError:
            raise DiscoveryError(f"{command[0]!r} not found: is tailscale installed? "
                                 f"(set [tailnet] command or file)") from None  # fmt: skip
        except OSError as e:
            raise DiscoveryError(f"cannot run {shown!r}: {e}") from None
        finished = False
        try:
            out, err = await asyncio.wait_for(proc.communicate(), self.command_timeout)
            finished = True
        except TimeoutError:
            raise DiscoveryError(
                f"{shown!r} gave no answer within {self.command_timeout:g} s"
            ) from None
        finally:
            if not finished:
                # A wrapper's children (`sh -c '...'`) hold the pipes open after the
                # wrapper dies, and would keep proc.wait() waiting: kill the whole group.
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(proc.pid, signal.SIGKILL)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(proc.wait(), REAP_TIMEOUT)
        if len(out) > MAX_OUTPUT:
            raise DiscoveryError(f"{shown!r} printed more than {MAX_OUTPUT} bytes")
        if proc.returncode != 0 and not out.strip().startswith(b"{"):
            first = err.decode("utf-8", "replace").strip().splitlines()[:1]
            raise DiscoveryError(f"{shown!r} failed (exit {proc.returncode})"
                                 + (f": {first[0][:200]}" if first else ""))  # fmt: skip
        return out

    def _set(self, state: str, detail: str) -> None:
        if (state, detail) != (self.status.state, self.status.detail):
            if state == WARNING:
                log.warning("tailnet discovery: %s", detail)
            else:
                log.info("tailnet discovery: %s", detail)
        self.status = DiscoveryStatus("tailnet", state, detail)


def _read_at_most(path: Path, limit: int) -> bytes:
    with path.open("rb") as f:
        data = f.read(limit + 1)
    if len(data) > limit:
        raise OSError(f"larger than {limit} bytes")
    return data


__all__ = ["TailnetDiscovery", "TailnetPeer", "TailnetView", "parse_status"]
