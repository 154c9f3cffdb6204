"""AsyncSessionManager: the SessionManager API as coroutines, for asyncio programs.

The manager's logic (conversion, id lookup, paging, snippets, batching) is not
repeated here: every method runs the matching :class:`~qv_session_manager.SessionManager`
method, so results and errors are the same by construction. What differs is where
the blocking part runs:

- over a sync store (SQLite, memory, jsonl, your own), each call runs on a worker
  thread of the manager, so the event loop never waits for the store;
- over a native async store (PostgreSQL with ``qv-session-manager-postgres[async]``,
  or any :class:`~qv_session_manager.async_protocol.AsyncConversationStore`), the
  SessionManager runs on the event loop itself and each store call is awaited there
  (see :mod:`qv_session_manager.aio_bridge`); no thread is involved.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import os
from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from types import TracebackType
from typing import Any, TextIO, TypeVar, cast

from qv_ollama_sdk.domain.models import Conversation, Message

from . import aio_bridge
from .async_protocol import AsyncConversationStore, BlockingView, is_async_store, open_async_store
from .embedding import TextEmbedder
from .errors import InvalidInputError
from .exchange import CsvFormulas, ExportFormat, ImportFormat, ImportReport, OnConflict, OnError
from .install_hints import install_hint
from .manager import SessionManager, default_url
from .meaning import EmbeddingProgress, SearchMode, SearchResults
from .protocol import ConversationStore, SearchOrder, TimeField
from .timeutil import TimeBound

T = TypeVar("T")
_END = object()


class AsyncSessionManager:
    """Stores qv-ollama-sdk conversations and finds them again, with ``await``.

    Takes the arguments of :class:`~qv_session_manager.SessionManager` (exactly one
    of ``db_path``, ``url``, ``store``, or none for ``$QV_SESSION_MANAGER_URL``);
    ``store`` may also be an async store. A URL whose backend offers a native async
    store (PostgreSQL) gets it; any other store is used on worker threads.

    Every method has the arguments, results and errors of its SessionManager
    namesake. Opening the store (the constructor) blocks like SessionManager's;
    inside a running event loop prefer ``await AsyncSessionManager.open(...)``,
    which opens it on a thread.

    Cancelling a call: a call not yet started on its thread never runs; one under
    way on a thread runs to its end (a save is then complete); one on a native
    async store is rolled back. Either way the stored data is as after a completed
    or a never-made call, never in between. :meth:`close` waits for calls still
    running on threads.
    """

    def __init__(
        self,
        db_path: str | os.PathLike[str] | None = None,
        *,
        url: str | None = None,
        store: ConversationStore | AsyncConversationStore | None = None,
        embedder: str | TextEmbedder | None = None,
        embed_in_background: bool = False,
        **options: Any,
    ) -> None:
        native: AsyncConversationStore | None = None
        if store is not None and is_async_store(store):
            native = cast(AsyncConversationStore, store)
        elif store is None and db_path is None:
            url = url if url is not None else default_url()
            native = open_async_store(url, **options)
        if native is not None and embed_in_background:
            raise InvalidInputError(
                "embed_in_background needs a store usable from a thread; with a native async store "
                "call await index_embeddings() instead"
            )
        if native is not None and not aio_bridge.available():
            raise InvalidInputError(f"an async store needs the greenlet package: {install_hint('greenlet', 'async')}")
        self._executor: ThreadPoolExecutor | None = None
        if native is not None:
            view = cast(ConversationStore, BlockingView(native, aio_bridge.suspend))
            # SessionManager checks the arguments (one of db_path/url/store, no options with a store).
            self._sync = SessionManager(
                db_path,
                url=None if store is None else url,
                store=view,
                embedder=embedder,
                embed_in_background=embed_in_background,
                **({} if store is None else options),
            )
        else:
            self._sync = SessionManager(
                db_path,
                url=url,
                store=cast(ConversationStore | None, store),
                embedder=embedder,
                embed_in_background=embed_in_background,
                **options,
            )
            self._executor = ThreadPoolExecutor(thread_name_prefix="qv-session-manager")
        self._native = native

    @classmethod
    async def open(
        cls,
        db_path: str | os.PathLike[str] | None = None,
        *,
        url: str | None = None,
        store: ConversationStore | AsyncConversationStore | None = None,
        **options: Any,
    ) -> AsyncSessionManager:
        """Like the constructor, but opens the store on a worker thread (the loop keeps running)."""
        return await asyncio.to_thread(functools.partial(cls, db_path, url=url, store=store, **options))

    @property
    def store(self) -> ConversationStore | AsyncConversationStore:
        """The store: the native async one, or the sync one used on threads."""
        return self._native if self._native is not None else self._sync.store

    @property
    def is_native(self) -> bool:
        """Whether calls are awaited on the event loop (an async store) rather than run on threads."""
        return self._native is not None

    async def _call(self, function: Callable[..., T], /, *args: Any, **kwargs: Any) -> T:
        """Run a SessionManager method without blocking the loop (see the class docstring)."""
        if self._executor is None:
            return await aio_bridge.run_bridged(function, *args, **kwargs)
        call = functools.partial(contextvars.copy_context().run, function, *args, **kwargs)
        try:
            future = self._executor.submit(call)
        except RuntimeError:  # the manager is closed: let the (closed) store answer as it does
            return await asyncio.to_thread(call)
        return await asyncio.wrap_future(future)

    async def _on_thread(self, method: str, /, *args: Any, **kwargs: Any) -> Any:
        """Run the SessionManager ``method`` that also does file I/O on a thread, even over a native store.

        Over a native store, its store calls come back to this event loop to be awaited.
        """
        if self._native is None:
            return await self._call(getattr(self._sync, method), *args, **kwargs)
        loop = asyncio.get_running_loop()

        def runner(coroutine: Any) -> Any:
            return asyncio.run_coroutine_threadsafe(coroutine, loop).result()

        threaded = SessionManager(store=cast(ConversationStore, BlockingView(self._native, runner)))
        return await asyncio.to_thread(functools.partial(getattr(threaded, method), *args, **kwargs))

    # -- lifecycle -----------------------------------------------------------

    async def close(self) -> None:
        """Wait for calls still running on threads, then close the store. Closing twice is harmless."""
        if self._executor is None:
            await self._call(self._sync.close)
            return
        executor = self._executor

        def shut_down() -> None:
            executor.shutdown(wait=True)
            self._sync.close()

        await asyncio.to_thread(shut_down)

    async def __aenter__(self) -> AsyncSessionManager:
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        await self.close()

    # -- writing -------------------------------------------------------------

    async def save_conversation(
        self, conversation: Conversation, messages: Iterable[Message] | None = None, *, replace: bool = False
    ) -> None:
        """See :meth:`SessionManager.save_conversation`."""
        await self._call(self._sync.save_conversation, conversation, messages, replace=replace)

    async def add_messages(
        self, conversation_id: str, messages: Iterable[Message], *, updated_at: datetime | None = None
    ) -> None:
        """See :meth:`SessionManager.add_messages`."""
        await self._call(self._sync.add_messages, conversation_id, messages, updated_at=updated_at)

    async def save_many(self, conversations: Iterable[Conversation], *, batch_size: int = 500) -> int:
        """See :meth:`SessionManager.save_many`; the iterable is read lazily, off the event loop."""
        return await self._call(self._sync.save_many, conversations, batch_size=batch_size)

    async def delete_conversation(self, conversation_id: str) -> bool:
        """See :meth:`SessionManager.delete_conversation`."""
        return await self._call(self._sync.delete_conversation, conversation_id)

    async def delete_message(self, conversation_id: str, message_id: str) -> bool:
        """See :meth:`SessionManager.delete_message`."""
        return await self._call(self._sync.delete_message, conversation_id, message_id)

    # -- retention and expiry ---------------------------------------------------

    async def set_expiry(self, conversation_id: str, expires_at: datetime | None) -> bool:
        """See :meth:`SessionManager.set_expiry`."""
        return await self._call(self._sync.set_expiry, conversation_id, expires_at)

    async def delete_older_than(self, cutoff: datetime, *, field: TimeField = "updated_at") -> int:
        """See :meth:`SessionManager.delete_older_than`."""
        return await self._call(self._sync.delete_older_than, cutoff, field=field)

    async def keep_newest(self, count: int, *, field: TimeField = "updated_at") -> int:
        """See :meth:`SessionManager.keep_newest`."""
        return await self._call(self._sync.keep_newest, count, field=field)

    async def purge_expired(self) -> int:
        """See :meth:`SessionManager.purge_expired`."""
        return await self._call(self._sync.purge_expired)

    # -- reading -------------------------------------------------------------

    async def load_conversation(
        self,
        conversation_id: str,
        *,
        last_messages: int | None = None,
        last_turns: int | None = None,
        keep_system: bool = True,
    ) -> Conversation | None:
        """See :meth:`SessionManager.load_conversation`."""
        return await self._call(
            self._sync.load_conversation,
            conversation_id,
            last_messages=last_messages,
            last_turns=last_turns,
            keep_system=keep_system,
        )

    async def get_conversation_by_id(self, conversation_id: str) -> Conversation | None:
        """See :meth:`SessionManager.get_conversation_by_id`."""
        return await self._call(self._sync.get_conversation_by_id, conversation_id)

    async def resume_conversation(
        self, conversation_id: str, *, last_messages: int | None = None, last_turns: int | None = None
    ) -> dict[str, Any] | None:
        """See :meth:`SessionManager.resume_conversation`."""
        return await self._call(
            self._sync.resume_conversation, conversation_id, last_messages=last_messages, last_turns=last_turns
        )

    async def fork_conversation(
        self, conversation_id: str, at_message_id: str, *, title: str | None = None
    ) -> Conversation:
        """See :meth:`SessionManager.fork_conversation`."""
        return await self._call(self._sync.fork_conversation, conversation_id, at_message_id, title=title)

    def iter_conversations(
        self, *, metadata: Mapping[str, Any] | None = None, page_size: int = 200
    ) -> AsyncIterator[Conversation]:
        """See :meth:`SessionManager.iter_conversations`: an async iterator (``async for``).

        Bad arguments raise here, at the call, as with SessionManager; each step
        reads the store without blocking the loop.
        """
        return _AsyncIterator(self._sync.iter_conversations(metadata=metadata, page_size=page_size), self._call)

    async def list_conversations(
        self,
        *,
        limit: int | None = None,
        offset: int = 0,
        after: str | None = None,
        metadata: Mapping[str, Any] | None = None,
    ) -> list[dict[str, Any]]:
        """See :meth:`SessionManager.list_conversations`."""
        return await self._call(
            self._sync.list_conversations, limit=limit, offset=offset, after=after, metadata=metadata
        )

    async def search_by_time(
        self,
        start: TimeBound = None,
        end: TimeBound = None,
        *,
        field: TimeField = "updated_at",
        limit: int | None = None,
        offset: int = 0,
        after: str | None = None,
        metadata: Mapping[str, Any] | None = None,
    ) -> list[dict[str, Any]]:
        """See :meth:`SessionManager.search_by_time`."""
        return await self._call(
            self._sync.search_by_time,
            start,
            end,
            field=field,
            limit=limit,
            offset=offset,
            after=after,
            metadata=metadata,
        )

    async def search_conversations(
        self,
        query: str,
        *,
        limit: int | None = None,
        offset: int = 0,
        order: SearchOrder = "recent",
        metadata: Mapping[str, Any] | None = None,
        snippets: bool = False,
        mark: tuple[str, str] = ("**", "**"),
        mode: SearchMode = "text",
    ) -> SearchResults:
        """See :meth:`SessionManager.search_conversations`."""
        return await self._call(
            self._sync.search_conversations,
            query,
            limit=limit,
            offset=offset,
            order=order,
            metadata=metadata,
            snippets=snippets,
            mark=mark,
            mode=mode,
        )

    async def index_embeddings(
        self,
        *,
        batch_size: int = 32,
        limit: int | None = None,
        progress: Callable[[int, int], None] | None = None,
    ) -> EmbeddingProgress:
        """See :meth:`SessionManager.index_embeddings` (the embedder's own calls block while they run)."""
        return await self._call(self._sync.index_embeddings, batch_size=batch_size, limit=limit, progress=progress)

    # -- export and import -----------------------------------------------------

    async def export_conversations(
        self,
        destination: str | os.PathLike[str] | TextIO,
        *,
        format: ExportFormat = "jsonl",
        metadata: Mapping[str, Any] | None = None,
        progress: Callable[[int], None] | None = None,
        csv_formulas: CsvFormulas = "escape",
    ) -> int:
        """See :meth:`SessionManager.export_conversations`; runs on a thread (it writes a file).

        ``progress`` is called on that thread.
        """
        return cast(
            int,
            await self._on_thread(
                "export_conversations",
                destination,
                format=format,
                metadata=metadata,
                progress=progress,
                csv_formulas=csv_formulas,
            ),
        )

    async def import_conversations(
        self,
        source: str | os.PathLike[str] | TextIO,
        *,
        format: ImportFormat = "jsonl",
        batch_size: int = 500,
        on_error: OnError = "raise",
        on_conflict: OnConflict = "skip",
        keep_empty: bool | None = None,
        progress: Callable[[int], None] | None = None,
    ) -> ImportReport:
        """See :meth:`SessionManager.import_conversations`; runs on a thread (it reads a file).

        ``progress`` is called on that thread.
        """
        return cast(
            ImportReport,
            await self._on_thread(
                "import_conversations",
                source,
                format=format,
                batch_size=batch_size,
                on_error=on_error,
                on_conflict=on_conflict,
                keep_empty=keep_empty,
                progress=progress,
            ),
        )


class _AsyncIterator:
    """``async for`` over a sync iterator whose steps do I/O, each step run by ``call``."""

    def __init__(self, iterator: Iterator[Conversation], call: Callable[..., Any]) -> None:
        self._iterator = iterator
        self._call = call

    def __aiter__(self) -> _AsyncIterator:
        return self

    async def __anext__(self) -> Conversation:
        # next() with a default: StopIteration must not cross a thread's future.
        item = await self._call(next, self._iterator, _END)
        if item is _END:
            raise StopAsyncIteration
        return cast(Conversation, item)
