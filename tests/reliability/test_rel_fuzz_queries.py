"""Fuzzing the query language on every backend against the reference rules.

Arbitrary user query strings (any Unicode, lone surrogates, NUL and control
characters included; quotes, FTS5 and tsquery operators, very long queries, queries
of punctuation only, and the bad-input catalogue's queries as explicit examples) go
through ``SessionManager.search_conversations`` and the store's own ``search`` on
memory, SQLite, jsonl and PostgreSQL, over one small fixed corpus.

Expected errors: none. The query language accepts every ``str`` (README, "Search
query language"), so any exception fails the test; only a query that is not a ``str``
raises, with InvalidInputError (a ValueError), on every backend alike.

Every answer must equal :func:`qv_session_manager.rules.reference_search` over the
same corpus tokenized by :func:`qv_session_manager.text.tokens`: the same hits (and
matched documents) in the same order, and the same snippets, for newest-first
searches with paging and metadata filters; the same hits for relevance order, whose
scores may differ by engine but must come best first.
"""

from __future__ import annotations

import importlib.util
import re
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from qv_session_manager import InvalidInputError, SessionManager
from qv_session_manager.protocol import ConversationFilter, ConversationStore
from qv_session_manager.query import MAX_TERMS, parse
from qv_session_manager.records import ConversationRecord, MessageRecord, StoredConversation, ToolCallRecord
from qv_session_manager.rules import Searchable, reference_search
from qv_session_manager.snippet import snippet
from qv_session_manager.text import MAX_TOKEN_LENGTH, tokens

import reliability_kit
from rel_fuzz_kit import REL_FUZZ_BACKENDS, rel_fuzz_opener, rel_fuzz_report

#: Hypothesis examples per backend; each example runs QUERIES_PER_EXAMPLE searches.
EXAMPLES = reliability_kit.budget(300, 13_000)
QUERIES_PER_EXAMPLE = 2
#: Inputs the atheris harness (fuzz_query_atheris.py) tries in the long run.
ATHERIS_RUNS = 300_000
HARNESS = Path(__file__).with_name("fuzz_query_atheris.py")
COUNTS: Counter[str] = Counter()

pytestmark = pytest.mark.slow  # thousands of fuzzed queries on every backend

# -- the corpus ---------------------------------------------------------------------

NAIVE = datetime(2025, 1, 20, 12, 0, 0)
PLUS2 = timezone(timedelta(hours=2))
#: One word longer than MAX_TOKEN_LENGTH: indexed and queried cut to that length.
LONG_WORD = "supercalifragilistic" + "x" * (MAX_TOKEN_LENGTH + 30)
#: A longer document of many distinct words. (Documents past PostgreSQL's 16383
#: positions are left to the plugin's own tests: the reference matcher would take
#: most of this module's time on them. The repeated "echo" below makes an inexact
#: PostgreSQL vector all the same, so candidates are verified in Python here too.)
LONG_DOCUMENT = " ".join(f"w{i % 300}" for i in range(1_000)) + " needle at the end"


def _message(conversation: str, index: int, content: str, **fields: Any) -> MessageRecord:
    fields.setdefault("created_at", NAIVE + timedelta(seconds=index))
    return MessageRecord(id=f"{conversation}-m{index}", role=fields.pop("role", "user"), content=content, **fields)


def _conversation(
    id: str, title: str | None, updated: datetime, contents: list[str], metadata: dict[str, Any] | None = None
) -> StoredConversation:
    record = ConversationRecord(
        id=id, title=title, model_name="llama3", created_at=NAIVE, updated_at=updated, metadata=metadata or {}
    )
    return StoredConversation(record, tuple(_message(id, i, text) for i, text in enumerate(contents)))


