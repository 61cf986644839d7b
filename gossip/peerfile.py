"""``peers.json`` in the data dir: the state vector this host last learned from each peer,
and when, so that a node restarted while a peer is down, and a command run with no daemon,
can still say which records that peer had (``gossip show``'s delivery, ``gossip peers``).

Knowledge, never a source of peers: the file proposes no address and no key. A row the
peer table holds by a key starts from that key's entry (``PeerTable.remember``); without
a daemon, the operations read it (``offline.ReplicaHost``). A running node writes it every
``SAVE_EVERY_MS`` and when it stops: mode 0600, replaced whole (a crash leaves the old file
or the new one), merged with what the file held (per key the newest knowledge wins, at
most ``MAX_PEERS`` keys, the longest unheard of go first; a forgotten peer's entry goes).
It is a cache: a file that does not parse is ignored, and the next save replaces it.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .peers import PeerTable

PEER_FILE = "peers.json"
VERSION = 1
MAX_PEERS = 256
MAX_BYTES = 8 * 2**20  # a larger file is not read
SAVE_EVERY_MS = 30_000


@dataclass(frozen=True)
class Known:
    """What we last learned of one peer: its state vector ``sv`` at ``sv_at``."""

    key: str
    name: str
    addresses: tuple[str, ...]
    source: str
    sv: dict[int, int]
    sv_at: int
    last_success: int | None = None

    def to_json(self) -> dict[str, Any]:
        return {"key": self.key, "name": self.name, "addresses": list(self.addresses),
                "source": self.source, "sv": sorted(self.sv.items()), "sv_at": self.sv_at,
                "last_success": self.last_success}  # fmt: skip


@dataclass(frozen=True)
class Saved:
    """The file: when it was written, our own state vector then, and the peers."""

    saved_at: int | None = None
    ours: dict[int, int] = field(default_factory=dict)
    peers: dict[str, Known] = field(default_factory=dict)


def from_table(table: PeerTable) -> list[Known]:
    """The rows of ``table`` whose key and state vector are known."""
    return [Known(p.key, p.name, tuple(p.addresses), p.source, dict(p.last_sv), p.sv_at,
                  p.last_success)
            for p in table
            if p.key is not None and p.last_sv is not None and p.sv_at is not None]  # fmt: skip


def load(home: Path) -> Saved:
    """The file's content; empty if there is none or it does not parse."""
    path = Path(home) / PEER_FILE
    try:
        if path.stat().st_size > MAX_BYTES:
            return Saved()
        raw = json.loads(path.read_bytes())
        peers = {}
        for entry in raw["peers"]:
            ok = entry["last_success"]
            known = Known(str(entry["key"]), str(entry["name"]),
                          tuple(str(a) for a in entry["addresses"]), str(entry["source"]),
                          _vector(entry["sv"]), int(entry["sv_at"]),
                          None if ok is None else int(ok))  # fmt: skip
            peers[known.key] = known
        return Saved(int(raw["saved_at"]), _vector(raw["ours"]), peers)
    except (OSError, ValueError, TypeError, KeyError, AttributeError):
        return Saved()


def save(home: Path, known: Iterable[Known], ours: dict[int, int], now: int, *,
         forgotten: Iterable[str] = ()) -> None:  # fmt: skip
    """Merge ``known`` into the file (see the module's docstring) and write it whole."""
    merged = load(home).peers
    for k in forgotten:
        merged.pop(k, None)
    for entry in known:
        old = merged.get(entry.key)
        if old is None or old.sv_at <= entry.sv_at:
            merged[entry.key] = entry
    kept = sorted(merged.values(), key=lambda e: -e.sv_at)[:MAX_PEERS]
    body = json.dumps({"v": VERSION, "saved_at": now, "ours": sorted(ours.items()),
                       "peers": [e.to_json() for e in kept]}).encode()  # fmt: skip
    path = Path(home) / PEER_FILE
    tmp = path.with_name(f"{path.name}.tmp-{os.getpid()}")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as f:
            os.fchmod(fd, 0o600)  # the umask must not widen it
            f.write(body)
        os.replace(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()


def _vector(pairs: Any) -> dict[int, int]:
    out = {}
    for client, clock in pairs:
        if not isinstance(client, int) or not isinstance(clock, int) or clock < 0:
            raise ValueError("a state vector is pairs of integers")
        out[client] = clock
    return out
