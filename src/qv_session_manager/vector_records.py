"""What crosses the storage protocol for search by meaning: spaces, tasks and the ranking rule.

Vectors are stored per message, in a :class:`VectorSpace`: one embedder's model at one
dimension. Vectors of different spaces are never compared; a store may hold several
spaces at once (a model change embeds everything again into the new space, and
:meth:`~qv_session_manager.protocol.VectorStorage.forget_embeddings` drops the old one).

Every backend ranks by the same rule, :func:`rank_conversations`: a conversation's
score is the highest similarity (dot product of unit vectors, so their cosine) of its
messages to the query, computed in float64 from the float32 values stored; ties go
newest first by the filter's time field, then by descending id, as text searches do.
"""

from __future__ import annotations

import math
import re
import struct
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

from .errors import InvalidInputError
from .records import ConversationRecord, SearchHit
from .timeutil import time_key

if TYPE_CHECKING:
    from .protocol import TimeField

T = TypeVar("T")
K = TypeVar("K")
M = TypeVar("M")
_NAME = re.compile(r"[^\x00-\x1f/]{1,200}")


@dataclass(frozen=True)
class VectorSpace:
    """Which vectors may be compared: those of one embedder's model at one dimension.

    ``embedder`` and ``model`` are non-empty texts without ``/`` or control
    characters; ``dimension`` is 1 to 16,000. :attr:`key` names the space in storage.
    """

    embedder: str
    model: str
    dimension: int

    def __post_init__(self) -> None:
        for what, value in (("embedder", self.embedder), ("model", self.model)):
            if not isinstance(value, str) or not _NAME.fullmatch(value):
                raise InvalidInputError(f"a vector space's {what} must be 1-200 characters without '/', not {value!r}")
        if not isinstance(self.dimension, int) or isinstance(self.dimension, bool) or not 1 <= self.dimension <= 16_000:
            raise InvalidInputError(f"a vector space's dimension must be 1 to 16000, not {self.dimension!r}")

    @property
    def key(self) -> str:
        """``embedder/model/dimension``: one text naming the space."""
        return f"{self.embedder}/{self.model}/{self.dimension}"

    @classmethod
    def of(cls, embedder: Any) -> VectorSpace:
        """The space of a :class:`~qv_session_manager.embedding.TextEmbedder`'s vectors."""
        return cls(embedder.name, embedder.model, embedder.dimension)


@dataclass(frozen=True)
class EmbeddingTask:
    """A stored message whose text has no vector in a space yet.

    Given back with its vector to ``store_embeddings``, which stores the vector only if
    the message still holds exactly ``text`` (an edit or delete in between skips it).
    """

    conversation_id: str
    message_id: str
    text: str


def checked_vector(values: Sequence[float], space: VectorSpace) -> bytes:
    """A vector as stored: ``dimension`` little-endian float32 values.

    InvalidInputError for another length or a non-finite value.
    """
    if isinstance(values, (str, bytes)) or len(values) != space.dimension:
        length = len(values) if not isinstance(values, (str, bytes)) else "a text"
        raise InvalidInputError(f"a vector of space {space.key} needs {space.dimension} values, not {length}")
    try:
        packed = struct.pack(f"<{space.dimension}f", *values)
    except (struct.error, TypeError, OverflowError):
        raise InvalidInputError(f"a vector of space {space.key} must hold float32 numbers") from None
    if not all(math.isfinite(v) for v in struct.unpack(f"<{space.dimension}f", packed)):
        raise InvalidInputError(f"a vector of space {space.key} holds a non-finite value")
    return packed


def check_space(space: object) -> VectorSpace:
    """``space`` itself; InvalidInputError when it is not a VectorSpace."""
    if not isinstance(space, VectorSpace):
        raise InvalidInputError(f"expected a VectorSpace, got {type(space).__name__}")
    return space


def check_limit(limit: object) -> int:
    """``limit`` itself; InvalidInputError unless it is an int of at least 1."""
    if not isinstance(limit, int) or isinstance(limit, bool) or limit < 1:
        raise InvalidInputError(f"limit must be a positive int, not {limit!r}")
    return limit


