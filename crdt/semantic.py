"""The semantic lane's index: one vector per memory, derived and local to this host.

What it owns: the vectors of the memories the views hold, by record id and model name,
in memory for search and in a SQLite file beside the store (``embeddings.sqlite`` in the
data dir) so a restart never recomputes them. What it must never do: replicate, sign or
judge. Vectors are derived data, like the views: deleting the file costs a recompute and
nothing else; a vector of another model is never read (the key holds the model's name).
Which memories a reader may see is decided by the views (``crdt.views``), which filter
every candidate this index proposes.

Vectors arrive in two steps: ``add`` (in the replica's thread, while views apply a
change) only queues the text; ``catch_up`` (in a background thread, or at once in a
one-shot command) embeds what is queued and stores it. Until the queue is empty the
index is not ``ready`` (a few just-arrived memories aside) and recall says it is lexical
only.

Search is two-stage, so that 100k vectors cost a few milliseconds: a Hamming distance
over one sign bit per dimension (32 bytes a memory) proposes the best few thousand, and
4-bit vectors (128 bytes and one scale a memory) rank those. 164 bytes a memory in all,
a third of a typical memory's signed record, so the vectors never dominate memory.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import os
import sqlite3
import threading
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .embedder import Embedder
from .heap import trim_heap

log = logging.getLogger(__name__)

FILE = "embeddings.sqlite"
# Vectors of an embeddings endpoint's model (gossip's ``[embeddings]``): a file of their
# own, so that neither builder's transaction (held while it embeds a step) ever makes the
# other wait for SQLite's write lock.
ENDPOINT_FILE = "embeddings-endpoint.sqlite"
_SCHEMA = """
CREATE TABLE IF NOT EXISTS vectors (
    model TEXT NOT NULL, id TEXT NOT NULL, scale REAL NOT NULL, code BLOB NOT NULL,
    PRIMARY KEY (model, id)
) WITHOUT ROWID;
"""


class SemanticIndex:
    """Vectors of memories for one model. Thread-safe: ``add`` and reads from the views'
    thread, ``catch_up`` from any other; each holds the index's lock only briefly."""

    BATCH = 1024  # texts embedded per step of a catch-up (~60 ms on 2 cores)
    STEP = 8192  # texts a daemon's background call embeds, and a commit stores
    LAG = 64  # memories waiting for their vectors that still leave the index ready
    EXACT_BELOW = 4096  # fewer vectors than this: rank them all exactly

    def __init__(self, embedder: Embedder, path: str | Path | None = None) -> None:
        self.embedder = embedder
        self.model = embedder.name
        self._key = f"{self.model}#q4"  # the model and this file's encoding of its vectors
        self.dim = embedder.dim
        self.path = None if path is None else Path(path)
        self._lock = threading.Lock()
        self._closed = False
        if path is not None and not os.path.exists(path):
            # The memories' texts can be read back from their vectors, roughly: 0600 like
            # the store (SQLite gives its -wal and -shm files the same mode).
            os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
            os.chmod(path, 0o600)  # the umask must not widen it
        self._db = sqlite3.connect(":memory:" if path is None else str(path),
                                   check_same_thread=False)  # fmt: skip
        with contextlib.suppress(sqlite3.Error):
            self._db.execute("PRAGMA journal_mode=WAL")
            # Derived data: a crash may lose the last commits (recomputed), never the file.
            self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(_SCHEMA)
        self._rows = _RowsById()
        self._trimmed_at = 0  # rows held at the last trim_heap
        self._codes = np.zeros((0, self.dim // 2), dtype=np.uint8)  # two 4-bit codes a byte
        self._scales = np.zeros(0, dtype=np.float32)
        # Sign bits, one row per 64 dimensions (transposed: each row contiguous, so the
        # Hamming distance is a few whole-array operations).
        self._bits = np.zeros((self.dim // 64, 0), dtype=np.uint64)
        # Queued ids, in arrival order, with their text if the caller gave it; else the
        # text is asked of ``texts`` when embedded (the views hold it: no second copy).
        self._pending: dict[str, str | None] = {}
        self.embedded = 0  # taken off the queue by catch_up, ever: with pending(), arrivals
        self.texts: Callable[[list[str]], dict[str, str]] | None = None
        stored = self._db.execute("SELECT id, scale, code FROM vectors WHERE model = ?",
                                  (self._key,))  # fmt: skip
        while rows := stored.fetchmany(self.STEP):  # not all 100k rows as tuples at once
            codes = np.frombuffer(b"".join(r[2] for r in rows), dtype=np.uint8)
            self._append([r[0] for r in rows], codes.reshape(len(rows), self.dim // 2),
                         np.array([r[1] for r in rows], dtype=np.float32))  # fmt: skip
        self._fit()  # the growth slack of reading them back: up to 25 % of the index

    def close(self) -> None:
        with self._lock:
            if not self._closed:
                self._closed = True
                self._db.close()

    # -- filling ----------------------------------------------------------------------

    def add(self, record_id: str, text: str | None = None) -> None:
        """Queue a memory unless its vector is already held (cheap: no embedding). Without
        ``text``, ``texts`` gives it when its turn comes."""
        with self._lock:
            if self._rows.get(record_id) is None:
                self._pending[record_id] = text

    def add_many(self, record_ids: list[str]) -> None:
        """``add`` each of ``record_ids`` (their texts from ``texts``), the lock taken once."""
        with self._lock:
            for record_id, held in zip(record_ids, self._rows.held(record_ids), strict=True):
                if not held:
                    self._pending[record_id] = None

    def pending(self) -> int:
        return len(self._pending)

    @property
    def ready(self) -> bool:
        """Caught up, but for at most ``LAG`` memories just arrived: the semantic lane
        answers, and the newest memories are found by words until their vectors exist
        (a fraction of a second). A catch-up's backlog keeps recall lexical."""
        return len(self._pending) <= self.LAG

    def __len__(self) -> int:
        return len(self._rows)

    def catch_up(self, limit: int | None = None) -> int:
        """Embed and store up to ``limit`` queued memories (all if None), a batch at a
        time, the lock held only to take a batch and to file its vectors; committed once
        at the end (and every ``STEP``). Returns how many were done. The model is read
        here (or by a query) the first time there is something to embed, never before."""
        done, trim = 0, False
        try:
            done = self._catch_up(limit)
        finally:
            with self._lock:
                if not self._closed:
                    self._db.commit()
                    trim = not self._pending and self._fit()
                    if trim:  # a dict keeps its table when emptied: ~5 MB after 100k
                        self._pending = {}
            if trim:  # outside the lock: a search need not wait for it
                trim_heap()
        return done

    def _catch_up(self, limit: int | None) -> int:
        done = stored = 0
        while limit is None or done < limit:
            with self._lock:
                if self._closed:
                    return done
                if done - stored >= self.STEP:
                    self._db.commit()
                    stored = done
                want = self.BATCH if limit is None else min(self.BATCH, limit - done)
                batch = list(itertools.islice(self._pending.items(), want))
            if not batch:
                return done
            missing = [k for k, t in batch if t is None]
            found = self.texts(missing) if missing and self.texts is not None else {}
            texts = [found.get(k, "") if t is None else t for k, t in batch]
            codes, scales = quantize(self.embedder.embed(texts))
            with self._lock:
                if self._closed:
                    return done
                # Still queued: nobody filed it meanwhile (filing takes it off the queue).
                keep = [i for i, (k, t) in enumerate(batch)
                        if k in self._pending and (t is not None or k in found)]
                ids = [batch[i][0] for i in keep]
                self._db.executemany(
                    "INSERT OR REPLACE INTO vectors (model, id, scale, code) VALUES (?, ?, ?, ?)",
                    [(self._key, batch[i][0], float(scales[i]), codes[i].tobytes())
                     for i in keep],
                )  # fmt: skip
                self._append(ids, codes[keep], scales[keep])
                for k, _ in batch:  # done, or gone from the views (closed): not retried
                    if self._pending.pop(k, 0) != 0:
                        self.embedded += 1
            done += len(batch)
        return done

    def _append(self, ids: Sequence[str], codes: np.ndarray, scales: np.ndarray) -> None:
        start = len(self._rows)
        need = start + len(ids)
        if need > len(self._codes):
            cap = max(need, len(self._codes) * 5 // 4, 1024)  # +25 %: little slack held
            self._codes = _grow(self._codes, cap)
            self._scales = _grow(self._scales, cap)
            self._bits = _grow(self._bits.T, cap).T.copy()
        self._codes[start:need] = codes
        self._scales[start:need] = scales
        high, low = _unpack(codes)
        signs = np.empty((len(ids), self.dim), dtype=bool)
        signs[:, 0::2], signs[:, 1::2] = high > 0, low > 0
        self._bits[:, start:need] = np.packbits(signs, axis=1).view(np.uint64).T
        self._rows.extend(ids)

    def _fit(self) -> bool:
        """Caught up: give back a catch-up's growth slack beyond 1/32 (~3 %). That much
        stays: trimmed to the last row, every memory that arrives next would copy the
        whole index to grow it again (~7 ms at 100k, under the lock a write's ``add``
        waits for); now a copy comes once every ~3 % of growth. True after a catch-up of
        more than a batch: time to give the heap's free pages back (``trim_heap``)."""
        size = len(self._rows)
        keep = size + size // 32
        if len(self._codes) > size + size // 8:
            self._codes = self._codes[:keep].copy()
            self._scales = self._scales[:keep].copy()
            self._bits = self._bits[:, :keep].copy()
            self._rows.fit(keep)
        if size - self._trimmed_at < self.BATCH:
            return False
        self._trimmed_at = size
        return True

    # -- searching --------------------------------------------------------------------

    def embed_query(self, text: str) -> np.ndarray:
        """The query's vector: the embedder's ``embed_query`` if it has one (a remote
        model answers a query with a shorter timeout than a batch), else ``embed``."""
        query = getattr(self.embedder, "embed_query", None)
        return query(text) if query is not None else self.embedder.embed([text])[0]

    def nearest(self, query: np.ndarray, n: int) -> list[tuple[str, float]]:
        """The ``n`` held vectors most similar to ``query`` (cosine), best first."""
        with self._lock:
            size = len(self._rows)
            if size == 0 or n <= 0 or not query.any():
                return []
            if size <= self.EXACT_BELOW:
                rows = np.arange(size)
            else:
                # Stage 1: sign bits, Hamming distance; keep 8x what is asked (at least 2k).
                qbits = np.packbits(query > 0).view(np.uint64)
                dist = np.zeros(size, dtype=np.uint16)
                for word, qword in zip(self._bits[:, :size], qbits, strict=True):
                    dist += np.bitwise_count(word ^ qword)
                keep = min(size, max(8 * n, 2048))
                # The nearest ``keep`` (and those tied with the last): a count of each
                # distance (0..dim) finds the cut without sorting 100k distances.
                cut = int(np.searchsorted(np.cumsum(np.bincount(dist, minlength=self.dim + 1)),
                                          keep))  # fmt: skip
                rows = np.flatnonzero(dist <= cut)
            sims = self._similarity(rows, query)
            top = min(n, len(rows))
            best = np.argpartition(-sims, top - 1)[:top] if top < len(rows) else np.arange(top)
            best = best[np.lexsort((best, -sims[best]))]
            return [(self._rows.id_at(int(rows[i])), float(sims[i])) for i in best]

    def similarities(self, query: np.ndarray, record_ids: Iterable[str]) -> dict[str, float]:
        """The similarity of each held id in ``record_ids`` to ``query`` (4-bit vectors)."""
        with self._lock:
            held = [(rid, row) for rid in record_ids if (row := self._rows.get(rid)) is not None]
            if not held or not query.any():
                return {}
            sims = self._similarity(np.array([p for _, p in held]), query)
            return {rid: float(s) for (rid, _), s in zip(held, sims, strict=True)}

    def _similarity(self, rows: np.ndarray, query: np.ndarray) -> np.ndarray:
        # In integers: a float matrix-vector product goes to a multi-threaded BLAS, whose
        # threads contend on a busy machine (p99 x40 for 2,048 rows here); this never does.
        peak = float(np.abs(query).max()) or 1.0
        q = np.rint(query * (127 / peak)).astype(np.int32)
        high, low = _unpack(self._codes[rows])
        q8 = q.astype(np.int8)  # |q| <= 127; the products are summed in int32
        dots = (np.einsum("ij,j->i", high, q8[0::2], dtype=np.int32)
                + np.einsum("ij,j->i", low, q8[1::2], dtype=np.int32))  # fmt: skip
        return dots / (self._scales[rows] * (127 / peak))

    def status(self) -> dict[str, Any]:
        return {"model": self.model, "vectors": len(self._rows), "pending": len(self._pending),
                "ready": self.ready}  # fmt: skip

    def memory_bytes(self) -> int:
        """What the index holds in memory (vectors, sign bits, ids), for the benchmark."""
        return int(self._codes.nbytes + self._scales.nbytes + self._bits.nbytes
                   + self._rows.memory_bytes())  # fmt: skip


class _RowsById:
    """Record id -> row for the whole index in ~70 bytes an id (a dict of 100k str keys
    takes ~160): the ids as 32 raw bytes in one array, a sorted copy searched by
    bisection, and a dict only for the ids added since the last sort. An id that is not
    64 hex digits (none is: ids are SHA-256 digests) is kept in the dict."""

    RESORT = 4096

    def __init__(self) -> None:
        self._raw = np.zeros((0, 32), dtype=np.uint8)  # row -> id bytes
        self._size = 0
        self._keys = np.zeros(0, dtype="S32")  # sorted ids of rows [0, sorted)
        self._order = np.zeros(0, dtype=np.int32)  # their rows
        self._recent: dict[str, int] = {}  # rows added since, and odd ids
        self._odd: dict[int, str] = {}

    def __len__(self) -> int:
        return self._size

    def get(self, rid: str) -> int | None:
        row = self._recent.get(rid)
        if row is not None or len(rid) != 64 or not self._keys.size:
            return row
        try:
            key = np.array([bytes.fromhex(rid)], dtype="S32")
        except ValueError:
            return None
        i = int(np.searchsorted(self._keys, key[0]))
        if i < len(self._keys) and self._keys[i] == key[0]:
            return int(self._order[i])
        return None

    def held(self, ids: Sequence[str]) -> list[bool]:
        """``get(rid) is not None`` for each of ``ids``, the sorted ids searched for all
        of them at once (100k ids one by one: ~0.3 s)."""
        if not self._keys.size or any(len(rid) != 64 for rid in ids):
            return [self.get(rid) is not None for rid in ids]
        try:
            keys = np.frombuffer(bytes.fromhex("".join(ids)), dtype="S32")
        except ValueError:
            return [self.get(rid) is not None for rid in ids]
        at = np.minimum(np.searchsorted(self._keys, keys), len(self._keys) - 1)
        found = (self._keys[at] == keys).tolist()
        recent = self._recent
        return [hit or rid in recent for rid, hit in zip(ids, found, strict=True)]

    def id_at(self, row: int) -> str:
        return self._odd.get(row) or self._raw[row].tobytes().hex()

    def extend(self, ids: Sequence[str]) -> None:
        start = self._size
        self._size += len(ids)
        if self._size > len(self._raw):
            self._raw = _grow(self._raw, max(self._size, len(self._raw) * 5 // 4, 1024))
        try:  # the usual case at once: every id 64 hex digits
            if any(len(rid) != 64 for rid in ids):
                raise ValueError("not a digest")
            raw = np.frombuffer(bytes.fromhex("".join(ids)), dtype=np.uint8)
            self._raw[start : self._size] = raw.reshape(len(ids), 32)
            self._recent.update(zip(ids, range(start, self._size), strict=True))
        except ValueError:
            for offset, rid in enumerate(ids):
                row = start + offset
                try:
                    if len(rid) != 64:
                        raise ValueError(rid) from None
                    self._raw[row] = np.frombuffer(bytes.fromhex(rid), dtype=np.uint8)
                except ValueError:
                    self._odd[row] = rid
                self._recent[rid] = row
        if len(self._recent) - len(self._odd) > self.RESORT:
            self._resort()

    def _resort(self) -> None:
        rows = np.arange(self._size, dtype=np.int32)
        if self._odd:
            rows = rows[~np.isin(rows, list(self._odd))]
        keys = self._raw[rows].copy().view("S32").ravel()
        order = np.argsort(keys, kind="stable")
        self._keys, self._order = keys[order], rows[order]
        self._recent = {rid: row for row, rid in self._odd.items()}

    def fit(self, rows: int) -> None:
        """Hold room for ``rows`` ids, no more (``SemanticIndex._fit``)."""
        if len(self._raw) > max(rows, self._size):
            self._raw = self._raw[: max(rows, self._size)].copy()

    def memory_bytes(self) -> int:
        return int(self._raw.nbytes + self._keys.nbytes + self._order.nbytes)


def quantize(vectors: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Unit float32 rows as 4-bit codes, two a byte (dimension 2i high, 2i+1 low, each
    ``code + 8``), and per-row scales (``code / scale ~ vector``): an eighth of the bytes;
    cosine similarities stay within a few hundredths of the float ones."""
    peak = np.abs(vectors).max(axis=1)
    scales = np.where(peak > 0, 7.0 / np.maximum(peak, 1e-12), 1.0).astype(np.float32)
    codes = (np.rint(vectors * scales[:, None]).clip(-7, 7) + 8).astype(np.uint8)
    return (codes[:, 0::2] << 4) | codes[:, 1::2], scales


def _unpack(packed: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The signed 4-bit codes of the even and of the odd dimensions."""
    return (packed >> 4).astype(np.int8) - 8, (packed & 15).astype(np.int8) - 8


def _grow(array: np.ndarray, rows: int) -> np.ndarray:
    out = np.zeros((rows, *array.shape[1:]), dtype=array.dtype)
    out[: len(array)] = array
    return out


def open_in_dir(home: str | Path, embedder: Embedder | None = None,
                file: str = FILE) -> SemanticIndex | None:  # fmt: skip
    """The data dir's index with the embedded model (or ``embedder``, in ``file``), or
    None (recall stays lexical) when the model cannot load. A damaged file is derived
    data: it is dropped and rebuilt."""
    from .embedder import EmbedderUnavailable, default_embedder

    try:
        model = embedder or default_embedder()
    except EmbedderUnavailable as e:
        log.warning("recall is lexical only: %s", e)
        return None
    path = Path(home) / file
    try:
        return SemanticIndex(model, path)
    except sqlite3.DatabaseError as e:
        log.warning("%s is damaged (%s): its vectors are computed again", path, e)
        for stale in (path, path.with_name(file + "-wal"), path.with_name(file + "-shm")):
            stale.unlink(missing_ok=True)
        return SemanticIndex(model, path)
