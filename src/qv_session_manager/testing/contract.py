"""The conformance suite: every contract of the storage protocol as pytest tests.

Subclass :class:`StoreContract` in a test module and provide a ``store_opener``
fixture: a callable taking a name and returning an open store. The rules:

- different names give independent stores, and each starts empty in every test:
  nothing of another test (or an earlier run) may be visible, so a server backend
  needs a namespace per test (a key prefix, a schema, a database);
- the same name in one test gives the same data: for a backend with
  ``Capability.PERSISTENT``, opening a name again (after the previous store was
  closed) must give what was written;
- the suite closes every store it opens before the fixture's teardown runs; the
  fixture may be a generator that yields the opener and cleans up after the
  ``yield`` (drops the namespace). :func:`.openers.managed_opener` does that for
  you: it closes what is left open and calls ``drop()`` on every name used when the
  stores are :class:`~qv_session_manager.protocol.Droppable`::

    class TestMyStore(StoreContract):
        @pytest.fixture
        def store_opener(self, tmp_path):
            return lambda name: MyStore(tmp_path / name)

    class TestMyServerStore(StoreContract):
        @pytest.fixture
        def store_opener(self):
            namespace = uuid.uuid4().hex  # this test's own: the same for every name
            with managed_opener(lambda name: MyStore(prefix=f"test-{namespace}-{name}")) as opener:
                yield opener

Or, without writing any code, run the suite against a URL::

    QV_SESSION_MANAGER_TEST_URL='mystore:///{tmp}/{name}' pytest --pyargs qv_session_manager.testing.url_suite

(``{name}`` is made unique to each test and run; see :meth:`StoreContract.store_opener`.)

Required contracts never skip. Contracts of optional capabilities skip with a reason
naming the capability. Every assertion message starts with the contract it checks.

Two clauses need more than the protocol's methods:

- A backend declaring ``Capability.MULTI_PROCESS`` is run through
  :mod:`.multistore`: ``store_opener`` is called twice with the same name while both
  stores are open, and must then give two store objects on the same data.
- Deleted text must leave the search index, which no search result can show. The
  suite checks it when the store declares ``Capability.INDEX_INSPECTION`` (see
  :class:`~qv_session_manager.protocol.IndexInspection`) or the subclass overrides
  the ``indexed_tokens`` fixture; otherwise that clause skips, saying it is unchecked.
"""

from __future__ import annotations

import dataclasses
import itertools
import os
import threading
from collections.abc import Callable, Iterator, Sequence
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ..errors import InvalidInputError, StorageError, UnsupportedOperationError
from ..protocol import (
    SIDE_METHODS,
    BulkSaving,
    Capability,
    ConversationFilter,
    ConversationStore,
    WindowedLoading,
    offers,
)
from ..query import parse
from ..records import (
    EXPIRES_AT,
    ConversationRecord,
    MessageRecord,
    StoredConversation,
    ToolCallRecord,
)
from ..redact import mask_url
from ..rules import window_of
from ..vector_records import VectorSpace
from . import strategies
from .multistore import MultiStoreRun
from .openers import StoreOpener, managed_opener, url_opener
from .samples import BASE, conversation, message, minutes
from .sdk_saves import check_mutated_saves
from .stateful import run_comparison
from .token_contract import TokenCountingClauses
from .vector_contract import VectorClauses

#: Names the store URL when a StoreContract subclass does not provide store_opener.
URL_VARIABLE = "QV_SESSION_MANAGER_TEST_URL"

#: Expiries far from any real clock: long past, and far ahead (naive, aware and "Z" spellings).
EXPIRED = ("2000-01-01T00:00:00", "2000-06-01T12:00:00+02:00", "2001-01-01T00:00:00Z")
NOT_EXPIRED = "2999-01-01T00:00:00"
#: ``metadata["expires_at"]`` values a record must refuse.
BAD_EXPIRIES: tuple[Any, ...] = (
    "soon",
    "",
    " ",
    "2025-13-01",
    1700000000,
    None,
    True,
    ["2000-01-01"],
    {"at": "2000-01-01"},
    "9999-12-31T23:59:59-01:00",  # no UTC form
)


def _instant_and_offset_kept(got: datetime, want: datetime) -> bool:
    return got == want and got.utcoffset() == want.utcoffset() and (got.tzinfo is None) == (want.tzinfo is None)


def assert_round_trip(got: StoredConversation | None, want: StoredConversation) -> None:
    """Fail unless ``got`` is exactly ``want``, including timestamp offsets and image types."""
    assert got is not None, "contract load: a saved conversation must load"
    assert got.conversation == want.conversation, (
        f"contract fidelity: conversation fields changed on the way back\n saved:  {want.conversation}\n"
        f" loaded: {got.conversation}"
    )
    assert [m.id for m in got.messages] == [m.id for m in want.messages], (
        "contract order: load must return messages in stored order"
    )
    for got_message, want_message in zip(got.messages, want.messages):
        assert got_message == want_message, (
            f"contract fidelity: message {want_message.id} changed\n saved:  {want_message}\n loaded: {got_message}"
        )
        for got_image, want_image in zip(got_message.images or (), want_message.images or ()):
            assert type(got_image) is type(want_image), "contract fidelity: str and bytes images must stay apart"
    pairs = [
        (got.conversation.created_at, want.conversation.created_at),
        (got.conversation.updated_at, want.conversation.updated_at),
    ]
    pairs += [(a.created_at, b.created_at) for a, b in zip(got.messages, want.messages)]
    for got_time, want_time in pairs:
        assert _instant_and_offset_kept(got_time, want_time), (
            f"contract fidelity: timestamp {want_time.isoformat()} came back as {got_time.isoformat()} "
            "(naive must stay naive, aware must keep its offset)"
        )


def _ids(store: ConversationStore, conversation_id: str) -> list[str]:
    stored = store.load(conversation_id)
    assert stored is not None, f"contract load: conversation {conversation_id} vanished"
    return [m.id for m in stored.messages]


def _found(store: ConversationStore, query: str, filter: ConversationFilter | None = None, **kw: Any) -> list[str]:
    return [hit.conversation.id for hit in store.search(parse(query), filter or ConversationFilter(), **kw)]


def _listed(store: ConversationStore, filter: ConversationFilter | None = None, **kw: Any) -> list[str]:
    return [record.id for record in store.list(filter or ConversationFilter(), **kw)]


class _FailingSequence(Sequence[MessageRecord]):
    """Messages that blow up part-way through iteration, to prove saves are atomic."""

    def __init__(self, messages: list[MessageRecord], fail_at: int) -> None:
        self._messages, self._fail_at = messages, fail_at

    def __len__(self) -> int:
        return len(self._messages)

    def __getitem__(self, index: Any) -> Any:
        return self._messages[index]

    def __iter__(self) -> Iterator[MessageRecord]:
        for index, item in enumerate(self._messages):
            if index == self._fail_at:
                raise RuntimeError("simulated failure while the save is under way")
            yield item


#: Title words of the search fixture, none of them a query word.
_ORDINALS = ("first", "second", "third", "fourth", "fifth", "sixth", "seventh")
SEARCH_DOCUMENTS = {
    "lists": "Python lists are ordered, mutable collections",
    "resume": "Please update my Résumé before Friday",
    "tokyo": "東京の天気はどうですか",
    "agents": "multi-agent systems in C++ and c#",
    "percent": "a 50% discount on 10.0.0.1, mail a.b@example.com",
    "java": "python and java compared",
    "nul": "before\x00after",
}

HOSTILE_QUERIES = [
    '"unbalanced',
    'unbalanced"',
    '"',
    '""',
    "it's",
    "a OR",
    "python AND",
    "NOT python",
    "NEAR(",
    "NEAR(a b",
    "title:python",
    "foo:bar",
    "http://x.com",
    "^python",
    "(python",
    "python)",
    "()",
    "{",
    "[",
    "C#",
    "*",
    "-",
    "%",
    "_",
    "/etc/passwd",
    "'; DROP TABLE messages; --",
    "python\x00java",
    "\x00",
    "\ud800",
    "a\udfffb",
    "x" * 100_000,
    " ".join(f"w{i}" for i in range(20_000)),
    "AND OR NOT NEAR",
    '"a" "b" OR OR -',
    "*thon",
    "pyth**",
    "",
    "   ",
    "\t\n",
]


def _call_harmlessly(store: ConversationStore, name: str) -> Any:
    """Call the optional method ``name`` with arguments that change nothing a test relies on."""
    calls: dict[str, Callable[[Any], Any]] = {
        "save_many": lambda method: method([]),
        "save_revisioned": lambda method: method(conversation("capability-probe"), []),
        "list_summaries": lambda method: method(ConversationFilter()),
        "load_window": lambda method: method("capability-probe", last_messages=1),
        "purge_expired": lambda method: method(),
        "drop": lambda method: method(),
        "indexed_tokens": lambda method: method(),
        "vector_search": lambda method: method(VectorSpace("probe", "probe", 2), [1.0, 0.0], ConversationFilter()),
    }
    return calls[name](getattr(store, name))


