"""``ReplicaHost``: the operations' host for a data dir that no daemon holds, opened by
the command itself (embedded mode; invariant 10: the lock makes it the one writer).

It only translates: every rule is in the operations. What needs the network (join, sync)
runs a node here for as long as the operation takes, on the same data dir, after the
replica itself is closed (a node opens its own).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from crdt.identity import Identity

from .. import config
from ..errors import Conflict, NotFound

if TYPE_CHECKING:
    from crdt import Outcome, Replica, SignedRecord
    from crdt.views import Views

    from ..node import Node

T = TypeVar("T")

# A command waits this long for a data dir another process holds briefly (another CLI
# command): long enough for any single command to finish, short enough to notice a daemon.
LOCK_WAIT_S = 5.0
PROGRESS_OVER = 512  # an import of more updates than this shows its progress (docs/cli.md)


class ReplicaHost:
    """A data dir as the operations see it; opened on first use, closed by ``aclose``.
    ``progress(done, total)`` hears how an import goes."""

    online = False

    def __init__(self, home: Path, *, lock_wait: float = LOCK_WAIT_S,
                 progress: Callable[[int, int], None] | None = None) -> None:  # fmt: skip
        self.home = Path(home)
        self._lock_wait = lock_wait
        self._progress = progress
        self._replica: Replica | None = None
        self._views: Views | None = None
        self._node: Node | None = None
        self._stored_at_start: int | None = None
        self._cfg: config.Config | None = None

    # -- opening and closing ---------------------------------------------------------------

    @property
    def opened(self) -> bool:
        """Whether this host holds the data dir (its replica, or a command's node)."""
        return self._replica is not None or self._node is not None

    @property
    def cfg(self) -> config.Config:
        if self._cfg is None:
            if not self.home.is_dir():
                raise NotFound(f"no data dir at {self.home}; run `gossip init` first")
            self._cfg = config.load(self.home)  # a broken config is reported first
        return self._cfg

    def _open(self) -> tuple[Replica, Views]:
        if self._node is not None:
            raise RuntimeError("the data dir is held by this command's node")
        if self._replica is None or self._views is None:
            from crdt import Replica, semantic  # here: a remote session never needs them
            from crdt.views import Views

            cfg = self.cfg
            replica = Replica.open(self.home, create=False, lock_wait=self._lock_wait)
            try:
                self._views = Views(replica, cfg.view_config(),
                                    semantic=semantic.open_in_dir(self.home),
                                    kept=True)  # fmt: skip
            except BaseException:
                replica.close()
                raise
            self._replica = replica
        return self._replica, self._views

    def _close_replica(self) -> None:
        views, self._views = self._views, None
        replica, self._replica = self._replica, None
        if views is not None:
            views.close()
        if replica is not None:
            replica.close()

    async def aclose(self) -> None:
        node, self._node = self._node, None
        try:
            if node is not None:
                await node.aclose()
        finally:
            self._close_replica()

    async def _network(self, peers: Sequence[str] = ()) -> Node:
        """A node on this data dir for the rest of the operation: it listens on loopback
        only and announces no address (it lives for one command; its port would mislead
        peers)."""
        if self._node is None:
            from ..node import Node, NodeConfig

            settings = NodeConfig.resolve(self.cfg, listen="127.0.0.1:0", mdns=False,
                                          tailnet=False, advertise=())  # fmt: skip
            self._close_replica()
            # No [embeddings] endpoint for a command's node: it embeds with the embedded
            # model only (docs/reading.md), never waiting on a network service.
            node = Node(self.home, config=replace(settings, peers=tuple(peers),
                                                  embeddings=None))  # fmt: skip
            await node.__aenter__()
            self._node = node
        return self._node

    # -- the Host interface ----------------------------------------------------------------

    def now_ms(self) -> int:
        return self._replica.now_ms() if self._replica is not None else time.time_ns() // 10**6

    async def read(self, fn: Callable[[Replica, Views], T]) -> T:
        if self._node is not None:
            return await self._node.query(fn)
        return fn(*self._open())

    async def prepare_recall(self, query: str) -> str | None:
        return None  # a command uses the embedded model only

    async def write(self, make: Callable[[Identity, int], SignedRecord]) -> SignedRecord:
        if self._node is not None:
            return await self._node.write_record(make)
        (rec,) = await self.write_all([make])
        return rec

    async def write_all(
        self, makes: Sequence[Callable[[Identity, int], SignedRecord]]
    ) -> list[SignedRecord]:
        if self._node is not None:
            return await self._node.write_records(makes)
        if not makes:
            return []
        r, _ = self._open()
        now = r.now_ms()
        recs = [make(r.identity, now) for make in makes]
        r.put(*recs)
        return recs

    async def trust(self, key: str, name: str) -> None:
        self._open()[0].trust(key, name)

    async def distrust(self, key: str) -> bool:
        return self._open()[0].distrust(key)

    async def ingest(self, updates: Sequence[bytes], source: str) -> list[Outcome]:
        r, _ = self._open()
        progress = self._progress
        # One call, the pipeline a peer's catch-up runs (``ChunkedLocal``): the next
        # chunk's signatures verify while this one commits, and the progress is told in
        # between. (Calls of 512 updates each, as before, ran at half the speed: no
        # overlap between chunks, and a commit per 512.)
        outcomes = r.ingest_batch(
            updates, source=source,
            between=None if progress is None else lambda done: progress(done, len(updates)),
        )  # fmt: skip
        if progress is not None:
            progress(len(outcomes), len(updates))
        return outcomes

    async def rotate_key(self) -> str:
        r, _ = self._open()
        r.rotate(Identity.generate())
        return r.author

    async def invite(self, ttl: float, name: str) -> Any:
        from ..invites import Invitations
        from ..node.membership import advertised as _advertised
        from ..transport.http import join_address, split_address

        host, port = split_address(self.cfg.listen)
        addresses = [join_address(h.strip("[]"), port) for h in _advertised(host)]
        me = self._open()[0].author
        return Invitations(self.home).issue(me, addresses, now=self.now_ms(), ttl_s=ttl,
                                            name=name)  # fmt: skip

    async def join(self, token: str, members: bool) -> dict[str, Any]:
        node = await self._network()
        joined = await node.join(token, members=members)
        # One exchange now: the inviter's document (its hosts' announcements) is here
        # when the daemon starts, so it finds its peers.
        await node.sync_now()
        return joined

    async def sync_round(self, address: str | None) -> dict[str, int]:
        if self._node is None:
            from ..errors import Invalid

            peers = [address] if address else list(self.cfg.peers)
            if not peers:
                raise Invalid("no peers configured and no address given: nothing to sync with",
                              "address")  # fmt: skip
            self._stored_at_start = self._open()[0].store_stats()["updates"]
            await self._network(peers)
        node = self._node
        assert node is not None
        report = await node.sync_now()
        # The node's own first round may learn before ours: count what was stored.
        stored = await node.query(lambda r, _: r.store_stats()["updates"])
        learned = stored - (self._stored_at_start or 0)
        self._stored_at_start = stored
        return {"exchanges": report.exchanges, "failures": report.failures, "learned": learned,
                "errors": list(report.errors)}  # fmt: skip

    async def repair(self) -> dict[str, Any]:
        from crdt import StoreLocked
        from crdt.repair import repair

        from .repair import stop_first
        from .session import lock_holder

        await self.aclose()  # the replica (or node) of this command: repair takes the lock
        try:
            report = repair(self.home)
        except StoreLocked:
            holder = lock_holder(self.home) or ""
            pid = int(holder.removeprefix("pid ")) if holder.startswith("pid ") else None
            raise Conflict(f"`gossip repair` needs the data dir to itself: "
                           f"{stop_first(pid)}") from None  # fmt: skip
        return report.to_json()

    def peers(self) -> list[dict[str, Any]]:
        """The peers the last node on this data dir knew (``peers.json``), as of then,
        and the configured ones it did not know."""
        from .. import peerfile  # here: the peer table's modules only for who asks
        from ..peers import lag

        cfg = self.cfg
        transport = "plaintext" if cfg.insecure_plaintext else "tls"
        saved = peerfile.load(self.home)
        rows = [_row(list(e.addresses), e.source, transport, key=e.key, name=e.name,
                     last_success=e.last_success, sv_at=e.sv_at,
                     they_lack=lag(saved.ours, e.sv), we_lack=lag(e.sv, saved.ours),
                     reason="no daemon runs on this data dir (as of its last run)")
                for e in sorted(saved.peers.values(), key=lambda e: (e.name, e.key))]  # fmt: skip
        known = {a for e in saved.peers.values() for a in e.addresses}
        return rows + [_row([a], "static", transport, reason="no daemon runs on this data dir")
                       for a in cfg.peers if a not in known]  # fmt: skip

    def peer_vectors(self) -> dict[str, dict[int, int]]:
        from .. import peerfile

        return {k: e.sv for k, e in peerfile.load(self.home).peers.items()}

    def forget_peer(self, key: str) -> bool:
        return False  # the table is the daemon's (peers_forget refuses first)

    def web_login(self) -> dict[str, Any]:
        from .web import NO_DASHBOARD

        raise Conflict(NO_DASHBOARD)

    def facts(self) -> dict[str, Any]:
        cfg = self.cfg
        return {
            "name": cfg.name, "address": None, "profile": cfg.profile, "pid": None,
            "transport": "plaintext" if cfg.insecure_plaintext else "tls",
            "started_at": None, "api": None,
            "discovery": [{"source": "static", "state": "off",
                           "detail": f"{len(cfg.peers)} configured"}],
        }  # fmt: skip


def _row(addresses: list[str], source: str, transport: str, *, reason: str, key: str | None = None,
         name: str = "", **known: Any) -> dict[str, Any]:  # fmt: skip
    """A peer row (``PeerInfo.to_json``'s shape) of a data dir at rest: ``not-running``."""
    return {"key": key, "name": name, "addresses": addresses, "address": addresses[0],
            "source": source, "state": "not-running", "last_success": None, "last_seen": None,
            "last_error": None, "failures": 0, "rtt_ms": None, "bytes_in": 0, "bytes_out": 0,
            "they_lack": None, "we_lack": None, "next_attempt": 0, "exchanges": 0,
            "sources": [source], "claimed": False, "unproven": [], "transport": transport,
            "reason": reason, "sv_at": None, **known}  # fmt: skip
