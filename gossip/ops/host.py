"""The small interface every operation's handler is written against. Two things implement
it: a running ``Node`` (``online.NodeHost``: reads in the replica's thread, writes signed,
durable and pushed at once) and a data dir opened by the command itself when no daemon
runs (``offline.ReplicaHost``). A handler never knows which one it has, so the daemon and
embedded mode answer alike by construction.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

if TYPE_CHECKING:
    from crdt import Identity, Outcome, Replica, SignedRecord
    from crdt.views import Views

T = TypeVar("T")


class Host(Protocol):
    """A host as the operations see it."""

    home: Path
    online: bool  # a running node (peers, a peer port) rather than a data dir alone

    def now_ms(self) -> int:
        """This host's clock, in ms since the epoch (the time records are signed with)."""
        ...

    async def read(self, fn: Callable[[Replica, Views], T]) -> T:
        """``fn(replica, views)`` where the replica may be read; ``fn`` must not write."""
        ...

    async def prepare_recall(self, query: str) -> str | None:
        """Before a recall with ``query`` (its ``read``): online, the query's vector from
        an embeddings endpoint, fetched outside the replica's thread (docs/reading.md),
        or why the endpoint's model cannot answer it (its vectors not begun: the views'
        note says the rest); offline, nothing."""
        ...

    async def write(self, make: Callable[[Identity, int], SignedRecord]) -> SignedRecord:
        """Sign ``make(identity, now)`` and write it: durable before this returns (and,
        online, pushed to peers at once). ``make`` runs where the replica is owned."""
        ...

    async def write_all(
        self, makes: Sequence[Callable[[Identity, int], SignedRecord]]
    ) -> list[SignedRecord]:
        """As ``write`` for several records (one ``now``), in one signed update: one
        durable commit for all of them, or nothing written if one fails."""
        ...

    async def trust(self, key: str, name: str) -> None:
        """Add ``key`` to the keyring (effective when this returns)."""
        ...

    async def distrust(self, key: str) -> bool:
        """Remove ``key`` from the keyring; False if it was not in it."""
        ...

    async def ingest(self, updates: Sequence[bytes], source: str) -> list[Outcome]:
        """Offer signed updates from outside the network (an import) to the gate."""
        ...

    async def rotate_key(self) -> str:
        """Switch to a fresh host key; returns the new public id."""
        ...

    async def invite(self, ttl: float, name: str) -> Any:
        """A single-use invitation (``invites.Token``)."""
        ...

    async def join(self, token: str, members: bool) -> dict[str, Any]:
        """Redeem an invitation token (needs the network)."""
        ...

    async def sync_round(self, address: str | None) -> dict[str, int]:
        """One exchange now with every peer, or with ``address``: exchanges, failures,
        how many updates this host learned, and ``errors`` ("ADDRESS: cause" per failure)."""
        ...

    async def repair(self) -> dict[str, Any]:
        """Rebuild the store from what verifies (``crdt.repair``); offline only."""
        ...

    def peers(self) -> list[dict[str, Any]]:
        """The peer table, as JSON rows (offline: the peers the last node here knew, as
        of then, ``peers.json``, and the configured ones)."""
        ...

    def peer_vectors(self) -> dict[str, dict[int, int]]:
        """Each peer's state vector as last learned (when: its row's ``sv_at``), by key;
        only peers whose vector is known (offline: ``peers.json``'s)."""
        ...

    def forget_peer(self, key: str) -> bool:
        """Drop the peer table's row of ``key`` (online only); False if it has none."""
        ...

    def web_login(self) -> dict[str, Any]:
        """A one-time login link to the dashboard: {url, expires_at} (online, with the
        agents' listener, only; else ``Conflict``)."""
        ...

    def facts(self) -> dict[str, Any]:
        """What ``status`` says of the running process: address, pid, API, discovery."""
        ...
