"""Ids that collide, in one import file or with the destination, follow on_conflict; nothing is merged.

Every test taking ``store`` runs on memory, SQLite, the jsonl plugin and PostgreSQL
(skipped with the reason when no server answers).
"""

from __future__ import annotations

import io
import json
import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from hypothesis import given
from hypothesis import strategies as st

from qv_session_manager import (
    ConversationExistsError,
    ConversationFilter,
    CopyReport,
    ImportFormatError,
    InvalidInputError,
    SessionManager,
    copy_store,
)
from qv_session_manager.backends.memory import MemoryStore
from qv_session_manager.backends.sqlite import SQLiteStore
from qv_session_manager.cli import main
from qv_session_manager.exchange import (
    SHAREGPT_NAMESPACE,
    import_into,
    write_json,
    write_jsonl,
)
from qv_session_manager.protocol import ConversationStore
from qv_session_manager.records import StoredConversation
from qv_session_manager.testing.contract import conversation, message, minutes

BACKENDS = ["memory", "sqlite", "jsonl", "postgres"]
POSTGRES_URL = os.environ.get("QV_SESSION_MANAGER_POSTGRES_URL") or "postgresql://postgres@127.0.0.1:5432/test"


def _postgres_store() -> ConversationStore:
    psycopg = pytest.importorskip("psycopg")
    postgres = pytest.importorskip("qv_session_manager_postgres")
    try:
        with psycopg.connect(POSTGRES_URL, connect_timeout=5) as connection:
            connection.execute("SELECT 1")
    except psycopg.Error as exc:
        if os.environ.get("QV_SESSION_MANAGER_REQUIRE_SERVERS") == "1":
            pytest.fail(f"no PostgreSQL server: {exc}")
        pytest.skip(f"no PostgreSQL server reachable ({str(exc).strip()})")
    store: ConversationStore = postgres.PostgresStore(POSTGRES_URL, schema=f"qvconf_{uuid.uuid4().hex[:12]}")
    return store


def _drop_schema(store: Any) -> None:
    import psycopg

    with psycopg.connect(POSTGRES_URL, autocommit=True) as connection:
        connection.execute(f'DROP SCHEMA IF EXISTS "{store.schema}" CASCADE')


@pytest.fixture(params=BACKENDS)
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[ConversationStore]:
    name = request.param
    made: ConversationStore
    if name == "memory":
        made = MemoryStore()
    elif name == "sqlite":
        made = SQLiteStore(tmp_path / "conflicts.db", synchronous="normal")
    elif name == "jsonl":
        jsonl = pytest.importorskip("qv_session_manager_jsonl")
        made = jsonl.JsonlStore(tmp_path / "jsonl")
    else:
        made = _postgres_store()
    try:
        yield made
    finally:
        made.close()
        if name == "postgres":
            _drop_schema(made)


def everything(store: ConversationStore) -> dict[str, StoredConversation]:
    loaded = {record.id: store.load(record.id) for record in store.list(ConversationFilter())}
    return {key: value for key, value in loaded.items() if value is not None}


def contents(stored: StoredConversation | None) -> list[str]:
    assert stored is not None
    return [m.content for m in stored.messages]


# -- ShareGPT: repeated ids and empty items within one file ---------------------


def sharegpt_item(original: Any, *texts: str) -> dict[str, Any]:
    return {
        "id": original,
        "conversations": [{"from": "human" if i % 2 == 0 else "gpt", "value": t} for i, t in enumerate(texts)],
    }


#: Items: x (twice, different text), y, an empty item, x a third time, an item without turns key... (bad).
SHAREGPT_ITEMS = [
    sharegpt_item("x", "first A", "first B", "first C", "first D"),
    sharegpt_item("y", "only y"),
    sharegpt_item("x", "second A", "second B"),
    sharegpt_item("empty"),
    sharegpt_item(7, "seven"),
    sharegpt_item("x", "third A"),
    sharegpt_item("7", "seven as a string"),  # str(7) == "7": the same derived id
]


def sharegpt_text(items: list[dict[str, Any]]) -> str:
    """One item per line, so item i starts on line i + 2."""
    return "[\n" + ",\n".join(json.dumps(item) for item in items) + "\n]\n"


