"""Retention: a conversation that expires, deleting old conversations, keeping the newest."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from qv_ollama_sdk.domain.models import Conversation

from qv_session_manager import EXPIRES_AT, SessionManager

now = datetime.now(timezone.utc)


def chat(title: str, days_ago: int) -> Conversation:
    conversation = Conversation(title=title, model_name="llama3")
    conversation.add_user_message(f"A question about {title.lower()}")
    conversation.updated_at = now - timedelta(days=days_ago)
    return conversation


with SessionManager(url="memory://") as mgr:
    for title, days_ago in [("Today", 0), ("Yesterday", 1), ("Last week", 7), ("Last month", 31), ("Last year", 365)]:
        mgr.save_conversation(chat(title, days_ago))

    secret = chat("Scratch pad", 0)
    secret.metadata[EXPIRES_AT] = (now + timedelta(hours=1)).isoformat()  # or mgr.set_expiry(id, when)
    mgr.save_conversation(secret)
    loaded = mgr.load_conversation(str(secret.id))
    assert loaded is not None
    loaded.add_user_message("One more thing")
    mgr.save_conversation(loaded)  # the expiry rides along in the metadata
    again = mgr.load_conversation(str(secret.id))
    assert again is not None
    print("expiry kept after a round trip:", again.metadata == {EXPIRES_AT: secret.metadata[EXPIRES_AT]})

    mgr.set_expiry(str(secret.id), now - timedelta(seconds=1))  # already past: gone for every read
    print("expired one loads as:", mgr.load_conversation(str(secret.id)))
    print("expired conversations removed:", mgr.purge_expired())

    print("deleted older than 30 days:", mgr.delete_older_than(now - timedelta(days=30)))
    print("deleted beyond the newest 2:", mgr.keep_newest(2))
    print("left:", [row["title"] for row in mgr.list_conversations()])
