"""The storage protocol: what a backend must do.

A backend is any object with these methods; it need not inherit from anything.
Backends exchange the records of :mod:`qv_session_manager.records` and never see
qv-ollama-sdk types. The rules every backend follows (checked by the shared test
suite) are stated in the docstrings below.
"""

from __future__ import annotations

import builtins
from collections.abc import Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import Enum
from typing import TYPE_CHECKING, Any, Literal, Protocol, overload, runtime_checkable

from .query import Query
from .records import ConversationRecord, MessageRecord, SearchHit, StoredConversation
from .vector_records import EmbeddingTask, VectorSpace

if TYPE_CHECKING:  # annotations only: the core needs nothing beyond the standard library at run time
    from typing_extensions import TypeIs

TimeField = Literal["updated_at", "created_at"]
SearchOrder = Literal["recent", "relevance"]


class Capability(str, Enum):
    """Optional features a backend may declare in its ``capabilities`` set.

    The set is the one place a store says what it can do: the first four are
    behaviours; the others are the optional sides below, each a method with the
    contract of its protocol class. Callers use a side only when it is declared
    (see :func:`offers`), so a wrapper forwards what its inner store can do by
    forwarding (a part of) the inner set, without mirroring methods conditionally.
    The conformance suite fails a store whose set and methods disagree.
    """

    #: Data survives ``close()`` and a new store opened on the same URL sees it.
    PERSISTENT = "persistent"
    #: Several processes may read and write the same store at once.
    MULTI_PROCESS = "multi_process"
    #: ``search(order="relevance")`` ranks by a real relevance score (BM25 or better).
    RELEVANCE = "relevance"
    #: Honours ``metadata["expires_at"]`` on every read (see "Expiry" in ConversationStore).
    EXPIRY = "expiry"
    #: :class:`BulkSaving`: ``save_many``.
    BULK_SAVING = "bulk_saving"
    #: :class:`RevisionedSaving`: ``save_revisioned``.
    REVISIONED_SAVING = "revisioned_saving"
    #: :class:`SummaryListing`: ``list_summaries``.
    SUMMARY_LISTING = "summary_listing"
    #: :class:`WindowedLoading`: ``load_window``.
    WINDOWED_LOADING = "windowed_loading"
    #: :class:`Expiring`: ``purge_expired`` (declared with ``EXPIRY``).
    PURGING = "purging"
    #: :class:`Droppable`: ``drop``.
    DROPPABLE = "droppable"
    #: :class:`IndexInspection`: ``indexed_tokens``.
    INDEX_INSPECTION = "index_inspection"
    #: :class:`VectorStorage`: ``pending_embeddings``, ``store_embeddings``, ``vector_search``,
    #: ``embedding_counts``, ``forget_embeddings``.
    VECTOR_STORAGE = "vector_storage"
    #: :class:`TokenCounting`: ``common_tokens``.
    TOKEN_COUNTING = "token_counting"


@dataclass(frozen=True)
class ConversationFilter:
    """Which conversations a listing or search considers, and their order.

    ``start`` is inclusive, ``end`` exclusive; both compare with the rule of
    :mod:`qv_session_manager.timeutil` (naive timestamps count as UTC) against the
    ``field`` timestamp, which is also the sort key of newest-first listings.
    ``metadata`` follows :func:`qv_session_manager.records.metadata_matches`.
    """

    field: TimeField = "updated_at"
    start: datetime | None = None
    end: datetime | None = None
    metadata: Mapping[str, Any] | None = None


