"""A Hypothesis state machine that drives a backend and the memory reference alike.

Every step applies the same random operation to both stores and asserts the same
observable result: saves (new, edited and removed messages, ``replace``), bulk
saves (when the backend has them, including refused batches), appends,
``delete_message``, ``delete``, loads, resume windows (when the backend has
``load_window``), listings with filters and keyset pages,
searches with generated queries over generated Unicode text, ``purge_expired``
(when the backend has it), and, for persistent backends, closing and reopening
the store. Conversations get an expiry (``metadata["expires_at"]``) long past
(year 2000) or far ahead (2999), never near the real clock, when the backend
declares ``Capability.EXPIRY``; the reference then treats the expired ones as
missing, as the protocol requires.

Conversation timestamps take only three instants (in varying offsets), so most
listings and searches order tied rows and most time bounds fall exactly on a row;
titles are drawn apart from ids, so a tie broken by anything but the id shows.
Relevance searches check the backend's own order: scores descending, equal scores
newest first. Stores declaring ``Capability.INDEX_INSPECTION`` are checked after
every step to index no token the reference no longer holds anywhere, and every
token of a live document.
"""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Callable
from typing import Any

from hypothesis import settings as Settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from ..backends.memory import MemoryStore
from ..convert import summary
from ..protocol import (
    Capability,
    ConversationFilter,
    ConversationStore,
    TimeField,
    offers,
)
from ..query import parse
from ..records import EXPIRES_AT, ConversationRecord, MessageRecord, SearchHit
from ..rules import newest_first_key
from . import strategies

CONVERSATION_IDS = st.sampled_from(["c0", "c1", "c2", "c3"])
MESSAGE_IDS = st.sampled_from(["m0", "m1", "m2", "m3", "m4", "m5"])
_names = itertools.count()
# Half the time: no filter and a single word, so that searches and listings find things.
FILTERS = st.one_of(st.just(ConversationFilter()), strategies.filters(strategies.tied_timestamps()))
# Prefix terms that are whole vocabulary words too: `al*` must also find the word `al`.
QUERIES = st.one_of(
    st.sampled_from(strategies.VOCABULARY),
    st.sampled_from(strategies.VOCABULARY),
    st.sampled_from([f"{word}*" for word in strategies.VOCABULARY]),
    strategies.queries,
)
# A third of the texts are one word, so equal documents (and equal relevance scores) are common.
TEXTS = st.one_of(st.sampled_from(strategies.VOCABULARY), strategies.vocabulary_text, strategies.vocabulary_text)
#: Expiries: none (most often), long expired, or far ahead; never close to the real clock.
EXPIRIES = st.sampled_from(
    [
        None,
        None,
        None,
        "2000-01-01T00:00:00",
        "2000-01-01T08:30:00+02:00",
        "2999-01-01T00:00:00",
        "2999-06-30T23:00:00-05:00",
    ]
)


@st.composite
def _conversation(draw: st.DrawFn) -> ConversationRecord:
    metadata = draw(st.one_of(strategies.metadata_with_filter_keys, strategies.conversation_metadata))
    expiry = draw(EXPIRIES)
    if expiry is not None:
        metadata = {**metadata, EXPIRES_AT: expiry}  # a new dict: drawn values must not change
    return ConversationRecord(
        id=draw(CONVERSATION_IDS),
        title=draw(st.one_of(st.none(), TEXTS)),
        model_name=draw(st.one_of(st.none(), st.just("llama3"))),
        created_at=draw(strategies.tied_timestamps()),
        updated_at=draw(strategies.tied_timestamps()),
        metadata=metadata,
    )


@st.composite
def _messages(draw: st.DrawFn) -> list[MessageRecord]:
    chosen = draw(st.lists(MESSAGE_IDS, max_size=4, unique=True))
    return [
        MessageRecord(
            id=message_id,
            role=draw(st.sampled_from(["user", "assistant", "tool", "system"])),
            content=draw(TEXTS),
            created_at=draw(strategies.timestamps()),
            metadata=draw(st.one_of(st.just({}), strategies.metadata)),
            images=draw(st.one_of(st.none(), strategies.images)),
            tool_calls=draw(st.one_of(st.none(), strategies.tool_calls)),
        )
        for message_id in chosen
    ]


