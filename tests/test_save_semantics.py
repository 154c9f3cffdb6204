"""Saving is an upsert that never loses data; order is a stored sequence."""

from __future__ import annotations

import dataclasses

import pytest

from factories import conversation, message, minutes
from qv_session_manager import InvalidInputError


def ids(store, conversation_id: str) -> list[str]:
    stored = store.load(conversation_id)
    assert stored is not None
    return [m.id for m in stored.messages]


def test_saving_only_the_new_message_appends_it(store) -> None:
    record = conversation()
    store.save(record, [message(id="a"), message(id="b")])
    store.save(record, [message(id="c")])
    assert ids(store, record.id) == ["a", "b", "c"]


def test_order_is_the_order_given_even_when_timestamps_tie_or_run_backwards(store) -> None:
    record = conversation()
    given = [message(id=f"m{i}", at=minutes(10 - i if i % 2 else 0)) for i in range(8)]
    store.save(record, given)
    assert ids(store, record.id) == [m.id for m in given]


def test_updated_message_keeps_its_place(store) -> None:
    record = conversation()
    store.save(record, [message("one", id="a"), message("two", id="b"), message("three", id="c")])
    store.save(record, [message("two, edited", id="b")])
    loaded = store.load(record.id)
    assert [m.id for m in loaded.messages] == ["a", "b", "c"]
    assert loaded.messages[1].content == "two, edited"


def test_existing_messages_given_in_another_order_keep_their_places(store) -> None:
    record = conversation()
    store.save(record, [message(id="a"), message(id="b")])
    store.save(record, [message(id="new"), message(id="b"), message(id="a")])
    assert ids(store, record.id) == ["a", "b", "new"]


def test_replace_makes_the_stored_list_exactly_the_given_list(store) -> None:
    record = conversation()
    store.save(record, [message("x", id=i) for i in "abcd"])
    store.save(record, [message("d2", id="d"), message("new", id="e"), message("x", id="a")], replace=True)
    loaded = store.load(record.id)
    assert [m.id for m in loaded.messages] == ["d", "e", "a"]
    assert loaded.messages[0].content == "d2"
    store.save(record, [message(id="f")])
    assert ids(store, record.id) == ["d", "e", "a", "f"], "appends go after a replaced list"


def test_replace_with_nothing_empties_the_conversation_but_keeps_it(store) -> None:
    record = conversation(title="kept")
    store.save(record, [message(id="a")])
    store.save(record, [], replace=True)
    loaded = store.load(record.id)
    assert loaded is not None and loaded.messages == () and loaded.conversation.title == "kept"


def test_conversation_fields_are_updated_by_a_save(store) -> None:
    record = conversation(title="old", metadata={"v": 1})
    store.save(record, [])
    changed = dataclasses.replace(record, title="new", metadata={"v": 2}, model_name="gemma3:1b")
    store.save(changed, [])
    assert store.get(record.id) == changed


def test_delete_message(store) -> None:
    record = conversation()
    store.save(record, [message(id="a"), message(id="b"), message(id="c")])
    assert store.delete_message(record.id, "b") is True
    assert ids(store, record.id) == ["a", "c"]
    assert store.delete_message(record.id, "b") is False
    assert store.delete_message("no-such-conversation", "a") is False
    assert ids(store, record.id) == ["a", "c"]


def test_same_message_id_in_two_conversations_stays_in_both(store) -> None:
    first, second = conversation(), conversation()
    store.save(first, [message("in first", id="shared")])
    store.save(second, [message("in second", id="shared")])
    assert store.load(first.id).messages[0].content == "in first"
    assert store.load(second.id).messages[0].content == "in second"


def test_duplicate_ids_in_one_save_are_refused_and_nothing_is_written(store) -> None:
    record = conversation()
    store.save(record, [message(id="a")])
    before = store.load(record.id)
    with pytest.raises(InvalidInputError):
        store.save(dataclasses.replace(record, title="changed"), [message(id="x"), message(id="x")])
    assert store.load(record.id) == before


def test_delete_conversation(store) -> None:
    record = conversation(title="gone soon")
    store.save(record, [message("findable words")])
    assert store.delete(record.id) is True
    assert store.load(record.id) is None and store.get(record.id) is None
    assert store.delete(record.id) is False
    from qv_session_manager.protocol import ConversationFilter
    from qv_session_manager.query import parse

    assert store.search(parse("findable"), ConversationFilter()) == []
    assert store.search(parse("gone"), ConversationFilter()) == []
    assert store.list(ConversationFilter()) == []


def test_missing_ids_read_as_none(store) -> None:
    assert store.load("missing") is None
    assert store.get("missing") is None