def corpus() -> list[StoredConversation]:
    """A few conversations holding every kind of text the catalogue names, with tied update times."""
    tool_call = _message(
        "c-python", 9, "", role="assistant", tool_calls=(ToolCallRecord("get_weather", {"city": "Paris"}, "call-1"),)
    )
    python = _conversation(
        "c-python",
        "Python Help",
        NAIVE,
        [
            "Explain Python lists to me!",
            "Lists are ordered, mutable collections...",
            "the python -java question",
        ],
        {"topic": "code"},
    )
    python = StoredConversation(
        python.conversation,
        (*python.messages, tool_call, _message("c-python", 10, '{"temp": 3}', role="tool", tool_call_id="call-1")),
    )
    return [
        python,
        # updated at the same instant as c-python (a naive time counts as UTC): ties go by id
        _conversation(
            "c-cjk",
            "東京の天気",
            NAIVE.replace(tzinfo=timezone.utc),
            ["東京の天気はどうですか", "日本の首都です", "テスト 한국어 텍스트"],
            {"topic": 1},
        ),
        _conversation(
            "c-punct",
            None,
            NAIVE + timedelta(minutes=1),
            [
                "C++ and C# are languages",
                "mail a.b@example.com or see http://x.com/path?q=1",
                "ubuntu 20.04 on 10.0.0.1 at /etc/passwd",
                "50% off'; DROP TABLE t; --",
                "it's don't @nasa a=b",
            ],
            {"topic": True},
        ),
        _conversation(
            "c-fold",
            "Résumé",
            (NAIVE + timedelta(minutes=2)).replace(tzinfo=PLUS2),
            [
                "Straße in München",
                "ÉCOLE école e\u0301cole",
                "ﬁnancial ＡＢＣ ½ ²",
                "the résumé is RÉSUMÉ",
            ],
            {"topic": "code"},
        ),
        _conversation(
            "c-ops",
            "OR AND NOT NEAR",
            NAIVE - timedelta(days=1),
            [
                "multi-agent systems and multi agent ones",
                "title:python foo:bar",
                '"quoted" -minus *star ^caret',
                "cats NOT dogs",
                "a OR b and c or d",
                "NEAR(a b) ( ) { } [ ] & | ! <-> :* \\",
            ],
        ),
        _conversation(
            "c-odd",
            "x\x00y",
            NAIVE + timedelta(minutes=3),
            [
                "before\x00after",
                "\x01\x02 control \x1f chars\x7f",
                "line\nbreak\ttab\r\nend",
                "",
                f"{LONG_WORD} and {LONG_WORD}tail",
                " ".join(["echo"] * 300) + " delta",
            ],
        ),
        _conversation("c-long", "", NAIVE + timedelta(minutes=3), [LONG_DOCUMENT, "w1 w2 w3"]),
        _conversation("c-empty", None, NAIVE + timedelta(hours=1), []),
    ]


CORPUS = corpus()
SEARCHABLE = [
    Searchable(
        stored.conversation,
        tokens(stored.conversation.title or ""),
        [(m.id, tokens(m.content), m.content) for m in stored.messages],
    )
    for stored in CORPUS
]

# -- the queries ----------------------------------------------------------------------

