"""The data dir's config file, ``<home>/config.toml``, where the data dir is, and the
network profiles.

The file holds the host's display ``name`` (default: the hostname), the network
``profile`` (``local``, ``lan`` or ``tailnet``), the ``listen`` address, the static
``peers``, ``insecure_plaintext`` (the peer port without TLS: an explicit opt-in, for a
tailnet whose WireGuard already encrypts), the ``[mdns]`` and ``[tailnet]``
discovery sections (docs/discovery.md), ``[agents] listen`` (docs/agents.md) and
``[recall]`` (the share cap and time bound of reading, docs/reading.md), ``[embeddings]``
(an OpenAI-compatible embeddings endpoint for the semantic lane, docs/reading.md);
command-line flags override it. A ``Profile`` sets the timing of replication
together (like memberlist's LAN/WAN/Local configs): ``lan`` is the base, the others
override a few fields. This module reads and writes the file; it never touches the key
or the store.

A file that is not TOML, has a key we do not know, or a value of the wrong type is
refused with a message naming the file: a typo must not be silently ignored.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import socket
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from crdt.files import create_whole
from crdt.views import ViewConfig

from .errors import ConfigError
from .profiles import PROFILES, Profile

CONFIG_FILE = "config.toml"
MAX_NAME_CHARS = 64
DEFAULT_PORT = 7471
DEFAULT_LISTEN = f"0.0.0.0:{DEFAULT_PORT}"
# The agents' front door (docs/agents.md): Singularity Memory's default address, so its
# Hermes and OpenClaw adapters find it unchanged; loopback only unless configured.
DEFAULT_AGENTS_LISTEN = "127.0.0.1:8888"



def default_home() -> Path:
    """``$GOSSIP_HOME``, else the platform's per-user data dir."""
    if env := os.environ.get("GOSSIP_HOME"):
        return Path(env).expanduser()
    if sys.platform == "darwin":
        return Path.home() / "Library" / "Application Support" / "sm-gossip"
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "sm-gossip"



TAILSCALE_STATUS = ("tailscale", "status", "--json")


@dataclass(frozen=True)
class MdnsSettings:
    """``[mdns]``: whether and where to advertise and browse."""

    # None: on with the ``lan`` profile (the zero-config LAN default), off otherwise.
    enabled: bool | None = None
    # Interface names ("eth0") or IPv4 addresses; empty: every interface with an IPv4
    # address that is not loopback.
    interfaces: tuple[str, ...] = ()


@dataclass(frozen=True)
class TailnetSettings:
    """``[tailnet]``: how to read ``tailscale status --json`` and which peers to take."""

    enabled: bool | None = None  # None: on with the ``tailnet`` profile, off otherwise
    command: tuple[str, ...] = TAILSCALE_STATUS  # run with a timeout, no shell
    file: str | None = None  # read this file instead of running ``command``
    tags: tuple[str, ...] = ()  # take only peers with one of these tags ("tag:gossip")
    hostname: str | None = None  # take only peers whose HostName matches this glob
    port: int | None = None  # the peers' gossip port; default: the one we listen on
    interval: float = 30.0  # seconds between reads: peers come and go slowly


@dataclass(frozen=True)
class RecallSettings:
    """``[recall]``: how readers here cap authors and bound their times (docs/reading.md)."""

    # The most of one recall's results one author other than this host may hold
    # (``ViewConfig.author_share``'s default).
    author_share: float = 0.5
    # Seconds before its first arrival here a record may place itself, for ranking
    # (``ViewConfig.backdate_skew_ms``'s default: a day).
    backdate_skew: float = 86_400.0


@dataclass(frozen=True)
class EmbeddingsSettings:
    """``[embeddings]``: an OpenAI-compatible endpoint for the semantic lane's vectors
    (docs/reading.md; ``gossip.node.remote_embedder``). The key is never here: ``key_env``
    names the environment variable that holds it."""

    url: str  # http(s)://host[:port]/v1: vectors are POSTed for at {url}/embeddings
    model: str
    key_env: str | None = None  # None: the endpoint takes no key (a local server)
    dim: int | None = None  # asked of the endpoint (``dimensions``); None: what it answers


