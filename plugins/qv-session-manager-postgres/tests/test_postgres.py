"""What is particular to PostgreSQL: migrations, processes, NUL, engine limits, failures."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
import time
from datetime import datetime
from pathlib import Path
from urllib.parse import urlsplit

import psycopg
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from qv_ollama_sdk.domain.models import Conversation

from qv_session_manager import (
    Capability,
    ConversationFilter,
    ConversationRecord,
    CorruptStorageError,
    InvalidInputError,
    MessageRecord,
    ReadOnlyStorageError,
    SchemaVersionError,
    SessionManager,
    StorageBusyError,
    StorageError,
    ToolCallRecord,
    available_backends,
    open_store,
)
from qv_session_manager.backends.memory import MemoryStore
from qv_session_manager.query import parse
from qv_session_manager.testing import strategies
from qv_session_manager_postgres import PostgresStore, split_url
from qv_session_manager_postgres.schema import LATEST
from qv_session_manager_postgres.textsearch import (
    MAX_POSITION,
    candidate_query,
    exact_query,
    vector_of,
)

AT = datetime(2025, 1, 20, 12, 0, 0)
WORKERS = Path(__file__).with_name("pg_workers.py")


def record(id: str = "c1", title: str | None = "a title", **fields) -> ConversationRecord:
    fields.setdefault("created_at", AT)
    fields.setdefault("updated_at", AT)
    fields.setdefault("model_name", "llama3")
    return ConversationRecord(id=id, title=title, **fields)


def message(id: str, content: str = "hello", **fields) -> MessageRecord:
    fields.setdefault("created_at", AT)
    fields.setdefault("role", "user")
    return MessageRecord(id=id, content=content, **fields)


def sql(url: str, statement: str, *params):
    with psycopg.connect(url, autocommit=True) as connection:
        cursor = connection.execute(statement, params or None)  # type: ignore[arg-type]
        return cursor.fetchall() if cursor.description else None


def found(store, query: str, **kw) -> list[tuple[str, str | None]]:
    return [(h.conversation.id, h.message_id) for h in store.search(parse(query), ConversationFilter(), **kw)]


# -- migrations ---------------------------------------------------------------------


def test_migrations_are_recorded_once(make_store, postgres_url: str, schema_for) -> None:
    make_store("migrated").close()
    make_store("migrated").close()  # reopening applies nothing
    schema = schema_for("migrated")
    rows = sql(postgres_url, f'SELECT version, applied_at, description FROM "{schema}".qv_schema_migrations ORDER BY 1')
    assert [row[0] for row in rows] == list(range(1, LATEST + 1))
    assert all(row[1] is not None and row[2] for row in rows)
    tables = sql(postgres_url, "SELECT tablename FROM pg_tables WHERE schemaname = %s ORDER BY 1", schema)
    assert [t[0] for t in tables] == [
        "qv_conversations",
        "qv_message_vectors",
        "qv_messages",
        "qv_schema_migrations",
        "qv_store_info",
    ]


def _spawn(*args: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, str(WORKERS), *args],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _run_together(processes: list[subprocess.Popen], timeout: float = 90) -> list[dict]:
    """Start every worker at once (after all imported everything); their JSON results."""
    for process in processes:
        assert process.stdout is not None and process.stdout.readline().strip() == "ready"
    for process in processes:
        assert process.stdin is not None
        process.stdin.write("go\n")
        process.stdin.flush()
    results = []
    for process in processes:
        out, err = process.communicate(timeout=timeout)
        assert process.returncode == 0, f"a worker failed:\n{err}"
        results.append(json.loads(out.strip().splitlines()[-1]))
    return results


@pytest.mark.slow
def test_processes_starting_at_once_migrate_a_fresh_schema_once(postgres_url: str, schema: str) -> None:
    results = _run_together([_spawn("open", postgres_url, schema) for _ in range(4)])
    assert all(result["ok"] for result in results)
    versions = sql(postgres_url, f'SELECT version FROM "{schema}".qv_schema_migrations ORDER BY 1')
    assert [v[0] for v in versions] == list(range(1, LATEST + 1)), "each migration must be applied exactly once"


@pytest.mark.slow
def test_processes_writing_one_conversation_lose_nothing(postgres_url: str, schema: str) -> None:
    PostgresStore(postgres_url, schema=schema).close()  # migrate first: this test is about the writes
    writers, turns = 4, 25
    results = _run_together([_spawn("append", postgres_url, schema, str(w), str(turns)) for w in range(writers)])
    store = PostgresStore(postgres_url, schema=schema)
    try:
        loaded = store.load("shared")
    finally:
        store.close()
    assert loaded is not None
    ids = [m.id for m in loaded.messages]
    assert len(ids) == writers * turns and len(set(ids)) == len(ids), "a concurrent save was lost"
    for writer, result in enumerate(results):
        assert [i for i in ids if i.startswith(f"{writer}-")] == result["acknowledged"], "a writer's order changed"
    positions = sql(
        postgres_url,
        f'SELECT m.position FROM "{schema}".qv_messages m ORDER BY m.position',
    )
    assert [p[0] for p in positions] == list(range(writers * turns)), "positions collided or left gaps"


# -- NUL and other text PostgreSQL refuses ---------------------------------------------------


def test_nul_round_trips_in_every_text_and_json_field(make_store, postgres_url: str, schema_for) -> None:
    store = make_store()
    nul_record = record(
        "nul-conversation",
        title="title\x00with NUL and a \\0 backslash-zero",
        model_name="model\x00name",
        metadata={"key\x00": "value\x00", "plain": "\\0", "nested": {"\x00": ["\x00", 1.5]}},
    )
    sent = [
        message(
            "m1",
            "content\x00with NUL \\ and backslashes \\\\0",
            tool_call_id="call\x00id",
            metadata={"\x00": None},
            images=("image\x00str", b"\x00bytes\x00"),
        ),
        message(
            "m2",
            "",
            role="assistant",
            tool_calls=(ToolCallRecord("fn\x00", {"arg\x00": "v\x00", "n": [None, True]}, "id\x00"),),
        ),
        message("m3", "\x00"),
    ]
    store.save(nul_record, sent)
    loaded = store.load(nul_record.id)
    assert loaded is not None and loaded.conversation == nul_record and loaded.messages == tuple(sent)
    # Filters see the exact keys and values; NUL-free text is stored verbatim.
    assert [r.id for r in store.list(ConversationFilter(metadata={"key\x00": "value\x00"}))] == [nul_record.id]
    assert store.list(ConversationFilter(metadata={"key\x00": "value"})) == []
    assert [r.id for r in store.list(ConversationFilter(metadata={"plain": "\\0"}))] == [nul_record.id]
    assert store.list(ConversationFilter(metadata={"plain": "\x00"})) == []
    [hit] = store.search(parse("backslashes"), ConversationFilter(), with_text=True)
    assert (hit.message_id, hit.text) == ("m1", sent[0].content)
    [title_hit] = store.search(parse("title"), ConversationFilter(), with_text=True)
    assert title_hit.text == nul_record.title
    schema = schema_for("main")
    store.save(record("plain", title="readable title"), [message("p", "readable text")])
    rows = sql(postgres_url, f'SELECT title, escaped FROM "{schema}".qv_conversations ORDER BY id')
    assert rows == [(r"title\0with NUL and a \\0 backslash-zero", 3), ("readable title", 0)]
    assert store.delete_message(nul_record.id, "m\x00") is False and store.load("a\x00b") is None
    assert store.get("a\x00b") is None and store.delete("a\x00b") is False


def test_ids_of_any_length_and_script_order_bytewise(make_store) -> None:
    store = make_store()
    reference = MemoryStore()
    ids = ["x" * 10_000 + "b", "x" * 10_000 + "a", "é", "e\u0301", "\U0001f600", "Z", "a", "\uffff"]
    for target in (store, reference):
        for id_ in ids:
            target.save(record(id_), [message("m" * 5_000), message(id_)])
    assert [r.id for r in store.list(ConversationFilter())] == [r.id for r in reference.list(ConversationFilter())]
    for id_ in ids:
        assert store.load(id_) == reference.load(id_)
    assert store.delete_message(ids[0], "m" * 5_000) is True and store.delete(ids[1]) is True


def test_any_text_and_metadata_round_trip(make_store) -> None:
    store = make_store("fuzz")

    @given(st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=30), strategies.conversation_metadata)
    @settings(max_examples=40)
    def check(text: str, metadata: dict) -> None:
        sent = record("fuzz", title=text, metadata=metadata, model_name=text or None)
        message_sent = message("m", text, metadata=metadata, tool_call_id=text)
        store.save(sent, [message_sent], replace=True)
        loaded = store.load("fuzz")
        assert loaded is not None and loaded.conversation == sent and loaded.messages == (message_sent,)
        for key, value in metadata.items():
            if value is None or isinstance(value, (str, int, float)):
                assert [r.id for r in store.list(ConversationFilter(metadata={key: value}))] == ["fuzz"]

    check()


def test_numbers_in_metadata_filters_compare_like_python(make_store) -> None:
    store = make_store()
    values = {"i": 2**60, "f": float(2**60), "big": 2**53 + 1, "tenth": 0.1, "neg0": -0.0, "tiny": 5e-324}
    store.save(record(metadata=values), [])
    reference = MemoryStore()
    reference.save(record(metadata=values), [])
    for key, stored in values.items():
        for wanted in [2**60, float(2**60), 2**53 + 1, float(2**53), 0.1, 0.0, 0, 5e-324, 1e23, True]:
            want = [r.id for r in reference.list(ConversationFilter(metadata={key: wanted}))]
            got = [r.id for r in store.list(ConversationFilter(metadata={key: wanted}))]
            assert got == want, f"{key}={stored!r} filtered by {wanted!r}"


# -- search vectors and PostgreSQL's limits ------------------------------------------------------


@pytest.fixture(scope="module")
def raw_connection(postgres_url: str):
    with psycopg.connect(postgres_url, autocommit=True) as connection:
        yield connection


_documents = st.lists(st.sampled_from(["alpha", "al", "beta", "be", "gamma", "東", "京", "x"]), max_size=12)
_query_pieces = st.sampled_from(
    [
        "alpha",
        "al*",
        "be*",
        "x",
        "東京",
        "-alpha",
        "-be*",
        "OR",
        '"alpha beta"',
        '"beta alpha',
        "alpha-be*",
        "x-x-x",
        "-al-be",
        "gamma-alpha-al*",
        '-"x alpha"',
        "京東*",
    ]
)
_queries = st.one_of(strategies.queries, st.lists(_query_pieces, min_size=1, max_size=6).map(" ".join))


@given(_documents, _queries)
@settings(max_examples=300)
def test_tsquery_answers_exactly_like_the_reference(raw_connection, document: list[str], text: str) -> None:
    query = parse(text)
    assume(not query.is_empty)
    vector, is_exact = vector_of(document)
    assert is_exact
    exact, loose = exact_query(query), candidate_query(query)
    assert exact is not None and loose is not None
    positionless, _ = vector_of(document * 300)  # > 256 repeats: an inexact vector
    got, superset = raw_connection.execute(
        "SELECT %s::tsvector @@ %s::tsquery, %s::tsvector @@ %s::tsquery", (vector, exact, positionless, loose)
    ).fetchone()
    assert got == query.matches(document), f"{exact} on {document}"
    assert superset or not query.matches(document), f"the candidate query {loose} missed {document}"


def _compare_with_memory(store, documents: dict[str, str], queries: list[str]) -> None:
    reference = MemoryStore()
    for name, text in documents.items():
        for target in (store, reference):
            target.save(record(name, title=None), [message("before", "unrelated"), message("doc", text)])
    for query in queries:
        want = reference.search(parse(query), ConversationFilter(), with_text=True)
        got = store.search(parse(query), ConversationFilter(), with_text=True)
        assert [(h.conversation.id, h.message_id, h.text) for h in got] == [
            (h.conversation.id, h.message_id, h.text) for h in want
        ], query
        got_relevance = store.search(parse(query), ConversationFilter(), order="relevance")
        assert sorted(h.conversation.id for h in got_relevance) == sorted(h.conversation.id for h in want)


@pytest.mark.slow
def test_documents_past_the_position_limits_are_still_searched_exactly(make_store, postgres_url, schema_for) -> None:
    store = make_store()
    filler = " ".join(f"w{i % 500}" for i in range(MAX_POSITION + 50))
    documents = {
        "long": filler + " needle haystack final",  # phrase beyond position 16383
        "repeated": "the " * 300 + "the cat sat",  # 'the' more than 256 times
        "short": "needle in a haystack, the cat",
    }
    _compare_with_memory(
        store,
        documents,
        [
            '"needle haystack"',
            '"haystack needle"',
            "needle -haystack",
            '"the cat"',
            '"cat the"',
            "cat -needle",
            "w499 final",
            '"w498 w499"',
            '"w499 w0"',
            "fin*",
            '"haystack fin*"',
            "the OR nothing",
            "w1 -the",
            # phrases wider than any exact vector: only the inexact path can answer them
            '"' + filler[: len(filler) - 200] + '"',
            '"w3 ' + filler[: len(filler) - 200] + '"',
            'w1 -"' + filler[: len(filler) - 200] + '"',
        ],
    )
    exactness = sql(
        postgres_url,
        f'SELECT m.search_exact FROM "{schema_for("main")}".qv_messages m WHERE m.id = %s ORDER BY m.conversation_pk',
        "doc",
    )
    assert [row[0] for row in exactness] == [False, False, True], "the first two must take the inexact path"


@pytest.mark.slow
def test_a_text_past_the_tsvector_size_limit_saves_loads_and_is_searched_by_prefix(make_store) -> None:
    store = make_store()
    words = [f"word{i:06d}" + "x" * 20 for i in range(60_000)]  # ~1.8 MB of distinct lexemes
    text = " ".join(words)
    store.save(record("huge", title=text), [message("m", text)])
    loaded = store.load("huge")
    assert loaded is not None and loaded.messages[0].content == text and loaded.conversation.title == text
    assert found(store, words[0]) == [("huge", None)]
    assert found(store, f'"{words[100]} {words[101]}"') == [("huge", None)]
    # Documented limit: terms that first appear after the indexed prefix are not found.
    assert found(store, words[-1]) == []
    assert found(store, f"{words[0]} -{words[-1]}") == [], "exclusions are checked against the whole text"
    assert found(store, f"{words[0]} -absent") == [("huge", None)]


def test_search_uses_the_gin_indexes(make_store, postgres_url: str, schema_for) -> None:
    store = make_store()
    store.save(record(), [message("m", "indexed words")])
    schema = schema_for("main")
    with psycopg.connect(postgres_url, autocommit=True) as connection:
        connection.execute("SET enable_seqscan = off")
        plan = "\n".join(
            row[0]
            for row in connection.execute(
                f"""EXPLAIN SELECT m.pk FROM "{schema}".qv_messages m
                    WHERE m.search_exact AND m.content_tsv @@ %s::tsquery""",  # type: ignore[arg-type]
                (exact_query(parse("indexed")),),
            )
        )
        candidates = "\n".join(
            row[0]
            for row in connection.execute(
                f"""EXPLAIN SELECT m.pk FROM "{schema}".qv_messages m
                    WHERE NOT m.search_exact AND m.content_tsv @@ %s::tsquery""",  # type: ignore[arg-type]
                (candidate_query(parse("indexed")),),
            )
        )
    assert "qv_messages_search_exact" in plan, plan
    assert "qv_messages_search_inexact" in candidates, candidates


def test_tokenizer_change_rebuilds_the_vectors(make_store, postgres_url: str, schema_for) -> None:
    store = make_store("rebuild")
    store.save(record(title="searchable title"), [message("m", "searchable content")])
    store.close()
    schema = schema_for("rebuild")
    sql(postgres_url, f"""UPDATE "{schema}".qv_store_info SET value = '0' WHERE key = 'tokenizer_version'""")
    sql(postgres_url, f"""UPDATE "{schema}".qv_messages SET content_tsv = ''""")
    sql(postgres_url, f"""UPDATE "{schema}".qv_conversations SET title_tsv = ''""")
    store = make_store("rebuild")
    assert found(store, "content") == [("c1", "m")] and found(store, "title") == [("c1", None)]


# -- URLs, discovery, the manager -------------------------------------------------------------


def test_url_options_are_taken_out_and_the_rest_goes_to_libpq() -> None:
    conninfo, options = split_url(
        "postgresql://u:p%40ss@h:5433/db?sslmode=disable&schema=my%20schema&pool_max_size=8&application_name=a%2Bb"
    )
    assert conninfo == "postgresql://u:p%40ss@h:5433/db?sslmode=disable&application_name=a%2Bb"
    assert options == {"schema": "my schema", "pool_max_size": "8"}
    for bad in [
        "postgresql:///test?pool_max_size=many",
        "postgresql:///test?schema=a&schema=b",
        "postgresql:///test?lock_timeout=soon",
    ]:
        with pytest.raises(InvalidInputError):
            open_store(bad)
    with pytest.raises(InvalidInputError):
        open_store("postgresql:///test", synchronous="normal")
    with pytest.raises(InvalidInputError):
        PostgresStore("postgresql:///test", schema="x" * 64)
    with pytest.raises(InvalidInputError):
        PostgresStore("postgresql:///test", min_size=3, max_size=2)
    with pytest.raises(InvalidInputError):
        PostgresStore("not a valid = = conninfo")


def test_discovery_and_session_manager_end_to_end(postgres_url: str, schema: str, store_url: str) -> None:
    backends = available_backends()
    assert backends["postgresql"].plugin == "qv-session-manager-postgres"
    assert backends["postgres"].plugin == "qv-session-manager-postgres"
    conversation = Conversation(title="Python Help", model_name="llama3", metadata={"topic": "python"})
    conversation.add_user_message("Explain Python lists to me!")
    conversation.add_assistant_message("Lists are ordered, mutable collections.")
    other = Conversation(title="Weather in Paris", metadata={"topic": "travel"})
    other.add_user_message("How warm is it in Paris? Résumé please")
    with SessionManager(url=store_url + "&pool_max_size=2") as manager:
        assert isinstance(manager.store, PostgresStore) and manager.store.schema == schema
        # every behaviour and every optional side but word counts: counting a common word on the GIN
        # index reads its rows from the heap (about 100 ms a word at 120k messages, more than it saves)
        assert manager.store.capabilities == frozenset(Capability) - {Capability.TOKEN_COUNTING}
        manager.save_conversation(conversation)
        reply = conversation.add_user_message("And what is a tuple?")
        manager.save_conversation(conversation, [reply])
        manager.save_conversation(other)
        assert [c["title"] for c in manager.search_conversations("lists")] == ["Python Help"]
        assert [c["title"] for c in manager.search_conversations("resume", order="relevance")] == ["Weather in Paris"]
        assert [c["title"] for c in manager.list_conversations(metadata={"topic": "travel"})] == ["Weather in Paris"]
    postgres_scheme = "postgres://" + store_url.split("://", 1)[1]
    with SessionManager(url=postgres_scheme) as manager:
        loaded = manager.load_conversation(str(conversation.id))
        assert loaded is not None and loaded.title == "Python Help"
        assert [m.content for m in loaded.messages] == [m.content for m in conversation.messages]
        hits = manager.search_conversations("tuple", snippets=True)
        assert len(hits) == 1 and "**tuple**" in hits[0]["snippet"]
        assert manager.delete_conversation(str(other.id)) is True
        assert manager.delete_conversation(str(other.id)) is False
        assert [c["id"] for c in manager.list_conversations()] == [str(conversation.id)]


# -- failures become library errors ------------------------------------------------------------


def test_closed_store_and_unreachable_server() -> None:
    with pytest.raises(StorageError) as raised:
        PostgresStore("postgresql://postgres@127.0.0.1:1/test", connect_timeout=2)
    assert not isinstance(raised.value, psycopg.Error) and isinstance(raised.value.__cause__, psycopg.Error)


def test_calls_after_close_fail_and_closing_twice_is_harmless(make_store) -> None:
    store = make_store()
    store.close()
    store.close()
    for call in [
        lambda: store.load("x"),
        lambda: store.save(record(), []),
        lambda: store.list(ConversationFilter()),
        lambda: store.search(parse("x"), ConversationFilter()),
        lambda: store.delete("x"),
        lambda: store.get("x"),
        lambda: store.delete_message("x", "y"),
    ]:
        with pytest.raises(StorageError):
            call()


def test_newer_or_foreign_schemas_are_refused(make_store, postgres_url: str, schema_for) -> None:
    make_store("newer").close()
    sql(
        postgres_url,
        f"""INSERT INTO "{schema_for("newer")}".qv_schema_migrations (version, description)
                           VALUES (99, 'from the future')""",
    )
    with pytest.raises(SchemaVersionError):
        make_store("newer")
    sql(postgres_url, f'CREATE SCHEMA "{schema_for("foreign")}"')
    sql(postgres_url, f'CREATE TABLE "{schema_for("foreign")}".qv_conversations (x int)')
    with pytest.raises(SchemaVersionError):
        make_store("foreign")


def test_read_only_sessions_read_but_refuse_writes(make_store, postgres_url: str, schema_for) -> None:
    writable = make_store("ro")
    writable.save(record(), [message("m", "kept")])
    read_only_url = (
        postgres_url + ("&" if "?" in postgres_url else "?") + "options=-c%20default_transaction_read_only%3Don"
    )
    read_only = PostgresStore(read_only_url, schema=schema_for("ro"))
    try:
        assert read_only.load("c1") == writable.load("c1")
        with pytest.raises(ReadOnlyStorageError):
            read_only.save(record(), [message("n")])
        with pytest.raises(ReadOnlyStorageError):
            read_only.delete("c1")
    finally:
        read_only.close()
    assert [m.id for m in writable.load("c1").messages] == ["m"]  # type: ignore[union-attr]


def test_permission_denied_is_a_read_only_error(make_store, postgres_url: str, schema_for) -> None:
    store = make_store("perm")
    store.save(record(), [])
    role = f"qv_reader_{schema_for('perm')[-12:]}"
    schema = schema_for("perm")
    sql(postgres_url, f'CREATE ROLE "{role}" NOLOGIN')
    try:
        sql(postgres_url, f'GRANT USAGE ON SCHEMA "{schema}" TO "{role}"')
        sql(postgres_url, f'GRANT SELECT ON ALL TABLES IN SCHEMA "{schema}" TO "{role}"')
        reader_url = postgres_url + ("&" if "?" in postgres_url else "?") + f"options=-c%20role%3D{role}"
        reader = PostgresStore(reader_url, schema=schema)
        try:
            assert reader.get("c1") == store.get("c1")
            with pytest.raises(ReadOnlyStorageError):
                reader.save(record(title="changed"), [])
        finally:
            reader.close()
    finally:
        sql(postgres_url, f'DROP OWNED BY "{role}"')
        sql(postgres_url, f'DROP ROLE "{role}"')
    assert store.get("c1").title == "a title"  # type: ignore[union-attr]


def test_a_held_lock_gives_storage_busy_and_changes_nothing(make_store, postgres_url: str, schema_for) -> None:
    store = make_store("busy", lock_timeout=0.2)
    store.save(record(), [message("m")])
    with psycopg.connect(postgres_url) as blocker:
        blocker.execute(f'SELECT pk FROM "{schema_for("busy")}".qv_conversations FOR UPDATE')  # type: ignore[arg-type]
        started = time.monotonic()
        with pytest.raises(StorageBusyError):
            store.save(record(title="blocked"), [message("n")])
        assert time.monotonic() - started < 5
        blocker.rollback()
    assert store.get("c1").title == "a title" and [m.id for m in store.load("c1").messages] == ["m"]  # type: ignore[union-attr]
    store.save(record(title="now"), [message("n")])


def test_damaged_rows_and_tables_raise_storage_errors(make_store, postgres_url: str, schema_for) -> None:
    store = make_store("damaged")
    store.save(record(), [message("m")])
    schema = schema_for("damaged")
    sql(postgres_url, f"""UPDATE "{schema}".qv_messages SET metadata = 'not json'""")
    with pytest.raises(CorruptStorageError):
        store.load("c1")
    sql(postgres_url, f'DROP TABLE "{schema}".qv_messages CASCADE')  # with the vectors' foreign key
    with pytest.raises(CorruptStorageError):
        store.load("c1")
    with pytest.raises(StorageError):
        store.save(record(), [message("m")])


def test_a_connection_killed_mid_save_reruns_the_whole_save(make_store, postgres_url: str, monkeypatch) -> None:
    store = make_store()
    store.save(record(), [message("a", "first")])
    original = PostgresStore._save
    attempts: list[int] = []

    def killed_half_way(self, cursor, row, encoded, replace):
        attempts.append(len(attempts))
        if len(attempts) == 1:
            original(self, cursor, row, encoded[:1], replace)  # half of the save is written...
            sql(postgres_url, "SELECT pg_terminate_backend(%s)", cursor.connection.info.backend_pid)
        return original(self, cursor, row, encoded, replace)  # ...then the connection is gone

    monkeypatch.setattr(PostgresStore, "_save", killed_half_way)
    store.save(record(title="second"), [message("a", "edited"), message("b"), message("c")])
    monkeypatch.undo()
    assert len(attempts) == 2, "the save must run again, from the start, on a new connection"
    loaded = store.load("c1")
    assert loaded is not None and loaded.conversation.title == "second"
    assert [(m.id, m.content) for m in loaded.messages] == [("a", "edited"), ("b", "hello"), ("c", "hello")]
    store.save(record(), [message("d")])
    assert [m.id for m in store.load("c1").messages] == ["a", "b", "c", "d"]  # type: ignore[union-attr]


# -- a server restart mid-run -----------------------------------------------------------------------


def _cluster() -> tuple[str, str] | None:
    """(version, cluster) of the local Debian-style cluster, when this test can restart it."""
    if shutil.which("pg_ctlcluster") is None or not os.path.isdir("/etc/postgresql"):
        return None
    versions = sorted(os.listdir("/etc/postgresql"), key=lambda v: [int(p) for p in v.split(".") if p.isdigit()])
    for version in reversed(versions):
        if os.path.isdir(f"/etc/postgresql/{version}/main"):
            return version, "main"
    return None


@pytest.mark.slow
@pytest.mark.server_restart
@pytest.mark.serial  # every other PostgreSQL test would lose its connections
def test_a_server_restart_loses_no_acknowledged_save(make_store, postgres_url: str) -> None:
    host = urlsplit(postgres_url).hostname or "localhost"
    cluster = _cluster()
    if cluster is None or host not in ("127.0.0.1", "localhost", "::1"):
        pytest.skip("needs a local Debian PostgreSQL cluster (pg_ctlcluster) to restart")
    store = make_store("restart", max_size=2, timeout=60)
    conversation = record("restart")
    acknowledged: list[str] = []
    failures: list[BaseException] = []
    stop = threading.Event()

    def write() -> None:
        turn = 0
        while not stop.is_set() and turn < 100_000:
            message_id = f"m{turn:05d}"
            try:
                store.save(conversation, [message(message_id, f"turn {turn}")])
                acknowledged.append(message_id)
            except Exception as exc:  # noqa: BLE001 - the store must not fail; record it and keep going
                failures.append(exc)
            turn += 1
            time.sleep(0.005)

    before = sql(postgres_url, "SELECT pg_postmaster_start_time()")
    writer = threading.Thread(target=write)
    writer.start()
    try:
        time.sleep(0.5)
        version, name = cluster
        subprocess.run(
            ["pg_ctlcluster", "--skip-systemctl-redirect", version, name, "restart"],
            check=True,
            capture_output=True,
            timeout=120,
        )
        count_after_restart = len(acknowledged)
        deadline = time.monotonic() + 30
        while len(acknowledged) < count_after_restart + 20 and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        stop.set()
        writer.join()
    assert sql(postgres_url, "SELECT pg_postmaster_start_time()") != before, "the server did not restart"
    assert failures == [], f"saves failed across the restart: {failures[:3]}"
    assert len(acknowledged) >= count_after_restart + 20, "the store did not recover after the restart"
    loaded = store.load("restart")
    assert loaded is not None and [m.id for m in loaded.messages] == acknowledged, "an acknowledged save was lost"


def test_copy_from_sqlite(tmp_path, store_url) -> None:
    """The documented move: copy_store from an SQLite file to PostgreSQL, twice."""
    from qv_session_manager import copy_store, open_store
    from qv_session_manager.backends.sqlite import SQLiteStore
    from qv_session_manager.protocol import ConversationFilter
    from qv_session_manager.testing.contract import conversation, message

    source = SQLiteStore(tmp_path / "old.db")
    destination = open_store(store_url)
    try:
        for index in range(12):
            source.save(
                conversation(f"c{index}", title=f"chat {index}"),
                [message(f"hello\x00 {index}", id=f"m{turn}") for turn in range(3)],
            )
        assert copy_store(source, destination, page_size=5).copied == 12
        assert copy_store(source, destination).replaced == 12
        records = source.list(ConversationFilter())
        assert destination.list(ConversationFilter()) == records
        assert all(destination.load(r.id) == source.load(r.id) for r in records)
    finally:
        source.close()
        destination.close()
