"""Node: the embeddable facade. It owns one replica (and its worker thread), its views,
one peer transport, the peer table and the task group of every background task; each
concern of a running host lives in a part of its own, which owns its state:

- ``replication.Replication``: the sans-I/O gossiper's driver (anti-entropy, eager
  push, serving peers, ``sync_now``);
- ``membership.Membership``: our host announcement, peer exchange, mDNS, the tailnet;
- ``rotation.Rotation``: a key rotation's grace and the retired keys;
- ``joining.Joining``: invitations issued, redeemed here, redeemed elsewhere.

The parts reach the node through the small core below (``call``, ``replica``,
``table``, ``trust_set``, ``spawn``, …), never through each other's fields.

    async with Node(home, listen="127.0.0.1:0", peers=["10.0.0.2:7471"]) as node:
        rid = await node.remember("Provider X drops requests at 03:00 UTC",
                                  category="anti-pattern", subject="provider:x")
        hits = node.recall("provider x")

Lifecycle (like trio's ``nursery.start``): ``__aenter__`` returns only once the replica
is open and the server listens, and raises if either fails (leaving nothing behind);
``__aexit__`` stops every background task (one ``asyncio.TaskGroup``, owned by the node,
not by the caller's task), closes the transport and the replica, and joins the
replica's thread.

Threads: the replica is touched only from one ``ReplicaWorker`` thread; the event loop
never blocks on SQLite commits or signature checks. Reads (``recall``, ``breaker``,
``benchmark``, ``peers``) read the views under their lock, which a change holds for one
record at a time; past ``read_timeout`` seconds they log degraded mode and answer empty
(invariant 11). A write is acknowledged once it is durable locally; network I/O happens
in background tasks. The user operations (``remember``, ``retract``, breakers,
benchmarks) run the operations of ``gossip.ops`` on this node, with their rules.

Transport: HTTP over TLS 1.3 pinned to host keys (``tls.py``), or plain HTTP when
``tls=False`` (``--insecure-plaintext``). This package never parses wire bytes
(``gossip.protocol`` does), never signs requests (``transport.py`` and ``auth.py`` do)
and never writes to the document except through ``Replica.put``.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import logging
import random
import time
from collections.abc import AsyncIterator, Callable, Coroutine, Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from crdt import GossipError, Identity, Outcome, Replica, SignedRecord
from crdt.records import KIND_BREAKER, KIND_HOST, split_state_key
from crdt.trust import TrustSet
from crdt.views import Benchmark, Breaker, Memory, ViewConfig, Views

from .. import auth, config, invites
from ..config import MdnsSettings, Profile, TailnetSettings
from ..discovery import DiscoveryStatus
from ..events import BreakerChanged, Event, PeerChanged, RecordAdded, Subscription
from ..http import HttpTransport
from ..peers import UNKNOWN_KEY, Peer, PeerInfo, PeerTable
from ..tls import PLAINTEXT, TLS, PinnedTls
from ..transport import ServerLimits, Transport
from ..worker import READ, WRITE, ReplicaWorker
from .joining import Joining
from .membership import Membership
from .replication import Replication, SyncReport
from .rotation import Rotation, revoke_record

if TYPE_CHECKING:
    from ..ops.online import NodeHost
    from .thread import NodeThread

log = logging.getLogger("gossip.node")

T = TypeVar("T")

EVENT_QUEUE = 1024  # events buffered per subscriber before the oldest are dropped


class TransportFactory(Protocol):
    """How a node makes its transport; ``HttpTransport`` and
    ``MemoryNetwork().transport`` both fit."""

    def __call__(
        self,
        identity: Identity,
        verifier: auth.Verifier,
        *,
        now_ms: Callable[[], int],
        limits: ServerLimits | None = ...,
        timeout: float = ...,
    ) -> Transport: ...


class Node:
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
    ) -> None:
        """``mdns`` / ``tailnet`` turn on those discovery sources; their settings come
        from the ``[mdns]`` / ``[tailnet]`` sections of ``home/config.toml`` unless
        given here. ``advertise``: the addresses our host announcement names (default:
        the listen address, or this machine's for a wildcard); ``[]`` writes none, for
        a node that lives one command (its port would mislead peers).
        ``follow_vouches``: trust keys that trusted hosts vouch for (default: ``[trust]
        follow_vouches`` of the config file). ``tls``: the peer port speaks TLS 1.3
        pinned to host keys (``gossip/tls.py``); False is the explicit
        ``--insecure-plaintext`` opt-in. It applies to the default transport (a
        ``transport`` factory given here makes its own choice)."""
        self.home = Path(home).expanduser()
        self.profile = profile if isinstance(profile, Profile) else Profile.named(profile)
        self._listen = config.check_address(listen)
        self._factory: TransportFactory | None = transport
        self._tls = tls
        self._now_ms = now_ms or _wall_ms
        self.rng = rng or random.Random()
        self._name = name
        self.read_timeout = read_timeout
        self._follow_vouches = follow_vouches
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
        self._verifier: auth.Verifier | None = None
        self._address: str | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._runner: asyncio.Task[None] | None = None
        self._tg: asyncio.TaskGroup | None = None
        self._changes: list[tuple[str, str, SignedRecord]] = []  # worker thread only
        self._subscribers: set[Subscription] = set()
        self._ops: NodeHost | None = None
        self.membership = Membership(
            self, advertise=advertise, static=[config.check_address(p) for p in peers],
            mdns=mdns, tailnet=tailnet,
        )  # fmt: skip
        self.membership.mdns_settings = mdns_settings
        self.membership.tailnet_settings = tailnet_settings
        self.rotation = Rotation(self)
        self.joining = Joining(self)
        self.replication = Replication(self)

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
        return self._name or ""

    def now_ms(self) -> int:
        """This node's clock (ms since the epoch): the time its records are signed with."""
        return self._now_ms()

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
    def running(self) -> bool:
        return self._state == "running"

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
        return "" if self._factory is not None else (TLS if self._tls else PLAINTEXT)

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
        try:
            self._worker = ReplicaWorker(after_job=self._after_job)
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
            self.replication.start()
            verifier = auth.Verifier(
                lambda: self._trust.keys, self._now_ms,
                window_ms=int(self.profile.auth_window * 1000), started_ms=self._now_ms(),
            )  # fmt: skip
            verifier.successors = lambda: self._trust.successors
            self._verifier = verifier
            self.rotation.start(verifier)
            factory = self._factory
            if factory is None:
                pinned = await self._worker.call(self._make_tls) if self._tls else None
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
            self._address = await self._transport.start(self._listen, self.replication.handle)
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

    async def _close(self) -> None:
        if self._state in ("stopping", "closed"):
            return
        self._state = "stopping"
        await self.membership.close()  # goodbyes first, while we still answer
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
                await worker.call(self._shut)
            except Exception:
                log.exception("closing the replica in %s failed", self.home)
            worker.close()  # idle now (everything after _shut is cancelled): joins at once
        for sub in list(self._subscribers):
            sub.close()
        self.replication.stop()
        self._state = "closed"

    def _open(self) -> None:
        """In the worker: open the replica and its views, subscribe to their changes."""
        replica = Replica.open(self.home, now_ms=self._now_ms, create=True)
        m = self.membership
        try:
            if (
                self._name is None
                or self._follow_vouches is None
                or (m.use_mdns and m.mdns_settings is None)
                or (m.use_tailnet and m.tailnet_settings is None)
            ):
                cfg = config.load(self.home)
                self._name = cfg.name if self._name is None else self._name
                m.mdns_settings = m.mdns_settings or cfg.mdns
                m.tailnet_settings = m.tailnet_settings or cfg.tailnet
                if self._follow_vouches is None:
                    self._follow_vouches = cfg.follow_vouches
            self._views = Views(replica, ViewConfig(follow_vouches=bool(self._follow_vouches)))
            replica.on_change(self._on_change)
            self._views.on_trust_change(self._on_trust_set)
            self._trust = self._views.trust()
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
        if views is not None:
            views.close()
        self._changes.clear()
        if replica is not None:
            replica.close()

    # -- what the worker reports ----------------------------------------------------------

    def _on_change(self, root: str, key: str, rec: SignedRecord | None) -> None:
        # Worker thread, inside a replica call: only note it (views are already current).
        if rec is not None:
            self._changes.append((root, key, rec))

    def _on_trust_set(self, trust: TrustSet) -> None:
        """Worker thread (inside a replica call): the effective trusted set changed."""
        self._trust = trust
        if self._loop is not None and self._state in ("starting", "running"):
            with contextlib.suppress(RuntimeError):  # the loop is gone
                self._loop.call_soon_threadsafe(self._trust_changed)

    def _trust_changed(self) -> None:
        """Loop thread: rows of rotated keys take their successor's key; rows of keys no
        longer trusted stop being exchanged with; refused ones are retried."""
        table = self._table
        if table is None:
            return
        trust = self._trust
        for p in table:
            if p.key is not None and (new := trust.current(p.key)) != p.key:
                table.rekey(p.key, new)
        table.keyring_changed(self._now_ms())
        self.wake()

    def _after_job(self) -> None:
        """Worker thread, after each job: turn the noted changes into events."""
        if not self._changes or self._views is None or self._loop is None:
            self._changes.clear()
            return
        changes, self._changes = self._changes, []
        keys = self._trust.keys
        listened = bool(self._subscribers)  # racy read: a new subscriber misses only older events
        events: list[Event] = []
        hosts: list[SignedRecord] = []
        for root, key, rec in changes:
            try:
                kind, author = rec.kind, rec.author
            except (GossipError, KeyError):
                continue
            if root == "state" and kind == KIND_HOST:
                hosts.append(rec)
            if not listened:
                continue
            trusted = author in keys
            if root == "state" and kind == KIND_BREAKER:
                name = _state_name(key)
                merged = self._views.breaker(name)
                state = merged.state if merged is not None else "closed"
                observed = str(rec.fields.get("state", ""))
                events.append(BreakerChanged(name, state, author, observed, rec, trusted))
                continue
            events.append(RecordAdded(root, key, rec, trusted))
        with contextlib.suppress(RuntimeError):  # the loop is gone: nobody listens
            self._loop.call_soon_threadsafe(self._delivered, events, hosts)

    def _delivered(self, events: list[Event], hosts: list[SignedRecord]) -> None:
        for event in events:
            self._publish(event)
        if hosts:
            self.membership.learn_hosts(hosts)

    def _publish(self, event: Event) -> None:
        for sub in self._subscribers:
            sub.put(event)

    def _on_peer(self, peer: Peer, change: str) -> None:
        if change == "removed":
            self.replication.peer_removed(peer)
        elif change == "added" and peer.state != UNKNOWN_KEY:
            # Sync with a newcomer now (it is the least recently synced of all): it gets
            # our announcements of the others without waiting for a round. Not for a
            # row we never exchange with: a flood of fake mDNS instances wakes nothing.
            self.wake()
        self._publish(PeerChanged(change, self._info(peer)))

    def _info(self, peer: Peer) -> PeerInfo:
        return dataclasses.replace(peer.info(), transport=self.transport_mode)

    # -- writing -------------------------------------------------------------------------

    async def write_record(self, make: Callable[[Identity, int], SignedRecord]) -> SignedRecord:
        """Sign ``make(identity, now)`` as this host, write it durably, push it eagerly:
        the one write path of the operations (``gossip.ops``). Never touches the network
        before returning."""

        def job() -> tuple[SignedRecord, Any]:
            replica = self.replica
            rec = make(replica.identity, self._now_ms())
            return rec, replica.put(rec)

        rec, su = await self.call(job)
        if su is not None:
            self.replication.queue_push([su.raw], covers={su.client: su.header.end})
        return rec

    async def _op(self, operation: str, **params: Any) -> Any:
        from ..ops import run

        return await run(self.ops, operation, params)

    async def remember(
        self,
        text: str,
        *,
        category: str = "learning",
        subject: str | None = None,
        tags: Iterable[str] = (),
        expires_in: float | None = None,
        supersedes: str | None = None,
    ) -> str:
        """Write a memory; returns its record id once it is durable here (the
        ``remember`` operation: its limits, ``gossip.errors.Invalid`` if one is broken)."""
        return (await self._op("remember", text=text, category=category, subject=subject,
                               tags=list(tags), expires_in=expires_in,
                               supersedes=supersedes))["id"]  # fmt: skip

    async def retract(self, record_id: str, *, reason: str = "") -> str:
        """Retract one of our memories (readers hide it); returns the retraction's id
        (the earlier one if it was retracted already). Another host's memory is refused
        (``Conflict``): readers honour only a memory's own author's retraction."""
        return (await self._op("retract", id=record_id, reason=reason))["retraction"]

    async def trip_breaker(
        self, name: str, *, reason: str = "", cooldown: float = 600.0, failures: int = 0
    ) -> None:
        """Say, as this host, that breaker ``name`` is open for ``cooldown`` seconds."""
        await self._op("breaker_trip", name=name, reason=reason, cooldown=cooldown,
                       failures=failures)  # fmt: skip

    async def reset_breaker(self, name: str, *, reason: str = "") -> None:
        """Say, as this host, that breaker ``name`` is closed (``NotFound`` if no host
        ever named it)."""
        await self._op("breaker_reset", name=name, reason=reason)

    async def record_benchmark(
        self, subject: str, metric: str, value: float, *, unit: str = ""
    ) -> None:
        """Record this host's latest observation of ``metric`` for ``subject``."""
        await self._op("bench_record", subject=subject, metric=metric, value=value, unit=unit)

    def trust(self, key: str, name: str = "") -> None:
        """Add ``key`` to the keyring: count its records, exchange with it. Effective when
        it returns; call it from the node's event loop (it waits for the replica). A
        revoked key is refused (``Conflict``), as ``trust add`` refuses it everywhere."""
        from ..ops.keys import check_trustable

        check_trustable(key, self.id, self._trust)
        self.keyring_changed(self.change_now(lambda: self.replica.trust(key, name)))

    def distrust(self, key: str) -> bool:
        """Remove ``key`` from the keyring; False if it was not in it."""
        removed: list[bool] = []
        self.keyring_changed(self.change_now(lambda: removed.append(self.replica.distrust(key))))
        return removed[0]

    def keyring(self) -> dict[str, str]:
        """Trusted keys, id -> name (this host included)."""
        return self.replica.keyring()

    async def revoke(self, key: str, *, retroactive: bool = False, reason: str = "") -> str:
        """Publish a signed ``revoke`` of ``key``; returns the record id. Allowed for a
        key this host invited (a vouch the key accepted), or one of its own retired keys
        (its successor is ours); GossipError otherwise (use ``distrust``, which is
        local)."""
        # Revoking a key we rotated away from leaves the rotation's grace alone: a peer
        # that has not got the successor yet cannot honour this revoke either (its author
        # is the successor), still trusts the old key, and learns both from us only if
        # we keep answering and signing with the old key until it holds them.
        rec = await self.write_record(lambda i, now: revoke_record(
            self._views, i, key, now, retroactive=retroactive, reason=reason))  # fmt: skip
        return rec.id

    async def rotate_key(self) -> str:
        """Switch this host to a fresh key, without a failed exchange; returns its id.

        The old key signs a ``successor`` record (pushed at once); the replica, our host
        announcement and our answers move to the new key. Peers that have not learnt
        the successor yet keep working: a request addressed to the old key is still
        answered by it (``Verifier.retired``), and requests to a peer are signed by the
        old key until the peer's state vector shows it holds the successor record (or
        the grace ran out: ``rotation.py``). Over TLS the server presents the old key's
        certificate for that grace. After it, the old key is revoked (signed by the new
        one) and deleted from ``retired/``."""
        return await self.rotation.rotate()

    # -- invitations ---------------------------------------------------------------------

    async def invite(self, *, ttl: float = invites.DEFAULT_TTL_S, name: str = "") -> invites.Token:
        """A single-use invitation token for a new host (`gossip trust invite`); it names
        our key and the addresses we announce, and expires after ``ttl`` seconds."""
        return await self.joining.invite(ttl, name)

    async def join(self, token: str, *, name: str = "", members: bool = True) -> dict[str, Any]:
        """Redeem an invitation (`gossip trust join`): trust the inviter's key,
        prove the token's secret to it, and (``members``) trust the keys it trusts.
        InviteError (nothing trusted) if the token is bad, used, expired or the inviter
        unreachable."""
        return await self.joining.join(token, name=name, members=members)

    # -- replication -----------------------------------------------------------------------

    async def sync_now(self, fanout: int | None = None) -> SyncReport:
        """One push-pull exchange now with every peer (or with the ``fanout`` least
        recently synced), whatever their backoff; an exchange already running with a
        peer is waited for first. For tools and tests."""
        return await self.replication.sync_now(fanout)

    async def sync_with(self, address: str) -> SyncReport:
        """One exchange now with the peer at ``address``; a new address stays in the peer
        table (as a static peer) only if the exchange worked. For `gossip sync ADDR`."""
        return await self.replication.sync_with(address)

    async def offer(self, updates: Sequence[bytes], *, source: str) -> list[Outcome]:
        """Offer signed updates that came from outside the network (an import file) to
        the gate, as a peer's would be; peers get what is new by anti-entropy."""
        return await self.replication.offer(updates, source=source)

    def discovery(self) -> list[DiscoveryStatus]:
        """How each source of peers is doing, for ``gossip status``: one
        ``DiscoveryStatus(source, state, detail)`` per source ("static", "tailnet",
        "mdns", "exchange"), ``state`` being "ok", "warning" (enabled but not working:
        ``detail`` says why, e.g. tailscale missing or not Running) or "off"."""
        return self.membership.status()

    # -- reading (local views only, never the network) -----------------------------------

    def _read(self, fn: Callable[[Views], T], fallback: T, what: str) -> T:
        """Read the views from this thread. A change holds their lock for one record at a
        time; past ``read_timeout``, or when the node is not running, answer empty."""
        views = self._views
        if views is None or self._state != "running":
            log.warning("%s: the node is not running; degraded mode, answering empty", what)
            return fallback
        if not views.lock.acquire(timeout=self.read_timeout):
            log.warning("%s: the views stayed busy for %.1f s; degraded mode, answering "
                        "empty", what, self.read_timeout)  # fmt: skip
            return fallback
        try:
            return fn(views)
        except Exception as e:  # a closing replica, a bug: still never break the caller
            log.warning("%s failed (%s); degraded mode, answering empty", what, e)
            return fallback
        finally:
            views.lock.release()

    async def _read_replica(self, fn: Callable[[Replica], T], fallback: T, what: str) -> T:
        """Read the replica itself (in its thread), empty past ``read_timeout``."""
        try:
            return await asyncio.wait_for(self.call(lambda: fn(self.replica), priority=READ),
                                          self.read_timeout)  # fmt: skip
        except TimeoutError:
            log.warning("%s: no answer from the replica within %.1f s; degraded mode, "
                        "answering empty", what, self.read_timeout)  # fmt: skip
        except GossipError as e:
            log.warning("%s: %s; degraded mode, answering empty", what, e)
        return fallback

    def recall(
        self,
        query: str | None = None,
        *,
        category: str | None = None,
        subject: str | None = None,
        tag: str | None = None,
        author: str | None = None,
        limit: int = 20,
        include_untrusted: bool = False,
    ) -> list[Memory]:
        """Memories matching ``query`` as this host's views see them (trust filter,
        retractions, expiry, quotas). Empty, never an exception, when degraded."""
        return self._read(
            lambda v: v.recall(query, category=category, subject=subject, tag=tag,
                               author=author, limit=limit,
                               include_untrusted=include_untrusted).hits,
            [], "recall",
        )  # fmt: skip

    def breaker(self, name: str, *, include_untrusted: bool = False) -> Breaker:
        """Breaker ``name`` merged across trusted hosts; closed if nobody said anything."""
        closed = Breaker(name, "closed", [], "", None, [])
        found = self._read(
            lambda v: v.breaker(name, include_untrusted=include_untrusted), None, "breaker"
        )
        return found if found is not None else closed

    def breakers(self, *, include_untrusted: bool = False) -> list[Breaker]:
        return self._read(
            lambda v: v.breakers(include_untrusted=include_untrusted), [], "breakers"
        )

    def benchmark(
        self, subject: str, metric: str, *, include_untrusted: bool = False
    ) -> Benchmark | None:
        return self._read(
            lambda v: v.benchmark(subject, metric, include_untrusted=include_untrusted),
            None, "benchmark",
        )  # fmt: skip

    async def records(self) -> dict[str, SignedRecord]:
        """Every immutable record, by id, with no trust filter (for tools and tests)."""
        return await self._read_replica(lambda r: r.records(), {}, "records")

    async def hosts(self) -> dict[str, SignedRecord]:
        """Every host announcement (ours too), by author, with no trust filter."""
        return await self._read_replica(
            lambda _: {r.author: r for r in self.membership.host_records()}, {},
            "host announcements",
        )  # fmt: skip

    async def state_vector(self) -> dict[int, int]:
        return await self._read_replica(lambda r: r.state_vector(), {}, "state_vector")

    async def query(self, fn: Callable[[Replica, Views], T]) -> T:
        """Run ``fn(replica, views)`` in the replica's thread as a read, for tools and the
        local API (inspect, provenance); ``fn`` must not write. Raises GossipError when
        the node is not running; no timeout (the caller bounds it)."""

        def job() -> T:
            if self._replica is None or self._views is None:
                raise GossipError("the node is not running")
            return fn(self._replica, self._views)

        return await self.call(job, priority=READ)

    def peers(self) -> list[PeerInfo]:
        """The peer table, as snapshots (no replica involved, so no waiting)."""
        return [self._info(p) for p in self._table] if self._table is not None else []

    async def events(self) -> AsyncIterator[Event]:
        """Records added, breakers changed, peers changed, as they happen, until the node
        closes. A subscriber that falls behind gets ``EventsLost`` instead of the oldest."""
        sub = Subscription(EVENT_QUEUE)
        if self._state in ("stopping", "closed"):
            return
        self._subscribers.add(sub)
        try:
            while (event := await sub.get()) is not None:
                yield event
        finally:
            self._subscribers.discard(sub)

    # -- embedding in synchronous code ---------------------------------------------------

    def start_in_thread(self, *, timeout: float = 30.0) -> NodeThread:
        """Run this node in a thread of its own, for synchronous daemons; returns once it
        listens. Use the handle's blocking methods; ``close()`` it (or ``with`` it)."""
        from .thread import NodeThread

        return NodeThread(self, timeout=timeout)


def _state_name(key: str) -> str:
    try:
        return split_state_key(key)[2]
    except GossipError:
        return key


def _wall_ms() -> int:
    return time.time_ns() // 1_000_000