def _outcome(call: Callable[[], Any]) -> tuple[str, Any]:
    """A call's result, or the type of the library error it raised."""
    try:
        return "ok", call()
    except Exception as exc:
        return "error", type(exc).__name__


class StoreComparison(RuleBasedStateMachine):
    """Compare one backend against :class:`MemoryStore`, step by step."""

    opener: Callable[[str], ConversationStore]

    def __init__(self) -> None:
        super().__init__()
        self.name = f"state-machine-{next(_names)}"
        self.store = self.opener(self.name)
        self.reference = MemoryStore()

    def _same(self, what: str, call: Callable[[ConversationStore], Any]) -> None:
        got = _outcome(lambda: call(self.store))
        want = _outcome(lambda: call(self.reference))
        assert got == want, (
            f"contract equivalence: {what} gave {got!r} on the backend but {want!r} on the memory reference"
        )

    def _usable(self, record: ConversationRecord) -> ConversationRecord:
        """``record`` without its expiry when the backend does not declare Capability.EXPIRY."""
        if EXPIRES_AT not in record.metadata or Capability.EXPIRY in self.store.capabilities:
            return record
        return dataclasses.replace(record, metadata={k: v for k, v in record.metadata.items() if k != EXPIRES_AT})

    @initialize(batch=st.lists(st.tuples(_conversation(), _messages()), min_size=1, max_size=4))
    def fill(self, batch: list[tuple[ConversationRecord, list[MessageRecord]]]) -> None:
        for record, messages in batch:
            record = self._usable(record)
            self._same(f"save({record.id}, {[m.id for m in messages]})", lambda store: store.save(record, messages))

    @rule(record=_conversation(), messages=_messages(), replace=st.booleans())
    def save(self, record: ConversationRecord, messages: list[MessageRecord], replace: bool) -> None:
        record = self._usable(record)
        self._same(
            f"save({record.id}, {[m.id for m in messages]}, replace={replace})",
            lambda store: store.save(record, messages, replace=replace),
        )

    @rule(source=CONVERSATION_IDS, record=_conversation())
    def save_copy(self, source: str, record: ConversationRecord) -> None:
        """Save another conversation's title and messages under ``record``: equal documents tie on relevance."""
        stored = self.reference.load(source)
        if stored is None:
            return
        record = dataclasses.replace(self._usable(record), title=stored.conversation.title)
        messages = list(stored.messages)
        self._same(
            f"save({record.id}, a copy of {source}'s messages, replace=True)",
            lambda store: store.save(record, messages, replace=True),
        )

    @rule(
        conversation_id=CONVERSATION_IDS,
        messages=_messages(),
        updated_at=st.one_of(st.none(), strategies.tied_timestamps()),
    )
    def append(self, conversation_id: str, messages: list[MessageRecord], updated_at: Any) -> None:
        self._same(
            f"append({conversation_id}, {[m.id for m in messages]}, updated_at={updated_at})",
            lambda store: store.append(conversation_id, messages, updated_at=updated_at),
        )

    @rule(batch=st.lists(st.tuples(_conversation(), _messages()), max_size=4), refused=st.integers(-1, 3))
    def save_many(self, batch: list[tuple[ConversationRecord, list[MessageRecord]]], refused: int) -> None:
        """A bulk save; with ``refused`` >= 0 that pair repeats a message id, so nothing may be written."""
        if not offers(self.store, Capability.BULK_SAVING):
            return
        batch = [(self._usable(record), messages) for record, messages in batch]
        if 0 <= refused < len(batch) and batch[refused][1]:
            record, messages = batch[refused]
            batch = [*batch[:refused], (record, [*messages, messages[0]]), *batch[refused + 1 :]]
        described = f"save_many({[(r.id, [m.id for m in ms]) for r, ms in batch]})"
        self._same(described, lambda store: store.save_many(iter(batch)))  # type: ignore[attr-defined]

    @invariant()
    def same_contents(self) -> None:
        """After every step, every conversation loads the same from both stores."""
        for conversation_id in CONVERSATION_IDS.elements:  # type: ignore[attr-defined]
            self._same(f"load({conversation_id})", lambda store: store.load(conversation_id))

    @invariant()
    def index_holds_no_deleted_text(self) -> None:
        """With IndexInspection: no token beyond what the reference stores, and every live one."""
        if not offers(self.store, Capability.INDEX_INSPECTION):
            return
        held = self.store.indexed_tokens()
        left = held - self.reference.indexed_tokens()
        assert not left, f"contract index: the search index still holds tokens of deleted text: {sorted(left)[:10]}"
        live = {token for hit in self._live_documents() for token in hit}
        missing = live - held
        assert not missing, f"contract index: tokens of stored text are not in the search index: {sorted(missing)[:10]}"

    def _live_documents(self) -> list[list[str]]:
        """The token lists of every live title and message of the reference."""
        from ..text import tokens

        documents = []
        for conversation_id in CONVERSATION_IDS.elements:  # type: ignore[attr-defined]
            stored = self.reference.load(conversation_id)
            if stored is not None:
                documents.append(tokens(stored.conversation.title or ""))
                documents += [tokens(m.content) for m in stored.messages]
        return documents

    @precondition(lambda self: offers(self.store, Capability.WINDOWED_LOADING))
    @rule(
        conversation_id=CONVERSATION_IDS,
        size=st.one_of(
            st.fixed_dictionaries({"last_messages": st.integers(1, 7)}),
            st.fixed_dictionaries({"last_turns": st.integers(1, 4)}),
        ),
        keep_system=st.booleans(),
    )
    def load_window(self, conversation_id: str, size: dict[str, int], keep_system: bool) -> None:
        """A random window; the generated messages mix all roles, tool calls and tool results."""
        self._same(
            f"load_window({conversation_id}, {size}, keep_system={keep_system})",
            lambda store: store.load_window(  # type: ignore[attr-defined]
                conversation_id, keep_system=keep_system, **size
            ),
        )

    @rule(conversation_id=CONVERSATION_IDS, message_id=MESSAGE_IDS)
    def delete_message(self, conversation_id: str, message_id: str) -> None:
        self._same(
            f"delete_message({conversation_id}, {message_id})",
            lambda store: store.delete_message(conversation_id, message_id),
        )

    @rule(conversation_id=CONVERSATION_IDS)
    def delete(self, conversation_id: str) -> None:
        self._same(f"delete({conversation_id})", lambda store: store.delete(conversation_id))

    @rule(record=_conversation(), messages=_messages())
    def delete_and_save_again(self, record: ConversationRecord, messages: list[MessageRecord]) -> None:
        """A conversation deleted and saved anew starts from the messages given, nothing of before."""
        record = self._usable(record)
        self._same(f"delete({record.id})", lambda store: store.delete(record.id))
        self._same(
            f"save({record.id}, {[m.id for m in messages]}) after its delete",
            lambda store: store.save(record, messages),
        )

    @rule(filter=FILTERS, limit=st.one_of(st.none(), st.integers(0, 3)), offset=st.integers(0, 2))
    def list(self, filter: ConversationFilter, limit: int | None, offset: int) -> None:
        self._same(
            f"list({filter}, limit={limit}, offset={offset})",
            lambda store: store.list(filter, limit=limit, offset=offset),
        )

    @precondition(lambda self: offers(self.store, Capability.SUMMARY_LISTING))
    @rule(
        filter=FILTERS,
        limit=st.one_of(st.none(), st.integers(0, 3)),
        offset=st.integers(0, 2),
        after_first=st.booleans(),
    )
    def list_summaries(self, filter: ConversationFilter, limit: int | None, offset: int, after_first: bool) -> None:
        """A store's own summaries equal summary() of the reference's records (SummaryListing)."""
        after = None
        if after_first:
            listed = self.reference.list(filter, limit=1)
            if not listed:
                return
            after = listed[0]
        expected = [summary(record) for record in self.reference.list(filter, limit=limit, offset=offset, after=after)]
        actual = self.store.list_summaries(filter, limit=limit, offset=offset, after=after)  # type: ignore[attr-defined]
        assert actual == expected, (
            f"contract summaries: list_summaries({filter}, limit={limit}, offset={offset}, after={after and after.id})"
            f" must equal summary() of list(): {actual!r} != {expected!r}"
        )

    @rule(filter=FILTERS, size=st.integers(1, 3), field=st.sampled_from(["updated_at", "created_at"]))
    def keyset_pages(self, filter: ConversationFilter, size: int, field: TimeField) -> None:
        """Keyset pages, half of them by created_at (whose cursor must be compared by created_at)."""
        filter = dataclasses.replace(filter, field=field)

        def pages(store: ConversationStore) -> list[str]:
            seen: list[str] = []
            after = None
            for _ in range(len(store.list(filter)) + 1):  # one more page than needed, never endless
                page = store.list(filter, limit=size, after=after)
                if not page:
                    return seen
                seen += [record.id for record in page]
                after = page[-1]
            raise AssertionError("contract paging: keyset pages never run out")

        self._same(f"keyset pages of {size} over {filter}", pages)

    @rule(query=QUERIES, filter=FILTERS, limit=st.one_of(st.none(), st.integers(0, 3)), offset=st.integers(0, 2))
    def search(self, query: str, filter: ConversationFilter, limit: int | None, offset: int) -> None:
        parsed = parse(query)

        def hits(store: ConversationStore) -> list[tuple[str, str | None, str | None]]:
            found = store.search(parsed, filter, limit=limit, offset=offset, with_text=True)
            return [(h.conversation.id, h.message_id, h.text) for h in found]

        self._same(f"search({query!r}, {filter}, limit={limit}, offset={offset})", hits)

    @rule(query=QUERIES, filter=FILTERS, source=st.one_of(st.none(), CONVERSATION_IDS))
    def search_by_relevance(self, query: str, filter: ConversationFilter, source: str | None) -> None:
        """With ``source``, the query is the first message of that conversation, so that it finds something."""
        if Capability.RELEVANCE not in self.store.capabilities:
            return
        stored = self.reference.load(source) if source is not None else None
        if stored is not None and stored.messages:
            query, filter = stored.messages[0].content, ConversationFilter(field=filter.field)
        parsed = parse(query)
        # Engines score slightly differently; the hit set must match, the order may differ.
        self._same(
            f"search({query!r}, order='relevance') hit set",
            lambda store: sorted(h.conversation.id for h in store.search(parsed, filter, order="relevance")),
        )
        _check_relevance_order(self.store.search(parsed, filter, order="relevance"), filter, query)

    @precondition(lambda self: offers(self.store, Capability.PURGING))
    @rule()
    def purge_expired(self) -> None:
        """Removing the expired conversations: the same count, and (invariant) the same contents after."""
        self._same("purge_expired()", lambda store: store.purge_expired())  # type: ignore[attr-defined]

    @precondition(lambda self: Capability.PERSISTENT in self.store.capabilities)
    @rule()
    def reopen(self) -> None:
        self.store.close()
        self.store = self.opener(self.name)

    def teardown(self) -> None:
        self.store.close()
        self.reference.close()


