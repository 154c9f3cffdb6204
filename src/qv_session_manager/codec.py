"""JSON forms of record fields, for backends that store them as text.

Images may be str or bytes; bytes are stored as ``{"$bytes": "<base64>"}`` so that
the two kinds stay apart on the way back.
"""

from __future__ import annotations

import base64
import json
from typing import Any

from .errors import InvalidInputError
from .records import ConversationRecord, Image, MessageRecord, ToolCallRecord


def dumps(value: Any) -> str:
    """Compact JSON keeping non-ASCII text readable.

    Records are validated when built, but their dicts stay mutable: something the
    caller put in afterwards that JSON cannot hold raises InvalidInputError here.
    """
    if value == {} and type(value) is dict:  # most metadata
        return "{}"
    try:
        return json.dumps(value, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
    except (TypeError, ValueError) as exc:
        raise InvalidInputError(f"not storable as JSON: {exc}") from None


def loads(text: str | None) -> Any:
    """The value of :func:`dumps` text (None stays None); a new object at each call."""
    if text == "{}":  # most metadata; a new dict each time, as callers may change it
        return {}
    return None if text is None else json.loads(text)


def images_to_json(images: tuple[Image, ...]) -> list[Any]:
    """Images as JSON values: str as is, bytes as ``{"$bytes": "<base64>"}``."""
    return [
        {"$bytes": base64.b64encode(image).decode("ascii")} if isinstance(image, bytes) else image for image in images
    ]


def images_from_json(items: list[Any]) -> tuple[Image, ...]:
    """The inverse of :func:`images_to_json`: a tuple of str and bytes, as records hold images."""
    return tuple(base64.b64decode(item["$bytes"]) if isinstance(item, dict) else item for item in items)


def tool_calls_to_json(calls: tuple[ToolCallRecord, ...]) -> list[dict[str, Any]]:
    return [{"name": c.name, "arguments": c.arguments, "id": c.id} for c in calls]


def tool_calls_from_json(items: list[dict[str, Any]]) -> tuple[ToolCallRecord, ...]:
    """The inverse of :func:`tool_calls_to_json`: validated ToolCallRecords."""
    return tuple(ToolCallRecord(c["name"], c["arguments"], c["id"]) for c in items)


def dump_images(images: tuple[Image, ...] | None) -> str | None:
    return None if images is None else dumps(images_to_json(images))


def load_images(text: str | None) -> tuple[Image, ...] | None:
    return None if text is None else images_from_json(json.loads(text))


def dump_tool_calls(calls: tuple[ToolCallRecord, ...] | None) -> str | None:
    return None if calls is None else dumps(tool_calls_to_json(calls))


def load_tool_calls(text: str | None) -> tuple[ToolCallRecord, ...] | None:
    return None if text is None else tool_calls_from_json(json.loads(text))


def conversation_to_json(record: ConversationRecord) -> dict[str, Any]:
    """A conversation record's fields as a JSON object (the export format's and the jsonl backend's form)."""
    return {
        "id": record.id,
        "title": record.title,
        "model_name": record.model_name,
        "created_at": record.created_at.isoformat(),
        "updated_at": record.updated_at.isoformat(),
        "metadata": record.metadata,
    }


def message_to_json(message: MessageRecord) -> dict[str, Any]:
    """A message record as a JSON object (the export format's and the jsonl backend's form)."""
    return {
        "id": message.id,
        "role": message.role,
        "content": message.content,
        "created_at": message.created_at.isoformat(),
        "metadata": message.metadata,
        "images": None if message.images is None else images_to_json(message.images),
        "tool_calls": None if message.tool_calls is None else tool_calls_to_json(message.tool_calls),
        "tool_call_id": message.tool_call_id,
    }
