"""The conformance clauses of message vectors (:class:`~qv_session_manager.protocol.VectorStorage`).

:class:`~qv_session_manager.testing.StoreContract` includes them; each skips for a
store that does not declare ``Capability.VECTOR_STORAGE``. Vectors are given by
hand (small dimensions, exact float32 values), so every expected order and score
follows from :func:`~qv_session_manager.vector_records.rank_conversations` alone,
and a property clause holds every backend to that one rule on random data.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping, Sequence

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ..errors import InvalidInputError, StorageError
from ..protocol import Capability, ConversationFilter, ConversationStore, VectorStorage, offers
from ..records import EXPIRES_AT
from ..vector_records import EmbeddingTask, VectorSpace, rank_conversations
from .openers import StoreOpener
from .samples import conversation, message, minutes

SPACE = VectorSpace("contract", "hand-made", 3)
OTHER = VectorSpace("contract", "other-model", 3)
X, Y, Z = (1.0, 0.0, 0.0), (0.0, 1.0, 0.0), (0.0, 0.0, 1.0)


def _unit(*values: float) -> tuple[float, ...]:
    norm = math.sqrt(sum(v * v for v in values))
    return tuple(v / norm for v in values)


def _vectors(store: ConversationStore) -> VectorStorage:
    """``store`` as a VectorStorage; the clause skips when it does not declare one."""
    if not offers(store, Capability.VECTOR_STORAGE):
        pytest.skip("the backend does not declare Capability.VECTOR_STORAGE (vector_search)")
    return store


def _embed_all(store: ConversationStore, vectors: Mapping[str, Sequence[float]], space: VectorSpace = SPACE) -> int:
    """Store the vector given for each pending message's text; returns how many were stored."""
    vs = _vectors(store)
    tasks = vs.pending_embeddings(space, limit=10_000)
    return vs.store_embeddings(space, [(task, vectors[task.text]) for task in tasks if task.text in vectors])


def _hits(store: ConversationStore, query: Sequence[float], **kw: object) -> list[tuple[str, str | None]]:
    vs = _vectors(store)
    filter = kw.pop("filter", ConversationFilter())
    hits = vs.vector_search(kw.pop("space", SPACE), query, filter, **kw)  # type: ignore[arg-type]
    return [(hit.conversation.id, hit.message_id) for hit in hits]


