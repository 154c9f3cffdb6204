"""copy_store moves a whole store between backends, idempotently."""

from __future__ import annotations

from pathlib import Path

from qv_session_manager import copy_store
from qv_session_manager.backends.memory import MemoryStore
from qv_session_manager.backends.sqlite import SQLiteStore
from qv_session_manager.protocol import ConversationFilter
from qv_session_manager.testing.contract import conversation, message, minutes


def test_copy_is_complete_and_idempotent(tmp_path: Path) -> None:
    source = SQLiteStore(tmp_path / "source.db")
    destination = MemoryStore()
    try:
        for index in range(25):
            source.save(conversation(f"c{index:02d}", updated=minutes(index % 3)),
                        [message(f"text {index} {turn}", id=f"m{turn}") for turn in range(index % 4)])
        assert copy_store(source, destination, page_size=7) == 25
        listed = source.list(ConversationFilter())
        assert destination.list(ConversationFilter()) == listed
        assert all(destination.load(r.id) == source.load(r.id) for r in listed)
        destination.save(conversation("c00", updated=minutes(0)), [message("stale extra", id="extra")])
        assert copy_store(source, destination) == 25
        assert destination.load("c00") == source.load("c00"), "a second copy must converge, not duplicate"
    finally:
        source.close()
        destination.close()
