"""Search by meaning through SessionManager: embedding the backlog, semantic and hybrid modes, fallbacks."""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator, Sequence
from datetime import datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st
from qv_ollama_sdk.domain.models import Conversation

from qv_session_manager import InvalidInputError, SessionManager
from qv_session_manager.backends.memory import MemoryStore
from qv_session_manager.backends.sqlite import SQLiteStore
from qv_session_manager.embedding import Vector
from qv_session_manager.encryption import EncryptedStore
from qv_session_manager.errors import EmbedderUnavailableError, StorageError
from qv_session_manager.meaning import FUSION_K, SearchResults, fuse
from qv_session_manager.protocol import ConversationStore
from qv_session_manager.records import ConversationRecord, SearchHit
from qv_session_manager.testing import embedders as test_embedders
from qv_session_manager.testing.embedders import SynonymEmbedder
from qv_session_manager.vector_records import VectorSpace

START = datetime(2026, 3, 1, 9, 0, 0)
StoreFactory = Callable[[], ConversationStore]


def _chat(manager: SessionManager, title: str, *texts: str, minute: int = 0) -> str:
    conversation = Conversation(title=title)
    for text in texts:
        conversation.add_user_message(text)
    conversation.updated_at = START + timedelta(minutes=minute)
    manager.save_conversation(conversation)
    return str(conversation.id)


@pytest.fixture
def manager(make_store: StoreFactory) -> Iterator[SessionManager]:
    with SessionManager(store=make_store(), embedder=SynonymEmbedder()) as manager:
        yield manager


@pytest.fixture
def chats(manager: SessionManager) -> dict[str, str]:
    return {
        "battery": _chat(manager, "garage", "my automobile has a flat accumulator", "no ignition at all", minute=1),
        "cake": _chat(manager, "baking", "a cheerful birthday cake recipe", minute=2),
        "start": _chat(manager, "words", "how do I start a new python project", minute=3),
    }


def _ids(results: Sequence[dict]) -> list[str]:
    return [item["id"] for item in results]


def test_semantic_search_finds_what_the_words_miss(manager: SessionManager, chats: dict[str, str]) -> None:
    assert manager.search_conversations("car won't start") == [], "no word of the query is in the battery chat"
    progress = manager.index_embeddings()
    assert (progress.embedded, progress.pending) == (4, 0)
    found = manager.search_conversations("car dead battery won't start", mode="semantic", snippets=True)
    assert isinstance(found, SearchResults) and found.mode == "semantic" and found.fallback is None
    assert found.pending == 0
    assert found[0]["id"] == chats["battery"] and found[0]["message_id"] is not None
    assert found[0]["snippet"].startswith("my automobile"), "the snippet comes from the best message"
    assert found[0]["score"] > found[1]["score"]


def test_hybrid_search_fuses_words_and_meaning(manager: SessionManager, chats: dict[str, str]) -> None:
    manager.index_embeddings()
    text = manager.search_conversations("start", order="relevance")
    hybrid = manager.search_conversations("start", mode="hybrid")
    assert _ids(text) == [chats["start"]]
    assert hybrid.mode == "hybrid" and _ids(hybrid)[:2] == [chats["start"], chats["battery"]], (
        "the word match ranks first in both rankings; the meaning match ('ignition') joins it"
    )
    assert set(_ids(text)) <= set(_ids(hybrid))
    semantic = _ids(manager.search_conversations("start", mode="semantic"))
    assert hybrid[0]["score"] == pytest.approx(1 / (FUSION_K + 1) + 1 / (FUSION_K + 1 + semantic.index(chats["start"])))


