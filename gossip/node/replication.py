"""Replication: the driver of the sans-I/O ``Gossiper`` (``gossip.protocol``). It runs the
gossiper's effects — exchanges and pushes over the node's transport, their ingest steps
in the node's replica worker — answers peers' requests, and runs the anti-entropy loop.

Owns the gossiper, the wake-up of the loop and the "an exchange settled" signal. Never
parses wire bytes (the protocol package does) and never chooses a peer (the gossiper
does).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from crdt import GossipError, Outcome, Replica

from .. import config, peerfile, protocol
from ..config import ConfigError
from ..peers import Peer
from ..protocol import Exchange, Failure, Gossiper, Push, RemoteProtocolError, Settings
from ..protocol.gossiper import ERROR, UNREACHABLE, UNTRUSTED
from ..transport import JOIN_PATH, PeerError, PeerRefused, PeerUnreachable, PeerUntrusted
from ..transport.http import split_address
from .worker import READ, WRITE, ReplicaWorker

if TYPE_CHECKING:
    from .node import Node

log = logging.getLogger("gossip.node")

INGEST_CHUNK = 512  # updates per replica call; reads run between chunks
# Seconds a stopping node gives its goodbyes (LEAVE): half to let exchanges in flight
# end (one served after our goodbye would make us alive again there), half for the
# goodbyes themselves, all at once. A LAN answers in milliseconds; a peer that does not
# answer in time sees us fail, then ``down``, as without a goodbye.
LEAVE_SECONDS = 2.0


@dataclass(frozen=True)
class SyncReport:
    """What ``sync_now`` did."""

    exchanges: int  # peers that completed an exchange
    failures: int  # peers that failed
    learned: int  # updates applied from them
    errors: tuple[str, ...] = ()  # why each failed exchange failed: "PEER: cause"


class Replication:
    """Anti-entropy, eager push and serving peers, for one node."""

    def __init__(self, node: Node) -> None:
        self.node = node
        self.gossiper: Gossiper | None = None
        self.wake = asyncio.Event()
        self._settled = asyncio.Event()  # replaced by a fresh one after each set()
        self._pushing: set[asyncio.Task[None]] = set()  # one task per peer pushed to
        self._saved_at = 0  # when peers.json was last written (ms)

    @property
    def message_budget(self) -> int:
        """Bytes of updates one message may carry: half our body limit, and never more
        than the protocol's 4 MiB, so that a peer on another profile (a smaller limit)
        does not answer 413 either."""
        half = max(64 * 1024, self.node.profile.max_body_bytes // 2)
        return min(half, protocol.DEFAULT_MESSAGE_BYTES)

    def _settings(self) -> Settings:
        """The gossiper's knobs, read from the profile at each decision (a caller may
        replace the profile while the node runs, as the benchmarks do)."""
        p = self.node.profile
        return Settings(int(p.interval * 1000), p.fanout, p.eager_push, self.message_budget)

    async def start(self) -> None:
        node = self.node
        self.gossiper = Gossiper(
            node.table, ChunkedLocal(node.replica, node.worker), self._settings, node.rng,
            current_key=lambda key: node.trust_set().current(key),
        )  # fmt: skip
        # What the last run learned of each peer (peerfile.py): delivery and lag know a
        # peer that is down now, against our state vector now.
        node.table.saw_ours(await node.call(node.replica.state_vector, priority=READ))
        saved = peerfile.load(node.home)
        node.table.remember({k: (e.sv, e.sv_at) for k, e in saved.peers.items()})
        self._saved_at = node.now_ms()

    def stop(self) -> None:
        if self.gossiper is not None:
            self.save_known(force=True)
        self.gossiper = None

    def save_known(self, *, force: bool = False) -> None:
        """Write ``peers.json`` (at most every ``SAVE_EVERY_MS`` unless ``force``)."""
        node, table = self.node, self.node.table_or_none
        now = node.now_ms()
        if table is None or (not force and now - self._saved_at < peerfile.SAVE_EVERY_MS):
            return
        self._saved_at = now
        try:
            peerfile.save(node.home, peerfile.from_table(table), table.ours, now,
                          forgotten=table.forgotten)  # fmt: skip
        except OSError as e:
            log.warning("could not save %s in %s: %s", peerfile.PEER_FILE, node.home, e)

    def _gossiper(self) -> Gossiper:
        if self.gossiper is None:
            raise GossipError("the node is not running")
        return self.gossiper

    def peer_removed(self, peer: Peer) -> None:
        if self.gossiper is not None:
            self.gossiper.abandon_pushes(peer)

    # -- serving peers ------------------------------------------------------------------

    async def handle(self, path: str, body: bytes, peer_key: str) -> bytes:
        """The transport's handler: an authenticated request body from ``peer_key``."""
        node = self.node
        if path == JOIN_PATH:
            return await node.joining.redeem(body, peer_key)
        if path == protocol.LEAVE_PATH:
            protocol.parse_leave(body)  # RemoteProtocolError: answered 400
            if self.gossiper is not None:
                row = self.gossiper.on_leave(peer_key, node.now_ms())
                if row is not None:
                    log.info("peer %s said goodbye", row.label)
            return protocol.LEAVE_REPLY
        # A DIGEST only reads: it jumps queued ingests, so that peers checking whether we
        # are in sync are not kept waiting (and backing us off) during a large catch-up.
        priority = READ if protocol.reads_only(body) else WRITE
        resp = await node.call(self._respond, path, body, peer_key, priority=priority)
        node.rotation.saw(peer_key, resp.peer_sv)  # its own word, before our reply
        rejected = [o for o in resp.received if o.status == "rejected"]
        if rejected:  # the daemon's log shows every rejection with its rule
            log.info("%s sent %d update(s) we rejected: %s", peer_key[:12], len(rejected),
                     rejected[0].error)  # fmt: skip
        if self.gossiper is not None:
            pushes = self.gossiper.on_served(peer_key, resp, node.now_ms(), bytes_in=len(body))
            self._start_pushes(pushes)
        return resp.body

    def _respond(self, path: str, body: bytes, peer_key: str) -> protocol.Response:
        """In the worker (decoding a large body is no work for the event loop): parse the
        request (RemoteProtocolError, answered 400; with the path, a SYNC sent to the push
        endpoint or the reverse is refused before any ingest), ingest what it carries,
        answer it."""
        local = ChunkedLocal(self.node.replica, self.node.worker)
        request = protocol.parse_request(body, path=path, local=local)  # before the ingest
        received = local.ingest_batch(request.updates, source=peer_key)
        return protocol.answer(local, request, received, max_reply_bytes=self.message_budget)

    # -- anti-entropy -------------------------------------------------------------------

    async def anti_entropy(self) -> None:
        node = self.node
        readdress_at = node.now_ms() + int(node.profile.readdress * 1000)
        while True:
            # A wake asked for before this round is answered by it; one asked for during
            # it (a peer found meanwhile) makes the next round start at once.
            self.wake.clear()
            try:
                await self._round()
                self.save_known()
                if node.now_ms() >= readdress_at:
                    # Our addresses may have changed (DHCP, Wi-Fi): announce the new ones.
                    readdress_at = node.now_ms() + int(node.profile.readdress * 1000)
                    node.membership.learn_hosts(await node.call(node.membership.announce))
            except Exception:
                log.exception("anti-entropy round of %s failed", node.address_or_none)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self._gossiper().next_round_ms() / 1000):
                    await self.wake.wait()

    async def _round(self) -> None:
        """Start the exchanges of one round; wait for them at most one interval.

        A peer that accepts connections and then hangs holds its own exchange until the
        request timeout, not the rounds: it stays in flight, so the next rounds choose
        other peers meanwhile."""
        node = self.node
        gossiper = self.gossiper
        if gossiper is None:
            return
        tasks = [node.spawn(self._settling(ex), f"exchange {ex.peer.label}")
                 for ex in gossiper.on_tick(node.now_ms())]  # fmt: skip
        live = [t for t in tasks if t is not None]
        if live:
            await asyncio.wait(live, timeout=node.profile.interval)
        node.rotation.end_if_known()

    async def _exchanges(self, chosen: list[Peer]) -> list[int | None]:
        """Exchange with every peer of ``chosen`` and wait for all (``sync_now``)."""
        if not chosen:
            return []
        exchanges = self._gossiper().exchange_with(chosen)
        async with asyncio.TaskGroup() as tg:
            tasks = [tg.create_task(self._settling(ex)) for ex in exchanges]
        return [t.result() for t in tasks]

    async def _settling(self, ex: Exchange) -> int | None:
        """``_exchange``, then wake whoever waits for a peer to be idle (``sync_now``)."""
        try:
            return await self._exchange(ex)
        finally:
            self._settled.set()
            self._settled = asyncio.Event()

    async def _idle(self, peers: Sequence[Peer], seconds: float | None = None) -> None:
        """Wait (``seconds``, by default two request timeouts, at most) until no exchange
        with ``peers`` runs."""
        if seconds is None:
            seconds = self.node.profile.request_timeout * 2
        deadline = time.monotonic() + seconds
        while any(p.in_flight for p in peers) and time.monotonic() < deadline:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._settled.wait(), deadline - time.monotonic())

    async def sync_now(self, fanout: int | None = None) -> SyncReport:
        """See ``Node.sync_now``."""
        table = self.node.table
        chosen = self._gossiper().sync_targets(fanout)
        await self._idle(chosen)
        members = set(table)
        chosen = [p for p in chosen if p in members and not p.in_flight]
        return self._report(chosen, await self._exchanges(chosen))

    async def sync_with(self, address: str) -> SyncReport:
        """See ``Node.sync_with``."""
        node = self.node
        table = node.table
        address = config.check_address(address)
        if split_address(address)[1] == 0:
            raise ConfigError(f"{address}: port 0 is no peer's port")
        known = table.by_address(address)
        peer = known or table.add([address], "static", now=node.now_ms())
        if peer is None:
            raise ConfigError(f"{address} is this node's own address")
        await self._idle([peer])
        if peer.in_flight:
            report = SyncReport(exchanges=0, failures=1, learned=0,
                                errors=(f"{address}: an exchange with it is still running",))
        else:
            report = self._report([peer], await self._exchanges([peer]))
        if table.is_own(address):  # it answered with this node's own key
            raise ConfigError(f"{address} is this node's own address")
        if known is None and not report.exchanges and peer in set(table):
            table.remove(peer)  # a typo must not become a peer retried forever
        return report

    def _report(self, peers: Sequence[Peer], results: list[int | None]) -> SyncReport:
        self.node.rotation.end_if_known()  # as a round does: every peer just answered
        ok = [r for r in results if r is not None]
        errors = tuple(_why(p.address, p.last_error)
                       for p, r in zip(peers, results, strict=True) if r is None)  # fmt: skip
        return SyncReport(exchanges=len(ok), failures=len(results) - len(ok), learned=sum(ok),
                          errors=errors)  # fmt: skip

    async def offer(self, updates: Sequence[bytes], *, source: str) -> list[Outcome]:
        """See ``Node.offer``."""
        node = self.node

        def job() -> list[Outcome]:
            return ChunkedLocal(node.replica, node.worker).ingest_batch(updates, source=source)

        return await node.call(job)

    async def _exchange(self, ex: Exchange) -> int | None:
        """Run one ``Exchange`` effect: requests over the transport, its ``Ingest`` steps
        in the worker. Returns how many updates it taught us, or None if it failed;
        never raises but CancelledError."""
        node = self.node
        gossiper = self._gossiper()
        peer, initiator = ex.peer, ex.initiator
        bytes_out = bytes_in = 0
        rtt_ms: float | None = None
        key = peer.key
        try:
            request: protocol.Request | None = await node.call(initiator.start)
            while request is not None:
                started = time.perf_counter()
                reply, key = await node.transport.request(
                    peer.address, request.path, request.body, expected_key=key
                )
                if rtt_ms is None:
                    rtt_ms = (time.perf_counter() - started) * 1000
                bytes_out, bytes_in = bytes_out + len(request.body), bytes_in + len(reply)
                gossiper.on_answer(ex, key)
                request = await node.call(self._take_in, initiator, reply)
        except asyncio.CancelledError:
            gossiper.on_exchange_cancelled(peer)
            raise
        except (PeerError, RemoteProtocolError) as e:
            gossiper.on_exchange_failed(peer, self._failure(peer, e), node.now_ms())
            return None
        except Exception:
            log.exception("exchange with %s failed on our side", peer.label)
            gossiper.on_exchange_cancelled(peer)
            return None
        result = initiator.result
        node.rotation.saw(key, result.peer_sv)
        assert key is not None  # at least one answer came
        row = gossiper.on_exchange_done(ex, key, node.now_ms(), rtt_ms=rtt_ms,
                                        bytes_in=bytes_in, bytes_out=bytes_out)  # fmt: skip
        if result.rejected and row is not None:
            log.info("%s sent %d update(s) we rejected: %s", row.label, len(result.rejected),
                     result.rejected[0].error)  # fmt: skip
        return result.learned

    def _take_in(self, initiator: protocol.Initiator, reply: bytes) -> protocol.Request | None:
        """In the worker: an answer of an exchange, ingested; the next request, if any."""
        ingest = initiator.receive(reply)
        local = ChunkedLocal(self.node.replica, self.node.worker)
        return initiator.ingested(local.ingest_batch(ingest.updates, source=ingest.source))

    def _failure(self, peer: Peer, e: Exception) -> Failure:
        """What kind of failure ``e`` is, for the gossiper's backoff."""
        if self.node.rotation.refused(peer.key, e):
            return Failure(ERROR, str(e))
        log.debug("%s: %s", peer.label, e)
        if (isinstance(e, PeerRefused) and e.status == 403) or isinstance(e, PeerUntrusted):
            return Failure(UNTRUSTED, str(e))
        return Failure(UNREACHABLE if isinstance(e, PeerUnreachable) else ERROR, str(e))

    # -- goodbyes -----------------------------------------------------------------------

    async def goodbye(self, seconds: float = LEAVE_SECONDS) -> int:
        """The node stops (no new exchange or push starts): let the exchanges in flight
        end, then a signed LEAVE to each peer the gossiper names, all at once, within
        ``seconds`` in all; best-effort (failures and latecomers are dropped). Returns
        how many peers answered."""
        gossiper, node = self.gossiper, self.node
        if gossiper is None or node.table_or_none is None or node.transport_or_none is None:
            return 0
        # Pushes and exchanges in flight end first: one served after our goodbye would
        # make us alive again at that peer.
        started = time.monotonic()
        if self._pushing:
            await asyncio.wait(list(self._pushing), timeout=seconds / 2)
        left = max(0.0, seconds / 2 - (time.monotonic() - started))
        await self._idle([p for p in node.table if p.in_flight], left)
        leaves = gossiper.on_stop()
        if not leaves:
            return 0
        transport = node.transport

        async def say(leave: protocol.Leave) -> None:
            request = leave.request()
            peer = leave.peer
            answer, _ = await transport.request(
                peer.address, request.path, request.body, expected_key=peer.key
            )
            protocol.expect(answer, protocol.MessageType.LEAVE_REPLY)

        tasks = [asyncio.ensure_future(say(leave)) for leave in leaves]
        done, pending = await asyncio.wait(tasks, timeout=seconds / 2)
        for task in pending:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        told = sum(1 for t in done if not t.cancelled() and t.exception() is None)
        log.debug("goodbyes: %d of %d peers answered", told, len(leaves))
        return told

    # -- eager push ---------------------------------------------------------------------

    def queue_push(self, updates: list[bytes], *, covers: dict[int, int]) -> None:
        """Our fresh ``updates``: push them as the gossiper says (never before the node
        runs, nor while it stops)."""
        if self.gossiper is None or not self.node.running:
            return
        self._start_pushes(self.gossiper.on_local_write(updates, covers))

    def _start_pushes(self, pushes: list[Push]) -> None:
        for push in pushes:
            started = self.node.spawn(self._drain(push), f"push {push.peer.label}")
            if started is None and self.gossiper is not None:  # not running: none goes
                self.gossiper.abandon_pushes(push.peer)
            elif started is not None:
                self._pushing.add(started)
                started.add_done_callback(self._pushing.discard)

    async def _drain(self, push: Push | None) -> None:
        """One peer's pushes, one at a time, until its outbox is empty (or the node
        stops: no push starts after our goodbyes)."""
        while push is not None:
            if not self.node.running:
                if self.gossiper is not None:
                    self.gossiper.abandon_pushes(push.peer)
                return
            push = await self._push(push)

    async def _push(self, push: Push) -> Push | None:
        node = self.node
        gossiper = self._gossiper()
        peer = push.peer
        try:
            request = await node.call(push.request, node.replica)
            answer, key = await node.transport.request(
                peer.address, request.path, request.body, expected_key=peer.key
            )
            theirs = push.theirs(answer)
        except (PeerError, RemoteProtocolError) as e:
            return gossiper.on_push_failed(push, self._failure(peer, e), node.now_ms())
        except GossipError as e:  # the node is closing
            log.debug("push to %s abandoned: %s", peer.label, e)
            gossiper.abandon_pushes(peer)
            return None
        node.rotation.saw(key, theirs)
        return gossiper.on_push_done(push, key, theirs, node.now_ms(), bytes_in=len(answer),
                                     bytes_out=len(request.body))  # fmt: skip


class ChunkedLocal:
    """The replica as the exchange reads it (``protocol.LocalView``), and how this node
    ingests: a large delta in chunks, serving queued reads between them. Worker thread
    only."""

    def __init__(self, replica: Replica, worker: ReplicaWorker | None) -> None:
        self.replica = replica
        self.worker = worker

    def state_vector(self) -> dict[int, int]:
        return self.replica.state_vector()

    def updates_for(self, peer_sv: dict[int, int]) -> Iterator[bytes]:
        return self.replica.iter_updates_for(peer_sv)

    def ingest_batch(self, updates: Sequence[bytes], *, source: str = "") -> list[Outcome]:
        worker = self.worker
        return self.replica.ingest_batch(
            updates, source=source, chunk=INGEST_CHUNK,
            between=None if worker is None else lambda _done: worker.run_reads(),
        )  # fmt: skip


def _why(address: str, error: str | None) -> str:
    """A failed exchange's cause as "PEER: cause", naming the peer once (a connection
    error's text already starts with its address)."""
    cause = error or "failed"
    return cause if cause.startswith(f"{address}: ") else f"{address}: {cause}"
