"""Message vectors on PostgreSQL: which layout a store uses, pgvector's HNSW index, the bytea
fallback, migration 4 of existing schemas, and thousands of vectors against the exact ranking.

The storage contract of vectors runs in test_postgres_contract.py on both layouts
(and in the async suite); here is what only a real server shows. Tests needing
pgvector skip without it, or fail with QV_SESSION_MANAGER_REQUIRE_SERVERS=1.
"""

from __future__ import annotations

import random
import struct
import time
from datetime import datetime, timedelta

import psycopg
import pytest

from qv_session_manager import (
    ConversationFilter,
    ConversationRecord,
    InvalidInputError,
    MessageRecord,
    StorageError,
    open_store,
)
from qv_session_manager.vector_records import VectorSpace, rank_conversations, similarities
from qv_session_manager_postgres import PostgresStore
from qv_session_manager_postgres import schema as schema_module

AT = datetime(2025, 3, 1, 12, 0, 0)
SPACE = VectorSpace("test", "random", 32)


def column_type(url: str, schema: str) -> str:
    with psycopg.connect(url, autocommit=True) as connection:
        found = connection.execute(
            """SELECT format_type(a.atttypid, a.atttypmod) FROM pg_attribute a
               WHERE a.attrelid = to_regclass(%s) AND a.attname = 'embedding'""",
            (f'"{schema}".qv_message_vectors',),
        ).fetchone()
    assert found is not None
    return str(found[0])


def indexes(url: str, schema: str) -> list[str]:
    with psycopg.connect(url, autocommit=True) as connection:
        rows = connection.execute(
            "SELECT indexdef FROM pg_indexes WHERE schemaname = %s AND tablename = 'qv_message_vectors'", (schema,)
        ).fetchall()
    return [row[0] for row in rows]


def unit(rng: random.Random, dimension: int) -> list[float]:
    values = [rng.gauss(0.0, 1.0) for _ in range(dimension)]
    norm = sum(v * v for v in values) ** 0.5
    return [v / norm for v in values]


def fill(store: PostgresStore, conversations: int, per_conversation: int, seed: int = 7) -> dict[str, list[float]]:
    """Conversations c0.. with messages of random unit vectors; returns text -> vector."""
    rng = random.Random(seed)
    vectors: dict[str, list[float]] = {}
    items = []
    for number in range(conversations):
        stamp = AT + timedelta(minutes=number % 50)
        record = ConversationRecord(
            id=f"c{number}", created_at=stamp, updated_at=stamp, metadata={"team": "a" if number % 3 else "b"}
        )
        messages = []
        for index in range(per_conversation):
            text = f"c{number} m{index}"
            vectors[text] = unit(rng, SPACE.dimension)
            messages.append(MessageRecord(id=f"m{index}", role="user", content=text, created_at=stamp))
        items.append((record, messages))
    store.save_many(items)
    while True:
        tasks = store.pending_embeddings(SPACE, limit=1000)
        if not tasks:
            return vectors
        store.store_embeddings(SPACE, [(task, vectors[task.text]) for task in tasks])


def test_pgvector_layout_and_the_space_index(pgvector: None, make_store, postgres_url: str, schema_for) -> None:
    store = make_store(vectors="pgvector")
    assert store.vectors == "pgvector" and store.vector_layout == "pgvector"
    schema = schema_for("main")
    assert column_type(postgres_url, schema).endswith("vector"), "pgvector's type, without a dimension"
    assert not any("hnsw" in definition for definition in indexes(postgres_url, schema)), "no space stored yet"
    fill(store, 3, 2)
    hnsw = [definition for definition in indexes(postgres_url, schema) if "hnsw" in definition]
    assert len(hnsw) == 1 and "vector(32)" in hnsw[0] and "vector_ip_ops" in hnsw[0] and "test/random/32" in hnsw[0]
    again = make_store()  # "auto" on a pgvector schema
    assert again.vectors == "pgvector" and again.vector_layout == "pgvector"
    exact = make_store(vectors="exact")  # searches read every vector, from the same layout
    assert exact.vectors == "exact" and exact.vector_layout == "pgvector"
    query = unit(random.Random(1), SPACE.dimension)
    assert exact.vector_search(SPACE, query, ConversationFilter()) == store.vector_search(
        SPACE, query, ConversationFilter(), limit=10
    )


