"""Signed records: the unit of knowledge, readable and verifiable on its own.

A record is ``body`` (UTF-8 JSON object with at least ``v``, ``kind``, ``author``, ``ts``)
plus ``sig``, the author's Ed25519 signature of exactly those bytes. Bodies we create are
canonical (sorted keys, no whitespace); bodies we receive are verified and relayed as the
bytes they are, so fields and kinds added by newer versions survive untouched.

Where a record lives in the document:
- ``records`` (immutable, keyed by content id): memories, retractions, unknown kinds.
- ``state`` (latest value per author, keyed ``kind:author:name``): breaker, benchmark, host.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from dataclasses import dataclass
from functools import cached_property
from typing import Any

from .errors import IdentityError, RecordError, RecordTooDeep
from .frozen import built
from .identity import Identity, b64url, public_key_bytes, unb64url, verify

SCHEMA_VERSION = 1
MAX_BODY_BYTES = 16 * 1024
# How deep a body may nest arrays and objects, the body object itself being level 1
# (a memory with tags is 2). Checked before parsing, without recursion: Python's JSON
# parser recurses per level, so its own limit moves with the caller's stack depth and a
# body near it would parse in one place and fail in another (issue 17).
MAX_BODY_DEPTH = 32

KIND_MEMORY = "memory"
KIND_RETRACT = "retract"
KIND_BREAKER = "breaker"
KIND_BENCHMARK = "benchmark"
KIND_HOST = "host"
KIND_BANK = "bank"  # a memory bank's name and mission (immutable; the newest one counts)
DEFAULT_BANK = "default"  # the bank of a memory that names none (older writers)
# Trust records (docs/protocol.md, "Key records"): immutable, in ``records``.
MAX_TS = 2**53  # record times (and a revoke's `at`) are below this: JavaScript-safe
KIND_SUCCESSOR = "successor"  # the author's key hands over to ``key`` (rotation)
KIND_REVOKE = "revoke"  # ``key`` must no longer be trusted from ``at`` on
KIND_VOUCH = "vouch"  # the author vouches for ``key`` (an invitation was redeemed)
TRUST_KINDS = frozenset({KIND_SUCCESSOR, KIND_REVOKE, KIND_VOUCH})
STATE_KINDS = frozenset({KIND_BREAKER, KIND_BENCHMARK, KIND_HOST})
BREAKER_STATES = ("open", "half_open", "closed")


def canonical(obj: dict[str, Any]) -> bytes:
    """Canonical JSON: UTF-8, sorted keys, no insignificant whitespace, no NaN."""
    try:
        return json.dumps(
            obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
        ).encode("utf-8")
    except (TypeError, ValueError, RecursionError) as e:  # nested past the stack, too
        raise RecordError(f"record fields are not plain JSON: {e}") from None


# A JSON string, its closing quote optional so that an unterminated one ends the text
# instead of being retried at each later quote (one linear pass).
_JSON_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"?', re.DOTALL)
_NOT_BRACKETS = bytes(b for b in range(256) if b not in b"[]{}")


def nests_deeper_than(text: bytes, limit: int) -> bool:
    """Do arrays and objects in JSON ``text`` nest more than ``limit`` levels?

    Brackets inside strings are text. Linear and without recursion, so it can run on any
    input before a recursive parser does; on text that is not JSON the answer is only
    an upper bound (the parser refuses such text anyway)."""
    if text.count(b"[") + text.count(b"{") <= limit:  # most bodies: done in C
        return False
    brackets = _JSON_STRING.sub(b"", text).translate(None, _NOT_BRACKETS)
    depth = 0
    for b in brackets:
        depth += 1 if b in b"[{" else -1
        if depth > limit:
            return True
    return False


def content_id(body: bytes) -> str:
    """The key of an immutable record: hex SHA-256 of its body bytes."""
    return hashlib.sha256(body).hexdigest()


def state_name(kind: str, fields: dict[str, Any]) -> str | None:
    """The ``name`` part of a state key for the known state kinds, else None."""
    if kind == KIND_BREAKER:
        return _text(fields, "name")
    if kind == KIND_BENCHMARK:
        return f"{_text(fields, 'subject')}|{_text(fields, 'metric')}"
    if kind == KIND_HOST:
        return "self"
    return None


def state_key(kind: str, author: str, name: str) -> str:
    return f"{kind}:{author}:{name}"


def split_state_key(key: str) -> tuple[str, str, str]:
    """``kind:author:name`` → parts; the author id is base64url so never holds ':'."""
    kind, sep, rest = key.partition(":")
    author, sep2, name = rest.partition(":")
    if not (sep and sep2 and kind and author and name):
        raise RecordError(f"state key is not kind:author:name: {key!r:.80}")
    return kind, author, name


def _text(fields: dict[str, Any], name: str) -> str:
    value = fields.get(name)
    if not isinstance(value, str) or not value:
        raise RecordError(f"field {name!r} must be a non-empty string")
    return value


SIG_BYTES = 64  # an Ed25519 signature


@dataclass(frozen=True)
class SignedRecord:
    """Body bytes plus signature. Construct with ``sign`` or ``parse``; check with ``verify``."""

    body: bytes
    sig: bytes

    @cached_property
    def fields(self) -> dict[str, Any]:
        return _parse_body(self.body)

    @property
    def kind(self) -> str:
        return self.fields["kind"]

    @property
    def author(self) -> str:
        return self.fields["author"]

    @property
    def ts(self) -> int:
        return self.fields["ts"]

    @cached_property
    def id(self) -> str:
        return content_id(self.body)

    @cached_property
    def accepted(self) -> bool:
        """Did the key this successor or vouch record names accept its author (its
        ``accept``)? Kept with the record: records are immutable, trust is recomputed."""
        key, accept = self.fields.get("key"), self.fields.get("accept")
        if self.kind not in _ACCEPT or not isinstance(key, str) or not isinstance(accept, str):
            return False
        return accepts(self.kind, self.author, key, accept)

    @cached_property
    def _signature_holds(self) -> bool:
        # Body and signature are immutable: one check per record object is enough (a
        # record ``sign`` just made holds by construction: our own writes skip it).
        return verify(self.fields["author"], self.sig, self.body)

    def verify(self) -> None:
        """Raise RecordError unless the body parses and ``sig`` is the author's signature."""
        if not self._signature_holds:
            author = self.fields["author"]
            raise RecordError(f"record signature does not verify for author {author[:12]}")

    def doc_key(self) -> tuple[str, str]:
        """(root map, key) where this record belongs in the document."""
        name = state_name(self.kind, self.fields) if self.kind in STATE_KINDS else None
        if name is None:
            return "records", self.id
        return "state", state_key(self.kind, self.author, name)

    @cached_property
    def sig_text(self) -> str:
        """The signature as the document holds it (base64url)."""
        return b64url(self.sig)

    def to_value(self) -> dict[str, str]:
        """The plain value stored in the document (JSON-friendly for other languages)."""
        return {"body": self.body.decode("utf-8"), "sig": self.sig_text}

    @classmethod
    def from_value(cls, value: object) -> SignedRecord:
        """Parse a document value; RecordError if it is not ``{"body": str, "sig": str}``."""
        if not isinstance(value, dict) or len(value) != 2 or "body" not in value or (
            "sig" not in value
        ):
            raise RecordError("a record value must be an object with exactly body and sig")
        body, sig = value["body"], value["sig"]
        if not isinstance(body, str) or not isinstance(sig, str):
            raise RecordError("record body and sig must be strings")
        try:
            sig_bytes = unb64url(sig)
            body_bytes = body.encode("utf-8")
        except (ValueError, UnicodeError) as e:
            raise RecordError(f"record sig or body is not encodable: {e}") from e
        if len(sig_bytes) != SIG_BYTES:  # the gate relies on this, not on verifying it
            raise RecordError(f"record sig is {len(sig_bytes)} bytes, not {SIG_BYTES}")
        # parsed now, so a bad body fails here; the signature text is canonical (or
        # unb64url refused it)
        return built(cls, body=body_bytes, sig=sig_bytes, fields=_parse_body(body_bytes),
                     sig_text=sig)  # fmt: skip

    def to_json(self) -> dict[str, Any]:
        """Export form: the record as a reader sees it, with its id and raw parts."""
        return {"id": self.id, **self.to_value()}


