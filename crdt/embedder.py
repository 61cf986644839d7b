"""Text to vectors for the semantic lane, with a model that ships inside a Python package.

The default is WordLlama's ``l2_supercat`` (MIT; 32,000 token vectors of 256 dimensions,
16 MB of float16 in the ``wordllama`` wheel): a static embedding, the mean of a text's
token vectors, so it costs no model service, no download and ~0.15 ms a text on one core.
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
from typing import TYPE_CHECKING, Any, Protocol

from .errors import EmbedderUnavailable as EmbedderUnavailable  # re-exported

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
    BATCH = 128  # texts per step: their token vectors stay in the CPU cache
    MAX_TOKENS = 512  # a memory's text may be 8,192 characters; its start says what it is

    def __init__(self, dim: int = 256) -> None:
        """Cheap: finds the files and names the model; they are read at the first embed
        (so that a command that never embeds never pays for the model)."""
        for package in ("numpy", "safetensors", "tokenizers"):
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

    def _model(self) -> tuple[np.ndarray, Any]:
        with self._lock:
            if self._loaded is None:
                try:
                    self._loaded = self._load()
                except Exception as e:  # a damaged file: no model, never a crash
                    raise EmbedderUnavailable(f"the embedded model cannot load: {e}") from None
            return self._loaded

    def _load(self) -> tuple[np.ndarray, Any]:
        import numpy as np
        from safetensors import safe_open
        from tokenizers import Tokenizer

        with safe_open(str(self._weights), framework="np") as f:
            # Matryoshka-trained: the first ``dim`` dimensions are a smaller model.
            table = f.get_tensor("embedding.weight")[:, : self.dim]
        tokenizer = Tokenizer.from_file(str(self._tokenizer_file))
        tokenizer.no_padding()
        tokenizer.enable_truncation(self.MAX_TOKENS)
        # Kept as shipped, float16: half the memory and half the bytes a gather moves;
        # sums are taken in float32, so nothing is lost.
        return np.ascontiguousarray(table, dtype=np.float16), tokenizer

    def embed(self, texts: list[str]) -> np.ndarray:
        import numpy as np

        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for start in range(0, len(texts), self.BATCH):
            self._embed_into(texts[start : start + self.BATCH], out[start : start + self.BATCH])
        norms = np.linalg.norm(out, axis=1, keepdims=True)
        np.divide(out, norms, out=out, where=norms > 0)
        return out

    def _embed_into(self, texts: list[str], out: np.ndarray) -> None:
        import numpy as np

        table, tokenizer = self._model()
        encoded = tokenizer.encode_batch(texts, add_special_tokens=False)
        ids = [np.asarray(e.ids, dtype=np.int64) for e in encoded]
        lengths = np.array([len(i) for i in ids], dtype=np.int64)
        some = lengths > 0
        if not some.any():
            return
        flat = np.concatenate(ids)
        np.clip(flat, 0, table.shape[0] - 1, out=flat)
        starts = np.concatenate(([0], np.cumsum(lengths)[:-1]))[some]
        out[some] = np.add.reduceat(table[flat], starts, axis=0, dtype=np.float32)


@functools.cache
def default_embedder() -> Embedder:
    """The embedded default, one per process (its model read at the first embed: ~0.3 s,
    ~20 MB)."""
    return WordLlamaEmbedder()
