"""An OpenAI-compatible embeddings endpoint as a model of the semantic lane
(``[embeddings]`` in config.toml; docs/reading.md).

Implements ``crdt.embedder.Embedder`` over ``POST {url}/embeddings`` (body ``{"model",
"input": [texts]}``, answer ``{"data": [{"embedding": [...], "index": i}]}``), with the
standard library's HTTP client: the background builder's batches wait up to
``BATCH_TIMEOUT_S``, a recall's query at most ``QUERY_TIMEOUT_S``; after a failure the
endpoint counts as down for ``DOWN_S`` (a query fails at once, so recall falls back to
the embedded model without waiting) until an answer says otherwise.

The key is read from the environment variable ``key_env`` names, once, and only ever
sent as ``Authorization: Bearer``: no error message, log line or status holds it, nor
the endpoint's answer to a failure (an OpenAI error body may quote part of the key).
"""

from __future__ import annotations

import functools
import json
import math
import os
import threading
import time
from collections import OrderedDict
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from crdt.errors import EmbedderUnavailable

from ..errors import ConfigError

if TYPE_CHECKING:
    import numpy as np

    from ..config import EmbeddingsSettings

QUERY_TIMEOUT_S = 0.3  # a recall's query: then the embedded model answers instead
BATCH_TIMEOUT_S = 30.0  # a background batch of REQUEST texts
DOWN_S = 5.0  # after a failure, queries go straight to the embedded model this long
REQUEST = 64  # texts per request (8,192 characters each at most: ~130k tokens)
FETCHED = 32  # prefetched query vectors kept for their recall (each is taken once)
MAX_ANSWER = 64 * 1024 * 1024  # bytes of one answer (64 texts x 3,072 floats is ~4 MB)


