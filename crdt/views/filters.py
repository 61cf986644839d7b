"""What every recall lane applies before fusion: the conditions (the author's own
retraction or supersession, expiry, the current version of an agent's document, the
caller's filters, the trust window: trusted keys, revoked ones up to their cutoff) and
the share cap (each author other than this host holds at most ``author_share`` of one
recall's results, ``ViewConfig.share_of``).

A mixin of ``crdt.views.Views``: it builds SQL conditions on ``memories m`` and caps
rows handed to it; it runs no query but ``over_quota``'s count, and writes nothing.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..trust import TrustSet
from .common import _CURRENT_DOCUMENT, _locked
from .config import ViewConfig

if TYPE_CHECKING:
    import sqlite3

    from ..replica import Replica

RETIRED_SELF = "self (retired)"  # the keyring's name for this host's earlier keys
_HAS_TAG = "EXISTS (SELECT 1 FROM json_each(m.fields, '$.tags') WHERE value = ?)"


@dataclass
class ShareCap:
    """The share cap of one recall: the authors it never caps, and what it hid."""

    share_of: Callable[[int], int]
    exempt: frozenset[str]
    hidden: dict[str, set[str]] = field(default_factory=dict)  # author -> memory ids

    def trial(self) -> ShareCap:
        """A fresh cap with the same rules (for a lane's attempt that may be redone)."""
        return ShareCap(self.share_of, self.exempt)

    def merge(self, other: ShareCap) -> None:
        for who, ids in other.hidden.items():
            self.hidden.setdefault(who, set()).update(ids)

    def visible(self, items: Iterable[tuple[tuple[Any, ...], Any]], limit: int) -> list[Any]:
        """The first ``limit`` of ``(row, payload)`` pairs, in their order, with no author
        (but the exempt) holding more than its share of ``limit``; the others are hidden.
        An author's slots go to its best-ranked memories, so never to its oldest first."""
        allowed = self.share_of(limit)
        exempt = self.exempt
        held: dict[str, int] = {}
        out: list[Any] = []
        for item in items:
            who = item[0][5]
            if who not in exempt:
                n = held.get(who, 0)
                if n >= allowed:
                    self.hidden.setdefault(who, set()).add(item[0][0])
                    continue
                held[who] = n + 1
            out.append(item)
            if len(out) >= limit:
                break
        return out

    def counts(self, shown: Iterable[str] = ()) -> dict[str, int]:
        """Author -> memories hidden (one shown after all, found by another lane, is not)."""
        seen = set(shown)
        counts = {who: len(ids - seen) for who, ids in self.hidden.items()}
        return {who: n for who, n in counts.items() if n}


class RecallFilters:
    """Filters of ``Views`` (its attributes are set by ``Views``)."""

    config: ViewConfig
    now_ms: Callable[[], int]
    replica: Replica
    _db: sqlite3.Connection
    _trust: TrustSet

    def own_keys(self) -> frozenset[str]:
        """This host's key and its earlier (rotated) keys: never capped here."""
        retired = {k for k, name in self.replica.keyring().items() if name == RETIRED_SELF}
        return frozenset({self.replica.author, *retired})

    def _share_cap(self, author: str | Collection[str] | None) -> ShareCap:
        named = {author} if isinstance(author, str) else set(author or ())
        return ShareCap(self.config.share_of, self.own_keys() | named)

    def _filters(self, trust: TrustSet, *, category: str | None, subject: str | None,
                 tag: str | None, author: str | Collection[str] | None, since: int | None,
                 include_untrusted: bool, bank: str | None = None,
                 tags_all: Collection[str] = (),
                 tags_any: Collection[str] = ()) -> tuple[list[str], list[Any]]:  # fmt: skip
        """The SQL conditions (on ``memories m``) every lane applies before fusion."""
        where = [
            "NOT EXISTS (SELECT 1 FROM retractions r "
            "WHERE r.target = m.id AND r.author = m.author)",  # only the author's own counts
            # Superseded by a later memory of its own author (anyone else's claim is ignored).
            "NOT EXISTS (SELECT 1 FROM memories s "
            "WHERE s.supersedes = m.id AND s.author = m.author)",
            "(m.expires_at IS NULL OR m.expires_at > ?)",
            _CURRENT_DOCUMENT,
        ]
        args: list[Any] = [self.now_ms()]
        if bank is not None:
            where.append("m.bank = ?")
            args.append(bank)
        for wanted, joiner in ((tags_all, " AND "), (tags_any, " OR ")):
            if wanted:
                where.append("(" + joiner.join(_HAS_TAG for _ in wanted) + ")")
                args.extend(wanted)
        for column, value in (("category", category), ("subject", subject)):
            if value is not None:
                where.append(f"m.{column} = ?")
                args.append(value)
        if author is not None:
            authors = [author] if isinstance(author, str) else sorted(author)
            where.append(f"m.author IN ({','.join('?' * len(authors))})")
            args.extend(authors)
        if since is not None:
            where.append("m.t >= ?")  # bounded by first-seen (``bounded_time``)
            args.append(since)
        if tag is not None:
            where.append(_HAS_TAG)
            args.append(tag)
        if not include_untrusted:
            # Trusted keys, and revoked ones up to their cutoff (ts <= cutoff).
            keys = sorted(trust.keys)
            terms = [f"m.author IN ({','.join('?' * len(keys))})"]
            args.extend(keys)
            for who, cutoff in sorted(trust.cutoffs.items()):
                terms.append("(m.author = ? AND m.ts <= ?)")
                args.extend((who, cutoff))
            where.append(f"({' OR '.join(terms)})")
        return where, args

    @_locked
    def over_quota(self) -> dict[str, int]:
        """Per author other than this host, how many of its live memories here exceed its
        share (``author_share``) of all live memories held: a flooding author, for
        `gossip inspect` to flag. (What one recall hid is ``Recall.capped``.)"""
        where, args = self._filters(self._trust, category=None, subject=None, tag=None,
                                    author=None, since=None, include_untrusted=True)  # fmt: skip
        sql = f"SELECT m.author, count(*) FROM memories m WHERE {' AND '.join(where)} "
        rows = self._db.execute(sql + "GROUP BY m.author", args).fetchall()
        allowed = int(self.config.author_share * sum(n for _, n in rows))
        own = self.own_keys()
        return {who: n - allowed for who, n in rows if who not in own and n > allowed}