#: The search queries of the bad-input catalogue (reliability anchors, section (b)).
CATALOGUE = [
    "",
    "   ",
    "\t\n",
    '"unbalanced',
    'unbalanced"',
    '"',
    '""',
    '"""',
    "''",
    "it's",
    "don't use agents",
    "a OR",
    "python AND",
    "python NOT",
    "OR",
    "AND",
    "NOT",
    "NOT python",
    "cats NOT dogs",
    "NEAR(",
    "NEAR(a b",
    "multi-agent",
    "python -java",
    "-python",
    "*",
    "*thon",
    "title:python",
    "foo:bar",
    "http://x.com",
    "^",
    "(",
    ")",
    "()",
    "{",
    "[",
    "C++",
    "C#",
    "a.b@example.com",
    "10.0.0.1",
    "ubuntu 20.04",
    "/etc/passwd",
    "50%",
    "@nasa",
    "a=b",
    "'; DROP TABLE t; --",
    "%",
    "_",
    "\\",
    "\x00",
    "a\x00b",
    "alpha\x00zzzz",
    "\ud800",
    "x" * 10_000,
    "東京",
    "resume",
    "RÉSUMÉ",
    "strasse",
    "the",
    "python asyncio",
    "a & | b",
    "(python",
    "!",
    "!!!",
    "needle at the end",
    '"w299 needle"',
    "echo",
    '"echo echo" delta',
    LONG_WORD,
    LONG_WORD[:MAX_TOKEN_LENGTH] + "*",
    "supercal*",
    "OR " * 300 + "python",
    "python " * (MAX_TERMS + 10) + "OR cats",
    "-python -cats",
    # more distinct terms than MAX_TERMS (AND, OR, exclusions, phrases), the long document as one phrase
    " ".join(f"w{i}" for i in range(MAX_TERMS + 50)),
    " OR ".join(f"w{i}" for i in range(MAX_TERMS + 50)),
    " ".join(f"-w{i}" for i in range(MAX_TERMS - 1)) + " needle",
    " OR ".join(f'"w{i} w{i + 1}"' for i in range(300)),
    " OR ".join(f"w{i} -w{i + 1} w{i + 2}*" for i in range(0, 600, 3)),
    '"' + LONG_DOCUMENT + '"',
]
WORDS = [
    "python",
    "Python",
    "lists",
    "list*",
    "pyth*",
    "東京",
    "東",
    "天気",
    "首都",
    "한국어",
    "テスト",
    "résumé",
    "resume",
    "strasse",
    "munchen",
    "ecole",
    "abc",
    "financial",
    "12",
    "c",
    "a",
    "b",
    "d",
    "and",
    "or",
    "example",
    "com",
    "20",
    "04",
    "10",
    "etc",
    "passwd",
    "50",
    "multi",
    "agent",
    "cats",
    "dogs",
    "echo",
    "delta",
    "before",
    "after",
    "control",
    "x",
    "y",
    "the",
    "needle",
    "w1",
    "w299",
    "w7*",
    "supercal*",
    LONG_WORD,
    LONG_WORD + "tail",
    "java",
    "temp",
    "tab",
    "end",
    "quoted",
    "star",
    "nothingmatches",
]
OPERATORS = [
    "OR",
    "or",
    "AND",
    "NOT",
    "NEAR",
    "NEAR(",
    "-",
    "--",
    "*",
    "**",
    '"',
    "(",
    ")",
    "()",
    "^",
    ":",
    "{",
    "}",
    "[",
    "]",
    "+",
    "&",
    "|",
    "!",
    "!!!",
    "<->",
    "<2>",
    ":*",
    "\\",
    "'",
    "''",
    "%",
    "_",
    ";",
    ",",
    ".",
    "@",
    "#",
    "=",
]
ANY_CHARACTER = st.characters()  # every code point: lone surrogates, NUL and controls included
_decorated = st.tuples(
    st.sampled_from(["", "-", '"', '-"', "--", "*"]),
    st.sampled_from(WORDS),
    st.sampled_from(["", "*", '"', '*"', ":*"]),
).map("".join)
_piece = st.one_of(st.sampled_from(WORDS), st.sampled_from(OPERATORS), _decorated, st.text(ANY_CHARACTER, max_size=6))
_separator = st.sampled_from([" ", " ", " ", "  ", "\t", "\n", "", "\x00", "\u3000", '"'])
_soup = st.lists(st.tuples(_piece, _separator), max_size=10).map(lambda pairs: "".join(p + s for p, s in pairs))
QUERIES = st.one_of(
    st.lists(st.one_of(st.sampled_from(WORDS), _decorated), min_size=1, max_size=3).map(" ".join),  # often hits
    _soup,
    _soup,
    _soup,
    st.text(ANY_CHARACTER, max_size=40),
    st.text(st.characters(whitelist_categories=("P", "S", "Z", "Cc", "Cf", "Cs")), max_size=30),
    st.tuples(_soup, st.integers(20, 120)).map(lambda pair: " ".join([pair[0]] * pair[1])),  # past MAX_TERMS
    st.lists(
        st.tuples(st.sampled_from(["", "", "-", "OR ", '"', "*"]), st.integers(0, 320)),  # distinct terms
        min_size=MAX_TERMS - 20,
        max_size=MAX_TERMS + 40,
    ).map(lambda ts: " ".join(f"{o}w{i}" for o, i in ts)),
    st.tuples(st.sampled_from(WORDS + OPERATORS), st.integers(200, 5_000)).map(lambda pair: pair[0] * pair[1]),
    st.sampled_from(CATALOGUE),
)
PAGES = st.tuples(st.one_of(st.none(), st.integers(0, 4)), st.integers(0, 3))
METADATA = st.sampled_from([None, None, None, {"topic": "code"}, {"topic": 1}, {"topic": 1.0}, {"topic": True}])

# -- fixtures -------------------------------------------------------------------------


@pytest.fixture(scope="module", autouse=True)
def _report(request: pytest.FixtureRequest) -> Iterator[None]:
    yield
    rel_fuzz_report(
        request,
        "rel_fuzz_queries",
        COUNTS,
        {"examples_per_backend": EXAMPLES, "queries_per_example": QUERIES_PER_EXAMPLE},
    )