def derived(original: Any) -> str:
    return str(uuid.uuid5(SHAREGPT_NAMESPACE, str(original)))


@pytest.mark.parametrize("batch_size", [1, 500], ids=["batch-1", "one-batch"])
def test_sharegpt_repeats_are_skipped_by_default_and_the_counts_match_the_store(
    store: ConversationStore, batch_size: int
) -> None:
    report = import_into(store, io.StringIO(sharegpt_text(SHAREGPT_ITEMS)), format="sharegpt", batch_size=batch_size)
    stored = everything(store)
    assert (report.imported, report.replaced, report.renamed, report.empty) == (3, 0, 0, 1)
    assert [line for line, _ in report.skipped] == [4, 5, 7, 8]
    assert "already stored" in report.skipped[0][1] and "no messages" in report.skipped[1][1]
    assert len(stored) == report.imported + report.renamed == 3
    assert contents(stored[derived("x")]) == ["first A", "first B", "first C", "first D"], "never interleaved"
    assert contents(stored[derived(7)]) == ["seven"]
    assert derived("empty") not in stored, "an item without messages is not stored empty"


@pytest.mark.parametrize("batch_size", [1, 500], ids=["batch-1", "one-batch"])
def test_sharegpt_repeats_replace_the_earlier_one_whole(store: ConversationStore, batch_size: int) -> None:
    text = sharegpt_text(SHAREGPT_ITEMS)
    report = import_into(store, io.StringIO(text), format="sharegpt", batch_size=batch_size, on_conflict="replace")
    stored = everything(store)
    assert (report.imported, report.replaced, report.renamed) == (3, 3, 0)
    assert len(stored) == 3
    assert contents(stored[derived("x")]) == ["third A"], "the last x replaces, with exactly its messages"
    assert contents(stored[derived(7)]) == ["seven as a string"]


@pytest.mark.parametrize("batch_size", [1, 500], ids=["batch-1", "one-batch"])
def test_sharegpt_repeats_renamed_keep_every_conversation_apart(store: ConversationStore, batch_size: int) -> None:
    text = sharegpt_text(SHAREGPT_ITEMS)
    report = import_into(store, io.StringIO(text), format="sharegpt", batch_size=batch_size, on_conflict="rename")
    stored = everything(store)
    assert (report.imported, report.replaced, report.renamed) == (3, 0, 3)
    assert len(stored) == report.imported + report.renamed == 6
    assert sorted(map(contents, stored.values())) == sorted(
        [
            ["first A", "first B", "first C", "first D"],
            ["only y"],
            ["second A", "second B"],
            ["seven"],
            ["third A"],
            ["seven as a string"],
        ]
    )
    assert contents(stored[derived("x")])[0] == "first A", "the first one keeps its own id"
    renamed = [s for key, s in stored.items() if s.conversation.metadata["sharegpt_id"] == "x" and key != derived("x")]
    assert len(renamed) == 2 and all(uuid.UUID(s.conversation.id).version == 4 for s in renamed)


def test_sharegpt_repeat_fails_at_its_line_after_saving_what_came_before(store: ConversationStore) -> None:
    with pytest.raises(ImportFormatError, match="already stored") as caught:
        import_into(store, io.StringIO(sharegpt_text(SHAREGPT_ITEMS)), format="sharegpt", on_conflict="fail")
    assert caught.value.line == 4
    assert sorted(map(contents, everything(store).values())) == [
        ["first A", "first B", "first C", "first D"],
        ["only y"],
    ]


def test_fail_with_skip_lists_the_repeats_as_errors(store: ConversationStore) -> None:
    report = import_into(
        store, io.StringIO(sharegpt_text(SHAREGPT_ITEMS)), format="sharegpt", on_conflict="fail", on_error="skip"
    )
    assert report.imported == 3 and [line for line, _ in report.skipped] == [4, 5, 7, 8]
    assert "on_conflict='fail'" in report.skipped[0][1]


def test_sharegpt_empty_items_are_stored_when_asked(store: ConversationStore) -> None:
    report = import_into(store, io.StringIO(sharegpt_text(SHAREGPT_ITEMS)), format="sharegpt", keep_empty=True)
    assert (report.imported, report.empty) == (4, 1)
    assert contents(everything(store)[derived("empty")]) == []


