"""AsyncSessionManager: the SessionManager API with await, here over an in-memory store.

Run: python examples/async_usage.py  (any URL works: sqlite runs on threads,
postgresql uses the native async store when qv-session-manager-postgres[async] is installed).
"""

from __future__ import annotations

import asyncio

from qv_ollama_sdk.domain.models import Conversation

from qv_session_manager import AsyncSessionManager


async def main() -> None:
    async with AsyncSessionManager(url="memory://") as mgr:
        conversations = []
        for topic in ("lists", "tuples", "sets"):
            conversation = Conversation(title=f"Python {topic}", model_name="llama3")
            conversation.add_user_message(f"Explain Python {topic} to me!")
            conversations.append(conversation)
        # Saves run concurrently; the event loop never waits for the store.
        await asyncio.gather(*(mgr.save_conversation(c) for c in conversations))

        loaded = await mgr.load_conversation(str(conversations[0].id))
        print(f"Loaded: {loaded.title} with {len(loaded.messages)} message")
        hits = await mgr.search_conversations("tuples OR sets")
        print("search:", sorted(hit["title"] for hit in hits))
        print("all:", sorted([c.title async for c in mgr.iter_conversations()]))
        print("deleted:", await mgr.delete_conversation(str(conversations[2].id)))


if __name__ == "__main__":
    asyncio.run(main())
