"""Fuzzing the peer endpoint: hostile requests at one real aiohttp server on loopback.

Shared by ``tests/test_fuzz_peer.py`` (10k cases in CI) and ``scripts/fuzz`` (the long
run, ``--cases 100000``). One ``Target`` serves a real replica in a real data dir with
``HttpTransport`` on 127.0.0.1, exactly as a node does (``tests.exchanges.respond``:
parse, ingest and answer, in a thread, under one lock); one keep-alive
``aiohttp.ClientSession`` sends each case as it was built, without our client's checks
in the way.

A case is a *recipe* drawn by hypothesis (``cases()``): who signs (a trusted peer, a key
the server does not know, a trusted key with someone else's signature, nobody), how the
signature is spoiled (stale, future, for another peer, for another path, a flipped
character, a replay of the last accepted request), what the body is (random bytes; a
message truncated, extended, mutated, of the wrong type, or carrying junk updates, signed
updates of garbage Yjs bytes, updates that decode but break a gate rule (records nesting
just past the depth bound and far past it among them), tampered honest updates, duplicates
(one a record at exactly the bound); bodies over the limit; gzip-declared garbage and a
deflate bomb), the method and path, and the headers (wrong content types, huge or many
headers).

Every answer is checked (``Target.check``):

- no 5xx, and no answer carrying the transport's generic "could not be served" message
  (what ``http.py`` answers when serving raised something unexpected: a crash);
- a 200 only for a request validly signed, within the window, by a trusted key, for this
  server, this path, this body, with a fresh nonce — and then signed by the server and
  bound to that request;
- no ERROR logged by ``gossip`` or ``aiohttp`` while serving;
- at the end, the server's document, store rows, snapshot and pending buffer are exactly
  what they were (``Target.fingerprint``): no case carries anything the gate may accept.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import gzip
import json
import logging
import sys
import tempfile
import time
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pycrdt
from hypothesis import strategies as st
from pycrdt import Map

from crdt import Identity, Replica, records
from crdt.updates import SignedUpdate, sign_update
from gossip.protocol import MAGIC, VERSION, Message, MessageType
from gossip.transport import (
    PUSH_PATH,
    SYNC_PATH,
    PeerError,
    ServerLimits,
    auth,
    check_response,
    sign_request,
)
from gossip.transport.http import HttpTransport
from tests.exchanges import respond
from tests.forge import (
    Writer,
    capture,
    clock_of,
    fingerprint,
    nested_memory,
    put_unparsed,
    signed,
    with_delete_set,
)

LIMIT = 64 * 1024  # the target's body limit: oversized cases stay cheap to send
GENERIC = "the request could not be served"
TS = 1_790_000_000_000


def now_ms() -> int:
    return int(time.time() * 1000)


# -- the corpus of updates a hostile or buggy peer might send ---------------------------


def _memory(ident: Identity, text: str) -> records.SignedRecord:
    return records.memory(ident, text, category="anti-pattern", subject="provider:x", ts=TS)


@dataclass
class Corpus:
    """Signed updates built once per target: what the server holds (duplicates), and
    what it must refuse (each checked to be refused by the server at setup)."""

    held: list[bytes] = field(default_factory=list)  # the server has these: duplicates
    hostile: list[bytes] = field(default_factory=list)  # decode, but break a gate rule
    tampered: list[bytes] = field(default_factory=list)  # honest bytes edited after signing


def build_corpus(server: Replica, friend: Writer, stranger: Writer) -> Corpus:
    """Honest history on the server (its own and the friend's records), then the hostile
    updates, one per gate rule that a signed, decodable update can break."""
    friend_updates = [friend.put(_memory(friend.identity, f"friend lesson {i}")) for i in range(3)]
    # A body at exactly the nesting bound is honest: held, and served back as duplicates.
    friend_updates.append(put_unparsed(friend, nested_memory(friend, records.MAX_BODY_DEPTH)))
    for su in friend_updates:
        assert server.ingest(su.raw) == "applied"
    server.put(_memory(server.identity, "server lesson"))
    server.put(records.breaker(server.identity, "kimi-coding/k2p5", state="open", ts=TS))
    held = server.updates_for({})
    friend.sync_from(server)

    hostile: list[bytes] = []
    victim_key = next(iter(server.records()))
    state_key = next(iter(server.state()))

    def fw() -> Writer:
        """The friend (a trusted, authenticated peer turned hostile), continuing its own
        clock where the server has it: each update is judged, none waits in the buffer."""
        w = Writer(friend.identity, epoch=friend.epoch)
        w.sync_from(server)
        return w

    # A record of someone else (the server) wrapped in the friend's update.
    hostile.append(fw().put(_memory(server.identity, "relayed as mine")).raw)
    # A record at a key that is not its content id.
    rec = _memory(friend.identity, "misfiled")
    hostile.append(fw().write(lambda d: d["records"].__setitem__("0" * 64, rec.to_value())).raw)
    # An overwrite of the server's immutable record; a write to its state key.
    over = _memory(friend.identity, "x").to_value()
    hostile.append(fw().write(lambda d: d["records"].__setitem__(victim_key, over)).raw)
    br = records.breaker(friend.identity, "kimi-coding/k2p5", state="closed", ts=TS)
    hostile.append(fw().write(lambda d: d["state"].__setitem__(state_key, br.to_value())).raw)
    # A deletion of the server's record through the delete set.
    server_client = next(c for c in server.state_vector() if c != friend.client)
    w = fw()
    start = _clock(w)
    kv = _kv(records.breaker(friend.identity, "b", state="open", ts=TS))
    upd = capture(w.doc, lambda d: d["state"].__setitem__(*kv))
    upd = with_delete_set(upd, {server_client: ((0, 1),)})
    hostile.append(signed(friend.identity, upd, epoch=w.epoch, start=start, end=start + 1).raw)
    # Structs of a second client; a client id not derived from the author.
    w = fw()
    start = _clock(w)
    other = Writer()
    both = pycrdt.merge_updates(
        w.put(_memory(friend.identity, "mine")).update,
        other.put(_memory(other.identity, "theirs")).update,
    )
    hostile.append(signed(friend.identity, both, epoch=w.epoch, start=start, end=start + 1).raw)
    squat = pycrdt.Doc(client_id=server_client)
    squat.get("records", type=Map)
    rec2 = _memory(friend.identity, "squatter")
    upd2 = capture(squat, lambda d: d["records"].__setitem__(rec2.id, rec2.to_value()))
    hostile.append(signed(friend.identity, upd2, epoch=friend.epoch, start=0, end=1,
                          client=server_client).raw)  # fmt: skip
    # An extra root, a nested shared type, a value that is not a record.
    for edit in (
        lambda d: d.get("extra", type=Map).__setitem__("k", "v"),
        lambda d: d["records"].__setitem__("nested", Map({"a": 1})),
        lambda d: d["state"].__setitem__(f"breaker:{friend.id}:odd", {"body": 1, "sig": 2}),
    ):
        hostile.append(fw().write(edit).raw)
    # Bodies nesting past the bound: just past it, where Python's parser gave out at
    # about a daemon's stack depth (issue 17), and far past it.
    for depth in (records.MAX_BODY_DEPTH + 1, 980, 5000):
        w = fw()
        hostile.append(put_unparsed(w, nested_memory(w, depth)).raw)
    # Garbage Yjs bytes under a valid header signature, by a trusted and an unknown key.
    for who in (friend, stranger):
        for junk in (b"", b"\x00", b"\x01\x01\x05\x00\xff", bytes(range(40))):
            hostile.append(sign_update(who.identity, epoch=who.epoch, update=junk,
                                       start=0, end=1, ts=TS).raw)  # fmt: skip
    # A bad header signature over an honest update.
    fresh = fw().put(_memory(friend.identity, "unsigned"))
    hostile.append(SignedUpdate(fresh.header_bytes, bytes(64), fresh.update, fresh.header).raw)

    tampered: list[bytes] = []
    for raw in held:
        for pos in (0, len(raw) // 3, len(raw) // 2, len(raw) - 1):
            tampered.append(raw[:pos] + bytes([raw[pos] ^ 0x01]) + raw[pos + 1 :])

    for raw in hostile + tampered:
        (out,) = server.ingest_batch([raw], source="corpus-check")
        assert out.status == "rejected", (out.status, out.error)
    return Corpus(held=held, hostile=hostile, tampered=tampered)


def _kv(rec: records.SignedRecord) -> tuple[str, dict[str, str]]:
    return rec.doc_key()[1], rec.to_value()


def _clock(w: Writer) -> int:
    return clock_of(w.doc, w.client)


# -- recipes ------------------------------------------------------------------------------

SIGNERS = ("friend", "stranger", "impostor", "none")
SPOILERS = ("valid", "valid", "valid", "stale", "future", "other-recipient", "nobody",
            "other-path", "flip-signature", "flip-key", "garbage-header", "replay")  # fmt: skip
METHODS = ("POST",) * 12 + ("GET", "PUT", "DELETE", "PATCH", "OPTIONS", "HEAD")
PATHS = (SYNC_PATH,) * 5 + (PUSH_PATH,) * 5 + (
    "/", "/v1/", "/v1/sync/", "/v2/sync", "/v1/sync?x=1", "/v1/%00", "/v1/push#f"
)
CONTENT_TYPES = ("application/vnd.sm-gossip", "application/json", "text/plain",
                 "multipart/form-data; boundary=x", "application/x-www-form-urlencoded",
                 "", "application/vnd.sm-gossip; charset=\u00ff")  # fmt: skip


def served_path(path: str) -> str:
    """The path the server sees: the client sends no fragment, and the query is not part
    of the path (nor of what is signed)."""
    return path.split("#")[0].split("?")[0]


@dataclass
class Recipe:
    label: str  # the body's kind, for the histogram
    body: bytes
    signer: str = "friend"
    spoil: str = "valid"
    method: str = "POST"
    path: str = SYNC_PATH
    signed_body: bytes | None = None  # sign these bytes instead of the body (tampered)
    content_type: str | None = "application/vnd.sm-gossip"
    extra_headers: list[tuple[str, str]] = field(default_factory=list)
    encoding: str | None = None  # a Content-Encoding header

    @property
    def may_pass(self) -> bool:
        """Could the server accept this request's signature? (Else a 200 is a failure.)
        An unknown Content-Encoding is passed through as it is, so it may."""
        return (self.signer == "friend" and self.spoil == "valid" and self.method == "POST"
                and self.signed_body is None and self.encoding in (None, "x-unknown"))  # fmt: skip


def _mutate(data: bytes, flips: list[tuple[int, int]], cut: int | None) -> bytes:
    out = bytearray(data)
    for pos, bit in flips:
        if out:
            out[pos % len(out)] ^= 1 << (bit % 8)
    if cut is not None and out:
        del out[cut % len(out) :]
    return bytes(out)


_FLIPS = st.lists(st.tuples(st.integers(0, 10_000), st.integers(0, 7)), max_size=3)
STATE_VECTORS = st.dictionaries(
    st.integers(0, 2**53 - 1) | st.sampled_from([0, 1, 2**32]),
    st.integers(0, 2**53 - 1) | st.integers(0, 5),
    max_size=4,
)
_HEADER_TEXT = st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=40)
_HEADER_NAMES = st.sampled_from(["X-Junk", "Accept", "Expect", "Connection", "Sm-Key",
                                 "Sm-Signature", "Content-Language", "Range", "Cookie",
                                 "Origin"])  # fmt: skip
_FEW_HEADERS = st.lists(st.tuples(_HEADER_NAMES, _HEADER_TEXT), max_size=4)
_PATH_OF = {MessageType.SYNC: SYNC_PATH, MessageType.DIGEST: SYNC_PATH,
            MessageType.PUSH: PUSH_PATH}  # fmt: skip


def cases(corpus: Corpus) -> st.SearchStrategy[Recipe]:
    """Every strategy is built once here (hypothesis validates a strategy the first time it
    is drawn from: building them per draw cost 5 ms a case)."""
    update_items = st.one_of(
        st.binary(max_size=200),
        st.sampled_from(corpus.hostile),
        st.sampled_from(corpus.tampered),
        st.sampled_from(corpus.held),
        st.builds(
            _mutate, st.sampled_from(corpus.held), _FLIPS, st.none() | st.integers(0, 10_000)
        ),
    )
    some_updates = st.lists(update_items, max_size=6)
    deep_updates = st.lists(update_items, min_size=1, max_size=8)
    # A PUSH's base: none (a whole state vector) or a digest that matches nothing here.
    bases = st.sampled_from([b""]) | st.binary(min_size=32, max_size=32)

    @st.composite
    def bodies(draw: st.DrawFn) -> tuple[str, bytes]:
        kind = draw(st.sampled_from(["random", "magic-random", "message", "message",
                                     "message", "truncated", "extended", "mutated", "digest",
                                     "oversized", "empty"]))  # fmt: skip
        if kind == "random":
            return kind, draw(st.binary(max_size=3000))
        if kind == "magic-random":
            return kind, MAGIC + draw(st.binary(max_size=2)) + draw(st.binary(max_size=400))
        if kind == "empty":
            return kind, b""
        if kind == "oversized":
            size = draw(st.integers(LIMIT + 1, 2 * LIMIT))
            return kind, (MAGIC + bytes([VERSION, MessageType.PUSH]) + b"\x00" * size)[:size]
        if kind == "digest":
            n = draw(st.sampled_from([32, 32, 0, 31, 33]))
            body = MAGIC + bytes([VERSION, MessageType.DIGEST, n])
            body += draw(st.binary(min_size=n, max_size=n))
            return kind, body + draw(st.sampled_from([b"\x00", b"", b"\x01\x00"]))
        mtype = draw(st.sampled_from(list(MessageType)))
        if mtype in (MessageType.DIGEST, MessageType.SAME):
            msg = Message(mtype, digest=draw(st.binary(min_size=32, max_size=32)))
        else:
            msg = Message(mtype, draw(STATE_VECTORS), tuple(draw(some_updates)),
                          draw(bases) if mtype is MessageType.PUSH else b"")  # fmt: skip
        body = msg.encode()
        if kind == "truncated":
            return kind, body[: draw(st.integers(0, max(0, len(body) - 1)))]
        if kind == "extended":
            return kind, body + draw(st.binary(min_size=1, max_size=50))
        if kind == "mutated":
            flips = draw(st.lists(st.tuples(st.integers(0, 10_000), st.integers(0, 7)),
                                  min_size=1, max_size=4))  # fmt: skip
            return kind, _mutate(body, flips, None)
        return f"message:{mtype.name}", body

    @st.composite
    def extra_headers(draw: st.DrawFn) -> list[tuple[str, str]]:
        kind = draw(st.sampled_from(["none", "none", "none", "few", "huge", "many"]))
        if kind == "none":
            return []
        if kind == "huge":  # over aiohttp's 8190-byte field limit, or just under it
            size = draw(st.sampled_from([8000, 8190, 8191, 9000, 20_000, 70_000]))
            return [("X-Huge", "a" * size)]
        if kind == "many":
            n = draw(st.sampled_from([50, 100, 200, 1000]))
            return [(f"X-H{i}", "v") for i in range(n)]
        return draw(_FEW_HEADERS)

    @st.composite
    def deep_cases(draw: st.DrawFn) -> Recipe:
        """A well-formed request, validly signed by a trusted peer, to the right endpoint:
        what reaches the gate. Its updates are hostile, tampered, junk or duplicates."""
        mtype = draw(st.sampled_from([MessageType.SYNC, MessageType.PUSH, MessageType.PUSH,
                                      MessageType.DIGEST]))  # fmt: skip
        if mtype is MessageType.DIGEST:
            msg = Message(mtype, digest=draw(st.binary(min_size=32, max_size=32)))
        else:
            msg = Message(mtype, draw(STATE_VECTORS), tuple(draw(deep_updates)),
                          draw(bases) if mtype is MessageType.PUSH else b"")  # fmt: skip
        return Recipe(label=f"deep:{mtype.name}", body=msg.encode(), path=_PATH_OF[mtype])

    body_strategy, header_strategy, deep = bodies(), extra_headers(), deep_cases()
    signers = st.sampled_from(SIGNERS[:1] * 6 + SIGNERS[1:])
    spoilers, methods, paths = (st.sampled_from(x) for x in (SPOILERS, METHODS, PATHS))
    content_types = st.sampled_from((CONTENT_TYPES[0],) * 6 + CONTENT_TYPES[1:] + (None,))
    encodings = st.sampled_from(["gzip", "deflate", "br", "x-unknown", "gzip-bomb",
                                 "deflate-bomb"])  # fmt: skip

    @st.composite
    def one(draw: st.DrawFn) -> Recipe:
        """Two in five reach the gate (``deep``); the rest spoil anything else."""
        if draw(st.integers(0, 4)) < 2:
            return draw(deep)
        label, body = draw(body_strategy)
        r = Recipe(label=label, body=body)
        r.signer, r.spoil = draw(signers), draw(spoilers)
        r.method, r.path = draw(methods), draw(paths)
        if draw(st.integers(0, 9)) == 0:  # signed over other bytes than the ones sent
            r.signed_body = draw(st.binary(max_size=50)) if body == b"" else body[:-1]
        r.content_type = draw(content_types)
        r.extra_headers = draw(header_strategy)
        if draw(st.integers(0, 29)) == 0:
            r.encoding = draw(encodings)
        return r

    return one()


# 4 MiB of zeros in about 4 KiB: far over the limit once inflated.
_BOMBS = {"gzip": gzip.compress(b"\x00" * (4 << 20), 9),
          "deflate": zlib.compress(b"\x00" * (4 << 20), 9)}  # fmt: skip


# -- the target --------------------------------------------------------------------------


class _ErrorLog(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    @property
    def ours(self) -> list[logging.LogRecord]:
        """ERRORs of our serving code (``gossip``): something unexpected was raised."""
        return [r for r in self.records if r.name.startswith("gossip")]

    @property
    def aiohttp(self) -> list[logging.LogRecord]:
        """ERRORs aiohttp logs for malformed HTTP it answers 400 itself (its parser's
        "Error handling request": oversized or too many headers, bad framing, a body that
        does not inflate): noise, counted and reported, not a failure."""
        return [r for r in self.records if not r.name.startswith("gossip")]


@dataclass
class Tally:
    cases: int = 0
    statuses: collections.Counter[int] = field(default_factory=collections.Counter)
    labels: collections.Counter[str] = field(default_factory=collections.Counter)
    accepted: int = 0  # 200 answers (to validly signed requests), checked as signed
    unsent: int = 0  # the client library refused to send it (e.g. a header it will not write)
    failures: list[str] = field(default_factory=list)

    @property
    def server_errors(self) -> int:
        return sum(n for s, n in self.statuses.items() if s >= 500)

    def fail(self, message: str) -> None:
        if len(self.failures) < 50:
            self.failures.append(message)


class Target:
    """One server (a replica behind ``HttpTransport`` on 127.0.0.1) and one client session.

    ``async with Target(home) as t: await t.send(recipe)``; ``t.tally`` counts."""

    def __init__(self, home: Path) -> None:
        self.home = home
        self.tally = Tally()
        self._lock = asyncio.Lock()
        self._last_valid: tuple[dict[str, str], bytes, str] | None = None
        self._errors = _ErrorLog()

    async def __aenter__(self) -> Target:
        self.server = Replica.open(self.home / "server", now_ms=now_ms)
        self.friend = Writer()
        self.stranger = Writer()
        self.server.trust(self.friend.id, "friend")
        self.corpus = build_corpus(self.server, self.friend, self.stranger)
        self.verifier = auth.Verifier(self.server.keyring, now_ms)
        self.client_verifier = auth.Verifier(lambda: {self.server.author}, now_ms)
        self.transport = HttpTransport(
            self.server.identity, self.verifier, now_ms=now_ms,
            limits=ServerLimits(max_body_bytes=LIMIT), timeout=5.0,
        )  # fmt: skip
        self.address = await self.transport.start("127.0.0.1:0", self._handle)
        self.session = aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=10), auto_decompress=False,
            skip_auto_headers=("User-Agent", "Accept", "Accept-Encoding", "Content-Type"),
        )  # fmt: skip
        self._levels = {}
        for name in ("gossip", "aiohttp"):
            logger = logging.getLogger(name)
            self._levels[name] = logger.level
            if logger.getEffectiveLevel() > logging.ERROR:
                logger.setLevel(logging.ERROR)
            logger.addHandler(self._errors)
        self.before = self.fingerprint()
        return self

    async def __aexit__(self, *exc: object) -> None:
        for name in ("gossip", "aiohttp"):
            logging.getLogger(name).removeHandler(self._errors)
            logging.getLogger(name).setLevel(self._levels[name])
        await self.session.close()
        await self.transport.close()
        self.server.close()

    async def _handle(self, path: str, body: bytes, peer_key: str) -> bytes:
        async with self._lock:
            response = await asyncio.to_thread(respond, self.server, body, source=peer_key,
                                               path=path)  # fmt: skip
        return response.body

    def fingerprint(self) -> tuple:
        return (*fingerprint(self.server), self.server.pending_count)

    def unchanged(self) -> bool:
        return self.fingerprint() == self.before

    @property
    def logged_errors(self) -> list[str]:
        """ERRORs logged by our serving code: each one is a crash."""
        return [r.getMessage() for r in self._errors.ours]

    @property
    def aiohttp_errors(self) -> int:
        return len(self._errors.aiohttp)

    # -- building and sending one case --------------------------------------------------

    def _headers(self, r: Recipe) -> dict[str, str]:
        if r.spoil == "replay":  # the headers of the last accepted request (none yet: none)
            return dict(self._last_valid[0]) if self._last_valid is not None else {}
        ident = {"friend": self.friend.identity, "stranger": self.stranger.identity,
                 "impostor": self.stranger.identity}.get(r.signer)  # fmt: skip
        if ident is None:
            return {}
        t = now_ms()
        # Well outside the 60 s window: a request may wait a while in flight on a busy
        # machine, and the server reads its clock when it serves it.
        t = {"stale": t - 90_000, "future": t + 90_000}.get(r.spoil, t)
        recipients = {"other-recipient": self.friend.id, "nobody": ""}
        recipient = recipients.get(r.spoil, self.server.author)
        path = served_path(r.path)
        if r.spoil == "other-path":
            path = PUSH_PATH if path != PUSH_PATH else SYNC_PATH
        body = r.signed_body if r.signed_body is not None else r.body
        h = sign_request(ident, path, body, t, recipient)
        h.pop("Content-Type")
        if r.signer == "impostor":  # a trusted key's name on a stranger's signature
            h[auth.KEY_HEADER] = self.friend.id
        if r.spoil == "flip-signature":
            sig = h[auth.SIGNATURE_HEADER]
            h[auth.SIGNATURE_HEADER] = sig[:-2] + ("A" if sig[-2] != "A" else "B") + sig[-1]
        elif r.spoil == "flip-key":
            key = h[auth.KEY_HEADER]
            h[auth.KEY_HEADER] = key[:5] + ("A" if key[5] != "A" else "B") + key[6:]
        elif r.spoil == "garbage-header":
            h[auth.SIGNATURE_HEADER] = "v=1;t=" + h[auth.SIGNATURE_HEADER][6:40]
        return h

    def _encode(self, r: Recipe) -> tuple[bytes, str | None]:
        if r.encoding == "gzip-bomb":
            return _BOMBS["gzip"], "gzip"
        if r.encoding == "deflate-bomb":
            return _BOMBS["deflate"], "deflate"
        return r.body, r.encoding

    async def send(self, r: Recipe) -> int | None:
        """Send one case; check the answer; return its status (None: not sent)."""
        headers = self._headers(r)
        body, encoding = self._encode(r)
        wire: list[tuple[str, str]] = list(headers.items())
        if r.content_type is not None:
            wire.append(("Content-Type", r.content_type))
        if encoding is not None:
            wire.append(("Content-Encoding", encoding))
        wire += r.extra_headers
        url = f"http://{self.address}{r.path}"
        t = self.tally
        t.cases += 1
        t.labels[r.label] += 1
        try:
            async with self.session.request(r.method, url, headers=wire, data=body,
                                            allow_redirects=False) as resp:  # fmt: skip
                status, answer, resp_headers = resp.status, await resp.read(), resp.headers
        except ValueError:  # a header aiohttp's client will not write: not a case
            t.unsent += 1
            return None
        except aiohttp.ClientResponseError as e:
            # The server answered, but the client could not read the answer as one: aiohttp
            # answers a malformed HEAD request with a 400 that has a body.
            status, answer, resp_headers = e.status, b"", {}
            if not (r.method == "HEAD" and 400 <= status < 500):
                t.statuses[0] += 1
                t.fail(f"an unreadable answer ({e.status}: {e.message}) to {self.describe(r)}")
                return 0
        except (aiohttp.ClientError, OSError, TimeoutError) as e:
            t.statuses[0] += 1  # 0: no answer at all
            t.fail(f"no answer ({type(e).__name__}: {e}) to {self.describe(r)}")
            return 0
        t.statuses[status] += 1
        if status >= 500:
            t.fail(f"{status} for {self.describe(r)}: {answer[:200]!r}")
        elif GENERIC.encode() in answer:
            t.fail(f"a crash while serving ({status}) {self.describe(r)}")
        if status == 200:
            self._check_accepted(r, headers, answer, resp_headers)
        return status

    def _check_accepted(self, r: Recipe, headers: dict[str, str], answer: bytes,
                        resp_headers: Any) -> None:  # fmt: skip
        t = self.tally
        if not r.may_pass:
            t.fail(f"200 for a request that must be refused: {self.describe(r)}")
            return
        if r.method == "POST" and served_path(r.path) in (SYNC_PATH, PUSH_PATH):
            try:
                check_response(self.client_verifier, path=served_path(r.path), status=200,
                               headers=resp_headers, body=answer, request_headers=headers,
                               expected_key=self.server.author)  # fmt: skip
            except PeerError as e:
                t.fail(f"a 200 that is not a signed answer ({e}): {self.describe(r)}")
        t.accepted += 1
        self._last_valid = (headers, r.body, r.path)

    @staticmethod
    def describe(r: Recipe) -> str:
        body = r.body if len(r.body) <= 80 else r.body[:80] + b"..."
        extra = [(k, v if len(v) < 40 else f"<{len(v)} chars>") for k, v in r.extra_headers[:5]]
        return (f"{r.method} {r.path} signer={r.signer} spoil={r.spoil} label={r.label} "
                f"ct={r.content_type!r} enc={r.encoding} tampered={r.signed_body is not None} "
                f"extra={extra}{'...' if len(r.extra_headers) > 5 else ''} "
                f"body={body!r}")  # fmt: skip


# -- the long run: scripts/fuzz -------------------------------------------------------------


def drive(target: Target, loop: asyncio.AbstractEventLoop, n: int, *, seed: int | None = None,
          in_flight: int = 8, report_every: int = 0) -> None:
    """Draw ``n`` recipes with hypothesis in this (non-loop) thread and send them on
    ``loop``, up to ``in_flight`` at once: generating the next cases overlaps serving the
    last ones, and the server sees concurrent requests as it does in a mesh. A failure is
    recorded in ``target.tally`` with the request that caused it (not raised here, so the
    whole run completes and every failure is counted)."""
    from hypothesis import HealthCheck, Phase, given, settings
    from hypothesis import seed as hseed

    pending: collections.deque[Any] = collections.deque()
    started = time.monotonic()
    batch = 4  # recipes per hypothesis example: its per-example cost, shared by four
    examples = -(-n // batch)
    sent = 0

    @settings(max_examples=examples, deadline=None, database=None, phases=[Phase.generate],
              suppress_health_check=list(HealthCheck))  # fmt: skip
    @given(recipes=st.lists(cases(target.corpus), min_size=batch, max_size=batch))
    def some(recipes: list[Recipe]) -> None:
        nonlocal sent
        for recipe in recipes[: n - sent]:
            sent += 1
            pending.append(asyncio.run_coroutine_threadsafe(target.send(recipe), loop))
            while len(pending) >= in_flight:
                pending.popleft().result(60)
            if report_every and sent % report_every == 0:
                rate = sent / (time.monotonic() - started)
                print(f"  {sent} cases, {rate:.0f}/s, statuses "
                      f"{dict(sorted(target.tally.statuses.items()))}", file=sys.stderr,
                      flush=True)  # fmt: skip

    if seed is not None:
        some = hseed(seed)(some)
    some()
    while pending:
        pending.popleft().result(60)


def run(cases_wanted: int, seed: int | None, report_every: int) -> dict[str, Any]:
    """Drive ``cases_wanted`` hypothesis examples at one target; return the figures."""

    async def main() -> dict[str, Any]:
        with tempfile.TemporaryDirectory(prefix="sm-gossip-fuzz-") as tmp:
            async with Target(Path(tmp)) as target:
                loop = asyncio.get_running_loop()
                started = time.monotonic()
                await asyncio.to_thread(drive, target, loop, cases_wanted, seed=seed,
                                        report_every=report_every)  # fmt: skip
                elapsed = time.monotonic() - started
                t = target.tally
                return {
                    "cases": t.cases,
                    "unsent": t.unsent,
                    "statuses": {str(k): v for k, v in sorted(t.statuses.items())},
                    "5xx": t.server_errors,
                    "no_answer": t.statuses.get(0, 0),
                    "crashes": sum("crash" in f for f in t.failures) + len(target.logged_errors),
                    "accepted_and_verified": t.accepted,
                    "failures": t.failures,
                    "logged_errors": target.logged_errors[:20],
                    "aiohttp_parser_errors_logged": target.aiohttp_errors,
                    "document_unchanged": target.unchanged(),
                    "seconds": round(elapsed, 1),
                    "rate_per_s": round(t.cases / elapsed),
                    "bodies": dict(t.labels.most_common()),
                }

    return asyncio.run(main())


def cli(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="scripts/fuzz",
        description="Fuzz the peer endpoint of one real aiohttp server on loopback.",
    )
    p.add_argument("--cases", type=int, default=100_000)
    p.add_argument("--seed", type=int, default=None, help="hypothesis seed (default: random)")
    p.add_argument("--report-every", type=int, default=10_000)
    p.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = p.parse_args(argv)
    figures = run(args.cases, args.seed, args.report_every)
    ok = (not figures["failures"] and not figures["logged_errors"]
          and figures["document_unchanged"])  # fmt: skip
    if args.json:
        print(json.dumps(figures, indent=2))
    else:
        print(f"cases run:            {figures['cases']} (+{figures['unsent']} the client "
              "library would not send)")  # fmt: skip
        print(f"status histogram:     {figures['statuses']}")
        print(f"5xx:                  {figures['5xx']}")
        print(f"no answer:            {figures['no_answer']}")
        logged = len(figures["logged_errors"])
        print(f"crashes:              {figures['crashes']} (answers of the generic "
              f"'could not be served', and ERRORs logged by our code: {logged})")  # fmt: skip
        print(f"200s, all verified:   {figures['accepted_and_verified']}")
        print(f"aiohttp parser 400s logged at ERROR by aiohttp: "
              f"{figures['aiohttp_parser_errors_logged']}")  # fmt: skip
        print(f"document unchanged:   {figures['document_unchanged']}")
        print(f"runtime:              {figures['seconds']} s ({figures['rate_per_s']} cases/s)")
        print(f"bodies:               {figures['bodies']}")
        for f in figures["failures"]:
            print(f"FAILURE: {f}")
        for e in figures["logged_errors"]:
            print(f"ERROR LOGGED: {e}")
    print("ok" if ok else "FAILED", file=sys.stderr)
    return 0 if ok else 1


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        sys.exit(cli())