def test_reimporting_a_sharegpt_file_adds_nothing(store: ConversationStore) -> None:
    text = sharegpt_text(SHAREGPT_ITEMS)
    import_into(store, io.StringIO(text), format="sharegpt")
    before = everything(store)
    again = import_into(store, io.StringIO(text), format="sharegpt")
    assert (again.imported, len(again.skipped), again.saved) == (0, 7, 0)
    assert everything(store) == before


# -- JSON Lines and JSON: conversations already in the store --------------------


def stored_conversation(key: str, *texts: str, title: str = "t") -> StoredConversation:
    return StoredConversation(
        conversation(key, title=title, updated=minutes(len(texts))),
        tuple(message(text, id=f"m{index}") for index, text in enumerate(texts)),
    )


def export_text(format: str, conversations: list[StoredConversation]) -> str:
    buffer = io.StringIO()
    (write_jsonl if format == "jsonl" else write_json)(conversations, buffer)
    return buffer.getvalue()


def prepare(store: ConversationStore) -> None:
    """The destination holds 'shared' (three messages, one the file lacks) and 'mine'."""
    for stored in (
        stored_conversation("shared", "old 0", "old 1", "old 2", title="stored"),
        stored_conversation("mine", "kept"),
    ):
        store.save(stored.conversation, stored.messages)


FILE = [
    stored_conversation("new", "fresh"),
    stored_conversation("shared", "file 0", "file 1", title="from the file"),
    stored_conversation("also-new", "fresh too"),
]


@pytest.mark.parametrize("format", ["jsonl", "json"])
def test_taken_ids_are_skipped_by_default_and_the_stored_one_kept_exactly(
    store: ConversationStore, format: str
) -> None:
    prepare(store)
    before = everything(store)
    report = import_into(store, io.StringIO(export_text(format, FILE)), format=format)  # type: ignore[arg-type]
    assert (report.imported, report.replaced, report.renamed) == (2, 0, 0)
    assert [line for line, _ in report.skipped] == [3] and "'shared'" in report.skipped[0][1]
    after = everything(store)
    assert after["shared"] == before["shared"] and after["mine"] == before["mine"]
    assert len(after) == 4


@pytest.mark.parametrize("format", ["jsonl", "json"])
def test_replace_makes_the_stored_conversation_exactly_the_files(store: ConversationStore, format: str) -> None:
    prepare(store)
    report = import_into(
        store,
        io.StringIO(export_text(format, FILE)),
        format=format,  # type: ignore[arg-type]
        on_conflict="replace",
        batch_size=2,
    )
    assert (report.imported, report.replaced, report.renamed, report.skipped) == (2, 1, 0, [])
    shared = everything(store)["shared"]
    assert shared.conversation.title == "from the file"
    assert contents(shared) == ["file 0", "file 1"], "no stored message survives a replacement (no merge)"


@pytest.mark.parametrize("format", ["jsonl", "json"])
def test_rename_keeps_both(store: ConversationStore, format: str) -> None:
    prepare(store)
    before = everything(store)
    report = import_into(
        store,
        io.StringIO(export_text(format, FILE)),
        format=format,  # type: ignore[arg-type]
        on_conflict="rename",
    )
    assert (report.imported, report.replaced, report.renamed) == (2, 0, 1)
    after = everything(store)
    assert len(after) == 5 and after["shared"] == before["shared"]
    (copy,) = [s for key, s in after.items() if s.conversation.title == "from the file"]
    assert copy.conversation.id != "shared" and contents(copy) == ["file 0", "file 1"]


@pytest.mark.parametrize("format", ["jsonl", "json"])
def test_fail_refuses_the_taken_id_before_writing_it(store: ConversationStore, format: str) -> None:
    prepare(store)
    before = everything(store)
    with pytest.raises(ImportFormatError) as caught:
        import_into(
            store,
            io.StringIO(export_text(format, FILE)),
            format=format,  # type: ignore[arg-type]
            on_conflict="fail",
            batch_size=10,
        )
    assert caught.value.line == 3
    after = everything(store)
    assert after["shared"] == before["shared"]
    assert set(after) == {"shared", "mine", "new"}, "what came before the line is saved, nothing after"


