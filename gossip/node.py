"""Node: the embeddable facade. It owns one replica, its views, one peer transport, the
peer table, and every background task of replication.

    async with Node(home, listen="127.0.0.1:0", peers=["10.0.0.2:7471"]) as node:
        rid = await node.remember("Provider X drops requests at 03:00 UTC",
                                  category="anti-pattern", subject="provider:x")
        hits = node.recall("provider x")

Lifecycle (like trio's ``nursery.start``): ``__aenter__`` returns only once the replica
is open and the server listens, and raises if either fails (leaving nothing behind);
``__aexit__`` stops every background task (one ``asyncio.TaskGroup``, owned by the node,
not by the caller's task), closes the transport (listening socket, client connections)
and the replica, and joins the replica's thread.

Threads: the replica is touched only from one ``ReplicaWorker`` thread; the event loop
never blocks on SQLite commits or signature checks. Reads (``recall``, ``breaker``,
``benchmark``, ``peers``) are plain methods reading the views under their lock, which a
change holds for one record at a time; past ``read_timeout`` seconds they log degraded
mode and answer empty (invariant 11). A failing peer never
makes a read or a write slow or raise: network I/O happens in background tasks, and a
write is acknowledged once it is durable locally. ``start_in_thread()`` wraps all this
for synchronous daemons.

Replication (DESIGN.md "Replication"):
- anti-entropy: every ``interval`` (jittered), push-pull (``protocol.Initiator``) with
  ``fanout`` peers chosen by the ``PeerTable``;
- eager push: a local write is pushed at once to ``fanout`` healthy peers, and what a
  peer's PUSH taught us is passed on to ``fanout`` others (never back to the sender,
  never to a peer whose last state vector shows it already has it);
- peer exchange: hosts announce ``addrs`` and ``port`` in the document; announcements of
  trusted authors become peers (source ``exchange``). Keys come only from our keyring
  (invariant 9): a peer that refuses our key (403), or whose answer is signed by a key
  we do not trust, is marked ``unknown-key``.
- discovery (``gossip/discovery``): ``mdns=True`` advertises and browses on the LAN,
  ``tailnet=True`` reads ``tailscale status --json``; both only propose addresses (an
  mDNS id is a claim: outside the keyring the row is ``unknown-key`` and never
  exchanged with). ``discovery()`` says how each source is doing.

Transport: HTTP over TLS 1.3 pinned to host keys (``tls.py``; the certificate is written
to the data dir at start), or plain HTTP when ``tls=False`` (``--insecure-plaintext``).

This module never parses wire bytes (protocol.py does), never signs requests
(transport.py and auth.py do) and never writes to the document except through
``Replica.put``.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import dataclasses
import functools
import json
import logging
import random
import threading
import time
from collections.abc import AsyncIterator, Callable, Coroutine, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from crdt import GossipError, Identity, Outcome, Replica, SignedRecord, records, semantic
from crdt.records import KIND_BREAKER, KIND_HOST, split_state_key
from crdt.trust import TrustSet
from crdt.views import Benchmark, Breaker, Memory, ViewConfig, Views

from . import auth, config, invites, protocol
from .addresses import machine_addresses
from .config import ConfigError, MdnsSettings, Profile, TailnetSettings
from .discovery import OFF, OK, DiscoveryStatus
from .discovery.mdns import MdnsDiscovery, Sighting
from .discovery.tailnet import TailnetDiscovery, TailnetPeer
from .events import BreakerChanged, Event, PeerChanged, RecordAdded, Subscription
from .http import HttpTransport, join_address, split_address
from .peers import UNKNOWN_KEY, Peer, PeerInfo, PeerTable
from .protocol import RemoteProtocolError
from .tls import PLAINTEXT, TLS, PinnedTls, TlsSetupError
from .transport import (
    JOIN_PATH,
    PUSH_PATH,
    SYNC_PATH,
    PeerError,
    PeerMisbehaved,
    PeerRefused,
    PeerUnreachable,
    ServerLimits,
    Transport,
)
from .worker import READ, WRITE, ReplicaWorker

if TYPE_CHECKING:
    from .ops.online import NodeHost

log = logging.getLogger(__name__)

T = TypeVar("T")

INGEST_CHUNK = 512  # updates per replica call; reads run between chunks
MAX_OUTBOX = 4096  # eager-push updates queued per peer; beyond, anti-entropy repairs
EVENT_QUEUE = 1024  # events buffered per subscriber before the oldest are dropped
EMBED_IDLE_S = 0.25  # how soon a new memory's vector is built once the backlog is done


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


# A rotation signs requests with the old key until every live peer confirmed the
# successor record, or for this long at most (10 anti-entropy rounds, at least 2 min).
ROTATION_GRACE = 10
ROTATION_GRACE_MIN_S = 86400.0  # a peer away for a day still finds the old key answering


@dataclass(frozen=True)
class _Rotation:
    """A key rotation in progress: ``old`` signs requests to peers that may not have
    the successor record yet (at clock ``end`` of ``client``), until ``deadline_ms``.
    ``confirmed``: peers whose own state vector (in a message of theirs, never our
    guess of what our reply taught them) showed they hold it."""

    old: Identity
    client: int
    end: int
    deadline_ms: int
    confirmed: set[str] = field(default_factory=set)

    def saw(self, key: str | None, sv: dict[int, int] | None) -> None:
        if key is not None and sv is not None and sv.get(self.client, 0) >= self.end:
            self.confirmed.add(key)


@dataclass(frozen=True)
class SyncReport:
    """What ``sync_now`` did."""

    exchanges: int  # peers that completed an exchange
    failures: int  # peers that failed
    learned: int  # updates applied from them


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
        self._static = [config.check_address(p) for p in peers]
        self._factory: TransportFactory | None = transport
        self._tls = tls
        self._now_ms = now_ms or _wall_ms
        self._rng = rng or random.Random()
        self._name = name
        self._advertise = list(advertise) if advertise is not None else None
        self.read_timeout = read_timeout
        self._state = "new"  # new | starting | running | stopping | closed
        self._replica: Replica | None = None
        self._views: Views | None = None
        self._worker: ReplicaWorker | None = None
        self._embed_pool: concurrent.futures.ThreadPoolExecutor | None = None
        self._transport: Transport | None = None
        self._identity: Identity | None = None
        self._table: PeerTable | None = None
        # The effective trusted set (crdt.trust, via the views): the one source of "do we
        # trust this key" for exchange auth (auth.Verifier), peer selection (PeerTable)
        # and anything else that asks (TLS pinning). Replaced whole, from the replica's
        # thread, before the change that caused it is acknowledged.
        self._keyring: frozenset[str] = frozenset()
        self._trust = TrustSet(frozenset())
        self._follow_vouches = follow_vouches
        self._verifier: auth.Verifier | None = None
        self._rotation: _Rotation | None = None
        self._retired_keys: dict[str, Identity] = {}
        self._resumed: tuple[Identity, int, int] | None = None
        self._join_lock = asyncio.Lock()  # one redemption at a time (invites.json)
        self._address: str | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._runner: asyncio.Task[None] | None = None
        self._tg: asyncio.TaskGroup | None = None
        self._wake = asyncio.Event()
        self._settled = asyncio.Event()  # replaced by a fresh one after each set()
        self._changes: list[tuple[str, str, SignedRecord]] = []  # worker thread only
        self._subscribers: set[Subscription] = set()
        self._outbox: dict[Peer, list[bytes]] = {}
        self._pushing: set[Peer] = set()
        self._use_mdns = mdns
        self._use_tailnet = tailnet
        self._mdns_settings = mdns_settings
        self._tailnet_settings = tailnet_settings
        self._mdns: MdnsDiscovery | None = None
        self._tailnet: TailnetDiscovery | None = None
        self._tailnet_seen: dict[str, tuple[str, ...]] = {}  # node -> addresses
        self._ops: NodeHost | None = None

    @property
    def _message_budget(self) -> int:
        """Bytes of updates one message may carry: half our body limit, and never more
        than the protocol's 4 MiB, so that a peer on another profile (a smaller limit)
        does not answer 413 either."""
        half = max(64 * 1024, self.profile.max_body_bytes // 2)
        return min(half, protocol.DEFAULT_MESSAGE_BYTES)

    # -- identity ------------------------------------------------------------------------

    @property
    def id(self) -> str:
        """This host's public id (base64url Ed25519 key)."""
        return self._require(self._identity).public_id

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
        from .ops.online import NodeHost

        if self._ops is None:
            self._ops = NodeHost(self, read_timeout=max(self.read_timeout, 5.0))
        return self._ops

    @property
    def transport(self) -> Transport:
        return self._require(self._transport)

    @property
    def running(self) -> bool:
        return self._state == "running"

    def _require(self, value: T | None) -> T:
        if value is None:
            raise GossipError("the node is not running (use `async with Node(...)`)")
        return value

    # -- lifecycle -----------------------------------------------------------------------

    async def __aenter__(self) -> Node:
        if self._state != "new":
            raise GossipError("a Node is started once; make a new one")
        self._state = "starting"
        self._loop = asyncio.get_running_loop()
        try:
            self._worker = ReplicaWorker(after_job=self._after_job)
            await self._worker.call(self._open)
            identity = self._require_replica().identity
            self._identity = identity
            self._table = PeerTable(
                identity.public_id,
                backoff_base_ms=int(self.profile.backoff_base * 1000),
                backoff_cap_ms=int(self.profile.backoff_cap * 1000),
                rng=self._rng,
                listener=self._on_peer,
                trusts=lambda key: key in self._keyring,
            )
            verifier = auth.Verifier(
                lambda: self._keyring, self._now_ms,
                window_ms=int(self.profile.auth_window * 1000), started_ms=self._now_ms(),
            )  # fmt: skip
            verifier.retired.update(self._retired_keys)
            verifier.successors = lambda: self._trust.successors
            self._verifier = verifier
            if self._resumed is not None:  # rotated while stopped (or just before)
                old, client, end = self._resumed
                grace = max(ROTATION_GRACE * self.profile.interval, ROTATION_GRACE_MIN_S)
                self._rotation = _Rotation(old, client, end, self._now_ms() + int(grace * 1000))
                verifier.request_signer = self._request_signer
            factory = self._factory
            if factory is None:
                pinned = await self._worker.call(self._pinned_tls) if self._tls else None
                if pinned is not None and self._rotation is not None:
                    # Peers may not hold the successor yet: present the old key until
                    # the grace ends (docs/protocol.md, "TLS").
                    await self._worker.call(pinned.present, self._rotation.old.public_id)
                factory = functools.partial(HttpTransport, tls=pinned)
            self._transport = factory(
                identity, verifier, now_ms=self._now_ms,
                limits=ServerLimits(max_body_bytes=self.profile.max_body_bytes),
                timeout=self.profile.request_timeout,
            )  # fmt: skip
            self._address = await self._transport.start(self._listen, self._handle)
            now = self._now_ms()
            for address in self._static:
                if address != self._address:
                    self._table.add([address], "static", now=now)
            hosts = await self._worker.call(self._announce)
            self._learn_hosts(hosts)
            self._make_discovery()
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
                tg.create_task(self._anti_entropy(), name="anti-entropy")
                tg.create_task(self._embed_memories(), name="embeddings")
                if self._mdns is not None:
                    tg.create_task(self._mdns.run(self.profile.readdress), name="mdns")
                if self._tailnet is not None:
                    tg.create_task(self._tailnet.run(), name="tailnet")
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

    async def _embed_memories(self) -> None:
        """Build the semantic lane's vectors in the background, a batch at a time, so a
        catch-up of 100k memories never holds a recall (lexical until they are ready)."""
        index = self._views.semantic if self._views is not None else None
        if index is None:
            return
        # Its own thread, joined by _close: the replica's worker stays free for reads.
        pool = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="embeddings")
        self._embed_pool = pool
        while True:
            try:
                done = await self._loop.run_in_executor(pool, index.catch_up, index.BATCH)
            except Exception:  # a full disk, a damaged file: recall stays lexical, says so
                log.exception("building the semantic index in %s failed", self.home)
                return
            if not done:
                await asyncio.sleep(EMBED_IDLE_S)

    async def _close(self) -> None:
        if self._state in ("stopping", "closed"):
            return
        self._state = "stopping"
        if self._mdns is not None:  # goodbyes first, while we still answer; for good:
            try:  # its task must not register us again while we close
                await self._mdns.close()
            except Exception:
                log.exception("stopping mDNS of %s failed", self._address)
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
        pool, self._embed_pool = self._embed_pool, None
        if worker is not None:
            try:
                if pool is not None:  # joined where blocking harms nothing: its batch ends
                    await worker.call(pool.shutdown)
                await worker.call(self._shut)
            except Exception:
                log.exception("closing the replica in %s failed", self.home)
            worker.close()  # idle now (everything after _shut is cancelled): joins at once
        for sub in list(self._subscribers):
            sub.close()
        self._outbox.clear()
        self._state = "closed"

    def _open(self) -> None:
        """In the worker: open the replica and its views, subscribe to their changes."""
        replica = Replica.open(self.home, now_ms=self._now_ms, create=True)
        try:
            if (
                self._name is None
                or self._follow_vouches is None
                or (self._use_mdns and self._mdns_settings is None)
                or (self._use_tailnet and self._tailnet_settings is None)
            ):
                cfg = config.load(self.home)
                self._name = cfg.name if self._name is None else self._name
                self._mdns_settings = self._mdns_settings or cfg.mdns
                self._tailnet_settings = self._tailnet_settings or cfg.tailnet
                if self._follow_vouches is None:
                    self._follow_vouches = cfg.follow_vouches
            self._views = Views(replica, ViewConfig(follow_vouches=bool(self._follow_vouches)),
                                semantic=semantic.open_in_dir(self.home))  # fmt: skip
            replica.on_change(self._on_change)
            self._views.on_trust_change(self._on_trust_set)
            self._trust = self._views.trust()
            self._keyring = frozenset(self._trust.keys)
            # Keys this host retired (`gossip key rotate`) and still has: peers that have
            # not learnt the successor yet keep reaching us by them, after a restart too.
            self._retired_keys = {
                k: ident
                for k in self._trust.successors
                if self._trust.current(k) == replica.author and k in self._trust.keys
                and (ident := Identity.load_retired(self.home, k)) is not None
            }
            self._resumed = self._rotation_to_resume(replica)
        except BaseException:
            replica.close()
            raise
        self._replica = replica

    def _pinned_tls(self) -> PinnedTls:
        """In the worker: write or renew ``tls.crt`` and load the TLS contexts."""
        pinned = PinnedTls.for_host(self.home, self._require_replica().identity)
        pinned.successors = lambda: self._trust.successors
        return pinned

    def _tls_of_transport(self) -> PinnedTls | None:
        tls = getattr(self._transport, "tls", None)
        return tls if isinstance(tls, PinnedTls) else None

    def _shut(self) -> None:
        replica, self._replica = self._replica, None
        views, self._views = self._views, None
        if views is not None:
            views.close()
        self._changes.clear()
        if replica is not None:
            replica.close()

    def _require_replica(self) -> Replica:
        if self._replica is None:
            raise GossipError("the node is not running")
        return self._replica

    # -- the worker and what it reports -------------------------------------------------

    async def _call(self, fn: Callable[..., T], *args: Any, priority: int = WRITE) -> T:
        if self._worker is None or self._state == "closed":
            raise GossipError("the node is not running")
        try:
            fut = self._worker.submit(fn, *args, priority=priority)
        except RuntimeError:
            raise GossipError("the node is not running") from None
        return await asyncio.wrap_future(fut)

    def _on_change(self, root: str, key: str, rec: SignedRecord | None) -> None:
        # Worker thread, inside a replica call: only note it (views are already current).
        if rec is not None:
            self._changes.append((root, key, rec))

    def _on_trust_set(self, trust: TrustSet) -> None:
        """Worker thread (inside a replica call): the effective trusted set changed."""
        self._trust = trust
        self._keyring = frozenset(trust.keys)
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
        self._wake.set()

    def _after_job(self) -> None:
        """Worker thread, after each job: turn the noted changes into events."""
        if not self._changes or self._views is None or self._loop is None:
            self._changes.clear()
            return
        changes, self._changes = self._changes, []
        keyring = self._keyring
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
            trusted = author in keyring
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
            self._learn_hosts(hosts)

    def _publish(self, event: Event) -> None:
        for sub in self._subscribers:
            sub.put(event)

    def _on_peer(self, peer: Peer, change: str) -> None:
        if change == "removed":
            self._outbox.pop(peer, None)
        elif change == "added" and peer.state != UNKNOWN_KEY:
            # Sync with a newcomer now (it is the least recently synced of all): it gets
            # our announcements of the others without waiting for a round. Not for a
            # row we never exchange with: a flood of fake mDNS instances wakes nothing.
            self._wake.set()
        self._publish(PeerChanged(change, self._info(peer)))

    def _info(self, peer: Peer) -> PeerInfo:
        return dataclasses.replace(peer.info(), transport=self.transport_mode)

    # -- writing -------------------------------------------------------------------------

    async def _write(self, make: Callable[[Identity, int], SignedRecord]) -> SignedRecord:
        """Sign and durably write one of our records; push it eagerly. Never touches the
        network before returning."""

        def job() -> tuple[SignedRecord, Any]:
            replica = self._require_replica()
            rec = make(replica.identity, self._now_ms())
            return rec, replica.put(rec)

        rec, su = await self._call(job)
        if su is not None:
            self._queue_push([su.raw], covers={su.client: su.header.end})
        return rec

    async def write_record(self, make: Callable[[Identity, int], SignedRecord]) -> SignedRecord:
        """Sign ``make(identity, now)`` as this host, write it durably, push it eagerly:
        the one write path of the operations (``gossip.ops``)."""
        return await self._write(make)

    async def _op(self, operation: str, **params: Any) -> Any:
        from .ops import run

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
        from .ops.keys import check_trustable

        check_trustable(key, self.id, self._trust)
        self._keyring_changed(self._now(lambda: self._require_replica().trust(key, name)))

    def distrust(self, key: str) -> bool:
        """Remove ``key`` from the keyring; False if it was not in it."""
        removed: list[bool] = []
        self._keyring_changed(
            self._now(lambda: removed.append(self._require_replica().distrust(key)))
        )
        return removed[0]

    def keyring(self) -> dict[str, str]:
        """Trusted keys, id -> name (this host included)."""
        return self._require_replica().keyring()

    def trust_set(self) -> TrustSet:
        """The effective trusted set (keyring, successors, vouches, revocations): what
        exchange auth and peer selection use (``crdt.trust``)."""
        return self._trust

    # -- invitations ---------------------------------------------------------------------

    async def invite(self, *, ttl: float = invites.DEFAULT_TTL_S, name: str = "") -> invites.Token:
        """A single-use invitation token for a new host (`gossip trust invite`); it names
        our key and the addresses we announce, and expires after ``ttl`` seconds."""
        host, port = split_address(self.address)
        hosts = self._advertise if self._advertise else _advertised(host)
        addresses = [join_address(h.strip("[]"), port) for h in hosts]
        return await asyncio.to_thread(
            invites.Invitations(self.home).issue, self.id, addresses, now=self._now_ms(),
            ttl_s=ttl, name=name,
        )  # fmt: skip

    async def _redeem(self, body: bytes, joiner: str) -> bytes:
        """A newcomer proves an invitation's secret: trust it, vouch for it, and tell it
        whom we trust (it trusts them too, unless it asked not to)."""
        async with self._join_lock:
            try:
                if joiner in self._require_replica().removed() or joiner in self._trust.revoked:
                    # a removed or revoked key never re-admits itself with an old token
                    raise invites.InviteError("this key was removed here; ask for a new key")
                entry = await asyncio.to_thread(
                    invites.Invitations(self.home).redeem, self.id, joiner, body,
                    now=self._now_ms(),
                )  # fmt: skip
            except invites.InviteError as e:
                log.info("refused an invitation redemption by %s…: %s", joiner[:12], e)
                raise RemoteProtocolError(str(e)) from None
        name = str(entry["name"])
        if not entry["replay"]:  # a replay (the answer was lost) trusts nothing again
            self.trust(joiner, name)
            accept = str(entry["accept"])
            await self._write(
                lambda i, now: records.vouch(i, joiner, ts=now, name=name, accept=accept)
            )
            self._keyring_changed(await self._call(self._host_records, priority=READ))
        # Only the hosts in our own keyring (or the keys they rotated to), never a key we
        # trust only through someone's vouch: the joiner's keyring is its own choice.
        trust, keyring = self._trust, self.keyring()
        chosen = {trust.current(k) for k in keyring} | set(keyring)
        members = {k: trust.names.get(k, "") for k in sorted(chosen)
                   if k in trust.keys and k != joiner}  # fmt: skip
        members[self.id] = self._name or ""
        log.info("%s %s… (%s) by invitation", "answered again" if entry["replay"] else
                 "admitted", joiner[:12], name or "no name")  # fmt: skip
        return records.canonical({"inviter": self.id, "members": members})

    async def join(self, token: str, *, name: str = "", members: bool = True) -> dict[str, Any]:
        """Redeem an invitation (`gossip trust join`): trust the inviter's key,
        prove the token's secret to it, and (``members``) trust the keys it trusts.
        InviteError (nothing trusted) if the token is bad, used, expired or the inviter
        unreachable."""
        tok = invites.decode(token)
        if tok.inviter == self.id:
            raise invites.InviteError("this is this host's own invitation")
        if tok.expires_at <= self._now_ms():
            raise invites.InviteError("this invitation has expired; ask for a new one")
        keyring = self.keyring()
        had = tok.inviter in keyring
        self.trust(tok.inviter, keyring.get(tok.inviter) or name or "inviter")
        body = invites.join_body(tok, self._require(self._identity), self._name or "")
        answer: bytes | None = None
        error = "no address in the token"
        for address in tok.addresses:
            try:
                answer, _ = await self.transport.request(
                    address, JOIN_PATH, body, expected_key=tok.inviter
                )
                break
            except PeerRefused as e:
                if e.status in (400, 403):
                    error = str(e).removeprefix("peer answered 400: ")
                    break
                error = str(e)
            except PeerMisbehaved as e:  # e.g. another TLS key at that address
                error = (f"{e} (if the inviter rotated its key after issuing this token, "
                         "ask it for a new invitation)")  # fmt: skip
            except PeerError as e:
                error = str(e)
        if answer is None:
            if not had:  # as if we never tried (not a removal: a later join may work)
                self._keyring_changed(
                    self._now(lambda: self._require_replica().distrust(tok.inviter, block=False))
                )
            raise invites.InviteError(f"the invitation was not accepted: {error}")
        added = []
        try:
            offered = json.loads(answer).get("members", {})
        except (ValueError, AttributeError, RecursionError):
            offered = {}
        offered = offered if isinstance(offered, dict) else {}
        inviter_name = offered.get(tok.inviter)
        if not had and not name and _plain_name(inviter_name):
            self.trust(tok.inviter, inviter_name)  # the name it announces, for humans
        if members:
            keyring = self.keyring()
            for key, who in sorted(offered.items()):
                if key == self.id or key in keyring or key in self._require_replica().removed():
                    continue
                label = who if _plain_name(who) else ""
                try:
                    self.trust(key, label)
                except GossipError:
                    continue  # not a public id: the inviter's answer is not our problem
                added.append(key)
        table = self._require(self._table)
        table.add(list(tok.addresses), "exchange", key=tok.inviter, now=self._now_ms())
        self._keyring_changed(await self._call(self._host_records, priority=READ))
        return {"inviter": tok.inviter, "trusted": [tok.inviter, *added]}

    # -- key rotation and revocation -----------------------------------------------------

    async def rotate_key(self) -> str:
        """Switch this host to a fresh key, without a failed exchange; returns its id.

        The old key signs a ``successor`` record (pushed at once); the replica, our host
        announcement and our answers move to the new key. Peers that have not learnt
        the successor yet keep working: a request addressed to the old key is still
        answered by it (``Verifier.retired``), and requests to a peer are signed by the
        old key until the peer's state vector shows it holds the successor record (or
        ``ROTATION_GRACE`` rounds passed). Over TLS the server presents the old key's
        certificate for that grace. After it, the old key is revoked (signed by the new
        one) and deleted from ``retired/`` (``_retire``)."""
        new = Identity.generate()

        pinned = self._tls_of_transport()

        def job() -> tuple[Identity, Any]:
            replica = self._require_replica()
            old = replica.identity
            _, su = replica.rotate(new)
            if pinned is not None:  # new tls.crt, retired/<old>.crt; still presenting old
                try:
                    pinned.rotated(new, old.public_id)
                except TlsSetupError as e:  # the rotation is done: never undo it here
                    log.error("rotated, but the TLS certificates were not written: %s (they "
                              "are at the next start)", e)  # fmt: skip
            return old, su

        old, su = await self._call(job)
        verifier, table = self._require(self._verifier), self._require(self._table)
        verifier.retired[old.public_id] = old
        self._retired_keys[old.public_id] = old
        self._identity = new
        self.transport.identity = new
        table.self_key = new.public_id
        if su is not None:
            grace = max(ROTATION_GRACE * self.profile.interval, ROTATION_GRACE_MIN_S)
            deadline = self._now_ms() + int(grace * 1000)
            self._rotation = _Rotation(old, su.client, su.header.end, deadline)
            verifier.request_signer = self._request_signer
            self._queue_push([su.raw], covers={su.client: su.header.end})
        elif pinned is not None:  # no grace to keep (nobody to tell): present the new key
            await self._call(lambda: pinned.present(new.public_id))
        self._learn_hosts(await self._call(self._announce))
        self._wake.set()
        log.info("rotated the host key: %s… now signs for %s…", new.public_id[:12],
                 old.public_id[:12])  # fmt: skip
        return new.public_id

    def _rotation_to_resume(self, replica: Replica) -> tuple[Identity, int, int] | None:
        """In the worker, at start: the key this host rotated away from, if it still has
        it, with the clock that peers reach once they hold its successor record (a
        rotation made by `gossip key rotate` without a daemon, or before a restart)."""
        if self._views is None:
            return None
        for rec in self._views.trust_records():
            old = self._retired_keys.get(rec.author)
            if old is None or rec.kind != "successor" or rec.fields.get("key") != replica.author:
                continue
            where = replica.origin(rec.id)
            if where is not None:
                return old, int(where["client"]), int(where["clock"]) + 1
        return None

    def _request_signer(self, recipient: str) -> Identity | None:
        """During a rotation: the old key for a peer not yet known to hold the successor
        record (it may not trust the new key), else None (the new key)."""
        rot = self._rotation
        if rot is None or recipient in rot.confirmed:
            return None
        return rot.old

    def _end_rotation_if_known(self) -> None:
        """Sign every request with the new key once every trusted peer in the table (up
        or down) holds the successor record, or once the grace is over (a peer away that
        long learns the successor from the others, if any)."""
        rot, table = self._rotation, self._table
        if rot is None or table is None:
            return
        # Every trusted peer we know of, up or down: one that is away when we rotate
        # must still find the old key answering when it comes back (until the deadline).
        mine = {self.id, rot.old.public_id}
        peers = [p for p in table if p.key in self._keyring and p.key not in mine]
        known = all(p.key in rot.confirmed for p in peers)
        if known or self._now_ms() >= rot.deadline_ms:
            self._rotation = None
            if self._verifier is not None:
                self._verifier.request_signer = None
            pinned = self._tls_of_transport()
            if pinned is not None:  # new connections now prove the new key
                try:
                    pinned.present(pinned.host_id)
                except TlsSetupError as e:
                    log.error("cannot present the new key's TLS certificate: %s", e)
            if self._tg is not None:
                self._tg.create_task(self._retire(rot.old), name="retire the old key")

    async def _retire(self, old: Identity) -> None:
        """After a rotation's grace (review finding 8): publish a revoke of the old key,
        signed by the new one, then delete ``retired/<id>.key`` (and its certificate), so
        that a data dir stolen later holds no trusted old key. Signed by the successor,
        not by the old key: a peer honours it only once it holds the successor record
        too, so no peer drops the old key before it trusts the new one. The successor
        edge survives it, and the old key's records up to it still count."""
        key = old.public_id
        try:
            if key not in self._trust.revoked:  # the owner may have revoked it already
                await self.revoke(key, reason="rotated away from; the rotation's grace is over")
        except Exception as e:  # never the task group's end: the node runs on
            log.warning("could not revoke the retired key %s…: %s (kept in retired/)",
                        key[:12], e)  # fmt: skip
            return
        if self._verifier is not None:
            self._verifier.retired.pop(key, None)
        self._retired_keys.pop(key, None)
        try:
            await self._call(lambda: Identity.discard_retired(self.home, key))
        except Exception as e:
            log.warning("could not delete the retired key %s…: %s", key[:12], e)
            return
        log.info("revoked and deleted the retired key %s…", key[:12])

    async def revoke(self, key: str, *, retroactive: bool = False, reason: str = "") -> str:
        """Publish a signed ``revoke`` of ``key``; returns the record id. Allowed for a
        key this host invited (a vouch the key accepted), or one of its own retired keys
        (its successor is ours); GossipError otherwise (use ``distrust``, which is
        local)."""

        def make(identity: Identity, now: int) -> SignedRecord:
            views = self._views
            if views is None or not views.can_revoke(identity.public_id, key):
                raise GossipError(
                    f"this host cannot revoke {key[:12]}…: only the key itself, its successor "
                    "or the host that invited it can (`gossip trust remove` without "
                    "publishing is local)"
                )
            return records.revoke(identity, key, ts=now, retroactive=retroactive, reason=reason)

        # Revoking a key we rotated away from leaves the rotation's grace alone: a peer
        # that has not got the successor yet cannot honour this revoke either (its author
        # is the successor), still trusts the old key, and learns both from us only if
        # we keep answering and signing with the old key until it holds them.
        return (await self._write(make)).id

    def _now(self, change: Callable[[], object]) -> list[SignedRecord]:
        """Run a small replica change at once (ahead of queued work, between the chunks
        of an ingest) and wait for it; returns the host announcements after it."""
        if self._worker is None or self._state in ("stopping", "closed"):
            raise GossipError("the node is not running")

        def job() -> list[SignedRecord]:
            change()
            return self._host_records()

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

    def _keyring_changed(self, hosts: list[SignedRecord]) -> None:
        table = self._table
        if table is None:
            return
        table.keyring_changed(self._now_ms())
        self._learn_hosts(hosts)
        self._wake.set()

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

        def job() -> T:
            return fn(self._require_replica())

        try:
            return await asyncio.wait_for(self._call(job, priority=READ), self.read_timeout)
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
        mode: str = "hybrid",
    ) -> list[Memory]:
        """Memories matching ``query`` as this host's views see them (trust filter,
        retractions, expiry, quotas; ``mode``: hybrid, lexical or semantic). Empty, never
        an exception, when degraded."""
        return self._read(
            lambda v: v.recall(query, category=category, subject=subject, tag=tag,
                               author=author, limit=limit,
                               include_untrusted=include_untrusted, mode=mode).hits,
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
            lambda _: {r.author: r for r in self._host_records()}, {}, "host announcements"
        )

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

        return await self._call(job, priority=READ)

    def peers(self) -> list[PeerInfo]:
        """The peer table, as snapshots (no replica involved, so no waiting)."""
        return [self._info(p) for p in self._table] if self._table is not None else []

    @property
    def transport_mode(self) -> str:
        """What carries our exchanges with every peer: "tls", "plaintext" (the
        ``--insecure-plaintext`` opt-in) or, for an in-memory network, "memory"."""
        if self._transport is not None:
            return str(getattr(self._transport, "mode", "") or "")
        return "" if self._factory is not None else (TLS if self._tls else PLAINTEXT)

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

    # -- serving peers -------------------------------------------------------------------

    async def _handle(self, path: str, body: bytes, peer_key: str) -> bytes:
        """The transport's handler: an authenticated request body from ``peer_key``."""
        if path == JOIN_PATH:
            return await self._redeem(body, peer_key)
        # A DIGEST only reads: it jumps queued ingests, so that peers checking whether we
        # are in sync are not kept waiting (and backing us off) during a large catch-up.
        digest = len(body) > 4 and body[4] == protocol.MessageType.DIGEST
        resp, ours = await self._call(self._respond, path, body, peer_key,
                                      priority=READ if digest else WRITE)  # fmt: skip
        if self._rotation is not None:
            self._rotation.saw(peer_key, resp.peer_sv)  # its own word, before our reply
        rejected = [o for o in resp.received if o.status == "rejected"]
        if rejected:  # the daemon's log shows every rejection with its rule
            log.info("%s sent %d update(s) we rejected: %s", peer_key[:12], len(rejected),
                     rejected[0].error)  # fmt: skip
        table = self._table
        if table is not None:
            theirs = resp.peer_sv
            if path == SYNC_PATH and theirs is not None:  # our reply gives them what they lacked
                theirs = {c: max(theirs.get(c, 0), k) for c, k in {**theirs, **ours}.items()}
            table.inbound(peer_key, self._now_ms(), bytes_in=len(body), bytes_out=len(resp.body),
                          ours=ours if theirs is not None else None, theirs=theirs)  # fmt: skip
        if path == PUSH_PATH:
            fresh = _fresh(resp.received)
            if fresh:
                raws, covers = fresh
                self._queue_push(raws, exclude=(peer_key,), covers=covers)
        return resp.body

    def _respond(
        self, path: str, body: bytes, peer_key: str
    ) -> tuple[protocol.Response, dict[int, int]]:
        local = _ChunkedLocal(self._require_replica(), self._worker)
        # With the path, a SYNC sent to the push endpoint (or the reverse) is a 400
        # before anything is ingested.
        resp = protocol.respond(local, body, source=peer_key, path=path,
                                max_reply_bytes=self._message_budget)  # fmt: skip
        return resp, local.state_vector()

    # -- anti-entropy --------------------------------------------------------------------

    async def _anti_entropy(self) -> None:
        interval = self.profile.interval
        readdress_at = self._now_ms() + int(self.profile.readdress * 1000)
        while True:
            # A wake asked for before this round is answered by it; one asked for during
            # it (a peer found meanwhile) makes the next round start at once.
            self._wake.clear()
            try:
                await self._round()
                if self._now_ms() >= readdress_at:
                    # Our addresses may have changed (DHCP, Wi-Fi): announce the new ones.
                    readdress_at = self._now_ms() + int(self.profile.readdress * 1000)
                    self._learn_hosts(await self._call(self._announce))
            except Exception:
                log.exception("anti-entropy round of %s failed", self._address)
            # +-10 %: nodes started together do not stay in lockstep.
            delay = interval * (0.9 + 0.2 * self._rng.random())
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(delay):
                    await self._wake.wait()

    async def _round(self) -> None:
        """Start an exchange with ``fanout`` peers; wait for them at most one interval.

        A peer that accepts connections and then hangs holds its own exchange until the
        request timeout, not the rounds: it stays in flight, so the next rounds choose
        other peers meanwhile."""
        table, tg = self._table, self._tg
        if table is None or tg is None:
            return
        now = self._now_ms()
        jitter = int(self.profile.interval * 1000)
        chosen = table.select(now, self.profile.fanout, jitter_ms=jitter)
        for peer in chosen:
            table.begin(peer)
        tasks = [
            tg.create_task(self._settling(peer), name=f"exchange {peer.label}") for peer in chosen
        ]
        if tasks:
            await asyncio.wait(tasks, timeout=self.profile.interval)
        self._end_rotation_if_known()

    async def _exchanges(self, chosen: list[Peer]) -> list[int | None]:
        """Exchange with every peer of ``chosen`` and wait for all (``sync_now``)."""
        if not chosen:
            return []
        for peer in chosen:
            self._require(self._table).begin(peer)
        async with asyncio.TaskGroup() as tg:
            tasks = [tg.create_task(self._settling(peer)) for peer in chosen]
        return [t.result() for t in tasks]

    async def _settling(self, peer: Peer) -> int | None:
        """``_exchange``, then wake whoever waits for a peer to be idle (``sync_now``)."""
        try:
            return await self._exchange(peer)
        finally:
            self._settled.set()
            self._settled = asyncio.Event()

    async def sync_now(self, fanout: int | None = None) -> SyncReport:
        """One push-pull exchange now with every peer (or with the ``fanout`` least
        recently synced), whatever their backoff; an exchange already running with a
        peer is waited for first. For tools and tests."""
        table = self._require(self._table)
        chosen = (
            [p for p in table if p.key is None or table.trusts(p.key)]  # as select() does
            if fanout is None
            else table.select(0, fanout, due_only=False)
        )
        deadline = time.monotonic() + self.profile.request_timeout * 2
        while any(p.in_flight for p in chosen) and time.monotonic() < deadline:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._settled.wait(), deadline - time.monotonic())
        members = set(table)
        chosen = [p for p in chosen if p in members and not p.in_flight]
        results = await self._exchanges(chosen)
        self._end_rotation_if_known()  # as a round does: every peer just answered
        ok = [r for r in results if r is not None]
        return SyncReport(exchanges=len(ok), failures=len(results) - len(ok), learned=sum(ok))

    async def offer(self, updates: Sequence[bytes], *, source: str) -> list[Outcome]:
        """Offer signed updates that came from outside the network (an import file) to
        the gate, as a peer's would be; peers get what is new by anti-entropy."""

        def job() -> list[Outcome]:
            return _ChunkedLocal(self._require_replica(), self._worker).ingest_batch(
                updates, source=source
            )

        return await self._call(job)

    async def sync_with(self, address: str) -> SyncReport:
        """One exchange now with the peer at ``address``; a new address stays in the peer
        table (as a static peer) only if the exchange worked. For `gossip sync ADDR`."""
        table = self._require(self._table)
        address = config.check_address(address)
        if split_address(address)[1] == 0:
            raise ConfigError(f"{address}: port 0 is no peer's port")
        known = table.by_address(address)
        peer = known or table.add([address], "static", now=self._now_ms())
        if peer is None:
            raise ConfigError(f"{address} is this node's own address")
        report = await self._sync_one(peer)
        if known is None and not report.exchanges and peer in set(table):
            table.remove(peer)  # a typo must not become a peer retried forever
        return report

    async def _sync_one(self, peer: Peer) -> SyncReport:
        deadline = time.monotonic() + self.profile.request_timeout * 2
        while peer.in_flight and time.monotonic() < deadline:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._settled.wait(), deadline - time.monotonic())
        if peer.in_flight:
            return SyncReport(exchanges=0, failures=1, learned=0)
        results = await self._exchanges([peer])
        ok = [r for r in results if r is not None]
        return SyncReport(exchanges=len(ok), failures=len(results) - len(ok), learned=sum(ok))

    async def _exchange(self, peer: Peer) -> int | None:
        """One push-pull with ``peer`` (already marked busy). Returns how many updates it
        taught us, or None if it failed; never raises but CancelledError."""
        table = self._require(self._table)
        address = peer.address
        local = _ChunkedLocal(self._require_replica(), self._worker)
        # No hint to push with: ours is from our last contact, and others may have given
        # the peer the same updates since; the PUSH leg sends what its reply shows it
        # lacks. A DIGEST first: most exchanges in a mesh find the peer in sync.
        ex = protocol.Initiator(local, source=peer.key or address, digest_first=True,
                                max_message_bytes=self._message_budget)  # fmt: skip
        bytes_out = bytes_in = 0
        rtt_ms: float | None = None
        key = peer.key
        try:
            request: protocol.Request | None = await self._call(ex.start)
            while request is not None:
                started = time.perf_counter()
                reply, key = await self.transport.request(
                    address, request.path, request.body, expected_key=key
                )
                if rtt_ms is None:
                    rtt_ms = (time.perf_counter() - started) * 1000
                bytes_out, bytes_in = bytes_out + len(request.body), bytes_in + len(reply)
                ex.source = key
                if peer.key is None and table.by_key(key) is None and key != table.self_key:
                    # Name the row now: the host announcements this reply may carry then
                    # land on it, instead of adding a second row (and a round) for it.
                    table.learn_key(peer, key)
                request = await self._call(ex.receive, reply)
        except asyncio.CancelledError:
            table.cancelled(peer)
            raise
        except (PeerError, RemoteProtocolError) as e:
            self._failed(peer, e)
            return None
        except Exception:
            log.exception("exchange with %s failed on our side", peer.label)
            table.cancelled(peer)
            return None
        learned = ex.result.learned
        if self._rotation is not None:
            self._rotation.saw(key, ex.result.peer_sv)
        # A host that rotated may still answer by its old key: the row takes the new one.
        row = table.learn_key(peer, self._trust.current(key)) if key is not None else None
        if row is not None:
            table.success(row, self._now_ms(), rtt_ms=rtt_ms, bytes_in=bytes_in,
                          bytes_out=bytes_out, ours=ex.result.ours,
                          theirs=ex.result.peer_sv)  # fmt: skip
        rejected = [o for o in ex.result.received if o.status == "rejected"]
        if rejected and row is not None:
            # An honest peer relays only what its own gate accepted: rejects mean a
            # forger or a bug. Back it off like a failure (invariant 6); what it sent
            # that was valid is kept.
            error = f"sent {len(rejected)} update(s) we rejected: {rejected[0].error}"
            log.info("%s %s", row.label, error)
            table.failure(row, self._now_ms(), error)
        return learned

    def _failed(self, peer: Peer, e: Exception, *, exchange: bool = True) -> None:
        table = self._require(self._table)
        rot = self._rotation
        refused = isinstance(e, PeerRefused) and e.status == 403
        if rot is not None and refused and peer.key is not None and peer.key not in rot.confirmed:
            # It refused our old key: it honours a revocation of it, so it holds the
            # successor record too. The next request is signed with the new key.
            rot.confirmed.add(peer.key)
            table.failure(peer, self._now_ms(), str(e), exchange=exchange)
            return
        unknown_key = (isinstance(e, PeerRefused) and e.status == 403) or (
            # The answer was signed by a key we do not trust (auth.Forbidden inside).
            isinstance(e, PeerMisbehaved) and isinstance(e.__context__, auth.Forbidden)
        )
        log.debug("%s: %s", peer.label, e)
        table.failure(peer, self._now_ms(), str(e), unknown_key=unknown_key,
                      unreachable=isinstance(e, PeerUnreachable), exchange=exchange)  # fmt: skip

    # -- eager push ----------------------------------------------------------------------

    def _queue_push(
        self, updates: list[bytes], *, exclude: Iterable[str] = (), covers: dict[int, int]
    ) -> None:
        """Push ``updates`` to ``fanout`` healthy peers that may lack them. One push at a
        time per peer; what queues meanwhile goes in its next push."""
        tg, table = self._tg, self._table
        if not self.profile.eager_push or tg is None or table is None or self._state != "running":
            return
        for peer in table.push_targets(self.profile.fanout, exclude=exclude, covers=covers):
            box = self._outbox.setdefault(peer, [])
            box.extend(updates)
            del box[:-MAX_OUTBOX]  # the oldest go; anti-entropy brings them
            if peer not in self._pushing:
                self._pushing.add(peer)
                tg.create_task(self._drain(peer), name=f"push {peer.label}")

    async def _drain(self, peer: Peer) -> None:
        try:
            while updates := self._outbox.pop(peer, None):
                await self._push(peer, updates)
        finally:
            self._pushing.discard(peer)

    async def _push(self, peer: Peer, updates: list[bytes]) -> None:
        table = self._require(self._table)
        try:
            body = await self._call(
                _push_body, self._require_replica(), updates, self._message_budget
            )
            answer, key = await self.transport.request(
                peer.address, PUSH_PATH, body, expected_key=peer.key
            )
            theirs = protocol.on_push_reply(answer)
            if self._rotation is not None:
                self._rotation.saw(key, theirs)
        except (PeerError, RemoteProtocolError) as e:
            self._failed(peer, e, exchange=False)
            return
        except GossipError as e:  # the node is closing
            log.debug("push to %s abandoned: %s", peer.label, e)
            return
        row = table.learn_key(peer, self._trust.current(key))
        if row is not None:
            table.success(row, self._now_ms(), bytes_in=len(answer), bytes_out=len(body),
                          theirs=theirs, exchange=False)  # fmt: skip

    # -- host announcements and peer exchange --------------------------------------------

    def _announce(self) -> list[SignedRecord]:
        """In the worker: write our host announcement if it changed; return the trusted
        announcements of others (peer exchange)."""
        replica = self._require_replica()
        host, port = split_address(self._require(self._address))
        addrs = self._advertise if self._advertise is not None else _advertised(host)
        if not addrs:  # advertise=[]: a short-lived node (`gossip sync`) leaves ours alone
            return self._host_records()
        # ``transport``: so that a peer can say "it speaks TLS, we do not" (additive:
        # older peers relay the field untouched).
        wanted = {"name": self._name or "", "addrs": addrs, "port": port,
                  "protocol": protocol.VERSION, "transport": self.transport_mode}  # fmt: skip
        current = replica.get(f"{KIND_HOST}:{replica.author}:self")
        if current is None or {k: current.fields.get(k) for k in wanted} != wanted:
            replica.put(records.host(replica.identity, ts=self._now_ms(), **wanted))
        return self._host_records()

    def _host_records(self) -> list[SignedRecord]:
        replica = self._require_replica()
        return [r for k, r in replica.state().items() if k.startswith(f"{KIND_HOST}:")]

    def _learn_hosts(self, hosts: Iterable[SignedRecord]) -> None:
        """Announcements by trusted authors become peers (source "exchange")."""
        table = self._table
        if table is None:
            return
        now = self._now_ms()
        retired = self._verifier.retired if self._verifier is not None else {}
        for rec in hosts:
            if rec.author not in self._keyring or rec.author == table.self_key:
                continue
            if rec.author in retired or self._trust.current(rec.author) != rec.author:
                continue  # a rotated key: its successor announces the host
            addresses = _announced_addresses(rec)
            if addresses:
                name = rec.fields.get("name")
                table.add(addresses, "exchange", key=rec.author,
                          name=name if isinstance(name, str) else "", now=now)  # fmt: skip

    # -- discovery -----------------------------------------------------------------------

    def discovery(self) -> list[DiscoveryStatus]:
        """How each source of peers is doing, for ``gossip status``: one
        ``DiscoveryStatus(source, state, detail)`` per source ("static", "tailnet",
        "mdns", "exchange"), ``state`` being "ok", "warning" (enabled but not working:
        ``detail`` says why, e.g. tailscale missing or not Running) or "off"."""
        rows = self._table.rows() if self._table is not None else []

        def count(source: str) -> int:
            return sum(source in r.sources for r in rows)

        if self._static:
            detail = f"{len(self._static)} configured, {count('static')} in the peer table"
            out = [DiscoveryStatus("static", OK, detail)]
        else:
            out = [DiscoveryStatus("static", OFF, "no peers configured")]
        for source, driver in (("tailnet", self._tailnet), ("mdns", self._mdns)):
            if driver is not None:
                out.append(driver.status)
            else:
                out.append(DiscoveryStatus(source, OFF, "not enabled"))
        out.append(DiscoveryStatus("exchange", OK, f"{count('exchange')} peer(s) "
                                                   "from trusted host announcements"))  # fmt: skip
        return out

    def _make_discovery(self) -> None:
        _, port = split_address(self.address)
        if self._use_mdns:
            self._mdns = MdnsDiscovery(
                self._mdns_settings or MdnsSettings(), public_id=self.id,
                name=self._name or "", listen=self.address, version=protocol.VERSION,
                on_seen=self._mdns_seen, on_gone=self._mdns_gone,
            )  # fmt: skip
        if self._use_tailnet:
            self._tailnet = TailnetDiscovery(
                self._tailnet_settings or TailnetSettings(), port=port,
                on_peers=self._tailnet_peers,
            )  # fmt: skip

    def _mdns_seen(self, s: Sighting) -> None:
        """An mDNS instance: its addresses, with its claimed key (the table keeps a key
        we do not trust as ``unknown-key``, never exchanged with)."""
        if self._table is not None:
            self._table.add(list(s.addresses), "mdns", key=s.key, name=s.name,
                            now=self._now_ms(), claim=True)  # fmt: skip

    def _mdns_gone(self, s: Sighting) -> None:
        table = self._table
        if table is None or self._mdns is None:
            return
        if s.key and any(o.key == s.key for o in self._mdns.seen):
            return  # another instance claims the same key: one goodbye does not end it
        row = (table.by_key(s.key) if s.key else None) or next(
            (r for a in s.addresses if (r := table.by_address(a)) is not None), None
        )
        if row is not None:
            table.withdraw(row, "mdns", self._now_ms())

    def _tailnet_peers(self, peers: list[TailnetPeer]) -> None:
        """The tailnet's current online peers: add them, withdraw those gone."""
        table = self._table
        if table is None:
            return
        now = self._now_ms()
        current = {p.node: p.addresses for p in peers}
        for node, addresses in self._tailnet_seen.items():
            if node not in current:
                row = next((r for a in addresses if (r := table.by_address(a)) is not None), None)
                if row is not None:
                    table.withdraw(row, "tailnet", now)
        for p in peers:
            table.add(list(p.addresses), "tailnet", name=p.host_name, now=now)
        self._tailnet_seen = current

    # -- embedding in synchronous code ---------------------------------------------------

    def start_in_thread(self, *, timeout: float = 30.0) -> NodeThread:
        """Run this node in a thread of its own, for synchronous daemons; returns once it
        listens. Use the handle's blocking methods; ``close()`` it (or ``with`` it)."""
        return NodeThread(self, timeout=timeout)


