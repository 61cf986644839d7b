"""Actions: what an embedder asks a node to do — write (through the operations of
``gossip.ops``, so with the rules every surface applies), trust, revoke, rotate its
key, invite, join, sync now — as methods of ``Node``.

``NodeActions`` is that half of ``Node``'s public surface. It owns no state: each
method hands its work to the operations, or to the part of the node that owns it
(``rotation``, ``joining``, ``replication``, ``membership``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any

from crdt import Identity, Outcome, Replica, SignedRecord
from crdt.trust import TrustSet
from crdt.views import Views

from .. import invites
from ..discovery import DiscoveryStatus
from .replication import SyncReport
from .rotation import revoke_record

if TYPE_CHECKING:
    from ..ops.online import NodeHost
    from .joining import Joining
    from .membership import Membership
    from .replication import Replication
    from .rotation import Rotation


class NodeActions:
    """The actions of ``Node`` (see the module docstring)."""

    if TYPE_CHECKING:
        _views: Views | None
        rotation: Rotation
        joining: Joining
        replication: Replication
        membership: Membership

        @property
        def ops(self) -> NodeHost: ...

        @property
        def id(self) -> str: ...

        @property
        def replica(self) -> Replica: ...

        def trust_set(self) -> TrustSet: ...

        def keyring_changed(self, hosts: list[SignedRecord]) -> None: ...

        def change_now(self, change: Callable[[], object]) -> list[SignedRecord]: ...

        _now_ms: Callable[[], int]

        async def call(self, fn: Callable[..., Any], *args: Any, priority: int = ...) -> Any: ...

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
        revoked key, or a name another key has (or ``self``), is refused, as ``trust
        add`` refuses them everywhere."""
        from ..ops.keys import check_name, check_trustable

        check_trustable(key, self.id, self.trust_set())
        check_name(name, key, self.keyring())
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

    # -- writing: the one write path ---------------------------------------------------

    async def write_record(self, make: Callable[[Identity, int], SignedRecord]) -> SignedRecord:
        """Sign ``make(identity, now)`` as this host, write it durably, push it eagerly:
        the one write path of the operations (``gossip.ops``). Never touches the network
        before returning."""
        (rec,) = await self.write_records([make])
        return rec

    async def write_records(
        self, makes: Sequence[Callable[[Identity, int], SignedRecord]]
    ) -> list[SignedRecord]:
        """As ``write_record`` for several records, signed with one ``now`` and written in
        one signed update: one durable commit for them all, or nothing if one fails."""
        if not makes:
            return []

        def job() -> tuple[list[SignedRecord], Any]:
            replica = self.replica
            now = self._now_ms()
            recs = [make(replica.identity, now) for make in makes]
            return recs, replica.put(*recs)

        recs, su = await self.call(job)
        if su is not None:
            self.replication.queue_push([su.raw], covers={su.client: su.header.end})
        return recs