def test_hybrid_ranks_words_by_any_of_them(manager: SessionManager, chats: dict[str, str]) -> None:
    """A question's words are rarely all in one message: hybrid's word ranking holds a chat with any of them."""
    manager.index_embeddings()
    question = "start baking something cheerful"
    assert manager.search_conversations(question) == [], "no chat has every word"
    hybrid = manager.search_conversations(question, mode="hybrid")
    by_words = _ids(manager.search_conversations("start OR baking OR something OR cheerful", order="relevance"))
    by_meaning = _ids(manager.search_conversations(question, mode="semantic"))
    assert set(by_words) == {chats["start"], chats["cake"]}
    expected = {
        chat: sum(1 / (FUSION_K + 1 + ranking.index(chat)) for ranking in (by_words, by_meaning) if chat in ranking)
        for chat in chats.values()
    }
    assert {item["id"]: item["score"] for item in hybrid} == pytest.approx(expected)


def test_the_backlog_is_read_from_the_store(manager: SessionManager, chats: dict[str, str]) -> None:
    assert manager.index_embeddings(limit=1).embedded == 1
    assert manager.index_embeddings(batch_size=2).pending == 0
    assert manager.index_embeddings().embedded == 0, "nothing is embedded twice"
    stored = manager.load_conversation(chats["cake"])
    assert stored is not None
    stored.messages[0].content = "an edited recipe"
    manager.save_conversation(stored)
    assert manager.index_embeddings().embedded == 1, "an edited message is embedded again"
    _chat(manager, "new", "fresh words")
    partly = manager.search_conversations("recipe", mode="semantic")
    assert partly.mode == "semantic" and partly.pending == 1, "a partly embedded store says so"


class _Down(SynonymEmbedder):
    def embed_queries(self, texts: Sequence[str]) -> list[Vector]:
        raise EmbedderUnavailableError("cannot reach Ollama at http://127.0.0.1:11434: run ollama serve")


def test_searches_fall_back_to_text_and_say_why(make_store: StoreFactory, caplog: pytest.LogCaptureFixture) -> None:
    store = make_store()
    working = SessionManager(store=store, embedder=SynonymEmbedder())
    battery = _chat(working, "garage", "the battery is dead")
    none_yet = working.search_conversations("battery", mode="hybrid")
    assert none_yet.mode == "text" and "no conversation passing the filter has a vector" in (none_yet.fallback or "")
    assert _ids(none_yet) == [battery] and none_yet.pending == 1
    working.index_embeddings()
    down = SessionManager(store=store, embedder=_Down())
    for mode in ("semantic", "hybrid"):
        found = down.search_conversations("battery", mode=mode)  # type: ignore[arg-type]
        assert found.mode == "text" and "ollama serve" in (found.fallback or "") and _ids(found) == [battery]
    assert "searching by text only" in caplog.text
    _chat(down, "later", "saving works while the embedder is down")
    assert down.search_conversations("later", mode="hybrid").mode == "text"


class _Unprobed(SynonymEmbedder):
    """An Ollama-like embedder that learns its dimension from the server, which is down."""

    @property
    def dimension(self) -> int:
        raise EmbedderUnavailableError("cannot reach Ollama at http://127.0.0.1:11434: run ollama serve")


def test_a_dimension_that_cannot_be_learnt_falls_back_too(make_store: StoreFactory) -> None:
    store = make_store()
    battery = _chat(SessionManager(store=store), "garage", "the battery is dead")
    down = SessionManager(store=store)
    # Set after construction: before Python 3.12, the constructor's isinstance check reads dimension.
    down.embedder = _Unprobed()
    for mode in ("semantic", "hybrid"):
        found = down.search_conversations("battery", mode=mode)  # type: ignore[arg-type]
        assert found.mode == "text" and "ollama serve" in (found.fallback or "") and _ids(found) == [battery]
        assert found.pending is None, "what is pending in a space of unknown dimension is unknown"