class StoreContract(VectorClauses, TokenCountingClauses):
    """Every contract of :class:`~qv_session_manager.protocol.ConversationStore`."""

    @pytest.fixture
    def store_opener(self, tmp_path: Path) -> Iterator[StoreOpener]:
        """Stores from the URL in ``QV_SESSION_MANAGER_TEST_URL``; override this fixture instead
        to open stores yourself (see the module's docstring for the rules).

        The URL must contain ``{name}``, replaced by the store's name made unique to
        the test and the run (``<name>-<run id>-<test number>``), and may contain
        ``{run}`` (this run's id: a namespace no other run shares) and ``{tmp}`` (a
        fresh temporary directory per test), e.g. ``jsonl:///{tmp}/{name}`` or
        ``postgresql://host/db?schema=qv_{name}``. After each test every store is
        closed and, if the backend's stores are
        :class:`~qv_session_manager.protocol.Droppable`, every name used is dropped
        (:func:`~qv_session_manager.testing.openers.managed_opener`).
        """
        url = os.environ.get(URL_VARIABLE)
        if not url:
            pytest.fail(f"StoreContract needs a store_opener fixture in the subclass, or {URL_VARIABLE} set to a URL")
        if "{name}" not in url:
            pytest.fail(
                f"{URL_VARIABLE} must contain {{name}} so that each test gets its own stores: {mask_url(url)!r}"
            )
        with managed_opener(url_opener(url, tmp_path)) as opener:
            yield opener

    @pytest.fixture
    def open_stores(self, store_opener: StoreOpener) -> Iterator[Callable[[str], ConversationStore]]:
        """Open stores through the opener and close them all after the test."""
        opened: list[ConversationStore] = []

        def open_(name: str) -> ConversationStore:
            store = store_opener(name)
            opened.append(store)
            return store

        yield open_
        for store in opened:
            store.close()

    @pytest.fixture
    def store(self, open_stores: Callable[[str], ConversationStore]) -> ConversationStore:
        return open_stores("contract")

    @pytest.fixture
    def indexed_tokens(self, store: ConversationStore) -> Callable[[], set[str]] | None:
        """What ``store``'s search index holds, as :meth:`IndexInspection.indexed_tokens
        <qv_session_manager.protocol.IndexInspection.indexed_tokens>` defines it; None when
        it cannot be inspected (the index checks then skip, saying so).

        The default uses the store's own ``indexed_tokens`` method when it has one.
        Override this fixture to inspect a backend from outside instead (its server's
        keys, its files) without adding a method to the store.
        """
        return store.indexed_tokens if offers(store, Capability.INDEX_INSPECTION) else None

    @staticmethod
    def require(store: ConversationStore, capability: Capability) -> None:
        if capability not in store.capabilities:
            pytest.skip(f"the backend does not declare Capability.{capability.name}")

    # -- capabilities ------------------------------------------------------------

    def test_capabilities_name_the_methods_there_are(self, store: ConversationStore) -> None:
        """contract capabilities: a declared side has its method; an undeclared side's method refuses to work.

        Callers use a side only when it is declared (``offers``), so a method without
        its capability is never called: either declare it, or (a wrapper whose inner
        store lacks the side) raise UnsupportedOperationError from it.
        """
        declared = store.capabilities
        assert isinstance(declared, frozenset) and all(isinstance(c, Capability) for c in declared), (
            "contract capabilities: capabilities must be a frozenset of Capability members"
        )
        if Capability.PURGING in declared:
            assert Capability.EXPIRY in declared, "contract capabilities: PURGING is declared with EXPIRY"
        for capability, name in SIDE_METHODS.items():
            method = getattr(store, name, None)
            if capability in declared:
                assert callable(method), (
                    f"contract capabilities: Capability.{capability.name} is declared but the store has no {name}()"
                )
            elif method is not None:
                with pytest.raises(UnsupportedOperationError):
                    _call_harmlessly(store, name)
                    pytest.fail(
                        f"contract capabilities: {name}() works but Capability.{capability.name} is not declared; "
                        "declare it, or nothing will ever call it"
                    )

    # -- fidelity --------------------------------------------------------------

    def test_fidelity_any_records(self, store_opener: StoreOpener) -> None:
        """contract fidelity: whatever a valid record holds comes back equal."""
        counter = itertools.count()

        @given(strategies.conversations(), strategies.message_lists())
        @settings(
            max_examples=30,
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
        )
        def check(record: ConversationRecord, messages: list[MessageRecord]) -> None:
            store = store_opener(f"fidelity{next(counter)}")
            try:
                store.save(record, messages)
                assert_round_trip(store.load(record.id), StoredConversation(record, tuple(messages)))
            finally:
                store.close()  # server backends must not pile up connection pools

        check()

    @pytest.mark.parametrize(
        "content",
        ["", "a\x00b", "\x01\x02\x1f\x7f", "line\r\nbreak\ttab", "🙂 emoji and RTL עברית", "x" * 10_000_000],
        ids=["empty", "nul", "controls", "newlines", "emoji-rtl", "10MB"],
    )
    def test_fidelity_hostile_content(self, store: ConversationStore, content: str) -> None:
        """contract fidelity: empty, NUL, control characters and 10 MB content round-trip."""
        record = conversation(title=content[:100])
        sent = message(content)
        store.save(record, [sent])
        assert_round_trip(store.load(record.id), StoredConversation(record, (sent,)))

    def test_fidelity_tool_calls_images_metadata_timestamps(self, store: ConversationStore) -> None:
        """contract fidelity: tool calls, tool_call_id, str/bytes images, nested JSON, offsets, microseconds."""
        plus_two = timezone(timedelta(hours=2))
        record = conversation(
            created=datetime(2025, 1, 20, 10, 0, 0, 123456),
            updated=datetime(2025, 1, 20, 10, 0, 0, 1, tzinfo=plus_two),
            metadata={"nested": {"a": [1, 2.5, None, True, "ü"]}, "empty": {}},
        )
        sent = [
            message("look", images=("aGVsbG8=", b"\x89PNG\x00raw"), at=datetime(2025, 1, 20, 8, tzinfo=timezone.utc)),
            message(
                "",
                role="assistant",
                tool_calls=(
                    ToolCallRecord("get_weather", {"city": "Paris"}, "call_1"),
                    ToolCallRecord("noop", {}, None),
                ),
            ),
            message("18°C", role="tool", tool_call_id="call_1", metadata={"function_name": "get_weather"}),
            message("naive", at=datetime(2025, 1, 20, 10, 0, 0)),
        ]
        store.save(record, sent)
        assert_round_trip(store.load(record.id), StoredConversation(record, tuple(sent)))

    def test_fidelity_named_zones_come_back_as_their_offset(self, store: ConversationStore) -> None:
        """contract fidelity: a ZoneInfo timestamp (even an ambiguous one) comes back as the same instant and offset."""
        from zoneinfo import ZoneInfo

        new_york = ZoneInfo("America/New_York")
        repeated_hour = [datetime(2025, 11, 2, 1, 30, tzinfo=new_york, fold=fold) for fold in (0, 1)]
        record = conversation(created=repeated_hour[0], updated=repeated_hour[1])
        sent = message(at=repeated_hour[1])
        store.save(record, [sent])
        loaded = store.load(record.id)
        assert loaded is not None
        for got, want in [
            (loaded.conversation.created_at, repeated_hour[0]),
            (loaded.conversation.updated_at, repeated_hour[1]),
            (loaded.messages[0].created_at, repeated_hour[1]),
        ]:
            assert got.utcoffset() == want.utcoffset() and got.timestamp() == want.timestamp(), (
                f"contract fidelity: {want} came back as {got}"
            )
        assert_round_trip(loaded, StoredConversation(record, (sent,)))

    def test_fidelity_ten_thousand_messages(self, store: ConversationStore) -> None:
        """contract order: a 10k-message conversation loads whole, in order."""
        record = conversation()
        sent = [message(f"message {i}", id=f"m{i:05d}") for i in range(10_000)]
        store.save(record, sent)
        assert _ids(store, record.id) == [m.id for m in sent], "contract order: 10k messages came back out of order"

    def test_stored_data_is_not_shared_with_callers(self, store: ConversationStore) -> None:
        """contract isolation: changing a record's dicts after save or load changes nothing stored."""
        shared_list: list[Any] = [1]
        shared_dict: dict[str, Any] = {"a": 1}
        record = conversation(metadata={"k": shared_list})
        sent = message(metadata={"k": shared_dict})
        store.save(record, [sent])
        shared_list.append(2)
        shared_dict["a"] = 99
        loaded = store.load(record.id)
        assert loaded is not None
        loaded_list = loaded.conversation.metadata["k"]
        assert isinstance(loaded_list, list)
        loaded_list.append(3)
        again = store.load(record.id)
        assert again is not None and again.conversation.metadata == {"k": [1]}, (
            "contract isolation: the store keeps references to the caller's dicts"
        )
        assert again.messages[0].metadata == {"k": {"a": 1}}, "contract isolation: message metadata was shared"

    def test_data_survives_reopening(self, store_opener: StoreOpener) -> None:
        """contract persistence: a closed and reopened store has the same data."""
        first = store_opener("persist")
        try:
            self.require(first, Capability.PERSISTENT)
            record = conversation(title="kept")
            sent = [message("a"), message("b")]
            first.save(record, sent)
        finally:
            first.close()
        second = store_opener("persist")
        try:
            assert_round_trip(second.load(record.id), StoredConversation(record, tuple(sent)))
        finally:
            second.close()

    # -- saving ----------------------------------------------------------------

    def test_save_only_new_message_appends(self, store: ConversationStore) -> None:
        """contract save: messages not passed are kept; saving only the new one appends it."""
        record = conversation()
        store.save(record, [message(id="a"), message(id="b")])
        store.save(record, [message(id="c")])
        assert _ids(store, record.id) == ["a", "b", "c"], "contract save: a save dropped or reordered messages"

    def test_order_is_stored_not_derived_from_timestamps(self, store: ConversationStore) -> None:
        """contract order: load returns the order given, even with tied or backwards timestamps."""
        record = conversation()
        given_order = [message(id=f"m{i}", at=minutes(10 - i if i % 2 else 0)) for i in range(8)]
        store.save(record, given_order)
        assert _ids(store, record.id) == [m.id for m in given_order], (
            "contract order: messages were ordered by timestamp instead of by stored sequence"
        )

    def test_update_keeps_place(self, store: ConversationStore) -> None:
        """contract save: an updated message keeps its position; re-passed ones do not move."""
        record = conversation()
        store.save(record, [message("one", id="a"), message("two", id="b"), message("three", id="c")])
        store.save(record, [message("new", id="d"), message("two, edited", id="b"), message("one", id="a")])
        loaded = store.load(record.id)
        assert loaded is not None and [m.id for m in loaded.messages] == ["a", "b", "c", "d"], (
            "contract save: existing messages must keep their place, new ones go last"
        )
        assert loaded.messages[1].content == "two, edited", "contract save: the update was lost"

    def test_replace(self, store: ConversationStore) -> None:
        """contract replace: the stored list becomes exactly the given list, in that order."""
        record = conversation()
        store.save(record, [message("x", id=i) for i in "abcd"])
        store.save(record, [message("d2", id="d"), message("new", id="e"), message("x", id="a")], replace=True)
        loaded = store.load(record.id)
        assert loaded is not None and [m.id for m in loaded.messages] == ["d", "e", "a"], "contract replace: wrong list"
        assert loaded.messages[0].content == "d2"
        store.save(record, [message(id="f")])
        assert _ids(store, record.id) == ["d", "e", "a", "f"], "contract replace: later appends must go last"
        store.save(record, [], replace=True)
        assert _ids(store, record.id) == [], "contract replace: replacing with nothing must empty the list"
        assert store.get(record.id) is not None, "contract replace: the conversation itself must stay"

    def test_conversation_fields_update(self, store: ConversationStore) -> None:
        """contract save: a save updates the conversation's own fields."""
        record = conversation(title="old", metadata={"v": 1})
        store.save(record, [])
        changed = dataclasses.replace(record, title="new", metadata={"v": 2}, model_name=None)
        store.save(changed, [])
        assert store.get(record.id) == changed, "contract save: conversation fields were not updated"
        assert _found(store, "new") == [record.id] and _found(store, "old") == [], (
            "contract search: the title index must follow title changes"
        )

    def test_append(self, store: ConversationStore) -> None:
        """contract append: adds messages like save, keeps the conversation's other fields, False when missing."""
        record = conversation("c", title="before", metadata={"v": 1})
        store.save(record, [message("one", id="a")])
        changed = dataclasses.replace(record, title="changed elsewhere", metadata={"v": 2})
        store.save(changed, [])  # another writer, after this one read the conversation
        assert store.append("c", [message("two", id="b"), message("one, edited", id="a")], updated_at=minutes(9))
        loaded = store.load("c")
        assert loaded is not None and [m.id for m in loaded.messages] == ["a", "b"], "contract append: wrong list"
        assert loaded.messages[0].content == "one, edited", "contract append: a known id must be updated in place"
        assert loaded.conversation == dataclasses.replace(changed, updated_at=minutes(9)), (
            "contract append: only updated_at may change; the other fields must stay as stored"
        )
        assert store.append("c", []) is True and store.get("c") == loaded.conversation, (
            "contract append: nothing to add and no updated_at changes nothing"
        )
        assert store.append("gone", [message(id="x")]) is False, "contract append: a missing conversation gives False"
        assert store.get("gone") is None, "contract append: a missing conversation must not be created"
        assert _found(store, "two") == ["c"], "contract append: appended text must be searchable"
        with pytest.raises(InvalidInputError):
            store.append("c", [message(id="d"), message(id="d")])

    def test_append_refuses_an_unusable_updated_at(self, store: ConversationStore) -> None:
        """contract append: an updated_at that is no usable datetime raises InvalidInputError, writing nothing."""
        record = conversation(title="kept")
        store.save(record, [message("one", id="a")])
        before = store.load(record.id)
        for bad in ("2024-01-01", 1700000000, datetime.max.replace(tzinfo=timezone(timedelta(hours=-1)))):
            for conversation_id in (record.id, "missing"):
                with pytest.raises(InvalidInputError):
                    store.append(conversation_id, [message("two", id="b")], updated_at=bad)  # type: ignore[arg-type]
        assert store.load(record.id) == before, "contract append: a refused append changed stored data"

    def test_delete_message(self, store: ConversationStore) -> None:
        """contract delete_message: removes one message and its search entry; False when missing."""
        record = conversation(title=None)
        store.save(record, [message("keep", id="a"), message("needle", id="b"), message("keep", id="c")])
        assert store.delete_message(record.id, "b") is True
        assert _ids(store, record.id) == ["a", "c"], "contract delete_message: wrong messages left"
        assert _found(store, "needle") == [], "contract delete_message: the search entry was left behind"
        assert store.delete_message(record.id, "b") is False, "contract delete_message: missing id must give False"
        assert store.delete_message("no-such-conversation", "a") is False

    def test_message_ids_are_per_conversation(self, store: ConversationStore) -> None:
        """contract ids: the same message id in two conversations names two messages."""
        first, second = conversation(), conversation()
        store.save(first, [message("in first", id="shared")])
        store.save(second, [message("in second", id="shared")])
        first_loaded, second_loaded = store.load(first.id), store.load(second.id)
        assert first_loaded is not None and first_loaded.messages[0].content == "in first", (
            "contract ids: saving a message id into another conversation moved it"
        )
        assert second_loaded is not None and second_loaded.messages[0].content == "in second"

    def test_missing_ids_read_as_none(self, store: ConversationStore) -> None:
        """contract missing: unknown and unstorable ids are simply not found, on every read and delete."""
        store.save(conversation("present"), [message(id="m")])
        for odd in ["missing", "", "\ud800", "a\x00b", "x" * 10_000]:
            assert store.load(odd) is None and store.get(odd) is None, f"contract missing: load/get({odd[:10]!r})"
            assert store.delete(odd) is False, f"contract missing: delete({odd[:10]!r}) must give False"
            assert store.delete_message(odd, "m") is False and store.delete_message("present", odd) is False
        assert _ids(store, "present") == ["m"]

    def test_calls_after_close_fail(self, store_opener: StoreOpener) -> None:
        """contract close: closing twice is harmless; every other call afterwards raises StorageError."""
        store = store_opener("closing")
        store.save(conversation("c"), [])
        store.close()
        store.close()
        calls: dict[str, Callable[[], object]] = {
            "load": lambda: store.load("c"),
            "get": lambda: store.get("c"),
            "delete": lambda: store.delete("c"),
            "delete_message": lambda: store.delete_message("c", "m"),
            "list": lambda: store.list(ConversationFilter()),
            "search": lambda: store.search(parse("x"), ConversationFilter()),
            "search('')": lambda: store.search(parse(""), ConversationFilter()),
            "save": lambda: store.save(conversation("d"), []),
        }
        for label, call in calls.items():
            with pytest.raises(StorageError):
                call()
                pytest.fail(f"contract close: {label} after close() must raise StorageError")

    # -- failures leave data untouched ------------------------------------------

    def test_duplicate_ids_are_refused_and_nothing_is_written(self, store: ConversationStore) -> None:
        """contract atomicity: a refused save (duplicate message ids) writes nothing."""
        record = conversation(title="before")
        store.save(record, [message(id="a")])
        before = store.load(record.id)
        with pytest.raises(InvalidInputError):
            store.save(dataclasses.replace(record, title="after"), [message(id="x"), message(id="x")])
        assert store.load(record.id) == before, "contract atomicity: a refused save changed stored data"

    def test_failing_save_leaves_the_conversation_untouched(self, store: ConversationStore) -> None:
        """contract atomicity: a save that fails half-way leaves nothing of itself behind."""
        record = conversation(title="before")
        store.save(record, [message("one", id="a")])
        before = store.load(record.id)
        doomed = _FailingSequence([message("edited", id="a"), message("two", id="b"), message("three", id="c")], 2)
        with pytest.raises(RuntimeError):
            store.save(dataclasses.replace(record, title="after"), doomed)
        assert store.load(record.id) == before, "contract atomicity: a failed save left part of itself behind"
        assert _found(store, "two") == [] and _found(store, "after") == [], (
            "contract atomicity: a failed save left search entries"
        )
        store.save(record, [message("works", id="d")])
        assert _ids(store, record.id) == ["a", "d"], "contract atomicity: the store must stay writable"

    # -- bulk saves (stores with BulkSaving) ----------------------------------------

    @staticmethod
    def bulk(store: ConversationStore) -> BulkSaving:
        if not offers(store, Capability.BULK_SAVING):
            pytest.skip("the backend does not declare Capability.BULK_SAVING (save_many)")
        return store

    def test_save_many_applies_pairs_like_saves_in_order(self, store: ConversationStore) -> None:
        """contract save_many: each pair is saved as by save, in order; the count is returned."""
        first, second = conversation("first", title="alpha"), conversation("second", title="beta")
        count = self.bulk(store).save_many(
            item
            for item in [
                (first, [message("one", id="a"), message("two", id="b")]),
                (second, [message("needle", id="a")]),
                (dataclasses.replace(first, title="gamma"), [message("two, edited", id="b"), message("three", id="c")]),
            ]
        )
        assert count == 3, f"contract save_many: returned {count}, not the number of pairs"
        loaded = store.load("first")
        assert loaded is not None and [(m.id, m.content) for m in loaded.messages] == [
            ("a", "one"),
            ("b", "two, edited"),
            ("c", "three"),
        ], "contract save_many: a later pair must update an earlier one like a second save"
        assert loaded.conversation.title == "gamma", "contract save_many: conversation fields of the last pair win"
        assert _found(store, "needle") == ["second"] and _found(store, "gamma") == ["first"], (
            "contract save_many: bulk-saved text must be searchable"
        )
        assert _found(store, "alpha") == [], "contract save_many: a replaced title must leave the index"
        assert self.bulk(store).save_many([]) == 0, "contract save_many: an empty batch saves nothing"

    def test_save_many_is_all_or_nothing(self, store: ConversationStore) -> None:
        """contract save_many: a refused pair or a failing iterable writes nothing of the batch."""
        kept = conversation("kept", title="before")
        store.save(kept, [message("one", id="a")])
        before = store.load("kept")

        def failing() -> Iterator[tuple[ConversationRecord, list[MessageRecord]]]:
            yield dataclasses.replace(kept, title="after"), [message("edited", id="a")]
            yield conversation("new"), [message("fresh")]
            raise RuntimeError("simulated failure while reading the batch")

        with pytest.raises(RuntimeError):
            self.bulk(store).save_many(failing())
        bad_metadata = message("x", metadata={})
        bad_metadata.metadata["later"] = {1, 2}  # type: ignore[assignment]  # a set: JSON cannot hold it
        refused: Any
        for refused in (
            (conversation("new"), [message(id="x"), message(id="x")]),
            (conversation("new"), [bad_metadata]),
            ("not a record", []),
        ):
            with pytest.raises(InvalidInputError):
                self.bulk(store).save_many([(dataclasses.replace(kept, title="after"), []), refused])
        for not_a_pair in ("not a pair", (conversation("new"),), None):
            with pytest.raises(InvalidInputError):
                self.bulk(store).save_many([(dataclasses.replace(kept, title="after"), []), not_a_pair])  # type: ignore[list-item]
        assert store.load("kept") == before and store.get("new") is None, (
            "contract save_many: a refused or failed batch changed stored data"
        )
        assert _found(store, "after") == [] and _found(store, "fresh") == [], (
            "contract save_many: a refused or failed batch left search entries"
        )

    # -- resume windows (stores with WindowedLoading) -------------------------------

    @staticmethod
    def windowed(store: ConversationStore) -> WindowedLoading:
        if not offers(store, Capability.WINDOWED_LOADING):
            pytest.skip("the backend does not declare Capability.WINDOWED_LOADING (load_window)")
        return store

    @staticmethod
    def _window(store: ConversationStore, conversation_id: str = "w", **window: Any) -> list[str]:
        loaded = StoreContract.windowed(store).load_window(conversation_id, **window)
        assert loaded is not None, "contract load_window: a saved conversation must load"
        return [m.id for m in loaded.messages]

    @staticmethod
    def _tool_chat(store: ConversationStore) -> list[MessageRecord]:
        """Two system prompts, a turn with a tool-call group (two results), then a plain turn."""
        call = (ToolCallRecord("get_weather", {"city": "Paris"}, "c1"), ToolCallRecord("get_time", {}, "c2"))
        messages = [
            message("Be brief.", id="s0", role="system"),
            message("Use tools.", id="s1", role="system"),
            message("weather?", id="u0"),
            message("", id="a0", role="assistant", tool_calls=call),
            message("18", id="t0", role="tool", tool_call_id="c1"),
            message("noon", id="t1", role="tool", tool_call_id="c2"),
            message("18 at noon", id="a1", role="assistant"),
            message("thanks", id="u1"),
            message("welcome", id="a2", role="assistant"),
        ]
        store.save(conversation("w", metadata={"k": "v"}), messages)
        return messages

    def test_load_window_sizes(self, store: ConversationStore) -> None:
        """contract load_window: the last N messages or from the N-th last user message, in stored order."""
        self.windowed(store)
        messages = self._tool_chat(store)
        window = store.load_window("w", last_messages=1)  # type: ignore[attr-defined]
        whole = store.load("w")
        assert window is not None and whole is not None
        assert window.conversation == whole.conversation, "contract load_window: conversation fields as load gives them"
        assert window.messages == (messages[0], messages[1], messages[8]), (
            "contract load_window: the window's messages must come back unchanged, system prompts first"
        )
        assert self._window(store, last_messages=3, keep_system=False) == ["a1", "u1", "a2"], (
            "contract load_window: last_messages counts from the end"
        )
        assert self._window(store, last_turns=1) == ["s0", "s1", "u1", "a2"], (
            "contract load_window: last_turns starts at the N-th last user message"
        )
        everything = [m.id for m in messages]
        covering: list[dict[str, Any]] = [
            {"last_turns": 2},
            {"last_turns": 9},
            {"last_messages": 9},
            {"last_messages": 50},
        ]
        for window_arguments in covering:
            assert self._window(store, **window_arguments) == everything, (
                f"contract load_window: {window_arguments} covers the whole conversation, each message once"
            )

    def test_load_window_never_cuts_tool_results_from_their_call(self, store: ConversationStore) -> None:
        """contract load_window: a window never starts on a tool message; it moves back to the call."""
        self.windowed(store)
        self._tool_chat(store)
        for size in (4, 5, 6):
            assert self._window(store, last_messages=size, keep_system=False) == ["a0", "t0", "t1", "a1", "u1", "a2"], (
                f"contract load_window: last_messages={size} must start at the assistant message with the tool calls"
            )
        store.save(conversation("orphans"), [message("r", id="x", role="tool"), message("r", id="y", role="tool")])
        assert self._window(store, "orphans", last_messages=1) == ["x", "y"], (
            "contract load_window: tool messages at the very start go back to the start"
        )

    def test_fork_branches_a_copy_with_a_link_back(self, store: ConversationStore) -> None:
        """contract fork (SessionManager.fork_conversation over the store): history up to a message, new ids, a link."""
        from ..manager import FORKED_FROM, SessionManager

        messages = self._tool_chat(store)
        original = store.load("w")
        fork = SessionManager(store=store).fork_conversation("w", "t0")
        stored = store.load(str(fork.id))
        assert stored is not None and stored.conversation.id != "w", (
            "contract fork: the fork is a new, saved conversation"
        )
        copied = [(m.role, m.content, m.tool_calls, m.tool_call_id, m.created_at) for m in messages[:6]]
        assert [(m.role, m.content, m.tool_calls, m.tool_call_id, m.created_at) for m in stored.messages] == copied, (
            "contract fork: the history up to the message, and a tool-call group's other results, in order"
        )
        assert not {m.id for m in stored.messages} & {m.id for m in messages}, "contract fork: messages get new ids"
        link = {"conversation_id": "w", "message_id": "t0"}
        assert stored.conversation.metadata == {"k": "v", FORKED_FROM: link}, "contract fork: metadata names the origin"
        listed = {record.id: record for record in store.list(ConversationFilter())}
        assert listed[stored.conversation.id].metadata[FORKED_FROM] == link, "contract fork: listings show the link"
        assert store.load("w") == original, "contract fork: the original is unchanged"

    def test_load_window_keep_system(self, store: ConversationStore) -> None:
        """contract load_window: keep_system adds the leading system messages, and only those."""
        self.windowed(store)
        self._tool_chat(store)
        assert self._window(store, last_messages=2) == ["s0", "s1", "u1", "a2"]
        assert self._window(store, last_messages=2, keep_system=False) == ["u1", "a2"], (
            "contract load_window: keep_system=False must leave the system messages out"
        )
        assert self._window(store, last_messages=8) == ["s0", "s1", "u0", "a0", "t0", "t1", "a1", "u1", "a2"], (
            "contract load_window: a system message inside the window must not appear twice"
        )
        store.save(
            conversation("later"),
            [
                message("hi", id="u"),
                message("now formal", id="s", role="system"),
                message("ok", id="a", role="assistant"),
            ],
        )
        assert self._window(store, "later", last_messages=1) == ["a"], (
            "contract load_window: only system messages at the start are kept, not later ones"
        )
        store.save(conversation("empty"), [])
        assert self._window(store, "empty", last_turns=1) == [], "contract load_window: an empty conversation"

    def test_load_window_missing_ids_and_bad_arguments(self, store: ConversationStore) -> None:
        """contract load_window: None for a missing id; InvalidInputError for bad sizes, before any lookup."""
        windowed = self.windowed(store)
        self._tool_chat(store)
        for missing in ("nope", "", "a\x00b"):
            assert windowed.load_window(missing, last_messages=1) is None, (
                f"contract load_window: missing id {missing!r} must give None"
            )
        bad: list[dict[str, Any]] = [
            {},
            {"last_messages": 1, "last_turns": 1},
            {"last_messages": 0},
            {"last_turns": -2},
            {"last_messages": True},
            {"last_turns": 1.0},
            {"last_messages": "3"},
            {"last_messages": 2**63},
            {"last_messages": 1, "keep_system": "yes"},
        ]
        for arguments in bad:
            for conversation_id in ("w", "nope"):
                with pytest.raises(InvalidInputError):
                    windowed.load_window(conversation_id, **arguments)
        assert self._window(store, last_messages=2**63 - 1) == _ids(store, "w"), (
            "contract load_window: the largest size is usable"
        )

    def test_load_window_agrees_with_the_rule(self, store: ConversationStore) -> None:
        """contract load_window: random conversations give rules.window_of of the whole conversation."""
        windowed = self.windowed(store)
        counter = itertools.count()
        sizes = st.one_of(
            st.fixed_dictionaries({"last_messages": st.integers(1, 12)}),
            st.fixed_dictionaries({"last_turns": st.integers(1, 5)}),
        )

        @given(strategies.message_lists(max_size=10), sizes, st.booleans())
        @settings(
            max_examples=40,
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
        )
        def check(messages: list[MessageRecord], size: dict[str, int], keep_system: bool) -> None:
            record = conversation(f"window{next(counter)}")
            store.save(record, messages)
            whole = store.load(record.id)
            assert whole is not None
            want = window_of(whole, keep_system=keep_system, **size)
            got = windowed.load_window(record.id, keep_system=keep_system, **size)
            assert got == want, (
                f"contract load_window: {size}, keep_system={keep_system} over roles "
                f"{[m.role for m in whole.messages]} gave {got and [m.id for m in got.messages]}, "
                f"the rule {[m.id for m in want.messages]}"
            )

        check()

    def test_records_changed_after_validation_are_checked_again(self, store: ConversationStore) -> None:
        """contract input: a record whose dicts were changed to hold non-JSON data is refused, nothing written."""
        record = conversation(metadata={"ok": 1})
        store.save(record, [])
        record.metadata["later"] = {1, 2}  # type: ignore[assignment]  # a set: JSON cannot hold it
        with pytest.raises(InvalidInputError):
            store.save(record, [message("x")])
        sent = message("y", metadata={})
        sent.metadata["later"] = float("nan")
        with pytest.raises(InvalidInputError):
            store.save(conversation(record.id, metadata={"ok": 1}), [sent])
        loaded = store.load(record.id)
        assert loaded is not None and loaded.conversation.metadata == {"ok": 1} and loaded.messages == (), (
            "contract input: a refused save changed stored data"
        )

    def test_invalid_arguments_raise_value_errors(self, store: ConversationStore) -> None:
        """contract input: bad pages and filters raise InvalidInputError (a ValueError)."""
        store.save(conversation(), [])
        calls: dict[str, Callable[[], object]] = {
            "list(limit=-1)": lambda: store.list(ConversationFilter(), limit=-1),
            "list(offset=-5)": lambda: store.list(ConversationFilter(), offset=-5),
            "list(metadata={'k': [...]})": lambda: store.list(ConversationFilter(metadata={"k": ["list"]})),
            "list(field='title')": lambda: store.list(ConversationFilter(field="title")),  # type: ignore[arg-type]
            "search(order='random')": lambda: store.search(
                parse("x"),
                ConversationFilter(),
                order="random",  # type: ignore[arg-type]
            ),
            "save('not a record')": lambda: store.save("not a record", []),  # type: ignore[arg-type]
            "save([...'not a message'])": lambda: store.save(conversation(), ["not a message"]),  # type: ignore[list-item]
        }
        for label, call in calls.items():
            try:
                call()
            except InvalidInputError:
                continue
            pytest.fail(f"contract input: {label} must raise InvalidInputError")

    @pytest.mark.parametrize(
        "bad", ["lone \ud800 surrogate", {"a", "set"}, float("nan")], ids=["surrogate", "set", "nan"]
    )
    def test_records_changed_after_validation_are_refused(self, store: ConversationStore, bad: object) -> None:
        """contract input: metadata and tool-call arguments changed after their record was built are
        checked again by save, append and save_many (InvalidInputError), and nothing is written."""
        store.save(conversation("kept", title="kept"), [message("stays", id="s")])
        before = store.load("kept")

        def changed_message() -> MessageRecord:
            call = ToolCallRecord("lookup", {"q": "fine"}, "call-1")
            record = message("", id="t", role="assistant", tool_calls=(call,))
            call.arguments["q"] = bad  # type: ignore[assignment]  # deliberately unstorable
            return record

        def changed_metadata() -> MessageRecord:
            record = message("text", id="m", metadata={"k": "fine"})
            record.metadata["k"] = bad  # type: ignore[assignment]  # deliberately unstorable
            return record

        def changed_conversation() -> ConversationRecord:
            record = conversation("kept", title="changed", metadata={"k": "fine"})
            record.metadata["k"] = bad  # type: ignore[assignment]  # deliberately unstorable
            return record

        calls: dict[str, Callable[[], object]] = {
            "save(tool-call arguments)": lambda: store.save(conversation("kept"), [changed_message()]),
            "save(message metadata)": lambda: store.save(conversation("kept"), [changed_metadata()]),
            "save(conversation metadata)": lambda: store.save(changed_conversation(), []),
            "append(tool-call arguments)": lambda: store.append("kept", [changed_message()]),
            "append(message metadata)": lambda: store.append("kept", [changed_metadata()]),
        }
        if offers(store, Capability.BULK_SAVING):
            calls["save_many(tool-call arguments)"] = lambda: store.save_many(
                [(conversation("kept"), [changed_message()])]
            )
        for label, call in calls.items():
            try:
                call()
            except InvalidInputError:
                pass
            else:
                pytest.fail(f"contract input: {label} changed to {bad!r} after validation must raise InvalidInputError")
            assert store.load("kept") == before, f"contract input: a refused {label} changed the stored data"

    # -- delete ----------------------------------------------------------------

    def test_delete(self, store: ConversationStore) -> None:
        """contract delete: the conversation, its messages and its search entries go; a missing id gives False."""
        record = conversation(title="gone soon")
        other = conversation(title="stays")
        store.save(record, [message("findable words")])
        store.save(other, [message("other words")])
        assert store.delete(record.id) is True
        assert store.load(record.id) is None and store.get(record.id) is None, "contract delete: still loadable"
        assert _found(store, "findable") == [] and _found(store, "gone") == [], "contract delete: still searchable"
        assert _listed(store) == [other.id], "contract delete: still listed"
        assert store.delete(record.id) is False, "contract delete: a missing id must give False"
        store.save(record, [])
        assert _ids(store, record.id) == [], "contract delete: a re-created conversation must start empty"

    # -- search ------------------------------------------------------------------

    @pytest.fixture
    def filled(self, store: ConversationStore) -> ConversationStore:
        for index, (name, text) in enumerate(SEARCH_DOCUMENTS.items()):
            # Titles hold none of the query words: folding must be proven on message text.
            store.save(
                conversation(name, title=f"conversation {_ORDINALS[index]}", updated=minutes(index)), [message(text)]
            )
        return store

    @pytest.mark.parametrize(
        ("query", "expected"),
        [
            ("python", ["java", "lists"]),
            ("PYTHON Lists", ["lists"]),
            ("resume", ["resume"]),
            ("RÉSUMÉ", ["resume"]),
            ("東京", ["tokyo"]),
            ("天気", ["tokyo"]),
            ('"ordered mutable"', ["lists"]),
            ('"mutable ordered"', []),
            ("pyth*", ["java", "lists"]),
            ("lists*", ["lists"]),
            ("JAVA*", ["java"]),
            ("résumé*", ["resume"]),
            ("Résume", ["resume"]),
            ("python -java", ["lists"]),
            ('python -"and java"', ["lists"]),
            ("resume OR tokyo OR 東京", ["tokyo", "resume"]),
            ("lists OR java python", ["java", "lists"]),
            ("multi-agent", ["agents"]),
            ("c++", ["agents"]),
            ("50%", ["percent"]),
            ("a.b@example.com", ["percent"]),
            ("after", ["nul"]),
            ("conversation third", ["tokyo"]),
            ("conversation 東京", []),
            ("python lists java", []),
        ],
    )
    def test_search_language(self, filled: ConversationStore, query: str, expected: list[str]) -> None:
        """contract search: the query language (words, phrases, prefix, -, OR, case, diacritics, CJK)."""
        assert _found(filled, query) == expected, (
            f"contract search: {query!r} should find {expected} (newest first), see qv_session_manager.query"
        )

    @pytest.mark.parametrize("query", HOSTILE_QUERIES, ids=range(len(HOSTILE_QUERIES)))
    def test_hostile_queries_never_raise(self, filled: ConversationStore, query: str) -> None:
        """contract search: every string is a valid query; nothing raises a syntax error."""
        before = [filled.load(name) for name in SEARCH_DOCUMENTS]
        hits = _found(filled, query)
        assert set(hits) <= set(SEARCH_DOCUMENTS)
        assert [filled.load(name) for name in SEARCH_DOCUMENTS] == before, "contract search: a query changed data"

    def test_any_string_is_a_valid_query(self, filled: ConversationStore) -> None:
        """contract search: any Unicode string, lone surrogates included, is a valid query."""

        @given(st.text(alphabet=st.characters(blacklist_categories=()), max_size=60))
        @settings(deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
        def check(query: str) -> None:
            assert set(_found(filled, query)) <= set(SEARCH_DOCUMENTS)

        check()

    def test_queries_without_positive_terms_find_nothing(self, filled: ConversationStore) -> None:
        """contract search: empty, punctuation-only and exclusion-only queries find nothing."""
        for query in ["", "   ", '"', "%", "_", "*", "-", "OR", "-python", "()", "+++"]:
            assert _found(filled, query) == [], f"contract search: {query!r} must find nothing"

    def test_hit_names_its_document(self, store: ConversationStore) -> None:
        """contract search: a hit names the title, else the first matching message, and carries its text."""
        store.save(
            conversation("c", title="plain title"),
            [message("nothing", id="a"), message("needle two", id="b"), message("needle three", id="c")],
        )
        [hit] = store.search(parse("needle"), ConversationFilter(), with_text=True)
        assert (hit.message_id, hit.text) == ("b", "needle two"), (
            "contract search: the hit must name the first matching message in stored order"
        )
        [title_hit] = store.search(parse("plain"), ConversationFilter(), with_text=True)
        assert (title_hit.message_id, title_hit.text) == (None, "plain title"), (
            "contract search: a title match names no message and carries the title"
        )

    def test_relevance_order(self, store: ConversationStore) -> None:
        """contract relevance: denser matches rank first; scores are positive and descending."""
        self.require(store, Capability.RELEVANCE)
        store.save(
            conversation("weak", updated=minutes(5)), [message("needle " + " ".join(f"filler{i}" for i in range(200)))]
        )
        store.save(conversation("strong", updated=minutes(1)), [message("needle needle needle")])
        store.save(conversation("none", updated=minutes(9)), [message("haystack")])
        hits = store.search(parse("needle"), ConversationFilter(), order="relevance")
        assert [h.conversation.id for h in hits] == ["strong", "weak"], "contract relevance: wrong ranking"
        assert hits[0].score is not None and hits[1].score is not None and hits[0].score > hits[1].score > 0
        assert _found(store, "needle") == ["weak", "strong"], "contract search: default order is newest first"

    def test_search_pages(self, filled: ConversationStore) -> None:
        """contract paging: search pages by limit/offset cover all hits once, in order."""
        everything = _found(filled, "conversation")
        assert len(everything) == len(SEARCH_DOCUMENTS)
        pages = [_found(filled, "conversation", limit=3, offset=o) for o in range(0, 9, 3)]
        assert [hit for page in pages for hit in page] == everything, "contract paging: search pages overlap or skip"

    # -- listing, filters, time ------------------------------------------------

    def test_list_is_newest_first_ties_by_id(self, store: ConversationStore) -> None:
        """contract order: listings are newest first; equal times are ordered by descending id."""
        for name, at in [("b", 1), ("a", 1), ("c", 1), ("old", 0), ("new", 2)]:
            store.save(conversation(name, updated=minutes(at)), [])
        assert _listed(store) == ["new", "c", "b", "a", "old"], "contract order: wrong listing order"

    def test_keyset_pages_survive_concurrent_writes(self, store: ConversationStore) -> None:
        """contract paging: `after=` pages neither overlap nor skip while others write."""
        for i in range(10):
            store.save(conversation(f"c{i}", updated=minutes(i % 4)), [])
        everything = _listed(store)
        seen: list[str] = []
        after = None
        for _ in range(40):  # far more pages than rows: a paging bug must not loop forever
            page = store.list(ConversationFilter(), limit=3, after=after)
            if not page:
                break
            seen += [record.id for record in page]
            after = page[-1]
            store.save(conversation(updated=minutes(100 + len(seen))), [])  # lands before the cursor
            store.save(dataclasses.replace(page[0], title="touched"), [])  # same sort key: stays put
        assert seen == everything, "contract paging: keyset pages overlapped or skipped rows"

    def test_offset_pages(self, store: ConversationStore) -> None:
        """contract paging: limit/offset slices the newest-first listing."""
        for i in range(5):
            store.save(conversation(f"c{i}", updated=minutes(i)), [])
        assert _listed(store, limit=2, offset=1) == ["c3", "c2"]
        assert _listed(store, limit=0) == [] and _listed(store, offset=10) == []

    def test_metadata_filter(self, store: ConversationStore) -> None:
        """contract filter: top-level key equals value with the same JSON type."""
        store.save(conversation("web", updated=minutes(1), metadata={"topic": "web", "level": 1}), [message("x")])
        store.save(conversation("flag", updated=minutes(2), metadata={"topic": "other", "level": True}), [message("x")])
        store.save(conversation("float", updated=minutes(3), metadata={"level": 1.0, "empty": None}), [message("x")])
        cases: list[tuple[dict[str, Any], list[str]]] = [
            ({"topic": "web"}, ["web"]),
            ({"level": 1}, ["float", "web"]),
            ({"level": True}, ["flag"]),
            ({"empty": None}, ["float"]),
            ({"missing": None}, []),
            ({"topic": "other", "level": True}, ["flag"]),
            ({"level": 0}, []),
            ({"level": "1"}, []),
        ]
        for wanted, expected in cases:
            assert _listed(store, ConversationFilter(metadata=wanted)) == expected, f"contract filter: {wanted}"
            assert _found(store, "x", ConversationFilter(metadata=wanted)) == expected, f"contract filter: {wanted}"

    def test_time_range_is_half_open_with_naive_as_utc(self, store: ConversationStore) -> None:
        """contract time: start inclusive, end exclusive; naive timestamps compare as UTC."""
        utc, plus_two = timezone.utc, timezone(timedelta(hours=2))
        store.save(conversation("naive-10", updated=datetime(2025, 1, 20, 10)), [])
        store.save(conversation("aware-08z", updated=datetime(2025, 1, 20, 10, tzinfo=plus_two)), [])
        store.save(conversation("aware-12z", updated=datetime(2025, 1, 20, 12, tzinfo=utc)), [])
        window = ConversationFilter(
            start=datetime(2025, 1, 20, 9, tzinfo=utc), end=datetime(2025, 1, 20, 12, tzinfo=utc)
        )
        assert _listed(store, window) == ["naive-10"], "contract time: naive must compare as UTC; end is exclusive"
        edge = ConversationFilter(start=datetime(2025, 1, 20, 8), end=datetime(2025, 1, 20, 8, 0, 0, 1))
        assert _listed(store, edge) == ["aware-08z"], "contract time: start is inclusive, to the microsecond"
        assert _listed(store) == ["aware-12z", "naive-10", "aware-08z"], "contract order: instants, not wall clocks"

    def test_created_at_field(self, store: ConversationStore) -> None:
        """contract time: field="created_at" filters and orders by creation time."""
        store.save(conversation("made-early", updated=minutes(30), created=minutes(0)), [])
        store.save(conversation("made-late", updated=minutes(20), created=minutes(10)), [])
        by_created = ConversationFilter(field="created_at")
        assert _listed(store, by_created) == ["made-late", "made-early"]
        assert _listed(store, ConversationFilter(field="created_at", end=minutes(5))) == ["made-early"]
        assert _found(store, "t", by_created) == ["made-late", "made-early"]

    @staticmethod
    def _tied(store: ConversationStore) -> list[str]:
        """Save rows tying on both fields, as instants written in other offsets; their newest-first order.

        Titles sort neither like the ids nor against them, and rows are saved in
        neither order, so only descending ids give the expected order.
        """
        plus_two, minus_five = timezone(timedelta(hours=2)), timezone(timedelta(hours=-5))
        same = [
            BASE,
            BASE.replace(tzinfo=timezone.utc),
            BASE.replace(tzinfo=timezone.utc).astimezone(plus_two),
            BASE.replace(tzinfo=timezone.utc).astimezone(minus_five),
        ]
        for index, (name, title) in enumerate([("b", "zulu"), ("d", "yankee"), ("a", "whiskey"), ("c", "xray")]):
            store.save(
                conversation(name, title=f"tie {title}", updated=same[index], created=same[-1 - index]),
                [message("tie words")],
            )
        store.save(
            conversation("old", title="tie victor", updated=minutes(-1), created=minutes(-1)), [message("tie words")]
        )
        store.save(
            conversation("new", title="tie alpha", updated=minutes(1), created=minutes(1)), [message("tie words")]
        )
        return ["new", "d", "c", "b", "a", "old"]

    def test_ties_are_ordered_by_descending_id(self, store: ConversationStore) -> None:
        """contract order: equal instants (in any offset) order by descending id in lists, searches and pages."""
        expected = self._tied(store)
        for field in ("updated_at", "created_at"):
            by = ConversationFilter(field=field)
            assert _listed(store, by) == expected, f"contract order: list by {field} must break ties by descending id"
            for order in ("recent", "relevance"):
                assert _found(store, "tie", by, order=order) == expected, (
                    f"contract order: search(order={order!r}) by {field}: equal instants, and equal scores, "
                    "must be ordered by descending id"
                )
            for size in (1, 2, 4):
                assert self._keyset(store, by, size) == expected, (
                    f"contract paging: keyset pages of {size} by {field} over tied rows overlap or skip"
                )

    def test_relevance_ties_are_newest_first(self, store: ConversationStore) -> None:
        """contract relevance: equal scores are ordered newest first by the filter's field, then by descending id."""
        store.save(conversation("strong", updated=minutes(0), created=minutes(0)), [message("needle needle needle")])
        # Same documents, so same scores; created_at and updated_at order them oppositely.
        store.save(conversation("p", updated=minutes(5), created=minutes(1)), [message("needle hay")])
        store.save(conversation("q", updated=minutes(3), created=minutes(3)), [message("needle hay")])
        store.save(conversation("r", updated=minutes(1), created=minutes(5)), [message("needle hay")])
        store.save(conversation("s", updated=minutes(3), created=minutes(3)), [message("needle hay")])
        for field, tied in (("updated_at", ["p", "s", "q", "r"]), ("created_at", ["r", "s", "q", "p"])):
            by = ConversationFilter(field=field)  # type: ignore[arg-type]
            found = _found(store, "needle", by, order="relevance")
            if Capability.RELEVANCE in store.capabilities:
                assert found == ["strong", *tied], (
                    f"contract relevance: by {field}, equal scores must be newest first, ties by descending id"
                )
            else:
                assert [name for name in found if name != "strong"] == tied, (
                    f"contract relevance: by {field}, equal scores must be newest first, ties by descending id"
                )

    @staticmethod
    def _keyset(store: ConversationStore, filter: ConversationFilter, size: int) -> list[str]:
        """Every id of a listing, read in keyset pages of ``size`` (never more pages than rows + 1)."""
        seen: list[str] = []
        after = None
        for _ in range(len(store.list(filter)) + 1):
            page = store.list(filter, limit=size, after=after)
            if not page:
                break
            seen += [record.id for record in page]
            after = page[-1]
        return seen

    def test_keyset_pages_on_every_field(self, store: ConversationStore) -> None:
        """contract paging: `after=` continues after the cursor by the listing's own field, with filters too."""
        # created_at and updated_at disagree, and each has ties.
        for index in range(8):
            store.save(
                conversation(
                    f"c{index}",
                    updated=minutes(index % 3),
                    created=minutes(7 - index // 2),
                    metadata={"even": index % 2 == 0},
                ),
                [],
            )
        filters = [
            ConversationFilter(field=field, start=start, metadata=metadata)
            for field in ("updated_at", "created_at")
            for start in (None, minutes(1))
            for metadata in (None, {"even": True})
        ]
        for filter in filters:
            for size in (1, 2, 3):
                assert self._keyset(store, filter, size) == _listed(store, filter), (
                    f"contract paging: keyset pages of {size} over {filter} must equal the listing"
                )

    def test_search_time_range_is_half_open(self, store: ConversationStore) -> None:
        """contract time: a search's time range is half-open like a listing's: start inclusive, end exclusive."""
        utc, plus_two = timezone.utc, timezone(timedelta(hours=2))
        store.save(conversation("naive-10", title=None, updated=datetime(2025, 1, 20, 10)), [message("edge")])
        store.save(
            conversation("aware-08z", title=None, updated=datetime(2025, 1, 20, 10, tzinfo=plus_two)), [message("edge")]
        )
        store.save(conversation("aware-12z", title="edge", updated=datetime(2025, 1, 20, 12, tzinfo=utc)), [])
        window = ConversationFilter(
            start=datetime(2025, 1, 20, 9, tzinfo=utc), end=datetime(2025, 1, 20, 12, tzinfo=utc)
        )
        edge = ConversationFilter(start=datetime(2025, 1, 20, 8), end=datetime(2025, 1, 20, 8, 0, 0, 1))
        created = ConversationFilter(field="created_at", end=datetime(2025, 1, 20, 10, tzinfo=utc))
        for order in ("recent", "relevance"):
            assert _found(store, "edge", window, order=order) == ["naive-10"], (
                f"contract time: search(order={order!r}): the end of the range is exclusive; naive compares as UTC"
            )
            assert _found(store, "edge", edge, order=order) == ["aware-08z"], (
                f"contract time: search(order={order!r}): start is inclusive, end exclusive, to the microsecond"
            )
            assert _found(store, "edge", created, order=order) == ["aware-08z"], (
                f"contract time: search(order={order!r}) by created_at: the end of the range is exclusive"
            )

    # -- expiry (metadata["expires_at"]; Capability.EXPIRY) ----------------------------

    @staticmethod
    def expiring(store: ConversationStore) -> ConversationStore:
        StoreContract.require(store, Capability.EXPIRY)
        return store

    def test_expired_conversations_are_missing_to_every_read(self, store: ConversationStore) -> None:
        """contract expiry: a conversation whose expires_at is past is missing to every read and write."""
        self.expiring(store)
        kept = conversation("kept", title="needle kept", metadata={EXPIRES_AT: NOT_EXPIRED, "k": "v"})
        store.save(kept, [message("needle here", id="k")])
        gone = [f"gone{index}" for index in range(len(EXPIRED))]
        for index, when in enumerate(EXPIRED):
            # Newer than "kept" and matching in title and text: a listing that forgets expiry shows them first.
            store.save(
                conversation(
                    gone[index], title="needle title", updated=minutes(index + 1), metadata={EXPIRES_AT: when, "k": "v"}
                ),
                [message("needle text", id="a"), message("other", id="b")],
            )
        # Listings and searches first, while the expired rows are still stored (a delete would remove them).
        self._only_kept_is_listed_and_found(store, "while expired rows are stored")
        for name, when in zip(gone, EXPIRED):
            assert store.load(name) is None and store.get(name) is None, (
                f"contract expiry: expires_at={when!r} is past, so load/get must give None"
            )
            if offers(store, Capability.WINDOWED_LOADING):
                assert store.load_window(name, last_messages=1) is None, "contract expiry: load_window must give None"
            assert store.append(name, [message("more", id="c")]) is False, "contract expiry: append must give False"
            assert store.delete_message(name, "a") is False, "contract expiry: delete_message must give False"
        self._only_kept_is_listed_and_found(store, "after refused appends and message deletes")
        for name in gone:
            assert store.delete(name) is False, "contract expiry: delete of an expired conversation gives False"
            assert store.get(name) is None, "contract expiry: a refused append or delete must not revive it"
        self._only_kept_is_listed_and_found(store, "after the deletes")

    @staticmethod
    def _only_kept_is_listed_and_found(store: ConversationStore, when: str) -> None:
        for filter in (
            ConversationFilter(),
            ConversationFilter(metadata={"k": "v"}),
            ConversationFilter(field="created_at", start=minutes(-60), end=minutes(60)),
        ):
            assert _listed(store, filter) == ["kept"], (
                f"contract expiry: {when}, list({filter}) shows an expired conversation"
            )
            for order in ("recent", "relevance"):
                assert _found(store, "needle", filter, order=order) == ["kept"], (
                    f"contract expiry: {when}, search(order={order!r}) finds an expired conversation"
                )
        assert _listed(store, limit=1, offset=0) == ["kept"] and _listed(store, offset=1) == [], (
            f"contract expiry: {when}, expired conversations must not take places in pages"
        )
        assert _found(store, "needle", limit=1) == ["kept"] and _found(store, "needle", offset=1) == [], (
            f"contract expiry: {when}, expired conversations must not take places in search pages"
        )

    def test_saving_onto_an_expired_id_starts_fresh(self, store: ConversationStore) -> None:
        """contract expiry: save (and save_many) onto an expired id start a new conversation; nothing old reappears."""
        self.expiring(store)
        names = ["single", "bulk"] if offers(store, Capability.BULK_SAVING) else ["single"]
        for name in names:
            store.save(
                conversation(name, title=f"ancient {name}", metadata={EXPIRES_AT: EXPIRED[0], "old": 1}),
                [message("forgotten words", id="a"), message("more forgotten", id="b")],
            )
            fresh = conversation(name, title=f"fresh {name}", metadata={"new": 1})
            sent = message("brand new", id="b")
            if name == "bulk":
                assert self.bulk(store).save_many([(fresh, [sent])]) == 1
            else:
                store.save(fresh, [sent])
            assert_round_trip(store.load(name), StoredConversation(fresh, (sent,)))
        assert sorted(_listed(store)) == sorted(names), "contract expiry: the new conversation is listed once"
        for query in ("forgotten", "ancient"):
            assert _found(store, query) == [], f"contract expiry: {query!r} of the expired conversation is found again"
        assert sorted(_found(store, "fresh")) == sorted(names) and sorted(_found(store, "brand")) == sorted(names)
        store.save(conversation("single", metadata={"new": 1}), [message("later", id="c")])
        assert _ids(store, "single") == ["b", "c"], "contract expiry: the fresh conversation keeps growing as usual"
        if offers(store, Capability.BULK_SAVING):  # pairs apply in order: an expired pair restarts the next one
            expired = conversation("inner", title="inner", metadata={EXPIRES_AT: EXPIRED[1]})
            store.save_many(
                [
                    (conversation("inner"), [message("first", id="a")]),
                    (expired, [message(id="b")]),
                    (conversation("inner", title="again"), [message("second", id="c")]),
                ]
            )
            assert _ids(store, "inner") == ["c"], (
                "contract expiry: in save_many, a pair after one that saved an expired record starts afresh"
            )
            assert _found(store, "first") == [], "contract expiry: text from before the restart is found again"

    def test_purge_expired(self, store: ConversationStore) -> None:
        """contract purge_expired: removes exactly the expired conversations and says how many."""
        self.expiring(store)
        if not offers(store, Capability.PURGING):
            pytest.skip("the backend does not declare Capability.PURGING (purge_expired)")
        for index, when in enumerate(EXPIRED):
            store.save(
                conversation(f"gone{index}", title="purged words", metadata={EXPIRES_AT: when}),
                [message("purged words")],
            )
        future = conversation("future", metadata={EXPIRES_AT: NOT_EXPIRED})
        plain = conversation("plain")
        store.save(future, [message("kept words", id="f")])
        store.save(plain, [message("kept words", id="p")])
        before = [store.load("future"), store.load("plain")]
        assert store.delete("gone0") is False, "contract expiry: delete of an expired conversation gives False"
        assert store.purge_expired() == len(EXPIRED) - 1, (
            "contract purge_expired: wrong count (delete removes an expired conversation, so it is not purged again)"
        )
        assert store.purge_expired() == 0, "contract purge_expired: a second purge finds nothing"
        assert [store.load("future"), store.load("plain")] == before, "contract purge_expired: it changed live data"
        assert sorted(_listed(store)) == ["future", "plain"] and _found(store, "purged") == []
        store.save(conversation("gone0"), [message("again", id="n")])
        assert _ids(store, "gone0") == ["n"], "contract purge_expired: a purged id can be saved afresh"

    def test_far_future_expiry_changes_nothing(self, store: ConversationStore) -> None:
        """contract expiry: an expiry far ahead is plain metadata: every operation works as without it."""
        record = conversation("later", title="future title", metadata={EXPIRES_AT: NOT_EXPIRED, "k": 1})
        sent = [message("future text", id="a"), message("second", id="b")]
        store.save(record, sent)
        assert_round_trip(store.load("later"), StoredConversation(record, tuple(sent)))
        assert store.get("later") == record and _listed(store) == ["later"]
        assert _found(store, "future") == ["later"] and _listed(store, ConversationFilter(metadata={"k": 1})) == [
            "later"
        ]
        assert store.append("later", [message("third", id="c")]) is True
        assert store.delete_message("later", "b") is True and _ids(store, "later") == ["a", "c"]
        aware = conversation("aware", metadata={EXPIRES_AT: "2999-01-01T00:00:00+05:00"})
        store.save(aware, [])
        assert store.get("aware") == aware, "contract expiry: an aware future expiry is kept as given"
        assert store.delete("later") is True and store.get("later") is None

    def test_bad_expiry_values_are_refused(self, store: ConversationStore) -> None:
        """contract expiry: an expires_at that is no ISO timestamp is refused (InvalidInputError), nothing written."""
        record = conversation("c", title="before", metadata={EXPIRES_AT: NOT_EXPIRED})
        store.save(record, [message("one", id="a")])
        before = store.load("c")
        for bad in BAD_EXPIRIES:
            with pytest.raises(InvalidInputError, match=EXPIRES_AT):
                conversation("c", metadata={EXPIRES_AT: bad})
            changed = conversation("c", title="after")
            changed.metadata[EXPIRES_AT] = bad  # changed after validation: the store must check again
            with pytest.raises(InvalidInputError):
                store.save(changed, [message("two", id="b")])
            if offers(store, Capability.BULK_SAVING):
                with pytest.raises(InvalidInputError):
                    store.save_many([(conversation("other"), []), (changed, [])])
        assert store.load("c") == before and store.get("other") is None, (
            "contract expiry: a refused expiry changed stored data"
        )

    # -- threads and the state machine ---------------------------------------------

    def test_threads_lose_nothing(self, store: ConversationStore) -> None:
        """contract threads: concurrent saves from several threads are all kept, in each thread's order."""
        errors: list[BaseException] = []

        def work(number: int) -> None:
            try:
                record = conversation(f"thread{number}")
                for turn in range(15):
                    store.save(record, [message(id=f"t{turn}")])
                    store.save(conversation("shared"), [message(id=f"{number}-{turn}")])
            except BaseException as exc:
                errors.append(exc)

        threads = [threading.Thread(target=work, args=(n,)) for n in range(6)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert errors == [], f"contract threads: a save failed: {errors[:1]}"
        for number in range(6):
            assert _ids(store, f"thread{number}") == [f"t{turn}" for turn in range(15)]
        shared = _ids(store, "shared")
        assert len(shared) == 90, "contract threads: concurrent appends were lost"
        for number in range(6):
            assert [i for i in shared if i.startswith(f"{number}-")] == [f"{number}-{t}" for t in range(15)]

    def test_removed_text_leaves_the_search_index(
        self, store: ConversationStore, indexed_tokens: Callable[[], set[str]] | None
    ) -> None:
        """contract index: deleted, edited, replaced and expired text leaves the search index, not just the results."""
        if indexed_tokens is None:
            pytest.skip(
                "the backend does not declare Capability.INDEX_INSPECTION (indexed_tokens) and the test class "
                "overrides no indexed_tokens fixture: text that deletes leave in its search index is NOT checked"
            )
        store.save(
            conversation("a", title="titlezulu"),
            [message("alphazulu keepzulu", id="m1"), message("betazulu", id="m2"), message("dropzulu", id="m3")],
        )
        store.save(conversation("b", title="otherzulu"), [message("keepzulu", id="m1")])
        live = {"titlezulu", "alphazulu", "keepzulu", "betazulu", "dropzulu", "otherzulu"}
        assert live <= indexed_tokens(), (
            f"contract index: indexed_tokens() must report stored text; missing {sorted(live - indexed_tokens())}"
        )
        steps: list[tuple[str, Callable[[], object], set[str]]] = [
            ("delete_message", lambda: store.delete_message("a", "m1"), {"alphazulu"}),
            (
                "saving an edited message",
                lambda: store.save(conversation("a", title="titlezulu"), [message("gammazulu", id="m2")]),
                {"betazulu"},
            ),
            ("saving a new title", lambda: store.save(conversation("a", title="newzulu"), []), {"titlezulu"}),
            (
                "save(replace=True)",
                lambda: store.save(conversation("a", title="newzulu"), [message("deltazulu", id="m4")], replace=True),
                {"gammazulu", "dropzulu"},
            ),
            (
                "an append editing a message",
                lambda: store.append("a", [message("epsilonzulu", id="m4")]),
                {"deltazulu"},
            ),
            ("delete", lambda: store.delete("a"), {"newzulu", "epsilonzulu"}),
        ]
        if Capability.EXPIRY in store.capabilities:
            steps += self._expiry_index_steps(store)
        for label, step, gone in steps:
            step()
            left = gone & indexed_tokens()
            assert not left, f"contract index: after {label}, the search index still holds {sorted(left)}"
        assert {"keepzulu", "otherzulu"} <= indexed_tokens(), "contract index: text of other conversations went too"

    @staticmethod
    def _expiry_index_steps(store: ConversationStore) -> list[tuple[str, Callable[[], object], set[str]]]:
        """Steps of the index check that remove expired conversations (see test_removed_text_leaves_the_search_index)."""
        expired = {EXPIRES_AT: EXPIRED[0]}
        store.save(conversation("e1", title="staletitlezulu", metadata=expired), [message("stalezulu", id="x")])
        store.save(conversation("e2", metadata=expired), [message("expiredzulu", id="x")])
        steps: list[tuple[str, Callable[[], object], set[str]]] = [
            (
                "a save onto an expired id",
                lambda: store.save(conversation("e1", title="freshzulu"), []),
                {"staletitlezulu", "stalezulu"},
            ),
            ("delete of an expired conversation", lambda: store.delete("e2"), {"expiredzulu"}),
        ]
        if offers(store, Capability.PURGING):
            store.save(conversation("e3", title="purgedtitlezulu", metadata=expired), [message("purgedzulu")])
            steps.append(("purge_expired", store.purge_expired, {"purgedtitlezulu", "purgedzulu"}))
        return steps

    def test_two_store_objects_lose_no_updates(self, open_stores: Callable[[str], ConversationStore]) -> None:
        """contract multi-process: threads on two store objects over the same data, mixing save, replace, delete
        and append, end in the state of some serial order: no append lost, no mixed or torn state, an index that
        agrees with the data."""
        first = open_stores("shared")
        self.require(first, Capability.MULTI_PROCESS)
        run = MultiStoreRun([first, open_stores("shared")])
        run.start()
        assert run.errors == [], f"contract multi-process: an operation failed: {run.errors[:3]}"
        run.check_final()

    def test_state_machine_agrees_with_the_reference(self, store_opener: StoreOpener) -> None:
        """contract equivalence: random operation sequences give the memory backend's answers."""
        run_comparison(store_opener)

    def test_saves_of_mutated_sdk_messages_store_the_last_save(self, store_opener: StoreOpener) -> None:
        """contract mutated saves: SDK messages changed in place between saves (through SessionManager,
        which sends only what changed where the store names revisions) are stored exactly as a full
        save stores them, also when another manager writes in between."""
        check_mutated_saves(store_opener)


def search_strings() -> st.SearchStrategy[str]:
    """Queries mixing the language's syntax with arbitrary text (exported for backend authors)."""
    return strategies.queries
