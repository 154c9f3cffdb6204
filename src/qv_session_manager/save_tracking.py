"""Remembering what a SessionManager last saved, so a save sends only what changed.

The seed API saves the whole conversation after every message
(``save_conversation(conv, conv.messages)``). Converting and encoding every message
of a long conversation on every save makes a save cost grow with the conversation;
instead the manager keeps, per conversation it saved recently, a compact snapshot of
each message it sent, and converts only the messages that differ from it.

The SDK's messages are mutable and may be changed in place (content replaced,
metadata or tool calls edited), so a message counts as unchanged only when it is
provably so: its immutable fields are the very objects saved (or equal strings), and
its mutable fields (metadata, images, tool calls) equal private copies made when it
was saved, with types checked wherever Python's ``==`` would hide a change in the
stored form (``1 == 1.0 == True``). Anything unusual (a message moved, an id seen
twice) falls back to the full save, so the result is always exactly what the full
save would store, and the same errors are raised.

A snapshot is only used together with the store's revision of the conversation
(:class:`~qv_session_manager.protocol.RevisionedSaving`): if anything else wrote to
the conversation since, the store refuses the partial save and the manager saves in
full. Memory is bounded: at most :data:`MAX_CONVERSATIONS` snapshots and
:data:`MAX_MESSAGES` message slots in all, the least recently saved dropped first.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Hashable, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

from qv_ollama_sdk.domain.models import Message

from . import codec
from .convert import tool_calls_to_records
from .records import MessageRecord

#: Snapshots kept at most (conversations).
MAX_CONVERSATIONS = 256
#: Message slots kept at most, over all snapshots (about 200 bytes each plus metadata copies).
MAX_MESSAGES = 200_000


def _plain(value: Any) -> bool:
    """True when ``value`` holds no number or bool, so ``==`` on it tells every stored difference."""
    if isinstance(value, dict):
        return all(_plain(item) for item in value.values())
    if isinstance(value, list):
        return all(_plain(item) for item in value)
    return value is None or isinstance(value, str)


def _copy_json(value: Any) -> Any:
    """A private copy of checked JSON data (dicts, lists and immutable leaves)."""
    if isinstance(value, dict):
        return {key: _copy_json(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_copy_json(item) for item in value]
    return value


def _same_types(value: Any, saved: Any) -> bool:
    """For values already ``==``: True when every leaf also has the saved leaf's type."""
    if isinstance(saved, dict):
        return all(_same_types(value[key], item) for key, item in saved.items())
    if isinstance(saved, list):
        return all(_same_types(a, b) for a, b in zip(value, saved))
    return type(value) is type(saved)


class _Slot(NamedTuple):
    """What one message was when it was saved (a tuple: built for every message a save sends)."""

    message_id: Any  # the SDK object's id, compared by identity
    stored_id: str
    role: Any
    content: str
    created_at: Any
    tool_call_id: str | None
    metadata: dict[str, Any] | None  # a private copy; None for empty metadata
    metadata_is_plain: bool
    images: tuple[Any, ...] | None
    tool_calls: str | None  # the stored JSON of the tool calls

    @classmethod
    def of(cls, message: Message, record: MessageRecord) -> _Slot:
        metadata = message.metadata
        return cls(
            message_id=message.id,
            stored_id=record.id,
            role=message.role,
            content=message.content,
            created_at=message.created_at,
            tool_call_id=message.tool_call_id,
            metadata=_copy_json(metadata) if metadata else None,
            metadata_is_plain=_plain(metadata),
            images=record.images,
            tool_calls=codec.dump_tool_calls(record.tool_calls),
        )

    def holds(self, message: Message) -> bool:
        """True when saving ``message`` now would store exactly what this slot's save stored."""
        if not (
            message.id is self.message_id
            and isinstance(message, Message)
            and message.role is self.role
            and message.created_at is self.created_at
            and (message.content is self.content or (type(message.content) is str and message.content == self.content))
            and (
                message.tool_call_id is self.tool_call_id
                or (type(message.tool_call_id) is str and message.tool_call_id == self.tool_call_id)
            )
        ):
            return False
        metadata = message.metadata
        if self.metadata is None:
            if not (type(metadata) is dict and not metadata):
                return False
        elif not (
            isinstance(metadata, dict)
            and metadata == self.metadata
            and (self.metadata_is_plain or _same_types(metadata, self.metadata))
        ):
            return False
        images = message.images
        if images is not None or self.images is not None:
            if not isinstance(images, list) or self.images is None or len(images) != len(self.images):
                return False
            for image, saved in zip(images, self.images):
                if not (
                    image is saved or (type(image) in (str, bytes) and type(image) is type(saved) and image == saved)
                ):
                    return False
        if message.tool_calls is None:
            return self.tool_calls is None
        if self.tool_calls is None or not isinstance(message.tool_calls, list):
            return False
        return codec.dump_tool_calls(tool_calls_to_records(message.tool_calls)) == self.tool_calls