def _parse_body(body: bytes) -> dict[str, Any]:
    if len(body) > MAX_BODY_BYTES:
        raise RecordError(f"record body is {len(body)} bytes, over the {MAX_BODY_BYTES} limit")
    if nests_deeper_than(body, MAX_BODY_DEPTH):
        raise RecordTooDeep(f"record body nests deeper than {MAX_BODY_DEPTH} levels")
    try:
        fields = _BODY_DECODER.decode(body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as e:
        raise RecordError(f"record body is not UTF-8 JSON: {e}") from None
    if not isinstance(fields, dict):
        raise RecordError("record body must be a JSON object")
    get = fields.get
    v, kind, author, ts = get("v"), get("kind"), get("author"), get("ts")
    if not isinstance(v, int) or isinstance(v, bool) or v < 1:
        raise RecordError("record field 'v' must be a positive integer")
    if not isinstance(kind, str) or not kind or ":" in kind:
        raise RecordError("record field 'kind' must be a non-empty string without ':'")
    if not isinstance(ts, int) or isinstance(ts, bool) or not 0 <= ts < MAX_TS:
        raise RecordError("record field 'ts' must be milliseconds since the epoch")
    if not isinstance(author, str):
        raise RecordError("record field 'author' must be a public id")
    try:
        public_key_bytes(author)
    except IdentityError as e:
        raise RecordError(f"record field 'author': {e}") from None
    return fields


def _no_constants(name: str) -> None:
    raise ValueError(f"{name} is not JSON")


_BODY_DECODER = json.JSONDecoder(parse_constant=_no_constants)  # NaN/Infinity are not JSON


def sign(identity: Identity, kind: str, fields: dict[str, Any], *, ts: int) -> SignedRecord:
    """Make a canonical body of ``fields`` plus v/kind/author/ts and sign it."""
    reserved = {"v", "kind", "author", "ts"} & set(fields)
    if reserved:
        raise RecordError(f"fields may not set {sorted(reserved)}")
    body = canonical(
        {**fields, "v": SCHEMA_VERSION, "kind": kind, "author": identity.public_id, "ts": ts}
    )
    rec = SignedRecord(body, identity.sign(body))
    rec.fields  # noqa: B018 - enforce size and shape on what we sign, too
    rec.__dict__["_signature_holds"] = True  # signed here, this instant, by that key
    return rec


# --- constructors for the known kinds -------------------------------------------------


def memory(
    identity: Identity,
    text: str,
    *,
    category: str,
    ts: int,
    subject: str | None = None,
    tags: list[str] | tuple[str, ...] = (),
    expires_at: int | None = None,
    supersedes: str | None = None,
    bank: str = DEFAULT_BANK,
    document_id: str | None = None,
    context: str | None = None,
    metadata: dict[str, str] | None = None,
    timestamp: str | None = None,
    idempotency_key: str | None = None,
) -> SignedRecord:
    """A memory. ``bank``, ``document_id``, ``context``, ``metadata`` and ``timestamp``
    (the agents' fields, docs/agents.md) are written only when given, so records
    without them read as before; a reader that knows no banks ignores them.
    ``idempotency_key`` (a writer's client-chosen id of the request that made it, so a
    retried write finds it: docs/api.md) likewise."""
    if not isinstance(text, str) or not text.strip():
        raise RecordError("a memory needs non-empty text")
    if not isinstance(category, str) or not category.strip():
        raise RecordError("a memory needs a category")
    fields: dict[str, Any] = {"text": text, "category": category, "tags": sorted(set(tags))}
    if subject:
        fields["subject"] = subject
    if expires_at is not None:
        fields["expires_at"] = int(expires_at)
    if supersedes:
        fields["supersedes"] = supersedes
    if bank != DEFAULT_BANK:
        fields["bank"] = bank
    for name, value in (("document_id", document_id), ("context", context),
                        ("metadata", metadata), ("timestamp", timestamp),
                        ("idempotency_key", idempotency_key)):  # fmt: skip
        if value is not None:
            fields[name] = value
    return sign(identity, KIND_MEMORY, fields, ts=ts)


def bank(identity: Identity, bank_id: str, *, ts: int, name: str = "",
         mission: str = "") -> SignedRecord:  # fmt: skip
    """A memory bank's profile as its author says it (the newest per author counts)."""
    if not isinstance(bank_id, str) or not bank_id:
        raise RecordError("a bank needs an id")
    return sign(identity, KIND_BANK, {"bank": bank_id, "name": name, "mission": mission}, ts=ts)


def retract(identity: Identity, target: str, *, ts: int, reason: str = "") -> SignedRecord:
    fields: dict[str, Any] = {"target": target}
    if reason:
        fields["reason"] = reason
    return sign(identity, KIND_RETRACT, fields, ts=ts)


def breaker(identity: Identity, name: str, *, state: str, ts: int, reason: str = "",
            failures: int = 0, tripped_at: int | None = None,
            resets_at: int | None = None) -> SignedRecord:  # fmt: skip
    if state not in BREAKER_STATES:
        raise RecordError(f"breaker state must be one of {', '.join(BREAKER_STATES)}")
    fields: dict[str, Any] = {"name": name, "state": state, "reason": reason, "failures": failures}
    for key, value in (("tripped_at", tripped_at), ("resets_at", resets_at)):
        if value is not None:
            fields[key] = value
    return sign(identity, KIND_BREAKER, fields, ts=ts)


def benchmark(identity: Identity, subject: str, metric: str, *, summary: dict[str, float],
              ts: int, unit: str = "", recorded_at: int | None = None) -> SignedRecord:  # fmt: skip
    for k, v in summary.items():
        if not isinstance(v, int | float) or isinstance(v, bool) or not math.isfinite(v):
            raise RecordError(f"benchmark summary value {k!r} must be a finite number")
    if "|" in subject:
        raise RecordError("a benchmark subject may not contain '|' (it separates the metric)")
    fields: dict[str, Any] = {
        "subject": subject,
        "metric": metric,
        "summary": summary,
        "unit": unit,
        "recorded_at": ts if recorded_at is None else recorded_at,
    }
    return sign(identity, KIND_BENCHMARK, fields, ts=ts)


def host(
    identity: Identity,
    *,
    name: str,
    addrs: list[str],
    port: int,
    protocol: int,
    ts: int,
    transport: str | None = None,
) -> SignedRecord:
    """A host announcement; ``transport`` ("tls", "plaintext") tells peers what its port
    speaks (None: not said, as older hosts do)."""
    fields: dict[str, Any] = {"name": name, "addrs": list(addrs), "port": port,
                              "protocol": protocol}  # fmt: skip
    if transport is not None:
        fields["transport"] = transport
    return sign(identity, KIND_HOST, fields, ts=ts)


# What a key signs to accept another as its predecessor (a successor record's
# ``accept``) or as its inviter (a vouch record's ``accept``). Without it, any trusted
# key could name another host's new key as its own successor, or vouch for a key after
# the fact, and claim the authority that goes with it (revoking it; for a predecessor,
# standing in TLS during a rotation's grace).
_ACCEPT = {"successor": b"sm-gossip successor accept v1\0", "vouch": b"sm-gossip vouch accept v1\0"}


def acceptance(new: Identity, kind: str, author: str) -> str:
    """``new``'s signature accepting ``author`` as the author of a ``kind`` record
    naming ``new`` (its predecessor for a successor, its inviter for a vouch)."""
    return b64url(new.sign(_ACCEPT[kind] + public_key_bytes(author)))


def successor(identity: Identity, new: Identity, *, ts: int) -> SignedRecord:
    """Signed by the old key: ``new`` is its successor (``gossip key rotate``). It
    carries ``new``'s signature accepting the old key as its predecessor."""
    if new.public_id == identity.public_id:
        raise RecordError("a key cannot be its own successor")
    accept = acceptance(new, KIND_SUCCESSOR, identity.public_id)
    return sign(identity, KIND_SUCCESSOR, {"key": new.public_id, "accept": accept}, ts=ts)


def accepts(kind: str, author: str, key: str, accept: str) -> bool:
    """Is ``accept`` ``key``'s acceptance of ``author`` for a ``kind`` record?"""
    try:
        return verify(key, unb64url(accept), _ACCEPT[kind] + public_key_bytes(author))
    except (IdentityError, ValueError):
        return False


def revoke(
    identity: Identity,
    key: str,
    *,
    ts: int,
    at: int | None = None,
    retroactive: bool = False,
    reason: str = "",
) -> SignedRecord:
    """``key`` is revoked from ``at`` (default: now) on; ``retroactive``: all its records.
    Who may sign one that peers honour: ``crdt.trust`` (the key itself, its successors,
    its inviter)."""
    _public_id(key)
    at = ts if at is None else int(at)
    if not 0 <= at < MAX_TS:
        raise RecordError(f"field 'at' must be in [0, 2**53): {at}")
    fields: dict[str, Any] = {"key": key, "at": at}
    if retroactive:
        fields["retroactive"] = True
    if reason:
        fields["reason"] = reason
    return sign(identity, KIND_REVOKE, fields, ts=ts)


def vouch(identity: Identity, key: str, *, ts: int, name: str = "",
          accept: str | None = None) -> SignedRecord:  # fmt: skip
    """The author vouches for ``key`` (hosts with ``trust.follow_vouches`` trust it).
    ``accept``: ``key``'s ``acceptance`` of the author as its inviter (given when it
    joined), without which the vouch admits but gives no authority to revoke ``key``."""
    _public_id(key)
    fields: dict[str, Any] = {"key": key}
    if name:
        fields["name"] = name
    if accept is not None:
        fields["accept"] = accept
    return sign(identity, KIND_VOUCH, fields, ts=ts)


def _public_id(key: str) -> None:
    try:
        public_key_bytes(key)
    except IdentityError as e:
        raise RecordError(f"field 'key': {e}") from None
