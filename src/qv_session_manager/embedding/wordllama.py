"""The offline embedder: WordLlama, whose weights ship inside its wheel (no server, no download).

``open_embedder("wordllama")`` (256 dimensions) or ``"wordllama:128"`` / ``"wordllama:64"``
(its Matryoshka truncations). Needs ``pip install wordllama`` (from a checkout of this
repository: ``pip install -e ".[semantic]"``); without it, opening raises
MissingDependencyError naming that command. WordLlama is imported only when the
embedder is opened.

The model is static: a text's vector is the mean of its tokens' vectors. This module
computes that mean itself from WordLlama's tokenizer (without padding) and token
table, summed in float64 over every token, rather than through ``WordLlama.embed``, because
that pads a batch to its longest text (a batch holding one huge text would take
gigabytes) and sums in float32 over the padding (a text's vector would then depend
on its batch). So a long text needs no chunking at all (it has no context limit and
nothing is cut), the vector of a text is the same alone or in any batch, and an
empty text gives the zero vector (``WordLlama.embed(norm=True)`` gives NaNs). Up to
rounding it is WordLlama's own normalised embedding (a test holds them together).
The two sides are the same: the model knows no task prefixes.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ..errors import InvalidInputError, MissingDependencyError
from ..install_hints import install_hint
from .protocol import Vector
from .registry import split_spec
from .vectors import checked_texts

#: The dimensions the shipped weights offer (256, and its truncations).
DIMENSIONS = (64, 128, 256)
CONFIG = "l2_supercat"
INSTALL_HINT = install_hint("wordllama", "semantic")
#: Tokens gathered at once when averaging a text: bounds the memory a long text takes.
_SLICE = 8192


def _import_wordllama() -> Any:
    """The ``wordllama`` module, imported without letting it configure the root logger.

    (Its ``inference`` module calls ``logging.basicConfig`` on import; with a handler
    on the root logger for the duration of the import, that call does nothing.)
    """
    root = logging.getLogger()
    guard = logging.NullHandler()
    root.addHandler(guard)
    try:
        import wordllama
    except ImportError as error:
        raise MissingDependencyError(f"the wordllama embedder needs the wordllama package: {INSTALL_HINT}") from error
    finally:
        root.removeHandler(guard)
    return wordllama


class WordLlamaEmbedder:
    """A :class:`~qv_session_manager.embedding.TextEmbedder` over WordLlama's shipped model (see the module doc)."""

    name = "wordllama"

    def __init__(self, dimension: int = 256) -> None:
        if dimension not in DIMENSIONS:
            raise InvalidInputError(
                f"wordllama offers the dimensions {', '.join(map(str, DIMENSIONS))}, not {dimension!r}"
            )
        wordllama = _import_wordllama()
        import numpy

        self._numpy = numpy
        shipped = Path(wordllama.__file__).parent
        trunc = None if dimension == 256 else dimension
        model = wordllama.WordLlama.load(
            config=CONFIG, cache_dir=shipped, dim=256, trunc_dim=trunc, disable_download=True
        )
        self._table = numpy.ascontiguousarray(model.embedding, dtype=numpy.float32)
        if self._table.shape[1] != dimension:
            self._table = numpy.ascontiguousarray(self._table[:, :dimension])
        self._tokenizer = model.tokenizer
        # WordLlama pads a batch to its longest text; this instance's tokenizer is ours: no padding.
        self._tokenizer.no_padding()
        self._dimension = dimension
        self._model = f"{CONFIG}-{dimension}"

    @property
    def model(self) -> str:
        return self._model

    @property
    def dimension(self) -> int:
        return self._dimension

    def embed(self, texts: Sequence[str]) -> list[Vector]:
        """The mean-of-tokens vector of each text, unit length (zeros for a text without tokens)."""
        items = checked_texts(texts)
        if not items:
            return []
        numpy = self._numpy
        last = self._table.shape[0] - 1
        totals = numpy.zeros((len(items), self._dimension), dtype=numpy.float64)
        for row, encoding in enumerate(self._tokenizer.encode_batch(items, add_special_tokens=False)):
            ids = numpy.asarray(encoding.ids, dtype=numpy.int64)[numpy.asarray(encoding.attention_mask) == 1]
            numpy.clip(ids, 0, last, out=ids)
            for start in range(0, len(ids), _SLICE):
                totals[row] += self._table[ids[start : start + _SLICE]].sum(axis=0, dtype=numpy.float64)
        # vectors.finish's rule (unit length, zeros kept, float32 values), in NumPy for speed.
        norms = numpy.linalg.norm(totals, axis=1, keepdims=True)
        unit = numpy.divide(totals, norms, out=numpy.zeros_like(totals), where=norms > 0)
        vectors: list[Vector] = unit.astype(numpy.float32).astype(numpy.float64).tolist()
        return vectors

    def embed_queries(self, texts: Sequence[str]) -> list[Vector]:
        """The same as :meth:`embed`: WordLlama has no query side."""
        return self.embed(texts)

    def __repr__(self) -> str:
        return f"WordLlamaEmbedder(dimension={self._dimension})"


def open_wordllama(spec: str, options: Mapping[str, Any]) -> WordLlamaEmbedder:
    """The registry's opener: ``wordllama`` or ``wordllama:<dimension>`` (or ``dimension=``)."""
    _, rest = split_spec(spec)
    options = dict(options)
    if rest:
        if not rest.isdigit():
            raise InvalidInputError(f"a wordllama spec looks like 'wordllama' or 'wordllama:128', not {spec!r}")
        options.setdefault("dimension", int(rest))
    return WordLlamaEmbedder(**options)