def test_the_hnsw_index_serves_the_nearest_messages(pgvector: None, make_store, postgres_url: str, schema_for) -> None:
    store = make_store(vectors="pgvector")
    fill(store, 200, 3)
    schema = schema_for("main")
    query = "[" + ",".join(repr(v) for v in unit(random.Random(2), SPACE.dimension)) + "]"
    with psycopg.connect(postgres_url, autocommit=True) as connection:
        (extension,) = connection.execute(schema_module.EXTENSION_LOOKUP).fetchone()[:1]  # type: ignore[index]
        for setting in ("enable_seqscan", "enable_bitmapscan", "enable_sort"):  # 600 rows: scanning is cheaper
            connection.execute(f"SET {setting} = off")  # type: ignore[arg-type]
        plan = "\n".join(
            row[0]
            for row in connection.execute(
                f"""EXPLAIN SELECT message_pk FROM "{schema}".qv_message_vectors v WHERE v.space = E'test/random/32'
                    ORDER BY (v.embedding::"{extension}".vector(32)) OPERATOR("{extension}".<#>)
                        %s::"{extension}".vector(32) LIMIT 64""",  # type: ignore[arg-type]
                (query,),
            )
        )
    assert "qv_message_vectors_hnsw_" in plan, plan


def test_the_exact_option_stores_bytea(make_store, postgres_url: str, schema_for, store_url: str) -> None:
    store = make_store(vectors="exact")
    assert store.vectors == "exact" and store.vector_layout == "bytea"
    assert column_type(postgres_url, schema_for("main")) == "bytea"
    fill(store, 3, 2)
    assert not any("hnsw" in definition for definition in indexes(postgres_url, schema_for("main")))
    with pytest.raises(StorageError, match="bytea"):
        make_store(vectors="pgvector")
    from_url = open_store(store_url + "&vectors=exact")
    try:
        assert isinstance(from_url, PostgresStore) and from_url.vectors == "exact"
    finally:
        from_url.close()
    for bad in ("fast", "", None):
        with pytest.raises(InvalidInputError):
            PostgresStore(postgres_url, schema=schema_for("other"), vectors=bad)  # type: ignore[arg-type]
    with pytest.raises(InvalidInputError):
        open_store(store_url + "&vectors=hnsw")


