"""qv-sessions copy between SQLite and PostgreSQL reproduces the store exactly."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path

from click.testing import CliRunner
from qv_ollama_sdk.domain.models import Conversation, Function, Message, MessageRole, ToolCall

from qv_session_manager import SessionManager, open_store
from qv_session_manager.cli import main
from qv_session_manager.records import StoredConversation
from qv_session_manager.transfer import iter_stored


def everything(url: str) -> list[StoredConversation]:
    store = open_store(url)
    try:
        return sorted(iter_stored(store), key=lambda stored: stored.conversation.id)
    finally:
        store.close()


def fill(path: Path) -> None:
    """Conversations with tool calls, images, naive and aware times, nested metadata, NUL."""
    with SessionManager(db_path=path) as manager:
        for day in range(5):
            moment = datetime(2025, 1, 20 + day, 9, 30, 0, 123_456)
            if day % 2:
                moment = moment.replace(tzinfo=timezone(timedelta(hours=2)))
            call = ToolCall(function=Function(name="lookup", arguments={"q": ["a", 1, None]}), id=f"c{day}")
            conversation = Conversation(
                title=f"chat {day} Straße",
                model_name="llama3",
                created_at=moment,
                updated_at=moment,
                metadata={"day": day, "nested": {"x": [True, 1.5]}},
            )
            conversation.messages = [
                Message(role=MessageRole.USER, content=f"hello\x00 {day}", images=["aGk=", b"\x01"], created_at=moment),
                Message(role=MessageRole.ASSISTANT, content="", tool_calls=[call], created_at=moment),
                Message(role=MessageRole.TOOL, content="result", tool_call_id=f"c{day}", created_at=moment),
            ]
            manager.save_conversation(conversation)


def copy(source: str, destination: str) -> None:
    result = CliRunner().invoke(main, ["copy", source, destination], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert "verified 5" in result.stderr


def test_copy_sqlite_to_postgres_and_back(tmp_path: Path, store_url: str) -> None:
    original = f"sqlite:///{tmp_path / 'original.db'}"
    fill(tmp_path / "original.db")
    copy(original, store_url)
    assert everything(store_url) == everything(original)
    copy(original, store_url)  # a second run changes nothing
    assert everything(store_url) == everything(original)
    back = f"sqlite:///{tmp_path / 'back.db'}"
    copy(store_url, back)
    assert everything(back) == everything(original)
    # Equal datetimes may differ in offset; repr shows the offsets and the exact types too.
    assert repr(everything(back)) == repr(everything(original)) == repr(everything(store_url))
