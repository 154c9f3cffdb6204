"""The Ollama embedder: vectors from the user's own Ollama server (``POST /api/embed``).

``open_embedder("ollama:nomic-embed-text")`` (any model tag: ``ollama:mxbai-embed-large:335m``;
a bare ``"ollama"`` means ``nomic-embed-text``). Options: ``host`` (default: the
``OLLAMA_HOST`` variable, as for chats, else Ollama's own default), ``batch_size``
(texts per request, 32), ``timeout`` (seconds per request, 120), ``keep_alive``
(how long Ollama keeps the model loaded, passed through), ``dimension`` (the
dimension expected, checked against the model's), ``document_prefix`` and
``query_prefix`` (override the model's task prefixes).

**Dimension.** Asked of the model once, by the first request (or by one short probe
when ``dimension`` is read before anything was embedded), and recorded. A later
answer of another length raises InvalidEmbeddingError instead of mixing vectors of
two models.

**Long texts.** Every request says ``truncate: false``, so Ollama refuses a text
longer than the model's context instead of cutting it silently. On that refusal a
batch is bisected until the too-long texts are alone, and each of them is cut in two
at the whitespace nearest its middle, recursively, until every piece fits; the text's
vector is the mean of its pieces' vectors weighted by their lengths in characters,
made unit length again. Why this rule and not chunks of a fixed size: the context
differs per model and per ``num_ctx`` setting, and characters are no measure of
tokens (CJK text has about one token per character), so only the server knows what
fits; texts that fit, the usual case, cost one request per batch and keep their
exact vector. The pieces depend only on the text and on the server's answers, so
the same text gives the same vector in any batch.

**Task prefixes.** nomic-embed-text (v1 and v2) gets ``search_document: `` on the
document side and ``search_query: `` on the query side, embeddinggemma its
``title: none | text: `` / ``task: search result | query: ``, mxbai-embed-large its
query instruction; other models get none. A long text gets the prefix on each piece.

**Errors.** Ollama not running or unreachable: EmbedderUnavailableError (a
ConnectionError); the model not pulled: EmbeddingModelNotFoundError (a LookupError)
whose message says ``ollama pull <model>``; a model that cannot embed (a chat model)
or any other refusal: EmbedderError.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Mapping, Sequence
from typing import Any

import httpx
import ollama

from ..errors import (
    EmbedderError,
    EmbedderUnavailableError,
    EmbeddingModelNotFoundError,
    InvalidEmbeddingError,
    InvalidInputError,
)
from .protocol import Vector
from .registry import split_spec
from .vectors import checked_texts, finish, halves, pool

DEFAULT_MODEL = "nomic-embed-text"
DEFAULT_BATCH_SIZE = 32
DEFAULT_TIMEOUT = 120.0
#: The text sent to learn a model's dimension when nothing was embedded yet.
PROBE_TEXT = "dimension probe"

#: (document prefix, query prefix) of the models trained with task prefixes, by model name without its tag.
TASK_PREFIXES: dict[str, tuple[str, str]] = {
    "nomic-embed-text": ("search_document: ", "search_query: "),
    "nomic-embed-text-v2-moe": ("search_document: ", "search_query: "),
    "embeddinggemma": ("title: none | text: ", "task: search result | query: "),
    "mxbai-embed-large": ("", "Represent this sentence for searching relevant passages: "),
}


def task_prefixes(model: str) -> tuple[str, str]:
    """The (document, query) prefixes for an Ollama model name such as ``nomic-embed-text:v1.5``."""
    base = model.rsplit("/", 1)[-1].split(":", 1)[0].lower()
    return TASK_PREFIXES.get(base, ("", ""))


class _TooLong(Exception):
    """Ollama refused an input for exceeding the model's context."""


