"""The command line's operations side: formats told from files, errors that say what to do,
read-only stores, --version, --json on stats/doctor/backends, sizes, --url anywhere."""

from __future__ import annotations

import hashlib
import json
import os
import re
import sqlite3
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result
from test_cli import assert_user_error, make_conversation, tool_conversation
from test_cli_secrets import BROKEN_URLS, SECRET

from qv_session_manager import SessionManager
from qv_session_manager.backends.sqlite.schema import LATEST
from qv_session_manager.cli import access, main
from qv_session_manager.cli.sizes import human_size
from qv_session_manager.cli.urls import as_url
from qv_session_manager.exchange.detect import (
    FormatDetectionError,
    content_format,
    export_format,
    import_format,
)
from qv_session_manager.manager import URL_VARIABLE


@pytest.fixture
def db(tmp_path: Path) -> Path:
    path = tmp_path / "chats.db"
    with SessionManager(db_path=path) as manager:
        manager.save_conversation(make_conversation("Python lists", 0, metadata={"topic": "python"}))
        manager.save_conversation(make_conversation("Rust ownership", 1))
        manager.save_conversation(tool_conversation())
    return path


def run(*args: str, input: str | None = None, env: dict[str, str] | None = None) -> Result:
    return CliRunner().invoke(main, list(args), input=input, env=env, catch_exceptions=False)


def titles_in(path: Path) -> list[str]:
    with SessionManager(db_path=path) as manager:
        return sorted(row["title"] or "" for row in manager.list_conversations())


