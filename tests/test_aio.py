"""AsyncSessionManager, the async side of the store protocol and its adapters.

Parity is proved two ways: the whole conformance suite runs on async stores through
testing.async_contract (no assertion repeated), and a Hypothesis test runs random
operation sequences through SessionManager and AsyncSessionManager (both the
thread path and the native async path) and compares every answer and error.
"""

from __future__ import annotations

import asyncio
import io
import threading
import time
import types
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from qv_ollama_sdk.domain.models import Conversation, Message

from qv_session_manager import (
    AsyncSessionManager,
    Backend,
    InvalidInputError,
    SessionManager,
    StorageError,
    UnknownBackendError,
    hookimpl,
    plugins,
)
from qv_session_manager.aio_bridge import in_bridge, run_bridged, suspend
from qv_session_manager.async_protocol import (
    AsyncConversationStore,
    BlockingView,
    ThreadedStore,
    is_async_store,
    open_async_store,
)
from qv_session_manager.backends.memory import MemoryStore
from qv_session_manager.backends.sqlite import SQLiteStore
from qv_session_manager.convert import conversation_to_record, message_to_record, record_to_conversation
from qv_session_manager.protocol import Capability, ConversationStore, offers
from qv_session_manager.records import StoredConversation
from qv_session_manager.testing import strategies
from qv_session_manager.testing.async_contract import AsyncStoreContract, LoopThread, blocking

# -- the conformance suite on async stores -------------------------------------------------


@pytest.mark.slow
class TestThreadedMemoryContract(AsyncStoreContract):
    """The in-memory reference, made async by ThreadedStore, passes every clause."""

    @pytest.fixture
    def async_store_opener(self):
        return lambda name: ThreadedStore(MemoryStore())


@pytest.mark.slow
class TestThreadedSQLiteContract(AsyncStoreContract):
    """SQLite (persistent: reopening by name) made async by ThreadedStore passes every clause."""

    @pytest.fixture
    def async_store_opener(self, tmp_path: Path):
        return lambda name: ThreadedStore(SQLiteStore(tmp_path / f"{name}.db"))


# -- helpers ----------------------------------------------------------------------------------


def chat(title: str = "Python Help", *texts: str) -> Conversation:
    conversation = Conversation(title=title, model_name="llama3")
    for index, text in enumerate(texts or ("Explain Python lists", "Lists are ordered")):
        if index % 2:
            conversation.add_assistant_message(text)
        else:
            conversation.add_user_message(text)
    return conversation


