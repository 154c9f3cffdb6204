"""``qv-sessions embed`` and ``search --mode semantic|hybrid`` through CliRunner.

The deterministic test embedders (``synonyms``, ``hash``) are registered for each test
(:func:`qv_session_manager.testing.embedders.install`); the Ollama embedder talks HTTP
to the stand-in server of ``ollama_standin.py``. The real command on a pseudo-terminal
is in ``test_cli_embed_terminal.py``.
"""

from __future__ import annotations

import json
import socket
import sys
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result
from test_cli import assert_user_error, make_conversation

from qv_session_manager import SessionManager, plugins
from qv_session_manager.cli import main
from qv_session_manager.cli.embed import EMBEDDER_VARIABLE
from qv_session_manager.embedding import Embedder, Vector
from qv_session_manager.hookspecs import hookimpl
from qv_session_manager.testing import embedders as test_embedders
from qv_session_manager.testing.embedders import SynonymEmbedder
from qv_session_manager.vector_records import VectorSpace

from hostile import ATTACK, hostile_conversation
from ollama_standin import StandIn, environment

SYNONYMS_SPACE = "synonyms/blake2b-synonyms-64/64"
#: Shares no word with the garage chat's "my car will not start", only meanings (synonyms).
SYNONYM_QUERY = "automobile ignition"
PLUGIN_NAME = "tests.test_cli_embed"