@dataclass(frozen=True)
class SavedState:
    """A conversation as this manager last saved it: the store's revision and a slot per message."""

    revision: Hashable
    slots: tuple[_Slot, ...]
    places: dict[str, int]  # stored id -> index in slots

    @classmethod
    def of(cls, revision: Hashable, messages: Sequence[Message], records: Sequence[MessageRecord]) -> SavedState | None:
        """The state after a full save; None when a message is not an SDK Message (not tracked)."""
        if not all(isinstance(message, Message) for message in messages):
            return None
        slots = tuple(_Slot.of(message, record) for message, record in zip(messages, records, strict=True))
        return cls(revision, slots, {slot.stored_id: index for index, slot in enumerate(slots)})

    def changed(self, messages: Sequence[Message]) -> list[int] | None:
        """Indexes of the messages that must be sent: new ones, and ones that differ from the
        slot at their place in the list. None when only a full save is exact: the list is
        shorter than the snapshot, or a message cannot be compared."""
        slots = self.slots
        if len(messages) < len(slots):
            return None
        try:
            return [
                index
                for index, message in enumerate(messages)
                if index >= len(slots) or not slots[index].holds(message)
            ]
        except (ValueError, TypeError, AttributeError, LookupError, RecursionError):
            # an object whose comparison fails: the full save reports it properly
            return None

    def moved(self, sent: Sequence[int], records: Sequence[MessageRecord]) -> bool:
        """True when a message about to be sent has an id saved at another place (a move or a
        duplicate), or replaces the message saved at its place: only a full save is exact then."""
        slots = self.slots
        for index, record in zip(sent, records, strict=True):
            if self.places.get(record.id, index) != index:
                return True
            if index < len(slots) and slots[index].stored_id != record.id:
                return True
        return False

    def advanced(
        self, revision: Hashable, messages: Sequence[Message], sent: Sequence[int], records: Sequence[MessageRecord]
    ) -> SavedState | None:
        """The state after a partial save of ``records``, the messages at the places ``sent``;
        None when one of them is not an SDK Message (not tracked)."""
        slots = list(self.slots)
        places = dict(self.places)
        for index, record in zip(sent, records, strict=True):
            if not isinstance(messages[index], Message):
                return None
            slot = _Slot.of(messages[index], record)
            if index < len(slots):
                slots[index] = slot
            else:
                slots.append(slot)
            places[record.id] = index
        return SavedState(revision, tuple(slots), places)


class SavedStates:
    """A bounded, thread-safe map of conversation id -> :class:`SavedState`, least recently saved dropped first."""

    def __init__(self, max_conversations: int = MAX_CONVERSATIONS, max_messages: int = MAX_MESSAGES) -> None:
        self._states: OrderedDict[str, SavedState] = OrderedDict()
        self._messages = 0
        self._max_conversations = max_conversations
        self._max_messages = max_messages
        self._lock = threading.Lock()

    def get(self, conversation_id: str) -> SavedState | None:
        with self._lock:
            return self._states.get(conversation_id)

    def put(self, conversation_id: str, state: SavedState) -> None:
        with self._lock:
            old = self._states.pop(conversation_id, None)
            if old is not None:
                self._messages -= len(old.slots)
            if len(state.slots) > self._max_messages:
                return
            self._states[conversation_id] = state
            self._messages += len(state.slots)
            while len(self._states) > self._max_conversations or self._messages > self._max_messages:
                _, dropped = self._states.popitem(last=False)
                self._messages -= len(dropped.slots)

    def forget(self, conversation_id: str) -> None:
        with self._lock:
            old = self._states.pop(conversation_id, None)
            if old is not None:
                self._messages -= len(old.slots)

    def clear(self) -> None:
        with self._lock:
            self._states.clear()
            self._messages = 0

    @property
    def sizes(self) -> tuple[int, int]:
        """(conversations, message slots) held now."""
        with self._lock:
            return len(self._states), self._messages
