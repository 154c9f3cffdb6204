"""Several processes and threads writing one SQLite file lose nothing."""

from __future__ import annotations

import multiprocessing
import threading
from datetime import datetime
from pathlib import Path

import pytest
from qv_ollama_sdk.domain.models import Conversation, Message, MessageRole

from qv_session_manager import SessionManager

WRITERS = 6
SAVES = 30
SHARED_ID = "00000000-0000-4000-8000-000000000000"


def shared_conversation() -> Conversation:
    conv = Conversation(title="shared")
    conv.id = SHARED_ID  # type: ignore[assignment]
    conv.created_at = conv.updated_at = datetime(2025, 1, 1)
    return conv


def writer(path: str, number: int) -> None:
    """Save an own conversation message by message, and append to the shared one."""
    with SessionManager(db_path=path, busy_timeout=60) as manager:
        own = Conversation(title=f"writer {number}")
        for turn in range(SAVES):
            own.add_user_message(f"writer {number} turn {turn}")
            manager.save_conversation(own, own.messages[-1:])
            note = Message(role=MessageRole.USER, content=f"w{number}-{turn}")
            manager.save_conversation(shared_conversation(), [note])


@pytest.mark.slow
def test_processes_writing_one_file_lose_nothing(tmp_path: Path) -> None:
    path = str(tmp_path / "shared.db")
    context = multiprocessing.get_context("spawn")
    processes = [context.Process(target=writer, args=(path, n)) for n in range(WRITERS)]
    for process in processes:
        process.start()
    for process in processes:
        process.join(timeout=300)
    assert [p.exitcode for p in processes] == [0] * WRITERS, "a writer failed (see its stderr)"
    with SessionManager(db_path=path) as manager:
        rows = manager.list_conversations()
        assert len(rows) == WRITERS + 1
        for row in rows:
            conv = manager.load_conversation(row["id"])
            if row["id"] == SHARED_ID:
                contents = [m.content for m in conv.messages]
                assert len(contents) == WRITERS * SAVES
                for n in range(WRITERS):
                    mine = [c for c in contents if c.startswith(f"w{n}-")]
                    assert mine == [f"w{n}-{t}" for t in range(SAVES)], "one writer's order was broken"
            else:
                number = row["title"].split()[1]
                assert [m.content for m in conv.messages] == [
                    f"writer {number} turn {t}" for t in range(SAVES)
                ]
        assert len(manager.search_conversations("turn")) == WRITERS


def test_threads_sharing_one_manager_lose_nothing(tmp_path: Path) -> None:
    errors: list[BaseException] = []
    with SessionManager(db_path=tmp_path / "threads.db") as manager:

        def work(number: int) -> None:
            try:
                conv = Conversation(title=f"thread {number}")
                for turn in range(20):
                    conv.add_user_message(f"t{number} m{turn}")
                    manager.save_conversation(conv)
                    assert manager.load_conversation(str(conv.id)) is not None
            except BaseException as exc:  # surfaced below
                errors.append(exc)

        threads = [threading.Thread(target=work, args=(n,)) for n in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert errors == []
        counts = sorted(len(manager.load_conversation(r["id"]).messages) for r in manager.list_conversations())
        assert counts == [20] * 8
