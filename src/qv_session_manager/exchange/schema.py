"""The objects of the qv-session-manager exchange format, version 1, and records.

One conversation is one JSON object (see docs/export-format.md). Encoding is total
for valid records; decoding is strict: missing required keys, unknown keys, wrong
types, duplicate message ids and anything a record refuses raise
:class:`ImportFormatError` naming the line.
"""

from __future__ import annotations

import base64
import binascii
import json
from datetime import datetime
from typing import Any

from ..codec import conversation_to_json, images_from_json, message_to_json, tool_calls_from_json
from ..errors import ImportFormatError, InvalidInputError
from ..records import (
    ConversationRecord,
    Image,
    MessageRecord,
    StoredConversation,
    ToolCallRecord,
    check_unique_message_ids,
)
from .numbers import too_long_integer

FORMAT_NAME = "qv-session-manager"
FORMAT_VERSION = 1

#: Required keys first, then optional ones with the value a missing key means.
_CONVERSATION_REQUIRED = ("id", "created_at", "updated_at", "messages")
_CONVERSATION_OPTIONAL: dict[str, Any] = {"title": None, "model_name": None, "metadata": {}}
_MESSAGE_REQUIRED = ("id", "role", "content", "created_at")
_MESSAGE_OPTIONAL: dict[str, Any] = {"metadata": {}, "images": None, "tool_calls": None, "tool_call_id": None}
_TOOL_CALL_KEYS = frozenset({"name", "arguments", "id"})


class _Refused(ValueError):
    """A value of a line does not fit the format (turned into ImportFormatError by the caller)."""


# -- encoding ---------------------------------------------------------------


def header() -> dict[str, Any]:
    """The header object of version 1."""
    return {"format": FORMAT_NAME, "version": FORMAT_VERSION}


def encode_conversation(stored: StoredConversation) -> dict[str, Any]:
    """A conversation with its messages (in stored order) as a JSON object."""
    return {
        **conversation_to_json(stored.conversation),
        "messages": [message_to_json(message) for message in stored.messages],
    }


#: Characters that str.splitlines() and some JSON tools treat as line breaks but JSON leaves raw.
_LINE_BREAKS = ("\x85", "\u2028", "\u2029")


