"""``Profile``: how a node replicates, one set of timings that belong together, and the
named profiles (``local``, ``lan``, ``tailnet``) that ``config.toml``, ``--profile`` and
``Node(profile=...)`` choose from (like memberlist's LAN/WAN/Local configs). Values only:
nothing here reads a file or a clock.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from .errors import ConfigError


@dataclass(frozen=True)
class Profile:
    """How a node replicates: one set of timings that belong together.

    ``lan()`` is the base; ``local()`` and ``tailnet()`` start from it and override a
    few fields. Each field says what it trades off."""

    name: str
    # Anti-entropy period, seconds: shorter repairs a missed push sooner, at the cost of
    # one (small, when in sync) request per fanout peer per period.
    interval: float
    # Peers per round and per eager push: more spreads a write in fewer rounds (log base
    # fanout+1 of N) but multiplies requests; 2-3 is the usual epidemic sweet spot.
    fanout: int
    # Seconds a whole request may take: long enough for a large delta on a slow link,
    # short enough that a dead peer does not hold a round's slot.
    request_timeout: float
    # First retry delay after a failure, seconds: small retries a blip soon, large spares
    # a peer that is restarting.
    backoff_base: float
    # Longest retry delay, seconds: how long a peer that comes back may go unnoticed
    # (anti-entropy and its own pushes still reach us meanwhile).
    backoff_cap: float
    # A request body over this gets 413: bounds the memory one peer can make us hold;
    # larger deltas arrive through several exchanges (pulls are not limited by it).
    max_body_bytes: int
    # Push a fresh update to fanout peers at once (and pass on what a push taught us):
    # a write crosses the mesh in milliseconds instead of rounds, for more requests.
    eager_push: bool
    # Seconds a signed request stays valid (clock skew allowed): wider tolerates worse
    # clocks, narrower keeps the replay window and the nonce cache small.
    auth_window: float
    # Seconds between re-reads of this machine's addresses (a wildcard listen announces
    # them): shorter tells peers of a DHCP or Wi-Fi change sooner, for a few syscalls.
    readdress: float

    @classmethod
    def lan(cls) -> Profile:
        """Hosts on one LAN: sub-millisecond links, clocks kept by NTP."""
        return cls(
            name="lan",
            interval=5.0,  # a missed push is repaired within seconds; idle cost negligible
            fanout=3,  # 100 hosts within ~4 rounds
            request_timeout=10.0,  # a LAN answers in ms; 10 s covers a multi-MB catch-up
            backoff_base=1.0,
            backoff_cap=60.0,  # a restarted host is back in the mesh within a minute
            max_body_bytes=16 * 1024 * 1024,
            eager_push=True,
            auth_window=60.0,
            readdress=30.0,
        )

    @classmethod
    def local(cls) -> Profile:
        """Many nodes on one machine (tests, demos): fast rounds, quick recovery."""
        return replace(
            cls.lan(),
            name="local",
            interval=0.2,  # convergence in a fraction of a second, at CPU cost
            fanout=2,
            request_timeout=5.0,
            backoff_base=0.05,
            backoff_cap=1.0,  # a restarted node is retried within a second
            readdress=2.0,
        )

    @classmethod
    def tailnet(cls) -> Profile:
        """Hosts across the internet over a tailnet: tens of ms, links that come and go."""
        return replace(
            cls.lan(),
            name="tailnet",
            interval=15.0,  # fewer requests over metered or mobile links
            fanout=2,
            request_timeout=30.0,  # relayed (DERP) paths are slow
            backoff_base=2.0,
            backoff_cap=300.0,  # laptops sleep; do not hammer them
            max_body_bytes=8 * 1024 * 1024,
            auth_window=120.0,  # laptop clocks drift further after sleep
        )

    @classmethod
    def named(cls, name: str) -> Profile:
        """``local`` | ``lan`` | ``tailnet``; ConfigError for anything else."""
        if name not in PROFILES:
            raise ConfigError(f"unknown profile {name!r} (known: {', '.join(PROFILES)})")
        return getattr(cls, name)()

    def with_(self, **changes: Any) -> Profile:
        """A copy with some fields changed (e.g. from command-line flags)."""
        return replace(self, **changes)


PROFILES = ("local", "lan", "tailnet")
