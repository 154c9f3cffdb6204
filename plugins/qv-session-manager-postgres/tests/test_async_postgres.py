"""The native async PostgreSQL store: the whole conformance suite, the manager's native
path, parity with the sync store on one schema, and cancellation mid-transaction.

Skips without a server exactly like the other tests here (see conftest.py).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import psycopg
import pytest
from qv_ollama_sdk.domain.models import Conversation

from qv_session_manager import AsyncSessionManager, ConversationFilter, SessionManager, StorageError
from qv_session_manager.async_protocol import is_async_store, open_async_store
from qv_session_manager.testing.async_contract import AsyncStoreContract
from qv_session_manager_postgres import PostgresStore
from qv_session_manager_postgres.async_store import AsyncPostgresStore


@pytest.mark.slow
class TestAsyncPostgresContract(AsyncStoreContract):
    @pytest.fixture
    def async_store_opener(self, postgres_url: str, schema_for: Callable[[str], str]):
        return lambda name: AsyncPostgresStore(postgres_url, schema=schema_for(name))


def chat(title: str, count: int = 2) -> Conversation:
    conversation = Conversation(title=title, model_name="llama3")
    for index in range(count):
        conversation.add_user_message(f"question {index} about lists")
    return conversation


def test_the_url_opens_the_native_store(store_url: str) -> None:
    store = open_async_store(store_url, pool_max_size=2)
    assert isinstance(store, AsyncPostgresStore) and is_async_store(store)

    async def main() -> None:
        await store.close()
        async with AsyncSessionManager(url=store_url) as manager:
            assert manager.is_native and isinstance(manager.store, AsyncPostgresStore)

    asyncio.run(main())


def test_optional_sides_are_coroutines(store_url: str) -> None:
    store = open_async_store(store_url)
    assert store is not None
    for name in dir(PostgresStore):
        if not name.startswith("_") and callable(getattr(PostgresStore, name)):
            assert asyncio.iscoroutinefunction(getattr(store, name)), name
    asyncio.run(store.close())


def test_async_and_sync_stores_share_a_schema(store_url: str) -> None:
    conversation = chat("shared", 3)

    async def main() -> None:
        async with AsyncSessionManager(url=store_url) as manager:
            await manager.save_conversation(conversation)
            with SessionManager(url=store_url) as sync_manager:
                assert sync_manager.load_conversation(str(conversation.id)) == await manager.load_conversation(
                    str(conversation.id)
                )
                assert sync_manager.search_conversations("lists", snippets=True) == await manager.search_conversations(
                    "lists", snippets=True
                )
                sync_manager.add_messages(str(conversation.id), chat("more", 1).messages)
            loaded = await manager.load_conversation(str(conversation.id))
            assert loaded is not None and len(loaded.messages) == 4

    asyncio.run(main())


def test_concurrent_tasks_share_the_pool(store_url: str) -> None:
    conversations = [chat(f"chat {n}") for n in range(12)]

    async def main() -> None:
        async with AsyncSessionManager(url=store_url, pool_max_size=3) as manager:
            await asyncio.gather(*(manager.save_conversation(c) for c in conversations))
            loaded = await asyncio.gather(*(manager.load_conversation(str(c.id)) for c in conversations))
            assert [c.title for c in loaded if c is not None] == [c.title for c in conversations]
            assert len(await manager.list_conversations()) == 12

    asyncio.run(main())


def test_cancelling_a_save_waiting_for_a_lock_rolls_it_back(postgres_url: str, store_url: str, schema: str) -> None:
    """A save blocked by another session's row lock is cancelled: nothing of it is written,
    the connection goes back to the pool sound, and the next save succeeds."""
    original = chat("original", 1)
    with SessionManager(url=store_url) as sync_manager:
        sync_manager.save_conversation(original)

    async def main() -> None:
        async with AsyncSessionManager(url=store_url, pool_max_size=1) as manager:
            with psycopg.connect(postgres_url) as blocker:
                blocker.execute(f'SELECT 1 FROM "{schema}".qv_conversations FOR UPDATE')  # type: ignore[arg-type]
                original.title = "renamed"
                original.add_user_message("new message")
                task = asyncio.create_task(manager.save_conversation(original))
                for _ in range(400):  # until the save waits for the lock (not a timing assertion)
                    await asyncio.sleep(0.025)
                    waiting = blocker.execute(
                        # sessions the blocker blocks: not those of other tests running at the same time
                        "SELECT count(*) FROM pg_stat_activity WHERE pg_backend_pid() = ANY(pg_blocking_pids(pid))"
                    ).fetchone()
                    if waiting and waiting[0]:
                        break
                else:
                    pytest.fail("the save never waited for the lock")
                task.cancel()
                with pytest.raises(asyncio.CancelledError):
                    await task
                blocker.rollback()
            loaded = await manager.load_conversation(str(original.id))
            assert loaded is not None and loaded.title == "original" and len(loaded.messages) == 1
            await manager.save_conversation(original)  # the pool's one connection still works
            loaded = await manager.load_conversation(str(original.id))
            assert loaded is not None and loaded.title == "renamed" and len(loaded.messages) == 2

    asyncio.run(main())


def test_calls_after_close_raise_storage_error(store_url: str) -> None:
    async def main() -> None:
        manager = AsyncSessionManager(url=store_url)
        await manager.close()
        await manager.close()
        with pytest.raises(StorageError):
            await manager.load_conversation("x" * 8)
        with pytest.raises(StorageError):
            await manager.list_conversations()

    asyncio.run(main())


def test_a_url_with_bad_options_fails_like_the_sync_one(store_url: str) -> None:
    url = store_url + "&pool_max_size=abc"
    with pytest.raises(ValueError) as sync_error:
        SessionManager(url=url)
    with pytest.raises(ValueError) as async_error:
        AsyncSessionManager(url=url)
    assert type(async_error.value) is type(sync_error.value) and str(async_error.value) == str(sync_error.value)


@pytest.mark.parametrize("vectors", ["exact", "auto"])
def test_async_vectors_follow_the_sync_store(vectors: str, store_url: str, postgres_url: str, schema: str) -> None:
    """The async store has the same vector side (coroutines) and layout as the sync one on its schema."""
    from qv_session_manager.vector_records import VectorSpace

    space = VectorSpace("test", "async", 2)
    store = AsyncPostgresStore(postgres_url, schema=schema, vectors=vectors)
    sync = PostgresStore(postgres_url, schema=schema)
    try:
        assert (store.vectors, store.vector_layout) == (
            ("exact", "bytea") if vectors == "exact" else (sync.vectors, sync.vector_layout)
        )
        with SessionManager(url=store_url) as manager:
            manager.save_conversation(chat("vectors", 1))

        async def main() -> None:
            (task,) = await store.pending_embeddings(space, limit=5)  # type: ignore[attr-defined]
            assert await store.store_embeddings(space, [(task, (1.0, 0.0))]) == 1  # type: ignore[attr-defined]
            await store.close()

        asyncio.run(main())
        (hit,) = sync.vector_search(space, (1.0, 0.0), ConversationFilter(), limit=1)
        assert hit.score == 1.0 and hit.conversation.title == "vectors"
    finally:
        sync.close()
