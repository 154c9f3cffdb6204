"""save_many (one transaction, COPY) and the one-statement append, against PostgreSQL.

The shared contract checks what every backend must do; these tests hold the
PostgreSQL writes to the rows that ``save`` writes, byte for byte: positions,
fingerprints, search vectors, next positions.
"""

from __future__ import annotations

import dataclasses
import itertools
import logging
import threading
import time
from collections.abc import Iterator
from datetime import datetime, timedelta

import psycopg
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from qv_session_manager import (
    ConversationFilter,
    ConversationRecord,
    InvalidInputError,
    MessageRecord,
    StorageBusyError,
)
from qv_session_manager.protocol import Capability, offers
from qv_session_manager.query import parse
from qv_session_manager.testing import strategies
from qv_session_manager_postgres import PostgresStore
from qv_session_manager_postgres import store as store_module
from qv_session_manager_postgres.textsearch import (
    MAX_POSITION,
    MAX_POSITIONS_PER_LEXEME,
    MAX_VECTOR_BYTES,
    quote,
    vector_of,
)

AT = datetime(2025, 1, 20, 12, 0, 0)
WORDS = ["alpha", "beta", "gamma", "délta", "東京", "needle", "hay"]


def record(id: str = "c1", title: str | None = "a title", **fields) -> ConversationRecord:
    fields.setdefault("created_at", AT)
    fields.setdefault("updated_at", AT)
    return ConversationRecord(id=id, title=title, **fields)


def message(id: str, content: str = "hello", **fields) -> MessageRecord:
    fields.setdefault("created_at", AT)
    fields.setdefault("role", "user")
    return MessageRecord(id=id, content=content, **fields)


def sql(url: str, statement: str, *params):
    with psycopg.connect(url, autocommit=True) as connection:
        cursor = connection.execute(statement, params or None)  # type: ignore[arg-type]
        return cursor.fetchall() if cursor.description else None


def rows(url: str, schema: str, ids: list[str] | None = None) -> tuple[list, list]:
    """Every column of the conversations (``ids``, or all) and their messages, but the generated keys.

    ``tsvector::text`` is the vector as PostgreSQL stores it, so equal texts mean equal vectors.
    """
    where, params = ("WHERE c.id = ANY(%s)", (ids,)) if ids is not None else ("", ())
    conversations = sql(
        url,
        f"""SELECT c.id, c.title, c.model_name, c.created_at, c.updated_at, c.created_key, c.updated_key,
                   c.metadata, c.filter_doc::text, c.escaped, c.next_position, c.title_tsv::text, c.title_exact
            FROM "{schema}".qv_conversations c {where} ORDER BY c.id""",
        *params,
    )
    messages = sql(
        url,
        f"""SELECT c.id, m.id, m.position, m.role, m.content, m.created_at, m.metadata, m.images, m.tool_calls,
                   m.tool_call_id, m.escaped, m.digest, m.content_digest, m.content_tsv::text, m.search_exact
            FROM "{schema}".qv_messages m JOIN "{schema}".qv_conversations c ON c.pk = m.conversation_pk
            {where} ORDER BY c.id, m.position""",
        *params,
    )
    return conversations, messages  # type: ignore[return-value]


def observed(store: PostgresStore, ids: list[str]) -> tuple:
    """What a user of the store sees of ``ids``: loads, the listing, searches with text."""
    listed = [r.id for r in store.list(ConversationFilter()) if r.id in ids]
    searches = [
        [
            (h.conversation.id, h.message_id, h.text, h.score)
            for h in store.search(parse(word), ConversationFilter(), order=order, with_text=True)
            if h.conversation.id in ids
        ]
        for word in WORDS
        for order in ("recent", "relevance")
    ]
    return [store.load(i) for i in ids], listed, searches


# -- equivalence with saves in order ---------------------------------------------------------

_CONTENTS = st.one_of(st.sampled_from(["alpha beta", "needle in hay", "東京 délta", "alpha beta"]), strategies.prose)