def test_jsonl_keeps_empty_conversations_unless_told(store: ConversationStore) -> None:
    text = export_text("jsonl", [stored_conversation("hollow"), stored_conversation("full", "x")])
    report = import_into(store, io.StringIO(text))
    assert (report.imported, report.empty, report.skipped) == (2, 1, []), "a lossless export keeps its records"
    assert contents(everything(store)["hollow"]) == []
    store.delete("hollow")
    store.delete("full")
    dropped = import_into(store, io.StringIO(text), keep_empty=False)
    assert (dropped.imported, dropped.empty, [line for line, _ in dropped.skipped]) == (1, 1, [2])
    assert set(everything(store)) == {"full"}


def test_bad_arguments_are_refused_before_anything_is_read(store: ConversationStore) -> None:
    text = export_text("jsonl", FILE)
    with pytest.raises(InvalidInputError, match="on_conflict"):
        import_into(store, io.StringIO(text), on_conflict="merge")  # type: ignore[arg-type]
    with pytest.raises(InvalidInputError, match="keep_empty"):
        import_into(store, io.StringIO(text), keep_empty="yes")  # type: ignore[arg-type]
    with pytest.raises(InvalidInputError, match="on_conflict"):
        copy_store(MemoryStore(), store, on_conflict="merge")  # type: ignore[arg-type]
    assert everything(store) == {}


def test_the_async_manager_passes_the_choices_on() -> None:
    import asyncio

    from qv_session_manager import AsyncSessionManager

    async def scenario() -> tuple[Any, Any]:
        async with AsyncSessionManager(url="memory://") as manager:
            text = sharegpt_text(SHAREGPT_ITEMS)
            first = await manager.import_conversations(io.StringIO(text), format="sharegpt", keep_empty=True)
            again = await manager.import_conversations(io.StringIO(text), format="sharegpt", on_conflict="replace")
            return first, again

    first, again = asyncio.run(scenario())
    assert (first.imported, first.empty) == (4, 1)
    assert (again.imported, again.replaced, len(again.skipped)) == (0, 6, 1)


# -- copy_store -------------------------------------------------------------------


def source_store() -> MemoryStore:
    source = MemoryStore()
    for stored in (stored_conversation("shared", "source 0", title="source"), stored_conversation("only-source", "s")):
        source.save(stored.conversation, stored.messages)
    return source


def test_copy_replaces_by_default_and_a_rerun_converges(store: ConversationStore) -> None:
    prepare(store)
    source = source_store()
    report = copy_store(source, store)
    assert report == CopyReport(copied=1, replaced=1)
    assert contents(everything(store)["shared"]) == ["source 0"], "replaced whole, not merged"
    assert copy_store(source, store) == CopyReport(replaced=2)
    assert len(everything(store)) == 3


def test_copy_skip_keeps_the_destinations(store: ConversationStore) -> None:
    prepare(store)
    before = everything(store)
    report = copy_store(source_store(), store, on_conflict="skip")
    assert report == CopyReport(copied=1, skipped=["shared"])
    assert everything(store)["shared"] == before["shared"]


def test_copy_rename_keeps_both(store: ConversationStore) -> None:
    prepare(store)
    before = everything(store)
    report = copy_store(source_store(), store, on_conflict="rename")
    assert (report.copied, report.replaced, list(report.renamed)) == (1, 0, ["shared"])
    after = everything(store)
    assert after["shared"] == before["shared"] and contents(after[report.renamed["shared"]]) == ["source 0"]
    assert report.written == 2 and len(after) == 4


def test_copy_fail_raises_before_writing_the_taken_id(store: ConversationStore) -> None:
    prepare(store)
    before = everything(store)
    with pytest.raises(ConversationExistsError) as caught:
        copy_store(source_store(), store, on_conflict="fail")
    assert caught.value.conversation_id == "shared" and isinstance(caught.value, ValueError)
    assert everything(store)["shared"] == before["shared"]


# -- a property: whatever the ids, counts add up and nothing is merged -------------


