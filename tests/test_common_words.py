"""Common words (Capability.TOKEN_COUNTING, whose counts the conformance suite checks): SQLite's
after a purge, and hybrid search leaving them out of its word ranking."""

from __future__ import annotations

import pytest
from qv_ollama_sdk.domain.models import Conversation

from qv_session_manager import SessionManager, meaning
from qv_session_manager.backends.memory import MemoryStore
from qv_session_manager.backends.sqlite import SQLiteStore
from qv_session_manager.encryption import EncryptedStore
from qv_session_manager.protocol import Capability, offers
from qv_session_manager.query import parse
from qv_session_manager.testing.embedders import SynonymEmbedder


def _save(manager: SessionManager, contents: list[str], per_conversation: int = 3) -> None:
    for start in range(0, len(contents), per_conversation):
        conversation = Conversation(title="t")
        for content in contents[start : start + per_conversation]:
            conversation.add_user_message(content)
        manager.save_conversation(conversation)


def test_deleted_messages_stop_counting_once_purged() -> None:
    with SessionManager(store=SQLiteStore(":memory:")) as manager:
        cars = Conversation(title="cars")
        for _ in range(6):
            cars.add_user_message("the car")
        manager.save_conversation(cars)
        _save(manager, ["a cake"] * 4)
        store = manager.store
        assert offers(store, Capability.TOKEN_COUNTING)
        assert store.common_tokens(["car", "cake"], share=0.5, minimum=0) == {"car"}
        manager.delete_conversation(str(cars.id))
        store.purge()
        assert store.common_tokens(["car", "cake"], share=0.5, minimum=0) == {"cake"}


def test_hybrid_leaves_common_words_out_of_its_word_ranking(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(meaning, "COMMON_MINIMUM", 2)
    with SessionManager(store=SQLiteStore(":memory:"), embedder=SynonymEmbedder()) as manager:
        _save(manager, ["the car", "the cake", "the start", "the battery"], per_conversation=1)
        manager.index_embeddings()
        query = parse("the battery")
        assert meaning.word_ranking_query(manager.store, query) == parse("battery")
        assert meaning.word_ranking_query(manager.store, parse("the")) == parse("the"), "nothing else is left"
        by_words = {item["id"] for item in manager.search_conversations("battery")}
        by_meaning = [item["id"] for item in manager.search_conversations("the battery", mode="semantic")]
        hybrid = manager.search_conversations("the battery", mode="hybrid")
        expected = {
            chat: 1 / (meaning.FUSION_K + 1 + by_meaning.index(chat))
            + (1 / (meaning.FUSION_K + 1) if chat in by_words else 0.0)
            for chat in by_meaning
        }
        assert {item["id"]: item["score"] for item in hybrid} == pytest.approx(expected)
    # every store that counts leaves out the same words; one that cannot count keeps them all
    memory = MemoryStore()
    with SessionManager(store=memory) as manager:
        _save(manager, ["the car", "the cake", "the start", "the battery"], per_conversation=1)
        assert meaning.word_ranking_query(memory, query) == parse("battery")
    sealed = EncryptedStore(MemoryStore(), {"k": bytes(32)}, current="k")
    assert not offers(sealed, Capability.TOKEN_COUNTING), "its inner store holds ciphertext"
    assert meaning.word_ranking_query(sealed, query) == query.loosened()
