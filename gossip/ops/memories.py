"""Memories: remember, recall, show one (any record, or a memory), retract.

Rules kept here for every surface: a memory's text is ``MEMORY_TEXT`` (at most
``MAX_TEXT`` characters, and bytes enough that its record is never too large);
only a memory's own author may retract it (readers honour no other retraction), and a
second retraction is not published. A remember with an ``idempotency_key`` this host
already wrote a memory with writes nothing and answers that memory's id (a retry after a
time-out is one memory); the same key with a different memory is a 409. The key is a
field of the signed record, so it is durable with the memory itself, in the same
transaction, and survives restarts and view rebuilds (docs/api.md says why not a table).
"""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING, Any

from crdt import GossipError, RecordError, records
from crdt.records import DEFAULT_BANK, KIND_MEMORY
from crdt.views import MODES

from ..errors import Conflict, Invalid, NotFound, OpError
from . import queries
from .delivery import delivery
from .fields import (
    ANY_TEXT,
    RECORD_ID,
    RECORD_PREFIX,
    TEXT,
    Field,
    Flag,
    MemoryText,
    Number,
    Seconds,
    Text,
)
from .fields import TextList as Tags
from .operation import Params, operation

if TYPE_CHECKING:
    import asyncio

    from crdt import Identity, Replica, SignedRecord
    from crdt.views import Views

    from .host import Host

MAX_TEXT = 8192
MEMORY_TEXT = MemoryText(limit=MAX_TEXT)  # a memory's text, on every surface that writes one
BANK_ID = Text(limit=128, pattern="[A-Za-z0-9][A-Za-z0-9._:@-]{0,127}")
# In a query string an empty value means not given (the default bank).
BANK_QUERY = Text(limit=128, blank=True, pattern="(?:[A-Za-z0-9][A-Za-z0-9._:@-]{0,127})?")
MAX_LIMIT = 1000  # memories one recall answers at most
UNTRUSTED = Field("include_untrusted", Flag(), "query", default=False,
                  help="also count authors outside the keyring")  # fmt: skip
MEMORY_ID = Field("id", RECORD_PREFIX, "path", required=True,
                  help="a record id or its first 6+ hex characters")  # fmt: skip
NOT_FOUND = {404: "nothing has that id (or a prefix of it)"}
IDEMPOTENCY_KEY = Text(limit=128, pattern="[A-Za-z0-9][A-Za-z0-9._:-]{0,127}")


@operation(
    "remember", "POST", "/v1/memories", "write a memory (signed here, durable, pushed to peers)",
    Field("text", MEMORY_TEXT, required=True, help=f"the lesson itself, {MEMORY_TEXT.rule}"),
    Field("category", TEXT, required=True, help="anti-pattern, learning, contract, …"),
    Field("subject", TEXT, help="what it is about, e.g. provider:x"),
    Field("tags", Tags(), default=()),
    Field("expires_in", Seconds(), help="hide it from readers after this many seconds"),
    Field("supersedes", RECORD_ID, help="the id of an earlier memory of this host it replaces"),
    Field("bank", BANK_ID, default=DEFAULT_BANK, help="the memory bank it goes in"),
    Field("idempotency_key", IDEMPOTENCY_KEY,
          help="a client-chosen id of this write (e.g. a UUID): sent again, it writes "
               "nothing and answers the memory it wrote"),
    result="Created", created=True, writes=True,
    errors={409: "the idempotency key was used for a different memory, or supersedes "
                 "names another host's memory"},
)  # fmt: skip
async def remember(host: Host, p: Params) -> dict[str, Any]:
    tags = list(p.tags)
    if p.supersedes is not None:
        def owner(r: Replica, v: Views) -> tuple[str | None, str]:
            target = r.get(p.supersedes)  # (one record: never a decode of them all)
            return (target.author if target is not None else None), r.author

        theirs, me = await host.read(owner)
        if theirs is not None and theirs != me:
            raise Conflict("'supersedes' names another host's memory: a host replaces only "
                           "its own (readers would ignore it)", "supersedes")  # fmt: skip

    def make(identity: Identity, now: int) -> SignedRecord:
        expires = None if p.expires_in is None else now + round(p.expires_in * 1000)
        try:
            return records.memory(identity, p.text, category=p.category, subject=p.subject,
                                  tags=tags, expires_at=expires, supersedes=p.supersedes,
                                  ts=now, bank=p.bank,
                                  idempotency_key=p.idempotency_key)  # fmt: skip
        except RecordError as e:
            raise Invalid(f"the memory cannot be signed: {e}", "text") from None

    key = p.idempotency_key
    if key is None:
        return {"id": (await host.write(make)).id}
    # A retry may arrive while the first attempt is still being written (it timed out on
    # the client's side, not here): the lookup and the write are one step per key.
    async with _KEYS.hold(host, key):
        found = await host.read(lambda r, v: v.keyed(r.author, key))
        if found is None:
            return {"id": (await host.write(make)).id}
    if (found.text, found.category, found.subject, sorted(set(found.tags)), found.bank,
            found.supersedes) != (p.text, p.category, p.subject, sorted(set(tags)), p.bank,
                                  p.supersedes):  # fmt: skip
        raise Conflict(f"the idempotency key {key!r:.60} was used for another memory "
                       f"({found.id[:12]}); choose a new key for a new memory",
                       "idempotency_key")  # fmt: skip
    return {"id": found.id}