@dataclass(frozen=True)
class Config:
    name: str
    profile: str = "lan"
    listen: str = DEFAULT_LISTEN
    peers: tuple[str, ...] = ()
    mdns: MdnsSettings = MdnsSettings()
    tailnet: TailnetSettings = TailnetSettings()
    # [trust] follow_vouches: trust the keys that trusted hosts vouch for (invitations,
    # `gossip trust invite`). Off: only a human adds a key here (docs/threat-model.md).
    follow_vouches: bool = False
    # The peer port without TLS (docs/threat-model.md): only where something else
    # already encrypts the link (a tailnet's WireGuard); every peer must agree.
    insecure_plaintext: bool = False
    # [agents] listen: the agents' HTTP front door (Singularity Memory's routes and MCP),
    # "" for none. Another address than loopback exposes memories to the network.
    agents_listen: str = DEFAULT_AGENTS_LISTEN
    # [breakers] max_open: seconds an observation may hold a breaker open after it was
    # signed (crdt.views.ViewConfig.breaker_max_open_ms); None: the views' default.
    breaker_max_open: float | None = None
    recall: RecallSettings = RecallSettings()
    embeddings: EmbeddingsSettings | None = None  # [embeddings]; None: the embedded model

    @classmethod
    def default(cls) -> Config:
        return cls(name=check_name(socket.gethostname() or "host"))

    def to_toml(self) -> str:
        # A JSON string is a valid TOML basic string (same escapes, \u ones included).
        lines = [
            "# sm-gossip host settings (see docs/cli.md)",
            f"name = {json.dumps(self.name, ensure_ascii=False)}",
            "# network profile: local | lan | tailnet",
            f"{'' if self.profile != 'lan' else '# '}profile = {json.dumps(self.profile)}",
            "# address the peer server listens on",
            f"{'' if self.listen != DEFAULT_LISTEN else '# '}listen = {json.dumps(self.listen)}",
            "# peers to reach without discovery, as host:port",
            f"{'' if self.peers else '# '}peers = {json.dumps(list(self.peers))}",
            "# the peer port without TLS (only inside an encrypted tailnet; docs/threat-model.md)",
            f"{'' if self.insecure_plaintext else '# '}insecure_plaintext = "
            f"{_toml_bool(self.insecure_plaintext) if self.insecure_plaintext else 'true'}",
        ]
        m = self.mdns
        if m != MdnsSettings():
            lines += ["", "[mdns]", f"interfaces = {json.dumps(list(m.interfaces))}"]
            lines += [f"enabled = {_toml_bool(m.enabled)}"] if m.enabled is not None else []
        else:
            lines += ["", "# [mdns]  (docs/discovery.md; on with profile lan)"]
            lines += ['# interfaces = ["eth0"]']
        t = self.tailnet
        if t != TailnetSettings():
            lines += ["", "[tailnet]", f"command = {json.dumps(list(t.command))}"]
            lines += [f"enabled = {_toml_bool(t.enabled)}"] if t.enabled is not None else []
            lines += [f"file = {json.dumps(t.file)}"] if t.file is not None else []
            lines += [f"tags = {json.dumps(list(t.tags))}"]
            lines += [f"hostname = {json.dumps(t.hostname)}"] if t.hostname is not None else []
            lines += [f"port = {t.port}"] if t.port is not None else []
            lines += [f"interval = {json.dumps(t.interval)}"]
        else:
            lines += ["", "# [tailnet]  (docs/discovery.md; on with profile tailnet)"]
            lines += ['# tags = ["tag:gossip"]']
        if self.agents_listen != DEFAULT_AGENTS_LISTEN:
            lines += ["", "[agents]", f"listen = {json.dumps(self.agents_listen)}"]
        else:
            lines += ["", "# [agents]  (docs/agents.md: the agents' HTTP and MCP; \"\" for off)"]
            lines += [f"# listen = {json.dumps(DEFAULT_AGENTS_LISTEN)}"]
        if self.breaker_max_open is not None:
            lines += ["", "[breakers]", f"max_open = {json.dumps(self.breaker_max_open)}"]
        r = self.recall
        if r != RecallSettings():
            lines += ["", "[recall]", f"author_share = {json.dumps(r.author_share)}",
                      f"backdate_skew = {json.dumps(r.backdate_skew)}"]  # fmt: skip
        else:
            lines += ["", "# [recall]  (docs/reading.md: one author's share of a recall)"]
            lines += [f"# author_share = {json.dumps(r.author_share)}"]
        if (e := self.embeddings) is not None:
            lines += ["", "[embeddings]", f"url = {json.dumps(e.url)}",
                      f"model = {json.dumps(e.model)}"]  # fmt: skip
            lines += [f"key_env = {json.dumps(e.key_env)}"] if e.key_env else []
            lines += [f"dim = {e.dim}"] if e.dim else []
        if self.follow_vouches:
            lines += ["", "[trust]", "follow_vouches = true"]
        else:
            lines += ["", "# [trust]  (docs/cli.md: admit invited hosts without `trust add`)"]
            lines += ["# follow_vouches = true"]
        return "\n".join(lines) + "\n"

    def view_config(self) -> ViewConfig:
        """The reading policy this file sets (``[recall]``, ``[trust] follow_vouches``)."""
        return view_config(self.recall, follow_vouches=self.follow_vouches,
                           breaker_max_open=self.breaker_max_open)

    def network_profile(self) -> Profile:
        return Profile.named(self.profile)

    @property
    def use_mdns(self) -> bool:
        """``Node(mdns=...)``: ``[mdns] enabled``, else whether the profile is ``lan``."""
        return self.mdns.enabled if self.mdns.enabled is not None else self.profile == "lan"

    @property
    def use_tailnet(self) -> bool:
        """``Node(tailnet=...)``: ``[tailnet] enabled``, else whether the profile is
        ``tailnet``."""
        t = self.tailnet
        return t.enabled if t.enabled is not None else self.profile == "tailnet"


