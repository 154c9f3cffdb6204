"""The property behind saving only what changed: SDK messages mutated between saves.

qv-ollama-sdk's ``Message`` objects are mutable, and applications change them in
place between saves (content replaced, metadata edited, tool calls appended) or
rebuild, move, drop and repeat them in the list. Whatever shortcut a manager or a
store takes to skip unchanged messages, after every ``save_conversation`` the store
must hold exactly what saving every message in full would have stored, and refuse
exactly the saves a full save refuses. A second manager writing to the same store
in between (appends, message deletes, its own saves, deletes) must be taken into
account too.

:func:`check_mutated_saves` runs random sequences of such steps against a store
and, step by step, against a reference that always saves in full.
"""

from __future__ import annotations

import copy
import itertools
import json
import uuid
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from qv_ollama_sdk.domain.models import (
    Conversation,
    Function,
    Message,
    MessageRole,
    ToolCall,
)

from .. import codec
from ..backends.memory import MemoryStore
from ..convert import conversation_to_record, message_to_record
from ..errors import InvalidInputError
from ..manager import SessionManager
from ..protocol import ConversationStore
from ..records import StoredConversation
from . import strategies

#: Values equal under ``==`` whose stored forms differ, and a few ordinary ones.
_TRICKY_VALUES = st.sampled_from([1, True, 1.0, 0, False, 0.0, -0.0, "1", None, [1], [True], {"k": 1}, {"k": True}])
_VALUES = st.one_of(_TRICKY_VALUES, strategies.json_value)
_KEYS = st.sampled_from(["k", "n", "function_name", "é"])
_ZONES = [None, timezone.utc, timezone(timedelta(hours=2)), timezone(timedelta(hours=-5))]
_ROLES = [MessageRole.USER, MessageRole.ASSISTANT, MessageRole.SYSTEM, MessageRole.TOOL]
#: Changes to the conversation object; after each one the run saves, most of the time.
_CHANGES = [
    "add",
    "add",
    "add",
    "edit_content",
    "same_text_copy",
    "metadata_set",
    "metadata_retype",
    "metadata_retype",
    "metadata_replace",
    "tool_call",
    "tool_arguments",
    "images",
    "created_at_zone",
    "created_at_zone",
    "role",
    "copy_message",
    "remove",
    "move",
    "repeat",
    "repeat",
    "title",
]
#: Saves, and writes by another manager.
_WRITES = ["save", "save_replace", "save_tail", "other_append", "other_delete_message", "other_save", "other_delete"]
#: Pairs of values equal under == whose stored forms differ.
_TWINS: dict[Any, list[Any]] = {1: [True, 1.0], 0: [False, 0.0, -0.0], "list": [[1], [True], [1.0]]}


def _form(stored: StoredConversation | None) -> str | None:
    """The stored conversation as JSON text: exact, with types (1, 1.0 and true differ) and offsets."""
    if stored is None:
        return None
    return json.dumps(
        [codec.conversation_to_json(stored.conversation), [codec.message_to_json(m) for m in stored.messages]],
        sort_keys=True,
        default=repr,
    )


def _instant(minute: int, zone: timezone | None) -> datetime:
    moment = datetime(2025, 3, 1, 12, minute, tzinfo=timezone.utc)
    return moment.replace(tzinfo=None) if zone is None else moment.astimezone(zone)