class NodeThread:
    """A node running on its own event loop in a background thread, with blocking
    methods. Every call waits at most ``timeout`` seconds; reads answer empty (degraded
    mode) rather than wait longer, as ``Node`` does."""

    def __init__(self, node: Node, *, timeout: float = 30.0) -> None:
        self.node = node
        self.timeout = timeout
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._stop: asyncio.Event | None = None
        self._thread = threading.Thread(target=self._main, name="sm-node", daemon=True)
        self._thread.start()
        self._ready.wait()
        if self._error is not None:
            self._thread.join()
            raise self._error

    def _main(self) -> None:
        asyncio.set_event_loop(self._loop)
        try:
            self._loop.run_until_complete(self._serve())
        finally:
            # As asyncio.run does: what is still pending (an events() reader waiting for
            # its next event) is cancelled, so that no caller blocks on a dead loop.
            pending = asyncio.all_tasks(self._loop)
            for task in pending:
                task.cancel()
            self._loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
            self._loop.run_until_complete(self._loop.shutdown_asyncgens())
            self._loop.close()

    async def _serve(self) -> None:
        self._stop = asyncio.Event()
        try:
            await self.node.__aenter__()
        except BaseException as e:
            self._error = e
            self._ready.set()
            return
        self._ready.set()
        try:
            await self._stop.wait()
        finally:
            await self.node.__aexit__(None, None, None)

    def call(self, coro: Coroutine[Any, Any, T], timeout: float | None = None) -> T:
        """Run a coroutine of the node on its loop and wait for it."""
        fut = asyncio.run_coroutine_threadsafe(coro, self._loop)
        return fut.result(self.timeout if timeout is None else timeout)

    @property
    def id(self) -> str:
        return self.node.id

    @property
    def address(self) -> str:
        return self.node.address

    def remember(self, text: str, **kw: Any) -> str:
        return self.call(self.node.remember(text, **kw))

    def retract(self, record_id: str, **kw: Any) -> str:
        return self.call(self.node.retract(record_id, **kw))

    def recall(self, query: str | None = None, **kw: Any) -> list[Memory]:
        return self.node.recall(query, **kw)  # views are safe to read from any thread

    def trip_breaker(self, name: str, **kw: Any) -> None:
        self.call(self.node.trip_breaker(name, **kw))

    def reset_breaker(self, name: str, **kw: Any) -> None:
        self.call(self.node.reset_breaker(name, **kw))

    def breaker(self, name: str, **kw: Any) -> Breaker:
        return self.node.breaker(name, **kw)

    def breakers(self, **kw: Any) -> list[Breaker]:
        return self.node.breakers(**kw)

    def record_benchmark(self, subject: str, metric: str, value: float, **kw: Any) -> None:
        self.call(self.node.record_benchmark(subject, metric, value, **kw))

    def benchmark(self, subject: str, metric: str, **kw: Any) -> Benchmark | None:
        return self.node.benchmark(subject, metric, **kw)

    def trust(self, key: str, name: str = "") -> None:
        self.call(_async(lambda: self.node.trust(key, name)))

    def distrust(self, key: str) -> bool:
        return self.call(_async(lambda: self.node.distrust(key)))

    def keyring(self) -> dict[str, str]:
        return self.node.keyring()

    def peers(self) -> list[PeerInfo]:
        return self.call(_async(self.node.peers))

    def events(self) -> Iterator[Event]:
        """``Node.events()`` for a synchronous consumer: blocks for each next event; ends
        when the node closes. Run it in a thread of its own if it must not block."""
        agen = self.node.events()
        try:
            while True:
                try:
                    fut = asyncio.run_coroutine_threadsafe(agen.__anext__(), self._loop)
                except RuntimeError:  # the loop is closed
                    return
                while True:
                    try:
                        event = fut.result(0.25)
                        break
                    except TimeoutError:
                        if not self._thread.is_alive():  # the loop died with it pending
                            return
                    except (StopAsyncIteration, concurrent.futures.CancelledError):
                        return
                yield event
        finally:  # unsubscribe (the consumer stopped early), unless the loop is gone
            if self._thread.is_alive():
                with contextlib.suppress(RuntimeError, TimeoutError):
                    asyncio.run_coroutine_threadsafe(agen.aclose(), self._loop).result(1.0)

    def discovery(self) -> list[DiscoveryStatus]:
        return self.call(_async(self.node.discovery))

    def sync_now(self, fanout: int | None = None) -> SyncReport:
        return self.call(self.node.sync_now(fanout))

    def close(self) -> None:
        """Stop the node (every task, socket and thread) and its loop's thread."""
        if self._thread.is_alive() and self._stop is not None:
            with contextlib.suppress(RuntimeError):  # the loop already stopped
                self._loop.call_soon_threadsafe(self._stop.set)
            self._thread.join()

    def __enter__(self) -> NodeThread:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# -- helpers -----------------------------------------------------------------------------