@st.composite
def _pair(draw: st.DrawFn) -> tuple[ConversationRecord, list[MessageRecord]]:
    conversation = draw(strategies.conversations(id=draw(st.sampled_from(["a", "b", "c"]))))
    chosen = draw(st.lists(st.sampled_from(["m1", "m2", "m3", "m4", "m5"]), unique=True, max_size=4))
    return conversation, [
        MessageRecord(
            id=message_id,
            role=draw(st.sampled_from(["user", "assistant"])),
            content=draw(_CONTENTS),
            created_at=draw(strategies.timestamps()),
            # Same content, other metadata: an update that keeps the search vector.
            metadata=draw(st.sampled_from([{}, {"k": 1}, {"k": "\x00"}])),
            tool_call_id=draw(st.sampled_from([None, "call\x00x"])),
        )
        for message_id in chosen
    ]


_examples = itertools.count()


@pytest.mark.slow
def test_save_many_writes_the_rows_saves_in_order_write(make_store, postgres_url: str, schema_for, monkeypatch) -> None:
    bulk, sequential = make_store("bulk"), make_store("sequential")
    assert offers(bulk, Capability.BULK_SAVING)

    @given(
        before=st.lists(_pair(), max_size=3),
        batch=st.lists(_pair(), max_size=6),
        path=st.sampled_from(["copy", "values", "arrays"]),
    )
    @settings(max_examples=60)
    def check(before, batch, path: str) -> None:
        # A fresh namespace of ids for each example, in the same two schemas.
        prefix = f"x{next(_examples)}-"

        def named(pairs):
            return [(dataclasses.replace(c, id=prefix + c.id), m) for c, m in pairs]

        before, batch = named(before), named(batch)
        ids = sorted({c.id for c, _ in before + batch})
        for conversation, messages in before:
            bulk.save(conversation, messages)
            sequential.save(conversation, messages)
        # Every way rows travel: COPY, VALUES of scalars, unnested arrays.
        monkeypatch.setattr(store_module, "COPY_ROWS", 1 if path == "copy" else 10**9)
        monkeypatch.setattr(store_module, "VALUES_ROWS", 0 if path == "arrays" else 10**9)
        assert bulk.save_many(iter(batch)) == len(batch)
        monkeypatch.undo()
        for conversation, messages in batch:
            sequential.save(conversation, messages)
        assert rows(postgres_url, schema_for("bulk"), ids) == rows(postgres_url, schema_for("sequential"), ids)
        assert observed(bulk, ids) == observed(sequential, ids)
        # The next positions are right too: one more message lands after the others.
        for conversation_id in ids:
            for store in (bulk, sequential):
                assert store.append(conversation_id, [message("after", "the last one")])
        assert rows(postgres_url, schema_for("bulk"), ids) == rows(postgres_url, schema_for("sequential"), ids)

    check()


def test_save_many_of_many_messages_by_copy_round_trips_any_text(make_store, postgres_url: str, schema_for) -> None:
    store = make_store()
    odd = [
        "tab\there",
        "new\nline",
        "back\\slash \\. \\N",
        "\\.",
        "NUL\x00inside",
        "東京 résumé",
        "'quote' \"dq\"",
        "\r\n",
        "",
        " ",
        "end\\",
    ]
    batch = [
        (
            record(f"c{n}", title=f"chat {n} {odd[n % len(odd)]}", metadata={"n": n, "s": odd[n % len(odd)]}),
            [
                message(
                    f"m{k}",
                    f"turn {k} of {n} {odd[(n + k) % len(odd)]} needle{n}",
                    tool_call_id=odd[k % len(odd)],
                    images=(odd[k % len(odd)], b"\x00\\\t"),
                    metadata={"k": odd[k % len(odd)]},
                )
                for k in range(12)
            ],
        )
        for n in range(30)
    ]
    assert len(batch) * 12 >= store_module.COPY_ROWS, "the batch must take the COPY path"
    assert store.save_many(batch) == 30
    for conversation, messages in batch:
        loaded = store.load(conversation.id)
        assert loaded is not None and loaded.conversation == conversation and list(loaded.messages) == messages
    assert [h.conversation.id for h in store.search(parse("needle7"), ConversationFilter())] == ["c7"]
    assert [(h.conversation.id, h.message_id) for h in store.search(parse('"turn 3 of 12"'), ConversationFilter())] == [
        ("c12", "m3")
    ]
    assert len(store.search(parse("résumé"), ConversationFilter())) == 30  # every conversation has one
    positions = sql(
        postgres_url,
        f'SELECT next_position, count(*) FROM "{schema_for("main")}".qv_conversations c '
        f'JOIN "{schema_for("main")}".qv_messages m ON m.conversation_pk = c.pk GROUP BY c.pk',
    )
    assert set(positions) == {(12, 12)}


