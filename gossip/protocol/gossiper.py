"""The replication policy, sans I/O: whom to sync with and when, what to push to whom,
what to pass on, and what an answer or a failure does to a peer's standing.

Theory of operation (DESIGN.md "Replication"). A driver owns the clock, the network and
the replica; it tells the ``Gossiper`` what happened and executes what it returns:

- ``on_tick(now)`` (every ``next_round_ms()``): ``Exchange`` effects, one push-pull with
  each of ``fanout`` peers the peer table chooses (least recently synced first), each
  opening with a DIGEST. The driver runs the ``Exchange``'s ``Initiator`` over its
  transport (its ``Ingest`` steps against the replica), calls ``on_answer`` for each
  signed answer, and ends with ``on_exchange_done`` or ``on_exchange_failed``.
- ``on_local_write(updates, covers)``: ``Push`` effects, an eager push to healthy peers
  that may lack them: our children in our broadcast tree (``PeerTable.tree_targets``:
  every host that knows the same members derives the same tree, so each is pushed to
  once); one push at a time per peer, what queues meanwhile goes in its next push
  (``on_push_done`` / ``on_push_failed`` return it).
- ``on_served(peer, response)``: a request of a peer was answered; what a PUSH taught
  us is passed on to our children in its author's tree (``fanout`` random others when
  the author is no member: rumour mongering), never back to the sender, never to a peer
  whose last state vector holds it, as ``Push`` effects.
- ``on_stop()``: the driver stops: ``Leave`` effects, a goodbye to each peer we are in
  touch with (best-effort: the driver bounds the time they take and ignores failures);
  ``on_leave(peer)``: a peer's goodbye arrived, its row is ``left``.

``gossip.node.Node`` drives it over a ``Transport`` and its replica's worker thread;
``gossip.sim.host.Host`` drives the same object over the simulated network, so the
simulator tests this policy, not a copy of it. Everything here runs in the driver's
one thread (the event loop); the ``Initiator`` an ``Exchange`` carries reads the
replica, so a driver runs its steps where the replica lives.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

from crdt import Outcome

from ..peers import ALIVE, SUSPECT, Peer, PeerTable
from .exchange import Initiator, LocalView, Request, Response, before, on_push_reply, push
from .messages import DEFAULT_MESSAGE_BYTES, LEAVE, LEAVE_PATH, PUSH_PATH, SYNC_PATH, fit

MAX_OUTBOX = 4096  # eager-push updates queued per peer; beyond, anti-entropy repairs
MAX_LEAVES = 64  # goodbyes sent on stopping; the others see us fail, then ``down``

# What kind of failure ended an exchange or a push (``Failure.kind``).
UNREACHABLE = "unreachable"  # no answer: refused, reset, timed out
UNTRUSTED = "untrusted"  # it refused our key (403), or answered by one we do not trust
ERROR = "error"  # any other error status, or an unauthenticated or malformed answer


@dataclass(frozen=True)
class Settings:
    """The knobs of the policy (a profile's ``interval``, ``fanout``, ``eager_push``, and
    the bytes one message may carry)."""

    interval_ms: int = 1000
    fanout: int = 2
    eager_push: bool = True
    max_message_bytes: int = DEFAULT_MESSAGE_BYTES


@dataclass(frozen=True)
class Failure:
    """Why an exchange or a push with a peer failed: ``kind`` decides the backoff."""

    kind: str
    message: str


@dataclass(frozen=True, eq=False)
class Exchange:
    """Effect: run ``initiator`` with ``peer`` (marked busy until its end is reported)."""

    peer: Peer
    initiator: Initiator


@dataclass(eq=False)
class Push:
    """Effect: push ``updates`` to ``peer`` (``request`` builds the message, ``theirs``
    reads the answer)."""

    peer: Peer
    updates: tuple[bytes, ...]
    max_bytes: int = DEFAULT_MESSAGE_BYTES
    stated: dict[int, int] = field(default_factory=dict)  # ours, as ``request`` stated it

    def request(self, local: LocalView) -> Request:
        """The PUSH (reads our state vector: run it where the replica lives); what does
        not fit in ``max_bytes`` is left to anti-entropy. Its base: our state vector
        without these updates (``before``), what a peer holds if it held what we did."""
        self.stated = local.state_vector()
        updates, _ = fit(self.updates, self.max_bytes)
        msg = push(self.stated, updates, base=before(self.stated, updates))
        return Request(PUSH_PATH, msg.encode())

    def theirs(self, body: bytes) -> dict[int, int]:
        """The peer's state vector, from its answer (RemoteProtocolError on junk)."""
        return on_push_reply(body, self.stated)


@dataclass(frozen=True, eq=False)
class Leave:
    """Effect: tell ``peer`` we stop (``request``), once, expecting its signed answer."""

    peer: Peer

    def request(self) -> Request:
        return Request(LEAVE_PATH, LEAVE)


