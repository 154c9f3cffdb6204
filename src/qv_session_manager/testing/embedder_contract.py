"""The contract every embedder keeps (:class:`~qv_session_manager.embedding.TextEmbedder`), as tests.

Subclass :class:`EmbedderContract` and provide an ``embedder`` fixture::

    class TestMyEmbedder(EmbedderContract):
        @pytest.fixture
        def embedder(self):
            return open_embedder("mine:some-model")

``long_text`` (a fixture with a default) is a text longer than the model's context,
for the clause that nothing is silently cut; override it for a model with a longer
context than its default covers.
"""

from __future__ import annotations

import math
from array import array

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ..embedding import TextEmbedder, Vector
from ..errors import InvalidInputError

TEXTS = [
    "My car won't start in the morning.",
    "The battery is dead, it needs a charge.",
    "Résumé: naïve café, Straße, ＡＢＣ",
    "東京で寿司を食べました",
    "Привет, как дела?",
    "emoji 🚗🔋 and symbols ∑ ≠ ∞",
    "",
    "   \n\t ",
]

#: Short texts of any script, for the properties.
any_texts = st.lists(st.text(max_size=60), max_size=6)


def assert_contract_vector(vector: Vector, dimension: int) -> None:
    """One vector as the contract has it: ``dimension`` finite float32 values, unit length or all zeros."""
    assert isinstance(vector, list) and len(vector) == dimension
    assert all(isinstance(v, float) and math.isfinite(v) for v in vector)
    assert array("f", vector).tolist() == vector, "every value is a float32 value"
    norm = math.sqrt(math.fsum(v * v for v in vector))
    assert norm == 0.0 or abs(norm - 1.0) < 1e-5, f"unit length or zero, not {norm}"


def cosine(a: Vector, b: Vector) -> float:
    """The cosine similarity of two contract vectors (their dot product)."""
    return math.fsum(x * y for x, y in zip(a, b))


class EmbedderContract:
    """The embedder contract as test methods; subclasses provide the ``embedder`` fixture."""

    @pytest.fixture
    def embedder(self) -> TextEmbedder:
        raise NotImplementedError("provide an `embedder` fixture")

    @pytest.fixture
    def long_text(self) -> str:
        """A text past the model's context; its last words must still count."""
        return " ".join(f"word{i % 97} filler sentence number {i}." for i in range(3000))

    def test_it_is_a_text_embedder(self, embedder: TextEmbedder) -> None:
        assert isinstance(embedder, TextEmbedder)
        assert isinstance(embedder.name, str) and embedder.name
        assert isinstance(embedder.model, str) and embedder.model
        assert isinstance(embedder.dimension, int) and embedder.dimension > 0

    def test_vectors_have_the_dimension_and_are_unit_length(self, embedder: TextEmbedder) -> None:
        vectors = embedder.embed(TEXTS)
        assert len(vectors) == len(TEXTS)
        for vector in vectors:
            assert_contract_vector(vector, embedder.dimension)
        assert any(v != 0.0 for v in vectors[0]), "a text with words is not the zero vector"

    def test_the_dimension_stays_the_same(self, embedder: TextEmbedder) -> None:
        before = embedder.dimension
        embedder.embed(["one more text"])
        embedder.embed_queries(["and a query"])
        assert embedder.dimension == before

    def test_the_same_text_gives_the_same_vector(self, embedder: TextEmbedder) -> None:
        assert embedder.embed(TEXTS) == embedder.embed(TEXTS)
        assert embedder.embed_queries(TEXTS[:2]) == embedder.embed_queries(TEXTS[:2])

    def test_a_batch_is_the_texts_one_by_one(self, embedder: TextEmbedder) -> None:
        assert embedder.embed(TEXTS) == [embedder.embed([text])[0] for text in TEXTS]

    def test_no_texts_give_no_vectors(self, embedder: TextEmbedder) -> None:
        assert embedder.embed([]) == []
        assert embedder.embed_queries([]) == []

    def test_a_bare_string_is_refused(self, embedder: TextEmbedder) -> None:
        with pytest.raises(InvalidInputError):
            embedder.embed("a text, not a list of texts")  # a str is a Sequence[str]: only the check refuses it
        with pytest.raises(InvalidInputError):
            embedder.embed([b"bytes"])  # type: ignore[list-item]

    def test_queries_have_the_dimension_too(self, embedder: TextEmbedder) -> None:
        for vector in embedder.embed_queries(TEXTS):
            assert_contract_vector(vector, embedder.dimension)

    def test_a_query_is_closest_to_the_document_sharing_its_words(self, embedder: TextEmbedder) -> None:
        documents = embedder.embed(["the battery of my car is dead", "a recipe for tomato soup with basil"])
        (query,) = embedder.embed_queries(["tomato soup recipe"])
        assert cosine(query, documents[1]) > cosine(query, documents[0])

    def test_a_long_text_is_not_cut(self, embedder: TextEmbedder, long_text: str) -> None:
        ending_a = long_text + " zebra giraffe elephant " * 40
        ending_b = long_text + " carburettor spark plug " * 40
        vector_a, vector_b = embedder.embed([ending_a, ending_b])
        assert_contract_vector(vector_a, embedder.dimension)
        assert vector_a != vector_b, "the words past the model's context changed nothing: the text was cut"

    # One method runs for each subclass (each embedder): the "differing executors" are those classes.
    @settings(
        max_examples=25,
        deadline=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.differing_executors],
    )
    @given(texts=any_texts)
    def test_any_texts_give_contract_vectors_in_order(self, embedder: TextEmbedder, texts: list[str]) -> None:
        vectors = embedder.embed(texts)
        assert len(vectors) == len(texts)
        for vector in vectors:
            assert_contract_vector(vector, embedder.dimension)
        assert embedder.embed(texts[::-1]) == vectors[::-1], "batch order is kept"
