"""The central write hub of the availability benchmark: the smallest server that stores
writes and serves them to clients that poll it (the "remote mode" of the source
document, for writes). A bench baseline, not part of the product.

``POST /v1/writes`` with ``{"id", "author", "text"}`` stores one write (one SQLite
commit) and answers ``{"seq": N}``; ``GET /v1/writes?after=SEQ`` answers
``{"writes": [{"seq", "id", "author", "text"}, ...]}`` (at most 1000, oldest first). No
signatures, no trust: the cheapest honest hub.

Usage: python scripts/bench/writehub.py --db FILE --port PORT    (serves 127.0.0.1 only)
"""

from __future__ import annotations

import argparse
import sqlite3
from pathlib import Path

from aiohttp import web

SCHEMA = (
    "CREATE TABLE IF NOT EXISTS writes "
    "(seq INTEGER PRIMARY KEY, id TEXT, author TEXT, text TEXT)"
)


def app(db: Path) -> web.Application:
    con = sqlite3.connect(db, check_same_thread=False)
    con.execute("PRAGMA journal_mode=WAL")
    con.execute(SCHEMA)

    async def write(request: web.Request) -> web.Response:
        try:
            body = await request.json()
            row = (str(body["id"]), str(body["author"]), str(body["text"]))
        except (ValueError, KeyError, TypeError):
            raise web.HTTPBadRequest(text="expected {id, author, text}") from None
        with con:
            cur = con.execute("INSERT INTO writes (id, author, text) VALUES (?, ?, ?)", row)
        return web.json_response({"seq": cur.lastrowid})

    async def since(request: web.Request) -> web.Response:
        try:
            after = int(request.query.get("after", "0"))
        except ValueError:
            raise web.HTTPBadRequest(text="after must be an integer") from None
        cur = con.execute(
            "SELECT seq, id, author, text FROM writes WHERE seq > ? ORDER BY seq LIMIT 1000",
            (after,),
        )
        rows = [{"seq": s, "id": i, "author": a, "text": t} for s, i, a, t in cur]
        return web.json_response({"writes": rows})

    application = web.Application()
    application.router.add_post("/v1/writes", write)
    application.router.add_get("/v1/writes", since)
    return application


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--db", type=Path, required=True)
    ap.add_argument("--port", type=int, required=True)
    args = ap.parse_args()
    web.run_app(app(args.db), host="127.0.0.1", port=args.port, print=None)


if __name__ == "__main__":
    main()
