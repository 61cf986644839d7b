"""What every kind of view shares: the lock decorator, the SQL of "the current version of
a memory" and its columns, and the lenient reading of any author's fields (a field of
the wrong type or range is read as absent). Pure helpers: no state, no I/O.
"""

from __future__ import annotations

import functools
import json
import sqlite3
from collections.abc import Callable
from typing import Any, TypeVar

from ..records import DEFAULT_BANK

F = TypeVar("F", bound=Callable[..., Any])

# What one odd record may raise while it is indexed (a value SQLite or Python refuses): it
# is skipped, never allowed to break reading for everyone. The file's own errors (locked,
# full, read-only, damaged: OperationalError, DatabaseError) are not among them: they
# reach ``kept.py``, which holds the views in memory or sets the file aside.
ODD = (sqlite3.IntegrityError, sqlite3.InterfaceError, sqlite3.ProgrammingError,
       sqlite3.DataError, ValueError, TypeError, OverflowError)  # fmt: skip


def _locked(method: F) -> F:
    """Run under the views' lock: the replica's thread writes, any thread may read."""

    @functools.wraps(method)
    def run(self: Any, *args: Any, **kw: Any) -> Any:
        with self.lock:
            return method(self, *args, **kw)

    return run  # type: ignore[return-value]


# A memory with a document_id counts only while no newer memory of its author, in its
# bank, has the same one (an agent's upsert; a retried write is one memory).
_CURRENT_DOCUMENT = (
    "(m.document_id IS NULL OR NOT EXISTS (SELECT 1 FROM memories d WHERE "
    "d.document_id = m.document_id AND d.author = m.author AND d.bank = m.bank AND "
    "(d.ts > m.ts OR (d.ts = m.ts AND d.id > m.id))))"
)


def _memory_fields(f: dict[str, Any]) -> tuple[list[str], str, str | None, str]:
    """(tags, bank, document_id, the ``fields`` column) of a memory's fields, each of the
    wrong type read as absent (any author's record reaches every host). The column holds
    the tags and the agents' fields as one JSON object, so a hit is decoded once."""
    raw_tags = f.get("tags")
    tags = [t for t in raw_tags if isinstance(t, str)] if isinstance(raw_tags, list) else []
    bank = f.get("bank")
    bank = bank if isinstance(bank, str) and bank else DEFAULT_BANK
    document_id = f.get("document_id") if isinstance(f.get("document_id"), str) else None
    meta = f.get("metadata")
    metadata = ({k: v for k, v in meta.items() if isinstance(v, str)}
                if isinstance(meta, dict) else {})  # fmt: skip
    fields = {"tags": tags,
              "context": f.get("context") if isinstance(f.get("context"), str) else None,
              "metadata": metadata,
              "timestamp": f.get("timestamp") if isinstance(f.get("timestamp"), str) else None}
    return tags, bank, document_id, json.dumps(fields)


def _int(value: object) -> int | None:
    """An integer field that fits SQLite (and JavaScript) integers, else None."""
    if isinstance(value, int) and not isinstance(value, bool) and -(2**53) < value < 2**53:
        return value
    return None


def bounded_time(ts: int, seen: int | None, backdate_ms: int | None = None) -> int:
    """An author's signed time as this host may compare it with others' and with its own
    clock: never after ``seen`` (when this host first stored the record), and with
    ``backdate_ms`` never more than that before it. Unbounded if ``seen`` is unknown."""
    if seen is None:
        return ts
    t = min(ts, seen)
    return t if backdate_ms is None else max(t, seen - backdate_ms)


# What a lane reads of a memory (``RecallViews._memory`` makes one of a row); m.t (index
# ``T``): the signed time bounded by first-seen (``bounded_time``), for ranking.
_COLS = ("m.id, m.text, m.category, m.subject, m.fields, m.author, m.ts, m.expires_at, "
         "m.supersedes, m.bank, m.document_id, m.t")
T = 11