class _KeyLocks:
    """One asyncio lock per (host, idempotency key) while some remember holds it."""

    def __init__(self) -> None:
        self._held: dict[tuple[int, str], tuple[asyncio.Lock, int]] = {}

    @contextlib.asynccontextmanager
    async def hold(self, host: Host, key: str):  # type: ignore[no-untyped-def]
        slot = (id(host), key)
        import asyncio  # here: a command that only sends a remember never needs it

        lock, users = self._held.get(slot, (asyncio.Lock(), 0))
        self._held[slot] = (lock, users + 1)
        try:
            async with lock:
                yield
        finally:
            lock, users = self._held[slot]
            if users == 1:
                del self._held[slot]
            else:
                self._held[slot] = (lock, users - 1)


_KEYS = _KeyLocks()


@operation(
    "recall", "GET", "/v1/memories",
    "recall memories, with the trust filter, retractions, expiry, quotas",
    Field("q", ANY_TEXT, "query", help="words to search for"),
    Field("category", ANY_TEXT, "query"),
    Field("subject", ANY_TEXT, "query"),
    Field("tag", ANY_TEXT, "query"),
    Field("author", ANY_TEXT, "query", help="an id, a keyring name or a prefix"),
    Field("limit", Number(low=1, high=MAX_LIMIT, integer=True), "query", default=20),
    UNTRUSTED,
    Field("bank", BANK_QUERY, "query", default=DEFAULT_BANK, help="the memory bank to search"),
    Field("mode", Text(limit=16, blank=True, pattern=f"({'|'.join(MODES)})?"), "query",
          default="hybrid", help="hybrid (words and meaning, fused; the default), lexical "
          "(words), semantic (meaning)"),
    result="Recall", errors=NOT_FOUND,
)  # fmt: skip
async def recall(host: Host, p: Params) -> dict[str, Any]:
    mode = p.mode or "hybrid"
    said = await host.prepare_recall(p.q) if p.q and mode != "lexical" else None

    def job(r: Replica, v: Views) -> dict[str, Any]:
        vectors_now(host, v, mode, p.q)
        return queries.recall(r, v, p.q or None, category=p.category or None,
                              subject=p.subject or None, tag=p.tag or None,
                              author=p.author or None, limit=p.limit,
                              include_untrusted=p.include_untrusted,
                              bank=p.bank or DEFAULT_BANK, mode=mode)  # fmt: skip

    return with_said(await host.read(job), said)


OFFLINE_EMBED_LIMIT = 4096  # ~0.5 s of the embedded model: the data dir's lock is held


