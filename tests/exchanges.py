"""Driving the sans-I/O exchange by hand, for tests: the test owns the replica and its
one thread, so it ingests at once what ``gossip.protocol`` hands back (a ``Node`` does
the same in its replica's worker thread)."""

from __future__ import annotations

from crdt import Replica
from gossip.protocol import (
    DEFAULT_MESSAGE_BYTES,
    Initiator,
    Request,
    Response,
    answer,
    parse_request,
)


def respond(
    replica: Replica,
    body: bytes,
    *,
    source: str,
    path: str | None = None,
    max_reply_bytes: int = DEFAULT_MESSAGE_BYTES,
) -> Response:
    """The responder's side of one request: parse it, ingest what it carries, answer."""
    request = parse_request(body, path=path, local=replica)
    received = replica.ingest_batch(request.updates, source=source) if request.updates else []
    return answer(replica, request, received, max_reply_bytes=max_reply_bytes)


def step(ex: Initiator, replica: Replica, reply: bytes) -> Request | None:
    """The initiator's side of one answer: take it in, ingest, the next request."""
    ingest = ex.receive(reply)
    received = replica.ingest_batch(ingest.updates, source=ingest.source) if ingest.updates else []
    return ex.ingested(received)
