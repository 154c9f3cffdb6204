"""JSON forms of record fields, for backends that store them as text.

Images may be str or bytes; bytes are stored as ``{"$bytes": "<base64>"}`` so that
the two kinds stay apart on the way back.
"""

from __future__ import annotations

import base64
import json
from typing import Any

from .records import Image, ToolCallRecord


def dumps(value: Any) -> str:
    """Compact JSON keeping non-ASCII text readable (records are already validated)."""
    return json.dumps(value, ensure_ascii=False, allow_nan=False, separators=(",", ":"))


def loads(text: str | None) -> Any:
    return None if text is None else json.loads(text)


def dump_images(images: tuple[Image, ...] | None) -> str | None:
    if images is None:
        return None
    return dumps([
        {"$bytes": base64.b64encode(image).decode("ascii")} if isinstance(image, bytes) else image
        for image in images
    ])


def load_images(text: str | None) -> tuple[Image, ...] | None:
    if text is None:
        return None
    return tuple(
        base64.b64decode(item["$bytes"]) if isinstance(item, dict) else item for item in json.loads(text)
    )


def dump_tool_calls(calls: tuple[ToolCallRecord, ...] | None) -> str | None:
    if calls is None:
        return None
    return dumps([{"name": c.name, "arguments": c.arguments, "id": c.id} for c in calls])


def load_tool_calls(text: str | None) -> tuple[ToolCallRecord, ...] | None:
    if text is None:
        return None
    return tuple(ToolCallRecord(c["name"], c["arguments"], c["id"]) for c in json.loads(text))
