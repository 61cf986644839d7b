"""``NodeConfig``: everything a ``Node`` is told, resolved once, by one rule (flags and
arguments over ``config.toml`` over defaults) wherever a node is made: ``gossip serve``
(its flags), a command's temporary node (``ops.offline``), an embedder's ``Node(...)``.

Pure: ``resolve`` takes a loaded ``config.Config``; reading the file is the caller's.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from ..config import (
    Config,
    EmbeddingsSettings,
    MdnsSettings,
    Profile,
    RecallSettings,
    TailnetSettings,
    check_address,
    view_config,
)

if TYPE_CHECKING:
    from crdt.views import ViewConfig


@dataclass(frozen=True)
class NodeConfig:
    """What one node runs on: its timings (``profile``) plus the options."""

    profile: Profile
    listen: str  # the peer server's host:port (port 0: any)
    peers: tuple[str, ...] = ()  # static peers: config.toml's, then the given ones
    name: str = ""  # this host's display name
    mdns: bool = False  # find peers on the LAN by mDNS
    tailnet: bool = False  # find peers with `tailscale status --json`
    mdns_settings: MdnsSettings = field(default_factory=MdnsSettings)
    tailnet_settings: TailnetSettings = field(default_factory=TailnetSettings)
    follow_vouches: bool = False  # trust the keys trusted hosts vouch for
    tls: bool = True  # TLS 1.3 pinned to host keys; False: the --insecure-plaintext opt-in
    # The addresses our host announcement names (None: the listen address, or this
    # machine's for a wildcard; () writes none, for a node that lives one command).
    advertise: tuple[str, ...] | None = None
    read_timeout: float = 2.0  # seconds a read waits for the replica before answering empty
    breaker_max_open: float | None = None  # [breakers] max_open (None: the views' default)
    recall: RecallSettings = field(default_factory=RecallSettings)  # [recall]: the file's
    embeddings: EmbeddingsSettings | None = None  # [embeddings]: the file's (None: embedded)

    @classmethod
    def resolve(
        cls,
        file: Config,
        *,
        listen: str | None = None,
        peers: Iterable[str] = (),
        profile: str | Profile | None = None,
        mdns: bool | None = None,
        tailnet: bool | None = None,
        tls: bool | None = None,
        name: str | None = None,
        follow_vouches: bool | None = None,
        advertise: Sequence[str] | None = None,
        read_timeout: float = 2.0,
        mdns_settings: MdnsSettings | None = None,
        tailnet_settings: TailnetSettings | None = None,
    ) -> NodeConfig:
        """Flags and arguments over ``file`` over defaults. mDNS is on by default for
        the ``lan`` profile, the tailnet for ``tailnet`` (``[mdns]``/``[tailnet]``
        ``enabled`` say otherwise); TLS always, unless ``tls=False`` or the file's
        ``insecure_plaintext = true``. A bad address or profile is a ``ConfigError``."""
        chosen = profile if profile is not None else file.profile
        timings = chosen if isinstance(chosen, Profile) else Profile.named(chosen)
        given = [check_address(p) for p in peers]
        return cls(
            profile=timings,
            listen=check_address(listen if listen is not None else file.listen),
            peers=tuple(dict.fromkeys([*file.peers, *given])),
            name=name if name is not None else file.name,
            mdns=_pick(mdns, file.mdns.enabled, timings.name == "lan"),
            tailnet=_pick(tailnet, file.tailnet.enabled, timings.name == "tailnet"),
            mdns_settings=mdns_settings or file.mdns,
            tailnet_settings=tailnet_settings or file.tailnet,
            follow_vouches=_pick(follow_vouches, file.follow_vouches, False),
            tls=_pick(tls, not file.insecure_plaintext, True),
            advertise=tuple(advertise) if advertise is not None else None,
            read_timeout=read_timeout,
            breaker_max_open=file.breaker_max_open,
            recall=file.recall,
            embeddings=file.embeddings,
        )

    def view_config(self) -> ViewConfig:
        """The reading policy of this node's views (``[recall]``, ``follow_vouches``,
        ``[breakers] max_open``)."""
        return view_config(self.recall, follow_vouches=self.follow_vouches,
                           breaker_max_open=self.breaker_max_open)


def _pick(given: bool | None, configured: bool | None, default: bool) -> bool:
    return given if given is not None else configured if configured is not None else default
