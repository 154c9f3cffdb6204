"""SQLite's message vectors beyond the shared clauses: the in-memory matrix, and searching without numpy."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from qv_session_manager.backends.sqlite import SQLiteStore, vector_cache
from qv_session_manager.protocol import ConversationFilter
from qv_session_manager.testing.contract import conversation, message, minutes
from qv_session_manager.vector_records import VectorSpace

SPACE = VectorSpace("test", "hand", 2)


def _embed(store: SQLiteStore, vectors: dict[str, tuple[float, float]]) -> None:
    tasks = store.pending_embeddings(SPACE, limit=1000)
    store.store_embeddings(SPACE, [(task, vectors[task.text]) for task in tasks if task.text in vectors])


def _ranking(store: SQLiteStore, query: tuple[float, float], **kw) -> list[tuple[str, str | None, float | None]]:
    return [
        (h.conversation.id, h.message_id, h.score)
        for h in store.vector_search(SPACE, query, ConversationFilter(), **kw)
    ]


def test_the_matrix_follows_other_writers_and_ignores_plain_saves(tmp_path: Path) -> None:
    path = tmp_path / "v.db"
    reader, writer = SQLiteStore(path), SQLiteStore(path)
    reader.save(conversation("a"), [message("east", id="1")])
    _embed(reader, {"east": (1.0, 0.0)})
    assert _ranking(reader, (1.0, 0.0)) == [("a", "1", 1.0)]
    built = reader._vectors._matrices[SPACE.key]
    reader.save(conversation("a", title="renamed"), [message("east", id="1")])
    reader.save(conversation("b"), [message("north", id="1")])
    assert _ranking(reader, (1.0, 0.0)) == [("a", "1", 1.0)]
    assert reader._vectors._matrices[SPACE.key] is built, "saves that add no vector keep the matrix"
    _embed(writer, {"north": (0.0, 1.0)})  # another connection, as another process would
    assert [c for c, _, _ in _ranking(reader, (0.0, 1.0))] == ["b", "a"]
    assert writer.delete("b") is True
    assert _ranking(reader, (0.0, 1.0)) == [("a", "1", 0.0)], "a delete elsewhere is seen at once"
    writer.save(conversation("a"), [message("edited", id="1")])
    assert _ranking(reader, (1.0, 0.0)) == [], "an edit elsewhere drops the vector"
    reader.close()
    writer.close()


coordinate = st.sampled_from([-1.0, -0.5, 0.0, 0.5, 1.0, 0.3333333])


@settings(max_examples=40, deadline=None)
@given(
    st.lists(st.lists(st.tuples(coordinate, coordinate), max_size=4), min_size=1, max_size=8),
    st.tuples(coordinate, coordinate),
    st.integers(1, 5),
    st.integers(0, 3),
)
def test_the_matrix_and_the_blob_scan_give_the_same_page(
    tmp_path_factory: pytest.TempPathFactory, plan, query, limit, offset
) -> None:
    store = SQLiteStore(tmp_path_factory.mktemp("v") / "v.db")
    try:
        for number, vectors in enumerate(plan):
            texts = [f"c{number} m{index}" for index in range(len(vectors))]
            store.save(conversation(f"c{number}", updated=minutes(number % 3)), [message(t, id=t) for t in texts])
            _embed(store, dict(zip(texts, vectors)))
        with_matrix = _ranking(store, query, limit=limit, offset=offset)
        original = vector_cache.available
        vector_cache.available = lambda: False  # type: ignore[assignment]
        try:
            scanned = _ranking(store, query, limit=limit, offset=offset)
        finally:
            vector_cache.available = original  # type: ignore[assignment]
        assert [hit[:2] for hit in with_matrix] == [hit[:2] for hit in scanned]
        assert [hit[2] for hit in with_matrix] == pytest.approx([hit[2] for hit in scanned], abs=1e-12)
    finally:
        store.close()


def test_what_the_file_holds_of_a_vector(tmp_path: Path) -> None:
    """A plain file holds the float32 values as they are; an SQLCipher file holds none in the clear."""
    import struct

    vector = (0.123456789, -0.987654321)
    packed = struct.pack("<2f", *vector)
    plain = SQLiteStore(tmp_path / "plain.db")
    plain.save(conversation("c"), [message("text", id="1")])
    _embed(plain, {"text": vector})
    plain.close()
    assert packed in (tmp_path / "plain.db").read_bytes()
    pytest.importorskip("sqlcipher3", reason="needs the [sqlcipher] extra")
    sealed = SQLiteStore(tmp_path / "sealed.db", key=bytes(32))
    sealed.save(conversation("c"), [message("text", id="1")])
    _embed(sealed, {"text": vector})
    assert [h.conversation.id for h in sealed.vector_search(SPACE, vector, ConversationFilter())] == ["c"]
    sealed.close()
    data = b"".join(p.read_bytes() for p in tmp_path.iterdir() if p.name.startswith("sealed.db"))
    assert packed not in data and b"text" not in data


def test_pending_starts_where_it_may_and_goes_back_when_vectors_go(tmp_path: Path) -> None:
    """The pending scan skips embedded messages, yet an old edit or another store's forget is seen."""
    path = tmp_path / "v.db"
    store, other = SQLiteStore(path), SQLiteStore(path)
    for number in range(5):
        store.save(conversation(f"c{number}"), [message(f"text {number}", id="1")])
    _embed(store, {f"text {number}": (1.0, 0.0) for number in range(5)})
    assert store.pending_embeddings(SPACE, limit=10) == []
    assert store._pending_from._starts[SPACE.key][1] == 6, "the next scan starts after the five embedded"
    store.save(conversation("new"), [message("fresh", id="1")])
    assert [t.text for t in store.pending_embeddings(SPACE, limit=10)] == ["fresh"]
    other.save(conversation("c0"), [message("edited long ago", id="1")])  # another process edits an old one
    assert [t.text for t in store.pending_embeddings(SPACE, limit=10)] == ["edited long ago", "fresh"]
    _embed(store, {"edited long ago": (0.0, 1.0), "fresh": (0.0, 1.0)})
    assert store.pending_embeddings(SPACE, limit=10) == []
    assert other.forget_embeddings(SPACE) == 6
    assert len(store.pending_embeddings(SPACE, limit=10)) == 6, "another store's forget makes all pending again"
    store.close()
    other.close()


