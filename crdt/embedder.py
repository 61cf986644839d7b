"""Text to vectors for the semantic lane, with a model that ships inside a Python package.

The default is WordLlama's ``l2_supercat`` (MIT; 32,000 token vectors of 256 dimensions,
16 MB of float16 in the ``wordllama`` wheel): a static embedding, the mean of a text's
token vectors, so it costs no model service, no download and ~0.1 ms of CPU a text. It is
held as int8 (8 MB) and read at the first embed, never before.
docs/reading.md says why it was chosen over the other candidates.

This module never reaches the network: it reads the weights and the tokenizer from the
installed package's own files (``wordllama.WordLlama.load`` would look in a cache and
then download from a model hub; the package is never imported), and a missing file is an
``EmbedderUnavailable``, never a download. ``tests/test_semantic.py`` loads it in a
network namespace with no route anywhere.
"""

from __future__ import annotations

import functools
import importlib.metadata
import importlib.util
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO, Protocol

from .errors import EmbedderUnavailable as EmbedderUnavailable  # re-exported
from .heap import trim_heap

if TYPE_CHECKING:
    import numpy as np


class Embedder(Protocol):
    """What the semantic lane needs of a model."""

    name: str  # names the model and its version: vectors of two names are never mixed
    dim: int

    def embed(self, texts: list[str]) -> np.ndarray:
        """One unit-length float32 row per text (a text with no known token: zeros)."""
        ...


class WordLlamaEmbedder:
    """WordLlama's shipped 256-dimension model, read from the package's files.

    The inference is WordLlama's (the mean of the text's token vectors, then unit length),
    written out here so that ``wordllama`` is never imported: its inference module
    configures the root logger when imported, and its loader would try a download."""

    CONFIG = "l2_supercat"
    BATCH = 1024  # texts the tokenizer encodes at once, on all cores
    MAX_TOKENS = 512  # a memory's text may be 8,192 characters; its start says what it is

    def __init__(self, dim: int = 256) -> None:
        """Cheap: finds the files and names the model; they are read at the first embed
        (so that a command that never embeds never pays for the model)."""
        for package in ("numpy", "tokenizers"):
            if importlib.util.find_spec(package) is None:
                raise EmbedderUnavailable(f"{package} is not installed")
        spec = importlib.util.find_spec("wordllama")
        if spec is None or not spec.submodule_search_locations:
            raise EmbedderUnavailable("the wordllama package is not installed")
        root = Path(next(iter(spec.submodule_search_locations)))
        self._weights = root / "weights" / f"{self.CONFIG}_256.safetensors"
        self._tokenizer_file = root / "tokenizers" / f"{self.CONFIG}_tokenizer_config.json"
        for path in (self._weights, self._tokenizer_file):
            if not path.is_file():
                raise EmbedderUnavailable(f"{path} is missing from the wordllama package")
        self.dim = dim
        version = importlib.metadata.version("wordllama")
        self.name = f"wordllama-{self.CONFIG}-{dim}@{version}"
        self._loaded: tuple[Any, Any] | None = None
        self._lock = threading.Lock()

    @property
    def loaded(self) -> bool:
        """Whether the model is in memory (read at the first embed, never before)."""
        return self._loaded is not None

    def _model(self) -> tuple[np.ndarray, np.ndarray, Any]:
        with self._lock:
            if self._loaded is None:
                try:
                    self._loaded = self._load()
                except Exception as e:  # a damaged file: no model, never a crash
                    raise EmbedderUnavailable(f"the embedded model cannot load: {e}") from None
                trim_heap()  # the tokenizer's JSON and the float16 blocks are garbage now
            return self._loaded

    def _load(self) -> tuple[np.ndarray, np.ndarray, Any]:
        import numpy as np
        from tokenizers import Tokenizer

        # As int8 with one scale a token (8 MB and 128 kB: half the shipped float16),
        # read from the file a block of rows at a time (no copy of the whole table, even
        # for a moment). Each vector stays within 0.005 of the float16 one (cosine
        # > 0.9999), and a text's weighted sum is ~4x faster than summing float16, which
        # numpy converts one half-float at a time.
        with open(self._weights, "rb") as f:
            rows, cols, offset = _safetensors_f16(f, "embedding.weight")
            dim = min(self.dim, cols)  # Matryoshka-trained: the first ``dim`` dimensions
            codes = np.empty((rows, dim), dtype=np.int8)
            scales = np.empty(rows, dtype=np.float32)
            f.seek(offset)
            for start in range(0, rows, 2048):
                count = min(2048, rows - start)
                block = np.fromfile(f, dtype="<f2", count=count * cols)
                block = block.reshape(count, cols)[:, :dim].astype(np.float32)
                peak = np.abs(block).max(axis=1) / 127
                peak[peak == 0] = 1.0
                scales[start : start + count] = peak
                codes[start : start + count] = np.rint(block / peak[:, None])
        tokenizer = Tokenizer.from_file(str(self._tokenizer_file))
        if tokenizer.get_vocab_size(with_added_tokens=True) > rows:  # no id beyond the table
            raise ValueError(f"the tokenizer's vocabulary exceeds the {rows} vectors")
        tokenizer.no_padding()
        tokenizer.enable_truncation(self.MAX_TOKENS)
        return codes, scales, tokenizer

    def embed(self, texts: list[str]) -> np.ndarray:
        import numpy as np

        codes, scales, tokenizer = self._model()
        # ``encode_batch_fast`` (tokenizers >= 0.20) skips the character offsets, which
        # are not used here; either spreads a batch over the cores (Rust, no GIL).
        encode = getattr(tokenizer, "encode_batch_fast", tokenizer.encode_batch)
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for start in range(0, len(texts), self.BATCH):
            encoded = encode(texts[start : start + self.BATCH], add_special_tokens=False)
            for row, e in enumerate(encoded, start):
                ids = np.asarray(e.ids, dtype=np.intp)
                if ids.size:
                    # One text at a time: a batch's gather at once costs a copy of every
                    # token's row, and np.add.reduceat over it runs ~5x slower than this
                    # loop. einsum, not a matrix product: that would go to a BLAS whose
                    # threads spin on a busy host (crdt/semantic.py says the same).
                    np.einsum("i,ij->j", scales[ids], codes[ids], out=out[row])
        norms = np.linalg.norm(out, axis=1, keepdims=True)
        np.divide(out, norms, out=out, where=norms > 0)
        return out


def _safetensors_f16(f: BinaryIO, name: str) -> tuple[int, int, int]:
    """(rows, columns, byte offset) of the 2-d float16 tensor ``name`` in the safetensors
    file ``f`` (the format: a little-endian u64 header size, a JSON header naming each
    tensor's dtype, shape and byte range, then the data)."""
    import json
    import struct

    (size,) = struct.unpack("<Q", f.read(8))
    if size > 1 << 24:
        raise ValueError("not a safetensors file")
    meta = json.loads(f.read(size))[name]
    rows, cols = meta["shape"]
    start, end = meta["data_offsets"]
    if meta["dtype"] != "F16" or end - start != rows * cols * 2:
        raise ValueError(f"{name} is not a {rows}x{cols} float16 tensor")
    return rows, cols, 8 + size + start


@functools.cache
def default_embedder() -> Embedder:
    """The embedded default, one per process (its model read at the first embed: ~0.3 s,
    ~25 MB with the tokenizer)."""
    return WordLlamaEmbedder()
