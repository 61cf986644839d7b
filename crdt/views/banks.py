"""Bank views: the memory banks counted authors made or wrote in, their profiles, and
the current memory of an agent's document.

A mixin of ``crdt.views.Views``: it owns the ``banks`` table's rows (added from each
bank record) and reads the ``memories`` and ``retractions`` tables; it never writes
to the document.
"""

from __future__ import annotations

import sqlite3
from typing import TYPE_CHECKING, Any

from ..records import DEFAULT_BANK, SignedRecord
from ..trust import TrustSet
from .common import _CURRENT_DOCUMENT, _locked

if TYPE_CHECKING:
    from .recall import Memory


def _bank_entry(bank: str, ts: int) -> dict[str, Any]:
    return {"bank_id": bank, "name": bank, "mission": "", "created_at": ts, "updated_at": ts,
            "memories": 0, "authors": [], "profile": None}  # fmt: skip


class BankViews:
    """Banks of ``Views`` (its attributes are set by ``Views``)."""

    _db: sqlite3.Connection
    _trust: TrustSet
    # and, from the recall views: memory()

    def _add_bank(self, rec: SignedRecord) -> None:
        f = rec.fields
        bank, name, mission = f.get("bank"), f.get("name", ""), f.get("mission", "")
        if isinstance(bank, str) and bank and isinstance(name, str) and isinstance(mission, str):
            self._db.execute(
                "INSERT OR IGNORE INTO banks (id, author, bank, name, mission, ts) "
                "VALUES (?, ?, ?, ?, ?, ?)", (rec.id, rec.author, bank, name, mission, rec.ts)
            )  # fmt: skip

    @_locked
    def banks(self, *, include_untrusted: bool = False) -> list[dict[str, Any]]:
        """Every bank a counted author made (a bank record not retracted by its author)
        or wrote a memory in, with the newest profile and the memories held in it:
        ``{bank_id, name, mission, created_at, updated_at, memories, authors}``."""
        trust = self._trust
        out: dict[str, dict[str, Any]] = {}
        rows = self._db.execute(
            "SELECT b.bank, b.author, b.name, b.mission, b.ts, b.id FROM banks b WHERE NOT "
            "EXISTS (SELECT 1 FROM retractions r WHERE r.target = b.id AND r.author = b.author) "
            "ORDER BY b.ts, b.id"
        ).fetchall()  # fmt: skip
        for bank, who, name, mission, ts, bid in rows:
            if not (include_untrusted or trust.counts(who, ts)):
                continue
            entry = out.setdefault(bank, _bank_entry(bank, ts))
            entry.update(name=name, mission=mission, updated_at=ts, profile=bid)
        for bank, who, first, last, n in self._db.execute(
            "SELECT bank, author, min(ts), max(ts), count(*) FROM memories m WHERE NOT EXISTS "
            "(SELECT 1 FROM retractions r WHERE r.target = m.id AND r.author = m.author) "
            f"AND {_CURRENT_DOCUMENT} GROUP BY bank, author"
        ):  # fmt: skip
            if not (include_untrusted or trust.counts(who, last)):
                continue
            entry = out.setdefault(bank, _bank_entry(bank, first))
            entry["created_at"] = min(entry["created_at"], first)
            entry["updated_at"] = max(entry["updated_at"], last)
            entry["memories"] += n
            entry["authors"].append(who)
        return [{**e, "authors": sorted(e["authors"])} for _, e in sorted(out.items())]

    @_locked
    def bank_records(self, bank: str, author: str) -> list[str]:
        """The ids of ``author``'s bank records of ``bank`` (to retract with the bank)."""
        rows = self._db.execute("SELECT id FROM banks WHERE bank = ? AND author = ? ORDER BY id",
                                (bank, author))  # fmt: skip
        return [r[0] for r in rows]

    @_locked
    def bank_memories(self, bank: str) -> list[tuple[str, str, int]]:
        """(id, author, ts) of every memory in ``bank`` not retracted by its author."""
        return self._db.execute(
            "SELECT id, author, ts FROM memories m WHERE bank = ? AND NOT EXISTS (SELECT 1 "
            "FROM retractions r WHERE r.target = m.id AND r.author = m.author) ORDER BY id",
            (bank,),
        ).fetchall()  # fmt: skip

    @_locked
    def current_document(self, author: str, bank: str, document_id: str) -> Memory | None:
        """``author``'s newest memory in ``bank`` with ``document_id``, unless its author
        retracted it (then none is current: the older ones stay superseded)."""
        row = self._db.execute(
            "SELECT id FROM memories m WHERE document_id = ? AND author = ? AND bank = ? "
            "ORDER BY ts DESC, id DESC LIMIT 1", (document_id, author, bank)
        ).fetchone()  # fmt: skip
        if row is None or self._db.execute(
            "SELECT 1 FROM retractions WHERE target = ? AND author = ?", (row[0], author)
        ).fetchone():  # fmt: skip
            return None
        return self.memory(row[0])

    @_locked
    def bank_known(self, bank: str) -> bool:
        """Whether any record here names ``bank`` (``default`` always exists)."""
        return bank == DEFAULT_BANK or any(
            self._db.execute(f"SELECT 1 FROM {t} WHERE bank = ? LIMIT 1", (bank,)).fetchone()
            for t in ("banks", "memories")
        )

    @_locked
    def bank_profile(self, bank: str, author: str) -> tuple[str, str] | None:
        """(name, mission) of ``author``'s newest live bank record of ``bank``."""
        row = self._db.execute(
            "SELECT name, mission FROM banks b WHERE bank = ? AND author = ? AND NOT EXISTS "
            "(SELECT 1 FROM retractions r WHERE r.target = b.id AND r.author = b.author) "
            "ORDER BY ts DESC, id DESC LIMIT 1", (bank, author)
        ).fetchone()  # fmt: skip
        return None if row is None else (row[0], row[1])