@runtime_checkable
class ConversationStore(Protocol):
    """A place conversations live. All methods are safe to call from several threads.

    Common rules:

    - Ids are opaque non-empty strings, compared exactly.
    - Newest first means: descending by the filter's time field (see timeutil),
      ties broken by descending conversation id. Every backend returns the same
      order.
    - A call that raises leaves the stored data exactly as it was.
    - Errors are :class:`qv_session_manager.errors.SessionStoreError` subclasses;
      engine exceptions never escape.

    Expiry (stores declaring ``Capability.EXPIRY``): a conversation whose metadata
    holds ``"expires_at"`` (:data:`qv_session_manager.records.EXPIRES_AT`, an ISO
    8601 timestamp, naive counting as UTC, parsed by
    :func:`qv_session_manager.records.expiry_of`) at or before the current instant
    is **missing** to every call: ``load``, ``load_window`` and ``get`` give None,
    ``list`` and ``search`` leave it out, ``append`` and ``delete_message``
    return False and change nothing, ``delete`` returns False but removes it
    physically (as ``purge_expired`` would, so that counts of purges agree
    everywhere), and ``save`` or ``save_many`` onto its id start a fresh
    conversation, in the same transaction: none of its old messages or search
    entries ever reappear. "Now"
    is taken at each call (``datetime.now(timezone.utc)``) and compared with the
    rule of :mod:`qv_session_manager.timeutil`. A ``"expires_at"`` that does not
    parse makes the record itself invalid (InvalidInputError when it is built, and
    from a save of a record changed afterwards, as for any invalid metadata).
    """

    capabilities: frozenset[Capability]

    def save(
        self,
        conversation: ConversationRecord,
        messages: Sequence[MessageRecord],
        *,
        replace: bool = False,
    ) -> None:
        """Insert or update a conversation and the given messages, atomically.

        Messages already stored (same id in this conversation) are updated in place
        and keep their position; new ones are appended in the order given; stored
        messages not given are kept. With ``replace=True`` the stored messages
        become exactly ``messages``, in that order. An unchanged message is not
        rewritten. Raises InvalidInputError for duplicate message ids.
        """
        ...

    def append(
        self,
        conversation_id: str,
        messages: Sequence[MessageRecord],
        *,
        updated_at: datetime | None = None,
    ) -> bool:
        """Add messages to a stored conversation, atomically, without touching its other fields.

        Messages are inserted or updated exactly as by ``save`` (without ``replace``);
        ``updated_at``, when given, becomes the conversation's update time. The
        conversation is read and written in one transaction, so concurrent changes to
        its title or metadata are kept. Returns False, writing nothing, when the
        conversation does not exist (a deleted conversation never comes back).
        """
        ...

    def load(self, conversation_id: str) -> StoredConversation | None:
        """The conversation with its messages in stored order, or None if missing."""
        ...

    def get(self, conversation_id: str) -> ConversationRecord | None:
        """The conversation without its messages, or None if missing."""
        ...

    def delete(self, conversation_id: str) -> bool:
        """Remove a conversation, its messages and their search entries.

        Returns False (and changes nothing) when the id is missing.
        """
        ...

    def delete_message(self, conversation_id: str, message_id: str) -> bool:
        """Remove one message and its search entries. False when either id is missing."""
        ...

    def list(
        self,
        filter: ConversationFilter,
        *,
        limit: int | None = None,
        offset: int = 0,
        after: ConversationRecord | None = None,
    ) -> list[ConversationRecord]:
        """Conversations passing ``filter``, newest first.

        ``after`` continues a listing after that conversation (keyset paging: pages
        neither overlap nor skip, even while others write); ``offset`` skips rows;
        ``limit`` None means all.
        """
        ...

    def search(
        self,
        query: Query,
        filter: ConversationFilter,
        *,
        order: SearchOrder = "recent",
        limit: int | None = None,
        offset: int = 0,
        with_text: bool = False,
    ) -> builtins.list[SearchHit]:
        """Conversations with a title or message matching ``query``, one hit each.

        ``order="recent"`` is newest first; ``"relevance"`` is best score first,
        ties newest first. Each hit names its document (title, else the first
        matching message in stored order) and carries its text when ``with_text``.
        An empty query returns [].
        """
        ...

    def close(self) -> None:
        """Release resources. Closing twice is harmless; every other call afterwards raises StorageError."""
        ...


#: One conversation to save and the messages to save with it.
SaveItem = tuple[ConversationRecord, Sequence[MessageRecord]]


@runtime_checkable
class BulkSaving(Protocol):
    """An optional side of a store: saving many conversations in one transaction.

    Declared as ``Capability.BULK_SAVING`` (see :func:`offers`).

    Stores that have it are used by :meth:`SessionManager.save_many
    <qv_session_manager.SessionManager.save_many>` and by copies; for other stores
    those fall back to one ``save`` per conversation.
    """

    def save_many(self, items: Iterable[SaveItem]) -> int:
        """Save each ``(conversation, messages)`` pair as ``save`` would, all in one transaction.

        Pairs are applied in the order given (the same conversation may appear twice).
        All or nothing: if any pair is refused (InvalidInputError) or the write fails,
        nothing is written. Returns the number of pairs saved.
        """
        ...


