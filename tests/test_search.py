"""The query language, on every backend, and that no query string ever raises."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from factories import conversation, message, minutes
from qv_session_manager.protocol import ConversationFilter
from qv_session_manager.query import parse

DOCUMENTS = {
    "lists": "Python lists are ordered, mutable collections",
    "resume": "Please update my Résumé before Friday",
    "tokyo": "東京の天気はどうですか",
    "agents": "multi-agent systems in C++ and c#",
    "percent": "a 50% discount on 10.0.0.1, mail a.b@example.com",
    "java": "python and java compared",
    "nul": "before\x00after",
}


@pytest.fixture
def filled(store):
    for index, (name, text) in enumerate(DOCUMENTS.items()):
        store.save(conversation(name, title=f"conversation {name}", updated=minutes(index)), [message(text)])
    return store


def found(store, query: str, **kw) -> list[str]:
    return [hit.conversation.id for hit in store.search(parse(query), ConversationFilter(), **kw)]


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
        ("python -java", ["lists"]),
        ('python -"and java"', ["lists"]),
        ("resume OR tokyo OR 東京", ["tokyo", "resume"]),
        ("lists OR java python", ["java", "lists"]),
        ("multi-agent", ["agents"]),
        ("c++", ["agents"]),
        ("50%", ["percent"]),
        ("a.b@example.com", ["percent"]),
        ("after", ["nul"]),
        ("conversation tokyo", ["tokyo"]),
    ],
)
def test_query_language(filled, query: str, expected: list[str]) -> None:
    assert found(filled, query) == expected, f"query {query!r}"


@pytest.mark.parametrize(
    "query",
    ["", "   ", "\t\n", '"', '""', "%", "_", "*", "-", "OR", "-python", "()", "^", ":", "+++"],
)
def test_queries_without_positive_terms_find_nothing(filled, query: str) -> None:
    assert found(filled, query) == []


HOSTILE = [
    '"unbalanced', 'unbalanced"', "it's", "a OR", "python AND", "NOT python", "NEAR(", "NEAR(a b",
    "title:python", "foo:bar", "http://x.com", "^python", "(python", "python)", "{", "[", "C#", "/etc/passwd",
    "'; DROP TABLE messages; --", "python\x00java", "\x00", "\ud800", "a\udfffb", "x" * 100_000,
    " ".join(f"w{i}" for i in range(20_000)), "AND OR NOT NEAR", '"a" "b" OR OR -', "*thon", "pyth**",
]


@pytest.mark.parametrize("query", HOSTILE, ids=range(len(HOSTILE)))
def test_hostile_queries_never_raise(filled, query: str) -> None:
    hits = found(filled, query)
    assert all(isinstance(hit, str) for hit in hits)


def test_hostile_queries_leave_the_data_intact(filled) -> None:
    before = [filled.load(name) for name in DOCUMENTS]
    for query in HOSTILE:
        found(filled, query)
    assert [filled.load(name) for name in DOCUMENTS] == before


def test_percent_and_underscore_are_plain_characters(filled) -> None:
    assert found(filled, "%") == [] and found(filled, "_") == []


def test_hits_name_their_document_and_carry_text_on_request(filled) -> None:
    [hit] = filled.search(parse("ordered"), ConversationFilter(), with_text=True)
    stored = filled.load("lists")
    assert hit.message_id == stored.messages[0].id
    assert hit.text == DOCUMENTS["lists"]
    [title_hit] = filled.search(parse("conversation lists"), ConversationFilter(), with_text=True)
    assert title_hit.message_id is None and title_hit.text == "conversation lists"


def test_first_matching_message_in_stored_order_is_the_document(store) -> None:
    store.save(conversation("c", title=None), [message("nothing", id="a"), message("needle two", id="b"),
                                               message("needle three", id="c")])
    [hit] = store.search(parse("needle"), ConversationFilter())
    assert hit.message_id == "b"


def test_relevance_order_puts_the_denser_match_first(store) -> None:
    store.save(conversation("weak", updated=minutes(5)),
               [message("needle " + " ".join(f"filler{i}" for i in range(200)))])
    store.save(conversation("strong", updated=minutes(1)), [message("needle needle needle")])
    store.save(conversation("none", updated=minutes(9)), [message("haystack")])
    hits = store.search(parse("needle"), ConversationFilter(), order="relevance")
    assert [h.conversation.id for h in hits] == ["strong", "weak"]
    assert hits[0].score > hits[1].score > 0
    assert found(store, "needle") == ["weak", "strong"], "default order is newest first"


def test_limit_and_offset_page_through_hits(filled) -> None:
    everything = found(filled, "conversation")
    assert len(everything) == len(DOCUMENTS)
    pages = [found(filled, "conversation", limit=3, offset=o) for o in range(0, 9, 3)]
    assert sum(pages, []) == everything


@given(st.text(alphabet=st.characters(blacklist_categories=()), max_size=60))
@settings(max_examples=300)
def test_any_string_is_a_valid_query(filled, query: str) -> None:
    found(filled, query)
