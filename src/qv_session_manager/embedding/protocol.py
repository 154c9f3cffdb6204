"""The embedder interface: what every embedder promises, whoever wrote it."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, runtime_checkable

#: One embedding: ``dimension`` floats, each exactly representable as a float32.
Vector = list[float]


@runtime_checkable
class TextEmbedder(Protocol):
    """Turns texts into fixed-length vectors whose closeness follows meaning.

    The contract (``qv_session_manager.testing.embedder_contract`` checks it):

    - ``name`` is the registry name (``"ollama"``), ``model`` the model behind it
      (``"nomic-embed-text"``); together with ``dimension`` they identify which
      vectors may be compared: vectors of different (name, model, dimension) never are.
    - ``dimension`` is the length of every vector, fixed for the embedder's life.
      An embedder may learn it on first use (Ollama asks the model once); a model
      that later answers with another length is an
      :class:`~qv_session_manager.errors.InvalidEmbeddingError`, never a silent mix.
    - :meth:`embed` is the **document side**: call it for text that is stored and
      searched (messages). :meth:`embed_queries` is the **query side**: call it for
      what a user types to search. Models trained with task prefixes (nomic's
      ``search_document:`` / ``search_query:``) get the matching prefix on each
      side; for other models the two sides are the same.
    - Both return one vector per text, in the order given; ``[]`` for no texts,
      without contacting anything. A bare ``str`` is refused (InvalidInputError),
      so that a text is never embedded character by character.
    - Every value is finite and a float32 value; each vector has unit length, or is
      all zeros when the text holds nothing the model embeds (an empty text, for
      some models). So the dot product of two vectors is their cosine similarity.
    - The same text gives the same vector, alone or in any batch, as far as the
      model is deterministic (the built-in ones are).
    - A text is never silently cut: a text longer than the model's context is
      embedded in pieces, pooled into one vector (each embedder documents how).
    """

    @property
    def name(self) -> str: ...

    @property
    def model(self) -> str: ...

    @property
    def dimension(self) -> int: ...

    def embed(self, texts: Sequence[str]) -> list[Vector]:
        """Document-side vectors of ``texts``, one per text, in order."""
        ...

    def embed_queries(self, texts: Sequence[str]) -> list[Vector]:
        """Query-side vectors of ``texts``, one per text, in order."""
        ...