def _during_ranking(monkeypatch: pytest.MonkeyPatch, change) -> list[int]:  # type: ignore[no-untyped-def]
    """Run ``change`` the first time the products run (outside the store's lock); returns a call count."""
    calls = [0]
    rank = vector_cache.rank

    def ranking_with_a_write(*args, **kwargs):  # type: ignore[no-untyped-def]
        calls[0] += 1
        if calls[0] == 1:
            change()
        return rank(*args, **kwargs)

    monkeypatch.setattr(vector_cache, "rank", ranking_with_a_write)
    return calls


def test_a_vector_added_while_ranking_is_ranked_again_under_the_lock(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = SQLiteStore(tmp_path / "v.db")
    store.save(conversation("a"), [message("east", id="1")])
    store.save(conversation("b"), [message("north", id="1")])
    _embed(store, {"east": (1.0, 0.0)})
    calls = _during_ranking(monkeypatch, lambda: _embed(store, {"north": (0.0, 1.0)}))
    assert [c for c, _, _ in _ranking(store, (0.0, 1.0))] == ["b", "a"]
    assert calls[0] == 2, "the new vector made the search rank again"
    store.close()


def test_conversations_changed_while_ranking_are_checked_against_the_filter_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = SQLiteStore(tmp_path / "v.db")
    for name, minute in (("a", 1), ("b", 2), ("c", 3)):
        store.save(conversation(name, updated=minutes(minute), metadata={"keep": True}), [message(name, id="1")])
    _embed(store, {"a": (1.0, 0.0), "b": (0.5, 0.5), "c": (0.0, 1.0)})

    def change() -> None:
        store.save(conversation("b", updated=minutes(2), metadata={"keep": False}), [message("b", id="1")])

    calls = _during_ranking(monkeypatch, change)
    kept = ConversationFilter(metadata={"keep": True})
    hits = store.vector_search(SPACE, (1.0, 0.0), kept)
    assert [h.conversation.id for h in hits] == ["a", "c"] and calls[0] == 1, "no vector changed: one ranking"
    store.close()
