"""The shared tokenizer: folding rules and its two code paths agreeing."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from qv_session_manager.text import _CJK_RANGES, MAX_TOKEN_LENGTH, fold, index_text, token_spans, tokens

_PLAIN_TOKEN = re.compile(rf"[{_CJK_RANGES}]|(?:(?![{_CJK_RANGES}])[^\W_])+")


def plain_tokens(text: str) -> list[str]:
    """The tokenizer rule written the slow, obvious way: find runs, then cut them."""
    return [token[:MAX_TOKEN_LENGTH] for token in _PLAIN_TOKEN.findall(fold(text))]


runs = st.lists(
    st.one_of(st.text(max_size=5), st.sampled_from(["x" * 199, "y" * 200, "z" * 201, "東" * 3, "é" * 250])),
    max_size=6,
).map("".join)


@given(st.one_of(st.text(alphabet=st.characters(blacklist_categories=("Cs",))), runs))
def test_tokens_follow_the_plain_rule(text: str) -> None:
    assert tokens(text) == plain_tokens(text)


@given(st.text(alphabet=st.characters(blacklist_categories=("Cs",))))
def test_fast_tokens_equal_spanned_tokens(text: str) -> None:
    assert tokens(text) == [token for token, _, _ in token_spans(text)]


@given(st.text(alphabet=st.characters(blacklist_categories=("Cs",))))
def test_spans_point_into_the_original_text(text: str) -> None:
    for token, start, end in token_spans(text):
        assert 0 <= start < end <= len(text)
        assert token in fold(text[start:end]), f"{token!r} does not come from {text[start:end]!r}"


@given(st.text(alphabet=st.characters(blacklist_categories=("Cs",))))
def test_index_text_retokenizes_to_itself(text: str) -> None:
    assert tokens(index_text(text)) == tokens(text)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Résumé", ["resume"]),
        ("STRASSE Straße", ["strasse", "strasse"]),
        ("ＡＢＣ１２３", ["abc123"]),
        ("e\u0301cole école", ["ecole", "ecole"]),
        ("東京の天気", ["東", "京", "の", "天", "気"]),
        ("東京abc", ["東", "京", "abc"]),
        ("どうと", ["ど", "う", "と"]),
        ("snake_case multi-agent", ["snake", "case", "multi", "agent"]),
        ("a\x00b\tc", ["a", "b", "c"]),
        ("100% C++", ["100", "c"]),
    ],
)
def test_folding_and_splitting(text: str, expected: list[str]) -> None:
    assert tokens(text) == expected


def test_long_tokens_are_cut() -> None:
    assert tokens("x" * 1000) == ["x" * MAX_TOKEN_LENGTH]
