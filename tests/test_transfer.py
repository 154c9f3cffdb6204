"""copy_store moves a whole store between backends, idempotently."""

from __future__ import annotations

from pathlib import Path

import pytest

from qv_session_manager import EXPIRES_AT, CopyReport, InvalidInputError, copy_store
from qv_session_manager.backends.memory import MemoryStore
from qv_session_manager.backends.sqlite import SQLiteStore
from qv_session_manager.protocol import Capability, ConversationFilter
from qv_session_manager.testing.contract import conversation, message, minutes


def test_copy_is_complete_and_idempotent(tmp_path: Path) -> None:
    source = SQLiteStore(tmp_path / "source.db")
    destination = MemoryStore()
    try:
        for index in range(25):
            source.save(
                conversation(f"c{index:02d}", updated=minutes(index % 3)),
                [message(f"text {index} {turn}", id=f"m{turn}") for turn in range(index % 4)],
            )
        assert copy_store(source, destination, page_size=7) == CopyReport(copied=25)
        listed = source.list(ConversationFilter())
        assert destination.list(ConversationFilter()) == listed
        assert all(destination.load(r.id) == source.load(r.id) for r in listed)
        destination.save(conversation("c00", updated=minutes(0)), [message("stale extra", id="extra")])
        assert copy_store(source, destination) == CopyReport(replaced=25)
        assert destination.load("c00") == source.load("c00"), "a second copy must converge, not duplicate"
    finally:
        source.close()
        destination.close()


class _ForgetfulStore(MemoryStore):
    """A store that does not honour expiries (no Capability.EXPIRY)."""

    def __init__(self) -> None:
        super().__init__()
        self.capabilities = self.capabilities - {Capability.EXPIRY}


def test_copy_refuses_an_expiry_the_destination_would_ignore() -> None:
    source = MemoryStore()
    source.save(conversation("plain", updated=minutes(1)), [message("kept", id="m1")])
    source.save(conversation("expiring", updated=minutes(2), metadata={EXPIRES_AT: "2999-01-01T00:00:00+00:00"}), [])
    destination = _ForgetfulStore()
    with pytest.raises(InvalidInputError, match="EXPIRY"):
        copy_store(source, destination)
    assert destination.load("expiring") is None, "the refused conversation is not written"
    assert copy_store(source, MemoryStore()).copied == 2, "a store that honours expiries takes both"
