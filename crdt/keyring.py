"""This host's keys: the keyring (which authors this host trusts when reading: local,
never replicated) and the rotation of this host's own key.

A mixin of ``crdt.replica.Replica``. It owns the keyring and removed sets (``_keyring``,
``_removed``, read by the views from any thread, so replaced whole, never mutated) and
the trust listeners; it writes the store's keyring and meta rows and, for a rotation,
the key files and one successor record (through ``put``). It never touches the
document directly (a new client id: ``_renull_document``).
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from . import records
from .errors import GossipError, IdentityError
from .files import fsync_dir
from .identity import RETIRED_DIR, STAGED_KEY_FILE, Identity, public_key_bytes
from .records import SignedRecord
from .updates import SignedUpdate, derive_client

if TYPE_CHECKING:
    from .store import Store


class ReplicaKeys:
    """Trust and key rotation of ``Replica`` (its attributes are set by ``Replica``)."""

    home: Path
    identity: Identity
    author: str
    epoch: int
    client: int
    now_ms: Callable[[], int]
    _store: Store
    _keyring: dict[str, str]
    _removed: frozenset[str]
    _trust_listeners: list[Callable[[], None]]
    # and, from Replica: put(), records(), _renull_document()

    def keyring(self) -> dict[str, str]:
        """The authors this host trusts, id -> name; always includes this host itself.
        Safe from any thread (a copy of what the last trust change left)."""
        return dict(self._keyring)

    def trust(self, author: str, name: str = "") -> None:
        """Trust ``author`` (a public id) when reading; IdentityError if it is not one.
        Undoes an earlier ``distrust`` of it."""
        public_key_bytes(author)
        self._store.trust(author, name, self.now_ms())
        removed = self._store.removed()
        if author in removed:
            self._store.set_removed(removed - {author})
        self._notify_trust()

    def distrust(self, author: str, *, block: bool = True) -> bool:
        """Stop trusting ``author``, also when a vouch or a successor record names it
        (``removed``; not with ``block=False``, which only takes it out of the keyring);
        False if it was not in the keyring. This host stays trusted."""
        if author == self.author:
            raise GossipError("a host always trusts itself; it cannot remove its own key")
        public_key_bytes(author)
        was = self._store.distrust(author)
        if block:
            self._store.set_removed(self._store.removed() | {author})
        self._notify_trust()
        return was

    def removed(self) -> frozenset[str]:
        """Keys removed by hand: ``crdt.trust`` never trusts them."""
        return frozenset(self._removed)

    def _notify_trust(self) -> None:
        self._keyring = {self.author: "self", **self._store.keyring()}
        self._removed = frozenset(self._store.removed())
        for listener in list(self._trust_listeners):
            listener()

    def on_trust_change(self, listener: Callable[[], None]) -> None:
        """Call ``listener()`` after each change of the keyring or of this host's key."""
        self._trust_listeners.append(listener)

    def off_trust_change(self, listener: Callable[[], None]) -> None:
        if listener in self._trust_listeners:
            self._trust_listeners.remove(listener)

    def rotate(self, new: Identity) -> tuple[SignedRecord, SignedUpdate | None]:
        """Hand this host over to key ``new`` (``gossip key rotate``).

        The old key signs a ``successor`` record naming the new one (durable before
        anything else changes), then ``new`` becomes ``host.key`` and the old key is
        kept in ``retired/`` (``Identity.install``), then the store is re-owned: the new
        key gets a fresh epoch (so its client id is its own), and the old key stays in
        the keyring as ``self (retired)``, so its past records keep counting here. The
        replica keeps every stored update of the old key and keeps verifying them.
        Returns the successor record and the update that carries it."""
        old = self.identity
        if new.public_id == old.public_id or new.public_id in self._keyring:
            raise IdentityError("the new key must be a fresh key, not one this host knows")
        pending = sorted((self.home / RETIRED_DIR).glob("*.key"))
        if pending:  # peers may know only that key: a second hop would lose them
            raise IdentityError(
                f"the previous rotation (away from {pending[0].stem[:12]}…) is still in its "
                "grace: run the daemon (`gossip serve`) until every peer holds its successor "
                f"record ({RETIRED_DIR}/ is then emptied), then rotate again"
            )
        new.stage(self.home)  # durable before the successor names it (finished on open)
        rec = records.successor(old, new, ts=self.now_ms())
        su = self.put(rec)
        new.install(self.home, retire=old)
        self._adopt(new, old)
        return rec, su

    def _finish_staged_rotation(self) -> None:
        """At open, a rotation that crashed after staging its new key: finish it if the
        successor naming that key is stored, else drop the staged key (never signed)."""
        staged_path = self.home / STAGED_KEY_FILE
        try:
            staged = Identity.load(self.home, STAGED_KEY_FILE)
        except IdentityError:
            staged = None
        named = staged is not None and any(
            r.kind == records.KIND_SUCCESSOR and r.author == self.author
            and r.fields.get("key") == staged.public_id
            for r in self.records().values()
        )  # fmt: skip
        if not named or staged is None:
            staged_path.unlink(missing_ok=True)
            fsync_dir(self.home)
            return
        old = self.identity
        staged.install(self.home, retire=old)
        self._adopt(staged, old)

    def _adopt(self, new: Identity, old_author: Identity | str) -> None:
        """Make the store ``new``'s (the last step of a rotation, also after a crash)."""
        old = old_author if isinstance(old_author, str) else old_author.public_id
        epoch = secrets.randbits(52)
        self._store.trust(old, "self (retired)", self.now_ms())
        self._store.set_meta({"author": new.public_id, "epoch": str(epoch)})
        self.identity, self.author, self.epoch = new, new.public_id, epoch
        self.client = derive_client(self.author, self.epoch)
        self._renull_document()  # local writes are transactions on it: the new client id
        self._notify_trust()
