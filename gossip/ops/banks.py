"""Banks and the agents' memories: retain, bank_recall, forget, banks, bank_put,
bank_delete. The agents' front door (``gossip.api.agents``: Singularity Memory's HTTP
contract; ``gossip.mcp``: the MCP tools) only renames routes and shapes onto these.

Rules kept here for every surface:

- a memory is in one bank (``default`` when it names none); recall in a bank returns
  only that bank's memories, trusted authors only unless ``include_untrusted``;
- ``document_id`` means upsert: a retain with the same author, bank and ``document_id``
  supersedes that author's earlier memory (``crdt.views`` hides it on every host), and
  a retain equal to the current one writes nothing and answers its id (a retried write
  is one memory);
- ``budget`` is 5/10/20 results unless ``limit`` is given; the answer fits
  ``max_tokens`` (about 4 characters a token); ``types`` and ``rerank`` are accepted
  and change nothing (docs/agents.md);
- a memory is forgotten only by its author (403 otherwise); a bank is deleted only when
  no other trusted author has a memory in it, and ``default`` never.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from crdt import RecordError, records
from crdt.records import DEFAULT_BANK
from crdt.views import MODES

from ..errors import Conflict, Forbidden, Invalid, NotFound
from . import queries
from .fields import (
    ANY_TEXT,
    RECORD_PREFIX,
    TEXT,
    Choice,
    CutMemoryText,
    Field,
    Flag,
    Instant,
    Number,
    Objects,
    Text,
    TextList,
    TextMap,
)
from .memories import (
    BANK_ID,
    MAX_LIMIT,
    MAX_TEXT,
    MEMORY_TEXT,
    UNTRUSTED,
    retract_own,
    vectors_now,
    with_said,
)
from .operation import Params, operation

if TYPE_CHECKING:
    from crdt import Identity, Replica, SignedRecord
    from crdt.views import Memory, Views

    from .host import Host

BANK = Field("bank", BANK_ID, "path", required=True,
             help="a bank id (letters, digits, . _ : @ -); `default` always exists")  # fmt: skip
MAX_ITEMS = 100  # memories one retain writes at most
RETRACT_CHUNK = 1000  # retractions per signed update when a bank is deleted (~0.4 MB)
BUDGETS = {"low": 5, "mid": 10, "high": 20}  # results a recall answers by budget
CHARS_PER_TOKEN = 4
MAX_TOKENS = 1_000_000
# A query may be nearly as long as a request (OpenClaw's auto-recall sends the agent's
# whole prompt, Hermes' prefetch the user's message); it is searched by its first
# MAX_TEXT characters, as Singularity Memory answers a long query rather than refusing
# it. Under the 64 KiB body, so that a longer one is a 400 naming `query`.
MAX_QUERY = 48 * 1024
DEFAULT_CATEGORY = "note"
RETAINED_TEXT = CutMemoryText(limit=MAX_TEXT)  # an agent's turn may be longer than a memory
ITEM_FIELDS = (
    Field("content", RETAINED_TEXT, required=True, help=f"the memory itself, {MEMORY_TEXT.rule}; "
          f"a longer one (up to {RETAINED_TEXT.most} characters) is kept cut to fit, ending "
          f"with {RETAINED_TEXT.CUT.strip()!r}"),
    Field("context", Text(limit=2048, blank=True), help="where it came from (user, assistant, …)"),
    Field("document_id", Text(limit=256), help="retaining the same one again replaces it"),
    Field("tags", TextList(), default=()),
    Field("metadata", TextMap(), help="string keys to strings, kept as given"),
    Field("timestamp", Instant(), help="when it happened (ISO 8601), kept as given"),
    Field("category", TEXT, default=DEFAULT_CATEGORY, help="anti-pattern, learning, note, …"),
    Field("subject", TEXT, help="what it is about, e.g. provider:x"),
)
NO_BANK = {404: "no record here names that bank"}

_STR = {"type": "string"}
_NSTR = {"type": ["string", "null"]}
_MS = {"type": "integer", "description": "milliseconds since the epoch"}
_NMS = {"type": ["integer", "null"], "description": "milliseconds since the epoch"}
_STRS = {"type": "array", "items": _STR}
_STRMAP = {"type": "object", "additionalProperties": _STR}


def _obj(props: dict[str, Any]) -> dict[str, Any]:
    return {"type": "object", "properties": props, "required": sorted(props),
            "additionalProperties": False}  # fmt: skip


RETAINED = _obj({"bank_id": _STR, "items_count": {"type": "integer"}, "memory_ids": _STRS,
                 "unchanged": {**_STRS, "description": "ids answered without a write: the "
                               "same memory was already current (a retried retain)"}})  # fmt: skip
RECALLED = _obj({
    "id": _STR, "text": _STR, "context": _NSTR, "tags": _STRS, "document_id": _NSTR,
    "metadata": _STRMAP, "timestamp": _NSTR, "type": {**_STR, "description": "its category"},
    "mentioned_at": {**_STR, "description": "its timestamp if it has one, else when it was "
                     "signed (ISO 8601)"},
    "score": {"type": "number", "description": "1/rank: best first"},
    "bank_id": _STR, "subject": _NSTR, "author": {**_STR, "description": "the signer's key"},
    "author_name": _NSTR, "trusted": {"type": "boolean"},
    "signed_at": {**_MS, "description": "the author's signed time (ms)"},
    "first_seen_at": {**_NMS, "description": "when this host first stored it (ms)"},
    "lanes": {"type": ["object", "null"], "additionalProperties": {"type": "integer"},
              "description": "lane -> its rank there: which lanes found it"},
})  # fmt: skip
BANK_RECALL = _obj({
    "bank_id": _STR, "results": {"type": "array", "items": RECALLED},
    "mode": {"enum": list(MODES), "description": "the lanes that answered (lexical while "
             "the vectors are built)"},
    "note": {**_NSTR, "description": "why a lane asked for did not answer (e.g. the "
             "embeddings endpoint is unreachable: the embedded model answered)"},
    "truncated": {"type": "boolean", "description": "max_tokens left some results out"},
    "capped": {"type": "object", "additionalProperties": {"type": "integer"},
               "description": "author -> memories hidden by the per-author share cap"},
})  # fmt: skip
BANK_ENTRY = _obj({
    "bank_id": _STR, "name": _STR, "mission": _STR, "created_at": _STR, "updated_at": _STR,
    "memories": {"type": "integer"}, "authors": _STRS,
})  # fmt: skip
BANKS = _obj({"banks": {"type": "array", "items": BANK_ENTRY}})
BANK_PUT = _obj({"bank_id": _STR, "name": _STR, "mission": _STR,
                 "changed": {"type": "boolean", "description": "a bank record was written"}})
BANK_DELETED = _obj({"success": {"type": "boolean"}, "bank_id": _STR,
                     "deleted_count": {"type": "integer"}, "message": _STR})  # fmt: skip
FORGOTTEN = _obj({"success": {"type": "boolean"}, "id": _STR, "retraction": _STR,
                  "already_retracted": {"type": "boolean"}})  # fmt: skip


def iso(ms: int) -> str:
    """ms since the epoch as RFC 3339 UTC text (Singularity Memory's time format)."""
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ms // 1000)) + f".{ms % 1000:03d}Z"


@operation(
    "retain", "POST", "/v1/banks/{bank}/memories",
    "write memories into a bank (signed here, durable, pushed to peers); the same "
    "document_id again replaces this host's earlier one",
    BANK, Field("items", Objects(ITEM_FIELDS, most=MAX_ITEMS), required=True),
    result=RETAINED, created=True, writes=True,
)  # fmt: skip
async def retain(host: Host, p: Params) -> dict[str, Any]:
    # Every item is checked (Params) before anything is written; then one read finds the
    # current memory of each document_id, and one signed update writes every item that
    # changes something: one durable commit per request, all items or none.
    bank, items = p.bank, list(p["items"])
    # A later item with the same document_id replaces an earlier one at once: only the
    # last is written, and the earlier ones answer its id.
    last = {item["document_id"]: k for k, item in enumerate(items)
            if item["document_id"] is not None}  # fmt: skip
    current: dict[str, Memory | None] = {}
    if last:
        current = await host.read(lambda r, v: {
            doc: v.current_document(r.author, bank, doc) for doc in last})  # fmt: skip
    ids: list[str | None] = [None] * len(items)
    unchanged: list[str] = []
    writes: list[int] = []
    for k, item in enumerate(items):
        doc = item["document_id"]
        if doc is not None and last[doc] != k:
            continue
        held = current.get(doc) if doc is not None else None
        if held is not None and _same(held, item):
            ids[k] = held.id
            unchanged.append(held.id)
        else:
            writes.append(k)
    written = await host.write_all([_maker(bank, items[k]) for k in writes])
    for k, rec in zip(writes, written, strict=True):
        ids[k] = rec.id
    out = [i if i is not None else ids[last[items[k]["document_id"]]]
           for k, i in enumerate(ids)]  # fmt: skip
    return {"bank_id": bank, "items_count": len(out), "memory_ids": out, "unchanged": unchanged}


def _maker(bank: str, item: dict[str, Any]):  # type: ignore[no-untyped-def]
    def make(identity: Identity, now: int) -> SignedRecord:
        try:
            return records.memory(identity, item["content"], category=item["category"],
                                  subject=item["subject"], tags=list(item["tags"]), ts=now,
                                  bank=bank, document_id=item["document_id"],
                                  context=item["context"], metadata=item["metadata"],
                                  timestamp=item["timestamp"])  # fmt: skip
        except RecordError as e:
            raise Invalid(f"the memory cannot be signed: {e}", "items") from None

    return make


def _same(m: Memory, item: dict[str, Any]) -> bool:
    return (m.text, m.category, m.subject, sorted(set(m.tags)), m.context, m.metadata,
            m.timestamp) == (item["content"], item["category"], item["subject"],
                             sorted(set(item["tags"])), item["context"],
                             item["metadata"] or {}, item["timestamp"])  # fmt: skip


@operation(
    "bank_recall", "POST", "/v1/banks/{bank}/recall",
    "recall memories of one bank, with who wrote each and whether it is trusted",
    BANK,
    Field("query", Text(limit=MAX_QUERY), required=True,
          help=f"words to search for (its first {MAX_TEXT} characters)"),
    Field("limit", Number(low=1, high=MAX_LIMIT, integer=True),
          help="results at most (default: by budget)"),
    Field("budget", Choice(tuple(BUDGETS)), default="mid", help="low/mid/high: 5/10/20 results"),
    Field("max_tokens", Number(low=1, high=MAX_TOKENS, integer=True),
          help="the results fit in about this many tokens (4 characters each)"),
    Field("tags", TextList(), default=(), help="only memories with these tags"),
    Field("tags_match", Choice(("any", "all")), default="any"),
    Field("types", TextList(), default=(), help="accepted, ignored"),
    Field("rerank", Flag(), default=False, help="accepted, ignored"),
    Field("include_untrusted", Flag(), default=False, help="also authors outside the keyring"),
    Field("mode", Choice(MODES), default="hybrid", help="hybrid (words and meaning, fused), "
          "lexical (words), semantic (meaning)"),
    result=BANK_RECALL, errors=NO_BANK,
)  # fmt: skip
async def bank_recall(host: Host, p: Params) -> dict[str, Any]:
    limit = p.limit if p.limit is not None else BUDGETS[p.budget]
    tags = list(p.tags)
    query = p.query[:MAX_TEXT]
    said = await host.prepare_recall(query) if p.mode != "lexical" else None

    def job(r: Replica, v: Views) -> dict[str, Any]:
        known_bank(v, p.bank)
        vectors_now(host, v, p.mode, query)
        found = queries.recall(r, v, query, limit=limit, bank=p.bank, mode=p.mode,
                               tags_all=tags if p.tags_match == "all" else (),
                               tags_any=tags if p.tags_match == "any" else (),
                               include_untrusted=p.include_untrusted)  # fmt: skip
        results, truncated = fit(found["memories"], p.max_tokens)
        seen = {m["id"]: v.first_seen(m["id"]) for m in results}
        return {"bank_id": p.bank, "truncated": truncated, "capped": found["capped"],
                "mode": found["mode"], "note": found["note"],
                "results": [recalled(m, rank, seen) for rank, m in enumerate(results, 1)]}

    return with_said(await host.read(job), said)


def known_bank(v: Views, bank: str) -> None:
    if not v.bank_known(bank):
        raise NotFound(f"no bank {bank!r} here (create it with PUT, or retain into it)", "bank")


def fit(memories: list[dict[str, Any]],
        max_tokens: int | None) -> tuple[list[dict[str, Any]], bool]:  # fmt: skip
    """The first memories whose text and context fit ``max_tokens``; the first one alone
    is cut to fit rather than dropped."""
    if max_tokens is None:
        return memories, False
    room = max_tokens * CHARS_PER_TOKEN
    out = []
    for m in memories:
        size = len(m["text"]) + len(m["context"] or "")
        if size > room:
            if not out:
                out.append({**m, "text": m["text"][: max(room - len(m["context"] or ""), 0)]})
            return out, True
        room -= size
        out.append(m)
    return out, False


def recalled(m: dict[str, Any], rank: int, seen: dict[str, int | None]) -> dict[str, Any]:
    """One result in Singularity Memory's shape, plus who wrote it and when this host
    first stored it."""
    return {
        "id": m["id"], "text": m["text"], "context": m["context"], "tags": m["tags"],
        "document_id": m["document_id"], "metadata": m["metadata"], "timestamp": m["timestamp"],
        "type": m["category"], "subject": m["subject"],
        "mentioned_at": m["timestamp"] or iso(m["ts"]), "score": round(1 / rank, 6),
        "bank_id": m["bank"], "author": m["author"], "author_name": m["author_name"],
        "trusted": m["trusted"], "signed_at": m["ts"],
        "first_seen_at": seen.get(m["id"]), "lanes": m["lanes"],
    }  # fmt: skip


@operation(
    "forget", "DELETE", "/v1/banks/{bank}/memories/{id}",
    "retract one of this host's memories in a bank (signed, replicated)",
    BANK, Field("id", RECORD_PREFIX, "path", required=True,
                help="a memory id or its first 6+ hex characters"),
    result=FORGOTTEN, writes=True,
    errors={403: "the memory was written by another host", 404: "no memory with that id "
            "in that bank"},
)  # fmt: skip
async def forget(host: Host, p: Params) -> dict[str, Any]:
    rid, done, already = await retract_own(host, p.id, bank=p.bank, reason="forget",
                                           refusal=Forbidden, why="only its author can forget it")
    return {"success": True, "id": rid, "retraction": done, "already_retracted": already}


@operation("banks", "GET", "/v1/banks", "every bank trusted authors made or wrote in",
           UNTRUSTED, result=BANKS)  # fmt: skip
async def banks(host: Host, p: Params) -> dict[str, Any]:
    def job(r: Replica, v: Views) -> dict[str, Any]:
        found = {b["bank_id"]: b for b in v.banks(include_untrusted=p.include_untrusted)}
        found.setdefault(DEFAULT_BANK, {"bank_id": DEFAULT_BANK, "name": DEFAULT_BANK,
                                        "mission": "", "created_at": 0, "updated_at": 0,
                                        "memories": 0, "authors": []})  # fmt: skip
        return {"banks": [
            {"bank_id": b["bank_id"], "name": b["name"], "mission": b["mission"],
             "created_at": iso(b["created_at"]), "updated_at": iso(b["updated_at"]),
             "memories": b["memories"], "authors": b["authors"]}
            for _, b in sorted(found.items())
        ]}  # fmt: skip

    return await host.read(job)


@operation(
    "bank_put", "PUT", "/v1/banks/{bank}", "create a bank or change its name or mission "
    "(idempotent: nothing is written when nothing changes)",
    BANK, Field("name", ANY_TEXT, help="default: the bank id"),
    Field("mission", Text(limit=2048, blank=True), help="what the bank is for"),
    result=BANK_PUT, writes=True,
)  # fmt: skip
async def bank_put(host: Host, p: Params) -> dict[str, Any]:
    def job(r: Replica, v: Views) -> tuple[tuple[str, str] | None, bool]:
        return v.bank_profile(p.bank, r.author), v.bank_known(p.bank)

    mine, known = await host.read(job)
    old_name, old_mission = mine if mine is not None else (p.bank, "")
    name = p.name if p.name is not None else old_name
    mission = p.mission if p.mission is not None else old_mission
    changed = (name, mission) != (old_name, old_mission) or not known
    if changed:
        await host.write(lambda i, now: records.bank(i, p.bank, ts=now, name=name,
                                                     mission=mission))  # fmt: skip
    return {"bank_id": p.bank, "name": name, "mission": mission, "changed": changed}


@operation(
    "bank_delete", "DELETE", "/v1/banks/{bank}",
    "delete a bank: retract this host's memories and bank records in it; refused while "
    "another trusted author has memories there",
    BANK, result=BANK_DELETED, writes=True,
    errors={**NO_BANK, 409: "another trusted author has memories in it, or it is `default`"},
)  # fmt: skip
async def bank_delete(host: Host, p: Params) -> dict[str, Any]:
    if p.bank == DEFAULT_BANK:
        raise Conflict("the `default` bank cannot be deleted (forget its memories one by one)",
                       "bank")  # fmt: skip

    def job(r: Replica, v: Views) -> tuple[list[str], list[str], int]:
        known_bank(v, p.bank)
        trust = v.trust()
        mine, others, untrusted = [], set(), 0
        for mid, who, ts in v.bank_memories(p.bank):
            if who == r.author:
                mine.append(mid)
            elif trust.counts(who, ts):
                others.add(who)
            else:
                untrusted += 1
        if others:
            names = queries.author_names(r, v)
            who = ", ".join(sorted(names.get(a) or a[:12] for a in others)[:5])
            raise Conflict(f"bank {p.bank!r} holds memories of {len(others)} other trusted "
                           f"host(s) ({who}); only their authors can forget them", "bank")
        return mine, v.bank_records(p.bank, r.author), untrusted

    memories, profiles, untrusted = await host.read(job)
    targets = [*memories, *profiles]
    for k in range(0, len(targets), RETRACT_CHUNK):  # a few signed updates, not one each
        await host.write_all([lambda i, now, t=t: records.retract(i, t, ts=now,
                                                                  reason="bank deleted")
                              for t in targets[k : k + RETRACT_CHUNK]])  # fmt: skip
    # Untrusted authors' memories never count here (nor block the delete): only theirs
    # can retract them, and recall hides them; the answer says they stay.
    left = (f"; {untrusted} memories of untrusted authors stay in it (hidden from recall; "
            "only their authors can retract them)" if untrusted else "")  # fmt: skip
    return {"success": True, "bank_id": p.bank, "deleted_count": len(memories),
            "message": f"retracted {len(memories)} memories of this host in {p.bank!r}; "
                       f"the retractions replicate to every host{left}"}  # fmt: skip