def dumps_line(value: Any) -> str:
    """Compact JSON on one line, non-ASCII kept readable.

    Every character any common tool reads as a line break is escaped (JSON escapes
    CR, LF and other controls; NEL, U+2028 and U+2029 are escaped here), so splitting
    the file at any kind of line break still gives one conversation per line.
    """
    text = json.dumps(value, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
    for character in _LINE_BREAKS:
        if character in text:  # only inside strings: JSON has no such whitespace
            text = text.replace(character, f"\\u{ord(character):04x}")
    return text


# -- decoding ---------------------------------------------------------------


def strict_object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """``object_pairs_hook`` refusing duplicate keys, which plain JSON parsing would drop silently."""
    result = dict(pairs)
    if len(result) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise _Refused(f"key {key!r} appears twice in one object")
            seen.add(key)
    return result


def _refuse_constant(name: str) -> Any:
    raise _Refused(f"{name} is not JSON data")


def _integer(digits: str) -> int:
    try:
        return int(digits)
    except ValueError:  # more digits than sys.get_int_max_str_digits() allows
        raise _Refused(too_long_integer(digits)) from None


#: Strict JSON: duplicate keys, NaN/Infinity and integers too long to convert are refused.
DECODER = json.JSONDecoder(object_pairs_hook=strict_object, parse_constant=_refuse_constant, parse_int=_integer)


def parse_line(text: str, line: int) -> Any:
    """One complete JSON value from ``text``; ImportFormatError when it is not one."""
    try:
        value, end = DECODER.raw_decode(text, _skip_space(text, 0))
    except json.JSONDecodeError as exc:
        raise ImportFormatError(line, f"invalid JSON ({exc.msg} at column {exc.colno})") from None
    except (_Refused, RecursionError) as exc:
        raise ImportFormatError(line, f"invalid JSON ({_reason(exc)})") from None
    if _skip_space(text, end) != len(text):
        raise ImportFormatError(line, f"extra data after the JSON value at column {end + 1}")
    return value


def _reason(exc: BaseException) -> str:
    return "nested too deeply" if isinstance(exc, RecursionError) else str(exc)


def _skip_space(text: str, index: int) -> int:
    while index < len(text) and text[index] in " \t\r\n":
        index += 1
    return index


def check_header(value: Any, line: int = 1) -> None:
    """Raise ImportFormatError unless ``value`` is a header this version can read.

    A header of a later version is refused (its meaning is unknown here).
    """
    if not isinstance(value, dict) or value.get("format") != FORMAT_NAME:
        raise ImportFormatError(
            line, f'not a {FORMAT_NAME} export: the first line must be {{"format": "{FORMAT_NAME}", "version": 1}}'
        )
    version = value.get("version")
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise ImportFormatError(line, f"the header's version must be a positive int, not {version!r}")
    if version > FORMAT_VERSION:
        raise ImportFormatError(
            line, f"the file is format version {version}; this library reads up to version {FORMAT_VERSION}"
        )
    extra = set(value) - {"format", "version"}
    if extra:
        raise ImportFormatError(line, f"unknown header keys {sorted(extra)}")


def decode_conversation(value: Any, line: int) -> StoredConversation:
    """The records of one conversation object; ImportFormatError naming ``line`` when it is not one.

    A returned conversation is storable by every backend: its records are validated
    and its message ids are distinct.
    """
    try:
        fields = _fields(value, "conversation", _CONVERSATION_REQUIRED, _CONVERSATION_OPTIONAL)
        raw_messages = fields["messages"]
        if not isinstance(raw_messages, list):
            raise _Refused(f"messages must be a list, not {_kind(raw_messages)}")
        messages = tuple(_decode_message(item, index) for index, item in enumerate(raw_messages))
        check_unique_message_ids(messages)
        record = ConversationRecord(
            id=fields["id"],
            title=fields["title"],
            model_name=fields["model_name"],
            created_at=_timestamp(fields["created_at"], "created_at"),
            updated_at=_timestamp(fields["updated_at"], "updated_at"),
            metadata=fields["metadata"],
        )
    except (_Refused, InvalidInputError) as exc:
        raise ImportFormatError(line, str(exc)) from None
    return StoredConversation(record, messages)


def _decode_message(value: Any, index: int) -> MessageRecord:
    what = f"message {index}"
    fields = _fields(value, what, _MESSAGE_REQUIRED, _MESSAGE_OPTIONAL)
    return MessageRecord(
        id=fields["id"],
        role=fields["role"],
        content=fields["content"],
        created_at=_timestamp(fields["created_at"], f"created_at of {what}"),
        metadata=fields["metadata"],
        images=_images(fields["images"], what),
        tool_calls=_tool_calls(fields["tool_calls"], what),
        tool_call_id=fields["tool_call_id"],
    )


def _fields(value: Any, what: str, required: tuple[str, ...], optional: dict[str, Any]) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise _Refused(f"{what} must be a JSON object, not {_kind(value)}")
    missing = [key for key in required if key not in value]
    if missing:
        raise _Refused(f"{what} lacks {', '.join(missing)}")
    unknown = set(value) - set(required) - set(optional)
    if unknown:
        raise _Refused(f"{what} has unknown keys {sorted(unknown)}")
    fields = dict(optional)
    fields.update(value)
    return fields


def _timestamp(value: Any, what: str) -> datetime:
    if not isinstance(value, str):
        raise _Refused(f"{what} must be an ISO 8601 string, not {_kind(value)}")
    try:
        return datetime.fromisoformat(value)
    except ValueError:
        raise _Refused(f"{what} {value!r} is not an ISO 8601 timestamp") from None


def _images(value: Any, what: str) -> tuple[Image, ...] | None:
    if value is None:
        return None
    if not isinstance(value, list):
        raise _Refused(f"images of {what} must be a list or null, not {_kind(value)}")
    for item in value:
        if isinstance(item, dict):
            if set(item) != {"$bytes"} or not isinstance(item["$bytes"], str):
                raise _Refused(f'an image of {what} must be a str or {{"$bytes": "<base64>"}}')
            try:
                base64.b64decode(item["$bytes"], validate=True)
            except (binascii.Error, ValueError):
                raise _Refused(f"an image of {what} is not valid base64") from None
        elif not isinstance(item, str):
            raise _Refused(f'an image of {what} must be a str or {{"$bytes": ...}}, not {_kind(item)}')
    return images_from_json(value)


def _tool_calls(value: Any, what: str) -> tuple[ToolCallRecord, ...] | None:
    if value is None:
        return None
    if not isinstance(value, list):
        raise _Refused(f"tool_calls of {what} must be a list or null, not {_kind(value)}")
    for item in value:
        if not isinstance(item, dict) or set(item) != _TOOL_CALL_KEYS:
            raise _Refused(f"a tool call of {what} must be an object with exactly the keys arguments, id, name")
    return tool_calls_from_json(value)


def _kind(value: Any) -> str:
    """The JSON name of a value's type, for messages."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    return "an object"