def test_search_finds_bulk_saved_text_and_titles(make_store) -> None:
    store = make_store()
    store.save_many(
        [
            (record("one", title="Weather in Paris"), [message("a", "How warm is it? Résumé please")]),
            (record("two", title=None), [message("a", "python lists"), message("b", "needle in a haystack")]),
        ]
    )
    assert [h.conversation.id for h in store.search(parse("resume"), ConversationFilter())] == ["one"]
    assert [(h.conversation.id, h.message_id) for h in store.search(parse('"a haystack"'), ConversationFilter())] == [
        ("two", "b")
    ]
    assert [h.message_id for h in store.search(parse("paris"), ConversationFilter())] == [None]
    ranked = store.search(parse("python OR weather"), ConversationFilter(), order="relevance")
    assert sorted(h.conversation.id for h in ranked) == ["one", "two"] and all(h.score for h in ranked)


# -- the same conversation twice, unchanged rows -------------------------------------------------


def test_the_same_conversation_twice_in_one_batch(make_store, postgres_url: str, schema_for) -> None:
    store = make_store()
    store.save(record("c", title="first"), [message("s", "stored text"), message("t", "also stored")])
    (before_xmin,) = sql(postgres_url, f'SELECT xmin::text FROM "{schema_for("main")}".qv_messages WHERE id = %s', "s")
    assert (
        store.save_many(
            [
                (record("c", title="second"), [message("n", "new once"), message("s", "changed for a while")]),
                (record("other"), [message("n", "another conversation")]),
                (
                    record("c", title="third"),
                    [message("s", "stored text"), message("n", "new, then edited"), message("o", "newest")],
                ),
            ]
        )
        == 3
    )
    loaded = store.load("c")
    assert loaded is not None and loaded.conversation.title == "third"
    assert [(m.id, m.content) for m in loaded.messages] == [
        ("s", "stored text"),
        ("t", "also stored"),
        ("n", "new, then edited"),
        ("o", "newest"),
    ]
    # Changed and changed back within the batch: the stored row is not rewritten at all.
    assert sql(postgres_url, f'SELECT xmin::text FROM "{schema_for("main")}".qv_messages WHERE id = %s', "s") == [
        before_xmin
    ]
    assert [h.conversation.id for h in store.search(parse("third"), ConversationFilter())] == ["c"]
    assert store.search(parse("first OR second OR while"), ConversationFilter()) == []
    assert [h.message_id for h in store.search(parse("edited"), ConversationFilter())] == ["n"]
    assert store.search(parse('"new once"'), ConversationFilter()) == []
    positions = sql(
        postgres_url,
        f'SELECT m.position FROM "{schema_for("main")}".qv_messages m '
        f'JOIN "{schema_for("main")}".qv_conversations c ON c.pk = m.conversation_pk '
        "WHERE c.id = 'c' ORDER BY 1",
    )
    assert [p[0] for p in positions] == [0, 1, 2, 3]


# -- iterables ---------------------------------------------------------------------------------------


