"""The optional async side of the storage protocol, and adapters between the two sides.

An async store has the methods of :class:`~qv_session_manager.protocol.ConversationStore`
as coroutines, with the same contracts (ordering, missing ids, errors, atomicity).
Optional sides (``save_many``, ``load_window``...) are coroutines of the same names.

A backend offers an async store by registering ``Backend(..., open_async=opener)``,
where ``opener(url, options)`` returns an async store, or None (for example when an
optional dependency is missing) to let the caller use the sync store on threads.
:func:`open_async_store` calls it for the backend that handles the URL's scheme.
The PostgreSQL plugin does this.

Adapters:

- :class:`ThreadedStore` makes any sync store an async one (each call on a thread);
- :class:`BlockingView` makes an async store a sync one, given a function that runs
  a coroutine to its end (a private event loop, or :func:`~.aio_bridge.suspend`).

Both forward every public method and the ``capabilities`` of the wrapped store, so
the optional sides it declares stay usable through them (see
:func:`~qv_session_manager.protocol.offers`).
"""

from __future__ import annotations

import asyncio
import builtins
import functools
import inspect
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from datetime import datetime
from typing import Any, Protocol, TypeVar, runtime_checkable

from .protocol import Capability, ConversationFilter, ConversationStore, SearchOrder
from .query import Query
from .records import ConversationRecord, MessageRecord, SearchHit, StoredConversation
from .registry import available_backends, open_with, scheme_of

T = TypeVar("T")
#: Runs a coroutine to its end and returns its result (or raises its exception).
Runner = Callable[[Coroutine[Any, Any, Any]], Any]


@runtime_checkable
class AsyncConversationStore(Protocol):
    """:class:`~qv_session_manager.protocol.ConversationStore` with coroutine methods.

    Every method has the contract of its sync namesake. Cancelling a call leaves the
    stored data as a completed or a never-started call would: a write is atomic.
    ``isinstance`` only checks names; use :func:`is_async_store` to tell the sides apart.
    """

    capabilities: frozenset[Capability]

    async def save(
        self, conversation: ConversationRecord, messages: Sequence[MessageRecord], *, replace: bool = False
    ) -> None: ...

    async def append(
        self, conversation_id: str, messages: Sequence[MessageRecord], *, updated_at: datetime | None = None
    ) -> bool: ...

    async def load(self, conversation_id: str) -> StoredConversation | None: ...

    async def get(self, conversation_id: str) -> ConversationRecord | None: ...

    async def delete(self, conversation_id: str) -> bool: ...

    async def delete_message(self, conversation_id: str, message_id: str) -> bool: ...

    async def list(
        self,
        filter: ConversationFilter,
        *,
        limit: int | None = None,
        offset: int = 0,
        after: ConversationRecord | None = None,
    ) -> builtins.list[ConversationRecord]: ...

    async def search(
        self,
        query: Query,
        filter: ConversationFilter,
        *,
        order: SearchOrder = "recent",
        limit: int | None = None,
        offset: int = 0,
        with_text: bool = False,
    ) -> builtins.list[SearchHit]: ...

    async def close(self) -> None: ...


def is_async_store(store: object) -> bool:
    """Whether ``store`` is an async store (its ``load`` is a coroutine function)."""
    return inspect.iscoroutinefunction(getattr(store, "load", None))


def _public_methods(store: object) -> dict[str, Callable[..., Any]]:
    """The public callables of ``store``, by name (``capabilities`` and data are left out)."""
    methods = {}
    for name in dir(store):
        if name.startswith("_") or isinstance(inspect.getattr_static(store, name, None), property):
            continue  # properties are not methods, and reading one may do I/O
        value = getattr(store, name, None)
        if callable(value) and not isinstance(value, type):
            methods[name] = value
    return methods


class ThreadedStore:
    """An async store over a sync one: each call runs on a worker thread.

    Every public method of the sync store becomes a coroutine of the same name and
    contract. Cancelling a call that has started does not stop it: its thread
    finishes it (a write is then complete) and the result is dropped.
    """

    def __init__(self, store: ConversationStore) -> None:
        self.wrapped = store
        self.capabilities = store.capabilities
        # Instance attributes, not __getattr__: Protocol isinstance checks look them up statically.
        for name, method in _public_methods(store).items():
            setattr(self, name, self._threaded(method))

    @staticmethod
    def _threaded(method: Callable[..., T]) -> Callable[..., Awaitable[T]]:
        @functools.wraps(method)
        async def call(*args: Any, **kwargs: Any) -> T:
            return await asyncio.to_thread(method, *args, **kwargs)

        return call

    def __repr__(self) -> str:
        return f"ThreadedStore({self.wrapped!r})"


class BlockingView:
    """A sync store over an async one: each call runs the coroutine with ``runner``.

    Every public coroutine method of the async store becomes a sync method of the
    same name and contract, so the view satisfies ``ConversationStore`` (and the
    optional sides the async store has) and sync code such as ``SessionManager``
    can drive an async store.
    """

    def __init__(self, store: AsyncConversationStore, runner: Runner) -> None:
        self.wrapped = store
        self.capabilities = store.capabilities
        self._runner = runner
        for name, method in _public_methods(store).items():
            if inspect.iscoroutinefunction(method):
                setattr(self, name, self._blocking(method))

    def _blocking(self, method: Callable[..., Coroutine[Any, Any, T]]) -> Callable[..., T]:
        runner = self._runner

        @functools.wraps(method)
        def call(*args: Any, **kwargs: Any) -> T:
            return runner(method(*args, **kwargs))  # type: ignore[no-any-return]

        return call

    def __repr__(self) -> str:
        return f"BlockingView({self.wrapped!r})"


def open_async_store(url: str, **options: Any) -> AsyncConversationStore | None:
    """The native async store for ``url``, or None when its backend offers none.

    The backend is the one :func:`~qv_session_manager.open_store` would choose; it
    offers an async store when it was registered with ``open_async`` (see the module
    docstring). None also for an unknown scheme: opening the sync store then raises
    UnknownBackendError. Errors of the opener (bad options...) propagate.
    """
    backend = available_backends().get(scheme_of(url))
    if backend is None or backend.open_async is None:
        return None
    store = open_with(backend.open_async, url, options)
    return store if store is None or is_async_store(store) else None