class _ChunkedLocal:
    """The replica as ``protocol.LocalState``, ingesting a large delta in chunks and
    serving queued reads between them. Worker thread only."""

    def __init__(self, replica: Replica, worker: ReplicaWorker | None) -> None:
        self.replica = replica
        self.worker = worker

    def state_vector(self) -> dict[int, int]:
        return self.replica.state_vector()

    def updates_for(self, peer_sv: dict[int, int]) -> list[bytes]:
        return self.replica.updates_for(peer_sv)

    def ingest_batch(self, updates: Sequence[bytes], *, source: str = "") -> list[Outcome]:
        out: list[Outcome] = []
        for k in range(0, len(updates), INGEST_CHUNK):
            if k and self.worker is not None:
                self.worker.run_reads()
            out += self.replica.ingest_batch(updates[k : k + INGEST_CHUNK], source=source)
        return out


def _push_body(replica: Replica, updates: list[bytes], max_bytes: int) -> bytes:
    return protocol.push_message(replica, updates, max_bytes=max_bytes)


def _fresh(received: list[Outcome]) -> tuple[list[bytes], dict[int, int]] | None:
    """The updates a push added, and the clocks they reach per client."""
    raws: list[bytes] = []
    covers: dict[int, int] = {}
    for o in received:
        if o.status == "applied" and o.update is not None:
            raws.append(o.update.raw)
            covers[o.update.client] = max(covers.get(o.update.client, 0), o.update.header.end)
    return (raws, covers) if raws else None


