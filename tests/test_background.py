"""Embedding in the background: saves wake a worker; failures wait and retry; nothing pending is lost."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence

import pytest
from qv_ollama_sdk.domain.models import Conversation

from qv_session_manager import InvalidInputError, SessionManager, background
from qv_session_manager.backends.memory import MemoryStore
from qv_session_manager.embedding import Vector
from qv_session_manager.encryption import EncryptedStore
from qv_session_manager.errors import EmbedderUnavailableError
from qv_session_manager.protocol import ConversationStore
from qv_session_manager.testing.embedders import SynonymEmbedder
from qv_session_manager.vector_records import VectorSpace

StoreFactory = Callable[[], ConversationStore]


class _Switchable(SynonymEmbedder):
    """Fails while ``down`` is set, like an Ollama server that is not running."""

    def __init__(self) -> None:
        super().__init__()
        self.down = threading.Event()
        self.calls = 0

    def embed(self, texts: Sequence[str]) -> list[Vector]:
        self.calls += 1
        if self.down.is_set():
            raise EmbedderUnavailableError("cannot reach Ollama: run ollama serve")
        return super().embed(texts)


def _counts(manager: SessionManager) -> tuple[int, int]:
    assert manager.embedder is not None
    return manager.store.embedding_counts(VectorSpace.of(manager.embedder))  # type: ignore[attr-defined]


def _save(manager: SessionManager, *texts: str) -> Conversation:
    conversation = Conversation(title="t")
    for text in texts:
        conversation.add_user_message(text)
    manager.save_conversation(conversation)
    return conversation


def test_saves_wake_the_worker(make_store: StoreFactory) -> None:
    with SessionManager(store=make_store(), embedder=SynonymEmbedder(), embed_in_background=True) as manager:
        assert manager.background is not None
        conversation = _save(manager, "my car is dead", "the battery")
        assert manager.background.wait_idle(10)
        assert _counts(manager) == (2, 0)
        found = manager.search_conversations("automobile accumulator", mode="semantic")
        assert found.mode == "semantic" and found[0]["id"] == str(conversation.id)
        conversation.add_user_message("one more")
        manager.save_conversation(conversation, conversation.messages[-1:])
        assert manager.background.wait_idle(10) and _counts(manager) == (3, 0)
        worker = manager.background._thread
    assert not worker.is_alive(), "close() stops the worker"


def test_a_failing_embedder_never_fails_a_save(make_store: StoreFactory, caplog: pytest.LogCaptureFixture) -> None:
    embedder = _Switchable()
    embedder.down.set()
    with SessionManager(store=make_store(), embedder=embedder, embed_in_background=True) as manager:
        assert manager.background is not None
        _save(manager, "first")
        assert manager.background.wait_idle(10)
        _save(manager, "second")  # the save returns at once; the worker fails again and waits
        assert manager.background.wait_idle(10)
        assert isinstance(manager.background.last_error, EmbedderUnavailableError)
        assert _counts(manager) == (0, 2)
        assert caplog.text.count("embedding in the background failed") == 1, "one warning per failure streak"
        assert manager.search_conversations("second", mode="hybrid").mode == "text"
        embedder.down.clear()
        with caplog.at_level(logging.INFO, logger="qv_session_manager"):
            manager.background.wake()  # the next save would do the same
            assert manager.background.wait_idle(10)
        assert manager.background.last_error is None and _counts(manager) == (2, 0)
        assert "works again" in caplog.text


def test_a_backlog_from_before_is_embedded_at_start(tmp_path) -> None:
    path = tmp_path / "chats.db"
    with SessionManager(db_path=path, embedder=SynonymEmbedder()) as plain:
        _save(plain, "saved while nothing embedded", "and this")
        assert _counts(plain) == (0, 2)
    with SessionManager(db_path=path, embedder=SynonymEmbedder(), embed_in_background=True) as later:
        assert later.background is not None and later.background.wait_idle(10)
        assert _counts(later) == (2, 0)


def test_background_embedding_is_checked_and_needs_vectors() -> None:
    with pytest.raises(InvalidInputError, match="needs an embedder"):
        SessionManager(store=MemoryStore(), embed_in_background=True)
    with pytest.raises(InvalidInputError):
        SessionManager(store=MemoryStore(), embedder=SynonymEmbedder(), embed_in_background="yes")  # type: ignore[arg-type]
    sealed = EncryptedStore(MemoryStore(), {"k": bytes(32)}, current="k")
    with SessionManager(store=sealed, embedder=SynonymEmbedder(), embed_in_background=True) as manager:
        assert manager.background is None, "a store without vectors gets no worker"
        _save(manager, "still saved")
        assert len(manager.list_conversations()) == 1


class _Slow(SynonymEmbedder):
    """Takes ``seconds`` per batch and records when it ran."""

    def __init__(self, seconds: float) -> None:
        super().__init__()
        self.seconds = seconds
        self.busy = 0.0

    def embed(self, texts: Sequence[str]) -> list[Vector]:
        started = time.monotonic()
        time.sleep(self.seconds)
        vectors = super().embed(texts)
        self.busy += time.monotonic() - started
        return vectors


def test_the_worker_gives_way_to_a_stream_of_saves_and_catches_up_in_the_pause() -> None:
    """While saves come without a pause the worker embeds a small share of the time; a pause lets it finish."""
    embedder = _Slow(0.02)
    with SessionManager(store=MemoryStore(), embedder=embedder, embed_in_background=True) as manager:
        assert manager.background is not None
        manager.background._batch_size = 1  # one message a batch: many batches to schedule
        started = time.monotonic()
        while time.monotonic() - started < 0.6:  # saves with no pause (far below QUIET_SECONDS apart)
            _save(manager, "my car is dead")
            time.sleep(0.01)
        streaming = time.monotonic() - started
        assert background.BUSY_SHARE == 0.1
        assert embedder.busy <= streaming * 0.3 + embedder.seconds, (
            "the worker took more than its share while saves went on"
        )
        embedded, pending = _counts(manager)
        assert embedded > 0, "the worker still made progress"
        assert pending > 0
        assert manager.background.wait_idle(30)
        assert _counts(manager)[1] == 0, "the pause after the stream let it embed the rest"
