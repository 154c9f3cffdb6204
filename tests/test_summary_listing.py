"""SummaryListing: the seed API's listings built straight from a store's rows, exactly as from records."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, Phase
from hypothesis import settings as Settings
from qv_ollama_sdk.domain.models import Conversation

from qv_session_manager import SessionManager
from qv_session_manager.backends.sqlite import SQLiteStore
from qv_session_manager.protocol import Capability, offers
from qv_session_manager.testing.stateful import run_comparison

QUICK = Settings(
    max_examples=200,
    stateful_step_count=30,
    deadline=None,
    derandomize=True,
    suppress_health_check=list(HealthCheck),
    phases=[Phase.explicit, Phase.reuse, Phase.generate],
)


class NaiveTimestamps(SQLiteStore):
    """Summaries that drop the UTC offset of aware timestamps."""

    def list_summaries(self, *args: Any, **kwargs: Any) -> list[dict[str, Any]]:
        found = super().list_summaries(*args, **kwargs)
        return [{**item, "updated_at": item["updated_at"][:19]} for item in found]


class OldestFirst(SQLiteStore):
    def list_summaries(self, *args: Any, **kwargs: Any) -> list[dict[str, Any]]:
        return super().list_summaries(*args, **kwargs)[::-1]


class HidesTitles(SQLiteStore):
    """A subclass that changes ``list``: the manager must not bypass it through list_summaries."""

    def list(self, *args: Any, **kwargs: Any) -> list[Any]:
        return [record.__class__(**{**record.__dict__, "title": "hidden"}) for record in super().list(*args, **kwargs)]


def test_the_sqlite_store_offers_summaries() -> None:
    store = SQLiteStore(":memory:")
    try:
        assert offers(store, Capability.SUMMARY_LISTING)
    finally:
        store.close()


@pytest.mark.parametrize("broken", [NaiveTimestamps, OldestFirst])
def test_the_state_machine_catches_summaries_that_differ_from_the_records(tmp_path: Path, broken: type) -> None:
    with pytest.raises(AssertionError, match="contract summaries"):
        run_comparison(lambda name: broken(tmp_path / f"{name}.db"), settings=QUICK)


def test_the_manager_lists_through_a_subclass_that_overrides_list(tmp_path: Path) -> None:
    manager = SessionManager(store=HidesTitles(tmp_path / "chats.db"))
    try:
        conversation = Conversation(title="shown?", model_name="m")
        conversation.add_user_message("hi")
        manager.save_conversation(conversation)
        assert [item["title"] for item in manager.list_conversations()] == ["hidden"]
        assert [item["title"] for item in manager.search_by_time("2000-01-01")] == ["hidden"]
    finally:
        manager.close()


def test_manager_listings_equal_the_record_path(tmp_path: Path) -> None:
    """list_conversations through summaries equals summary() of the records, for seed-API data."""
    from qv_session_manager.convert import summary
    from qv_session_manager.protocol import ConversationFilter

    manager = SessionManager(str(tmp_path / "chats.db"))
    try:
        for index in range(5):
            conversation = Conversation(title=f"t{index}", model_name="m", metadata={"n": index, "f": 1.5})
            conversation.add_user_message(f"message {index}")
            manager.save_conversation(conversation)
        by_records = [summary(record) for record in manager.store.list(ConversationFilter())]
        assert manager.list_conversations() == by_records and len(by_records) == 5
    finally:
        manager.close()