class _Run:
    """One sequence of steps on a store (through two managers) and on the full-saving reference."""

    def __init__(self, store: ConversationStore) -> None:
        self.store = store
        self.mine = SessionManager(store=store)
        self.other = SessionManager(store=store)
        self.reference = MemoryStore()
        self.conversation = Conversation(title="mutations", model_name="llama3")
        self.serial = itertools.count()

    def full_save(self, messages: list[Message], replace: bool) -> Exception | None:
        """What a full save does to the reference: returns the error it raised, if any."""
        try:
            record = conversation_to_record(self.conversation)
            self.reference.save(record, [message_to_record(m) for m in messages], replace=replace)
        except InvalidInputError as exc:
            return exc
        return None

    def save(self, messages: list[Message], replace: bool = False) -> None:
        expected_error = self.full_save(messages, replace)
        try:
            self.mine.save_conversation(self.conversation, messages, replace=replace)
        except InvalidInputError as exc:
            assert expected_error is not None, f"mutated saves: the save was refused ({exc}), a full save is not"
        else:
            assert expected_error is None, (
                f"mutated saves: a full save refuses this ({expected_error}), the save did not"
            )
        self.compare("after a save")

    def compare(self, when: str) -> None:
        key = str(self.conversation.id)
        got, want = _form(self.store.load(key)), _form(self.reference.load(key))
        assert got == want, f"mutated saves: {when}, the store differs from a full save\n store: {got}\n  full: {want}"

    def new_message(self, data: st.DataObject) -> Message:
        role = data.draw(st.sampled_from(_ROLES))
        message = Message(
            role=role,
            content=data.draw(strategies.prose),
            created_at=_instant(data.draw(st.integers(0, 9)), data.draw(st.sampled_from(_ZONES))),
        )
        if data.draw(st.booleans()):
            message.metadata = data.draw(st.dictionaries(_KEYS, _VALUES, max_size=2))
        if role is MessageRole.ASSISTANT and data.draw(st.booleans()):
            message.tool_calls = [
                ToolCall(
                    function=Function(name="lookup", arguments={"q": data.draw(_VALUES)}), id=f"call{next(self.serial)}"
                )
            ]
        if role is MessageRole.TOOL:
            message.tool_call_id = f"call{next(self.serial)}"
        return message

    def step(self, data: st.DataObject, name: str) -> None:
        messages = self.conversation.messages

        def pick() -> int:  # called only when there are messages
            return data.draw(st.integers(0, len(messages) - 1))

        if name == "add" or (not messages and name not in ("save", "title")):
            messages.append(self.new_message(data))
        elif name == "save":
            self.save(messages)
        elif name == "save_replace":
            self.save(messages, replace=True)
        elif name == "save_tail":
            self.save(messages[data.draw(st.integers(0, len(messages))) :])
        elif name == "edit_content":
            messages[pick()].content = data.draw(strategies.prose)
        elif name == "same_text_copy":
            message = messages[pick()]
            message.content = "".join(list(message.content))  # an equal string, another object
        elif name == "metadata_set":
            messages[pick()].metadata[data.draw(_KEYS)] = data.draw(_VALUES)
        elif name == "metadata_retype":
            metadata = messages[pick()].metadata
            key = data.draw(_KEYS)
            value = metadata.get(key)
            if isinstance(value, list):
                metadata[key] = data.draw(st.sampled_from(_TWINS["list"]))
            elif isinstance(value, (int, float)) and value in (0, 1):
                metadata[key] = data.draw(
                    st.sampled_from(
                        [v for v in (*_TWINS[int(value)], int(value)) if type(v) is not type(value) or v != value]
                    )
                )
            else:
                metadata[key] = data.draw(st.sampled_from([1, 0, [1]]))
        elif name == "metadata_replace":
            message = messages[pick()]
            message.metadata = copy.deepcopy(message.metadata) if data.draw(st.booleans()) else {}
        elif name == "tool_call":
            message = messages[pick()]
            call = ToolCall(function=Function(name="more", arguments={}), id=f"call{next(self.serial)}")
            if message.tool_calls is None:
                message.tool_calls = [call]
            else:
                message.tool_calls.append(call)
        elif name == "tool_arguments":
            calls = messages[pick()].tool_calls
            if calls:
                calls[0].function.arguments[data.draw(_KEYS)] = data.draw(_VALUES)
        elif name == "images":
            message = messages[pick()]
            image: Any = data.draw(st.sampled_from([b"\x89PNG", "aGVsbG8=", b"\x89PNG", bytearray(b"\x89PNG")]))
            if message.images is None or data.draw(st.booleans()):
                message.images = [image]
            else:
                message.images.append(image)
        elif name == "created_at_zone":
            message = messages[pick()]
            moment = message.created_at
            zone = data.draw(st.sampled_from(_ZONES[1:]))
            # The same instant in another zone: equal under ==, stored differently.
            message.created_at = (moment.replace(tzinfo=timezone.utc) if moment.tzinfo is None else moment).astimezone(
                zone
            )
        elif name == "role":
            messages[pick()].role = data.draw(st.sampled_from(_ROLES))
        elif name == "copy_message":
            index = pick()
            messages[index] = copy.deepcopy(messages[index])
        elif name == "remove":
            del messages[pick()]
        elif name == "move":
            messages.insert(data.draw(st.integers(0, len(messages))), messages.pop(pick()))
        elif name == "repeat":
            messages.append(messages[pick()])
        elif name == "title":
            self.conversation.title = data.draw(st.sampled_from(["mutations", "renamed", None]))
            self.conversation.metadata[data.draw(_KEYS)] = data.draw(_VALUES)
        elif messages:
            self.other_step(data, name, messages, pick)

    def other_step(self, data: st.DataObject, name: str, messages: list[Message], pick: Callable[[], int]) -> None:
        """Another manager writes to the same conversation; the reference gets the same write."""
        key = str(self.conversation.id)
        if self.reference.load(key) is None:
            return
        if name == "other_append":
            extra = self.new_message(data)
            records = [message_to_record(extra)]
            self.other.add_messages(key, [extra], updated_at=extra.created_at)
            self.reference.append(key, records, updated_at=records[0].created_at)
        elif name == "other_delete_message":
            stored = self.reference.load(key)
            assert stored is not None
            if stored.messages:
                victim = data.draw(st.sampled_from([m.id for m in stored.messages]))
                assert self.other.delete_message(key, victim) is self.reference.delete_message(key, victim)
        elif name == "other_save":
            twin = copy.deepcopy(self.conversation)
            if twin.messages:
                twin.messages[pick()].content = "written by another manager"
            try:
                self.other.save_conversation(twin, twin.messages)
            except InvalidInputError:
                return
            self.reference.save(conversation_to_record(twin), [message_to_record(m) for m in twin.messages])
        elif name == "other_delete":
            assert self.other.delete_conversation(key) is self.reference.delete(key)
        self.compare(f"after {name}")


def check_mutated_saves(
    store_opener: Callable[[str], ConversationStore], *, max_examples: int = 40, derandomize: bool = False
) -> None:
    """Run the property on fresh stores from ``store_opener`` (each closed afterwards)."""
    counter = itertools.count()

    steps = st.one_of(st.sampled_from(_CHANGES), st.sampled_from(_CHANGES), st.sampled_from(_WRITES))

    @given(data=st.data(), steps=st.lists(steps, min_size=4, max_size=30))
    @settings(
        max_examples=max_examples,
        deadline=None,
        derandomize=derandomize,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
    )
    def check(data: st.DataObject, steps: list[str]) -> None:
        store = store_opener(f"mutated{next(counter)}-{uuid.uuid4().hex[:8]}")
        try:
            run = _Run(store)
            run.save(run.conversation.messages)
            for name in steps:
                run.step(data, name)
                if name in _CHANGES and data.draw(st.integers(0, 3)) > 0:
                    run.save(run.conversation.messages)
            run.save(run.conversation.messages)
        finally:
            store.close()

    check()