class _Once:
    """An iterable that may be iterated once only."""

    def __init__(self, items: list) -> None:
        self.items, self.used = items, False

    def __iter__(self) -> Iterator:
        assert not self.used, "save_many iterated its input twice"
        self.used = True
        return iter(self.items)


def test_save_many_takes_a_generator_and_reads_it_once(make_store) -> None:
    store = make_store()
    produced: list[str] = []

    def pairs() -> Iterator[tuple[ConversationRecord, list[MessageRecord]]]:
        for n in range(5):
            produced.append(f"g{n}")
            yield record(f"g{n}", title=f"generated {n}"), [message("m", f"text {n}")]

    generator = pairs()
    assert store.save_many(generator) == 5
    assert produced == [f"g{n}" for n in range(5)] and next(generator, None) is None
    assert [r.id for r in store.list(ConversationFilter())] == ["g4", "g3", "g2", "g1", "g0"]
    assert store.save_many(_Once([(record("once"), [message("m")])])) == 1
    assert store.save_many(iter([])) == 0 and store.save_many([]) == 0


# -- all or nothing -----------------------------------------------------------------------------------


def _snapshot(store: PostgresStore, url: str, schema: str) -> tuple:
    ids = [r.id for r in store.list(ConversationFilter())]
    return rows(url, schema), observed(store, ids), ids


def test_a_refused_pair_in_the_middle_writes_nothing(make_store, postgres_url: str, schema_for) -> None:
    store = make_store()
    store.save(record("kept", title="alpha"), [message("a", "alpha text"), message("b", "beta text")])
    store.save(record("other", title="gamma"), [message("a", "gamma text")])
    before = _snapshot(store, postgres_url, schema_for("main"))
    good = [
        (record("kept", title="changed"), [message("a", "changed text"), message("c", "new text")]),
        (record("fresh", title="needle"), [message("x", "needle")]),
    ]
    bad_metadata = message("y", metadata={})
    bad_metadata.metadata["set"] = {1, 2}  # type: ignore[assignment]  # not JSON
    for refused in [
        (record("fresh2"), [message("d", "one"), message("d", "twice")]),  # duplicate message ids
        ("not a record", []),
        (record("fresh3"), ["not a message"]),
        (record("fresh4"), [bad_metadata]),
        (record("fresh5"),),  # not a pair
        None,
    ]:
        with pytest.raises(InvalidInputError):
            store.save_many([good[0], refused, good[1]])  # type: ignore[list-item]
        assert _snapshot(store, postgres_url, schema_for("main")) == before, f"{refused!r} left changes"
    store.save_many(good)
    assert store.load("kept").conversation.title == "changed"  # type: ignore[union-attr]


def test_a_failing_write_in_the_middle_writes_nothing(make_store, postgres_url: str, schema_for) -> None:
    """A row lock held elsewhere makes the batch fail at the database: nothing of it stays."""
    store = make_store("locked", lock_timeout=0.2)
    store.save(record("b-locked"), [message("a", "locked text")])
    before = _snapshot(store, postgres_url, schema_for("locked"))
    batch = [
        (record("a-first", title="needle"), [message(f"m{n}", f"text {n}") for n in range(3)]),
        (record("b-locked", title="changed"), [message("a", "changed"), message("b", "added")]),
        (record("c-last"), [message(f"m{n}", "needle") for n in range(100)]),  # by COPY
    ]
    with psycopg.connect(postgres_url) as blocker:
        blocker.execute(
            f"""SELECT pk FROM "{schema_for("locked")}".qv_conversations WHERE id = 'b-locked' FOR UPDATE"""  # type: ignore[arg-type]
        )
        with pytest.raises(StorageBusyError):
            store.save_many(batch)
        blocker.rollback()
    assert _snapshot(store, postgres_url, schema_for("locked")) == before
    assert store.save_many(batch) == 3
    assert len(store.load("c-last").messages) == 100  # type: ignore[union-attr]


