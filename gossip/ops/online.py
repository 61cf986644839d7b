"""``NodeHost``: the operations' host for a running ``Node`` (the daemon, an embedder).
Reads run in the replica's thread, bounded by ``read_timeout``; writes go through the
node, so they are signed, durable and pushed at once like any other.

It only translates: every rule is in the operations, every mechanism in the node.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

from ..errors import Conflict, Unavailable

if TYPE_CHECKING:
    from crdt import Identity, Outcome, Replica, SignedRecord
    from crdt.views import Views

    from ..node import Node

T = TypeVar("T")

READ_TIMEOUT = 5.0  # seconds a read may wait for the replica before it is Unavailable


class NodeHost:
    """A running node as the operations see it. ``facts`` adds what the surface knows of
    itself to ``status`` (the local API's socket, the discovery sources)."""

    online = True

    def __init__(self, node: Node, *, facts: Callable[[], dict[str, Any]] | None = None,
                 read_timeout: float = READ_TIMEOUT) -> None:  # fmt: skip
        self.node = node
        self.home = node.home
        self._facts = facts
        self._read_timeout = read_timeout
        # The dashboard's login links (``api.dashboard``), set once it serves.
        self.login_link: Callable[[], dict[str, Any]] | None = None

    def now_ms(self) -> int:
        return self.node.now_ms()

    async def read(self, fn: Callable[[Replica, Views], T]) -> T:
        try:
            return await asyncio.wait_for(self.node.query(fn), self._read_timeout)
        except TimeoutError:
            raise Unavailable("the replica did not answer in time; try again") from None

    async def prepare_recall(self, query: str) -> str | None:
        return await self.node.prepare_recall(query)

    async def write(self, make: Callable[[Identity, int], SignedRecord]) -> SignedRecord:
        return await self.node.write_record(make)

    async def write_all(
        self, makes: Sequence[Callable[[Identity, int], SignedRecord]]
    ) -> list[SignedRecord]:
        return await self.node.write_records(makes)

    async def trust(self, key: str, name: str) -> None:
        self.node.trust(key, name)

    async def distrust(self, key: str) -> bool:
        return self.node.distrust(key)

    async def ingest(self, updates: Sequence[bytes], source: str) -> list[Outcome]:
        return await self.node.offer(updates, source=source)

    async def rotate_key(self) -> str:
        return await self.node.rotate_key()

    async def invite(self, ttl: float, name: str) -> Any:
        return await self.node.invite(ttl=ttl, name=name)

    async def join(self, token: str, members: bool) -> dict[str, Any]:
        return await self.node.join(token, members=members)

    async def sync_round(self, address: str | None) -> dict[str, int]:
        node = self.node
        report = await (node.sync_with(address) if address else node.sync_now())
        return {"exchanges": report.exchanges, "failures": report.failures,
                "learned": report.learned, "errors": list(report.errors)}  # fmt: skip

    async def repair(self) -> dict[str, Any]:
        from .repair import stop_first

        raise Conflict(f"`gossip repair` needs the data dir to itself: {stop_first(os.getpid())}")

    def peers(self) -> list[dict[str, Any]]:
        return [p.to_json() for p in self.node.peers()]

    def peer_vectors(self) -> dict[str, dict[int, int]]:
        table = self.node.table_or_none
        return {p.key: dict(p.last_sv) for p in table or ()
                if p.key is not None and p.last_sv is not None}  # fmt: skip

    def forget_peer(self, key: str) -> bool:
        return self.node.membership.forget(key)

    def web_login(self) -> dict[str, Any]:
        from .web import NO_DASHBOARD

        if self.login_link is None:
            raise Conflict(NO_DASHBOARD)
        return self.login_link()

    def facts(self) -> dict[str, Any]:
        node = self.node
        out: dict[str, Any] = {
            "name": node.name, "address": node.address, "profile": node.profile.name,
            "transport": node.transport_mode, "pid": os.getpid(), "started_at": None,
            "api": None, "discovery": [],
            "embeddings": None if (e := node.embedding.remote) is None else e.status(),
        }  # fmt: skip
        if self._facts is not None:
            out.update(self._facts())
        return out