@pytest.fixture(autouse=True)
def test_embedders_installed(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.delenv(EMBEDDER_VARIABLE, raising=False)
    test_embedders.install()
    plugins.pm.register(sys.modules[__name__], name=PLUGIN_NAME)
    yield
    plugins.pm.unregister(name=PLUGIN_NAME)
    test_embedders.uninstall()


@pytest.fixture
def db(tmp_path: Path) -> Path:
    """Three conversations, six messages; only the garage one is about cars, in other words."""
    path = tmp_path / "chats.db"
    with SessionManager(db_path=path) as manager:
        manager.save_conversation(make_conversation("garage", 0, text="my car will not start"))
        manager.save_conversation(make_conversation("Python lists", 1, text="how do I sort a list in python"))
        manager.save_conversation(make_conversation("Cooking", 2, text="a recipe for bread"))
    return path


def on(db: Path | str, *args: str, env: Mapping[str, str] | None = None) -> Result:
    return CliRunner().invoke(main, ["--url", str(db), *args], env=env, catch_exceptions=False)


def counts(db: Path, embedder: Any) -> tuple[int, int]:
    with SessionManager(db_path=db) as manager:
        return manager.store.embedding_counts(VectorSpace.of(embedder))


def hits(result: Result) -> list[dict[str, Any]]:
    assert result.exit_code == 0, result.output
    rows: list[dict[str, Any]] = json.loads(result.stdout)
    return rows


def notes(result: Result) -> list[str]:
    return [line for line in result.stderr.splitlines() if line.startswith("note: ")]


# -- embed ------------------------------------------------------------------------------


def test_embed_stores_every_pending_message_once_and_says_so(db: Path) -> None:
    first = on(db, "embed", "--embedder", "synonyms")
    assert first.exit_code == 0, first.output
    assert first.stdout == ""
    assert first.stderr == f"embedded 6 messages, 0 pending, in {SYNONYMS_SPACE}\n"
    assert counts(db, SynonymEmbedder()) == (6, 0)
    again = on(db, "embed", "--embedder", "synonyms")
    assert again.exit_code == 0 and again.stderr == f"embedded 0 messages, 0 pending, in {SYNONYMS_SPACE}\n"


def test_stats_counts_the_vectors_of_each_space(db: Path) -> None:
    assert json.loads(on(db, "stats", "--json").stdout)["vectors"] == {}
    assert "vectors         -" in on(db, "stats").stdout
    on(db, "embed", "--embedder", "synonyms")
    on(db, "embed", "--embedder", "hash", "--limit", "2")
    assert json.loads(on(db, "stats", "--json").stdout)["vectors"] == {
        "hash/blake2b-tokens-64/64": 2,
        SYNONYMS_SPACE: 6,
    }
    assert f"vectors         2 in hash/blake2b-tokens-64/64, 6 in {SYNONYMS_SPACE}" in on(db, "stats").stdout
    assert "vectors" not in json.loads(on("memory://", "stats", "--json").stdout), "SQLite files only"


def test_embed_limit_and_batch_size(db: Path) -> None:
    result = on(db, "embed", "--embedder", "synonyms:32", "--limit", "4", "--batch-size", "3")
    assert (
        result.exit_code == 0
        and result.stderr == "embedded 4 messages, 2 pending, in synonyms/blake2b-synonyms-32/32\n"
    )
    assert counts(db, SynonymEmbedder(32)) == (4, 2)
    for bad in (["--batch-size", "0"], ["--limit", "-1"]):
        assert on(db, "embed", "--embedder", "synonyms", *bad).exit_code == 2


def test_the_embedder_comes_from_the_option_else_the_variable(db: Path) -> None:
    missing = on(db, "embed")
    assert missing.exit_code == 2, missing.output
    message = " ".join(missing.stderr.split())
    assert "embed needs an embedder" in message and "--embedder SPEC" in message and EMBEDDER_VARIABLE in message
    by_variable = on(db, "embed", env={EMBEDDER_VARIABLE: "hash"})
    assert by_variable.exit_code == 0 and "in hash/blake2b-tokens-64/64" in by_variable.stderr
    by_option = on(db, "embed", "--embedder", "synonyms", env={EMBEDDER_VARIABLE: "hash"})
    assert by_option.exit_code == 0 and SYNONYMS_SPACE in by_option.stderr, "the option wins"
    semantic = on(db, "search", "--mode", "semantic", "car")
    assert semantic.exit_code == 2 and "search --mode semantic needs an embedder" in " ".join(semantic.stderr.split())


def test_help_documents_the_variable_and_the_modes() -> None:
    runner = CliRunner()
    for command in (["embed", "--help"], ["search", "--help"], ["--help"]):
        text = " ".join(runner.invoke(main, command).stdout.split())
        assert EMBEDDER_VARIABLE in text, command
    search_help = " ".join(runner.invoke(main, ["search", "--help"]).stdout.split())
    assert "--mode [text|semantic|hybrid]" in search_help and "qv-sessions embed" in search_help


def test_an_unknown_embedder_is_one_error_line(db: Path) -> None:
    result = on(db, "embed", "--embedder", "nope")
    assert_user_error(result, "no embedder is named 'nope'")
    assert "synonyms" in result.stderr, "the error lists the installed embedders"
    assert_user_error(on(db, "search", "--mode", "hybrid", "--embedder", "nope", "car"), "no embedder is named")


def test_a_missing_store_is_not_created_by_embed(tmp_path: Path) -> None:
    assert_user_error(on(tmp_path / "none.db", "embed", "--embedder", "hash"), "no database at")
    assert not (tmp_path / "none.db").exists()


_INTERRUPT_AFTER = 2


class _Interrupted(SynonymEmbedder):
    """Embeds two batches, then the user presses Ctrl-C."""

    calls = 0

    def embed(self, texts: Sequence[str]) -> list[Vector]:
        type(self).calls += 1
        if type(self).calls > _INTERRUPT_AFTER:
            raise KeyboardInterrupt
        return super().embed(texts)


@hookimpl
def register_embedders(register: Callable[[Embedder], None]) -> None:
    register(Embedder("interrupted", lambda spec, options: _Interrupted(), "test only: Ctrl-C after two batches"))


def test_ctrl_c_keeps_the_batches_done_and_exits_130(db: Path) -> None:
    _Interrupted.calls = 0
    result = on(db, "embed", "--embedder", "interrupted", "--batch-size", "2")
    assert result.exit_code == 130, result.output
    assert result.stderr == (
        "interrupted: 4 messages embedded before, and kept; run qv-sessions embed --embedder interrupted again to finish\n"
    )
    assert counts(db, SynonymEmbedder()) == (4, 2), "the interrupted embedder's space is synonyms'"
    rest = on(db, "embed", "--embedder", "synonyms")
    assert rest.stderr == f"embedded 2 messages, 0 pending, in {SYNONYMS_SPACE}\n"


# -- search by meaning ----------------------------------------------------------------


def test_semantic_search_finds_a_match_that_shares_no_word(db: Path) -> None:
    assert hits(on(db, "search", "--json", SYNONYM_QUERY)) == [], "no word of the query is stored"
    on(db, "embed", "--embedder", "synonyms")
    for mode in ("semantic", "hybrid"):
        result = on(db, "search", "--mode", mode, "--embedder", "synonyms", "--json", SYNONYM_QUERY)
        found = hits(result)
        assert found[0]["title"] == "garage", (mode, found)
        assert found[0]["snippet"] == "my car will not start" and isinstance(found[0]["score"], float)
        assert found[0]["message_id"] is not None
        assert notes(result) == [], result.stderr
    semantic = hits(on(db, "search", "--mode", "semantic", "--embedder", "synonyms", "--json", SYNONYM_QUERY))
    assert len(semantic) == 3, "every embedded conversation is ranked by meaning"
    assert semantic[0]["score"] > semantic[1]["score"]


def test_semantic_search_keeps_the_filters_and_the_columns(db: Path) -> None:
    on(db, "embed", "--embedder", "synonyms")
    args = ("search", "--mode", "semantic", "--embedder", "synonyms")
    assert hits(on(db, *args, "--model", "other", "--json", SYNONYM_QUERY)) == []
    assert len(hits(on(db, *args, "--since", "2025-01-21", "--json", SYNONYM_QUERY))) == 2
    table = on(db, *args, "-c", "title,score,snippet", "--format", "tsv", "-n", "1", SYNONYM_QUERY)
    lines = table.stdout.splitlines()
    assert lines[0] == "title\tscore\tsnippet" and lines[1].startswith("garage\t0.") and len(lines) == 2
    assert table.stderr.startswith("3 conversations match")
    for refused in (["--recent"], ["--role", "user"]):
        result = on(db, *args, *refused, SYNONYM_QUERY)
        assert result.exit_code == 2 and "applies to --mode text only" in result.stderr


def test_the_fallback_says_why_and_what_is_pending(db: Path) -> None:
    result = on(db, "search", "--mode", "hybrid", "--embedder", "synonyms", "--json", "car")
    assert [row["title"] for row in hits(result)] == ["garage"], "the text ranking, as a text search gives it"
    assert notes(result) == [
        f"note: searched by words, not by meaning (hybrid was asked): no conversation passing the filter has a vector of {SYNONYMS_SPACE} yet",
        "note: 6 messages not embedded yet: run qv-sessions embed --embedder synonyms",
    ]
    assert "searching by text only" not in result.stderr, "the library's warning is not printed twice"
    on(db, "embed", "--embedder", "synonyms", "--limit", "5")
    partly = on(db, "search", "--mode", "semantic", "--json", "car", env={EMBEDDER_VARIABLE: "synonyms"})
    assert hits(partly)[0]["title"] == "garage"
    assert notes(partly) == ["note: 1 message not embedded yet: run qv-sessions embed"]


def test_text_stays_escaped_in_searches_by_meaning(tmp_path: Path) -> None:
    path = tmp_path / "hostile.db"
    with SessionManager(db_path=path) as manager:
        manager.save_conversation(hostile_conversation())
    on(path, "embed", "--embedder", "hash")
    for output in ("tsv", "json", "markdown"):
        result = on(path, "search", "--mode", "semantic", "--embedder", "hash", "--format", output, "hello world")
        assert result.exit_code == 0, result.output
        assert "title" in result.stdout
        for raw in ("\x1b", "\x07", "\x9b", "\u202e"):
            assert raw not in result.stdout + result.stderr, (output, raw)
    assert ATTACK not in on(path, "search", "--mode", "hybrid", "--embedder", "hash", "hello").stdout


# -- Ollama, through the stand-in server ---------------------------------------------


@pytest.fixture
def standin() -> Iterator[StandIn]:
    with StandIn() as server:
        yield server


def _closed_port() -> str:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{probe.getsockname()[1]}"


def test_embed_with_ollama_and_its_errors_in_one_line(db: Path, standin: StandIn) -> None:
    served = environment(standin.url)
    done = on(db, "embed", "--embedder", "ollama:nomic-embed-text", env=served)
    assert done.exit_code == 0 and done.stderr == "embedded 6 messages, 0 pending, in ollama/nomic-embed-text/48\n"
    missing = on(db, "embed", "--embedder", "ollama:not-pulled", env=served)
    assert_user_error(missing, "pull it with `ollama pull not-pulled`")
    assert len(missing.stderr.splitlines()) == 1
    down = on(db, "embed", "--embedder", "ollama:nomic-embed-text", env=environment(_closed_port()))
    assert_user_error(down, "start it with `ollama serve`")
    assert len(down.stderr.splitlines()) == 1


def test_search_with_ollama_down_falls_back_to_words(db: Path, standin: StandIn) -> None:
    on(db, "embed", "--embedder", "ollama:nomic-embed-text", env=environment(standin.url))
    result = on(
        db, "search", "--mode", "semantic", "--embedder", "ollama", "--json", "car", env=environment(_closed_port())
    )
    assert [row["title"] for row in hits(result)] == ["garage"]
    (note,) = notes(result)
    assert note.startswith("note: searched by words, not by meaning (semantic was asked): cannot reach Ollama")
    assert "ollama serve" in note