def test_a_connection_killed_mid_save_many_reruns_the_whole_batch(
    make_store, postgres_url: str, schema_for, monkeypatch
) -> None:
    store = make_store()
    store.save(record("c"), [message("a", "first")])
    original = PostgresStore._write
    attempts: list[int] = []

    def killed_while_writing(self, cursor, writes):
        attempts.append(len(attempts))
        original(self, cursor, writes)
        if len(attempts) == 1:  # everything is written but not committed...
            sql(postgres_url, "SELECT pg_terminate_backend(%s)", cursor.connection.info.backend_pid)
            cursor.execute("SELECT 1")  # ...and the connection is gone

    monkeypatch.setattr(PostgresStore, "_write", killed_while_writing)
    batch = [
        (record("c", title="second"), [message("a", "edited"), message("b")]),
        (record("d"), [message(f"m{n}") for n in range(70)]),
    ]
    assert store.save_many(batch) == 2
    monkeypatch.undo()
    assert len(attempts) == 2, "the batch must run again, from the start, on a new connection"
    assert [(m.id, m.content) for m in store.load("c").messages] == [("a", "edited"), ("b", "hello")]  # type: ignore[union-attr]
    assert [m.id for m in store.load("d").messages] == [f"m{n}" for n in range(70)]  # type: ignore[union-attr]
    counts = sql(postgres_url, f'SELECT count(*) FROM "{schema_for("main")}".qv_messages')
    assert counts == [(72,)]


def test_save_many_on_a_closed_store_fails(make_store) -> None:
    from qv_session_manager import StorageError

    store = make_store()
    store.close()
    for items in ([], [(record(), [])]):
        with pytest.raises(StorageError):
            store.save_many(items)


# -- append ------------------------------------------------------------------------------------------


def test_append_writes_the_rows_save_writes(make_store, postgres_url: str, schema_for) -> None:
    appended, saved = make_store("appended"), make_store("saved")
    start = record("c", title="kept title", metadata={"k": "v"})
    for store in (appended, saved):
        store.save(start, [message("a", "one")])
    later = AT + timedelta(minutes=5)
    batches = [
        [message("b", "two"), message("c", "three\x00NUL")],  # new only: one statement
        [message("d", "four"), message("a", "one, edited")],  # a stored one among them: the general path
        [message("b", "two")],  # stored and unchanged
        [],
    ]
    for turn, batch in enumerate(batches):
        assert appended.append("c", batch, updated_at=later + timedelta(seconds=turn))
        saved.save(dataclasses.replace(start, updated_at=later + timedelta(seconds=turn)), batch)
    assert appended.append("c", [message("e", "five")])  # no updated_at: it stays
    saved.save(dataclasses.replace(start, updated_at=later + timedelta(seconds=3)), [message("e", "five")])
    assert rows(postgres_url, schema_for("appended")) == rows(postgres_url, schema_for("saved"))
    assert [m.id for m in appended.load("c").messages] == ["a", "b", "c", "d", "e"]  # type: ignore[union-attr]


def test_append_to_a_missing_conversation_writes_nothing(make_store, postgres_url: str, schema_for) -> None:
    store = make_store()
    assert store.append("missing", [message("a")], updated_at=AT) is False
    assert store.append("missing", []) is False and store.append("missing", [], updated_at=AT) is False
    assert sql(postgres_url, f'SELECT count(*) FROM "{schema_for("main")}".qv_messages') == [(0,)]
    assert store.get("missing") is None


