"""One simulated host: a real ``Replica`` on a real SQLite file, driven by the real
sans-I/O pieces — ``protocol.Gossiper`` (the replication policy: rounds, peer choice,
eager push and relay, backoff, the very object ``gossip.node.Node`` drives), the
exchanges it starts, ``peers`` (the peer table it decides with) and ``auth`` (every
request and answer signed, clock window, nonce cache) — with the simulator's clock and
its one ``random.Random`` in place of the wall clock and ``os.urandom``.

It is a driver, as ``Node`` is one, minus asyncio: it calls ``on_tick`` every
``next_round_ms()``, carries the ``Exchange`` and ``Push`` effects over the simulated
network, runs their ``Ingest`` steps on its replica, and reports how each ended. A
request not answered within ``timeout_ms`` fails, like an HTTP timeout (unreachable),
and a late answer is ignored.

Crash and restart (``crash``/``restart``): the host stops at once — between two events,
which is where every SQLite transaction is either committed or not begun — and its data
directory is copied as it is on disk (the database and its write-ahead log, not the
shared-memory index), as a SIGKILL would leave it. The restarted host opens that copy
(SQLite recovers the WAL) and has lost everything that lived only in memory: the
buffer of out-of-order updates, the peer table and its backoff, outboxes, exchanges in
flight, the nonce cache. ``restart(lose_disk=True)`` starts from an empty store instead:
a fault outside the promise (it is how the tests check that the checker notices lost
writes), never drawn by the random schedule.

This module owns the glue only; it never parses wire bytes or decides what to send or
to whom.
"""

from __future__ import annotations

import random
import shutil
from collections.abc import Callable
from dataclasses import KW_ONLY, dataclass, field
from pathlib import Path

from crdt import GossipError, Identity, Outcome, Replica, ReplicaLimits, SignedRecord, records
from crdt.identity import b64url
from crdt.store import Store
from crdt.views import Views

from .. import protocol
from ..peers import Peer, PeerTable
from ..protocol import Exchange, Failure, Gossiper, Push, RemoteProtocolError, Settings
from ..protocol.gossiper import ERROR, UNREACHABLE, UNTRUSTED
from ..transport import auth
from .loop import EventLoop, Timer
from .network import ANSWER, REQUEST, Network, Packet
from .trace import Trace

BREAKERS = ("provider:x", "kimi-coding/k2p5", "provider:y")
SUBJECTS = ("provider:x", "provider:y")
BREAKER_STATES = ("open", "half_open", "closed")


@dataclass(frozen=True)
class Tuning:
    """The replication settings of every host in one run (a ``local``-like profile)."""

    interval_ms: int = 1000
    fanout: int = 2
    timeout_ms: int = 3000
    backoff_base_ms: int = 500
    backoff_cap_ms: int = 8000
    window_ms: int = 60_000  # auth: how far a signature's creation time may be off
    eager_push: bool = True
    max_message_bytes: int = protocol.DEFAULT_MESSAGE_BYTES
    max_pending_per_author: int = 512


@dataclass
class _Call:
    """A request of ours awaiting its answer: one leg of an exchange, or a push."""

    peer: Peer
    path: str
    timer: Timer
    effect: Exchange | Push


