"""Snippets and term matching: what a highlighted snippet promises about the text."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from qv_session_manager.query import Term, parse
from qv_session_manager.snippet import snippet
from qv_session_manager.testing.strategies import VOCABULARY
from qv_session_manager.text import fold, tokens

MARK = ("\x02", "\x03")  # never produced by the text strategies below
words = st.sampled_from(VOCABULARY[:6])
documents = st.lists(st.one_of(words, st.sampled_from(["Résumé", "東京", "x" * 210, ",", "\n", "wörd"])), max_size=60)
texts = st.lists(
    st.one_of(words, st.sampled_from([" ", ", ", ". ", "\n", "Résumé", "東京", "naïve"])), max_size=80
).map("".join)


@given(documents.map(lambda parts: tokens(" ".join(parts))), st.lists(words, min_size=1, max_size=3), st.booleans())
def test_term_starts_are_every_place_the_term_occurs(document: list[str], term_tokens: list[str], prefix: bool) -> None:
    term = Term(tuple(tokens(" ".join(term_tokens))), prefix)
    width = len(term.tokens)

    def occurs_at(start: int) -> bool:
        window = document[start : start + width]
        if len(window) < width or window[:-1] != list(term.tokens[:-1]):
            return False
        return window[-1].startswith(term.tokens[-1]) if prefix else window[-1] == term.tokens[-1]

    assert term.starts(document) == [start for start in range(len(document)) if occurs_at(start)]
    assert term.occurrences(document) == len(term.starts(document))


@given(texts, st.lists(words, min_size=1, max_size=2).map(" ".join))
def test_a_snippet_is_a_marked_piece_of_the_text(text: str, query_text: str) -> None:
    query = parse(query_text)
    made = snippet(text, query, mark=MARK, ellipsis="")
    assert made.replace(MARK[0], "").replace(MARK[1], "") in text
    marked = [piece.split(MARK[1])[0] for piece in made.split(MARK[0])[1:]]
    wanted = [term.tokens for term in query.positive_terms()]
    for piece in marked:
        assert tuple(tokens(piece)) in wanted, f"{piece!r} is marked but is no query term"
    if any(term.matches(tokens(text)) for term in query.positive_terms()):
        assert marked, "the text contains a match, so the snippet must mark one"


def test_snippet_shows_the_first_match_with_context() -> None:
    text = " ".join(f"w{i}" for i in range(100)) + " Needle " + " ".join(f"v{i}" for i in range(100))
    made = snippet(text, parse("needle"), mark=("[", "]"))
    assert "[Needle]" in made and made.startswith("…") and made.endswith("…")
    assert "w99" in made and "v0" in made and "w0 " not in made
    assert fold(snippet("Résumé writing", parse("resume"), mark=("[", "]"))) == fold("[Résumé] writing")
