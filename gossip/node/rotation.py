"""Key rotation's grace: after ``key rotate`` (here or before a restart), the old key
still answers, signs requests to peers not yet known to hold its ``successor`` record
and, over TLS, is the certificate presented; once every trusted peer holds it (or the
grace runs out), the new key takes over, and the old key is revoked and deleted.

Owns the rotation in progress and the retired keys this host still has. Reads the peer
table and the trust through the node; signs and writes only through its write path.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from crdt import Identity, Replica, SignedRecord, records
from crdt.trust import TrustSet
from crdt.views import Views

from ..transport import PeerRefused, auth
from ..transport.tls import TlsSetupError

if TYPE_CHECKING:
    from .node import Node

log = logging.getLogger("gossip.node")

# A rotation signs requests with the old key until every trusted peer confirmed the
# successor record, or for this long at most (10 anti-entropy rounds, at least a day).
ROTATION_GRACE = 10
ROTATION_GRACE_MIN_S = 86400.0  # a peer away for a day still finds the old key answering


@dataclass(frozen=True)
class Grace:
    """A key rotation in progress: ``old`` signs requests to peers that may not have
    the successor record yet (at clock ``end`` of ``client``), until ``deadline_ms``.
    ``confirmed``: peers whose own state vector (in a message of theirs, never our
    guess of what our reply taught them) showed they hold it."""

    old: Identity
    client: int
    end: int
    deadline_ms: int
    confirmed: set[str] = field(default_factory=set)


class Rotation:
    """The rotation state of one node."""

    def __init__(self, node: Node) -> None:
        self.node = node
        self.grace: Grace | None = None
        self.retired_keys: dict[str, Identity] = {}
        self._resumed: tuple[Identity, int, int] | None = None
        self._verifier: auth.Verifier | None = None

    @property
    def active(self) -> bool:
        """Whether a grace is running (requests may still be signed by the old key)."""
        return self.grace is not None

    def _deadline(self) -> int:
        node = self.node
        grace = max(ROTATION_GRACE * node.profile.interval, ROTATION_GRACE_MIN_S)
        return node.now_ms() + int(grace * 1000)

    # -- at start ---------------------------------------------------------------------

    def load(self, replica: Replica, views: Views, trust: TrustSet) -> None:
        """In the worker, at open: the keys this host retired (`gossip key rotate`) and
        still has, which peers that have not learnt the successor yet keep reaching us
        by, after a restart too; and the rotation to resume, if one is unfinished."""
        home = self.node.home
        self.retired_keys = {
            k: ident
            for k in trust.successors
            if trust.current(k) == replica.author and k in trust.keys
            and (ident := Identity.load_retired(home, k)) is not None
        }
        self._resumed = None
        for rec in views.trust_records():
            old = self.retired_keys.get(rec.author)
            if old is None or rec.kind != "successor" or rec.fields.get("key") != replica.author:
                continue
            where = replica.origin(rec.id)
            if where is not None:
                self._resumed = (old, int(where["client"]), int(where["clock"]) + 1)
                break

    def start(self, verifier: auth.Verifier) -> None:
        """Before the node serves: the verifier answers for retired keys; a rotation
        made while stopped resumes its grace."""
        self._verifier = verifier
        verifier.retired.update(self.retired_keys)
        if self._resumed is not None:
            old, client, end = self._resumed
            self.grace = Grace(old, client, end, self._deadline())
            verifier.request_signer = self.request_signer

    def presenting(self) -> str | None:
        """The key whose TLS certificate the server presents at start (the old one
        during a grace: peers may not hold the successor yet), or None for ours."""
        return self.grace.old.public_id if self.grace is not None else None

    # -- rotating ---------------------------------------------------------------------

    async def rotate(self) -> str:
        """See ``Node.rotate_key``."""
        node = self.node
        new = Identity.generate()
        pinned = node.pinned_tls()

        def job() -> tuple[Identity, Any]:
            replica = node.replica
            old = replica.identity
            _, su = replica.rotate(new)
            if pinned is not None:  # new tls.crt, retired/<old>.crt; still presenting old
                try:
                    pinned.rotated(new, old.public_id)
                except TlsSetupError as e:  # the rotation is done: never undo it here
                    log.error("rotated, but the TLS certificates were not written: %s (they "
                              "are at the next start)", e)  # fmt: skip
            return old, su

        old, su = await node.call(job)
        verifier = node.verifier
        verifier.retired[old.public_id] = old
        self.retired_keys[old.public_id] = old
        node.switch_identity(new)
        if su is not None:
            self.grace = Grace(old, su.client, su.header.end, self._deadline())
            verifier.request_signer = self.request_signer
            node.replication.queue_push([su.raw], covers={su.client: su.header.end})
        elif pinned is not None:  # no grace to keep (nobody to tell): present the new key
            await node.call(lambda: pinned.present(new.public_id))
        node.membership.learn_hosts(await node.call(node.membership.announce))
        node.wake()
        log.info("rotated the host key: %s… now signs for %s…", new.public_id[:12],
                 old.public_id[:12])  # fmt: skip
        return new.public_id

    def request_signer(self, recipient: str) -> Identity | None:
        """During a grace: the old key for a peer not yet known to hold the successor
        record (it may not trust the new key), else None (the new key)."""
        grace = self.grace
        if grace is None or recipient in grace.confirmed:
            return None
        return grace.old

    def saw(self, key: str | None, sv: dict[int, int] | None) -> None:
        """A peer's own state vector (in a message of its): does it hold the successor?"""
        grace = self.grace
        if grace is None or key is None or sv is None:
            return
        if sv.get(grace.client, 0) >= grace.end:
            grace.confirmed.add(key)

    def refused(self, peer_key: str | None, e: Exception) -> bool:
        """Whether a peer's refusal confirms it holds the successor: a 403 to our old key
        means it honours a revocation of it, so it has the successor record too (the
        next request is signed with the new key)."""
        grace = self.grace
        if grace is None or peer_key is None or peer_key in grace.confirmed:
            return False
        if isinstance(e, PeerRefused) and e.status == 403:
            grace.confirmed.add(peer_key)
            return True
        return False

    def end_if_known(self) -> None:
        """Sign every request with the new key once every trusted peer in the table (up
        or down) holds the successor record, or once the grace is over (a peer away that
        long learns the successor from the others, if any)."""
        node, grace = self.node, self.grace
        table = node.table_or_none
        if grace is None or table is None:
            return
        # Every trusted peer we know of, up or down: one that is away when we rotate
        # must still find the old key answering when it comes back (until the deadline).
        mine = {node.id, grace.old.public_id}
        keys = node.trust_set().keys
        peers = [p for p in table if p.key in keys and p.key not in mine]
        known = all(p.key in grace.confirmed for p in peers)
        if not known and node.now_ms() < grace.deadline_ms:
            return
        self.grace = None
        if self._verifier is not None:
            self._verifier.request_signer = None
        pinned = node.pinned_tls()
        if pinned is not None:  # new connections now prove the new key
            try:
                pinned.present(pinned.host_id)
            except TlsSetupError as e:
                log.error("cannot present the new key's TLS certificate: %s", e)
        node.spawn(self._retire(grace.old), "retire the old key")

    async def _retire(self, old: Identity) -> None:
        """After a rotation's grace (review finding 8): publish a revoke of the old key,
        signed by the new one, then delete ``retired/<id>.key`` (and its certificate), so
        that a data dir stolen later holds no trusted old key. Signed by the successor,
        not by the old key: a peer honours it only once it holds the successor record
        too, so no peer drops the old key before it trusts the new one. The successor
        edge survives it, and the old key's records up to it still count."""
        node = self.node
        key = old.public_id
        try:
            if key not in node.trust_set().revoked:  # the owner may have revoked it already
                await node.revoke(key, reason="rotated away from; the rotation's grace is over")
        except Exception as e:  # never the task group's end: the node runs on
            log.warning("could not revoke the retired key %s…: %s (kept in retired/)",
                        key[:12], e)  # fmt: skip
            return
        if self._verifier is not None:
            self._verifier.retired.pop(key, None)
        self.retired_keys.pop(key, None)
        try:
            await node.call(lambda: Identity.discard_retired(node.home, key))
        except Exception as e:
            log.warning("could not delete the retired key %s…: %s", key[:12], e)
            return
        log.info("revoked and deleted the retired key %s…", key[:12])


def revoke_record(views: Views | None, identity: Identity, key: str, now: int, *,
                  retroactive: bool, reason: str) -> SignedRecord:  # fmt: skip
    """A signed ``revoke`` of ``key``, if this host may publish one (``can_revoke``)."""
    from crdt import GossipError

    if views is None or not views.can_revoke(identity.public_id, key):
        raise GossipError(
            f"this host cannot revoke {key[:12]}…: only the key itself, its successor "
            "or the host that invited it can (`gossip trust remove` without "
            "publishing is local)"
        )
    return records.revoke(identity, key, ts=now, retroactive=retroactive, reason=reason)


__all__ = ["ROTATION_GRACE", "ROTATION_GRACE_MIN_S", "Grace", "Rotation", "revoke_record"]