@given(
    keys=st.lists(st.sampled_from("abcd"), max_size=12),
    existing=st.sets(st.sampled_from("abcd")),
    on_conflict=st.sampled_from(["skip", "replace", "rename", "fail"]),
    batch_size=st.integers(1, 4),
)
def test_every_entry_is_counted_once_and_every_stored_conversation_is_one_entry_whole(
    keys: list[str], existing: set[str], on_conflict: str, batch_size: int
) -> None:
    store = MemoryStore()
    for key in existing:
        store.save(conversation(key, title="existing"), [message(f"existing {key}", id="m0")])
    entries = [  # message ids differ between entries, so a merge would show as a mixed list
        StoredConversation(
            conversation(key, title=f"entry {index}"),
            (message(f"entry {index} a", id=f"e{index}a"), message(f"entry {index} b", id=f"e{index}b")),
        )
        for index, key in enumerate(keys)
    ]
    report = import_into(
        store,
        io.StringIO(export_text("jsonl", entries)),
        on_conflict=on_conflict,  # type: ignore[arg-type]
        on_error="skip",
        batch_size=batch_size,
    )
    assert report.saved + len(report.skipped) == len(entries)
    stored = everything(store)
    assert len(stored) == len(existing) + report.imported + report.renamed
    wholes = {tuple(contents(entry)): entry.conversation.title for entry in entries}
    for key, loaded in stored.items():
        texts = tuple(contents(loaded))
        if loaded.conversation.title == "existing":
            assert texts == (f"existing {key}",)
        else:
            assert wholes.get(texts) == loaded.conversation.title, f"{key}: messages of two conversations mixed"


# -- the command line ----------------------------------------------------------------


def test_cli_import_prints_the_counts_and_takes_on_conflict(tmp_path: Path) -> None:
    source = tmp_path / "dump.json"
    source.write_text(sharegpt_text(SHAREGPT_ITEMS))
    url = f"sqlite:///{tmp_path / 'cli.db'}"

    def run(*args: str) -> Any:
        return CliRunner().invoke(
            main, ["--url", url, "import", str(source), "--format", "sharegpt", *args], catch_exceptions=False
        )

    first = run()
    assert first.exit_code == 0, first.output
    assert "imported 3 conversations, skipped 4, 1 without messages" in first.stderr
    assert "skipped line 4: a conversation with id" in first.stderr
    second = run("--on-conflict", "replace")
    assert (
        second.exit_code == 0 and "imported 0 conversations, skipped 1, replaced 6, 1 without messages" in second.stderr
    )
    third = run("--on-conflict", "rename", "--keep-empty")
    assert third.exit_code == 0 and "imported 1 conversation, renamed 6, 1 without messages" in third.stderr
    with SessionManager(url=url) as manager:
        assert len(manager.list_conversations()) == 3 + 1 + 6
    failed = run("--on-conflict", "fail")
    last = failed.stderr.strip().splitlines()[-1]
    assert failed.exit_code == 1 and last.startswith("error: ") and "dump.json: line 2:" in last
    assert "Traceback" not in failed.output


def test_cli_copy_takes_on_conflict_and_verifies_accordingly(tmp_path: Path) -> None:
    source, target = f"sqlite:///{tmp_path / 'source.db'}", f"sqlite:///{tmp_path / 'target.db'}"
    with SessionManager(url=source) as manager:
        manager.store.save(conversation("shared", title="source"), [message("s0", id="m0"), message("s1", id="m1")])
    with SessionManager(url=target) as manager:
        manager.store.save(conversation("shared", title="target"), [message("t0", id="m0")])

    def copy(*args: str) -> Any:
        return CliRunner().invoke(main, ["copy", source, target, *args], catch_exceptions=False)

    skipped = copy("--on-conflict", "skip")
    assert skipped.exit_code == 0, skipped.output
    assert "copied 0 conversations, skipped 1" in skipped.stderr and "verified 1" in skipped.stderr
    renamed = copy("--on-conflict", "rename")
    assert renamed.exit_code == 0 and "renamed 1" in renamed.stderr and "verified 1" in renamed.stderr
    failed = copy("--on-conflict", "fail")
    assert failed.exit_code == 1 and "error: a conversation with id 'shared' is already stored" in failed.stderr
    replaced = copy()
    assert replaced.exit_code == 0 and "copied 0 conversations, replaced 1" in replaced.stderr
    with SessionManager(url=target) as manager:
        loaded = manager.store.load("shared")
        assert loaded is not None and contents(loaded) == ["s0", "s1"]
        assert len(manager.list_conversations()) == 2