def vectors_now(host: Host, v: Views, mode: str, query: str | None) -> None:
    """Before a recall that may use the semantic lane, on a data dir no daemon holds:
    the vectors of memories written since, made now (they are kept), at most
    ``OFFLINE_EMBED_LIMIT`` a call, so a backlog (an import, a sync the daemon did not
    finish) never holds the lock for minutes while a ``gossip serve`` waits for it: the
    recall then answers by words and its note says how many are left; online, the
    daemon makes them as memories arrive."""
    if not host.online and mode != "lexical" and query and v.semantic is not None:
        with contextlib.suppress(GossipError):  # no model: the answer says lexical
            v.semantic.catch_up(limit=OFFLINE_EMBED_LIMIT)


def with_said(found: dict[str, Any], said: str | None) -> dict[str, Any]:
    """``found`` (a recall: ``mode``, ``note``) with what ``prepare_recall`` said about the
    embeddings endpoint's model added to its note."""
    if said and found["mode"] != "lexical":  # the endpoint's index is not even made yet
        found["note"] = "; ".join(n for n in (said, found["note"]) if n)
    return found


@operation(
    "show", "GET", "/v1/records/{id}", "any immutable record with its provenance",
    MEMORY_ID, result="Shown", errors=NOT_FOUND,
)  # fmt: skip
async def show(host: Host, p: Params) -> dict[str, Any]:
    shown = await host.read(lambda r, v: queries.show(r, v, p.id))
    return {**shown, "delivery": delivery(host, shown)}


@operation(
    "memory", "GET", "/v1/memories/{id}", "one memory with its provenance",
    MEMORY_ID, result="Shown", errors=NOT_FOUND,
)  # fmt: skip
async def memory(host: Host, p: Params) -> dict[str, Any]:
    def job(r: Replica, v: Views) -> dict[str, Any]:
        return queries.show(r, v, queries.resolve_record(r, p.id, kind=KIND_MEMORY))

    shown = await host.read(job)
    return {**shown, "delivery": delivery(host, shown)}


@operation(
    "retract", "POST", "/v1/memories/{id}/retract", "retract one of this host's memories",
    MEMORY_ID, Field("reason", ANY_TEXT, default="", help="why (kept in the retraction)"),
    result="Retracted", writes=True,
    errors={**NOT_FOUND, 409: "the memory was written by another host"},
)  # fmt: skip
async def retract(host: Host, p: Params) -> dict[str, Any]:
    rid, done, already = await retract_own(
        host, p.id, reason=p.reason, refusal=Conflict,
        why="readers honour only its own author's retraction")  # fmt: skip
    return {"id": rid, "retraction": done, "already_retracted": already}


async def retract_own(host: Host, prefix: str, *, reason: str, refusal: type[OpError], why: str,
                      bank: str | None = None) -> tuple[str, str, bool]:  # fmt: skip
    """Retract this host's memory ``prefix`` names (in ``bank``, when given): its id, the
    retraction's id, and whether it was retracted already. Another author's memory is
    ``refusal`` saying ``why``: only an author's own retraction hides its memory."""

    def find(r: Replica, v: Views) -> tuple[str, str | None]:
        rid = queries.resolve_record(r, prefix, kind=KIND_MEMORY)
        target = r.get(rid)
        if target is None:  # resolve_record found it, in this same thread: never
            raise NotFound(f"no memory with the id {rid}", "id")
        if bank is not None and (target.fields.get("bank") or DEFAULT_BANK) != bank:
            raise NotFound(f"memory {rid[:12]} is not in bank {bank!r}", "id")
        if target.author != r.author:
            name = queries.author_names(r, v).get(target.author) or target.author[:12]
            raise refusal(f"memory {rid[:12]} was written by {name}, not by this host; {why} "
                          "(to stop seeing that author, `gossip trust remove` it)", "id")
        done = v.retractions(rid, r.author)
        return rid, done[0] if done else None

    rid, done = await host.read(find)
    if done is not None:
        return rid, done, True
    rec = await host.write(lambda i, now: records.retract(i, rid, ts=now, reason=reason))
    return rid, rec.id, False
