"""The conformance suite for async stores: the sync suite, unchanged, through an adapter.

An async store passes when the sync view of it passes :class:`StoreContract`: each
call of the view runs the store's coroutine on a private event loop in a thread of
its own (:class:`LoopThread`), so every clause, and the state machine comparing
against the in-memory reference, checks the async store with no assertion written
twice. Subclass :class:`AsyncStoreContract` and provide ``async_store_opener``::

    class TestMyAsyncStore(AsyncStoreContract):
        @pytest.fixture
        def async_store_opener(self, tmp_path):
            return lambda name: MyAsyncStore(tmp_path / name)

The opener is called on the test's thread, outside any event loop; stores must not
need a running loop to be constructed. All calls of one test run on one loop.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Coroutine, Iterator
from typing import Any, TypeVar, cast

import pytest

from ..async_protocol import AsyncConversationStore, BlockingView
from ..protocol import ConversationStore
from .contract import StoreContract
from .openers import StoreOpener

T = TypeVar("T")
AsyncStoreOpener = Callable[[str], AsyncConversationStore]


class LoopThread:
    """An event loop running in a daemon thread; :meth:`run` runs a coroutine there and waits.

    :meth:`run` may be called from any number of threads at once (their coroutines
    then run concurrently on the one loop), never from the loop's own thread.
    """

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name="qv-async-contract-loop", daemon=True)
        self._thread.start()

    def run(self, coroutine: Coroutine[Any, Any, T]) -> T:
        """The coroutine's result (or its exception), once it ran on the loop."""
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result()

    def stop(self) -> None:
        """Stop the loop and its thread, and close the loop."""
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join()
        self.loop.close()


def blocking(store: AsyncConversationStore, loop: LoopThread) -> ConversationStore:
    """A sync store whose every call runs ``store``'s coroutine on ``loop``."""
    return cast(ConversationStore, BlockingView(store, loop.run))


class AsyncStoreContract(StoreContract):
    """Every contract of the storage protocol, checked on an async store."""

    @pytest.fixture
    def loop_thread(self) -> Iterator[LoopThread]:
        loop = LoopThread()
        yield loop
        loop.stop()

    @pytest.fixture
    def async_store_opener(self) -> AsyncStoreOpener:
        """Override: a name -> an async store (the same name reopens the same data when persistent)."""
        pytest.fail("AsyncStoreContract needs an async_store_opener fixture in the subclass")

    @pytest.fixture
    def store_opener(self, async_store_opener: AsyncStoreOpener, loop_thread: LoopThread) -> StoreOpener:
        return lambda name: blocking(async_store_opener(name), loop_thread)