def view_config(recall: RecallSettings | None = None, *, follow_vouches: bool,
                breaker_max_open: float | None = None) -> ViewConfig:  # fmt: skip
    """The reading policy these settings ask for (the node's and a command's alike):
    ``[recall]``, ``[trust] follow_vouches``, ``[breakers] max_open``."""
    recall = recall or RecallSettings()
    extra = {} if breaker_max_open is None else {
        "breaker_max_open_ms": round(breaker_max_open * 1000)}  # fmt: skip
    return ViewConfig(follow_vouches=follow_vouches, author_share=recall.author_share,
                      backdate_skew_ms=int(recall.backdate_skew * 1000), **extra)  # fmt: skip


def _toml_bool(value: bool) -> str:
    return "true" if value else "false"


def check_address(address: str) -> str:
    """A ``host:port`` (``[v6]:port``) address; ConfigError if it is not one."""
    host, sep, port = address.rpartition(":")
    bare = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    if (
        not sep
        or not bare
        or not (port.isascii() and port.isdigit())
        or int(port) > 65535
        or (":" in bare and bare == host)
        or not address.isprintable()
        or any(c.isspace() for c in address)
    ):
        raise ConfigError(f"not a host:port address: {address!r:.80}")
    return address


def check_name(name: str) -> str:
    name = name.strip()
    if not name or len(name) > MAX_NAME_CHARS or not name.isprintable():
        raise ConfigError(
            f"a host name must be 1 to {MAX_NAME_CHARS} printable characters, got {name!r:.80}"
        )
    return name


def load(home: Path) -> Config:
    """The config of ``home``; the defaults if it has no config file (an older init)."""
    path = Path(home) / CONFIG_FILE
    try:
        text = path.read_text("utf-8")
    except FileNotFoundError:
        return Config.default()
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"cannot read {path}: {e}") from None
    import tomllib  # here: a command that only talks to the daemon never reads the file

    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{path} is not valid TOML: {e}") from None
    unknown = sorted(set(data) - KNOWN_SETTINGS)
    if unknown:
        raise ConfigError(
            f"{path}: unknown setting {unknown[0]!r} (known: {', '.join(sorted(KNOWN_SETTINGS))})"
        )
    try:
        return _from_toml(data)
    except ConfigError as e:
        raise ConfigError(f"{path}: {e}") from None


KNOWN_SETTINGS = frozenset(
    {"name", "profile", "listen", "peers", "insecure_plaintext", "mdns", "tailnet", "trust",
     "agents", "breakers", "recall", "embeddings"}
)
EMBEDDINGS_SETTINGS = frozenset({"url", "model", "key_env", "dim"})
RECALL_SETTINGS = frozenset({"author_share", "backdate_skew"})
AGENTS_SETTINGS = frozenset({"listen"})
BREAKERS_SETTINGS = frozenset({"max_open"})
TRUST_SETTINGS = frozenset({"follow_vouches"})
MDNS_SETTINGS = frozenset({"enabled", "interfaces"})
TAILNET_SETTINGS = frozenset({"enabled", "command", "file", "tags", "hostname", "port", "interval"})


def _section(data: dict[str, Any], name: str, known: frozenset[str]) -> dict[str, Any]:
    section = data.get(name, {})
    if not isinstance(section, dict):
        raise ConfigError(f"'{name}' must be a section ([{name}])")
    unknown = sorted(set(section) - known)
    if unknown:
        raise ConfigError(
            f"unknown setting {unknown[0]!r} in [{name}] (known: {', '.join(sorted(known))})"
        )
    return section


