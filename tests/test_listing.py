"""Listing, paging, metadata filters and time search through SessionManager."""

from __future__ import annotations

from datetime import date, datetime, timedelta, timezone

import pytest
from qv_ollama_sdk.domain.models import Conversation

from qv_session_manager import ConversationNotFoundError, InvalidInputError, SessionManager


def save(manager: SessionManager, title: str, updated: datetime, created: datetime | None = None, **metadata) -> str:
    conv = Conversation(title=title, metadata=metadata)
    conv.add_user_message(f"about {title}")
    conv.created_at = created or updated
    conv.updated_at = updated
    manager.save_conversation(conv)
    return str(conv.id)


def titles(rows: list[dict]) -> list[str]:
    return [row["title"] for row in rows]


def test_list_is_newest_first_with_the_seed_keys(manager: SessionManager) -> None:
    save(manager, "old", datetime(2025, 1, 1))
    save(manager, "new", datetime(2025, 3, 1))
    save(manager, "mid", datetime(2025, 2, 1))
    rows = manager.list_conversations()
    assert titles(rows) == ["new", "mid", "old"]
    assert set(rows[0]) == {"id", "title", "model_name", "created_at", "updated_at", "metadata"}
    assert rows[0]["updated_at"] == "2025-03-01T00:00:00"


def test_keyset_pages_neither_overlap_nor_skip_while_others_write(manager: SessionManager) -> None:
    base = datetime(2025, 1, 1)
    for i in range(10):
        save(manager, f"c{i}", base + timedelta(hours=i % 4))  # ties on updated_at
    everything = [row["id"] for row in manager.list_conversations()]
    seen: list[str] = []
    after = None
    while True:
        page = manager.list_conversations(limit=3, after=after)
        if not page:
            break
        seen += [row["id"] for row in page]
        after = page[-1]["id"]
        save(manager, "newer", base + timedelta(days=1))  # lands before the cursor: not in later pages
    assert seen == everything


def test_offset_paging(manager: SessionManager) -> None:
    for i in range(5):
        save(manager, f"c{i}", datetime(2025, 1, 1, i))
    assert titles(manager.list_conversations(limit=2, offset=1)) == ["c3", "c2"]
    with pytest.raises(InvalidInputError):
        manager.list_conversations(limit=-1)
    with pytest.raises(ConversationNotFoundError):
        manager.list_conversations(after="missing")


def test_metadata_filter_matches_top_level_json_values_by_type(manager: SessionManager) -> None:
    save(manager, "web", datetime(2025, 1, 1), topic="web-development", level=1)
    save(manager, "flag", datetime(2025, 1, 2), topic="other", level=True)
    save(manager, "float", datetime(2025, 1, 3), level=1.0, empty=None)
    assert titles(manager.list_conversations(metadata={"topic": "web-development"})) == ["web"]
    assert titles(manager.list_conversations(metadata={"level": 1})) == ["float", "web"]
    assert titles(manager.list_conversations(metadata={"level": True})) == ["flag"]
    assert titles(manager.list_conversations(metadata={"empty": None})) == ["float"]
    assert titles(manager.list_conversations(metadata={"missing": None})) == []
    assert titles(manager.search_conversations("about", metadata={"topic": "other"})) == ["flag"]
    with pytest.raises(InvalidInputError):
        manager.list_conversations(metadata={"topic": ["a", "list"]})


def test_date_only_end_includes_the_whole_day(manager: SessionManager) -> None:
    save(manager, "before", datetime(2025, 1, 19, 23, 59, 59, 999999))
    save(manager, "morning", datetime(2025, 1, 20, 0, 0))
    save(manager, "night", datetime(2025, 1, 20, 23, 59, 59, 999999))
    save(manager, "after", datetime(2025, 1, 21))
    for start, end in [("2025-01-20", "2025-01-20"), (date(2025, 1, 20), date(2025, 1, 20)), ("20250120", "20250120")]:
        assert titles(manager.search_by_time(start=start, end=end)) == ["night", "morning"]
    assert titles(manager.search_by_time(start="2025-01-20")) == ["after", "night", "morning"]
    assert titles(manager.search_by_time(end="2025-01-19")) == ["before"]


def test_datetime_bounds_are_inclusive(manager: SessionManager) -> None:
    save(manager, "exact", datetime(2025, 1, 20, 10, 0))
    assert titles(manager.search_by_time(start="2025-01-20T10:00:00", end="2025-01-20T10:00:00")) == ["exact"]
    assert titles(manager.search_by_time(end=datetime(2025, 1, 20, 9, 59, 59, 999999))) == []


def test_naive_timestamps_compare_as_utc(manager: SessionManager) -> None:
    save(manager, "naive-10", datetime(2025, 1, 20, 10, 0))
    save(manager, "aware-10+02", datetime(2025, 1, 20, 10, 0, tzinfo=timezone(timedelta(hours=2))))  # 08:00Z
    window = manager.search_by_time(start="2025-01-20T09:00:00Z", end="2025-01-20T11:00:00+00:00")
    assert titles(window) == ["naive-10"]
    assert titles(manager.list_conversations()) == ["naive-10", "aware-10+02"]


