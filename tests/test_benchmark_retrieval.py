"""A smoke run of benchmarks/retrieval.py on a tiny made-up corpus: every step, no network.

Needs the offline embedder (``pip install -e ".[semantic]"``); skipped without it. The
PostgreSQL run (``--url``) needs the server at ``QV_SESSION_MANAGER_POSTGRES_URL`` (default
``postgresql://postgres@127.0.0.1:5432/test``): skipped with the reason when none answers,
failed instead when ``QV_SESSION_MANAGER_REQUIRE_SERVERS=1`` (as in CI), as the plugin's tests.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
TOPICS = [
    ("bake", "sourdough bread", "flour, water, salt and a lively starter"),
    ("repair", "bicycle puncture", "tyre levers, a patch kit and a pump"),
    ("learn", "python decorators", "functions wrapping functions with the @ syntax"),
    ("plan", "week in lisbon", "trams, pastel de nata and the alfama quarter"),
    ("train", "marathon beginner", "long slow runs, rest days and tapering"),
    ("write", "cover letter", "a short opening, two achievements and a polite close"),
    ("grow", "tomatoes indoors", "a sunny window, deep pots and regular feeding"),
    ("configure", "nginx reverse proxy", "proxy_pass, upstream blocks and headers"),
    ("explain", "photosynthesis", "chlorophyll turning light, water and carbon dioxide into sugar"),
    ("budget", "monthly savings", "fixed costs first, then a share for an emergency fund"),
]


def write_corpus(path: Path) -> None:
    """ShareGPT-shaped chats: a question, then answers that reword it; some chats are split in two parts."""
    items = []
    for number, (verb, thing, answer) in enumerate(TOPICS * 3):
        round_ = number // len(TOPICS)
        question = f"how should I {verb} my {thing} in round {round_} of chat {number}?"
        turns = [
            {"from": "human", "value": question},
            {"from": "gpt", "value": f"For {thing} you mostly need {answer}."},
            {"from": "human", "value": "thanks, anything else?"},
            {"from": "gpt", "value": f"Practise often: {answer} gets easier every time."},
        ]
        items.append({"id": f"chat{number}_0", "conversations": turns})
        if number % 4 == 0:
            more = [{"from": "human", "value": f"more about {thing} please"}, {"from": "gpt", "value": answer}]
            items.append({"id": f"chat{number}_4", "conversations": more})
    path.write_text(json.dumps(items), encoding="utf-8")


@pytest.fixture
def corpus(tmp_path: Path) -> Path:
    """The made-up corpus as a file; skips without the offline embedder."""
    pytest.importorskip("wordllama")
    pytest.importorskip("numpy")
    path = tmp_path / "corpus.json"
    write_corpus(path)
    return path


POSTGRES_URL = os.environ.get("QV_SESSION_MANAGER_POSTGRES_URL") or "postgresql://postgres@127.0.0.1:5432/test"


def run_quick(tmp_path: Path, corpus: Path, *options: str) -> tuple[subprocess.CompletedProcess[str], dict]:
    """benchmarks/retrieval.py --quick on the made-up corpus: the finished process and its results JSON."""
    command = [
        sys.executable,
        str(REPO / "benchmarks" / "retrieval.py"),
        "--quick",
        "--corpus",
        str(corpus),
        "--conversations",
        "all",
        "--queries",
        "12",
        "--db-dir",
        str(tmp_path),
        "--results-dir",
        str(tmp_path / "results"),
        "--embed-chunk",
        "16",
        *options,
    ]
    done = subprocess.run(command, capture_output=True, text=True, timeout=180, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    (output,) = (tmp_path / "results").glob("retrieval-*.json")
    return done, json.loads(output.read_text(encoding="utf-8"))


def check_every_mode(done: subprocess.CompletedProcess[str], data: dict) -> None:
    assert data["query_count"] == 12
    assert data["queries_with_split_siblings"] > 0
    quality = data["evaluation"]["quality"]
    assert set(quality) == {"text", "text_or", "semantic", "hybrid", "hybrid_or", "floor_embed"}
    for numbers in quality.values():
        assert 0 <= numbers["mrr@10"] <= numbers["recall@10"] <= numbers["recall@20"] <= 1
    # The answers reword their question: by meaning, most chats are found.
    assert quality["semantic"]["recall@10"] >= 0.5
    assert data["evaluation"]["floor_matches_semantic_top10"] == 1.0
    assert data["build"]["embedded"] == data["build"]["messages_stored"]
    assert data["build"]["store_embeddings_calls"] > 0
    assert not data["fallbacks"]
    assert "| ranking | recall@10 |" in done.stdout


@pytest.mark.slow
def test_quick_retrieval_run_reports_every_mode(tmp_path: Path, corpus: Path) -> None:
    done, data = run_quick(tmp_path, corpus)
    check_every_mode(done, data)
    assert data["backend"] == "sqlite"
    assert data["build"]["table_bytes"] is None or data["build"]["table_bytes"]["message_vectors"] > 0
    assert not list(tmp_path.glob("qv-retrieval-*")), "the database folder is removed"


@pytest.mark.slow
def test_fusion_study_scores_every_rule_on_a_kept_store(tmp_path: Path, corpus: Path) -> None:
    results = tmp_path / "results"
    common = ["--corpus", str(corpus), "--conversations", "all", "--queries", "12", "--results-dir", str(results)]
    kept = [*common, "--quick", "--db-dir", str(tmp_path), "--keep-db", "--embed-chunk", "16"]
    retrieval = [sys.executable, str(REPO / "benchmarks" / "retrieval.py"), *kept]
    done = subprocess.run(retrieval, capture_output=True, text=True, timeout=180, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    (database,) = tmp_path.glob("qv-retrieval-*/retrieval.db")
    fusion = [sys.executable, str(REPO / "benchmarks" / "fusion.py"), "--db", str(database), *common]
    done = subprocess.run(fusion, capture_output=True, text=True, timeout=180, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    (retrieval_output,) = results.glob("retrieval-*.json")
    (fusion_output,) = results.glob("fusion-*.json")
    library = json.loads(retrieval_output.read_text(encoding="utf-8"))["evaluation"]["quality"]["hybrid"]
    study = json.loads(fusion_output.read_text(encoding="utf-8"))
    assert study["queries"] == 12
    rules = study["rules"]
    assert {"words only", "vectors only", "mix a=0.5"} <= set(rules) and len(rules) == 22
    (library_rule,) = [name for name in rules if name.startswith("library:")]
    assert rules[library_rule]["all"]["recall@10"] == library["recall@10"], "the study scores the library's rule"
    for by_half in rules.values():
        assert set(by_half) == {"first half (choose)", "second half (confirm)", "all"}
        assert all(0 <= numbers["mrr@10"] <= numbers["recall@10"] <= 1 for numbers in by_half.values())
    assert "| rule |" in done.stdout


def postgres_server() -> str:
    """The server's URL once it answered; skip (or fail when servers are required, as in CI) otherwise."""
    psycopg = pytest.importorskip("psycopg")
    pytest.importorskip("qv_session_manager_postgres")
    try:
        with psycopg.connect(POSTGRES_URL, connect_timeout=5) as connection:
            connection.execute("SELECT 1")
    except psycopg.Error as exc:
        message = f"no PostgreSQL server reachable ({str(exc).strip()}); set QV_SESSION_MANAGER_POSTGRES_URL"
        if os.environ.get("QV_SESSION_MANAGER_REQUIRE_SERVERS") == "1":
            pytest.fail(f"{message} (QV_SESSION_MANAGER_REQUIRE_SERVERS=1: servers are required)")
        pytest.skip(message)
    return POSTGRES_URL


@pytest.mark.slow
def test_quick_retrieval_run_on_postgresql(tmp_path: Path, corpus: Path) -> None:
    url = postgres_server()
    done, data = run_quick(tmp_path, corpus, "--url", url, "--rebuild-mem", "default")
    check_every_mode(done, data)
    assert data["backend"] == "postgres"
    assert data["schema"].startswith("qv_retrieval_")
    build = data["build"]
    assert build["vector_table"]["heap_bytes"] > 0
    assert {index["method"] for index in build["vector_indexes"]} >= {"btree"}
    assert "nearest" in done.stdout or "the exact step" in done.stdout  # the steps of the layout's search
    if any(index["method"] == "hnsw" for index in build["vector_indexes"]):
        (rebuild,) = data["after"]["hnsw_rebuilds"]
        assert rebuild["seconds"] >= 0 and rebuild["index_bytes"] > 0
    import psycopg

    with psycopg.connect(url) as connection:
        left = connection.execute("SELECT 1 FROM pg_namespace WHERE nspname = %s", (data["schema"],)).fetchone()
    assert left is None, "the run drops its schema"
