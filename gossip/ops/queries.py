"""Read-side questions asked by both the CLI (embedded mode) and the local API, answered
the same way in both: resolve an author or a record id prefix, show a record with its
provenance, count what the replica holds (status, inspect).

Each function takes a ``Replica`` (and ``Views``) in whatever thread owns them and
returns plain JSON-ready values. Nothing here writes, and nothing here does I/O beyond
the replica's own reads.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from crdt import GossipError
from crdt.identity import public_key_bytes
from crdt.records import KIND_MEMORY, split_state_key

from ..errors import Invalid, NotFound, OpError

if TYPE_CHECKING:
    from crdt import Replica, SignedRecord
    from crdt.trust import TrustSet
    from crdt.views import Views

RECORD_ID_PREFIX = re.compile(r"[0-9a-f]{6,64}")


def record_json(rec: SignedRecord) -> dict[str, Any]:
    """A record as the API shows it: id, its fields, and the raw signed parts."""
    return {"id": rec.id, "fields": rec.fields, **rec.to_value()}


def LookupFailed(message: str, *, field: str, missing: bool = False) -> OpError:
    """An id, prefix or name given by a user names nothing (``NotFound``), or more than
    one thing or nothing usable (``Invalid``)."""
    return (NotFound if missing else Invalid)(message, field)


def resolve_author(
    r: Replica, text: str, *, known: Iterable[str] = (), field: str = "author"
) -> str:
    """A full public id from an id, a keyring name, or a unique id prefix (>= 6 chars)."""
    keyring = r.keyring()
    pool = set(keyring) | set(known)
    if text in pool:
        return text
    named = [a for a, n in keyring.items() if n == text]
    if len(named) == 1:
        return named[0]
    if len(named) > 1:
        raise LookupFailed(f"{len(named)} keyring entries are named {text!r}; give the key",
                           field=field)  # fmt: skip
    if len(text) >= 6:
        prefixed = sorted(a for a in pool if a.startswith(text))
        if len(prefixed) == 1:
            return prefixed[0]
        if len(prefixed) > 1:
            raise LookupFailed(
                f"{text!r} is the start of {len(prefixed)} authors; give more of it", field=field
            )
    try:
        public_key_bytes(text)
    except GossipError:
        raise LookupFailed(f"no author {text!r:.80} here (give a public id, a keyring name "
                           "or at least 6 characters of an id)",
                           field=field, missing=True) from None  # fmt: skip
    return text


def revoked_note(key: str, trust: TrustSet) -> str | None:
    """Why ``trust add KEY`` cannot work, if ``key`` is revoked: a signed revocation is
    final (docs/protocol.md, "Key records")."""
    rev = trust.revoked.get(key)
    if rev is None:
        return None
    return (f"{key[:12]}… is revoked (by {rev.by[:12]}…, record {rev.record[:12]}): a signed "
            "revocation is final, so trusting it again here would change nothing; that host "
            "needs a new key (`gossip init` on a fresh data dir, or an invitation)")


def author_keys(r: Replica, views: Views, text: str) -> str | set[str]:
    """The author(s) `recall --author TEXT` means: a whole id is that key; a keyring
    name or a prefix names a host, so every key of its rotations."""
    trust = views.trust()
    key = resolve_author(r, text, known=views.held()["records_by_author"])
    return key if key == text else trust.lineage(trust.current(key))


def resolve_host(r: Replica, text: str, trust: TrustSet) -> tuple[str, str]:
    """(the key ``text`` names, the key to act on) for `trust remove`: a keyring name or
    a prefix names a host, which means its current key (the last honoured successor of
    the one named) after a rotation; a whole id means exactly that key (a stolen old
    key is revoked by its id)."""
    known = set(trust.keys) | set(trust.revoked)
    try:
        named = resolve_author(r, text, known=known, field="key")
    except OpError as e:
        # Not a keyring name: a name `trust list` shows for a key trusted through a
        # vouch (or a successor of one) names that host too.
        hosts = {trust.current(k) for k, n in trust.names.items() if n == text}
        if not isinstance(e, NotFound) or not hosts:
            raise
        if len(hosts) > 1:
            raise LookupFailed(f"{len(hosts)} hosts are named {text!r}; give the key",
                               field="key") from None  # fmt: skip
        (current,) = hosts
        return current, current
    return named, named if named == text else trust.current(named)


def successor_to_keep(keyring: dict[str, str], key: str, trust: TrustSet) -> tuple[str, str] | None:
    """Before ``key`` is removed here by its whole id: if it rotated, the host it became
    stays trusted — (its current key, the name to trust it under) — since removing the
    old key would otherwise also drop every key reached through it."""
    current = trust.current(key)
    if current == key or current not in trust or current in keyring:
        return None
    return current, keyring.get(key) or trust.names.get(key, "")


def recall(r: Replica, views: Views, text: str | None, *, category: str | None = None,
           subject: str | None = None, tag: str | None = None, author: str | None = None,
           limit: int = 20, include_untrusted: bool = False, bank: str | None = None,
           tags_all: Iterable[str] = (), tags_any: Iterable[str] = (),
           mode: str = "hybrid") -> dict[str, Any]:  # fmt: skip
    """What ``GET /v1/memories`` answers, also given by the client's in-process reads:
    ``author`` is a key, a key prefix or a keyring name; each hit has ``author_name``."""
    key = None
    if author is not None:
        key = author_keys(r, views, author)
    found = views.recall(text, category=category, subject=subject, tag=tag, author=key,
                         limit=limit, include_untrusted=include_untrusted, bank=bank,
                         tags_all=list(tags_all), tags_any=list(tags_any),
                         mode=mode)  # fmt: skip
    names = author_names(r, views)
    return {
        "memories": [{**m.to_json(), "author_name": names.get(m.author)} for m in found.hits],
        "mode": found.mode, "note": found.note,
        "capped": found.capped,
        "quota": {"author_share": views.config.author_share},
    }


def author_names(r: Replica, views: Views) -> dict[str, str]:
    """Names to show authors by: the keyring's, else one inherited through a successor or
    vouch record (a rotated host keeps its name)."""
    return {**views.trust().names, **{k: n for k, n in r.keyring().items() if n}}


def resolve_record(r: Replica, prefix: str, *, kind: str | None = None,
                   field: str = "id") -> str:  # fmt: skip
    """The full id of the one immutable record whose id starts with ``prefix`` (of
    ``kind``, if given). Reads the ids, and parses only the records they match."""
    prefix = prefix.lower()
    if not RECORD_ID_PREFIX.fullmatch(prefix):
        raise LookupFailed(f"a record id (or its start) is 6 to 64 hex characters, got "
                           f"{prefix!r:.80}", field=field)  # fmt: skip
    matches = sorted(
        rid for rid in r.record_ids()
        if rid.startswith(prefix) and ":" not in rid and (rec := r.get(rid)) is not None
        and (kind is None or rec.kind == kind)
    )  # fmt: skip
    what = "memory" if kind == KIND_MEMORY else "record"
    if not matches:
        raise LookupFailed(f"no {what} with an id starting {prefix}", field=field, missing=True)
    if len(matches) > 1:
        shown = ", ".join(m[:16] for m in matches[:3])
        raise LookupFailed(
            f"{prefix} is the start of {len(matches)} {what} ids ({shown}…); give more of it",
            field=field,
        )
    return matches[0]


def show(r: Replica, views: Views, prefix: str) -> dict[str, Any]:
    """One immutable record with its provenance: author (and keyring name), trusted?,
    signature ok, retracted?, and which peer first delivered it and when."""
    rid = resolve_record(r, prefix)
    rec = r.get(rid)
    if rec is None:  # resolve_record found it, in this same thread: never
        raise LookupFailed(f"no record with the id {rid}", field="id", missing=True)
    keyring = r.keyring()
    try:
        rec.verify()
        signature_ok = True
    except GossipError:
        signature_ok = False
    retracted_by = views.retractions(rid, rec.author)
    origin = r.origin(rid)
    memory = views.memory(rid) if rec.kind == KIND_MEMORY else None
    trust = views.trust()
    return {
        "id": rid,
        "kind": rec.kind,
        "author": rec.author,
        "author_name": keyring.get(rec.author) or trust.names.get(rec.author),
        "trusted": trust.counts(rec.author, rec.ts),
        "trust": trust_note(trust, rec.author, rec.ts),
        "signature_ok": signature_ok,
        "ts": rec.ts,
        "retracted_by": retracted_by,
        "supersedes": supersession(r, rec),
        "memory": memory.to_json() if memory is not None else None,
        "provenance": {
            "local": origin is not None and origin["source"] == "local",
            "source": origin["source"] if origin else None,
            "received_at": origin["received_at"] if origin else None,
            "checkpoint": bool(origin and origin["checkpoint"]),
            "item": {"client": origin["client"], "clock": origin["clock"]} if origin else None,
        },
        "record": record_json(rec),
    }


def supersession(r: Replica, rec: SignedRecord) -> dict[str, Any] | None:
    """What a memory's ``supersedes`` does: only a memory of its own author is replaced
    (recall hides it); one naming another author's memory is ignored, and said so."""
    target = rec.fields.get("supersedes") if rec.kind == KIND_MEMORY else None
    if not isinstance(target, str) or not target:
        return None
    replaced = r.get(target) if ":" not in target else None  # (a state key is no record)
    if replaced is None:
        return {"id": target, "honoured": False,
                "note": "not here (yet): nothing is replaced"}  # fmt: skip
    if replaced.author != rec.author:
        return {"id": target, "honoured": False,
                "note": "ignored: it names another author's memory (an author replaces only "
                        "its own)"}  # fmt: skip
    return {"id": target, "honoured": True, "note": "replaces an earlier memory of its author"}


