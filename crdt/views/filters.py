"""The conditions every recall lane applies before fusion: the author's own retraction
or supersession, expiry, the current version of an agent's document, the caller's
filters, the trust window (trusted keys, revoked ones up to their cutoff), and the
per-author quota.

A mixin of ``crdt.views.Views``: it owns the quota buckets' reading (``_windows``, kept
by the core) and builds SQL conditions on ``memories m``; it never runs a query itself.
"""

from __future__ import annotations

import bisect
from collections.abc import Callable, Collection
from typing import Any

from ..trust import TrustSet
from .common import _CURRENT_DOCUMENT, _locked
from .config import ViewConfig


class RecallFilters:
    """Filters of ``Views`` (its attributes are set by ``Views``)."""

    config: ViewConfig
    now_ms: Callable[[], int]
    _windows: dict[tuple[str, int], list[tuple[int, str]]]  # quota buckets

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
                where.append("(" + joiner.join(
                    "EXISTS (SELECT 1 FROM json_each(m.tags) WHERE value = ?)" for _ in wanted
                ) + ")")  # fmt: skip
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
            where.append("m.ts >= ?")
            args.append(since)
        if tag is not None:
            where.append("EXISTS (SELECT 1 FROM json_each(m.tags) WHERE value = ?)")
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
        """Per author, the memories the quota hides (past ``quota_per_window`` in some
        window): a flooding author, for `gossip inspect` to flag."""
        out: dict[str, int] = {}
        for (author, _), bucket in self._windows.items():
            extra = len(bucket) - self.config.quota_per_window
            if extra > 0:
                out[author] = out.get(author, 0) + extra
        return out

    def _within_quota(self, author: str, ts: int, mid: str) -> bool:
        bucket = self._windows.get((author, ts // self.config.quota_window_ms), [])
        return bisect.bisect_left(bucket, (ts, mid)) < self.config.quota_per_window
