"""Small shared steps of every embedder: checking input, finishing and pooling vectors, halving text."""

from __future__ import annotations

import math
from array import array
from collections.abc import Iterable, Sequence

from ..errors import InvalidEmbeddingError, InvalidInputError
from .protocol import Vector


def checked_texts(texts: Sequence[str]) -> list[str]:
    """``texts`` as a list, after refusing a bare string and anything that is not a string."""
    if isinstance(texts, (str, bytes)):
        raise InvalidInputError("embed() takes a sequence of texts, not one text: embed([text])")
    items = list(texts)
    for index, text in enumerate(items):
        if not isinstance(text, str):
            raise InvalidInputError(f"text {index} to embed is a {type(text).__name__}, not a str")
    return items


def finish(values: Iterable[float], dimension: int | None = None, *, source: str = "the model") -> Vector:
    """A model's raw vector made contract-true: checked finite, scaled to unit length, rounded to float32.

    An all-zero vector stays all zeros. InvalidEmbeddingError for non-finite values,
    an empty vector or one whose length is not ``dimension`` (when given).
    """
    raw = [float(v) for v in values]
    if not raw:
        raise InvalidEmbeddingError(f"{source} returned an empty vector")
    if dimension is not None and len(raw) != dimension:
        raise InvalidEmbeddingError(
            f"{source} returned a {len(raw)}-dimensional vector, but its dimension was recorded as {dimension}: "
            "the model behind this name changed (pulled again with another tag?); vectors of different models "
            "are never compared, so open a new embedder and embed again"
        )
    if not all(math.isfinite(v) for v in raw):
        raise InvalidEmbeddingError(f"{source} returned a vector with non-finite values")
    largest = max(abs(v) for v in raw)
    if largest == 0.0:
        return [0.0] * len(raw)
    # Scaled by the largest value first: squares of tiny values underflow, of huge ones overflow.
    scaled = [v / largest for v in raw]
    norm = math.sqrt(math.fsum(v * v for v in scaled))
    return array("f", [v / norm for v in scaled]).tolist()


def pool(parts: Sequence[tuple[Vector, float]]) -> Vector:
    """The weighted mean of unit vectors ``(vector, weight)``, made unit length again (float32 values)."""
    if not parts:
        raise ValueError("nothing to pool")
    length = len(parts[0][0])
    total = [math.fsum(vector[i] * weight for vector, weight in parts) for i in range(length)]
    return finish(total, length)


def halves(text: str) -> tuple[str, str]:
    """``text`` cut in two non-empty parts, at the whitespace nearest its middle (or at the middle).

    Cutting at whitespace keeps words whole; the whitespace goes with the left part,
    so ``left + right == text``. ValueError for a text shorter than two characters.
    """
    if len(text) < 2:
        raise ValueError("a text of fewer than two characters cannot be split")
    middle = len(text) // 2
    reach = max(1, len(text) // 4)
    for offset in range(reach):
        for cut in (middle + offset, middle - offset):
            if 0 < cut < len(text) and text[cut - 1].isspace() and not text[cut].isspace():
                return text[:cut], text[cut:]
    return text[:middle], text[middle:]