def test_migration_4_gives_existing_schemas_vectors(
    make_store, postgres_url: str, schema_for, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A schema of the previous release (three migrations) gets the table; its messages are pending."""
    with monkeypatch.context() as patched:
        patched.setattr(schema_module, "MIGRATIONS", schema_module.MIGRATIONS[:3])
        patched.setattr(schema_module, "LATEST", 3)
        old = make_store(vectors="exact")
        old.save(
            ConversationRecord(id="c", created_at=AT, updated_at=AT),
            [MessageRecord(id="m", role="user", content="before vectors", created_at=AT)],
        )
        old.close()
    store = make_store(vectors="exact")
    with psycopg.connect(postgres_url, autocommit=True) as connection:
        versions = connection.execute(
            f'SELECT version, description FROM "{schema_for("main")}".qv_schema_migrations ORDER BY 1'
        ).fetchall()
    assert versions[-1] == (4, "message vectors for search by meaning")
    assert [task.text for task in store.pending_embeddings(SPACE, limit=5)] == ["before vectors"]
    assert store.embedding_counts(SPACE) == (0, 1)


@pytest.mark.slow
@pytest.mark.parametrize("vectors", ["pgvector", "exact"])
def test_thousands_of_vectors_rank_as_the_shared_rule(
    vectors: str, request: pytest.FixtureRequest, make_store, postgres_url: str
) -> None:
    """3,000 message vectors in 1,000 conversations: pages, filters and scores as the exact ranking says."""
    if vectors == "pgvector":
        request.getfixturevalue("pgvector")
    store = make_store(vectors=vectors)
    assert store.vectors == vectors
    stored = fill(store, 1000, 3)
    records = {f"c{number}": store.get(f"c{number}") for number in range(1000)}
    rng = random.Random(3)
    for round_ in range(3):
        query = unit(rng, SPACE.dimension)
        team = ConversationFilter(metadata={"team": "b"}) if round_ == 2 else ConversationFilter()
        best = []
        for conversation, record in records.items():
            assert record is not None
            if team.metadata and record.metadata.get("team") != "b":
                continue
            texts = [f"{conversation} m{index}" for index in range(3)]
            blobs = [struct.pack(f"<{SPACE.dimension}f", *stored[text]) for text in texts]
            scores = similarities(blobs, query, SPACE.dimension)
            top = max(range(3), key=lambda index: scores[index])
            best.append((record, f"m{top}", scores[top]))
        for limit, offset in ((10, 0), (5, 20)):
            want = rank_conversations(best, "updated_at", limit=limit, offset=offset)
            started = time.perf_counter()
            got = store.vector_search(SPACE, query, team, limit=limit, offset=offset)
            elapsed = time.perf_counter() - started
            assert [(h.conversation.id, h.message_id) for h in got] == [
                (h.conversation.id, h.message_id) for h in want
            ], f"{vectors}: the ranking differs from the shared rule"
            assert [h.score for h in got] == pytest.approx([h.score for h in want], abs=1e-9)
            print(f"{vectors}: vector_search limit={limit} offset={offset} over 3000 vectors: {elapsed * 1000:.1f} ms")


@pytest.mark.parametrize("vectors", ["auto", "exact"])
def test_the_manager_searches_by_meaning(vectors: str, store_url: str) -> None:
    """SessionManager over a PostgreSQL URL: index the pending messages, then search by meaning."""
    from qv_ollama_sdk.domain.models import Conversation

    from qv_session_manager import SessionManager
    from qv_session_manager.testing.embedders import SynonymEmbedder

    with SessionManager(url=f"{store_url}&vectors={vectors}", embedder=SynonymEmbedder()) as manager:
        garage = Conversation(title="garage")
        garage.add_user_message("my automobile has a flat accumulator")
        baking = Conversation(title="baking")
        baking.add_user_message("a cheerful birthday cake recipe")
        for conversation in (garage, baking):
            manager.save_conversation(conversation)
        progress = manager.index_embeddings()
        assert (progress.embedded, progress.pending) == (2, 0)
        found = manager.search_conversations("car dead battery", mode="semantic", snippets=True)
        assert found.mode == "semantic" and found[0]["id"] == str(garage.id)
        assert found[0]["snippet"].startswith("my automobile")


@pytest.mark.parametrize("vectors", ["auto", "exact"])
def test_space_names_with_quotes_percent_and_backslash(vectors: str, make_store) -> None:
    """A space key goes into SQL as a constant (the partial index's condition): quoting must hold."""
    store = make_store(vectors=vectors)
    odd = VectorSpace("it's", "50%\\model", 2)
    store.save(
        ConversationRecord(id="c", created_at=AT, updated_at=AT),
        [MessageRecord(id="m", role="user", content="text", created_at=AT)],
    )
    (task,) = store.pending_embeddings(odd, limit=5)
    assert store.store_embeddings(odd, [(task, (0.6, 0.8))]) == 1
    (hit,) = store.vector_search(odd, (1.0, 0.0), ConversationFilter(), limit=3)
    assert hit.message_id == "m" and hit.score == pytest.approx(0.6, abs=1e-6)
    assert store.forget_embeddings(odd) == 1 and store.embedding_counts(odd) == (0, 1)


@pytest.mark.parametrize("vectors", ["auto", "exact"])
def test_ties_past_the_first_fetch_are_ranked_exactly(vectors: str, make_store) -> None:
    """150 conversations scoring alike: the first fetch of nearest messages (64) cannot decide the
    page, so the search fetches more; the page is the newest, by descending id, as the rule says."""
    store = make_store(vectors=vectors)
    flat = VectorSpace("test", "flat", 2)
    items = []
    for number in range(150):
        stamp = AT + timedelta(minutes=number % 7)
        items.append(
            (
                ConversationRecord(id=f"c{number:03}", created_at=stamp, updated_at=stamp),
                [MessageRecord(id="m", role="user", content=f"text {number}", created_at=stamp)],
            )
        )
    store.save_many(items)
    tasks = store.pending_embeddings(flat, limit=500)
    assert store.store_embeddings(flat, [(task, (0.0, 1.0)) for task in tasks]) == 150
    want = sorted(items, key=lambda item: (item[0].updated_at, item[0].id), reverse=True)
    got = store.vector_search(flat, (0.0, 1.0), ConversationFilter(), limit=5, offset=60)
    assert [hit.conversation.id for hit in got] == [record.id for record, _ in want[60:65]]
    assert all(hit.score == 1.0 for hit in got)


def test_without_pgvector_auto_falls_back_to_bytea(
    make_store, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A server where pgvector cannot be had (its lookup patched to find nothing): "auto" stores
    bytea and says so in a warning, "pgvector" refuses to open, and the vector side still works."""
    monkeypatch.setattr(schema_module, "find_extension", lambda cursor: None)
    with pytest.raises(StorageError, match="pgvector"):
        make_store("required", vectors="pgvector")
    with caplog.at_level("WARNING", logger="qv_session_manager"):
        store = make_store("fallback")
    assert store.vectors == "exact" and store.vector_layout == "bytea"
    assert any("bytea" in record.getMessage() for record in caplog.records)
    fill(store, 4, 2)
    assert store.embedding_counts(SPACE) == (8, 0)
    assert len(store.vector_search(SPACE, unit(random.Random(5), SPACE.dimension), ConversationFilter(), limit=3)) == 3