def test_concurrent_appends_to_one_conversation_keep_every_message_in_order(
    make_store, postgres_url: str, schema_for
) -> None:
    store = make_store(max_size=4)
    store.save(record("shared"), [])
    writers, turns = 4, 30
    errors: list[BaseException] = []

    def write(writer: int) -> None:
        try:
            for turn in range(turns):
                store.append("shared", [message(f"{writer}-{turn}", f"turn {turn}")], updated_at=AT)
                if turn % 10 == 0:  # now and then a message that is stored already
                    store.append("shared", [message(f"{writer}-{turn}", f"turn {turn}, edited")])
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(w,)) for w in range(writers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    ids = [m.id for m in store.load("shared").messages]  # type: ignore[union-attr]
    assert len(ids) == writers * turns and len(set(ids)) == len(ids)
    for writer in range(writers):
        assert [i for i in ids if i.startswith(f"{writer}-")] == [f"{writer}-{t}" for t in range(turns)]
    positions = sql(postgres_url, f'SELECT position FROM "{schema_for("main")}".qv_messages ORDER BY 1')
    assert [p[0] for p in positions] == list(range(writers * turns))
    assert sql(postgres_url, f'SELECT next_position FROM "{schema_for("main")}".qv_conversations') == [
        (writers * turns,)
    ]


# -- the pool's check --------------------------------------------------------------------------------


def test_a_connection_ended_while_idle_is_replaced_before_use(make_store, postgres_url: str, caplog) -> None:
    """The cheap check sees a terminated session and the pool hands out another: no operation is rerun."""
    store = make_store(min_size=1, max_size=1)
    store.save(record(), [message("a")])
    with store._pool.connection() as connection:
        pid = connection.info.backend_pid
    sql(postgres_url, "SELECT pg_terminate_backend(%s)", pid)
    deadline = time.monotonic() + 5
    while sql(postgres_url, "SELECT 1 FROM pg_stat_activity WHERE pid = %s", pid) and time.monotonic() < deadline:
        time.sleep(0.01)
    with caplog.at_level(logging.WARNING, logger="qv_session_manager"):
        assert store.append("c1", [message("b")], updated_at=AT) is True
    assert "running it again" not in caplog.text
    with store._pool.connection() as connection:
        assert connection.info.backend_pid != pid
    assert [m.id for m in store.load("c1").messages] == ["a", "b"]  # type: ignore[union-attr]


# -- the search vector builder -----------------------------------------------------------------------


def _plain_vector(document: list[str]) -> tuple[str, bool]:
    """The rules of textsearch.vector_of, written the plain way."""
    positions: dict[str, list[int]] = {}
    for index, token in enumerate(document, 1):
        positions.setdefault(token, []).append(index)
    size = sum(len(t.encode()) + len(t.encode()) % 2 + 2 + 2 * len(p) for t, p in positions.items())
    if (
        len(document) <= MAX_POSITION
        and all(len(p) <= MAX_POSITIONS_PER_LEXEME for p in positions.values())
        and size <= MAX_VECTOR_BYTES
    ):
        return " ".join(quote(t) + ":" + ",".join(str(i) for i in p) for t, p in positions.items()), True
    kept, total = [], 0
    for token in positions:
        total += len(token.encode())
        if total > MAX_VECTOR_BYTES:
            break
        kept.append(quote(token))
    return " ".join(kept), False


@given(
    st.lists(
        st.one_of(st.sampled_from(["a", "ab", "é", "東", "x'y", "back\\slash"]), st.text(min_size=1)), max_size=40
    ),
    st.sampled_from([1, 2, 300]),
)
@settings(max_examples=300)
def test_the_vector_builder_follows_the_plain_rules(document: list[str], repeat: int) -> None:
    assert vector_of(document * repeat) == _plain_vector(document * repeat)


@pytest.mark.parametrize(
    "document",
    [
        [f"w{i % 500}" for i in range(MAX_POSITION + 1)],  # past the last position
        [f"w{i}" for i in range(MAX_POSITION)],  # at it
        ["é" * 199 + str(i) for i in range(2_000)],  # the bound fails, the exact size passes
        ["é" * 200 + str(i) for i in range(2_700)],  # past 1 MB: a prefix of the distinct tokens
        [],
    ],
)
def test_the_vector_builder_at_the_limits(document: list[str]) -> None:
    assert vector_of(document) == _plain_vector(document)