@dataclass(eq=False)
class Host:
    """One simulated host: its identity and data dir, and what the world lends it (the
    loop, the network, the one random source, the trace, the tuning)."""

    name: str
    identity: Identity
    root: Path
    _: KW_ONLY
    loop: EventLoop
    network: Network
    rng: random.Random
    trace: Trace
    tuning: Tuning
    skew_ms: int = 0
    snapshot_min_bytes: int = ReplicaLimits().snapshot_min_bytes  # small: restarts load one
    key: str = field(init=False)  # the identity's public id
    up: bool = field(default=False, init=False)
    incarnation: int = field(default=0, init=False)
    generation: int = field(default=0, init=False)  # data dir copies (one per crash)
    replica: Replica | None = field(default=None, init=False)
    views: Views | None = field(default=None, init=False)
    views_at: int | None = field(default=None, init=False)  # the checker reads views at once
    table: PeerTable | None = field(default=None, init=False)
    verifier: auth.Verifier | None = field(default=None, init=False)
    peers: dict[str, str] = field(default_factory=dict, init=False)  # name -> key: static
    keyring: frozenset[str] = field(default=frozenset(), init=False)
    _calls: dict[str, _Call] = field(default_factory=dict, init=False)  # by request nonce
    gossiper: Gossiper | None = field(default=None, init=False)
    rejected: int = field(default=0, init=False)  # refused by our gate: never, if honest
    crashes: int = field(default=0, init=False)

    def __post_init__(self) -> None:
        self.key = self.identity.public_id
        self.network.hosts[self.name] = self

    # -- clock and identity -----------------------------------------------------------

    def clock(self) -> int:
        """This host's wall clock: virtual time plus its skew."""
        return self.loop.now + self.skew_ms

    def _nonce(self) -> str:
        return b64url(self.rng.randbytes(16))

    @property
    def home(self) -> Path:
        return self.root / f"{self.name}.{self.generation}"

    # -- lifecycle --------------------------------------------------------------------

    def start(self, peers: dict[str, str]) -> None:
        """First start: a fresh store whose epoch comes from the run's random source (so
        that client ids, and everything that depends on them, replay exactly)."""
        self.peers = {n: k for n, k in peers.items() if n != self.name}
        self.keyring = frozenset([self.key, *self.peers.values()])
        self._create_store()
        self._boot()

    def _create_store(self) -> None:
        self.home.mkdir(parents=True, mode=0o700)
        epoch = str(self.rng.getrandbits(52))
        Store.create(self.home, {"author": self.key, "epoch": epoch})
        replica = self._open()
        try:
            for n, k in self.peers.items():
                replica.trust(k, n)
        finally:
            replica.close()

    def _open(self) -> Replica:
        limits = ReplicaLimits(max_pending_per_author=self.tuning.max_pending_per_author,
                               snapshot_min_bytes=self.snapshot_min_bytes)  # fmt: skip
        return Replica.open(self.home, self.identity, limits=limits, now_ms=self.clock,
                            create=False)  # fmt: skip

    def _boot(self) -> None:
        self.replica = self._open()
        # Views kept current by the change feed, as a node's are; the checker compares
        # them with views built afresh.
        self.views = Views(self.replica, now_ms=self._views_clock)
        self.verifier = auth.Verifier(lambda: self.keyring, self.clock,
                                      window_ms=self.tuning.window_ms)  # fmt: skip
        t = self.tuning
        self.table = PeerTable(self.key, t.backoff_base_ms, t.backoff_cap_ms, rng=self.rng)
        settings = Settings(t.interval_ms, t.fanout, t.eager_push, t.max_message_bytes)
        self.gossiper = Gossiper(self.table, self.replica, lambda: settings, self.rng)
        now = self.clock()
        for n, k in self.peers.items():
            self.table.add([n], "static", key=k, name=n, now=now)
        self.up = True
        self.incarnation += 1
        self.trace.add(self.loop.now, "up", self.name, self.incarnation,
                       _sv_text(self.replica.state_vector()))  # fmt: skip
        self._schedule_tick(self.rng.randint(0, t.interval_ms))

    def crash(self) -> None:
        """Stop now, as SIGKILL would; the next ``restart`` opens the disk as it was."""
        if not self.up or self.replica is None:
            return
        self.up = False
        self.incarnation += 1  # packets on their way to us are now lost; timers no-op
        self.crashes += 1
        old = self.home
        self.generation += 1
        self.home.mkdir(mode=0o700)
        for f in sorted(old.iterdir()):  # the database and its WAL, as the disk holds them
            if f.name.endswith("-shm") or f.name == "lock":
                continue
            shutil.copyfile(f, self.home / f.name)
        # Only now release the old process's resources (lock, threads, connection);
        # nothing it would write on closing reaches the copy.
        self._close_views()
        self.replica.close()
        shutil.rmtree(old, ignore_errors=True)
        self.replica = self.table = self.verifier = self.gossiper = None
        self._calls.clear()
        self.trace.add(self.loop.now, "crash", self.name)

    def restart(self, *, lose_disk: bool = False) -> None:
        if self.up:
            return
        if lose_disk:
            shutil.rmtree(self.home, ignore_errors=True)
            self._create_store()
            self.trace.add(self.loop.now, "disk-lost", self.name)
        self._boot()

    def close(self) -> None:
        """End of the run: release the replica (no crash image)."""
        self._close_views()
        if self.replica is not None:
            self.replica.close()
        self.replica = None
        self.up = False
        self.incarnation += 1

    def _views_clock(self) -> int:
        return self.views_at if self.views_at is not None else self.clock()

    def _close_views(self) -> None:
        if self.views is not None:
            self.views.close()
        self.views = None

    def _guarded(self, fn: Callable[[], None]) -> Callable[[], None]:
        """``fn`` for this incarnation only: a crash turns it into a no-op."""
        incarnation = self.incarnation

        def run() -> None:
            if self.up and self.incarnation == incarnation:
                fn()

        return run

    # -- writes (the client of the set-full check) -------------------------------------

    def write(self, kind: str, n: int) -> SignedRecord | None:
        """Write one record of ``kind``; returned once durable (acknowledged), None when
        the host is down (the write is not attempted). ``checkpoint`` compacts our own
        history instead (nothing to acknowledge, nothing may be lost); ``retract``
        retracts one of our memories (a memory when we have none)."""
        if not self.up or self.replica is None:
            return None
        now = self.clock()
        ident = self.identity
        if kind == "checkpoint":
            self._checkpoint()
            return None
        mine = sorted(i for i, r in self.replica.records().items()
                      if r.author == self.key and r.kind == "memory")  # fmt: skip
        if kind == "retract" and mine:
            rec = records.retract(ident, self.rng.choice(mine), ts=now, reason=f"write {n}")
        elif kind in ("memory", "retract"):
            rec = records.memory(ident, f"lesson {n} from {self.name}", category="learning",
                                 subject=self.rng.choice(SUBJECTS), ts=now)  # fmt: skip
        elif kind == "breaker":
            state = self.rng.choice(BREAKER_STATES)
            resets = now + self.rng.randint(1, 30) * 60_000 if state == "open" else None
            rec = records.breaker(ident, self.rng.choice(BREAKERS), state=state, ts=now,
                                  reason=f"write {n}", failures=self.rng.randint(0, 9),
                                  tripped_at=now if resets else None,
                                  resets_at=resets)  # fmt: skip
        elif kind == "benchmark":
            rec = records.benchmark(ident, self.rng.choice(SUBJECTS), "latency_ms",
                                    summary={"p50": self.rng.randint(1, 999), "n": n},
                                    unit="ms", ts=now)  # fmt: skip
        else:
            raise ValueError(f"unknown record kind {kind!r}")
        su = self.replica.put(rec)
        if su is None:
            raise GossipError(f"write {n} on {self.name} changed nothing")
        self.trace.add(self.loop.now, "ack", self.name, kind, rec.id[:16], su.client,
                       su.header.end)  # fmt: skip
        self._pushes(self._require_gossiper().on_local_write([su.raw], {su.client: su.header.end}))
        return rec

    def _checkpoint(self) -> None:
        assert self.replica is not None
        if self.replica.client not in self.replica.state_vector():
            return  # nothing written by this store yet
        su = self.replica.checkpoint()
        self.trace.add(self.loop.now, "checkpoint", self.name, su.client, su.header.end,
                       len(su.raw))  # fmt: skip
        self._pushes(self._require_gossiper().on_local_write([su.raw], {su.client: su.header.end}))

    # -- anti-entropy -----------------------------------------------------------------

    def _require_gossiper(self) -> Gossiper:
        assert self.gossiper is not None, "the host is down"
        return self.gossiper

    def _schedule_tick(self, delay: int) -> None:
        self.loop.call_later(delay, self._guarded(self._tick))

    def _tick(self) -> None:
        gossiper = self._require_gossiper()
        for ex in gossiper.on_tick(self.clock()):
            self._request(ex.peer, ex.initiator.start(), ex)
        self._schedule_tick(gossiper.next_round_ms())

    def _pushes(self, pushes: list[Push]) -> None:
        assert self.replica is not None
        for push in pushes:
            self._request(push.peer, push.request(self.replica), push)

    # -- the client side ---------------------------------------------------------------

    def _request(self, peer: Peer, request: protocol.Request, effect: Exchange | Push) -> None:
        nonce = self._nonce()
        headers = auth.sign(self.identity, role="request", method="POST", path=request.path,
                            body=request.body, now_ms=self.clock(), recipient=peer.key or "",
                            nonce=nonce)  # fmt: skip
        target = self.network.hosts.get(peer.address)
        packet = Packet(REQUEST, self.name, peer.address, request.path, headers, request.body,
                        ref=f"{nonce}:{self.incarnation}",
                        dst_incarnation=target.incarnation if target else -1)  # fmt: skip
        timer = self.loop.call_later(self.tuning.timeout_ms,
                                     self._guarded(lambda: self._timed_out(nonce)))  # fmt: skip
        self._calls[nonce] = _Call(peer, request.path, timer, effect)
        self.network.send(packet)

    def _timed_out(self, nonce: str) -> None:
        call = self._calls.pop(nonce, None)
        if call is not None:
            self._failed(call, Failure(UNREACHABLE, "timeout"))

    def _answered(self, packet: Packet) -> None:
        nonce, _, incarnation = packet.ref.partition(":")
        call = self._calls.pop(nonce, None) if incarnation == str(self.incarnation) else None
        if call is None:
            self.trace.add(self.loop.now, "stale-answer", self.name, packet.src)
            return
        call.timer.cancel()
        if packet.status != 200:
            kind = UNTRUSTED if packet.status == 403 else ERROR
            self._failed(call, Failure(kind, f"answered {packet.status}"))
            return
        assert self.verifier is not None
        try:
            signed = self.verifier.check_headers(packet.headers)
            if signed.key != call.peer.key:
                raise auth.Unauthorized("answered by another key")
            self.verifier.check_body(signed, role="response", method="POST", path=call.path,
                                     body=packet.body, request_nonce=nonce)  # fmt: skip
        except auth.AuthError as e:
            kind = UNTRUSTED if isinstance(e, auth.Forbidden) else ERROR
            self._failed(call, Failure(kind, f"unauthenticated answer: {e}"))
            return
        try:
            if isinstance(call.effect, Push):
                self._pushed(call.effect, signed.key, call.effect.theirs(packet.body))
            else:
                self._exchange_step(call.effect, signed.key, packet.body)
        except RemoteProtocolError as e:
            self._failed(call, Failure(ERROR, f"malformed answer: {e}"))

    def _exchange_step(self, ex: Exchange, key: str, body: bytes) -> None:
        assert self.replica is not None
        gossiper = self._require_gossiper()
        gossiper.on_answer(ex, key)
        ingest = ex.initiator.receive(body)
        received = self.replica.ingest_batch(ingest.updates, source=ingest.source)
        self._count_rejects(received)
        nxt = ex.initiator.ingested(received)
        if nxt is not None:
            self._request(ex.peer, nxt, ex)
            return
        r = ex.initiator.result
        gossiper.on_exchange_done(ex, key, self.clock())
        self.trace.add(self.loop.now, "synced", self.name, ex.peer.name, r.requests,
                       r.sent, r.learned)  # fmt: skip

    def _pushed(self, push: Push, key: str, theirs: dict[int, int]) -> None:
        nxt = self._require_gossiper().on_push_done(push, key, theirs, self.clock())
        self.trace.add(self.loop.now, "pushed", self.name, push.peer.name)
        self._pushes([nxt] if nxt is not None else [])

    def _failed(self, call: _Call, failure: Failure) -> None:
        gossiper, effect = self._require_gossiper(), call.effect
        self.trace.add(self.loop.now, "failed", self.name, call.peer.name,
                       "push" if isinstance(effect, Push) else "sync",
                       failure.message[:40])  # fmt: skip
        if isinstance(effect, Push):
            nxt = gossiper.on_push_failed(effect, failure, self.clock())
            self._pushes([nxt] if nxt is not None else [])
        else:
            gossiper.on_exchange_failed(call.peer, failure, self.clock())

    def _count_rejects(self, outcomes: list[Outcome]) -> None:
        for o in outcomes:
            if o.status == "rejected":
                self.rejected += 1
                self.trace.add(self.loop.now, "REJECTED", self.name, str(o.error)[:80])

    # -- the server side --------------------------------------------------------------

    def receive(self, packet: Packet) -> None:
        if packet.kind == ANSWER:
            self._answered(packet)
        else:
            self._serve(packet)

    def _serve(self, packet: Packet) -> None:
        assert self.verifier is not None and self.replica is not None
        try:
            signed = self.verifier.check_headers(packet.headers)
            self.verifier.check_body(signed, role="request", method="POST", path=packet.path,
                                     body=packet.body, recipient=self.key)  # fmt: skip
        except auth.AuthError as e:
            self._answer(packet, e.status, str(e).encode(), None)
            return
        try:
            request = protocol.parse_request(packet.body, path=packet.path, local=self.replica)
        except RemoteProtocolError as e:
            self._answer(packet, 400, str(e).encode(), None)
            return
        received = self.replica.ingest_batch(request.updates, source=signed.key)
        self._count_rejects(received)
        resp = protocol.answer(self.replica, request, received,
                               max_reply_bytes=self.tuning.max_message_bytes)  # fmt: skip
        gossiper = self._require_gossiper()
        self._pushes(gossiper.on_served(signed.key, resp, self.clock(), bytes_in=len(packet.body)))
        self._answer(packet, 200, resp.body, signed)

    def _answer(
        self, request: Packet, status: int, body: bytes, signed: auth.Signed | None
    ) -> None:
        headers: dict[str, str] = {}
        if signed is not None:
            headers = auth.sign(self.identity, role="response", method="POST",
                                path=request.path, body=body, now_ms=self.clock(),
                                request_nonce=signed.nonce, nonce=self._nonce())  # fmt: skip
        src = self.network.hosts.get(request.src)
        _, _, incarnation = request.ref.partition(":")
        self.network.send(
            Packet(ANSWER, self.name, request.src, request.path, headers, body, ref=request.ref,
                   status=status, dst_incarnation=int(incarnation) if src else -1)
        )  # fmt: skip

    # -- for the checker --------------------------------------------------------------

    def busy(self) -> bool:
        return bool(self._calls) or (self.gossiper is not None and self.gossiper.pending_pushes())


def _sv_text(sv: dict[int, int]) -> str:
    return ",".join(f"{c}:{k}" for c, k in sorted(sv.items()))