def _check_relevance_order(hits: list[SearchHit], filter: ConversationFilter, query: str) -> None:
    """Scores descending; hits with equal scores newest first by the filter's field, ties by descending id."""
    for before, after in itertools.pairwise(hits):
        assert before.score is not None and after.score is not None, "contract relevance: hits must carry scores"
        assert before.score >= after.score, (
            f"contract relevance: {query!r} ranked {after.conversation.id} (score {after.score}) "
            f"after {before.conversation.id} (score {before.score})"
        )
        if before.score == after.score:
            assert newest_first_key(before.conversation, filter.field) > newest_first_key(
                after.conversation, filter.field
            ), (
                f"contract relevance: {query!r}: {before.conversation.id} and {after.conversation.id} tie on score, "
                f"so they must be newest first by {filter.field}, ties by descending id"
            )


def run_comparison(opener: Callable[[str], ConversationStore], settings: Settings | None = None) -> None:
    """Run :class:`StoreComparison` against stores from ``opener``.

    ``settings`` defaults to the active Hypothesis profile with 25 steps per run.
    """
    machine = type("StoreComparisonRun", (StoreComparison,), {"opener": staticmethod(opener)})
    chosen = settings or Settings(Settings(), stateful_step_count=25, deadline=None)
    run_state_machine_as_test(machine, settings=chosen)