class OllamaEmbedder:
    """A :class:`~qv_session_manager.embedding.TextEmbedder` backed by Ollama (see the module doc).

    Thread-safe: the dimension is learnt once (one probe however many threads ask);
    requests may overlap.
    """

    name = "ollama"

    def __init__(
        self,
        model: str = DEFAULT_MODEL,
        *,
        host: str | None = None,
        batch_size: int = DEFAULT_BATCH_SIZE,
        timeout: float = DEFAULT_TIMEOUT,
        keep_alive: float | str | None = None,
        dimension: int | None = None,
        document_prefix: str | None = None,
        query_prefix: str | None = None,
    ) -> None:
        if not isinstance(model, str) or not model.strip():
            raise InvalidInputError("an Ollama embedder needs a model name, e.g. 'nomic-embed-text'")
        if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 1:
            raise InvalidInputError(f"batch_size must be a positive int, not {batch_size!r}")
        if dimension is not None and (not isinstance(dimension, int) or isinstance(dimension, bool) or dimension < 1):
            raise InvalidInputError(f"dimension must be a positive int, not {dimension!r}")
        self._model = model.strip()
        self.batch_size = batch_size
        self.keep_alive = keep_alive
        self.host = host or os.environ.get("OLLAMA_HOST") or "http://127.0.0.1:11434"
        self._client = ollama.Client(host=host, timeout=timeout)
        self._expected = dimension
        self._dimension: int | None = None
        self._lock = threading.Lock()
        self._probe_lock = threading.Lock()
        document, query = task_prefixes(self._model)
        self.document_prefix = document if document_prefix is None else document_prefix
        self.query_prefix = query if query_prefix is None else query_prefix

    @property
    def model(self) -> str:
        return self._model

    @property
    def dimension(self) -> int:
        """The model's dimension: recorded from its first answer, probed once if asked before any."""
        if self._dimension is None:
            with self._probe_lock:  # one probe, however many threads ask at once
                if self._dimension is None:
                    self._request([self.document_prefix + PROBE_TEXT])
        assert self._dimension is not None
        return self._dimension

    def embed(self, texts: Sequence[str]) -> list[Vector]:
        """Document-side vectors (with the model's document prefix), in batches of ``batch_size``."""
        return self._embed_all(checked_texts(texts), self.document_prefix)

    def embed_queries(self, texts: Sequence[str]) -> list[Vector]:
        """Query-side vectors (with the model's query prefix)."""
        return self._embed_all(checked_texts(texts), self.query_prefix)

    def __repr__(self) -> str:
        return f"OllamaEmbedder(model={self._model!r}, host={self.host!r})"

    # -- splitting and pooling ---------------------------------------------------

    def _embed_all(self, texts: list[str], prefix: str) -> list[Vector]:
        vectors: list[Vector] = []
        for start in range(0, len(texts), self.batch_size):
            for parts in self._pieces(texts[start : start + self.batch_size], prefix):
                vectors.append(parts[0][0] if len(parts) == 1 else pool(parts))
        return vectors

    def _pieces(self, texts: list[str], prefix: str) -> list[list[tuple[Vector, float]]]:
        """For each text, the (vector, length) of each piece it had to be cut into (one piece when it fits)."""
        try:
            vectors = self._request([prefix + text for text in texts])
            return [[(vector, float(len(text)))] for vector, text in zip(vectors, texts)]
        except _TooLong:
            if len(texts) > 1:
                middle = len(texts) // 2
                return self._pieces(texts[:middle], prefix) + self._pieces(texts[middle:], prefix)
        try:
            left, right = halves(texts[0])
        except ValueError:
            raise EmbedderError(
                f"Ollama model {self._model!r} refuses even a one-character piece as too long for its context; "
                "check the model's num_ctx"
            ) from None
        first, second = self._pieces([left, right], prefix)
        return [first + second]

    # -- one request -------------------------------------------------------------

    def _request(self, inputs: list[str]) -> list[Vector]:
        try:
            response = self._client.embed(model=self._model, input=inputs, truncate=False, keep_alive=self.keep_alive)
        except ollama.ResponseError as error:
            raise self._translate(error) from error
        except (ConnectionError, httpx.TransportError) as error:
            raise EmbedderUnavailableError(
                f"cannot reach Ollama at {self.host} to embed with {self._model!r} ({type(error).__name__}: {error}); "
                "start it with `ollama serve`, or point OLLAMA_HOST (or host=) at your Ollama server"
            ) from error
        raw = list(response.embeddings or [])
        if len(raw) != len(inputs):
            raise InvalidEmbeddingError(
                f"Ollama model {self._model!r} returned {len(raw)} vectors for {len(inputs)} texts"
            )
        source = f"Ollama model {self._model!r}"
        with self._lock:
            if self._dimension is None:
                first = len(raw[0])
                if self._expected is not None and first != self._expected:
                    raise InvalidEmbeddingError(
                        f"{source} makes {first}-dimensional vectors, not the {self._expected} expected (dimension=)"
                    )
                self._dimension = first
        return [finish(vector, self._dimension, source=source) for vector in raw]

    def _translate(self, error: ollama.ResponseError) -> Exception:
        reason = str(error.error)
        lowered = reason.lower()
        if "context length" in lowered or "context window" in lowered:
            return _TooLong(reason)
        if error.status_code == 404 or "not found" in lowered:
            return EmbeddingModelNotFoundError(
                f"Ollama at {self.host} has no model {self._model!r} ({reason}); pull it with `ollama pull {self._model}`"
            )
        if "does not support" in lowered:
            return EmbedderError(
                f"Ollama model {self._model!r} cannot embed ({reason}); use an embedding model, "
                f"e.g. `ollama pull {DEFAULT_MODEL}` and 'ollama:{DEFAULT_MODEL}'"
            )
        return EmbedderError(f"Ollama refused to embed with {self._model!r}: {reason} (HTTP {error.status_code})")


def open_ollama(spec: str, options: Mapping[str, Any]) -> OllamaEmbedder:
    """The registry's opener: ``ollama`` or ``ollama:<model>[:<tag>]``, with the keyword options above."""
    _, model = split_spec(spec)
    return OllamaEmbedder(model or DEFAULT_MODEL, **options)