def test_an_encrypted_store_keeps_no_vectors(tmp_path) -> None:
    inner = SQLiteStore(tmp_path / "sealed.db")
    sealed = EncryptedStore(inner, {"k": bytes(32)}, current="k")
    manager = SessionManager(store=sealed, embedder=SynonymEmbedder())
    _chat(manager, "secret", "my automobile has a flat accumulator")
    with pytest.raises(InvalidInputError, match="keeps no message vectors"):
        manager.index_embeddings()
    found = manager.search_conversations("accumulator", mode="semantic")
    assert found.mode == "text" and "EncryptedStore keeps no message vectors" in (found.fallback or "")
    assert len(found) == 1
    assert inner._db.execute("SELECT count(*) FROM message_vectors").fetchone() == (0,), (
        "vectors can be inverted: none may be stored beside ciphertext"
    )
    manager.close()


def test_modes_and_embedders_are_checked(make_store: StoreFactory) -> None:
    plain = SessionManager(store=make_store())
    with pytest.raises(InvalidInputError, match="needs an embedder"):
        plain.search_conversations("x", mode="semantic")
    with pytest.raises(InvalidInputError, match="needs an embedder"):
        plain.index_embeddings()
    assert plain.search_conversations("x") == [] and plain.search_conversations("x").mode == "text"
    with pytest.raises(InvalidInputError, match="mode must be one of"):
        plain.search_conversations("x", mode="vector")  # type: ignore[arg-type]
    with pytest.raises(InvalidInputError):
        SessionManager(store=make_store(), embedder=42)  # type: ignore[arg-type]
    with_embedder = SessionManager(store=make_store(), embedder=SynonymEmbedder())
    for bad in ({"limit": -1}, {"offset": -2}):
        with pytest.raises(InvalidInputError):
            with_embedder.search_conversations("x", mode="hybrid", **bad)  # type: ignore[arg-type]
    with pytest.raises(InvalidInputError):
        with_embedder.index_embeddings(batch_size=0)


def test_an_embedder_by_spec() -> None:
    test_embedders.install()
    try:
        manager = SessionManager(store=MemoryStore(), embedder="synonyms:16")
        assert (
            manager.embedder is not None and VectorSpace.of(manager.embedder).key == "synonyms/blake2b-synonyms-16/16"
        )
    finally:
        test_embedders.uninstall()


def test_hybrid_pages_are_slices_of_one_ranking(manager: SessionManager) -> None:
    for number in range(30):
        words = ["car"] * (number % 4) + ["battery"] * (number % 3) + [f"filler{number}"]
        _chat(manager, f"c{number}", " ".join(words) or "empty", minute=number % 7)
    manager.index_embeddings()
    whole = _ids(manager.search_conversations("car battery", mode="hybrid", limit=30))
    pages = [_ids(manager.search_conversations("car battery", mode="hybrid", limit=7, offset=o)) for o in (0, 7, 14)]
    assert [item for page in pages for item in page] == whole[:21]


def _record(name: str, minute: int) -> ConversationRecord:
    moment = START + timedelta(minutes=minute)
    return ConversationRecord(id=name, created_at=moment, updated_at=moment)


@given(
    st.lists(st.sampled_from("abcdefgh"), unique=True, max_size=8),
    st.lists(st.sampled_from("abcdefgh"), unique=True, max_size=8),
)
def test_fusion_scores_are_reciprocal_ranks(first: list[str], second: list[str]) -> None:
    records = {name: _record(name, ord(name) % 3) for name in "abcdefgh"}
    text = [SearchHit(records[name], f"t-{name}") for name in first]
    vectors = [SearchHit(records[name], f"v-{name}") for name in second]
    fused = fuse([text, vectors], "updated_at")
    assert sorted(hit.conversation.id for hit in fused) == sorted(set(first) | set(second))
    for hit in fused:
        name = hit.conversation.id
        expected = sum(1 / (FUSION_K + ranking.index(name) + 1) for ranking in (first, second) if name in ranking)
        assert hit.score == pytest.approx(expected)
        in_text = first.index(name) if name in first else len(first) + 99
        in_vectors = second.index(name) if name in second else len(second) + 99
        assert hit.message_id == (f"t-{name}" if in_text <= in_vectors else f"v-{name}")
    keys = [(-(hit.score or 0.0), hit.conversation.updated_at, hit.conversation.id) for hit in fused]
    for before, after in itertools.pairwise(keys):
        assert before[0] < after[0] or (before[0] == after[0] and (before[1], before[2]) >= (after[1], after[2]))


