"""The query language's loosened form (hybrid search's word ranking), as properties over random queries."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from qv_session_manager.query import Alternative, Query, Term, parse

WORDS = ["car", "battery", "start", "dead", "engine"]
lexemes = st.one_of(
    st.sampled_from(WORDS),
    st.sampled_from(WORDS).map(lambda word: "-" + word),
    st.lists(st.sampled_from(WORDS), min_size=1, max_size=2).map(lambda words: '"' + " ".join(words) + '"'),
    st.sampled_from(WORDS).map(lambda word: word[:3] + "*"),
    st.just("OR"),
)
queries = st.lists(lexemes, max_size=8).map(" ".join)
documents = st.lists(st.sampled_from(WORDS), max_size=6)


@given(queries, documents)
def test_loosening_only_adds_matches(text: str, document: list[str]) -> None:
    query = parse(text)
    if query.matches(document):
        assert query.loosened().matches(document)


@given(queries, documents)
def test_a_loosened_query_matches_any_positive_term_without_its_exclusions(text: str, document: list[str]) -> None:
    query = parse(text)
    expected = any(
        term.matches(document) and not any(excluded.matches(document) for excluded in alternative.excluded)
        for alternative in query.alternatives
        for term in alternative.required
    )
    assert query.loosened().matches(document) is expected


@given(queries)
def test_loosening_twice_changes_nothing_more(text: str) -> None:
    loosened = parse(text).loosened()
    assert loosened.loosened() == loosened
    assert loosened.is_empty is parse(text).is_empty


def test_words_become_alternatives_keeping_phrases_and_exclusions() -> None:
    car, battery, dead = (Term((word,)) for word in ("car", "battery", "dead"))
    phrase = Term(("engine", "start"))
    assert parse('car "engine start" -dead OR battery').loosened() == Query(
        (Alternative((car,), (dead,)), Alternative((phrase,), (dead,)), Alternative((battery,)))
    )
    assert parse("car").loosened() == parse("car")


@given(queries, st.sets(st.sampled_from(WORDS)))
def test_loosening_leaves_out_the_given_single_words_unless_nothing_is_left(text: str, common: set[str]) -> None:
    loosened = parse(text).loosened()
    kept = [a for a in loosened.alternatives if a.required[0].single_token not in common]
    assert parse(text).loosened(common).alternatives == (tuple(kept) or loosened.alternatives)


@given(queries)
def test_single_tokens_are_the_positive_one_word_terms(text: str) -> None:
    query = parse(text)
    expected = [t.tokens[0] for t in query.positive_terms() if len(t.tokens) == 1 and not t.prefix]
    assert query.single_tokens() == list(dict.fromkeys(expected))
    assert not set(query.single_tokens()) & {"-" + word for word in WORDS}


def test_phrases_and_prefixes_are_never_left_out() -> None:
    query = parse('car "car battery" car*')
    assert query.single_tokens() == ["car"]
    assert [a.required[0] for a in query.loosened({"car"}).alternatives] == [
        Term(("car", "battery")),
        Term(("car",), prefix=True),
    ]