def fingerprint(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def one_line_error(result: Result, *fragments: str) -> None:
    assert_user_error(result)
    lines = result.stderr.strip().splitlines()
    assert len([line for line in lines if line.startswith("error:")]) == 1, result.stderr
    for fragment in fragments:
        assert fragment in lines[-1], (fragment, result.stderr)


# -- basics -----------------------------------------------------------------------------


def test_version() -> None:
    result = run("--version")
    assert result.exit_code == 0 and re.fullmatch(r"qv-sessions, version \S+\n", result.stdout), result.stdout


def test_url_after_the_command_and_bare_paths(db: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for args in (
        ["list", "--json", "--url", str(db)],
        ["--url", "memory://", "list", "--json", "--url", f"sqlite:///{db}"],
    ):
        result = run(*args)
        assert result.exit_code == 0, result.output
        assert len(json.loads(result.stdout)) == 3
    # after the command it wins over the environment too
    assert len(json.loads(run("list", "--json", "--url", str(db), env={URL_VARIABLE: "memory://"}).stdout)) == 3
    monkeypatch.chdir(tmp_path)
    assert len(json.loads(run("--url", "chats.db", "stats", "--json").stdout)["files"]) >= 1  # relative bare path
    assert as_url("big.db") == "sqlite:///big.db" and as_url("/a/b c.db") == "sqlite:////a/b%20c.db"
    assert as_url("memory://") == "memory://" and as_url("postgresql:/x") == "postgresql:/x"


def test_copy_takes_bare_paths_and_reads_a_source_it_cannot_write(
    db: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    before = fingerprint(db)
    monkeypatch.setattr(access, "writable", lambda path: path != str(db))
    result = run("copy", str(db), str(tmp_path / "copy.db"))
    assert result.exit_code == 0 and "verified 3 conversations" in result.stderr, result.output
    assert titles_in(tmp_path / "copy.db") == titles_in(db) and fingerprint(db) == before


@pytest.mark.parametrize("url", BROKEN_URLS)
def test_a_url_after_the_command_is_masked_too(url: str) -> None:
    for command in (["list"], ["stats", "--json"], ["doctor"], ["export", "-"], ["search", "x"]):
        result = CliRunner().invoke(main, [*command, "--url", url])
        assert result.exit_code == 1 and "error: " in result.stderr, (command, result.output)
        assert SECRET not in result.output, (command, result.output)


def test_help_documents_the_exit_codes() -> None:
    assert "Exit codes: 0 done, 1 an error" in " ".join(run("--help").stdout.split())


def test_a_missing_store_says_how_to_name_or_create_one(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv(URL_VARIABLE, raising=False)
    one_line_error(run("list"), "no database at session_manager.db", "--url", URL_VARIABLE, "qv-sessions import")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("option", ["--since", "--until"])
def test_a_bad_date_names_its_option(db: Path, option: str) -> None:
    one_line_error(run("list", "--url", str(db), option, "yesterday"), option, "'yesterday'", "2025-01-31")


def test_stats_in_human_sizes_with_distinct_labels_and_as_json(db: Path) -> None:
    text = run("stats", "--url", str(db)).stdout
    labels = [line.split("  ")[0] for line in text.splitlines()]
    assert len(labels) == len(set(labels)), text
    assert re.search(r"database file +\d+(\.\d)? KiB  ", text) and "bytes" not in text
    data = json.loads(run("stats", "--url", str(db), "--json").stdout)
    assert data["conversations"] == 3 and data["messages"] == 9 and data["read_only"] is False
    assert data["files"][0] == {"file": "database file", "path": str(db), "bytes": os.path.getsize(db)}
    assert data["oldest_updated"].startswith("2025-01-20") and data["newest_updated"].startswith("2025-01-30")


def test_human_size() -> None:
    assert [human_size(n) for n in (0, 1023, 1024, 1536, 10 * 1024, 220274688, 5 * 1024**4)] == [
        "0 B",
        "1023 B",
        "1.0 KiB",
        "1.5 KiB",
        "10 KiB",
        "210 MiB",
        "5.0 TiB",
    ]


def test_backends_json() -> None:
    rows = json.loads(run("backends", "--json").stdout)
    sqlite = next(row for row in rows if row["name"] == "sqlite")
    assert sqlite["schemes"] == ["sqlite://"] and sqlite["distribution"] == "qv-session-manager"


def test_doctor_json_healthy_and_broken(db: Path) -> None:
    healthy = run("doctor", "--url", str(db), "--json")
    assert healthy.exit_code == 0, healthy.output
    report = json.loads(healthy.stdout)
    assert report["ok"] and report["problems"] == [] and not report["read_only"]
    assert {"check": "schema version", "status": "ok", "result": f"{LATEST} (current)", "details": []} in report[
        "checks"
    ]
    connection = sqlite3.connect(db)
    with connection:
        connection.execute("INSERT INTO message_index (rowid, body) VALUES (999999, 'ghost words')")
    connection.close()
    broken = run("doctor", "--url", str(db), "--json")
    assert broken.exit_code == 1 and "error: 1 problem found" in broken.stderr
    report = json.loads(broken.stdout)
    index = next(check for check in report["checks"] if check["check"] == "search indexes")
    assert not report["ok"] and index["status"] == "problem" and "message_index" in index["details"][0]


# -- formats ----------------------------------------------------------------------------


def exported(db: Path, path: Path, *args: str) -> Result:
    result = run("--url", str(db), "export", str(path), *args)
    assert result.exit_code == 0, result.output
    return result


def test_import_tells_the_format_from_the_content(db: Path, tmp_path: Path) -> None:
    exported(db, tmp_path / "backup.json")
    exported(db, tmp_path / "backup.jsonl")
    os.replace(tmp_path / "backup.jsonl", tmp_path / "lines-named.json")  # the name lies: content wins
    sharegpt = tmp_path / "sharegpt.json"
    sharegpt.write_text(json.dumps([{"id": "a", "conversations": [{"from": "human", "value": "hi"}]}]))
    expected = titles_in(db)
    for name in ("backup.json", "lines-named.json"):
        target = tmp_path / f"from-{name}.db"
        result = run("--url", str(target), "import", str(tmp_path / name))
        assert result.exit_code == 0 and "imported 3 conversations" in result.stderr, result.output
        assert titles_in(target) == expected
    result = run("--url", str(tmp_path / "sg.db"), "import", str(sharegpt))
    assert result.exit_code == 0 and "imported 1 conversation" in result.stderr, result.output
    piped = run("--url", str(tmp_path / "piped.db"), "import", "-", input=(tmp_path / "backup.json").read_text())
    assert piped.exit_code == 0 and "imported 3" in piped.stderr, piped.output


def test_a_torn_sharegpt_file_imports_the_complete_items_and_names_the_torn_one(tmp_path: Path) -> None:
    # The real ShareGPT V3 file ends inside its last item; an empty item is named with the option that keeps it.
    torn = tmp_path / "torn.json"
    torn.write_text(
        '[\n{"id": "a", "conversations": [{"from": "human", "value": "hi"}]},\n'
        '{"id": "empty", "conversations": []},\n'
        '{"id": "b", "conversations": [{"from": "human", "value": "cut he'
    )
    result = run("--url", str(tmp_path / "torn.db"), "import", str(torn))
    assert result.exit_code == 0, result.output
    assert "the item starting on line 4 is incomplete and was not imported" in result.stderr
    assert "skipped line 3: the conversation has no messages: not stored (--keep-empty stores it)" in result.stderr
    assert "keep_empty=True" not in result.stderr
    assert result.stderr.rstrip().endswith("imported 1 conversation, skipped 1, 1 without messages")
    kept = run("--url", str(tmp_path / "kept.db"), "import", str(torn), "--keep-empty")
    assert kept.stderr.rstrip().endswith("imported 2 conversations, 1 without messages"), kept.output


def test_an_unknown_format_names_the_option_and_creates_nothing(tmp_path: Path) -> None:
    notes = tmp_path / "notes.txt"
    notes.write_text("hello\nworld\n")
    target = tmp_path / "new.db"
    one_line_error(
        run("--url", str(target), "import", str(notes)), "cannot tell the format", "--format jsonl", "--format sharegpt"
    )
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    one_line_error(run("--url", str(target), "import", str(empty)), "it is empty", "--format")
    table = tmp_path / "table.csv"
    table.write_text("conversation_id,conversation_title\n")
    one_line_error(run("--url", str(target), "import", str(table)), "cannot be imported", "export backup.jsonl")
    assert not target.exists()
    assert sorted(path.name for path in tmp_path.iterdir()) == ["empty.jsonl", "notes.txt", "table.csv"]


def test_a_wrong_format_suggests_the_right_one_and_creates_nothing(db: Path, tmp_path: Path) -> None:
    sharegpt = tmp_path / "sharegpt.json"
    sharegpt.write_text(json.dumps([{"id": "a", "conversations": [{"from": "human", "value": "hi"}]}]))
    target = tmp_path / "new.db"
    one_line_error(
        run("--url", str(target), "import", str(sharegpt), "--format", "jsonl"),
        "line 1",
        "looks like a ShareGPT file: give --format sharegpt",
    )
    exported(db, tmp_path / "backup.json")
    one_line_error(
        run("--url", str(target), "import", str(tmp_path / "backup.json"), "--format", "jsonl"), "give --format json"
    )
    one_line_error(run("--url", str(target), "import", str(tmp_path / "missing.jsonl")), "missing.jsonl")
    assert not target.exists() and not any(path.name.startswith("new.db") for path in tmp_path.iterdir())


def test_a_failed_import_keeps_an_existing_store_and_what_it_saved(db: Path, tmp_path: Path) -> None:
    before = fingerprint(db)
    notes = tmp_path / "notes.txt"
    notes.write_text("hello")
    assert_user_error(run("--url", str(db), "import", str(notes)))
    assert fingerprint(db) == before  # the format is told before the store is opened
    exported(db, tmp_path / "dump.jsonl")
    lines = (tmp_path / "dump.jsonl").read_text().splitlines()
    (tmp_path / "dump.jsonl").write_text("\n".join([*lines[:3], "not json", *lines[3:]]) + "\n")
    target = tmp_path / "new.db"
    assert_user_error(run("--url", str(target), "import", str(tmp_path / "dump.jsonl"), "--batch-size", "1"), "line 4")
    assert len(titles_in(target)) == 2  # the batches before the bad line were saved: the new store stays


def test_export_follows_the_extension_or_refuses(db: Path, tmp_path: Path) -> None:
    result = exported(db, tmp_path / "table.csv")
    assert "(csv)" in result.stderr
    assert (tmp_path / "table.csv").read_text().startswith("conversation_id,")
    exported(db, tmp_path / "notes.md")
    assert (tmp_path / "notes.md").read_text().startswith("#")
    exported(db, tmp_path / "doc.json")
    assert json.loads((tmp_path / "doc.json").read_text())["format"] == "qv-session-manager"
    exported(db, tmp_path / "plain")
    assert json.loads((tmp_path / "plain").read_text().splitlines()[0])["format"] == "qv-session-manager"
    refused = run("--url", str(db), "export", str(tmp_path / "x.csv"), "--format", "jsonl")
    one_line_error(refused, "--format csv", ".jsonl")
    one_line_error(run("--url", str(db), "export", str(tmp_path / "x.jsonl"), "--csv-raw"), "--format jsonl")
    assert not (tmp_path / "x.csv").exists() and not (tmp_path / "x.jsonl").exists()
    raw = exported(db, tmp_path / "raw.csv", "--csv-raw")
    assert "(csv)" in raw.stderr


def test_export_into_a_missing_directory_says_so(db: Path, tmp_path: Path) -> None:
    one_line_error(
        run("--url", str(db), "export", str(tmp_path / "no" / "x.jsonl")),
        f"there is no directory {tmp_path / 'no'}",
        "create it first",
    )
    assert sorted(path.name for path in tmp_path.iterdir()) == ["chats.db"]


def test_detection_rules() -> None:
    header = b'{"format":"qv-session-manager","version":1}'
    assert content_format(header + b"\n{...}\n") == "jsonl"
    assert content_format(b"\xef\xbb\xbf  " + header + b"\n") == "jsonl"
    assert content_format(header[:-1] + b',"conversations":[\n{"id":1}') == "json"
    assert content_format(b'{\n  "format": "qv-session-manager",\n  "conversations": []}') == "json"
    assert content_format(b' \n[{"id": 1, "conversations": []}]') == "sharegpt"
    for head in (b"", b"hello", b'{"some": "object"}\n', b"\x00\x01binary"):
        assert content_format(head) is None
    assert import_format("f", b"hello", "sharegpt") == "sharegpt"
    with pytest.raises(FormatDetectionError, match="--format json"):
        import_format("f", b"hello", None)
    assert export_format("a.CSV", None) == "csv" and export_format("a.ndjson", None) == "jsonl"
    assert export_format(None, None) == "jsonl" and export_format("a.txt", "csv") == "csv"
    with pytest.raises(FormatDetectionError):
        export_format("a.md", "json")


# -- read-only stores (simulated: this process is treated as unable to write the file) --------


READING = [["list", "--json"], ["search", "python", "--json"], ["stats"], ["export", "-"], ["doctor"]]


@pytest.fixture
def unwritable(monkeypatch: pytest.MonkeyPatch) -> None:
    """As for a user without write permission: the CLI's file-system check says no (tests run as root,
    for whom every file is writable; test_cli_ops_terminal.py runs the real command as another user)."""
    monkeypatch.setattr(access, "writable", lambda path: False)


def test_reading_commands_work_read_only_and_change_nothing(db: Path, unwritable: None) -> None:
    before = fingerprint(db)
    outputs: dict[str, Any] = {}
    for args in READING:
        result = run("--url", str(db), *args)
        assert result.exit_code == 0, (args, result.output)
        outputs[args[0]] = result.stdout
    assert len(json.loads(outputs["list"])) == 3 and json.loads(outputs["search"])
    assert "(read-only)" in outputs["stats"]
    assert "access: read-only" in outputs["doctor"] and "INCONSISTENT" not in outputs["doctor"]
    assert "search indexes: consistent" in outputs["doctor"] and "no problems found" in outputs["doctor"]
    shown = run("--url", str(db), "show", json.loads(outputs["list"])[0]["id"])
    assert shown.exit_code == 0 and "It is sunny." in shown.stdout
    assert fingerprint(db) == before


def test_a_read_only_store_still_shows_real_damage(db: Path, unwritable: None) -> None:
    connection = sqlite3.connect(db)
    with connection:
        connection.execute("INSERT INTO message_index (rowid, body) VALUES (999999, 'ghost words')")
    connection.close()
    result = run("--url", str(db), "doctor")
    assert (
        result.exit_code == 1 and "search indexes: INCONSISTENT" in result.stdout and "message_index" in result.stdout
    )


def test_writing_on_a_read_only_store_says_why_in_one_line(db: Path, unwritable: None) -> None:
    before = fingerprint(db)
    one_line_error(run("--url", str(db), "doctor", "--repair"), "--repair needs write access", "read-only")
    one_line_error(run("--url", str(db), "doctor", "--rebuild-index"), "--rebuild-index needs write access")
    key = json.loads(run("--url", str(db), "list", "--json").stdout)[0]["id"]
    one_line_error(run("--url", str(db), "delete", key), "readonly", "cannot write the store")
    one_line_error(run("--url", str(db), "prune", "--keep-newest", "0", "--yes"), "cannot write the store")
    assert fingerprint(db) == before


def test_explicit_read_only_urls(db: Path) -> None:
    for query in ("?mode=ro", "?immutable=1"):
        result = run("--url", f"sqlite:///{db}{query}", "stats")
        assert result.exit_code == 0 and "(read-only)" in result.stdout, result.output
    assert access.readable_url(f"sqlite:///{db}?mode=ro") == f"sqlite:///{db}?mode=ro"


def test_readable_url_only_changes_sqlite_files_that_cannot_be_written(db: Path, unwritable: None) -> None:
    assert access.readable_url(f"sqlite:///{db}") == f"sqlite:///{db}?mode=ro"
    assert access.readable_url(f"sqlite:///{db}?busy_timeout=1") == f"sqlite:///{db}?busy_timeout=1&mode=ro"
    assert access.readable_url(f"sqlite:///{db}?") == f"sqlite:///{db}?mode=ro"
    for url in ("memory://", f"sqlite:///{db}.missing", "sqlite://", f"sqlite:///{db}?immutable=1"):
        assert access.readable_url(url) == url
