"""terminal_safe, json_safe and TerminalWriter: untrusted text cannot drive a terminal."""

from __future__ import annotations

import codecs
import io
import json
import unicodedata

import pytest
from hypothesis import given
from hypothesis import strategies as st

from qv_session_manager.safe_text import (
    UNSAFE,
    TerminalWriter,
    json_safe,
    terminal_safe,
)

BIDI = [chr(code) for code in (*range(0x202A, 0x202F), *range(0x2066, 0x206A))]
CONTROLS = [chr(code) for code in (*range(0x20), *range(0x7F, 0xA0)) if chr(code) not in "\n\t"]


def is_unsafe(character: str) -> bool:
    """The contract, written independently of the module's regular expression."""
    if character in "\n\t":
        return False
    return unicodedata.category(character) in ("Cc", "Cs") or character in BIDI


#: Text that leans on the characters that matter: controls, bidi, surrogates, backslashes.
risky_text = st.text(
    st.one_of(
        st.sampled_from([*CONTROLS, *BIDI, "\n", "\t", "\\", "\ud800", "\udfff", "[", "]", "x"]),
        st.characters(),
    )
)


@pytest.mark.parametrize(
    ("raw", "shown"),
    [
        ("\x1b[2J\x1b]0;PWNED\x07", "\\x1b[2J\\x1b]0;PWNED\\x07"),
        ("\x9b31m", "\\x9b31m"),
        ("a\u202eb", "a\\u202eb"),
        ("\u2066x\u2069", "\\u2066x\\u2069"),
        ("line\r\nnext", "line\\r\nnext"),
        ("\x00\x7f\x85", "\\x00\\x7f\\x85"),
        ("lone \ud800", "lone \\ud800"),
        ("keeps\ttabs\nand newlines", "keeps\ttabs\nand newlines"),
        ("[red]x[/red] Straße 東京 😀", "[red]x[/red] Straße 東京 😀"),
    ],
)
def test_terminal_safe_shows_controls_as_escapes(raw: str, shown: str) -> None:
    assert terminal_safe(raw) == shown


def test_every_control_and_bidi_character_is_escaped() -> None:
    for character in [*CONTROLS, *BIDI]:
        shown = terminal_safe(character)
        assert shown.startswith("\\") and len(shown) > 1 and shown.isascii() and shown.isprintable()


@given(risky_text)
def test_the_result_holds_no_unsafe_character(text: str) -> None:
    assert not any(is_unsafe(character) for character in terminal_safe(text))


@given(st.text(st.characters(blacklist_categories=("Cc", "Cs"))).filter(lambda t: not any(c in BIDI for c in t)))
def test_text_without_unsafe_characters_is_unchanged(text: str) -> None:
    assert terminal_safe(text) == text


@given(risky_text)
def test_each_character_is_escaped_on_its_own(text: str) -> None:
    # So safe text can be built piece by piece, and what is safe stays where it was.
    assert terminal_safe(text) == "".join(terminal_safe(character) for character in text)


@given(risky_text)
def test_the_escapes_are_readable_back(text: str) -> None:
    # Readable: each escape names its character, in the notation of a Python literal.
    def decode(character: str) -> str:
        return character if not is_unsafe(character) else codecs.decode(terminal_safe(character), "unicode_escape")

    assert "".join(decode(character) for character in text) == text


def test_the_pattern_matches_exactly_the_unsafe_characters() -> None:
    for code in range(0x10000):
        assert bool(UNSAFE.fullmatch(chr(code))) == is_unsafe(chr(code)), hex(code)


@given(
    st.recursive(
        st.none() | st.booleans() | st.integers() | risky_text,
        lambda inner: st.lists(inner) | st.dictionaries(risky_text, inner),
    )
)
def test_json_safe_keeps_the_value_and_leaves_no_unsafe_character(value: object) -> None:
    document = json_safe(json.dumps(value, ensure_ascii=False, indent=2))
    assert json.loads(document) == value
    assert not any(is_unsafe(character) for character in document)


def test_terminal_writer_escapes_what_passes_through_it() -> None:
    target = io.StringIO()
    writer = TerminalWriter(target)
    assert writer.write("a,\x1b]0;x\x07\r\nb\rc\n") == len("a,\x1b]0;x\x07\r\nb\rc\n")
    writer.flush()
    assert target.getvalue() == "a,\\x1b]0;x\\x07\nb\\rc\n"