class VectorClauses:
    """The vector clauses; mixed into StoreContract."""

    def test_vectors_rank_conversations_by_their_best_message(self, store: ConversationStore) -> None:
        """contract vectors: score = best dot product of a conversation's messages; message_id names that message."""
        vs = _vectors(store)
        store.save(conversation("a", updated=minutes(1)), [message("ax", id="1"), message("ay", id="2")])
        store.save(conversation("b", updated=minutes(2)), [message("bxy", id="1"), message("", id="2")])
        store.save(conversation("c", updated=minutes(3)), [message("cz", id="1")])
        store.save(conversation("d", updated=minutes(4)), [])
        pending = vs.pending_embeddings(SPACE, limit=100)
        assert sorted((t.conversation_id, t.message_id) for t in pending) == [
            ("a", "1"),
            ("a", "2"),
            ("b", "1"),
            ("c", "1"),
        ], "contract vectors: every message with content is pending, and no empty one"
        assert vs.embedding_counts(SPACE) == (0, 4)
        vectors = {"ax": X, "ay": Y, "bxy": _unit(1.0, 1.0, 0.0), "cz": Z}
        assert _embed_all(store, vectors) == 4
        assert vs.pending_embeddings(SPACE, limit=100) == [] and vs.embedding_counts(SPACE) == (4, 0)
        hits = vs.vector_search(SPACE, _unit(0.2, 1.0, 0.0), ConversationFilter())
        assert [(h.conversation.id, h.message_id) for h in hits] == [("a", "2"), ("b", "1"), ("c", "1")], (
            "contract vectors: wrong ranking or best message"
        )
        query = _unit(0.2, 1.0, 0.0)
        expected = [query[1], (query[0] + query[1]) / math.sqrt(2), 0.0]
        assert [h.score for h in hits] == pytest.approx(expected, abs=1e-6), "contract vectors: scores are dot products"
        assert hits[0].conversation == store.get("a") and all(h.text is None for h in hits)
        with_text = vs.vector_search(SPACE, query, ConversationFilter(), with_text=True)
        assert [h.text for h in with_text] == ["ay", "bxy", "cz"], "contract vectors: with_text gives the best message"
        assert _hits(store, X, limit=1) == [("a", "1")] and _hits(store, X, limit=2, offset=1) == [
            ("b", "1"),
            ("c", "1"),
        ], "contract vectors: pages are slices of the whole ranking"

    def test_vector_ties_go_newest_first_then_by_id(self, store: ConversationStore) -> None:
        """contract vectors: equal scores are ordered by the filter's time field (newest first), then by id."""
        _vectors(store)
        store.save(conversation("old", updated=minutes(1), created=minutes(9)), [message("same", id="1")])
        store.save(conversation("new", updated=minutes(5), created=minutes(2)), [message("same", id="1")])
        store.save(conversation("new2", updated=minutes(5), created=minutes(2)), [message("same", id="1")])
        store.save(conversation("two", updated=minutes(3)), [message("same", id="b"), message("same", id="a")])
        _embed_all(store, {"same": X})
        assert _hits(store, X) == [("new2", "1"), ("new", "1"), ("two", "b"), ("old", "1")], (
            "contract vectors: ties newest first, then by descending id; the first equal message in stored order"
        )
        by_created = ConversationFilter(field="created_at")
        assert [c for c, _ in _hits(store, X, filter=by_created)] == ["old", "two", "new2", "new"]

    def test_vectors_go_with_their_text(self, store: ConversationStore) -> None:
        """contract vectors: deletes, replaces and content edits remove vectors; other edits keep them."""
        vs = _vectors(store)
        store.save(conversation("c"), [message("one", id="1"), message("two", id="2"), message("three", id="3")])
        store.save(conversation("gone"), [message("four", id="1")])
        _embed_all(store, {"one": X, "two": Y, "three": Z, "four": X})
        assert vs.embedding_counts(SPACE) == (4, 0)
        assert store.delete_message("c", "3") is True
        store.save(conversation("c", title="renamed"), [message("one", id="1", metadata={"k": 1})])
        assert vs.embedding_counts(SPACE) == (3, 0), "contract vectors: a title or metadata change keeps vectors"
        store.save(conversation("c"), [message("two, edited", id="2")])
        assert vs.embedding_counts(SPACE) == (2, 1), "contract vectors: an edited content must be embedded again"
        assert [t.text for t in vs.pending_embeddings(SPACE, limit=10)] == ["two, edited"]
        assert store.delete("gone") is True
        assert vs.embedding_counts(SPACE) == (1, 1) and _hits(store, X) == [("c", "1")]
        store.save(conversation("c"), [message("new", id="9")], replace=True)
        assert vs.embedding_counts(SPACE) == (0, 1) and _hits(store, X) == [], (
            "contract vectors: a replace removes the vectors of the messages it drops"
        )
        store.save(conversation("gone"), [message("four", id="1")])
        assert vs.embedding_counts(SPACE) == (0, 2), "contract vectors: a deleted id saved again has no vector"

    def test_stale_tasks_store_nothing(self, store: ConversationStore) -> None:
        """contract vectors: a task whose message changed or went since it was pending is skipped."""
        vs = _vectors(store)
        store.save(conversation("c"), [message("before", id="1"), message("kept", id="2"), message("bye", id="3")])
        tasks = {t.message_id: t for t in vs.pending_embeddings(SPACE, limit=10)}
        store.save(conversation("c"), [message("after", id="1")])
        assert store.delete_message("c", "3") is True
        stored = vs.store_embeddings(SPACE, [(tasks["1"], X), (tasks["2"], Y), (tasks["3"], Z)])
        assert stored == 1 and vs.embedding_counts(SPACE) == (1, 1)
        assert vs.store_embeddings(SPACE, [(EmbeddingTask("nobody", "1", "after"), X)]) == 0
        assert _hits(store, Y) == [("c", "2")]

    def test_vector_spaces_never_mix(self, store: ConversationStore) -> None:
        """contract vectors: each space has its own vectors and pending list; forgetting one leaves the other."""
        vs = _vectors(store)
        store.save(conversation("c"), [message("text", id="1")])
        _embed_all(store, {"text": X})
        assert vs.embedding_counts(OTHER) == (0, 1) and _hits(store, X, space=OTHER) == []
        _embed_all(store, {"text": Y}, OTHER)
        assert vs.vector_search(OTHER, Y, ConversationFilter())[0].score == pytest.approx(1.0)
        assert vs.vector_search(SPACE, Y, ConversationFilter())[0].score == pytest.approx(0.0)
        assert vs.forget_embeddings(OTHER) == 1 and vs.embedding_counts(OTHER) == (0, 1)
        assert vs.embedding_counts(SPACE) == (1, 0), "contract vectors: forgetting a space removed another one"
        _embed_all(store, {"text": Y}, OTHER)
        assert vs.forget_embeddings() == 2 and vs.embedding_counts(SPACE) == (0, 1)

    def test_vector_search_filters_before_ranking(self, store: ConversationStore) -> None:
        """contract vectors: time and metadata filters choose the conversations first; expired ones never count."""
        vs = _vectors(store)
        store.save(conversation("early", updated=minutes(1), metadata={"team": "a"}), [message("x", id="1")])
        store.save(conversation("late", updated=minutes(9), metadata={"team": "b"}), [message("y", id="1")])
        _embed_all(store, {"x": X, "y": Y})
        assert _hits(store, X, filter=ConversationFilter(start=minutes(5))) == [("late", "1")]
        assert _hits(store, X, filter=ConversationFilter(metadata={"team": "b"}), limit=1) == [("late", "1")]
        if Capability.EXPIRY in store.capabilities:
            store.save(conversation("early", updated=minutes(1), metadata={EXPIRES_AT: "2000-01-01T00:00:00"}), [])
            assert _hits(store, X) == [("late", "1")] and vs.embedding_counts(SPACE) == (1, 0), (
                "contract vectors: an expired conversation is missing here too"
            )

    def test_bad_vector_input_is_refused_and_changes_nothing(self, store: ConversationStore) -> None:
        """contract vectors: wrong dimensions, non-finite values and wrong types raise InvalidInputError."""
        vs = _vectors(store)
        store.save(conversation("c"), [message("one", id="1"), message("two", id="2")])
        first, second = vs.pending_embeddings(SPACE, limit=10)
        for bad in ([(first, X), (second, (1.0, 0.0))], [(first, X), (second, (math.nan, 0.0, 0.0))], [(first, "abc")]):
            with pytest.raises(InvalidInputError):
                vs.store_embeddings(SPACE, bad)  # type: ignore[arg-type]
        with pytest.raises(InvalidInputError):
            vs.store_embeddings(SPACE, [(("c", "1", "one"), X)])  # type: ignore[list-item]
        assert vs.embedding_counts(SPACE) == (0, 2), "contract vectors: a refused store_embeddings stored something"
        _embed_all(store, {"one": X, "two": Y})
        for call in (
            lambda: vs.vector_search(SPACE, (1.0, 0.0), ConversationFilter()),
            lambda: vs.vector_search("contract/hand-made/3", X, ConversationFilter()),  # type: ignore[arg-type]
            lambda: vs.vector_search(SPACE, X, ConversationFilter(), limit=-1),
            lambda: vs.pending_embeddings(SPACE, limit=0),
            lambda: vs.embedding_counts(None),  # type: ignore[arg-type]
        ):
            with pytest.raises(InvalidInputError):
                call()
        with pytest.raises(InvalidInputError):
            VectorSpace("a/b", "m", 3)
        assert vs.embedding_counts(SPACE) == (2, 0)

    def test_vectors_survive_reopening(self, store_opener: StoreOpener) -> None:
        """contract vectors: a PERSISTENT store gives its vectors back after close(); a closed one raises."""
        store = store_opener("vectors")
        vs = _vectors(store)
        if Capability.PERSISTENT not in store.capabilities:
            store.close()
            pytest.skip("the backend does not declare Capability.PERSISTENT")
        store.save(conversation("c"), [message("one", id="1"), message("two", id="2")])
        _embed_all(store, {"one": X, "two": _unit(1.0, 1.0, 0.0)})
        before = vs.vector_search(SPACE, Y, ConversationFilter())
        store.close()
        with pytest.raises(StorageError):
            vs.vector_search(SPACE, Y, ConversationFilter())
        again = store_opener("vectors")
        try:
            again_vs = _vectors(again)
            assert again_vs.embedding_counts(SPACE) == (2, 0)
            assert again_vs.vector_search(SPACE, Y, ConversationFilter()) == before
        finally:
            again.close()

    def test_vector_search_follows_the_one_ranking_rule(self, store_opener: StoreOpener) -> None:
        """contract vectors: on random conversations and vectors, hits and order are the reference rule's."""
        counter = itertools.count()
        coordinate = st.sampled_from([-1.0, -0.5, 0.0, 0.25, 0.5, 1.0])
        vector = st.tuples(coordinate, coordinate, coordinate)
        plan = st.lists(st.tuples(st.integers(0, 4), st.lists(vector, max_size=3)), min_size=1, max_size=6)

        @given(plan, vector, st.sampled_from(["updated_at", "created_at"]), st.integers(0, 3))
        @settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
        def check(items, query, field, offset) -> None:  # type: ignore[no-untyped-def]
            store = store_opener(f"vector-rule{next(counter)}")
            try:
                vs = _vectors(store)
                expected = []
                for number, (minute, vectors) in enumerate(items):
                    record = conversation(f"c{number}", updated=minutes(minute), created=minutes(4 - minute))
                    texts = [f"c{number} m{index}" for index in range(len(vectors))]
                    store.save(record, [message(text, id=f"m{index}") for index, text in enumerate(texts)])
                    _embed_all(store, dict(zip(texts, vectors)))
                    scored = [(f"m{index}", sum(a * b for a, b in zip(v, query))) for index, v in enumerate(vectors)]
                    if scored:
                        best = max(scored, key=lambda pair: pair[1])  # the first of equals, as stored
                        expected.append((record, best[0], best[1]))
                want = rank_conversations(expected, field, limit=3, offset=offset)
                got = vs.vector_search(SPACE, query, ConversationFilter(field=field), limit=3, offset=offset)
                assert [(h.conversation.id, h.message_id) for h in got] == [
                    (h.conversation.id, h.message_id) for h in want
                ], "contract vectors: the order differs from rank_conversations"
                assert [h.score for h in got] == pytest.approx([h.score for h in want], abs=1e-9)
            finally:
                store.close()

        check()
