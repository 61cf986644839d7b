"""Hand-built updates for gate tests: what an attacker (or a buggy peer) could send.

Everything here uses pycrdt and our own signing code the way an attacker would: real Yjs
updates with chosen client ids, contents and delete sets, wrapped in headers signed by
whichever key the attacker holds.
"""

from __future__ import annotations

from typing import Any

import pycrdt
from pycrdt import Doc, Map

from crdt import Identity, Replica, SignedRecord, wire
from crdt.updates import SignedUpdate, derive_client, sign_update


def doc_like(replica: Replica, client: int) -> Doc:
    """A Doc with ``replica``'s content and the given client id (the attacker's view)."""
    d = Doc(client_id=client)
    d.get("records", type=Map)
    d.get("state", type=Map)
    d.apply_update(replica.document_update())
    return d


def capture(doc: Doc, edit: Any) -> bytes:
    """Run ``edit(doc)`` in one transaction and return the Yjs update it produced."""
    out: list[bytes] = []
    sub = doc.observe(lambda e: out.append(e.update))
    with doc.transaction():
        edit(doc)
    doc.unobserve(sub)
    assert len(out) == 1, out
    return out[0]


def clock_of(doc: Doc, client: int) -> int:
    return wire.decode_state_vector(doc.get_state()).get(client, 0)


def signed(
    identity: Identity,
    update: bytes,
    *,
    epoch: int,
    start: int,
    end: int,
    epochs: tuple[int, ...] = (),
    ts: int = 1_790_000_000_000,
    client: int | None = None,
) -> SignedUpdate:
    """Sign ``update`` as ``identity``; ``client`` overrides the derived id (a lie)."""
    su = sign_update(
        identity, epoch=epoch, update=update, start=start, end=end, ts=ts, epochs=epochs
    )
    if client is None:
        return su
    from dataclasses import replace

    header = replace(su.header, client=client)
    hb = header.encode()
    return SignedUpdate(hb, identity.sign(hb), update, header)


class Writer:
    """An author with its own epoch and doc, writing arbitrary (even illegal) changes."""

    def __init__(self, identity: Identity | None = None, epoch: int = 12345) -> None:
        self.identity = identity or Identity.generate()
        self.epoch = epoch
        self.client = derive_client(self.identity.public_id, epoch)
        self.doc = Doc(client_id=self.client)
        self.doc.get("records", type=Map)
        self.doc.get("state", type=Map)

    @property
    def id(self) -> str:
        return self.identity.public_id

    def sync_from(self, replica: Replica) -> None:
        self.doc.apply_update(replica.document_update())

    def write(self, edit: Any, **sign_kw: Any) -> SignedUpdate:
        start = clock_of(self.doc, self.client)
        update = capture(self.doc, edit)
        end = clock_of(self.doc, self.client)
        return signed(self.identity, update, epoch=self.epoch, start=start, end=end, **sign_kw)

    def put(self, rec: SignedRecord, **sign_kw: Any) -> SignedUpdate:
        root, key = rec.doc_key()
        return self.write(lambda d: d[root].__setitem__(key, rec.to_value()), **sign_kw)


def nested_memory(w: Writer, depth: int) -> SignedRecord:
    """A memory signed by ``w`` whose body nests ``depth`` levels (the body object is
    level 1; brackets in a string do not count), built by hand: ``records.memory`` would
    refuse one past ``records.MAX_BODY_DEPTH``."""
    inner = b"[" * (depth - 1) + b"]" * (depth - 1)
    body = (
        b'{"author":"' + w.id.encode() + b'","category":"learning","deep":' + inner
        + b',"kind":"memory","tags":[],"text":"nested [\\"{ in a string","ts":1790000000000,'
        b'"v":1}'
    )  # fmt: skip
    return SignedRecord(body, w.identity.sign(body))


def put_unparsed(w: Writer, rec: SignedRecord) -> SignedUpdate:
    """``w`` writes ``rec`` at its content id without parsing it (a forger's writer)."""
    return w.write(lambda d: d["records"].__setitem__(rec.id, rec.to_value()))


def with_delete_set(update: bytes, ds: dict[int, tuple[tuple[int, int], ...]]) -> bytes:
    """``update`` plus extra delete-set entries, merged the way Yjs merges updates."""
    return pycrdt.merge_updates(update, b"\x00" + wire.encode_delete_set(ds))


def fingerprint(replica: Replica) -> tuple:
    """Everything a rejection must leave unchanged: document, store rows, views' inputs."""
    db = replica._store._db
    rows = tuple(db.execute("SELECT * FROM updates ORDER BY seq"))
    runs = tuple(db.execute("SELECT * FROM item_runs ORDER BY client, start"))
    snap = tuple(db.execute("SELECT * FROM snapshot"))
    return (
        replica.document_update(),
        replica.state_vector(),
        {k: r.body for k, r in replica.records().items()},
        {k: r.body for k, r in replica.state().items()},
        rows,
        runs,
        snap,
        document_matches_store(replica),
    )


def document_matches_store(replica: Replica) -> bool:
    """The main document holds exactly the structs the store's updates make: the same
    state vector, and the same updates once their values are nulled (what a reload from
    the store, after a rejection, would build)."""
    stored, _ = replica._load_document(verify=False)
    return structs_of(replica._main) == structs_of(stored)


def structs_of(doc: Doc) -> tuple:
    """A document's state vector, structs (values nulled) and delete set, as read from its
    bytes, in an order of their own: yrs writes clients, and a value's keys, in the order
    of its hash maps, which two documents built by different transactions need not share."""
    scanned = wire.scan(wire.without_values(doc.get_update()))
    structs = sorted(scanned.structs, key=lambda s: (s.client, s.clock))
    return (wire.decode_state_vector(doc.get_state()), tuple(structs),
            wire.normalize_delete_set(scanned.delete_set))  # fmt: skip


# -- raw Yjs v1 bytes, for updates pycrdt would never produce --------------------------

V = wire.encode_varuint


def ystr(text: str) -> bytes:
    raw = text.encode()
    return V(len(raw)) + raw


def ygroup(client: int, clock: int, structs: list[bytes]) -> bytes:
    return V(len(structs)) + V(client) + V(clock) + b"".join(structs)


def yupdate(groups: list[bytes], delete_set: bytes = b"\x00") -> bytes:
    return V(len(groups)) + b"".join(groups) + delete_set


def deleted_item_at(root: str, key: str, length: int = 1) -> bytes:
    """An item born deleted (ContentDeleted), hung off ``root`` at ``key``."""
    return bytes([0x21]) + V(1) + ystr(root) + ystr(key) + V(length)


def any_item_at(root: str, key: str, value: dict[str, str]) -> bytes:
    """A map item with one plain value (a record's ``{"body", "sig"}``)."""
    obj = V(len(value)) + b"".join(ystr(k) + b"\x77" + ystr(v) for k, v in value.items())
    return bytes([0x28]) + V(1) + ystr(root) + ystr(key) + V(1) + b"\x76" + obj


def any_item_after(origin: tuple[int, int], value: dict[str, str]) -> bytes:
    """A map item continuing ``origin`` (an overwrite), with one plain value."""
    obj = V(len(value)) + b"".join(ystr(k) + b"\x77" + ystr(v) for k, v in value.items())
    return bytes([0xA8]) + V(origin[0]) + V(origin[1]) + V(1) + b"\x76" + obj