def trust_note(trust: TrustSet, author: str, ts: int) -> str:
    """Why a record of ``author`` signed at ``ts`` counts or not, for `gossip show`."""
    rev = trust.revoked.get(author)
    if rev is not None and author in trust.compromised:
        when = "before" if ts <= rev.at else "after"
        return (f"{'counts' if when == 'before' else 'hidden'}: signed {when} its key named "
                f"two different successors at {rev.at} (compromised: record "
                f"{rev.record[:12]})")  # fmt: skip
    if rev is not None and (author in trust.cutoffs or rev.by != author):
        by = "itself" if rev.by == author else rev.by[:12]
        if rev.retroactive:
            return f"hidden: its key was revoked by {by}, retroactively (record {rev.record[:12]})"
        when = "before" if ts <= rev.at else "after"
        return (f"{'counts' if when == 'before' else 'hidden'}: signed {when} its key was "
                f"revoked by {by} at {rev.at} (record {rev.record[:12]})")  # fmt: skip
    how = trust.how(author)
    return how if how != "not trusted" else "not trusted: the key is not in the keyring"


def counts(views: Views) -> dict[str, int]:
    """Records held: total, by authors the current trust counts, by others; state
    entries. From the views' tally (``Views.held``): a poll never decodes the document."""
    held = views.held()
    total = sum(held["records_by_kind"].values())
    return {"total": total, "trusted": held["trusted"], "untrusted": total - held["trusted"],
            "state_entries": sum(held["state_by_kind"].values())}  # fmt: skip


