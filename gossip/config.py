"""The data dir's config file, ``<home>/config.toml``, and where the data dir is.

So far it holds one setting, the host's display ``name`` (default: the hostname). Later
issues add the network profile here. This module reads and writes the file; it never
touches the key or the store.

A file that is not TOML, has a key we do not know, or a value of the wrong type is
refused with a message naming the file: a typo must not be silently ignored.
"""

from __future__ import annotations

import json
import os
import socket
import sys
import tomllib
from dataclasses import dataclass
from pathlib import Path

from crdt import GossipError
from crdt.files import create_whole

CONFIG_FILE = "config.toml"
MAX_NAME_CHARS = 64


class ConfigError(GossipError):
    """The config file or a setting given on the command line is not usable."""


def default_home() -> Path:
    """``$GOSSIP_HOME``, else the platform's per-user data dir."""
    if env := os.environ.get("GOSSIP_HOME"):
        return Path(env).expanduser()
    if sys.platform == "darwin":
        return Path.home() / "Library" / "Application Support" / "sm-gossip"
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "sm-gossip"


@dataclass(frozen=True)
class Config:
    name: str

    @classmethod
    def default(cls) -> Config:
        return cls(name=check_name(socket.gethostname() or "host"))

    def to_toml(self) -> str:
        # A JSON string is a valid TOML basic string (same escapes: \" \\ \n \t \uXXXX).
        return (
            "# sm-gossip host settings (see docs/cli.md)\n"
            f"name = {json.dumps(self.name, ensure_ascii=False)}\n"
        )


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
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{path} is not valid TOML: {e}") from None
    unknown = sorted(set(data) - {"name"})
    if unknown:
        raise ConfigError(f"{path}: unknown setting {unknown[0]!r} (known: name)")
    name = data.get("name")
    if name is None:
        return Config.default()
    if not isinstance(name, str):
        raise ConfigError(f"{path}: 'name' must be a string")
    try:
        return Config(name=check_name(name))
    except ConfigError as e:
        raise ConfigError(f"{path}: {e}") from None


def create(home: Path, config: Config) -> Path:
    """Write ``home/config.toml`` (mode 0600) atomically; FileExistsError if it exists."""
    path = Path(home) / CONFIG_FILE
    text = config.to_toml()
    create_whole(path, lambda tmp: tmp.write_text(text, "utf-8"))
    return path
