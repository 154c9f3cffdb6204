"""The one tokenizer every backend shares.

Text is folded character by character: compatibility decomposition (NFKD), combining
marks dropped, then ``str.casefold``. So ``Résumé`` and ``resume`` fold alike, as do
``Straße`` and ``strasse`` and full-width ``ＡＢＣ`` and ``abc``. A token is then either
one CJK character (Han, kana, Hangul: these scripts do not separate words with
spaces, so each character is indexed on its own and a query like ``東京`` becomes the
phrase ``東 京``) or a run of other letters and digits. Everything else (spaces,
punctuation, ``_``, symbols, control characters, NUL) separates tokens.

:func:`tokens` is the fast path used for indexing and queries; :func:`token_spans`
also reports where each token lies in the original text (for snippets). A property
test holds the two to the same answer.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable
from functools import lru_cache
from itertools import islice

#: Bumped whenever the rules above change: stored indexes must then be rebuilt.
TOKENIZER_VERSION = 1

_CJK_RANGES = (
    "\u1100-\u11ff"  # Hangul Jamo
    "\u3040-\u30ff"  # Hiragana, Katakana
    "\u3100-\u312f"  # Bopomofo
    "\u3130-\u318f"  # Hangul compatibility Jamo
    "\u31f0-\u31ff"  # Katakana phonetic extensions
    "\u3400-\u4dbf"  # CJK extension A
    "\u4e00-\u9fff"  # CJK unified ideographs
    "\ua960-\ua97f"  # Hangul Jamo extended A
    "\uac00-\ud7af"  # Hangul syllables
    "\uf900-\ufaff"  # CJK compatibility ideographs
    "\uff66-\uff9f"  # half-width Katakana
    "\U00020000-\U0003134f"  # CJK extensions B..G
)
_CJK_CHAR = re.compile(f"[{_CJK_RANGES}]")

#: Longer tokens are cut to this length, in texts and queries alike, so that every
#: engine can index them (PostgreSQL refuses lexemes over 2 KB).
MAX_TOKEN_LENGTH = 200

_WORD_CHAR = rf"(?![{_CJK_RANGES}])[^\W_]"
# The capture group holds a token's first MAX_TOKEN_LENGTH characters and the rest of
# the run is consumed unseen, so findall returns tokens already cut to length (the
# lookbehind keeps that tail from following a CJK character).
_TOKEN = re.compile(rf"([{_CJK_RANGES}]|(?:{_WORD_CHAR}){{1,{MAX_TOKEN_LENGTH}}})(?:(?<![{_CJK_RANGES}]){_WORD_CHAR})*")
_ASCII_TOKEN = re.compile(rf"([a-z0-9]{{1,{MAX_TOKEN_LENGTH}}})[a-z0-9]*")


@lru_cache(maxsize=65536)
def fold_char(char: str) -> str:
    """Fold one character: NFKD, drop combining marks, casefold.

    CJK characters keep their marks (``ど`` stays distinct from ``と``).
    """
    if _CJK_CHAR.match(char):
        return unicodedata.normalize("NFKC", char)
    decomposed = unicodedata.normalize("NFKD", char)
    kept = "".join(c for c in decomposed if not unicodedata.combining(c))
    return kept.casefold()


class _TranslationCache(dict[int, str]):
    """A ``str.translate`` table filled on demand, so translating runs in C.

    At most ``limit`` characters are remembered, so hostile text cannot grow it
    without bound; others are computed each time.
    """

    def __init__(self, translate: Callable[[str], str], limit: int = 65536) -> None:
        super().__init__()
        self._translate = translate
        self._limit = limit

    def __missing__(self, ordinal: int) -> str:
        result = self._translate(chr(ordinal))
        if len(self) < self._limit:
            self[ordinal] = result
        return result


def _spaced_fold_char(char: str) -> str:
    """fold_char with every CJK character set apart by spaces: one token each."""
    return "".join(f" {c} " if _CJK_CHAR.match(c) else c for c in fold_char(char))


_FOLD = _TranslationCache(fold_char)
# Characters that do not fold to exactly one character ("ß" -> "ss", combining marks -> "").
_IRREGULAR = _TranslationCache(lambda char: "" if len(fold_char(char)) == 1 else "x")
_SPACED_FOLD = _TranslationCache(_spaced_fold_char)
# Over spaced-folded text a token is a run of letters and digits, or a CJK character
# (which need not be a letter: unassigned code points of the CJK blocks count too).
_SPACED_TOKEN = re.compile(rf"([^\W_]{{1,{MAX_TOKEN_LENGTH}}}|[{_CJK_RANGES}])[^\W_]*")


def fold(text: str) -> str:
    """Fold a whole text (see the module docstring)."""
    if text.isascii():
        return text.lower()
    return text.translate(_FOLD)


def tokens(text: str) -> list[str]:
    """The tokens of ``text``, in order."""
    if text.isascii():
        return _ASCII_TOKEN.findall(text.lower())
    return _SPACED_TOKEN.findall(text.translate(_SPACED_FOLD))


def token_spans(text: str, limit: int | None = None) -> list[tuple[str, int, int]]:
    """Each token of ``text`` with the [start, end) character span it came from.

    Returns the same tokens as :func:`tokens` (only the first ``limit`` when given).
    A span covers whole original characters: folding never splits one character
    across two tokens' spans unless the character itself folds to several token
    characters.
    """
    if text.isascii():  # lower() keeps every index in place for ASCII
        found = islice(_ASCII_TOKEN.finditer(text.lower()), limit)
        return [(m.group(1), m.start(), m.end()) for m in found]
    folded = text.translate(_FOLD)
    if not text.translate(_IRREGULAR):  # every character folds to one: indexes line up
        return [(m.group(1), m.start(), m.end()) for m in islice(_TOKEN.finditer(folded), limit)]
    folded_parts: list[str] = []
    origin: list[int] = []  # origin[i] = index in text of folded character i
    for index, char in enumerate(text):
        part = fold_char(char)
        folded_parts.append(part)
        origin.extend([index] * len(part))
    folded = "".join(folded_parts)
    return [
        (match.group(1), origin[match.start()], origin[match.end() - 1] + 1)
        for match in islice(_TOKEN.finditer(folded), limit)
    ]


def _separated_fold_char(char: str) -> str:
    """_spaced_fold_char with every character that is not a token character turned into a space."""
    return "".join(c if c.isalnum() or _CJK_CHAR.match(c) else " " for c in _spaced_fold_char(char))


_SEPARATED_FOLD = _TranslationCache(_separated_fold_char)
_ASCII_OR_NOT = re.compile(r"[\x00-\x7f]+|[^\x00-\x7f]+")


def separated(text: str) -> str:
    """``text`` folded, with CJK characters set apart and every non-ASCII separator made a space.

    Its tokens are those of :func:`tokens` for an engine that splits at ASCII
    characters other than letters and digits and keeps every other character in its
    tokens (SQLite FTS5's ``ascii`` tokenizer), except that runs longer than
    :data:`MAX_TOKEN_LENGTH` are not cut. Runs of ASCII are only lower-cased, so
    mostly-ASCII text costs little more than ``str.lower``.
    """
    if text.isascii():
        return text.lower()
    return "".join(
        run.lower() if run.isascii() else run.translate(_SEPARATED_FOLD) for run in _ASCII_OR_NOT.findall(text)
    )


def index_text(text: str) -> str:
    """The text handed to an engine's own indexer: the tokens joined by spaces.

    Engines then only have to split on spaces (SQLite FTS5's ``ascii`` tokenizer
    does exactly that for this input), so every engine sees the same tokens.
    """
    return " ".join(tokens(text))
