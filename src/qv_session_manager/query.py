"""The search query language, parsed once in Python and shared by every backend.

Syntax (every string is a valid query; nothing raises a syntax error):

- ``word word``: every term must match (AND).
- ``"a quoted phrase"``: the tokens must appear next to each other, in order. An
  unclosed quote runs to the end of the query.
- ``pref*``: the term's last token matches as a prefix (``pyth*`` finds ``python``).
- ``-term``: documents containing the term are excluded (``-"a phrase"`` works too).
- ``OR`` (upper case, on its own): separates alternatives. ``a b OR c`` means
  ``(a AND b) OR c``. Lower-case ``or``, ``AND``, ``NOT``, ``NEAR`` are plain words.

Terms are tokenized with :mod:`qv_session_manager.text`, so case and diacritics
never matter and punctuation separates tokens: ``multi-agent`` is the phrase
``"multi agent"``, ``C++`` is ``c``, ``%`` and ``_`` match nothing. A term with no
tokens is dropped; an alternative without any positive term is dropped (exclusion
alone would match nearly everything); a query with nothing left matches nothing.
Only the first :data:`MAX_TERMS` terms are used.

A document (a title, or one message's content) matches when one alternative
matches it; a conversation matches when any of its documents does.
"""

from __future__ import annotations

import math
import re
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from functools import lru_cache

from .errors import InvalidInputError
from .text import tokens

#: Terms beyond this many are ignored (engines limit query sizes).
MAX_TERMS = 256

_LEXEME = re.compile(r'(-?)"([^"]*)"?|(-?)([^\s"]+)')


@dataclass(frozen=True)
class Term:
    """A run of tokens that must appear consecutively; ``prefix`` loosens the last one."""

    tokens: tuple[str, ...]
    prefix: bool = False

    def starts(self, document: Sequence[str]) -> list[int]:
        """Where this term occurs in a tokenized document: the index of each first token."""
        width = len(self.tokens)
        *head, last = self.tokens
        found = []
        for end, token in enumerate(document):
            if end < width - 1:
                continue
            if token != last and not (self.prefix and token.startswith(last)):
                continue
            start = end - width + 1
            if all(document[start + i] == word for i, word in enumerate(head)):
                found.append(start)
        return found

    @property
    def single_token(self) -> str | None:
        """The term's token when it is one whole word (no phrase, no prefix), else None."""
        return self.tokens[0] if len(self.tokens) == 1 and not self.prefix else None

    def occurrences(self, document: Sequence[str]) -> int:
        """How many times this term occurs in a tokenized document."""
        return len(self.starts(document))

    def matches(self, document: Sequence[str]) -> bool:
        return bool(self.starts(document))


@dataclass(frozen=True)
class Alternative:
    """All ``required`` terms present and none of the ``excluded`` ones."""

    required: tuple[Term, ...]
    excluded: tuple[Term, ...] = ()

    def matches(self, document: Sequence[str]) -> bool:
        return all(term.matches(document) for term in self.required) and not any(
            term.matches(document) for term in self.excluded
        )


@dataclass(frozen=True)
class Query:
    """A parsed query: a document matches when any alternative matches it."""

    alternatives: tuple[Alternative, ...]

    @property
    def is_empty(self) -> bool:
        """True when the query can match nothing (empty, or only punctuation)."""
        return not self.alternatives

    def matches(self, document: Sequence[str]) -> bool:
        return any(alternative.matches(document) for alternative in self.alternatives)

    def terms(self) -> list[Term]:
        """Every distinct term, positive and excluded, in query order."""
        seen: dict[Term, None] = {}
        for alternative in self.alternatives:
            for term in (*alternative.required, *alternative.excluded):
                seen.setdefault(term)
        return list(seen)

    def loosened(self, leaving_out: Collection[str] = ()) -> Query:
        """The query with its words made alternatives: a document matches when it holds any
        positive term of an alternative and none of that alternative's exclusions.

        ``a b -c OR d`` becomes ``a -c OR b -c OR d``; phrases and prefixes stay whole
        terms. Hybrid search ranks words this way, as keyword engines rank a question:
        a whole question rarely has all its words in one message. Single-word terms
        whose token is in ``leaving_out`` are dropped, unless no term would be left.
        """
        loose = {
            Alternative((term,), alternative.excluded): None
            for alternative in self.alternatives
            for term in alternative.required
        }
        kept = tuple(alternative for alternative in loose if alternative.required[0].single_token not in leaving_out)
        return Query(kept or tuple(loose))

    def single_tokens(self) -> list[str]:
        """The token of every positive term that is one whole word (no phrase, no prefix), in query order."""
        return list(dict.fromkeys(t.single_token for t in self.positive_terms() if t.single_token is not None))

    def positive_terms(self) -> list[Term]:
        """Every distinct positive term, in query order (used for highlighting)."""
        seen: dict[Term, None] = {}
        for alternative in self.alternatives:
            for term in alternative.required:
                seen.setdefault(term)
        return list(seen)


def parse(text: str) -> Query:
    """Parse a user's query string. Never raises for any ``str``.

    Raises InvalidInputError when ``text`` is not a str.
    """
    if not isinstance(text, str):
        raise InvalidInputError(f"a search query must be a str, not {type(text).__name__}")
    return _parse(text)


@lru_cache(maxsize=64)
def _parse(text: str) -> Query:
    alternatives: list[Alternative] = []
    required: list[Term] = []
    excluded: list[Term] = []
    used = 0

    def close_alternative() -> None:
        if required:
            alternatives.append(Alternative(tuple(dict.fromkeys(required)), tuple(dict.fromkeys(excluded))))
        required.clear()
        excluded.clear()

    for match in _LEXEME.finditer(text):
        if used >= MAX_TERMS:
            break
        negated, phrase, bare_negated, bare = match.groups()
        if bare == "OR" and not bare_negated:
            close_alternative()
            continue
        if phrase is not None:
            term_tokens, prefix, negative = tokens(phrase), False, bool(negated)
        else:
            prefix = bare.endswith("*")
            term_tokens, negative = tokens(bare.rstrip("*")), bool(bare_negated)
        if not term_tokens:
            continue
        used += 1
        (excluded if negative else required).append(Term(tuple(term_tokens), prefix))
    close_alternative()
    return Query(tuple(alternatives))


def bm25(
    query: Query,
    document: Sequence[str],
    *,
    documents: int,
    average_length: float,
    document_frequency: dict[Term, int],
    k1: float = 1.2,
    b: float = 0.75,
) -> float:
    """Okapi BM25 of one document, computed the way SQLite FTS5 does (higher is better).

    Backends without a native ranking use this, so relevance order is close to,
    though not guaranteed identical with, SQLite's.

    The statistics describe the collection ``document`` belongs to (the reference
    search, :func:`qv_session_manager.rules.reference_search`, keeps titles and
    message contents as two collections, over every conversation not expired,
    whatever the filter): ``documents`` is how many documents it holds,
    ``average_length`` their mean number of tokens, and ``document_frequency`` maps
    each term of ``query.terms()`` to how many of them it matches
    (:meth:`Term.matches`). A missing term counts as matching none.
    """
    score = 0.0
    length_ratio = len(document) / average_length if average_length else 0.0
    for term in query.terms():
        frequency = term.occurrences(document)
        if not frequency:
            continue
        containing = document_frequency.get(term, 0)
        idf = math.log((documents - containing + 0.5) / (containing + 0.5))
        idf = max(idf, 1e-6)
        score += idf * frequency * (k1 + 1) / (frequency + k1 * (1 - b + b * length_ratio))
    return score