def _enabled(section: dict[str, Any], where: str) -> bool | None:
    value = section.get("enabled")
    if value is not None and not isinstance(value, bool):
        raise ConfigError(f"'enabled' in [{where}] must be true or false")
    return value


def _strings(section: dict[str, Any], key: str, where: str) -> tuple[str, ...] | None:
    value = section.get(key)
    if value is None:
        return None
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise ConfigError(f"'{key}' in [{where}] must be a list of non-empty strings")
    return tuple(value)


def mdns_settings(data: dict[str, Any]) -> MdnsSettings:
    """The ``[mdns]`` section of a parsed config file."""
    section = _section(data, "mdns", MDNS_SETTINGS)
    return MdnsSettings(
        enabled=_enabled(section, "mdns"), interfaces=_strings(section, "interfaces", "mdns") or ()
    )


def tailnet_settings(data: dict[str, Any]) -> TailnetSettings:
    """The ``[tailnet]`` section of a parsed config file."""
    section = _section(data, "tailnet", TAILNET_SETTINGS)
    command = section.get("command", list(TAILSCALE_STATUS))
    if isinstance(command, str):
        try:
            command = shlex.split(command)
        except ValueError as e:  # an unbalanced quote
            raise ConfigError(f"'command' in [tailnet] is not a command line: {e}") from None
    if (
        not isinstance(command, list)
        or not command
        or not all(isinstance(c, str) and c for c in command)
    ):
        raise ConfigError("'command' in [tailnet] must be a command line (string or list)")
    file = section.get("file")
    if file is not None and (not isinstance(file, str) or not file):
        raise ConfigError("'file' in [tailnet] must be a path")
    hostname = section.get("hostname")
    if hostname is not None and (not isinstance(hostname, str) or not hostname):
        raise ConfigError("'hostname' in [tailnet] must be a glob (e.g. \"build-*\")")
    port = section.get("port")
    if port is not None and (isinstance(port, bool) or not isinstance(port, int)
                             or not 0 < port < 65536):  # fmt: skip
        raise ConfigError("'port' in [tailnet] must be a port number")
    interval = section.get("interval", TailnetSettings.interval)
    if isinstance(interval, bool) or not isinstance(interval, int | float) or interval < 1:
        raise ConfigError("'interval' in [tailnet] must be at least 1 (seconds)")
    return TailnetSettings(
        enabled=_enabled(section, "tailnet"), command=tuple(command), file=file,
        tags=_strings(section, "tags", "tailnet") or (), hostname=hostname, port=port,
        interval=float(interval),
    )  # fmt: skip


def _from_toml(data: dict[str, Any]) -> Config:
    name = data.get("name")
    if name is not None and not isinstance(name, str):
        raise ConfigError("'name' must be a string")
    profile = data.get("profile", "lan")
    if not isinstance(profile, str):
        raise ConfigError("'profile' must be a string")
    Profile.named(profile)
    listen = data.get("listen", DEFAULT_LISTEN)
    if not isinstance(listen, str):
        raise ConfigError("'listen' must be a string (host:port)")
    peers = data.get("peers", [])
    if not isinstance(peers, list) or not all(isinstance(p, str) for p in peers):
        raise ConfigError("'peers' must be a list of host:port strings")
    plaintext = data.get("insecure_plaintext", False)
    if not isinstance(plaintext, bool):
        raise ConfigError("'insecure_plaintext' must be true or false")
    return Config(
        name=Config.default().name if name is None else check_name(name),
        profile=profile,
        listen=check_address(listen),
        peers=tuple(check_address(p) for p in peers),
        mdns=mdns_settings(data),
        tailnet=tailnet_settings(data),
        follow_vouches=follow_vouches(data),
        insecure_plaintext=plaintext,
        agents_listen=agents_listen(data),
        breaker_max_open=breaker_max_open(data),
        recall=recall_settings(data),
        embeddings=embeddings_settings(data),
    )