@pytest.fixture(params=REL_FUZZ_BACKENDS)
def corpus_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[str, ConversationStore]]:
    """(backend name, a store holding CORPUS), read through another instance than the one that wrote it."""
    opener = rel_fuzz_opener(request.param, tmp_path, request)
    writer = opener()
    try:
        for stored in CORPUS:
            writer.save(stored.conversation, stored.messages)
        reader = opener()
        yield request.param, reader
        reader.close()
    finally:
        writer.close()


# -- the tests ------------------------------------------------------------------------


def _reference(query: str, metadata: dict[str, Any] | None, **options: Any) -> list[tuple[str, str | None, str | None]]:
    hits = reference_search(SEARCHABLE, parse(query), ConversationFilter(metadata=metadata), **options)
    return [(hit.conversation.id, hit.message_id, hit.text) for hit in hits]


def test_every_query_string_finds_what_the_reference_finds(corpus_store: tuple[str, ConversationStore]) -> None:
    backend, store = corpus_store
    manager = SessionManager(store=store)

    @settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))
    @given(query=QUERIES, page=PAGES, metadata=METADATA)
    def check(query: str, page: tuple[int | None, int], metadata: dict[str, Any] | None) -> None:
        limit, offset = page
        parsed = parse(query)
        COUNTS[f"queries_{backend}"] += QUERIES_PER_EXAMPLE

        want = _reference(query, metadata, limit=limit, offset=offset, with_text=True)
        got = manager.search_conversations(query, limit=limit, offset=offset, metadata=metadata, snippets=True)
        assert [(r["id"], r["message_id"]) for r in got] == [(id, message) for id, message, _ in want], (
            f"{backend}: newest-first hits differ from the reference for {query!r}"
        )
        assert [r["snippet"] for r in got] == [snippet(text or "", parsed) for _, _, text in want], (
            f"{backend}: snippets differ (the matched document's text came back changed) for {query!r}"
        )

        want_relevant = _reference(query, metadata, order="relevance")
        hits = store.search(parsed, ConversationFilter(metadata=metadata), order="relevance")
        assert sorted((h.conversation.id, h.message_id) for h in hits) == sorted(
            (id, message) for id, message, _ in want_relevant
        ), f"{backend}: relevance hits differ from the reference for {query!r}"
        assert all(isinstance(h.score, float) for h in hits), f"{backend}: relevance hits need float scores"
        scores = [float(h.score or 0.0) for h in hits]
        assert scores == sorted(scores, reverse=True), f"{backend}: relevance order must be best score first"
        if want_relevant:
            COUNTS[f"examples_with_hits_{backend}"] += 1

    for query in CATALOGUE:
        check = example(query=query, page=(None, 0), metadata=None)(check)
    check()
    assert COUNTS[f"examples_with_hits_{backend}"] >= 0.05 * EXAMPLES, (
        "too few queries found anything: the generated queries no longer fit the corpus"
    )
    assert [store.load(s.conversation.id) for s in CORPUS] == CORPUS, "searching must not change stored data"


def test_a_query_that_is_not_a_str_is_refused_on_every_backend(corpus_store: tuple[str, ConversationStore]) -> None:
    backend, store = corpus_store
    manager = SessionManager(store=store)
    for query in [None, 123, b"python", ["python"], 1.5]:
        with pytest.raises(InvalidInputError) as caught:
            manager.search_conversations(query)  # type: ignore[arg-type]
        assert isinstance(caught.value, ValueError), f"{backend}: the error for {query!r} must also be a ValueError"
    assert [store.load(s.conversation.id) for s in CORPUS] == CORPUS


def test_the_atheris_harness_finds_no_query_fts5_compiles_wrongly(tmp_path: Path) -> None:
    """The coverage-guided harness (see fuzz_query_atheris.py) runs ATHERIS_RUNS inputs without a crash."""
    if not reliability_kit.LONG_RUN:
        pytest.skip("the atheris harness runs in the long run only (QV_SESSION_MANAGER_RELIABILITY=long)")
    if importlib.util.find_spec("atheris") is None:
        pytest.skip("atheris is not installed (pip install -e '.[fuzz]')")
    result = subprocess.run(
        [sys.executable, str(HARNESS), f"-runs={ATHERIS_RUNS}", f"-artifact_prefix={tmp_path}/"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=3600,
    )
    assert result.returncode == 0, f"the harness found a failing input:\n{result.stderr[-5000:]}"
    done = re.search(r"Done (\d+) runs", result.stderr)
    assert done is not None, f"the harness did not report its runs:\n{result.stderr[-2000:]}"
    COUNTS["atheris_runs"] = int(done.group(1))
