"""Discovery: where peers might be. Each source only *proposes* addresses (and, for
mDNS, an unproven claim of a key); a key is admitted only by ``gossip trust add``
(DESIGN.md invariant 9), and an exchange's signed answer proves who answered.

- ``mdns``: advertise ``_sm-gossip._tcp.local.`` and browse for others on the LAN;
- ``tailnet``: the online peers of ``tailscale status --json``;
- static ``peers`` and ``exchange`` (host announcements in the document) live in the
  node itself: they need no driver.

Each driver parses what it hears with a pure function and hands proposals to the node
through callbacks; ``DiscoveryStatus`` is what it says about its own health.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import DiscoveryError

OK = "ok"
WARNING = "warning"
OFF = "off"


@dataclass(frozen=True)
class DiscoveryStatus:
    """The health of one source, for ``gossip status``: ``state`` is ``ok``, ``warning``
    (it runs but cannot do its job, ``detail`` says why) or ``off`` (not enabled)."""

    source: str  # "static" | "tailnet" | "mdns" | "exchange"
    state: str
    detail: str

    def to_json(self) -> dict[str, str]:
        return {"source": self.source, "state": self.state, "detail": self.detail}


__all__ = ["OFF", "OK", "WARNING", "DiscoveryError", "DiscoveryStatus"]
