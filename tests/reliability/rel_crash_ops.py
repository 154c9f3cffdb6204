"""The operations of the crash tests: made up by the writer, replayed by the checker.

An operation is a JSON object (so the writer can log it before running it) naming a
store call and its records in the export format's form. :func:`apply` runs it on any
store: the writer runs it on the real one, the checker on the in-memory reference.
"""

from __future__ import annotations

import random
from datetime import datetime, timedelta, timezone
from typing import Any

from qv_session_manager import ConversationRecord, MessageRecord, StoredConversation, ToolCallRecord
from qv_session_manager.exchange.schema import decode_conversation, encode_conversation
from qv_session_manager.protocol import ConversationStore

Op = dict[str, Any]

#: The writer works on these conversations only, so deletes keep the store small.
CONVERSATION_IDS = [f"conversation-{k}" for k in range(6)]
#: Words of every text; the checker searches for them.
WORDS = (
    "alpha beta gamma delta epsilon zeta theta kappa lambda sigma omega python rust sqlite "
    "index crash kill commit rollback journal durable atomic résumé Straße naïve 東京 天気 "
    "función ünïcödé ☃ snow river mountain cloud quiet loud red green blue"
).split()
_BASE = datetime(2025, 6, 1, 8, 0)


def _text(rng: random.Random) -> str:
    size = rng.choice((1, 3, 8, 20, 60)) if rng.random() < 0.9 else rng.randint(400, 900)
    return " ".join(rng.choices(WORDS, k=size))


def _when(serial: int, rng: random.Random) -> datetime:
    at = _BASE + timedelta(milliseconds=serial)
    return at.replace(tzinfo=timezone(timedelta(hours=rng.choice((0, 2, -5))))) if rng.random() < 0.3 else at


def _new_messages(rng: random.Random, serial: int, count: int) -> list[MessageRecord]:
    messages = []
    for index in range(count):
        message_id = f"m{serial}-{index}"
        at = _when(serial, rng)
        if rng.random() < 0.1:
            call = ToolCallRecord("lookup", {"q": rng.choice(WORDS), "n": index}, id=f"call-{message_id}")
            messages.append(MessageRecord(message_id, "assistant", _text(rng), at, tool_calls=(call,)))
        else:
            role = rng.choice(("user", "assistant", "system", "tool"))
            tool_call_id = f"call-{serial}" if role == "tool" else None
            messages.append(
                MessageRecord(message_id, role, _text(rng), at, metadata={"serial": serial}, tool_call_id=tool_call_id)
            )
    return messages


def _edited(rng: random.Random, message: MessageRecord, serial: int) -> MessageRecord:
    return MessageRecord(
        message.id,
        message.role,
        _text(rng),
        message.created_at,
        metadata={"edited": serial},
        images=message.images,
        tool_calls=message.tool_calls,
        tool_call_id=message.tool_call_id,
    )


def _record(
    rng: random.Random, conversation_id: str, serial: int, current: StoredConversation | None
) -> ConversationRecord:
    created = current.conversation.created_at if current is not None else _when(serial, rng)
    title = current.conversation.title if current is not None and rng.random() < 0.6 else _text(rng)[:80]
    return ConversationRecord(
        conversation_id,
        created,
        _when(serial, rng),
        title=title,
        model_name=rng.choice((None, "llama3")),
        metadata={"serial": serial, "tag": rng.choice(WORDS)},
    )


def _encoded(record: ConversationRecord, messages: list[MessageRecord]) -> dict[str, Any]:
    return encode_conversation(StoredConversation(record, tuple(messages)))


def _save_like(rng: random.Random, store: ConversationStore, conversation_id: str, serial: int) -> dict[str, Any]:
    """A save's conversation: a few edits of stored messages plus new ones (sometimes many)."""
    current = store.load(conversation_id)
    stored = list(current.messages) if current is not None else []
    edits = [_edited(rng, m, serial) for m in rng.sample(stored, min(len(stored), rng.choice((0, 0, 1, 3))))]
    count = rng.choice((1, 1, 2, 3)) if rng.random() < 0.8 else rng.randint(20, 60)
    messages = edits + _new_messages(rng, serial, count)
    rng.shuffle(messages)
    return _encoded(_record(rng, conversation_id, serial, current), messages)


def make_op(rng: random.Random, store: ConversationStore, serial: int) -> Op:
    """A random operation on ``store``'s current state; ``serial`` makes its ids unique."""
    kind = rng.choices(
        ("save", "replace", "append", "delete", "delete_message", "save_many"), weights=(5, 1, 4, 1, 1, 1)
    )[0]
    conversation_id = rng.choice(CONVERSATION_IDS)
    if kind == "replace":
        current = store.load(conversation_id)
        if current is None:
            kind = "save"
        else:
            kept = rng.sample(list(current.messages), rng.randint(0, len(current.messages)))
            messages = [_edited(rng, m, serial) if rng.random() < 0.3 else m for m in kept]
            messages += _new_messages(rng, serial, rng.randint(0, 5))
            record = _record(rng, conversation_id, serial, current)
            return {"kind": "save", "replace": True, "conversation": _encoded(record, messages)}
    if kind == "save":
        return {"kind": "save", "replace": False, "conversation": _save_like(rng, store, conversation_id, serial)}
    if kind == "append":
        record = ConversationRecord(conversation_id, _BASE, _when(serial, rng))
        messages = _new_messages(rng, serial, rng.randint(1, 10))
        return {"kind": "append", "conversation": _encoded(record, messages), "set_updated_at": rng.random() < 0.7}
    if kind == "delete":
        return {"kind": "delete", "id": conversation_id}
    if kind == "delete_message":
        current = store.load(conversation_id)
        message_id = rng.choice(current.messages).id if current is not None and current.messages else "missing"
        return {"kind": "delete_message", "id": conversation_id, "message_id": message_id}
    chosen = rng.sample(CONVERSATION_IDS, rng.randint(2, 3))
    return {"kind": "save_many", "items": [_save_like(rng, store, c, serial) for c in chosen]}


def touched(op: Op) -> list[str]:
    """The ids of the conversations ``op`` may change."""
    if op["kind"] == "save_many":
        return [item["id"] for item in op["items"]]
    if op["kind"] in ("save", "append"):
        return [op["conversation"]["id"]]
    return [op["id"]]


def apply(store: ConversationStore, op: Op) -> Any:
    """Run ``op`` on ``store``; returns the call's answer (None, a bool or a count)."""
    kind = op["kind"]
    if kind == "save":
        stored = decode_conversation(op["conversation"], 0)
        store.save(stored.conversation, stored.messages, replace=op["replace"])
        return None
    if kind == "append":
        stored = decode_conversation(op["conversation"], 0)
        updated_at = stored.conversation.updated_at if op["set_updated_at"] else None
        return store.append(stored.conversation.id, stored.messages, updated_at=updated_at)
    if kind == "delete":
        return store.delete(op["id"])
    if kind == "delete_message":
        return store.delete_message(op["id"], op["message_id"])
    if kind == "save_many":
        items = [decode_conversation(item, 0) for item in op["items"]]
        return store.save_many([(s.conversation, s.messages) for s in items])  # type: ignore[attr-defined]
    raise ValueError(f"unknown operation {kind!r}")