def test_created_at_field(manager: SessionManager) -> None:
    save(manager, "made-early", datetime(2025, 3, 1), created=datetime(2025, 1, 1))
    save(manager, "made-late", datetime(2025, 2, 1), created=datetime(2025, 2, 1))
    assert titles(manager.search_by_time(end="2025-01-31", field="created_at")) == ["made-early"]
    assert titles(manager.search_by_time(field="created_at")) == ["made-late", "made-early"]


@pytest.mark.parametrize("bad", ["garbage", "2025-13-45", 20250120, "zzz"])
def test_unparsable_bounds_raise(manager: SessionManager, bad) -> None:
    with pytest.raises(InvalidInputError):
        manager.search_by_time(start=bad)


def test_add_messages_appends_without_loading(manager: SessionManager) -> None:
    conv = Conversation(title="chat")
    conv.add_user_message("hi")
    manager.save_conversation(conv)
    reply = conv.add_assistant_message("hello back")
    manager.add_messages(str(conv.id), [reply])
    loaded = manager.load_conversation(str(conv.id))
    assert [m.content for m in loaded.messages] == ["hi", "hello back"]
    assert loaded.updated_at == reply.created_at
    with pytest.raises(ConversationNotFoundError) as caught:
        manager.add_messages("no-such-id", [reply])
    assert isinstance(caught.value, LookupError)


def test_ids_in_any_uuid_spelling_find_the_conversation(manager: SessionManager) -> None:
    conv = Conversation(title="uuid")
    manager.save_conversation(conv)
    for spelling in (str(conv.id).upper(), conv.id.hex, "{" + str(conv.id) + "}", conv.id):
        assert manager.load_conversation(spelling) is not None
    assert manager.load_conversation("invalid-id") is None
    assert manager.load_conversation("") is None
    with pytest.raises(InvalidInputError):
        manager.load_conversation(12345)


def test_resume_conversation(manager: SessionManager) -> None:
    conv = Conversation(title="resume me")
    conv.add_user_message("question")
    last = conv.add_assistant_message("answer")
    manager.save_conversation(conv)
    resumed = manager.resume_conversation(str(conv.id))
    assert resumed["conversation"] == conv
    assert resumed["last_message"] == last.to_db_dict()
    empty = Conversation(title="empty")
    manager.save_conversation(empty)
    assert manager.resume_conversation(str(empty.id)) is None
    assert manager.resume_conversation("missing") is None


def test_snippets_and_relevance_through_the_manager(manager: SessionManager) -> None:
    conv = Conversation(title="notes")
    conv.add_user_message("Some words before. The Résumé needs a rewrite, then more words after it.")
    manager.save_conversation(conv)
    [hit] = manager.search_conversations("resume", snippets=True, order="relevance", mark=("<b>", "</b>"))
    assert "<b>Résumé</b>" in hit["snippet"]
    assert hit["message_id"] == str(conv.messages[0].id)
    assert hit["score"] > 0


def test_ids_stored_in_another_uuid_spelling_are_still_found(tmp_path) -> None:
    """Ids written by other tools as a hyphen-less UUID stay reachable under that spelling."""
    from qv_session_manager.backends.sqlite import SQLiteStore
    from qv_session_manager.testing.contract import conversation, message

    raw = "0123456789abcdef0123456789abcdef"
    store = SQLiteStore(tmp_path / "raw.db")
    store.save(conversation(raw), [message("kept", id="m1")])
    manager = SessionManager(store=store)
    loaded = manager.load_conversation(raw)
    assert loaded is not None and loaded.messages[0].content == "kept"
    assert manager.delete_conversation(raw) is True
    assert manager.load_conversation(raw) is None
    manager.close()


def test_misused_arguments_raise_value_errors(manager: SessionManager) -> None:
    conv = Conversation(title="args")
    manager.save_conversation(conv)
    with pytest.raises(InvalidInputError):
        manager.save_conversation(conv, 5)  # type: ignore[arg-type]
    with pytest.raises(InvalidInputError):
        manager.add_messages(str(conv.id), None)  # type: ignore[arg-type]
    with pytest.raises(InvalidInputError):
        manager.search_conversations("args", snippets=True, mark=None)  # type: ignore[arg-type]


def test_add_messages_keeps_concurrent_changes_and_never_resurrects(manager: SessionManager) -> None:
    conv = Conversation(title="first title")
    conv.add_user_message("hi")
    manager.save_conversation(conv)
    other_writer = manager.load_conversation(str(conv.id))
    other_writer.title = "renamed elsewhere"
    manager.save_conversation(other_writer, [])
    manager.add_messages(str(conv.id), [conv.add_assistant_message("hello")])
    loaded = manager.load_conversation(str(conv.id))
    assert loaded.title == "renamed elsewhere" and len(loaded.messages) == 2
    manager.delete_conversation(str(conv.id))
    with pytest.raises(ConversationNotFoundError):
        manager.add_messages(str(conv.id), [conv.add_user_message("too late")])
    assert manager.load_conversation(str(conv.id)) is None
