"""Node: the embeddable facade. It owns one replica (and its worker thread), its views,
one peer transport, the peer table and the task group of every background task; each
concern of a running host lives in a part of its own (the package's docstring lists
them), which owns its state and reaches the node through the small core below
(``call``, ``replica``, ``table``, ``trust_set``, ``spawn``, …), never through another
part's fields.

Lifecycle (like trio's ``nursery.start``): ``__aenter__`` returns only once the replica
is open and the server listens, and raises if either fails (leaving nothing behind);
``__aexit__`` stops every background task (one ``asyncio.TaskGroup``, owned by the node,
not by the caller's task), closes the transport and the replica, and joins the
replica's thread.

Threads: the replica is touched only from one ``ReplicaWorker`` thread; the event loop
never blocks on SQLite commits or signature checks. Reads answer empty past
``read_timeout`` (invariant 11, ``reads.py``); a write is acknowledged once it is
durable locally (``actions.py``); network I/O happens in background tasks.

Transport: HTTP over TLS 1.3 pinned to host keys (``gossip.transport``), or plain HTTP
when ``tls=False`` (``--insecure-plaintext``). This package never parses wire bytes
(``gossip.protocol`` does), never signs requests (``gossip.transport`` does) and never
writes to the document except through ``Replica.put``.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import logging
import random
import time
from collections.abc import Callable, Coroutine, Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from crdt import GossipError, Identity, Replica, SignedRecord, semantic
from crdt.trust import TrustSet
from crdt.views import Views

from .. import config as config_file
from ..config import MdnsSettings, Profile, TailnetSettings
from ..events import PeerChanged, TrustChanged
from ..peers import UNKNOWN_KEY, Peer, PeerInfo, PeerTable
from ..transport import ServerLimits, Transport, TransportFactory, auth
from ..transport.http import HttpTransport
from ..transport.tls import PLAINTEXT, TLS, PinnedTls
from .actions import NodeActions
from .changes import Changes
from .config import NodeConfig
from .embedding import Embedding
from .joining import Joining
from .membership import Membership
from .reads import NodeReads
from .replication import Replication
from .rest import give_back_at_rest
from .rotation import Rotation
from .worker import READ, WRITE, ReplicaWorker

if TYPE_CHECKING:
    from ..ops.online import NodeHost
    from .thread import NodeThread

log = logging.getLogger("gossip.node")

T = TypeVar("T")

class Node(NodeActions, NodeReads):
    """One host's replica on the network. See the module docstring."""

    def __init__(
        self,
        home: Path | str,
        listen: str = "127.0.0.1:0",
        peers: Iterable[str] = (),
        profile: str | Profile = "local",
        mdns: bool = False,
        transport: TransportFactory | None = None,
        now_ms: Callable[[], int] | None = None,
        rng: random.Random | None = None,
        *,
        name: str | None = None,
        advertise: Sequence[str] | None = None,
        read_timeout: float = 2.0,
        tailnet: bool = False,
        mdns_settings: MdnsSettings | None = None,
        tailnet_settings: TailnetSettings | None = None,
        follow_vouches: bool | None = None,
        tls: bool = True,
        config: NodeConfig | None = None,
    ) -> None:
        """The options are ``NodeConfig``'s (each field says what it does), resolved here,
        once, over ``home/config.toml`` (its static peers are added to ``peers``); or
        ``config``, a ``NodeConfig`` built beforehand (``gossip serve`` builds one from its
        flags), used as it is. ``transport``: a factory of the peer transport (default
        HTTP, over TLS unless ``tls=False``); ``now_ms`` and ``rng``: the clock and the
        random source, injected for tests and the simulator."""
        self.home = Path(home).expanduser()
        if config is None:
            config = NodeConfig.resolve(
                config_file.load(self.home), listen=listen, peers=peers, profile=profile,
                mdns=mdns, tailnet=tailnet, tls=tls, name=name, follow_vouches=follow_vouches,
                advertise=advertise, read_timeout=read_timeout, mdns_settings=mdns_settings,
                tailnet_settings=tailnet_settings,
            )  # fmt: skip
        self.config = config
        self.profile = config.profile
        self.read_timeout = config.read_timeout
        self._factory: TransportFactory | None = transport
        self._now_ms = now_ms or _wall_ms
        self.rng = rng or random.Random()
        self._state = "new"  # new | starting | running | stopping | closed
        self._replica: Replica | None = None
        self._views: Views | None = None
        self._worker: ReplicaWorker | None = None
        self._transport: Transport | None = None
        self._identity: Identity | None = None
        self._table: PeerTable | None = None
        # The effective trusted set (crdt.trust, via the views): the one source of "do we
        # trust this key" for exchange auth (auth.Verifier), peer selection (PeerTable)
        # and anything else that asks (TLS pinning). Replaced whole, from the replica's
        # thread, before the change that caused it is acknowledged.
        self._trust = TrustSet(frozenset())
        self._announced_trust: frozenset[str] | None = None  # what TrustChanged said last
        self._verifier: auth.Verifier | None = None
        self._address: str | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._runner: asyncio.Task[None] | None = None
        self._tg: asyncio.TaskGroup | None = None
        self._ops: NodeHost | None = None
        self.membership = Membership(self, advertise=config.advertise, static=config.peers,
                                     mdns=config.mdns, tailnet=config.tailnet)  # fmt: skip
        self.membership.mdns_settings = config.mdns_settings
        self.membership.tailnet_settings = config.tailnet_settings
        self.rotation = Rotation(self)
        self.joining = Joining(self)
        self.replication = Replication(self)
        self.changes = Changes(self)
        self.embedding = Embedding.for_config(config)

    # -- identity ------------------------------------------------------------------------

    @property
    def id(self) -> str:
        """This host's public id (base64url Ed25519 key)."""
        return self.identity.public_id

    @property
    def address(self) -> str:
        """The "host:port" the peer server actually listens on."""
        return self._require(self._address)

    @property
    def name(self) -> str:
        """This host's display name (``name=``, else config.toml's)."""
        return self.config.name

    def now_ms(self) -> int:
        """This node's clock (ms since the epoch): the time its records are signed with."""
        return self._now_ms()

    async def prepare_recall(self, query: str) -> str | None:
        """Before a recall: the endpoint's vector of the query (``Embedding.prefetch``)."""
        return await self.embedding.prefetch(self._views, query)

    @property
    def ops(self) -> NodeHost:
        """This node as the operations' host (``gossip.ops``): ``await
        ops.run(node.ops, "retract", {"id": rid})`` is the local API's retract, rules and
        all."""
        from ..ops.online import NodeHost

        if self._ops is None:
            self._ops = NodeHost(self, read_timeout=max(self.read_timeout, 5.0))
        return self._ops

    @property
    def transport(self) -> Transport:
        return self._require(self._transport)

    @property
    def transport_or_none(self) -> Transport | None:
        return self._transport

    @property
    def running(self) -> bool:
        return self._state == "running"

    @property
    def closing(self) -> bool:
        """Stopping or stopped: no new subscription, no new task."""
        return self._state in ("stopping", "closed")

    @property
    def rotating(self) -> bool:
        """Whether a key rotation's grace is running (``rotate_key``)."""
        return self.rotation.active

    @property
    def transport_mode(self) -> str:
        """What carries our exchanges with every peer: "tls", "plaintext" (the
        ``--insecure-plaintext`` opt-in) or, for an in-memory network, "memory"."""
        if self._transport is not None:
            return str(getattr(self._transport, "mode", "") or "")
        return "" if self._factory is not None else (TLS if self.config.tls else PLAINTEXT)

    # -- the core the parts use ------------------------------------------------------------

    def _require(self, value: T | None) -> T:
        if value is None:
            raise GossipError("the node is not running (use `async with Node(...)`)")
        return value

    @property
    def identity(self) -> Identity:
        return self._require(self._identity)

    @property
    def replica(self) -> Replica:
        """The replica: touch it in the worker thread (``call``) only."""
        if self._replica is None:
            raise GossipError("the node is not running")
        return self._replica

    @property
    def worker(self) -> ReplicaWorker | None:
        return self._worker

    @property
    def table(self) -> PeerTable:
        return self._require(self._table)

    @property
    def table_or_none(self) -> PeerTable | None:
        return self._table

    @property
    def verifier(self) -> auth.Verifier:
        return self._require(self._verifier)

    @property
    def address_or_none(self) -> str | None:
        return self._address

    def trust_set(self) -> TrustSet:
        """The effective trusted set (keyring, successors, vouches, revocations): what
        exchange auth and peer selection use (``crdt.trust``)."""
        return self._trust

    async def call(self, fn: Callable[..., T], *args: Any, priority: int = WRITE) -> T:
        """``fn(*args)`` in the replica's worker thread."""
        if self._worker is None or self._state == "closed":
            raise GossipError("the node is not running")
        try:
            fut = self._worker.submit(fn, *args, priority=priority)
        except RuntimeError:
            raise GossipError("the node is not running") from None
        return await asyncio.wrap_future(fut)

    def change_now(self, change: Callable[[], object]) -> list[SignedRecord]:
        """Run a small replica change at once (ahead of queued work, between the chunks
        of an ingest) and wait for it; returns the host announcements after it."""
        if self._worker is None or self._state in ("stopping", "closed"):
            raise GossipError("the node is not running")

        def job() -> list[SignedRecord]:
            change()
            return self.membership.host_records()

        try:
            fut = self._worker.submit(job, priority=READ)
        except RuntimeError:
            raise GossipError("the node is not running") from None
        try:
            return fut.result(self.profile.request_timeout)
        except TimeoutError:
            if fut.cancel():  # still queued: it will not run
                raise GossipError("the replica is busy; nothing changed, try again") from None
            return fut.result()  # running: a small change, done in a moment

    def spawn(self, coro: Coroutine[Any, Any, Any], name: str) -> asyncio.Task[Any] | None:
        """A background task in the node's group, or None (the coroutine closed unrun)
        when the node is not running."""
        if self._tg is None or self._state != "running":
            coro.close()
            return None
        return self._tg.create_task(coro, name=name)

    def wake(self) -> None:
        """Start the next anti-entropy round now."""
        self.replication.wake.set()

    def keyring_changed(self, hosts: list[SignedRecord]) -> None:
        table = self._table
        if table is None:
            return
        table.keyring_changed(self._now_ms())
        self.membership.learn_hosts(hosts)
        self.wake()

    def switch_identity(self, new: Identity) -> None:
        """After a rotation: requests, answers and the peer table use ``new``."""
        self._identity = new
        self.transport.identity = new
        self.table.self_key = new.public_id

    def pinned_tls(self) -> PinnedTls | None:
        tls = getattr(self._transport, "tls", None)
        return tls if isinstance(tls, PinnedTls) else None

    # -- lifecycle -----------------------------------------------------------------------

    async def __aenter__(self) -> Node:
        if self._state != "new":
            raise GossipError("a Node is started once; make a new one")
        self._state = "starting"
        self._loop = asyncio.get_running_loop()
        self.changes.loop = self._loop
        try:
            self._worker = ReplicaWorker(after_job=self.changes.after_job)
            await self._worker.call(self._open)
            identity = self.replica.identity
            self._identity = identity
            self._table = PeerTable(
                identity.public_id,
                backoff_base_ms=int(self.profile.backoff_base * 1000),
                backoff_cap_ms=int(self.profile.backoff_cap * 1000),
                rng=self.rng,
                listener=self._on_peer,
                trusts=lambda key: key in self._trust.keys,
            )
            await self.replication.start()
            verifier = auth.Verifier(
                lambda: self._trust.keys, self._now_ms,
                window_ms=int(self.profile.auth_window * 1000), started_ms=self._now_ms(),
            )  # fmt: skip
            verifier.successors = lambda: self._trust.successors
            self._verifier = verifier
            self.rotation.start(verifier)
            factory = self._factory
            if factory is None:
                pinned = await self._worker.call(self._make_tls) if self.config.tls else None
                if pinned is not None and (old := self.rotation.presenting()) is not None:
                    # Peers may not hold the successor yet: present the old key until
                    # the grace ends (docs/protocol.md, "TLS").
                    await self._worker.call(pinned.present, old)
                factory = functools.partial(HttpTransport, tls=pinned)
            self._transport = factory(
                identity, verifier, now_ms=self._now_ms,
                limits=ServerLimits(max_body_bytes=self.profile.max_body_bytes),
                timeout=self.profile.request_timeout,
            )  # fmt: skip
            self._address = await self._transport.start(self.config.listen, self.replication.handle)
            now = self._now_ms()
            for address in self.membership.static:
                if address != self._address:
                    self._table.add([address], "static", now=now)
            hosts = await self._worker.call(self.membership.announce)
            self.membership.learn_hosts(hosts)
            self.membership.start()
            started: asyncio.Future[None] = self._loop.create_future()
            self._state = "running"  # from the first round on, writes are pushed
            self._runner = asyncio.create_task(self._run(started), name=f"node {self._address}")
            await asyncio.shield(started)
        except BaseException:
            await self._close()
            raise
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._close()

    async def aclose(self) -> None:
        await self._close()

    async def _run(self, started: asyncio.Future[None]) -> None:
        """The owner of every background task."""
        try:
            async with asyncio.TaskGroup() as tg:
                self._tg = tg
                tg.create_task(self.replication.anti_entropy(), name="anti-entropy")
                tg.create_task(self.embedding.run(self._views, self.home), name="embeddings")
                tg.create_task(give_back_at_rest(
                    self._activity, functools.partial(self.call, priority=READ)), name="rest")
                m = self.membership
                if m.mdns is not None:
                    tg.create_task(m.mdns.run(self.profile.readdress), name="mdns")
                if m.tailnet is not None:
                    tg.create_task(m.tailnet.run(), name="tailnet")
                started.set_result(None)
                await asyncio.Future()  # until cancelled by _close
        except asyncio.CancelledError:
            raise
        except BaseException as e:
            log.error("node %s: background tasks failed", self._address, exc_info=e)
            if not started.done():
                started.set_exception(e)
        finally:
            self._tg = None

    def _activity(self) -> int:
        """Work done, ever: the worker's jobs and the vectors built (``rest.py``)."""
        worker, views = self._worker, self._views
        built = sum(i.embedded for i in views.semantic_indexes()) if views is not None else 0
        return (worker.jobs if worker is not None else 0) + built

    async def _close(self) -> None:
        if self._state in ("stopping", "closed"):
            return
        self._state = "stopping"  # no exchange or push starts from now on
        # Goodbyes first, while we still answer: a signed LEAVE to our peers (they show
        # us as ``left``), bounded and best-effort; then mDNS's.
        try:
            await self.replication.goodbye()
        except Exception:
            log.exception("goodbyes of %s failed", self._address)
        await self.membership.close()
        # First stop serving (requests being served still finish, with the replica),
        # then stop our own tasks, then close the replica and join its thread.
        if self._transport is not None:
            try:
                await self._transport.close()
            except Exception:
                log.exception("closing the transport of %s failed", self._address)
        runner, self._runner = self._runner, None
        if runner is not None:
            runner.cancel()
            await asyncio.wait([runner])
        worker = self._worker
        if worker is not None:
            try:
                await worker.call(self.embedding.close)  # blocking harms nothing there
                await worker.call(self._shut)
            except Exception:
                log.exception("closing the replica in %s failed", self.home)
            worker.close()  # idle now (everything after _shut is cancelled): joins at once
        self.changes.close()
        self.replication.stop()
        self._state = "closed"

    def _open(self) -> None:
        """In the worker: open the replica and its views, subscribe to their changes."""
        replica = Replica.open(self.home, now_ms=self._now_ms, create=True)
        try:
            self._views = Views(replica, self.config.view_config(),
                                semantic=semantic.open_in_dir(self.home), kept=True)  # fmt: skip
            self.changes.views = self._views
            replica.on_change(self.changes.on_change)
            self._views.on_trust_change(self._on_trust_set)
            self._trust = self._views.trust()
            self._announced_trust = self._trust.keys
            self.rotation.load(replica, self._views, self._trust)
        except BaseException:
            replica.close()
            raise
        self._replica = replica

    def _make_tls(self) -> PinnedTls:
        """In the worker: write or renew ``tls.crt`` and load the TLS contexts."""
        pinned = PinnedTls.for_host(self.home, self.replica.identity)
        pinned.successors = lambda: self._trust.successors
        return pinned

    def _shut(self) -> None:
        replica, self._replica = self._replica, None
        views, self._views = self._views, None
        self.changes.views = None
        if views is not None:
            views.close()
        self.changes.clear()
        if replica is not None:
            replica.close()

    # -- what the worker reports ----------------------------------------------------------

    def _on_trust_set(self, trust: TrustSet) -> None:
        """Worker thread (inside a replica call): the effective trusted set changed."""
        self._trust = trust
        if self._loop is not None and self._state in ("starting", "running"):
            with contextlib.suppress(RuntimeError):  # the loop is gone
                self._loop.call_soon_threadsafe(self._trust_changed)

    def _trust_changed(self) -> None:
        """Loop thread: rows of rotated keys take their successor's key; rows of keys no
        longer trusted stop being exchanged with; refused ones are retried."""
        trust = self._trust
        before, self._announced_trust = self._announced_trust, trust.keys
        if before is not None and before != trust.keys:
            self.changes.publish(TrustChanged(tuple(sorted(trust.keys - before)),
                                              tuple(sorted(before - trust.keys))))  # fmt: skip
        table = self._table
        if table is None:
            return
        for p in table:
            if p.key is not None and (new := trust.current(p.key)) != p.key:
                table.rekey(p.key, new)
        table.keyring_changed(self._now_ms())
        self.wake()

    def _on_peer(self, peer: Peer, change: str) -> None:
        if change == "removed":
            self.replication.peer_removed(peer)
        elif change == "added" and peer.state != UNKNOWN_KEY:
            # Sync with a newcomer now (it is the least recently synced of all): it gets
            # our announcements of the others without waiting for a round. Not for a
            # row we never exchange with: a flood of fake mDNS instances wakes nothing.
            self.wake()
        self.changes.publish(PeerChanged(change, self._info(peer)))

    def _info(self, peer: Peer) -> PeerInfo:
        table = self._table
        ours = table.ours if table is not None else None
        return dataclasses.replace(peer.info(ours), transport=self.transport_mode)

    # -- embedding in synchronous code ---------------------------------------------------

    def start_in_thread(self, *, timeout: float = 30.0) -> NodeThread:
        """Run this node in a thread of its own, for synchronous daemons; returns once it
        listens. Use the handle's blocking methods; ``close()`` it (or ``with`` it)."""
        from .thread import NodeThread

        return NodeThread(self, timeout=timeout)


def _wall_ms() -> int:
    return time.time_ns() // 1_000_000