def plain(value: Any) -> Any:
    """Results made comparable: SDK objects become records, containers recurse."""
    if isinstance(value, Conversation):
        return conversation_to_record(value), tuple(message_to_record(m) for m in value.messages)
    if isinstance(value, Message):
        return message_to_record(value)
    if isinstance(value, dict):
        return {key: plain(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(item) for item in value]
    return value


def native_memory() -> ThreadedStore:
    """An async store (so AsyncSessionManager takes its native path) over the reference."""
    return ThreadedStore(MemoryStore())


# -- the adapters -------------------------------------------------------------------------------


def test_is_async_store_tells_the_sides_apart() -> None:
    memory = MemoryStore()
    assert not is_async_store(memory)
    assert is_async_store(ThreadedStore(memory))
    assert isinstance(ThreadedStore(memory), AsyncConversationStore)


def test_adapters_keep_optional_sides_visible() -> None:
    threaded = ThreadedStore(MemoryStore())
    assert hasattr(threaded, "save_many")
    loop = LoopThread()
    try:
        view = blocking(threaded, loop)
        assert isinstance(view, ConversationStore)
        assert offers(view, Capability.BULK_SAVING)
        assert view.capabilities == MemoryStore.capabilities
    finally:
        loop.stop()


def test_blocking_view_of_a_store_without_save_many_has_none() -> None:
    class Minimal:
        capabilities = frozenset()

        async def load(self, conversation_id: str) -> None:
            return None

    view = BlockingView(Minimal(), lambda coroutine: asyncio.run(coroutine))  # type: ignore[arg-type]
    assert not hasattr(view, "save_many")
    assert view.load("x") is None  # type: ignore[attr-defined]


def test_suspend_outside_the_bridge_raises_and_closes_the_coroutine() -> None:
    async def never() -> None:  # pragma: no cover - must not run
        raise AssertionError

    coroutine = never()
    with pytest.raises(RuntimeError, match="run_bridged"):
        suspend(coroutine)
    assert coroutine.cr_frame is None, "the coroutine was not closed"
    assert not in_bridge()


def test_bridge_returns_raises_and_keeps_context() -> None:
    import contextvars

    variable: contextvars.ContextVar[str] = contextvars.ContextVar("variable", default="unset")

    def blocking_style(x: int) -> tuple[int, str, bool]:
        doubled = suspend(asyncio.sleep(0, result=x * 2))
        return doubled, variable.get(), in_bridge()

    def failing() -> None:
        suspend(asyncio.sleep(0))
        raise KeyError("boom")

    async def main() -> None:
        variable.set("set")
        assert await run_bridged(blocking_style, 21) == (42, "set", True)
        with pytest.raises(KeyError, match="boom"):
            await run_bridged(failing)

    asyncio.run(main())


# -- choosing the path ---------------------------------------------------------------------------


def test_sync_backends_run_on_threads() -> None:
    async def main() -> None:
        async with AsyncSessionManager(url="memory://") as manager:
            assert not manager.is_native and isinstance(manager.store, MemoryStore)

    asyncio.run(main())


def test_an_async_store_is_used_natively() -> None:
    store = native_memory()

    async def main() -> None:
        async with AsyncSessionManager(store=store) as manager:
            assert manager.is_native and manager.store is store

    asyncio.run(main())


def test_open_async_store_uses_the_plugins_opener(monkeypatch: pytest.MonkeyPatch) -> None:
    opened: list[tuple[str, dict[str, Any]]] = []
    module = types.ModuleType("qv_test_async_plugin")

    def open_async_url(url: str, options: dict[str, Any]) -> ThreadedStore:
        opened.append((url, dict(options)))
        return native_memory()

    @hookimpl
    def register_backends(register: Any) -> None:
        register(Backend("asyncmem", lambda url, options: MemoryStore(), open_async=open_async_url))

    module.register_backends = register_backends  # type: ignore[attr-defined]
    plugins.pm.register(module, name=module.__name__)
    try:
        assert is_async_store(open_async_store("asyncmem://x", flag=1))
        assert opened == [("asyncmem://x", {"flag": 1})]
        assert open_async_store("memory://") is None, "the memory backend offers no async store"
        assert open_async_store("nope://") is None

        async def main() -> None:
            async with AsyncSessionManager(url="asyncmem://y") as manager:
                assert manager.is_native

        asyncio.run(main())
    finally:
        plugins.pm.unregister(name=module.__name__)


def test_constructor_errors_match_the_sync_ones(tmp_path: Path) -> None:
    with pytest.raises(UnknownBackendError) as sync_error:
        SessionManager(url="nope://x")
    with pytest.raises(UnknownBackendError) as async_error:
        AsyncSessionManager(url="nope://x")
    assert str(async_error.value) == str(sync_error.value)
    with pytest.raises(InvalidInputError, match="only one of"):
        AsyncSessionManager(url="memory://", store=native_memory())
    with pytest.raises(InvalidInputError, match="options apply"):
        AsyncSessionManager(store=native_memory(), synchronous="normal")


def test_open_constructs_on_a_thread(tmp_path: Path) -> None:
    async def main() -> None:
        manager = await AsyncSessionManager.open(tmp_path / "chats.db")
        async with manager:
            conversation = chat()
            await manager.save_conversation(conversation)
            assert (await manager.load_conversation(str(conversation.id))).title == "Python Help"  # type: ignore[union-attr]

    asyncio.run(main())


# -- behaviour on both paths ----------------------------------------------------------------------


@pytest.fixture(params=["threads", "native"])
def async_manager_factory(request: pytest.FixtureRequest):
    def make(store: ConversationStore | None = None) -> AsyncSessionManager:
        store = store or MemoryStore()
        return AsyncSessionManager(store=store if request.param == "threads" else ThreadedStore(store))

    return make


def test_iteration_errors_and_closing(async_manager_factory: Any) -> None:
    async def main() -> None:
        manager: AsyncSessionManager = async_manager_factory()
        conversations = [chat(f"chat {n}") for n in range(5)]
        assert await manager.save_many(iter(conversations), batch_size=2) == 5
        titles = [c.title async for c in manager.iter_conversations(page_size=2)]
        sync_titles = [c.title for c in SessionManager(store=_underlying(manager)).iter_conversations(page_size=2)]
        assert titles == sync_titles and len(titles) == 5
        with pytest.raises(InvalidInputError):  # raised at the call, as SessionManager does
            manager.iter_conversations(page_size=0)
        with pytest.raises(InvalidInputError):
            await manager.add_messages(str(conversations[0].id), 42)  # type: ignore[arg-type]
        await manager.close()
        await manager.close()  # harmless
        with pytest.raises(StorageError):
            await manager.load_conversation(str(conversations[0].id))

    asyncio.run(main())


def test_export_and_import_round_trip(async_manager_factory: Any) -> None:
    async def main() -> None:
        source: AsyncSessionManager = async_manager_factory()
        target: AsyncSessionManager = async_manager_factory()
        conversation = chat("Export me", "a", "b", "c")
        await source.save_conversation(conversation)
        buffer = io.StringIO()
        assert await source.export_conversations(buffer) == 1
        buffer.seek(0)
        report = await target.import_conversations(buffer)
        assert report.imported == 1
        assert plain(await target.load_conversation(str(conversation.id))) == plain(conversation)
        await source.close()
        await target.close()

    asyncio.run(main())


def _underlying(manager: AsyncSessionManager) -> ConversationStore:
    store = manager.store
    return store.wrapped if isinstance(store, ThreadedStore) else store  # type: ignore[return-value]


# -- the event loop keeps running -----------------------------------------------------------------


class SlowLoadStore(MemoryStore):
    """A sync store whose load sleeps 0.5 s; it counts the other task's ticks meanwhile."""

    def __init__(self, ticks: list[int]) -> None:
        super().__init__()
        self.ticks = ticks
        self.ticks_during_load: list[int] = []

    def load(self, conversation_id: str) -> StoredConversation | None:
        before = self.ticks[0]
        time.sleep(0.5)
        self.ticks_during_load.append(self.ticks[0] - before)
        return super().load(conversation_id)


async def _tick_while(awaitable: Any, ticks: list[int]) -> Any:
    stop = False

    async def ticker() -> None:
        while not stop:
            ticks[0] += 1
            await asyncio.sleep(0)

    task = asyncio.create_task(ticker())
    try:
        return await awaitable
    finally:
        stop = True
        await task


def test_a_slow_sync_store_does_not_stall_other_tasks() -> None:
    ticks = [0]
    store = SlowLoadStore(ticks)
    conversation = chat()
    SessionManager(store=store).save_conversation(conversation)

    async def main() -> None:
        async with AsyncSessionManager(store=store) as manager:
            loaded = await _tick_while(manager.load_conversation(str(conversation.id)), ticks)
            assert loaded is not None

    asyncio.run(main())
    # A blocked loop would not tick at all while the store sleeps.
    assert store.ticks_during_load and store.ticks_during_load[0] >= 10, store.ticks_during_load


class SlowAsyncStore(ThreadedStore):
    """A native async store whose load awaits 0.5 s before answering."""

    def __init__(self, ticks: list[int]) -> None:
        super().__init__(MemoryStore())
        self.ticks = ticks
        self.ticks_during_load: list[int] = []
        inner_load = self.load  # type: ignore[has-type]

        async def load(conversation_id: str) -> StoredConversation | None:
            before = self.ticks[0]
            await asyncio.sleep(0.5)
            self.ticks_during_load.append(self.ticks[0] - before)
            return await inner_load(conversation_id)

        self.load = load


def test_a_slow_native_store_does_not_stall_other_tasks() -> None:
    ticks = [0]
    store = SlowAsyncStore(ticks)
    conversation = chat()
    SessionManager(store=store.wrapped).save_conversation(conversation)

    async def main() -> None:
        async with AsyncSessionManager(store=store) as manager:
            assert manager.is_native
            assert await _tick_while(manager.load_conversation(str(conversation.id)), ticks) is not None

    asyncio.run(main())
    assert store.ticks_during_load and store.ticks_during_load[0] >= 10, store.ticks_during_load


# -- cancellation ----------------------------------------------------------------------------------


class GatedSaveStore(SQLiteStore):
    """A sync store whose save waits for ``release`` after saying it ``started``."""

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self.started = threading.Event()
        self.release = threading.Event()

    def save(self, *args: Any, **kwargs: Any) -> None:
        self.started.set()
        assert self.release.wait(30), "the test never released the save"
        super().save(*args, **kwargs)


def test_cancelling_a_call_under_way_on_a_thread_lets_it_complete(tmp_path: Path) -> None:
    store = GatedSaveStore(tmp_path / "chats.db")
    conversation = chat("Cancelled", "one", "two", "three")

    async def main() -> None:
        manager = AsyncSessionManager(store=store)
        task = asyncio.create_task(manager.save_conversation(conversation))
        assert await asyncio.to_thread(store.started.wait, 30)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        store.release.set()
        await manager.close()  # waits for the save still running on its thread

    asyncio.run(main())
    with SessionManager(tmp_path / "chats.db") as reopened:
        assert plain(reopened.load_conversation(str(conversation.id))) == plain(conversation), (
            "the cancelled save must have completed whole"
        )


class GatedAsyncStore(ThreadedStore):
    """A native async store whose save waits on an asyncio event, then writes at once."""

    def __init__(self) -> None:
        super().__init__(MemoryStore())
        self.started = asyncio.Event()
        self.release = asyncio.Event()
        inner_save = self.save  # type: ignore[has-type]

        async def save(*args: Any, **kwargs: Any) -> None:
            self.started.set()
            await self.release.wait()
            await inner_save(*args, **kwargs)

        self.save = save


def test_cancelling_a_native_call_leaves_nothing_and_the_manager_usable() -> None:
    async def main() -> None:
        store = GatedAsyncStore()
        conversation = chat("Cancelled")
        async with AsyncSessionManager(store=store) as manager:
            task = asyncio.create_task(manager.save_conversation(conversation))
            await store.started.wait()
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            assert await manager.load_conversation(str(conversation.id)) is None
            store.release.set()
            await manager.save_conversation(conversation)
            assert plain(await manager.load_conversation(str(conversation.id))) == plain(conversation)

    asyncio.run(main())


# -- sync/async parity on random operation sequences -------------------------------------------------

IDS = ["c1", "c2", "c3"]


@st.composite
def stored_conversations(draw: st.DrawFn) -> Conversation:
    record = draw(strategies.conversations(id=draw(st.sampled_from(IDS))))
    return record_to_conversation(StoredConversation(record, tuple(draw(strategies.message_lists(max_size=4)))))


operations = st.lists(
    st.one_of(
        st.tuples(st.just("save_conversation"), stored_conversations(), st.booleans()),
        st.tuples(st.just("add_messages"), st.sampled_from(IDS + ["missing"]), strategies.message_lists(max_size=3)),
        st.tuples(st.just("save_many"), st.lists(stored_conversations(), max_size=3)),
        st.tuples(st.just("delete_conversation"), st.sampled_from(IDS + ["missing", ""])),
        st.tuples(st.just("delete_message"), st.sampled_from(IDS), strategies.ids),
        st.tuples(st.just("load_conversation"), st.sampled_from(IDS + ["invalid-id"])),
        st.tuples(st.just("resume_conversation"), st.sampled_from(IDS)),
        st.tuples(st.just("load_window"), st.sampled_from(IDS + ["missing"]), st.integers(0, 3)),  # 0: the error
        st.tuples(
            st.just("list_conversations"),
            st.one_of(st.none(), st.integers(0, 3)),
            st.sampled_from([None, *IDS, "missing"]),
        ),
        st.tuples(st.just("search_conversations"), strategies.queries, st.sampled_from(["recent", "relevance"])),
        st.tuples(st.just("search_by_time"), st.sampled_from([None, "2025-01-20", "not a date"])),
        st.tuples(st.just("iter_conversations"), st.integers(0, 3)),  # 0: the error
        # retention: expiries far from the real clock; "soon" and -1 are the errors
        st.tuples(
            st.just("set_expiry"),
            st.sampled_from(IDS + ["missing"]),
            st.sampled_from([None, datetime(2000, 1, 1), datetime(2999, 1, 1), "soon"]),
        ),
        st.tuples(
            st.just("delete_older_than"),
            st.sampled_from([datetime(2025, 1, 20, 12, 3), datetime(2000, 1, 1), "2025-01-20"]),
        ),
        st.tuples(st.just("keep_newest"), st.integers(-1, 3)),
        st.tuples(st.just("purge_expired")),
    ),
    max_size=12,
)


def _sync_step(manager: SessionManager, operation: tuple[Any, ...]) -> Any:
    name, *args = operation
    if name == "add_messages":
        return manager.add_messages(args[0], [_message(r) for r in args[1]])
    if name == "save_conversation":
        return manager.save_conversation(args[0], replace=args[1])
    if name == "list_conversations":
        return manager.list_conversations(limit=args[0], after=args[1])
    if name == "search_conversations":
        return manager.search_conversations(args[0], order=args[1], snippets=True)
    if name == "iter_conversations":
        return list(manager.iter_conversations(page_size=args[0]))
    if name == "search_by_time":
        return manager.search_by_time(args[0], args[0])
    if name == "load_window":
        return manager.load_conversation(args[0], last_messages=args[1])
    return getattr(manager, name)(*args)


async def _async_step(manager: AsyncSessionManager, operation: tuple[Any, ...]) -> Any:
    name, *args = operation
    if name == "add_messages":
        return await manager.add_messages(args[0], [_message(r) for r in args[1]])
    if name == "save_conversation":
        return await manager.save_conversation(args[0], replace=args[1])
    if name == "list_conversations":
        return await manager.list_conversations(limit=args[0], after=args[1])
    if name == "search_conversations":
        return await manager.search_conversations(args[0], order=args[1], snippets=True)
    if name == "iter_conversations":
        return [c async for c in manager.iter_conversations(page_size=args[0])]
    if name == "search_by_time":
        return await manager.search_by_time(args[0], args[0])
    if name == "load_window":
        return await manager.load_conversation(args[0], last_messages=args[1])
    return await getattr(manager, name)(*args)


def _message(record: Any) -> Message:
    from qv_session_manager.convert import record_to_message

    return record_to_message(record)


def _outcome(call: Any) -> Any:
    try:
        return "ok", plain(call())
    except Exception as exc:  # errors must match too: type and message
        return "error", type(exc), str(exc)


async def _async_outcome(awaitable: Any) -> Any:
    try:
        return "ok", plain(await awaitable)
    except Exception as exc:
        return "error", type(exc), str(exc)


def test_every_manager_method_has_an_async_namesake_with_its_signature() -> None:
    import inspect

    public = [
        name for name in vars(SessionManager) if not name.startswith("_") and callable(getattr(SessionManager, name))
    ]
    assert {"set_expiry", "delete_older_than", "keep_newest", "purge_expired"} <= set(public)
    for name in public:
        sync_signature = inspect.signature(getattr(SessionManager, name))
        async_method = getattr(AsyncSessionManager, name, None)
        assert async_method is not None, f"AsyncSessionManager has no {name}"
        assert list(inspect.signature(async_method).parameters.values()) == list(sync_signature.parameters.values()), (
            name
        )
        assert inspect.iscoroutinefunction(async_method) or name == "iter_conversations", name


@pytest.mark.parametrize("path", ["threads", "native"])
def test_async_results_equal_sync_results(path: str) -> None:
    @given(operations)
    @settings(max_examples=40, deadline=None)
    def check(sequence: list[tuple[Any, ...]]) -> None:
        steps = [*sequence, ("iter_conversations", 200)]  # the last step compares the stored state
        sync_manager = SessionManager(store=MemoryStore())

        async def run() -> list[Any]:
            store = MemoryStore()
            async with AsyncSessionManager(store=store if path == "threads" else ThreadedStore(store)) as manager:
                return [await _async_outcome(_async_step(manager, op)) for op in steps]

        got = asyncio.run(run())
        want = [_outcome(lambda op=op: _sync_step(sync_manager, op)) for op in steps]
        assert got == want

    check()


@pytest.fixture
def loop_thread() -> Iterator[LoopThread]:
    loop = LoopThread()
    yield loop
    loop.stop()


def test_loop_thread_runs_coroutines_from_many_threads(loop_thread: LoopThread) -> None:
    results: list[int] = []

    def worker(n: int) -> None:
        results.append(loop_thread.run(asyncio.sleep(0, result=n)))

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(results) == list(range(8))


def test_async_fork_links_back_to_its_origin() -> None:
    async def main() -> None:
        async with AsyncSessionManager(store=MemoryStore()) as manager:
            original = Conversation(title="origin")
            original.add_user_message("one")
            kept = original.add_assistant_message("two")
            original.add_user_message("three")
            await manager.save_conversation(original)
            fork = await manager.fork_conversation(str(original.id), str(kept.id), title="branch")
            assert [m.content for m in fork.messages] == ["one", "two"]
            assert fork.metadata["forked_from"] == {"conversation_id": str(original.id), "message_id": str(kept.id)}
            loaded = await manager.load_conversation(str(fork.id))
            assert loaded is not None and loaded.title == "branch"

    asyncio.run(main())
