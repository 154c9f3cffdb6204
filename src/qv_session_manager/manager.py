"""SessionManager: the seed's API over any storage backend (no SQL in here)."""

from __future__ import annotations

import logging
import os
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import replace as dataclass_replace
from datetime import datetime
from types import TracebackType
from typing import Any, TextIO, cast

from qv_ollama_sdk.domain.models import Conversation, Message

from . import retention
from .background import BackgroundEmbedder
from .convert import (
    canonical_id,
    conversation_to_record,
    message_to_record,
    record_to_conversation,
    summary,
)
from .embedding import TextEmbedder, open_embedder
from .errors import ConversationNotFoundError, InvalidInputError
from .exchange import CsvFormulas, ExportFormat, ImportFormat, ImportReport, OnConflict, OnError, export_to, import_into
from .meaning import EmbeddingProgress, SearchMode, SearchResults, check_mode, embed_pending, meaning_search
from .protocol import (
    Capability,
    ConversationFilter,
    ConversationStore,
    RevisionedSaving,
    SaveItem,
    SearchOrder,
    SummaryListing,
    TimeField,
    offers,
)
from .query import parse
from .records import EXPIRES_AT as EXPIRES_AT  # re-exported next to FORKED_FROM
from .records import ConversationRecord, StoredConversation, check_metadata_filter
from .registry import open_store
from .rules import check_page, check_positive_int, check_window, window_of
from .save_tracking import SavedState, SavedStates
from .snippet import snippet
from .timeutil import TimeBound, time_key, time_range
from .transfer import iter_stored

log = logging.getLogger("qv_session_manager")

#: save_many writes a batch once it holds this many messages, however few conversations.
BATCH_MESSAGE_LIMIT = 20_000

#: The metadata key of a fork naming where it branched off (see SessionManager.fork_conversation).
FORKED_FROM = "forked_from"
# EXPIRES_AT, the metadata key of a conversation's expiry (see SessionManager.set_expiry),
# is defined in records (which validates it) and imported above.

#: The environment variable naming the store when the constructor is given none.
URL_VARIABLE = "QV_SESSION_MANAGER_URL"
DEFAULT_PATH = "session_manager.db"
#: The default file of qv-session-manager 0.3.0, opened when it exists and ours does not.
SEED_DEFAULT_PATH = "session_manager.sqlite3"


def default_url() -> str:
    """The store a SessionManager given no store opens: $QV_SESSION_MANAGER_URL, else the default file."""
    from_environment = os.environ.get(URL_VARIABLE)
    if from_environment:
        return from_environment
    if not os.path.exists(DEFAULT_PATH) and os.path.exists(SEED_DEFAULT_PATH):
        log.info("using %s, the default file of qv-session-manager 0.3.0", SEED_DEFAULT_PATH)
        return f"sqlite:///{SEED_DEFAULT_PATH}"
    return f"sqlite:///{DEFAULT_PATH}"


def _lookup_ids(value: object) -> list[str]:
    """The stored forms an id may have, canonical first; [] when it cannot name anything.

    Ids are stored canonically, except ids written by other tools (such as 0.3.0) as
    a UUID spelled differently: those are still found under their own spelling.
    """
    if value is None or value == "":
        return []
    key = canonical_id(value)
    return [key] if not isinstance(value, str) or value == key else [key, value]


def _messages(messages: Iterable[Message] | None, what: str) -> list[Message]:
    try:
        return list(messages)  # type: ignore[arg-type]
    except TypeError:
        raise InvalidInputError(f"{what} must be an iterable of Message, not {type(messages).__name__}") from None