def _state_name(key: str) -> str:
    try:
        return split_state_key(key)[2]
    except GossipError:
        return key


def _announced_addresses(rec: SignedRecord) -> list[str]:
    """``addrs`` x ``port`` of a host announcement; [] if malformed (any author may
    write anything; only trusted authors' announcements get here)."""
    f = rec.fields
    addrs, port = f.get("addrs"), f.get("port")
    if not isinstance(addrs, list) or not isinstance(port, int) or isinstance(port, bool):
        return []
    if not 0 < port < 65536:
        return []
    out = []
    for a in addrs[:8]:
        if isinstance(a, str) and a and a.isprintable() and " " not in a and len(a) <= 255:
            out.append(join_address(a.strip("[]"), port))
    return out


def _plain_name(value: object) -> bool:
    """A name another host sent that we may show: a short printable string."""
    return isinstance(value, str) and bool(value) and value.isprintable() and len(value) <= 64


def _advertised(host: str) -> list[str]:
    """The addresses to announce for a server bound to ``host``: itself, or for a
    wildcard bind this machine's reachable addresses (loopback if it has none). ``::``
    takes IPv4 too, as a dual-stack socket serves both."""
    if host not in ("0.0.0.0", "::", ""):
        return [host]
    found = machine_addresses(ipv6=host == "::")
    return found or (["::1"] if host == "::" else ["127.0.0.1"])


async def _async(fn: Callable[[], T]) -> T:
    return fn()


def _wall_ms() -> int:
    return time.time_ns() // 1_000_000


__all__ = ["Node", "NodeThread", "SyncReport", "TransportFactory"]