def store_bytes(home: Path) -> int:
    """Bytes on disk of the store (database, WAL and shared memory files)."""
    from crdt.store import STORE_FILE  # here: sqlite3 only for the command that asks

    total = 0
    for suffix in ("", "-wal", "-shm"):
        with contextlib.suppress(OSError):
            total += (Path(home) / f"{STORE_FILE}{suffix}").stat().st_size
    return total


def inspect(r: Replica, views: Views) -> dict[str, Any]:
    """Document statistics: records by kind and author (with the memories the quota
    hides: a flooding author), state entries by kind, state vector size, store size,
    pending updates, updates rejected by rule (since the replica was opened: the
    daemon's start, or this command)."""
    keyring = r.keyring()
    trust = views.trust()
    over = views.over_quota()
    held = views.held()
    sv = r.state_vector()
    stats = r.store_stats()
    return {
        "records_by_kind": dict(sorted(held["records_by_kind"].items())),
        "records_by_author": [
            {"author": a, "name": keyring.get(a), "trusted": a in trust, "records": n,
             "over_quota": over.get(a, 0)}
            for a, n in sorted(held["records_by_author"].items(), key=lambda an: (-an[1], an[0]))
        ],
        "state_by_kind": dict(sorted(held["state_by_kind"].items())),
        "state_vector": {"clients": len(sv), "clock_total": sum(sv.values())},
        "store": {"bytes": store_bytes(r.home), "updates": stats["updates"],
                  "pending": stats["pending"]},
        "document_bytes": len(r.document_update()),
        "rejected_by_rule": dict(sorted(r.rejected.items())),
    }


def breaker_names(r: Replica) -> set[str]:
    """Every breaker name some host has said something about."""
    names = set()
    for key in r.state():
        kind, _, name = split_state_key(key)
        if kind == "breaker":
            names.add(name)
    return names


def trust_entries(keyring: dict[str, str], trust: TrustSet, me: str) -> list[dict[str, Any]]:
    """`gossip trust list` / ``GET /v1/trust``: the keyring, then the keys trusted through
    successor or vouch records, then revoked ones, each saying how (``crdt.trust``)."""
    extra = sorted((set(trust.keys) | set(trust.cutoffs)) - set(keyring))
    out = []
    for k in [*keyring, *extra]:
        how = "self" if k == me else trust.how(k)
        if k != me and k in keyring and how == "not trusted":
            how = "removed"
        out.append({"id": k, "name": keyring.get(k) or trust.names.get(k, ""),
                    "self": k == me, "trusted": k in trust, "how": how})  # fmt: skip
    return out