def embeddings_settings(data: dict[str, Any]) -> EmbeddingsSettings | None:
    """The ``[embeddings]`` section of a parsed config file (None without one)."""
    if "embeddings" not in data:
        return None
    from urllib.parse import urlsplit

    section = _section(data, "embeddings", EMBEDDINGS_SETTINGS)
    url = section.get("url")
    parts = urlsplit(url) if isinstance(url, str) else None
    try:
        port_ok = parts is not None and (parts.port or 0) >= 0
    except ValueError:
        port_ok = False
    if parts is None or parts.scheme not in ("http", "https") or not parts.hostname \
            or not port_ok or parts.query or parts.fragment or not url.isprintable():  # fmt: skip
        raise ConfigError("'url' in [embeddings] must be an http(s) URL of an OpenAI-compatible "
                          f"API, such as \"http://127.0.0.1:11434/v1\", not {url!r:.80}")
    if parts.username is not None or parts.password is not None:
        raise ConfigError("'url' in [embeddings] must not hold credentials: put the key in an "
                          "environment variable and name it in key_env")  # fmt: skip
    model = section.get("model")
    if not isinstance(model, str) or not model.strip() or not model.isprintable():
        raise ConfigError("'model' in [embeddings] must name the endpoint's embedding model "
                          "(e.g. \"text-embedding-3-small\")")  # fmt: skip
    key_env = section.get("key_env")
    if key_env is not None and (not isinstance(key_env, str)
                                or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", key_env)):
        raise ConfigError("'key_env' in [embeddings] must be the NAME of an environment "
                          "variable holding the key (e.g. \"OPENAI_API_KEY\"), not the key")
    dim = section.get("dim")
    if dim is not None and (isinstance(dim, bool) or not isinstance(dim, int)
                            or not 1 <= dim <= 8192):  # fmt: skip
        raise ConfigError("'dim' in [embeddings] must be a number of dimensions, 1 to 8192")
    return EmbeddingsSettings(url=url.rstrip("/"), model=model.strip(), key_env=key_env, dim=dim)


def breaker_max_open(data: dict[str, Any]) -> float | None:
    """``max_open`` of the ``[breakers]`` section: seconds, from one minute to a year
    (``ops.signals.MAX_OPEN_S``, the most a trip's cooldown may say)."""
    value = _section(data, "breakers", BREAKERS_SETTINGS).get("max_open")
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not (
        60 <= value <= 365 * 86400
    ):
        raise ConfigError("'max_open' in [breakers] must be seconds, from 60 to 31536000")
    return float(value)


def recall_settings(data: dict[str, Any]) -> RecallSettings:
    """The ``[recall]`` section of a parsed config file."""
    section = _section(data, "recall", RECALL_SETTINGS)
    share = section.get("author_share", RecallSettings.author_share)
    if isinstance(share, bool) or not isinstance(share, int | float) or not 0 < share <= 1:
        raise ConfigError(
            "'author_share' in [recall] must be a number more than 0 and at most 1 (the most "
            f"of one recall's results one author may hold; 0.5 is half), not {share!r:.40}"
        )
    skew = section.get("backdate_skew", RecallSettings.backdate_skew)
    if isinstance(skew, bool) or not isinstance(skew, int | float) or not 0 <= skew < 2**40:
        raise ConfigError(
            "'backdate_skew' in [recall] must be a number of seconds, 0 or more, "
            f"not {skew!r:.40}"
        )
    return RecallSettings(author_share=float(share), backdate_skew=float(skew))


def agents_listen(data: dict[str, Any]) -> str:
    """``listen`` of the ``[agents]`` section: a host:port, or "" for no listener."""
    value = _section(data, "agents", AGENTS_SETTINGS).get("listen", DEFAULT_AGENTS_LISTEN)
    if not isinstance(value, str):
        raise ConfigError("'listen' in [agents] must be a string (host:port, or \"\" for off)")
    return check_address(value) if value else ""


def follow_vouches(data: dict[str, Any]) -> bool:
    """``follow_vouches`` of the ``[trust]`` section of a parsed config file."""
    value = _section(data, "trust", TRUST_SETTINGS).get("follow_vouches", False)
    if not isinstance(value, bool):
        raise ConfigError("'follow_vouches' in [trust] must be true or false")
    return value


def create(home: Path, config: Config) -> Path:
    """Write ``home/config.toml`` (mode 0600) atomically; FileExistsError if it exists."""
    path = Path(home) / CONFIG_FILE
    text = config.to_toml()
    create_whole(path, lambda tmp: tmp.write_text(text, "utf-8"))
    return path


__all__ = ["CONFIG_FILE", "DEFAULT_AGENTS_LISTEN", "DEFAULT_LISTEN", "DEFAULT_PORT", "PROFILES",
           "Config", "ConfigError", "MdnsSettings", "Profile", "TailnetSettings",
           "check_address", "check_name", "create", "default_home", "load"]  # fmt: skip
