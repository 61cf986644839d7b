"""The exception tree of sm-gossip. Callers catch ``GossipError``; nothing else escapes.

    GossipError                  root of every error this project raises on purpose
    ├── IdentityError            key file missing, unreadable, wrong mode, malformed
    ├── RecordError              a record body or signature is malformed or invalid
    │   └── RecordTooDeep        a record body nests deeper than MAX_BODY_DEPTH
    ├── UpdateError              a signed update cannot be decoded (framing, header, Yjs bytes)
    ├── RejectedUpdate           a well-formed update broke an ingest rule (names the rule)
    ├── StoreError               the durable store cannot be used
    │   ├── StoreLocked          another process holds the data dir
    │   └── StoreCorrupt         the database file is damaged or belongs to something else
    │       └── StoreLost        it holds fewer writes than it acknowledged, or is missing
    ├── ViewsDamaged             views.sqlite is damaged or not a views file (never escapes:
    │                            the views set it aside and rebuild)
    └── EmbedderUnavailable      the embedding model cannot load here: recall stays lexical

It lives in ``crdt`` because ``crdt`` must never import ``gossip``; ``gossip`` re-exports it.
"""

from __future__ import annotations


class GossipError(Exception):
    """Root of every error sm-gossip raises on purpose."""


class IdentityError(GossipError):
    """A host key cannot be created, loaded or used."""


class RecordError(GossipError):
    """A signed record is malformed, too large, or its signature does not verify."""


class RecordTooDeep(RecordError):
    """A record body nests arrays and objects deeper than ``records.MAX_BODY_DEPTH``."""


class UpdateError(GossipError):
    """A signed update cannot be decoded: bad framing, header, or Yjs bytes."""


class RejectedUpdate(GossipError):
    """A decodable update broke an ingest rule; the replica is left unchanged.

    ``rule`` is a short stable name (see docs/data-model.md), ``author`` the update's
    declared author and ``key`` the document key or struct it was caught on, if any.
    """

    def __init__(self, rule: str, detail: str, *, author: str = "", key: str = "") -> None:
        self.rule = rule
        self.detail = detail
        self.author = author
        self.key = key
        where = f" key={key}" if key else ""
        who = f" author={author[:12]}" if author else ""
        super().__init__(f"rejected [{rule}]{who}{where}: {detail}")


class StoreError(GossipError):
    """The durable store cannot be opened or written."""


class StoreLocked(StoreError):
    """Another process holds the data directory's writer lock."""


class StoreCorrupt(StoreError):
    """The database file is damaged or is not an sm-gossip store; it is left untouched."""


class StoreLost(StoreCorrupt):
    """The store holds fewer writes than its high-water mark says it acknowledged (a torn
    or damaged write-ahead log, an older copy), or is missing where one was."""


class ViewsDamaged(GossipError):
    """``views.sqlite`` is damaged or is not a views file: ``crdt.views.kept`` moves it
    aside and rebuilds (derived data: it never escapes the views)."""


class EmbedderUnavailable(GossipError):
    """The embedding model cannot be loaded here (not installed, or its files are missing):
    recall stays lexical."""
