"""How the peers are doing, as the peer table decides it: whom to sync with next and whom
to push to, what a success, a failure or a peer reaching us does to a row (state, backoff
with jitter, lag), and the listener that hears of changes. A mixin of ``PeerTable``,
whose fields it reads; sans I/O."""


from __future__ import annotations

import functools
import hashlib
from collections.abc import Iterable

from .rows import ALIVE, DOWN, LEFT, SUSPECT, UNKNOWN_KEY, Peer, lag


@functools.lru_cache(maxsize=65536)
def tree_rank(root: str, key: str) -> bytes:
    """Where ``key`` stands in ``root``'s broadcast tree (after ``root``): lowest first."""
    return hashlib.sha256(root.encode() + b"\0" + key.encode()).digest()


class PeerHealth:
    """The health half of ``PeerTable``."""

    # -- scheduling --------------------------------------------------------------------

    def select(
        self, now: int, fanout: int, *, jitter_ms: int = 0, due_only: bool = True
    ) -> list[Peer]:
        """Up to ``fanout`` peers to sync with now: due (any, with ``due_only=False``),
        not already busy; least recently synced first, ``jitter_ms`` of randomness mixing
        peers synced about as long ago."""
        if due_only:
            self._follow_clock(now)
        due = [
            p
            for p in self._peers
            if not p.in_flight
            and (p.next_attempt <= now or not due_only)
            and (p.key is None or self.trusts(p.key))
        ]

        def order(p: Peer) -> float:
            last = p.last_success if p.last_success is not None else -(2**62)
            return last + self.rng.uniform(0, jitter_ms) + self.rng.random()

        return sorted(due, key=order)[: max(0, fanout)]

    def push_targets(
        self, fanout: int, *, exclude: Iterable[str] = (), covers: dict[int, int] | None = None
    ) -> list[Peer]:
        """Up to ``fanout`` random alive peers for an eager push, except ``exclude``
        (keys) and those whose last known state vector already holds ``covers``
        (client -> end clock): the rumour stops where it is known.

        A push carries records before any answer is checked, so only a peer that has
        answered signed by a trusted key gets one (``alive``, not a claim); a new or
        keyless address gets records through anti-entropy, whose opening ``DIGEST``
        carries none and whose answer is checked before anything else is sent."""
        excluded = set(exclude)
        healthy = [p for p in self._peers if self._pushable(p, excluded, covers)]
        return self.rng.sample(healthy, min(max(0, fanout), len(healthy)))

    def tree_targets(
        self,
        root: str,
        fanout: int,
        *,
        exclude: Iterable[str] = (),
        covers: dict[int, int] | None = None,
    ) -> list[Peer] | None:
        """The peers to pass updates written by ``root``'s host on to, in that host's
        broadcast tree, or None when ``root`` is not a member (then ``push_targets``).

        The members — every trusted, proven key in the table and our own — ordered
        ``root`` first, then by SHA-256(root ‖ key), form a heap of arity
        ``max(2, fanout)``: member ``i`` pushes to members ``k·i + 1 … k·i + k``. Every
        host that knows the same members computes the same tree, so a write reaches each
        of them by one push and no host is pushed to twice (random targets send about
        twice as many pushes as there are hosts, half of them to hosts that already have
        it). A child we may not push to (not ``alive``) is stepped over: its children are
        ours to push to. One that has it already (the sender, or its last state vector
        holds ``covers``) passed it on itself. Where views of the members differ, a host
        may be pushed to twice or not at all; anti-entropy brings it."""
        me = self.self_key
        keys = {p.key for p in self._peers
                if p.key is not None and not p.claimed and self.trusts(p.key)}  # fmt: skip
        if root != me and root not in keys:
            return None
        order = [root, *sorted((keys | {me}) - {root}, key=lambda k: tree_rank(root, k))]
        arity = max(2, fanout)
        rows = {p.key: p for p in self._peers if p.key is not None}
        excluded = set(exclude)
        out: list[Peer] = []
        first = arity * order.index(me) + 1
        todo = list(range(first, first + arity))
        while todo:
            child = todo.pop(0)
            if child >= len(order):
                continue
            row = rows.get(order[child])
            if row is not None and self._pushable(row, excluded, covers):
                out.append(row)
            elif row is not None and (row.key in excluded or self._holds(row, covers)):
                continue  # it has them: it passed them on
            else:  # stepped over: its children are ours
                todo += range(arity * child + 1, arity * child + arity + 1)
        return out

    def _pushable(self, p: Peer, excluded: set[str], covers: dict[int, int] | None) -> bool:
        return (p.state == ALIVE and p.key is not None and not p.claimed
                and p.key not in excluded and self.trusts(p.key)
                and not self._holds(p, covers))  # fmt: skip

    @staticmethod
    def _holds(p: Peer, covers: dict[int, int] | None) -> bool:
        """Its last known state vector holds everything up to ``covers``."""
        return bool(covers) and p.last_sv is not None and lag(covers or {}, p.last_sv) == 0

    def _follow_clock(self, now: int) -> None:
        """The wall clock stepped back (NTP, a VM restored from a snapshot): every delay
        already scheduled keeps what remained of it, instead of growing by the step (an
        hour's step would stop our own exchanges for an hour)."""
        if self._latest is not None and now < self._latest:
            step = self._latest - now
            for p in self._peers:
                p.next_attempt -= step
        self._latest = now

    def next_due(self) -> int | None:
        """When the earliest idle peer becomes due (ms), or None without peers."""
        return min((p.next_attempt for p in self._peers if not p.in_flight), default=None)

    # -- outcomes ----------------------------------------------------------------------

    def begin(self, peer: Peer) -> None:
        peer.in_flight = True
        peer.dialling = peer.address
        peer.begun_at_leaves = peer.leaves

    def success(
        self,
        peer: Peer,
        now: int,
        *,
        rtt_ms: float | None = None,
        bytes_in: int = 0,
        bytes_out: int = 0,
        ours: dict[int, int] | None = None,
        theirs: dict[int, int] | None = None,
        exchange: bool = True,
    ) -> None:
        """An exchange we started (or an eager push, ``exchange=False``, which leaves the
        exchange bookkeeping alone) completed. One begun before the peer's goodbye (and
        any push: none starts to a ``left`` peer) leaves it ``left``: it answered while
        it stopped."""
        stale = peer.state == LEFT and (not exchange or peer.begun_at_leaves != peer.leaves)
        if exchange:
            peer.in_flight = False
        peer.failures = 0
        peer.last_error = None
        peer.refused = False
        peer.last_seen = now
        if exchange:
            peer.last_success = now
            peer.exchanges += 1
        if rtt_ms is not None:
            peer.rtt_ms = rtt_ms
        peer.bytes_in += bytes_in
        peer.bytes_out += bytes_out
        self._saw_state(peer, now, ours, theirs)
        if stale:
            peer.next_attempt = now + self.backoff_cap_ms
            return
        peer.next_attempt = now
        self._set_state(peer, ALIVE)

    def failure(
        self,
        peer: Peer,
        now: int,
        error: str,
        *,
        unknown_key: bool = False,
        unreachable: bool = False,
        exchange: bool = True,
    ) -> None:
        """An exchange (or an eager push, ``exchange=False``) failed. ``unknown_key``: the
        peer refused our key (403) or answered with a key we do not trust.
        Any failure moves to the peer's next address (one of them may be a stale or a
        lying proposal); ``unreachable`` is kept for callers that say so."""
        if exchange:
            peer.in_flight = False
        peer.failures += 1
        peer.last_error = error[:300]
        if len(peer.addresses) > 1:
            peer.address_index = (peer.address_index + 1) % len(peer.addresses)
        if unknown_key:
            peer.refused = True
            peer.next_attempt = now + self.backoff_cap_ms
            self._set_state(peer, UNKNOWN_KEY)
            return
        if peer.state == LEFT:  # it said it stops: not reaching it is expected
            peer.next_attempt = now + self.backoff_cap_ms
            return
        peer.next_attempt = now + self.backoff_ms(peer.failures)
        state = DOWN if peer.failures >= self.down_after else SUSPECT
        if state == peer.state == SUSPECT and peer.failures == 1:
            self._notify(peer, "changed")  # its first failure: the reason is news
        self._set_state(peer, state)

    def cancelled(self, peer: Peer) -> None:
        """An exchange was abandoned (shutdown): neither success nor failure."""
        peer.in_flight = False

    def backoff_ms(self, failures: int) -> int:
        """Delay before the next attempt after ``failures`` consecutive failures: drawn
        from the upper half of ``min(cap, base * 2**(failures-1))``."""
        exp = min(max(failures, 1) - 1, 62)
        ceiling = min(self.backoff_cap_ms, self.backoff_base_ms * 2**exp)
        return int(ceiling * (0.5 + 0.5 * self.rng.random()))

    def inbound(
        self,
        key: str,
        now: int,
        *,
        bytes_in: int = 0,
        bytes_out: int = 0,
        ours: dict[int, int] | None = None,
        theirs: dict[int, int] | None = None,
    ) -> None:
        """A peer exchanged with us (it started; its request was signed by ``key``, which
        is in our keyring). That is a success too: a suspect, down or left peer is
        ``alive`` at once (it is back: after a partition data flows before our next
        round) and retried now. A peer that refused our key stays ``unknown-key`` until
        our own exchange succeeds, but is retried now."""
        self._forgotten.discard(key)
        peer = self.by_key(key)
        if peer is None:
            return
        peer.last_seen = now
        peer.bytes_in += bytes_in
        peer.bytes_out += bytes_out
        self._saw_state(peer, now, ours, theirs)
        if peer.state != ALIVE and not peer.in_flight:
            peer.next_attempt = min(peer.next_attempt, now)
        if peer.state in (SUSPECT, DOWN, LEFT):
            peer.failures = 0
            peer.last_error = None
            self._set_state(peer, ALIVE)

    def keyring_changed(self, now: int) -> None:
        """Our keyring changed: peers refused for their key may now be accepted, and a
        row whose key we no longer trust is ``unknown-key`` (never exchanged with)."""
        for p in self._peers:
            if p.key is not None and not self.trusts(p.key):
                self._set_state(p, UNKNOWN_KEY)
            elif p.state == UNKNOWN_KEY and not p.in_flight:
                p.next_attempt = now

    def _saw_state(
        self, peer: Peer, now: int, ours: dict[int, int] | None, theirs: dict[int, int] | None
    ) -> None:
        if ours is not None:
            self.saw_ours(ours)
        if theirs is None:
            return
        peer.last_sv = dict(theirs)
        peer.sv_at = now
        if ours is not None:
            peer.they_lack = lag(ours, theirs)
            peer.we_lack = lag(theirs, ours)

    def _set_state(self, peer: Peer, state: str) -> None:
        if peer.state != state:
            peer.state = state
            self._notify(peer, "changed")

    def _notify(self, peer: Peer, what: str) -> None:
        if what != "removed":
            self._recall(peer)  # type: ignore[attr-defined]  # PeerTable's
        if self.listener is not None:
            self.listener(peer, what)