@runtime_checkable
class RevisionedSaving(Protocol):
    """An optional side of a store: saves that name the revision they wrote, and conditional saves.

    Declared as ``Capability.REVISIONED_SAVING`` (see :func:`offers`).

    :meth:`SessionManager.save_conversation
    <qv_session_manager.SessionManager.save_conversation>` uses it to send only the
    messages that changed since its own last save of a conversation (see
    :mod:`qv_session_manager.save_tracking`); with other stores it sends them all.
    """

    def save_revisioned(
        self,
        conversation: ConversationRecord,
        messages: Sequence[MessageRecord],
        *,
        replace: bool = False,
        expected: Hashable | None = None,
    ) -> Hashable | None:
        """Save exactly as ``save`` does and return the conversation's revision after it.

        A revision is an opaque, hashable token. It changes with every write to the
        conversation through this store or any other store object on the same data
        (saves, appends, message deletes, in any process), and is never given again to
        a conversation deleted and saved anew. With ``expected``, the save happens only
        if the conversation exists, has not expired and is still at that revision;
        otherwise nothing is written and None is returned. Raises as ``save`` does.
        """
        ...


@runtime_checkable
class SummaryListing(Protocol):
    """An optional side of a store: listings as the seed API's conversation dicts, built without records.

    Declared as ``Capability.SUMMARY_LISTING`` (see :func:`offers`).

    :meth:`SessionManager.list_conversations
    <qv_session_manager.SessionManager.list_conversations>` and ``search_by_time`` use it
    when present (and when the store's class does not override ``list`` below the class
    that defines it); for other stores they list records and convert them with
    :func:`qv_session_manager.convert.summary`, with the same result. It exists for speed:
    a store can build the dicts straight from its rows.
    """

    def list_summaries(
        self,
        filter: ConversationFilter,
        *,
        limit: int | None = None,
        offset: int = 0,
        after: ConversationRecord | None = None,
    ) -> builtins.list[dict[str, Any]]:
        """Exactly ``[summary(record) for record in self.list(filter, ...)]`` for the same arguments.

        Same conversations, same order, and each dict equal to what
        :func:`~qv_session_manager.convert.summary` makes of the record: ``id``,
        ``title``, ``model_name``, ``created_at`` and ``updated_at`` as ISO strings
        (``datetime.isoformat()``), ``metadata``. Raises as ``list`` does.
        """
        ...


@runtime_checkable
class WindowedLoading(Protocol):
    """An optional side of a store: loading only the end of a long conversation.

    Declared as ``Capability.WINDOWED_LOADING`` (see :func:`offers`).

    :meth:`SessionManager.load_conversation
    <qv_session_manager.SessionManager.load_conversation>` with ``last_messages`` or
    ``last_turns`` uses it when present; for other stores it loads the whole
    conversation and cuts the window in Python, with the same result.
    """

    def load_window(
        self,
        conversation_id: str,
        *,
        last_messages: int | None = None,
        last_turns: int | None = None,
        keep_system: bool = True,
    ) -> StoredConversation | None:
        """The conversation with only the messages of its window, in stored order; None if missing.

        The window is exactly :func:`qv_session_manager.rules.window_indices` applied
        to the stored messages: the last ``last_messages`` messages, or the messages
        from the ``last_turns``-th last user message on (everything when there are
        fewer), moved earlier so that it never starts on a ``tool`` message, plus,
        with ``keep_system``, the conversation's leading system messages in front.
        It should read a number of messages bounded by the window, not the whole
        history. Raises InvalidInputError, whether or not the id exists, unless exactly
        one of ``last_messages`` and ``last_turns`` is a positive int and
        ``keep_system`` is a bool.
        """
        ...


@runtime_checkable
class Expiring(Protocol):
    """An optional side of a store with ``Capability.EXPIRY``: physically removing expired conversations.

    Declared as ``Capability.PURGING`` (see :func:`offers`).

    Reads already treat expired conversations as missing; this frees their space.
    :meth:`SessionManager.purge_expired <qv_session_manager.SessionManager.purge_expired>`
    uses it when present and returns 0 otherwise.
    """

    def purge_expired(self) -> int:
        """Remove every conversation expired now, with its messages and search entries; return how many."""
        ...


