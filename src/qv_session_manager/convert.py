"""The one place that turns qv-ollama-sdk objects into records and back."""

from __future__ import annotations

import re
import uuid
from typing import Any, TypeVar

from qv_ollama_sdk.domain.models import Conversation, Function, Message, MessageRole, ToolCall

from .errors import InvalidInputError
from .records import ConversationRecord, MessageRecord, StoredConversation, ToolCallRecord


def canonical_id(value: object, what: str = "conversation id") -> str:
    """The stored form of an id: UUIDs in canonical lower-case form, other strings as given.

    ``uuid.UUID`` objects and every spelling of a UUID (upper case, braces, no
    hyphens, ``urn:uuid:``) map to one id. Raises InvalidInputError for non-str,
    non-UUID values and empty strings.
    """
    if isinstance(value, uuid.UUID):
        return str(value)
    if not isinstance(value, str):
        raise InvalidInputError(f"{what} must be a str or UUID, not {type(value).__name__}")
    if not value:
        raise InvalidInputError(f"{what} must not be empty")
    if len(value) in (32, 36, 38, 45):
        try:
            return str(uuid.UUID(value))
        except ValueError:
            pass
    return value


_Sdk = TypeVar("_Sdk", Message, Conversation)


def _from_db_dict(value: object, kind: type[_Sdk]) -> _Sdk:
    """The SDK object ``kind`` rebuilt from ``value.to_db_dict()``.

    0.3.0 documented its arguments as objects "with a ``to_db_dict()`` method" and stored
    exactly that dict, so such objects are still taken: ``kind.from_db_dict`` reads the
    dict back (its ``id`` must then be a UUID and its timestamps ISO text). Raises
    InvalidInputError when ``value`` has no ``to_db_dict`` or its dict does not describe
    a ``kind``; exceptions raised by ``to_db_dict`` itself propagate unchanged.
    """
    to_db_dict = getattr(value, "to_db_dict", None)
    if not callable(to_db_dict):
        raise InvalidInputError(f"expected a qv_ollama_sdk {kind.__name__}, got {type(value).__name__}")
    described = to_db_dict()
    try:
        return kind.from_db_dict(described)
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise InvalidInputError(
            f"{type(value).__name__}.to_db_dict() does not describe a {kind.__name__}: {exc!r}"
        ) from exc


def _role(value: Any) -> str:
    return value.value if isinstance(value, MessageRole) else value


def tool_calls_to_records(calls: list[ToolCall]) -> tuple[ToolCallRecord, ...]:
    """Convert an SDK message's tool calls; raises InvalidInputError for anything not storable."""
    return tuple(
        ToolCallRecord(name=call.function.name, arguments=call.function.arguments, id=call.id) for call in calls
    )


def message_to_record(message: Message) -> MessageRecord:
    """Convert an SDK Message (or an object with 0.3.0's ``to_db_dict()``, see
    :func:`_from_db_dict`); raises InvalidInputError for anything not storable."""
    if not isinstance(message, Message):
        message = _from_db_dict(message, Message)
    tool_calls = None if message.tool_calls is None else tool_calls_to_records(message.tool_calls)
    images = None
    if message.images is not None:
        images = tuple(bytes(image) if isinstance(image, bytearray) else image for image in message.images)
    return MessageRecord(
        id=canonical_id(message.id, "message id"),
        role=_role(message.role),
        content=message.content,
        created_at=message.created_at,
        metadata=message.metadata,
        images=images,
        tool_calls=tool_calls,
        tool_call_id=message.tool_call_id,
    )


def conversation_to_record(conversation: Conversation) -> ConversationRecord:
    """Convert an SDK Conversation's own fields (not its messages); an object with 0.3.0's
    ``to_db_dict()`` is taken too (see :func:`_from_db_dict`)."""
    if not isinstance(conversation, Conversation):
        conversation = _from_db_dict(conversation, Conversation)
    return ConversationRecord(
        id=canonical_id(conversation.id),
        title=conversation.title,
        model_name=conversation.model_name,
        created_at=conversation.created_at,
        updated_at=conversation.updated_at,
        metadata=conversation.metadata,
    )


_CANONICAL_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
_ROLES = {role.value: role for role in MessageRole}


def _sdk_id(value: str) -> Any:
    """The SDK's id for a stored id: a UUID where it is one; ids that are not (old or foreign data) stay strings."""
    if _CANONICAL_UUID.fullmatch(value):
        # What uuid.UUID(value) builds, without its parsing of every other spelling
        # (ids are stored canonical): loads build one per message.
        parsed = object.__new__(uuid.UUID)
        object.__setattr__(parsed, "int", int(value.replace("-", ""), 16))
        object.__setattr__(parsed, "is_safe", uuid.SafeUUID.unknown)
        return parsed
    try:
        return uuid.UUID(value)
    except ValueError:
        return value


def record_to_message(record: MessageRecord) -> Message:
    tool_calls = None
    if record.tool_calls is not None:
        tool_calls = [
            ToolCall(function=Function(name=call.name, arguments=call.arguments), id=call.id)
            for call in record.tool_calls
        ]
    return Message(
        id=_sdk_id(record.id),
        role=_ROLES.get(record.role) or MessageRole(record.role),
        content=record.content,
        images=list(record.images) if record.images is not None else None,
        created_at=record.created_at,
        metadata=record.metadata,
        tool_calls=tool_calls,
        tool_call_id=record.tool_call_id,
    )


def record_to_conversation(stored: StoredConversation) -> Conversation:
    record = stored.conversation
    return Conversation(
        id=_sdk_id(record.id),
        model_name=record.model_name,  # type: ignore[arg-type]  # None too: the SDK annotates str
        title=record.title,
        messages=[record_to_message(message) for message in stored.messages],
        created_at=record.created_at,
        updated_at=record.updated_at,
        metadata=record.metadata,
    )


def summary(record: ConversationRecord) -> dict[str, Any]:
    """The seed's conversation dict: id, title, model_name, created_at, updated_at, metadata."""
    return {
        "id": record.id,
        "title": record.title,
        "model_name": record.model_name,
        "created_at": record.created_at.isoformat(),
        "updated_at": record.updated_at.isoformat(),
        "metadata": record.metadata,
    }