def test_every_backend_finds_the_same_by_meaning(tmp_path) -> None:
    """The same saves on SQLite and memory: semantic searches agree exactly, hybrid ones on the hits."""
    managers = [
        SessionManager(store=SQLiteStore(tmp_path / "a.db"), embedder=SynonymEmbedder()),
        SessionManager(store=MemoryStore(), embedder=SynonymEmbedder()),
    ]
    texts = [
        ("garage", "my automobile has a flat accumulator"),
        ("cars", "car repair and battery care"),
        ("cook", "a cheerful birthday cake"),
        ("doc", "the physician said to mend it"),
        ("same", "car repair and battery care"),
    ]
    conversations = []
    for minute, (title, text) in enumerate(texts):
        conversation = Conversation(title=title)
        conversation.add_user_message(text)
        conversation.updated_at = START + timedelta(minutes=minute % 3)
        conversations.append(conversation)
    for manager in managers:
        for conversation in conversations:
            manager.save_conversation(conversation)
        manager.index_embeddings()
    for query in ("dead car battery", "happy doctor", "repair"):
        semantic = [m.search_conversations(query, mode="semantic", snippets=True) for m in managers]
        assert [[(r["id"], r["message_id"]) for r in found] for found in semantic] == [
            [(r["id"], r["message_id"]) for r in semantic[0]]
        ] * 2
        assert [r["score"] for r in semantic[1]] == pytest.approx([r["score"] for r in semantic[0]], abs=1e-9)
        hybrid = [set(_ids(m.search_conversations(query, mode="hybrid"))) for m in managers]
        assert hybrid[0] == hybrid[1]
    for manager in managers:
        manager.close()


def test_an_embedder_that_cannot_tell_its_dimension_yet_is_accepted() -> None:
    """Opening a manager never asks the embedder anything (Ollama may be down until later)."""

    class _Unreachable(SynonymEmbedder):
        @property
        def dimension(self) -> int:
            raise EmbedderUnavailableError("cannot reach Ollama: run ollama serve")

    manager = SessionManager(store=MemoryStore(), embedder=_Unreachable())
    _chat(manager, "t", "words")
    found = manager.search_conversations("words", mode="hybrid")
    assert found.mode == "text" and "ollama serve" in (found.fallback or "") and len(found) == 1


def test_a_semantic_page_past_the_end_is_empty_not_a_fallback(manager: SessionManager, chats: dict[str, str]) -> None:
    manager.index_embeddings()
    whole = manager.search_conversations("car battery", mode="semantic")
    assert len(whole) == 3
    past = manager.search_conversations("car battery", mode="semantic", limit=5, offset=10)
    assert past == [] and past.mode == "semantic" and past.fallback is None
    second = manager.search_conversations("car battery", mode="semantic", limit=1, offset=1)
    assert _ids(second) == _ids(whole)[1:2]


def test_a_failing_word_ranking_fails_the_hybrid_search() -> None:
    """The words are ranked in another thread: what fails there reaches the caller, typed."""

    class Failing(MemoryStore):
        def search(self, *args: object, **kwargs: object) -> list[SearchHit]:
            raise StorageError("the word index is unreadable")

    with SessionManager(store=Failing(), embedder=SynonymEmbedder()) as manager:
        _chat(manager, "garage", "my automobile has a flat accumulator")
        manager.index_embeddings()
        with pytest.raises(StorageError, match="unreadable"):
            manager.search_conversations("car", mode="hybrid")
        assert manager.search_conversations("car", mode="semantic").mode == "semantic"