def checked_embeddings(space: VectorSpace, embedded: object) -> list[tuple[EmbeddingTask, bytes]]:
    """The (task, packed vector) pairs of a ``store_embeddings`` call, every one checked before any is written.

    InvalidInputError for something that is not a sequence of (EmbeddingTask, vector)
    pairs, a task whose fields are not text, or a vector :func:`checked_vector` refuses.
    """
    if isinstance(embedded, (str, bytes)) or not isinstance(embedded, Sequence):
        raise InvalidInputError("store_embeddings takes a sequence of (EmbeddingTask, vector) pairs")
    checked = []
    for item in embedded:
        if not (isinstance(item, tuple) and len(item) == 2 and isinstance(item[0], EmbeddingTask)):
            raise InvalidInputError("store_embeddings takes (EmbeddingTask, vector) pairs")
        task = item[0]
        if not all(isinstance(value, str) for value in (task.conversation_id, task.message_id, task.text)):
            raise InvalidInputError("an EmbeddingTask holds a conversation id, a message id and a text (str)")
        checked.append((task, checked_vector(item[1], space)))
    return checked


def unpack(blob: bytes, dimension: int) -> tuple[float, ...]:
    """The float32 values of a stored vector."""
    return struct.unpack(f"<{dimension}f", blob)


def similarities(blobs: Sequence[bytes], query: Sequence[float], dimension: int) -> list[float]:
    """The dot product of each stored vector with ``query``, in float64 (numpy when installed).

    ``query`` is rounded to float32 first, so every backend compares the same numbers.
    """
    if not blobs:
        return []
    packed_query = struct.pack(f"<{dimension}f", *query)
    try:
        import numpy
    except ImportError:
        q = struct.unpack(f"<{dimension}f", packed_query)
        return [math.fsum(a * b for a, b in zip(unpack(blob, dimension), q)) for blob in blobs]
    matrix = numpy.frombuffer(b"".join(blobs), dtype="<f4").reshape(len(blobs), dimension).astype(numpy.float64)
    vector = numpy.frombuffer(packed_query, dtype="<f4").astype(numpy.float64)
    return [float(value) for value in matrix @ vector]


def best_per_conversation(scored: Iterable[tuple[K, M, float]]) -> dict[K, tuple[M, float]]:
    """conversation -> (message, score) of its best message; equal scores keep the first given."""
    best: dict[K, tuple[M, float]] = {}
    for conversation, message_id, score in scored:
        held = best.get(conversation)
        if held is None or score > held[1]:
            best[conversation] = (message_id, score)
    return best


def ranked(
    items: Iterable[T], score: Callable[[T], float], time: Callable[[T], str], ident: Callable[[T], str]
) -> list[T]:
    """``items`` in the one order of vector searches: highest ``score`` first; equal scores
    newest first by ``time`` (a :func:`~qv_session_manager.timeutil.time_key`), then by
    descending ``ident``."""
    ordered = sorted(items, key=ident, reverse=True)
    ordered.sort(key=time, reverse=True)
    ordered.sort(key=score, reverse=True)
    return ordered


#: One conversation's best match in a backend's search:
#: (conversation key, time key, conversation id, best message id, its key, score).
Candidate = tuple[int, str, str, str, int, float]


def ranked_candidates(candidates: Iterable[Candidate]) -> list[Candidate]:
    """``candidates`` in the order of :func:`ranked` (score, then time key, then id)."""
    return ranked(candidates, lambda item: item[5], lambda item: item[1], lambda item: item[2])


def best_candidates(
    rows: Sequence[tuple[int, str, str, str, int, bytes]], query: Sequence[float], dimension: int
) -> list[Candidate]:
    """Each conversation's best message among ``rows``, ranked: the search over stored vectors.

    ``rows`` are (conversation key, time key, conversation id, message id, message key,
    packed vector), each conversation's messages in stored order (the first of equal
    scores names the hit).
    """
    scores = similarities([row[5] for row in rows], query, dimension)
    best = best_per_conversation(
        ((row[0], row[1], row[2]), (row[3], row[4]), score) for row, score in zip(rows, scores)
    )
    return ranked_candidates(
        (pk, time, ident, mid, mpk, score) for (pk, time, ident), ((mid, mpk), score) in best.items()
    )


def rank_conversations(
    best: Iterable[tuple[ConversationRecord, str, float]],
    field: TimeField,
    *,
    limit: int | None,
    offset: int = 0,
) -> list[SearchHit]:
    """Hits ``(conversation, best message id, score)`` in the order of :func:`ranked`, the page cut afterwards."""
    ordered = ranked(
        best, lambda item: item[2], lambda item: time_key(getattr(item[0], field)), lambda item: item[0].id
    )
    end = None if limit is None else offset + limit
    return [SearchHit(record, message_id, None, score) for record, message_id, score in ordered[offset:end]]