class Gossiper:
    """The policy of one host. ``settings`` is read at each decision (a node's profile
    may change while it runs); ``current_key`` maps a key to the one its host signs with
    now (after a rotation), so that an answer by an old key lands on the right row."""

    def __init__(
        self,
        table: PeerTable,
        local: LocalView,
        settings: Callable[[], Settings],
        rng: random.Random,
        *,
        current_key: Callable[[str], str] | None = None,
    ) -> None:
        self.table = table
        self.local = local
        self.settings = settings
        self.rng = rng
        self.current_key = current_key or (lambda key: key)
        self._outbox: dict[Peer, list[bytes]] = {}
        self._pushing: set[Peer] = set()

    # -- anti-entropy ------------------------------------------------------------------

    def next_round_ms(self) -> int:
        """When the next round is due: ``interval`` +-10 %, so that hosts started
        together do not stay in lockstep."""
        return round(self.settings().interval_ms * (0.9 + 0.2 * self.rng.random()))

    def on_tick(self, now: int) -> list[Exchange]:
        """A round: exchanges with up to ``fanout`` due peers."""
        s = self.settings()
        return self.exchange_with(self.table.select(now, s.fanout, jitter_ms=s.interval_ms))

    def sync_targets(self, fanout: int | None = None) -> list[Peer]:
        """The peers of a sync asked for now (``Node.sync_now``), whatever their backoff:
        every peer we may exchange with, or the ``fanout`` least recently synced idle
        ones."""
        table = self.table
        if fanout is None:
            return [p for p in table if p.key is None or table.trusts(p.key)]
        return table.select(0, fanout, due_only=False)

    def exchange_with(self, peers: Iterable[Peer]) -> list[Exchange]:
        """Exchanges with ``peers`` now, whatever their backoff (``sync_now``). No hint
        to push with: ours is from our last contact, and others may have given the peer
        the same updates since; the PUSH leg sends what its reply shows it lacks. A
        DIGEST first: most exchanges in a mesh find the peer in sync."""
        s = self.settings()
        out = []
        for peer in peers:
            self.table.begin(peer)
            ex = Initiator(self.local, source=peer.key or peer.address, digest_first=True,
                           max_message_bytes=s.max_message_bytes)  # fmt: skip
            out.append(Exchange(peer, ex))
        return out

    def on_answer(self, exchange: Exchange, key: str) -> None:
        """An answer of the exchange, signed by ``key``, arrived (before it is taken in).
        A row without a key is named now: the host announcements the answer may carry
        then land on it, instead of adding a second row (and a round) for it."""
        exchange.initiator.source = key
        peer, table = exchange.peer, self.table
        if peer.key is None and table.by_key(key) is None and key != table.self_key:
            table.learn_key(peer, key)

    def on_exchange_done(
        self,
        exchange: Exchange,
        key: str,
        now: int,
        *,
        rtt_ms: float | None = None,
        bytes_in: int = 0,
        bytes_out: int = 0,
    ) -> Peer | None:
        """The exchange ended well; its last answer was signed by ``key``. Returns the
        row that holds the peer now (None: the address was ourselves).

        An honest peer relays only what its own gate accepted: rejects mean a forger or
        a bug, so they back the peer off like a failure (invariant 6); what it sent that
        was valid is kept."""
        r = exchange.initiator.result
        row = self.table.learn_key(exchange.peer, self.current_key(key))
        if row is None:
            return None
        self.table.success(row, now, rtt_ms=rtt_ms, bytes_in=bytes_in, bytes_out=bytes_out,
                           ours=r.ours, theirs=r.peer_sv)  # fmt: skip
        rejected = r.rejected
        if rejected:
            error = f"sent {len(rejected)} update(s) we rejected: {rejected[0].error}"
            self.table.failure(row, now, error)
        return row

    def on_exchange_failed(self, peer: Peer, failure: Failure, now: int) -> None:
        self._failed(peer, failure, now, exchange=True)

    def on_exchange_cancelled(self, peer: Peer) -> None:
        """Abandoned (the driver is stopping): neither success nor failure."""
        self.table.cancelled(peer)

    # -- eager push --------------------------------------------------------------------

    def on_local_write(self, updates: Sequence[bytes], covers: dict[int, int]) -> list[Push]:
        """Our own fresh updates (reaching ``covers``: client -> end clock)."""
        self.table.saw_ours(covers)
        return self._queue(updates, exclude=(), covers=covers, root=self.table.self_key)

    def on_served(
        self, peer_key: str, response: Response, now: int, *, bytes_in: int = 0
    ) -> list[Push]:
        """We answered a request of ``peer_key``: note what its state vector says, and
        pass on what its PUSH taught us."""
        ours, theirs = response.ours, response.peer_sv
        if response.path == SYNC_PATH and theirs is not None and response.complete:
            # Our reply fills their gaps (all of them: one cut to the size budget does not,
            # and their next request says how far it got).
            theirs = {c: max(theirs.get(c, 0), k) for c, k in {**theirs, **ours}.items()}
        self.table.inbound(peer_key, now, bytes_in=bytes_in, bytes_out=len(response.body),
                           ours=ours if theirs is not None else None, theirs=theirs)  # fmt: skip
        if response.path != PUSH_PATH:
            return []
        out: list[Push] = []
        for author, (raws, covers) in _fresh(response.received).items():
            out += self._queue(raws, exclude=(peer_key,), covers=covers,
                               root=self.current_key(author))  # fmt: skip
        return out

    def on_push_done(
        self,
        push: Push,
        key: str,
        theirs: dict[int, int],
        now: int,
        *,
        bytes_in: int = 0,
        bytes_out: int = 0,
    ) -> Push | None:
        """A push was answered, signed by ``key``, with the peer's state vector; returns
        the next push to that peer, if anything queued meanwhile."""
        row = self.table.learn_key(push.peer, self.current_key(key))
        if row is not None:
            self.table.success(row, now, bytes_in=bytes_in, bytes_out=bytes_out,
                               theirs=theirs, exchange=False)  # fmt: skip
        return self._next_push(push.peer)

    def on_push_failed(self, push: Push, failure: Failure, now: int) -> Push | None:
        self._failed(push.peer, failure, now, exchange=False)
        return self._next_push(push.peer)

    # -- goodbyes ----------------------------------------------------------------------

    def on_stop(self) -> list[Leave]:
        """We stop: a goodbye to every peer whose key is proven and trusted and that is
        alive or only suspect (at most ``MAX_LEAVES``, the most recently seen first); a
        peer down or unknown-key would only cost the time the goodbyes are given."""
        table = self.table
        told = [p for p in table
                if p.key is not None and not p.claimed and table.trusts(p.key)
                and p.state in (ALIVE, SUSPECT) and p.last_seen is not None]  # fmt: skip
        told.sort(key=lambda p: -(p.last_seen or 0))
        return [Leave(p) for p in told[:MAX_LEAVES]]

    def on_leave(self, peer_key: str, now: int) -> Peer | None:
        """``peer_key`` said goodbye (its signed LEAVE): its row is ``left`` and gets no
        more pushes. Returns the row, if there is one."""
        row = self.table.left(self.current_key(peer_key), now)
        if row is not None:
            self.abandon_pushes(row)
        return row

    def abandon_pushes(self, peer: Peer) -> None:
        """Stop pushing to ``peer`` (it left the table, or the driver is stopping)."""
        self._outbox.pop(peer, None)
        self._pushing.discard(peer)

    def pending_pushes(self) -> bool:
        return bool(self._outbox)

    def _queue(
        self,
        updates: Sequence[bytes],
        *,
        exclude: Iterable[str],
        covers: dict[int, int],
        root: str,
    ) -> list[Push]:
        """Queue ``updates`` (written by ``root``'s host) for the peers the table names:
        our children in ``root``'s broadcast tree, or ``fanout`` random ones when the
        tree has no place for it (``PeerTable.tree_targets``)."""
        s = self.settings()
        if not s.eager_push:
            return []
        out = []
        targets = self.table.tree_targets(root, s.fanout, exclude=exclude, covers=covers)
        if targets is None:
            targets = self.table.push_targets(s.fanout, exclude=exclude, covers=covers)
        for peer in targets:
            box = self._outbox.setdefault(peer, [])
            box.extend(updates)
            del box[:-MAX_OUTBOX]  # the oldest go; anti-entropy brings them
            if peer not in self._pushing:
                self._pushing.add(peer)
                push = self._next_push(peer)
                if push is not None:
                    out.append(push)
        return out

    def _next_push(self, peer: Peer) -> Push | None:
        updates = self._outbox.pop(peer, None)
        if not updates:
            self._pushing.discard(peer)
            return None
        return Push(peer, tuple(updates), self.settings().max_message_bytes)

    def _failed(self, peer: Peer, failure: Failure, now: int, *, exchange: bool) -> None:
        self.table.failure(peer, now, failure.message, unknown_key=failure.kind == UNTRUSTED,
                           unreachable=failure.kind == UNREACHABLE, exchange=exchange)  # fmt: skip


def _fresh(received: Sequence[Outcome]) -> dict[str, tuple[list[bytes], dict[int, int]]]:
    """The updates a request added, by author: each one's raw updates, in order, and the
    clocks they reach per client."""
    out: dict[str, tuple[list[bytes], dict[int, int]]] = {}
    for o in received:
        if o.status == "applied" and o.update is not None:
            raws, covers = out.setdefault(o.update.author, ([], {}))
            raws.append(o.update.raw)
            covers[o.update.client] = max(covers.get(o.update.client, 0), o.update.header.end)
    return out