class RemoteEmbedder:
    """One endpoint and model. ``dim`` is known once it answered (``probe``), or from the
    config; ``name`` says which model the vectors are: ``openai:HOST:PORT/MODEL@DIM``.
    Thread-safe (one request per call; the state is a few fields)."""

    def __init__(self, settings: EmbeddingsSettings, environ: Mapping[str, str] | None = None):
        """ConfigError if ``key_env`` names a variable that is not set (or empty)."""
        environ = os.environ if environ is None else environ
        self.url = settings.url
        self.model = settings.model
        self.key_env = settings.key_env
        self._key = None
        if settings.key_env:
            self._key = environ.get(settings.key_env) or None
            if self._key is None:
                raise ConfigError(f"[embeddings] key_env names {settings.key_env}, which is not "
                                  "set in this environment: set it (the endpoint's key), or "
                                  "drop key_env for an endpoint that takes none")  # fmt: skip
        self._asked_dim = settings.dim
        self.raw_dim: int | None = settings.dim  # what the endpoint answers
        self.dim = 0  # the index's: raw_dim padded to a multiple of 64 (zeros: same cosines)
        self.name = ""
        if settings.dim:
            self._set_dim(settings.dim)
        self.reachable: bool | None = None  # whether the last request was answered
        self.error: str | None = None  # why it failed
        self._down_until = 0.0
        self._lock = threading.Lock()
        # Queries' vectors fetched before their recall (``prefetch``), each taken once.
        self._fetched: OrderedDict[str, np.ndarray] = OrderedDict()

    def _set_dim(self, raw: int) -> None:
        self.raw_dim = raw
        self.dim = 64 * math.ceil(raw / 64)
        self.name = f"openai:{urlsplit(self.url).netloc}/{self.model}@{raw}"

    @property
    def down(self) -> bool:
        return time.monotonic() < self._down_until

    def probe(self) -> int:
        """Ask the endpoint for one vector (learning its dimensions); EmbedderUnavailable
        if it does not answer. Returns ``dim``."""
        self.embed(["dimensions"])
        return self.dim

    def embed(self, texts: list[str]) -> np.ndarray:
        """The background builder's batches (and ``probe``): ``REQUEST`` texts a request."""
        import numpy as np

        rows = [self._request(texts[i : i + REQUEST], BATCH_TIMEOUT_S)
                for i in range(0, len(texts), REQUEST)]  # fmt: skip
        return np.concatenate(rows) if rows else np.zeros((0, self.dim), dtype=np.float32)

    def prefetch(self, text: str) -> None:
        """Fetch the vector of a query a recall will ask for next (``embed_query`` takes
        it then): the daemon calls this outside the replica's thread."""
        vector = self.embed_query(text)
        with self._lock:
            self._fetched[text] = vector
            while len(self._fetched) > FETCHED:
                self._fetched.popitem(last=False)

    def embed_query(self, text: str) -> np.ndarray:
        """A recall's query: the vector ``prefetch`` fetched, else at most
        ``QUERY_TIMEOUT_S``, and none while the endpoint is down (the embedded model
        answers that recall)."""
        with self._lock:
            fetched = self._fetched.pop(text, None)
        if fetched is not None:
            return fetched
        if self.down:
            raise EmbedderUnavailable(f"{self.url} failed: {self.error} (asked again soon)")
        return self._request([text], QUERY_TIMEOUT_S)[0]

    def _request(self, texts: list[str], timeout: float) -> np.ndarray:
        try:
            out = self._post(texts, timeout)
        except EmbedderUnavailable as e:
            with self._lock:
                self.reachable, self.error = False, str(e)
                self._down_until = time.monotonic() + DOWN_S
            raise EmbedderUnavailable(f"{self.url} failed: {e}") from None
        with self._lock:
            self.reachable, self.error = True, None
            self._down_until = 0.0
        return out

    def _post(self, texts: list[str], timeout: float) -> np.ndarray:
        import http.client
        import urllib.error
        import urllib.request

        import numpy as np

        body: dict[str, Any] = {"model": self.model, "input": texts}
        if self._asked_dim:
            body["dimensions"] = self._asked_dim
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        if self._key is not None:
            headers["Authorization"] = f"Bearer {self._key}"
        request = urllib.request.Request(f"{self.url}/embeddings", json.dumps(body).encode(),
                                         headers, method="POST")  # fmt: skip
        # No proxy from the environment and no redirect (urllib would send the key on to
        # wherever it points): the key goes only where config.toml says.
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}), _no_redirect())
        try:
            with opener.open(request, timeout=timeout) as answer:
                raw = answer.read(MAX_ANSWER + 1)
        except urllib.error.HTTPError as e:  # its body is never read: it may quote the key
            e.close()
            why = "the key was refused" if e.code in (401, 403) else "an error"
            raise EmbedderUnavailable(f"it answered HTTP {e.code}: {why}") from None
        except (OSError, http.client.HTTPException) as e:  # refused, timed out, reset
            reason = getattr(e, "reason", None) or e
            raise EmbedderUnavailable(f"{type(reason).__name__}: {reason}"[:200]) from None
        if len(raw) > MAX_ANSWER:
            raise EmbedderUnavailable(f"its answer exceeds {MAX_ANSWER} bytes")
        try:
            data = sorted(json.loads(raw)["data"], key=lambda d: d["index"])
            vectors = np.array([d["embedding"] for d in data], dtype=np.float32)
        except (ValueError, KeyError, TypeError) as e:
            raise EmbedderUnavailable(f"its answer is not an embeddings list ({e!s:.80})") from None
        if vectors.ndim != 2 or len(vectors) != len(texts) or not np.isfinite(vectors).all():
            raise EmbedderUnavailable(f"it answered {len(vectors)} vectors for {len(texts)} texts")
        with self._lock:
            if self.raw_dim is None:
                self._set_dim(vectors.shape[1])
        if vectors.shape[1] != self.raw_dim:
            raise EmbedderUnavailable(f"it answered {vectors.shape[1]} dimensions, not "
                                      f"{self.raw_dim}: another model? (dim in [embeddings])")
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        out[:, : self.raw_dim] = vectors
        norms = np.linalg.norm(out, axis=1, keepdims=True)
        np.divide(out, norms, out=out, where=norms > 0)
        return out

    def status(self) -> dict[str, Any]:
        """For ``gossip status``: where, which model, whether it answers (never the key)."""
        return {"url": self.url, "model": self.model, "index": self.name or None,
                "reachable": self.reachable, "error": self.error}


@functools.cache
def _no_redirect() -> type:
    import urllib.request

    class NoRedirect(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, *args: Any, **kwargs: Any) -> None:
            return None  # urllib then raises the 30x as an HTTPError

    return NoRedirect
