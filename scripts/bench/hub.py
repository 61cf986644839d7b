"""The central-memory-server baseline of the recall benchmark: a minimal aiohttp server
over one SQLite FTS5 table, the "remote mode" a team would otherwise run.

It answers ``GET /v1/memories?q=WORDS&limit=N`` like the local API (the words as an
OR of quoted terms, best bm25 match first, then newest) with ``{"memories": [...]}``,
and does nothing else: no trust, retraction, expiry or quota filters, no signatures.
It is the cheapest honest hub, so the ratio is the most a hub could win by.

Usage: python scripts/bench/hub.py --db FILE --port PORT    (serves 127.0.0.1 only)
       ``fill(db, rows)`` builds the table; recall.py does that from the same replica.
"""

from __future__ import annotations

import argparse
import json
import re
import sqlite3
from collections.abc import Iterable
from pathlib import Path

from aiohttp import web

_WORD = re.compile(r"\w+")  # the same tokenising of a query as crdt/views/recall.py

SCHEMA = (
    "CREATE VIRTUAL TABLE memories USING fts5(id UNINDEXED, text, category UNINDEXED, "
    "subject UNINDEXED, tags UNINDEXED, author UNINDEXED, ts UNINDEXED)"
)


def fill(db: Path, rows: Iterable[tuple[str, str, str, str, str, str, int]]) -> None:
    """Create the hub's table from (id, text, category, subject, tags-json, author, ts)."""
    con = sqlite3.connect(db)
    with con:
        con.execute(SCHEMA)
        con.executemany("INSERT INTO memories VALUES (?, ?, ?, ?, ?, ?, ?)", rows)
    con.close()


def app(db: Path) -> web.Application:
    con = sqlite3.connect(db, check_same_thread=False)

    async def recall(request: web.Request) -> web.Response:
        words = _WORD.findall(request.query.get("q", ""))
        try:
            limit = max(1, min(1000, int(request.query.get("limit", "20"))))
        except ValueError:
            raise web.HTTPBadRequest(text="limit must be an integer") from None
        if not words:
            return web.json_response({"memories": []})
        match = " OR ".join(f'"{w}"' for w in words)
        cur = con.execute(
            "SELECT id, text, category, subject, tags, author, ts FROM memories "
            "WHERE memories MATCH ? ORDER BY bm25(memories), ts DESC, id LIMIT ?",
            (match, limit),
        )
        hits = [
            {"id": i, "text": t, "category": c, "subject": s, "tags": json.loads(g),
             "author": a, "ts": ts}
            for i, t, c, s, g, a, ts in cur
        ]  # fmt: skip
        return web.json_response({"memories": hits})

    application = web.Application()
    application.router.add_get("/v1/memories", recall)
    return application


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--db", type=Path, required=True)
    ap.add_argument("--port", type=int, required=True)
    args = ap.parse_args()
    web.run_app(app(args.db), host="127.0.0.1", port=args.port, print=None)


if __name__ == "__main__":
    main()