class SessionManager:
    """Stores qv-ollama-sdk conversations and finds them again.

    Choose the store with exactly one of:

    - ``db_path``: an SQLite file (the seed's form), e.g. ``SessionManager("chats.db")``;
    - ``url``: any installed backend, e.g. ``"sqlite:///chats.db"``, ``"memory://"``;
    - ``store``: an object satisfying :class:`~qv_session_manager.protocol.ConversationStore`.

    With none of them, the ``QV_SESSION_MANAGER_URL`` environment variable decides,
    else the SQLite file ``session_manager.db`` in the working directory (or the
    seed 0.3.0 default ``session_manager.sqlite3`` when only that one exists).
    ``options`` go to the backend (e.g. ``synchronous="normal"`` for SQLite).

    ``embedder`` (a spec such as ``"wordllama"`` or ``"ollama:nomic-embed-text"``, or a
    :class:`~qv_session_manager.embedding.TextEmbedder`) enables searches by meaning
    (``search_conversations(mode=...)``) and :meth:`index_embeddings`. Saves never
    embed; with ``embed_in_background=True`` a worker thread embeds what saves left
    pending (see :mod:`qv_session_manager.background`), on stores that keep vectors.
    """

    def __init__(
        self,
        db_path: str | os.PathLike[str] | None = None,
        *,
        url: str | None = None,
        store: ConversationStore | None = None,
        embedder: str | TextEmbedder | None = None,
        embed_in_background: bool = False,
        **options: Any,
    ) -> None:
        given = [name for name, value in (("db_path", db_path), ("url", url), ("store", store)) if value is not None]
        if len(given) > 1:
            raise InvalidInputError(f"give only one of db_path, url and store (got {', '.join(given)})")
        if store is not None:
            if options:
                raise InvalidInputError("options apply to db_path or url, not to a ready store")
            if not isinstance(store, ConversationStore):
                raise InvalidInputError(f"{type(store).__name__} does not implement ConversationStore")
            self.store = store
        elif db_path is not None:
            from .backends.sqlite import open_path

            self.store = open_path(db_path, options)
        else:
            self.store = open_store(url if url is not None else default_url(), **options)
        #: The embedder of searches by meaning (``embedder=``: a spec such as ``"wordllama"``
        #: or ``"ollama:nomic-embed-text"``, or a TextEmbedder), or None.
        self.embedder: TextEmbedder | None = open_embedder(embedder) if isinstance(embedder, str) else embedder
        # Not isinstance(TextEmbedder): on Python 3.11 that reads every property, and an
        # Ollama embedder's ``dimension`` asks the server (which may be down) on first read.
        if self.embedder is not None and not all(
            callable(getattr(self.embedder, method, None)) for method in ("embed", "embed_queries")
        ):
            raise InvalidInputError(f"embedder must be a spec string or a TextEmbedder, not {type(embedder).__name__}")
        if not isinstance(embed_in_background, bool):
            raise InvalidInputError("embed_in_background must be True or False")
        if embed_in_background and self.embedder is None:
            raise InvalidInputError("embed_in_background needs an embedder: SessionManager(..., embedder='wordllama')")
        #: The worker embedding after saves (``embed_in_background=True``), or None.
        self.background: BackgroundEmbedder | None = None
        if embed_in_background and offers(self.store, Capability.VECTOR_STORAGE):
            self.background = BackgroundEmbedder(self.store, self.embedder)
        self._saved = SavedStates()
        self._checked_store: object = None
        self._revisioned = False
        self._summarizes = False

    @property
    def db_path(self) -> str | None:
        """The SQLite file this manager stores in, as it was given (0.3.0's attribute),
        as a str (``os.fspath`` of a ``Path``; 0.3.0 kept the object itself).

        ``":memory:"`` for an in-memory SQLite store; None when the store is not an
        SQLite file (another backend, or a store passed as ``store=``). Read-only:
        0.3.0 reopened ``db_path`` on every call, this manager keeps its store open.
        """
        from .backends.sqlite import SQLiteStore

        return self.store.path if isinstance(self.store, SQLiteStore) else None

    # -- lifecycle -----------------------------------------------------------

    def close(self) -> None:
        """Stop the background embedder (after its batch under way), then close the store. Closing twice is harmless."""
        if self.background is not None:
            self.background.close()
        self._saved.clear()
        self.store.close()

    def __enter__(self) -> SessionManager:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self.close()

    # -- writing -------------------------------------------------------------

    def save_conversation(
        self,
        conversation: Conversation,
        messages: Iterable[Message] | None = None,
        *,
        replace: bool = False,
    ) -> None:
        """Save a conversation and the given messages in one transaction.

        ``messages`` defaults to ``conversation.messages``. Messages already stored
        are updated in place and keep their position, new ones are appended in the
        order given, and stored messages that are not given are kept, so saving just
        the newest message appends it. ``replace=True`` makes the stored messages
        exactly ``messages`` in that order (for edits and regenerations).

        Raises InvalidInputError (a ValueError) for data that cannot be stored: a
        lone surrogate, metadata that is not JSON, duplicate message ids, an
        unparsable ``metadata["expires_at"]``, or an expiry the store does not
        honour (no ``Capability.EXPIRY``). Nothing is written then.

        With a store that names revisions (RevisionedSaving: SQLite, memory, PostgreSQL), saving
        a conversation this manager saved before converts and sends only the
        messages that changed since (new, edited in place, replaced), so a save
        costs what changed, not the whole history; the stored result is the same
        (see :mod:`qv_session_manager.save_tracking`).
        """
        self._save(conversation, messages, replace)
        if self.background is not None:
            self.background.wake()

    def _save(self, conversation: Conversation, messages: Iterable[Message] | None, replace: bool) -> None:
        record = conversation_to_record(conversation)
        retention.check_expiry_supported(self.store, record)
        chosen = conversation.messages if messages is None else _messages(messages, "messages")
        store = self.store
        if store is not self._checked_store:
            self._check_fast_paths(store)
        if not self._revisioned:
            store.save(record, [message_to_record(m) for m in chosen], replace=replace)
            return
        saved = None if replace else self._saved.get(record.id)
        if saved is not None:
            sent = saved.changed(chosen)
            if sent is not None:
                records = [message_to_record(chosen[index]) for index in sent]
                if not saved.moved(sent, records):
                    revision = cast(RevisionedSaving, store).save_revisioned(record, records, expected=saved.revision)
                    if revision is not None:
                        self._remember(record.id, saved.advanced(revision, chosen, sent, records))
                        return
        records = [message_to_record(m) for m in chosen]
        revision = cast(RevisionedSaving, store).save_revisioned(record, records, replace=replace)
        self._remember(record.id, None if revision is None else SavedState.of(revision, chosen, records))

    def _check_fast_paths(self, store: ConversationStore) -> None:
        # once per store: saves and listings are the hot paths
        self._revisioned = offers(store, Capability.REVISIONED_SAVING)
        self._summarizes = offers(store, Capability.SUMMARY_LISTING)
        self._checked_store = store

    def _remember(self, conversation_id: str, state: SavedState | None) -> None:
        if state is None:
            self._saved.forget(conversation_id)
        else:
            self._saved.put(conversation_id, state)

    def save_many(self, conversations: Iterable[Conversation], *, batch_size: int = 500) -> int:
        """Save many conversations, each with all its messages: the fast way to import.

        Each conversation is saved as by ``save_conversation(conversation)``. They are
        taken from the iterable lazily and written in batches of ``batch_size``
        conversations (fewer when a batch reaches BATCH_MESSAGE_LIMIT messages), so a
        generator of any length is imported in bounded memory. On stores with bulk
        saves (SQLite, PostgreSQL, memory) each batch is one transaction: many times
        faster than one save per conversation, and all or nothing. Other stores save
        the conversations one by one.

        Returns the number of conversations saved. Raises InvalidInputError for a
        conversation that cannot be stored, naming its place in the iterable: the
        batches before its own are saved, its own batch is not.
        """
        check_positive_int(batch_size, "batch_size")
        saved = 0
        batch: list[SaveItem] = []
        batch_messages = 0
        for index, conversation in enumerate(conversations):
            try:
                record = conversation_to_record(conversation)
                retention.check_expiry_supported(self.store, record)
                messages = [message_to_record(m) for m in conversation.messages]
            except InvalidInputError as exc:
                raise InvalidInputError(
                    f"conversation {index} of the input cannot be stored ({exc}); "
                    f"the {saved} conversations before its batch were saved"
                ) from exc
            batch.append((record, messages))
            batch_messages += len(messages)
            if len(batch) >= batch_size or batch_messages >= BATCH_MESSAGE_LIMIT:
                saved += self._save_batch(batch)
                batch, batch_messages = [], 0
        if batch:
            saved += self._save_batch(batch)
        return saved

    def _save_batch(self, batch: list[SaveItem]) -> int:
        if offers(self.store, Capability.BULK_SAVING):
            saved = self.store.save_many(batch)
        else:
            for record, messages in batch:
                self.store.save(record, messages)
            saved = len(batch)
        if self.background is not None:
            self.background.wake()
        return saved

    def add_messages(
        self, conversation_id: str, messages: Iterable[Message], *, updated_at: datetime | None = None
    ) -> None:
        """Append messages to a stored conversation without loading it, in one transaction.

        ``updated_at`` (default: the latest ``created_at`` of the messages, or
        unchanged when there are none) becomes the conversation's update time; its
        other fields stay as stored, even if another process just changed them.
        Raises ConversationNotFoundError (a LookupError), writing nothing, when the
        conversation is not stored.
        """
        records = [message_to_record(m) for m in _messages(messages, "messages")]
        newest = updated_at
        if newest is None and records:
            newest = max((r.created_at for r in records), key=time_key)
        if not any(self.store.append(key, records, updated_at=newest) for key in _lookup_ids(conversation_id)):
            raise ConversationNotFoundError(f"no conversation {conversation_id!r} to add messages to")
        if self.background is not None:
            self.background.wake()

    def delete_conversation(self, conversation_id: str) -> bool:
        """Delete a conversation with its messages and search entries.

        Returns True when it existed, False (a no-op) when it did not.
        """
        return any(self.store.delete(key) for key in _lookup_ids(conversation_id))

    def delete_message(self, conversation_id: str, message_id: str) -> bool:
        """Delete one message. Returns False when the conversation or message is missing."""
        return any(
            self.store.delete_message(key, message_key)
            for key in _lookup_ids(conversation_id)
            for message_key in _lookup_ids(message_id)
        )

    # -- reading -------------------------------------------------------------

    def _get(self, conversation_id: object) -> ConversationRecord | None:
        for key in _lookup_ids(conversation_id):
            record = self.store.get(key)
            if record is not None:
                return record
        return None

    def load_conversation(
        self,
        conversation_id: str,
        *,
        last_messages: int | None = None,
        last_turns: int | None = None,
        keep_system: bool = True,
    ) -> Conversation | None:
        """The conversation with its messages in stored order, or None if missing.

        With ``last_messages`` or ``last_turns`` (not both; positive ints) only a window
        of the end is loaded: the last messages, or the messages from the N-th last
        user message on, started earlier when needed so that it never begins with tool
        results cut off from the assistant message that called the tools; with
        ``keep_system`` (default) the conversation's leading system messages come in
        front. The rule is :func:`qv_session_manager.rules.window_indices`. Stores with
        ``load_window`` (SQLite, PostgreSQL, memory, jsonl) read only the window;
        others are loaded whole and cut. Raises InvalidInputError for bad sizes.
        Do not save a windowed conversation back with ``replace=True``: that would
        drop the messages it does not hold.
        """
        if last_messages is None and last_turns is None:
            for key in _lookup_ids(conversation_id):
                stored = self.store.load(key)
                if stored is not None:
                    return record_to_conversation(stored)
            return None
        return self._load_window(conversation_id, last_messages, last_turns, keep_system)

    def get_conversation_by_id(self, conversation_id: str) -> Conversation | None:
        """Same as :meth:`load_conversation` (kept from the seed API)."""
        return self.load_conversation(conversation_id)

    def resume_conversation(
        self, conversation_id: str, *, last_messages: int | None = None, last_turns: int | None = None
    ) -> dict[str, Any] | None:
        """``{"conversation": Conversation, "last_message": dict}`` to continue a chat.

        ``last_message`` is the last stored message as ``Message.to_db_dict()``.
        ``last_messages``/``last_turns`` load only a window of the end, as
        :meth:`load_conversation` does (leading system messages kept). Returns None
        when the conversation is missing or has no messages.
        """
        conversation = self.load_conversation(conversation_id, last_messages=last_messages, last_turns=last_turns)
        if conversation is None or not conversation.messages:
            return None
        return {"conversation": conversation, "last_message": conversation.messages[-1].to_db_dict()}

    # -- windows and branches (see README "Long conversations: windows and branches") --

    def _load_window(
        self, conversation_id: str, last_messages: int | None, last_turns: int | None, keep_system: bool
    ) -> Conversation | None:
        check_window(last_messages, last_turns, keep_system)
        for key in _lookup_ids(conversation_id):
            if offers(self.store, Capability.WINDOWED_LOADING):
                stored = self.store.load_window(
                    key, last_messages=last_messages, last_turns=last_turns, keep_system=keep_system
                )
            else:
                whole = self.store.load(key)
                stored = (
                    None
                    if whole is None
                    else window_of(whole, last_messages=last_messages, last_turns=last_turns, keep_system=keep_system)
                )
            if stored is not None:
                return record_to_conversation(stored)
        return None

    def fork_conversation(self, conversation_id: str, at_message_id: str, *, title: str | None = None) -> Conversation:
        """Branch a conversation: save a copy of its history up to ``at_message_id`` and return it.

        The fork has a new conversation id and new message ids; messages keep their
        roles, content, tool calls, timestamps and metadata. It is created now
        (``created_at``/``updated_at``), keeps the original's model name, takes
        ``title`` (default: the original's), and its metadata is the original's plus
        ``"forked_from": {"conversation_id": ..., "message_id": ...}`` naming the
        original and the message given (replacing a ``forked_from`` the original had).
        A fork never ends inside a tool-call group: the tool results (role ``tool``)
        directly after the message forked at are copied too, so forking at an
        assistant message with tool calls, or at one of its results, keeps all its
        results (the rule of resume windows, seen from the other end). The original
        is not changed.

        Raises ConversationNotFoundError (a LookupError) when the conversation or the
        message is missing, InvalidInputError for an unusable title.
        """
        original = None
        for key in _lookup_ids(conversation_id):
            original = self.store.load(key)
            if original is not None:
                break
        if original is None:
            raise ConversationNotFoundError(f"no conversation {conversation_id!r} to fork")
        wanted = set(_lookup_ids(at_message_id))
        at = next((i for i, m in enumerate(original.messages) if m.id in wanted), None)
        if at is None:
            raise ConversationNotFoundError(
                f"conversation {conversation_id!r} has no message {at_message_id!r} to fork at"
            )
        end = at + 1
        while end < len(original.messages) and original.messages[end].role == "tool":
            end += 1
        now = datetime.now()
        source = original.conversation
        fork = dataclass_replace(
            source,
            id=str(uuid.uuid4()),
            title=source.title if title is None else title,
            created_at=now,
            updated_at=now,
            metadata={
                **source.metadata,
                FORKED_FROM: {"conversation_id": source.id, "message_id": original.messages[at].id},
            },
        )
        messages = tuple(dataclass_replace(m, id=str(uuid.uuid4())) for m in original.messages[:end])
        retention.check_expiry_supported(self.store, fork)
        self.store.save(fork, messages)
        if self.background is not None:
            self.background.wake()
        return record_to_conversation(StoredConversation(fork, messages))

    def iter_conversations(
        self, *, metadata: Mapping[str, Any] | None = None, page_size: int = 200
    ) -> Iterator[Conversation]:
        """Every conversation with its messages, most recently updated first, lazily.

        Reads a page of ``page_size`` conversations at a time and loads them one by
        one, so memory stays bounded however big the store (for exports and backups).
        ``metadata`` filters as in :meth:`list_conversations`. Conversations saved
        while the iteration runs may or may not be included; deleted ones are skipped.
        """
        check_metadata_filter(metadata)
        check_positive_int(page_size, "page_size")
        stored = iter_stored(self.store, ConversationFilter(metadata=metadata), page_size=page_size)
        return map(record_to_conversation, stored)

    # -- export and import (see qv_session_manager.exchange, docs/export-format.md) --

    def export_conversations(
        self,
        destination: str | os.PathLike[str] | TextIO,
        *,
        format: ExportFormat = "jsonl",
        metadata: Mapping[str, Any] | None = None,
        progress: Callable[[int], None] | None = None,
        csv_formulas: CsvFormulas = "escape",
    ) -> int:
        """Write every conversation (passing the ``metadata`` filter) to ``destination``; return how many.

        Conversations come newest first, read from the store a page at a time, so
        memory stays bounded however big the store. ``format``: ``"jsonl"`` or
        ``"json"`` (lossless, importable), ``"csv"`` or ``"markdown"`` (views). A path
        is written atomically (temporary file renamed at the end; on an error the
        target is untouched); a text stream is written to as is and not closed.
        ``progress`` is called with the running count after each conversation.
        CSV cells starting with ``=``, ``+``, ``-``, ``@``, tab or carriage return get a
        leading ``'`` so that a spreadsheet does not run them as formulas;
        ``csv_formulas="raw"`` writes them as stored. Raises InvalidInputError for an
        unknown format, a bad filter or a bad ``csv_formulas`` (``"raw"`` with a format
        other than CSV too), StorageError when the file cannot be written.
        """
        check_metadata_filter(metadata)
        stored = iter_stored(self.store, ConversationFilter(metadata=metadata))
        return export_to(stored, destination, format=format, progress=progress, csv_formulas=csv_formulas)

    def import_conversations(
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
        """Save the conversations of an export (``"jsonl"``, ``"json"``) or a ShareGPT dump.

        Conversations are saved whole, in file order, in batches of ``batch_size`` (one
        transaction each on stores with bulk saves). A conversation whose id is
        already stored, or repeats an earlier one of the file, follows
        ``on_conflict``: ``"skip"`` (default: the stored one is kept, so importing
        the same file again adds and changes nothing), ``"replace"`` (the file's
        version replaces the stored one whole), ``"rename"`` (kept both: saved under
        a new id) or ``"fail"`` (a bad line); two conversations are never merged.
        A conversation without messages is stored from ``jsonl``/``json`` and
        skipped from ``sharegpt`` unless ``keep_empty`` says otherwise. With
        ``on_error="raise"`` the first bad line raises ImportFormatError (``.line``)
        after the conversations before it are saved; with ``"skip"`` bad lines are
        listed in the report's ``skipped`` as (line, reason) and the rest is
        imported. The report counts imported, skipped, replaced, renamed and
        empty entries. A missing, foreign or newer header, or broken JSON syntax in a
        ``json``/``sharegpt`` document, raises in both modes. ``progress`` is called
        with the running number saved after each batch.
        """
        try:
            return import_into(
                retention.guarded(self.store),  # an expiry the store would ignore is refused, as in saves
                source,
                format=format,
                batch_size=batch_size,
                message_limit=BATCH_MESSAGE_LIMIT,
                on_error=on_error,
                on_conflict=on_conflict,
                keep_empty=keep_empty,
                progress=progress,
            )
        finally:  # what the batches before an error saved is pending too
            if self.background is not None:
                self.background.wake()

    # -- retention and expiry (see README "Retention and expiry") --------------

    def set_expiry(self, conversation_id: str, expires_at: datetime | None) -> bool:
        """Make a stored conversation expire at ``expires_at`` (None: never); False when it is missing.

        The expiry goes into ``metadata["expires_at"]`` as ``expires_at.isoformat()``
        (a naive datetime counts as UTC), so it survives loading and saving the
        ``Conversation`` again, exports and copies. From that instant on the
        conversation is missing to every read (:meth:`purge_expired` frees its
        space); an instant already past hides it at once. Messages and other fields
        are kept. It reads the conversation, then saves it (the protocol has no
        single-field update): a change to its title or metadata saved by someone else
        in between is overwritten, and a conversation deleted in between comes back
        without its messages.

        Raises InvalidInputError, whether or not the id exists, unless ``expires_at``
        is a datetime or None, and for a datetime when the store does not declare
        ``Capability.EXPIRY``.
        """
        retention.expiry_text(expires_at)
        if expires_at is not None and Capability.EXPIRY not in self.store.capabilities:
            raise InvalidInputError(
                f"{type(self.store).__name__} does not declare Capability.EXPIRY: it would ignore the expiry"
            )
        record = self._get(conversation_id)
        if record is None:
            return False
        self.store.save(retention.with_expiry(record, expires_at), [])
        return True

    def delete_older_than(self, cutoff: datetime, *, field: TimeField = "updated_at") -> int:
        """Delete every conversation whose ``field`` is strictly before ``cutoff``; return how many.

        The comparison is that of ``search_by_time``'s bounds (naive timestamps
        count as UTC); a conversation updated exactly at ``cutoff`` stays. Works on
        every store through listing and deleting, a page at a time (bounded memory),
        each delete in its own transaction. Raises InvalidInputError unless
        ``cutoff`` is a datetime and ``field`` is ``"updated_at"`` or ``"created_at"``.
        """
        return retention.delete_older_than(self.store, cutoff, field)

    def keep_newest(self, count: int, *, field: TimeField = "updated_at") -> int:
        """Delete all but the ``count`` newest conversations; return how many were deleted.

        Newest is the order of :meth:`list_conversations` (by ``field``, ties by id).
        ``count=0`` deletes every conversation. Works on every store a page at a time,
        as :meth:`delete_older_than` does. Raises InvalidInputError unless ``count``
        is an int of at least 0 (not a bool) and ``field`` a time field.
        """
        return retention.keep_newest(self.store, count, field)

    def purge_expired(self) -> int:
        """Physically remove the expired conversations with their messages and search entries; return how many.

        Reads never show expired conversations anyway; this frees their space. 0 on a
        store that does not declare ``Capability.PURGING`` (the ``Expiring`` side).
        """
        return retention.purge_expired(self.store)

    def list_conversations(
        self,
        *,
        limit: int | None = None,
        offset: int = 0,
        after: str | None = None,
        metadata: Mapping[str, Any] | None = None,
    ) -> list[dict[str, Any]]:
        """Conversation dicts (without messages), most recently updated first.

        Each dict has ``id``, ``title``, ``model_name``, ``created_at`` and
        ``updated_at`` (ISO strings as stored) and ``metadata``. ``metadata``
        filters on top-level keys (``{"topic": "web-development"}``). ``after`` is
        the id of the last conversation of the previous page (keyset paging);
        a missing id there raises ConversationNotFoundError.
        """
        return self._list(ConversationFilter(metadata=metadata), limit, offset, after)

    def search_by_time(
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
        """Conversations whose ``field`` lies between ``start`` and ``end``, newest first.

        Bounds are ISO strings (``"2025-01-20"``, ``"2025-01-20T10:00:00+02:00"``),
        dates or datetimes, both inclusive; a date-only ``end`` includes that whole
        day. Naive timestamps compare as UTC (see :mod:`qv_session_manager.timeutil`).
        Raises InvalidInputError for a bound that is not a date.
        """
        if field not in ("updated_at", "created_at"):
            raise InvalidInputError(f"field must be 'updated_at' or 'created_at', not {field!r}")
        lower, upper = time_range(start, end)
        return self._list(ConversationFilter(field, lower, upper, metadata), limit, offset, after)

    def _list(
        self, filter: ConversationFilter, limit: int | None, offset: int, after: str | None
    ) -> list[dict[str, Any]]:
        check_metadata_filter(filter.metadata)
        boundary = None
        if after is not None:
            boundary = self._get(after)
            if boundary is None:
                raise ConversationNotFoundError(f"cannot page after {after!r}: no such conversation")
        store = self.store
        if store is not self._checked_store:
            self._check_fast_paths(store)
        if self._summarizes:
            return cast(SummaryListing, store).list_summaries(filter, limit=limit, offset=offset, after=boundary)
        return [summary(record) for record in store.list(filter, limit=limit, offset=offset, after=boundary)]

    def search_conversations(
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
        """Conversations whose title or a message matches ``query``, by words or by meaning.

        The query language (words, "phrases", prefix*, -exclusion, OR) is described
        in :mod:`qv_session_manager.query`; every string is a valid query and an
        empty one finds nothing. Results are conversation dicts as in
        :meth:`list_conversations`, newest first, or best match first with
        ``order="relevance"`` (each dict then has a ``score``). With
        ``snippets=True`` each dict also has ``snippet`` (text around the first
        match, matches wrapped in ``mark``) and ``message_id`` (None for a title match).

        ``mode="semantic"`` ranks conversations by the meaning of their messages
        (the manager's ``embedder``; see :meth:`index_embeddings`), ``"hybrid"`` fuses
        that ranking with the text one (:func:`qv_session_manager.meaning.fuse`); both
        are best first with a ``score`` whatever ``order`` says, and name the best
        message. The result is a list with ``mode`` (the ranking used: ``"text"`` when
        vectors could not be used), ``fallback`` (why) and ``pending`` (messages not
        embedded yet); see :class:`~qv_session_manager.meaning.SearchResults`.
        InvalidInputError for a semantic or hybrid search without an embedder.
        """
        if not (isinstance(mark, tuple) and len(mark) == 2 and all(isinstance(m, str) for m in mark)):
            raise InvalidInputError(f"mark must be a pair of strings, not {mark!r}")
        mode = check_mode(mode)
        parsed = parse(query)
        filter = ConversationFilter(metadata=metadata)
        used, fallback, pending = mode, None, None
        if mode == "text":
            hits = self.store.search(parsed, filter, order=order, limit=limit, offset=offset, with_text=snippets)
        else:
            if self.embedder is None:
                raise InvalidInputError(
                    f"mode={mode!r} searches by meaning and needs an embedder: "
                    "SessionManager(..., embedder='wordllama') or 'ollama:<model>'"
                )
            check_page(limit, offset)
            hits, used, fallback, pending = meaning_search(
                self.store,
                self.embedder,
                query,
                parsed,
                filter,
                mode=mode,
                limit=limit,
                offset=offset,
                with_text=snippets,
            )
        scored = order == "relevance" or mode != "text"
        results = []
        for hit in hits:
            item = summary(hit.conversation)
            if scored:
                item["score"] = hit.score
            if snippets:
                item["message_id"] = hit.message_id
                item["snippet"] = snippet(hit.text or "", parsed, mark=mark)
            results.append(item)
        return SearchResults(results, mode=used, fallback=fallback, pending=pending)

    def index_embeddings(
        self,
        *,
        batch_size: int = 32,
        limit: int | None = None,
        progress: Callable[[int, int], None] | None = None,
    ) -> EmbeddingProgress:
        """Embed the messages that have no vector yet with the manager's ``embedder``.

        Saves never embed (they stay as fast as without an embedder); call this after
        saving, on a schedule, or from ``qv-sessions embed``. What is pending is read
        from the store each time, so an interrupted run, a crash or a restart loses
        nothing, and an edited message is embedded again. Returns how many were
        embedded and how many are still pending. InvalidInputError without an embedder
        or for a store that keeps no vectors; the embedder's errors
        (EmbedderUnavailableError...) pass through, keeping what was stored before.
        """
        if self.embedder is None:
            raise InvalidInputError("index_embeddings needs an embedder: SessionManager(..., embedder='wordllama')")
        return embed_pending(self.store, self.embedder, batch_size=batch_size, limit=limit, progress=progress)