@runtime_checkable
class Droppable(Protocol):
    """An optional side of a store: deleting the store itself, not only what it holds.

    Declared as ``Capability.DROPPABLE`` (see :func:`offers`).

    The conformance suite uses it to leave nothing behind on a server: after each
    test it opens every store name the test used once more and calls ``drop()`` (see
    :func:`qv_session_manager.testing.managed_opener`).
    """

    def drop(self) -> None:
        """Delete every conversation and the place the store was opened on, then close the store.

        The place is what opening it created: tables, a schema, a key prefix, files;
        nothing the store did not create is touched. Opening the same URL or arguments
        again gives an empty store. Afterwards every call raises StorageError, as after
        ``close()``; ``drop()`` on a closed store raises StorageError too.
        """
        ...


@runtime_checkable
class IndexInspection(Protocol):
    """An optional side of a store, for tests and diagnostics: what its search index still holds.

    Declared as ``Capability.INDEX_INSPECTION`` (see :func:`offers`).

    The conformance suite (:mod:`qv_session_manager.testing`) uses it, when a store
    has it, to check that deleted and replaced text leaves the index, which no search
    result can show. Stores without it are not checked for that (the suite says so).
    """

    def indexed_tokens(self) -> builtins.set[str]:
        """Every token the search index holds an entry for, as :func:`qv_session_manager.text.tokens` gives them.

        That is the tokens of every document (title or message content) the index
        still files, including documents of expired conversations not yet removed and
        rows still waiting to be indexed, and nothing else: once a message, a title
        or a conversation is deleted, replaced or rewritten, tokens only it held must
        be gone. It may read the whole index; raises StorageError after ``close()``.
        """
        ...


@runtime_checkable
class TokenCounting(Protocol):
    """An optional side of a store: which words most messages hold, so that hybrid search
    can leave them out of its word ranking (they cost the most and weigh the least).

    Declared as ``Capability.TOKEN_COUNTING`` (see :func:`offers`).
    """

    def common_tokens(self, tokens: Sequence[str], *, share: float, minimum: int) -> builtins.set[str]:
        """Those of ``tokens`` (as :func:`qv_session_manager.text.tokens` gives them) that
        more than ``max(minimum, share x the messages stored)`` messages hold.

        A store may count from its search index: the stored messages include expired
        ones not purged yet, and rows a read-only store could not index yet are not
        counted. Counting stops at the bound, so the cost does not grow with the store.
        Raises InvalidInputError for tokens that are not strs.
        """
        ...


@runtime_checkable
class VectorStorage(Protocol):
    """An optional side of a store: message vectors, for search by meaning.

    Declared as ``Capability.VECTOR_STORAGE`` (see :func:`offers`). The store keeps at
    most one vector per message and :class:`~qv_session_manager.vector_records.VectorSpace`,
    beside the message; the manager computes them (off the save path) and asks for them.

    - A vector goes with the text it came from: deleting or replacing the message
      (by ``save``, ``delete_message``, ``delete``, expiry's purge) removes it, and a
      save that changes the message's content removes it too (the message is pending
      again). Titles have no vectors.
    - Expired conversations are missing here as everywhere: never pending, never found.
    - Messages with empty content are never pending and never found.
    - Raises InvalidInputError for an argument of the wrong type, and StorageError
      after ``close()``; a refused call changes nothing.
    """

    def pending_embeddings(self, space: VectorSpace, *, limit: int) -> builtins.list[EmbeddingTask]:
        """Up to ``limit`` (>= 1) messages of live conversations with content and no vector in ``space``.

        In an order of the store's choosing; the same one while nothing changes, so a
        caller that stores vectors for what it got moves on to the rest.
        """
        ...

    def store_embeddings(self, space: VectorSpace, embedded: Sequence[tuple[EmbeddingTask, Sequence[float]]]) -> int:
        """Store each vector for its task's message; return how many were stored.

        A task whose message is gone, or holds another text now, is skipped (it is
        pending again, or no more). A vector replaces one the message had in ``space``.
        InvalidInputError, storing nothing, for a vector that is not ``space.dimension``
        finite float32 values. All or nothing.
        """
        ...

    def vector_search(
        self,
        space: VectorSpace,
        query: Sequence[float],
        filter: ConversationFilter,
        *,
        limit: int | None = None,
        offset: int = 0,
        with_text: bool = False,
    ) -> builtins.list[SearchHit]:
        """Conversations with a vector in ``space``, by their best message's similarity to ``query``.

        The order and scores of :func:`~qv_session_manager.vector_records.rank_conversations`:
        the score is the highest dot product of the conversation's message vectors with
        ``query``; ``message_id`` names that message (the first in stored order among
        equals), and ``text`` is its content with ``with_text``, else None. The filter
        applies before ranking; ``limit``/``offset`` page as in ``search``.
        InvalidInputError for a query of another dimension.
        """
        ...

    def embedding_counts(self, space: VectorSpace) -> tuple[int, int]:
        """(messages with a vector in ``space``, messages pending in it), over live conversations."""
        ...

    def forget_embeddings(self, space: VectorSpace | None = None) -> int:
        """Remove every vector of ``space`` (None: of every space); return how many were removed."""
        ...


# -- which sides a store offers ---------------------------------------------------

#: The method each optional side adds to a store.
SIDE_METHODS: Mapping[Capability, str] = {
    Capability.BULK_SAVING: "save_many",
    Capability.REVISIONED_SAVING: "save_revisioned",
    Capability.SUMMARY_LISTING: "list_summaries",
    Capability.WINDOWED_LOADING: "load_window",
    Capability.PURGING: "purge_expired",
    Capability.DROPPABLE: "drop",
    Capability.INDEX_INSPECTION: "indexed_tokens",
    Capability.VECTOR_STORAGE: "vector_search",
    Capability.TOKEN_COUNTING: "common_tokens",
}

#: Sides that are a faster form of a required method: used only where that method is not overridden.
_FASTER_FORM_OF = {Capability.REVISIONED_SAVING: "save", Capability.SUMMARY_LISTING: "list"}


def _defined_by(cls: type, name: str) -> type | None:
    return next((klass for klass in cls.__mro__ if name in vars(klass)), None)


@overload
def offers(store: object, capability: Literal[Capability.BULK_SAVING]) -> TypeIs[BulkSaving]: ...
@overload
def offers(store: object, capability: Literal[Capability.REVISIONED_SAVING]) -> TypeIs[RevisionedSaving]: ...
@overload
def offers(store: object, capability: Literal[Capability.SUMMARY_LISTING]) -> TypeIs[SummaryListing]: ...
@overload
def offers(store: object, capability: Literal[Capability.WINDOWED_LOADING]) -> TypeIs[WindowedLoading]: ...
@overload
def offers(store: object, capability: Literal[Capability.PURGING]) -> TypeIs[Expiring]: ...
@overload
def offers(store: object, capability: Literal[Capability.DROPPABLE]) -> TypeIs[Droppable]: ...
@overload
def offers(store: object, capability: Literal[Capability.INDEX_INSPECTION]) -> TypeIs[IndexInspection]: ...
@overload
def offers(store: object, capability: Literal[Capability.VECTOR_STORAGE]) -> TypeIs[VectorStorage]: ...
@overload
def offers(store: object, capability: Literal[Capability.TOKEN_COUNTING]) -> TypeIs[TokenCounting]: ...
@overload
def offers(store: object, capability: Capability) -> bool: ...
def offers(store: object, capability: Capability) -> bool:
    """Whether ``store`` declares ``capability`` and, for an optional side, has its method.

    A side that is a faster form of a required method (``save_revisioned`` of
    ``save``, ``list_summaries`` of ``list``) counts only where that method is not
    overridden below the class defining the side: a subclass that changes ``list``
    keeps every listing going through its ``list``. Where either method is set on
    the instance (adapters, test doubles), every call goes through the plain one.
    Never raises: an object without ``capabilities`` offers nothing.
    """
    declared = getattr(store, "capabilities", None)
    if not isinstance(declared, (set, frozenset)) or capability not in declared:
        return False
    method = SIDE_METHODS.get(capability)
    if method is None:
        return True
    if not callable(getattr(store, method, None)):
        return False
    plain = _FASTER_FORM_OF.get(capability)
    if plain is None:
        return True
    own = getattr(store, "__dict__", {})
    if plain in own or method in own:
        return False  # set per instance: no class tells which of the two was changed last
    fast_class, plain_class = _defined_by(type(store), method), _defined_by(type(store), plain)
    if fast_class is None or plain_class is None:
        return fast_class is None and plain_class is None  # both come through __getattr__: one wrapped store
    return issubclass(fast_class, plain_class)
