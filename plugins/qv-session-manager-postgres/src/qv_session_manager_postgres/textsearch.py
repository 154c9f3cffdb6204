"""Search vectors and queries built from the shared tokenizer, never PostgreSQL's.

A document (a message's content, a conversation's title) is tokenized by
:func:`qv_session_manager.text.tokens` and written as a ``tsvector`` literal
(``'tok':1,4 'other':2 ...``); PostgreSQL's parser, dictionaries and stemmer are
never involved, so PostgreSQL sees exactly the tokens every other backend sees.
A parsed :class:`~qv_session_manager.query.Query` is compiled into ``tsquery``
text with the structure of :func:`~qv_session_manager.backends.sqlite.matching.to_fts5`.

PostgreSQL's limits, and what this backend does about them:

- a ``tsvector`` keeps positions up to 16383 and at most 256 positions per lexeme;
- a ``tsvector`` holds at most 1 MB of lexemes and positions.

A document within those limits gets an **exact** vector (every position), and
``tsvector @@ tsquery`` then gives exactly the reference answer. A document past
them (more than 16383 tokens, a token repeated more than 256 times, or a huge
vocabulary) gets an **inexact** vector: its distinct tokens without positions. The
search selects inexact documents with a looser query (the required tokens only)
and checks each candidate against the reference matcher in Python, so the answer
is still exact. Only when even the distinct tokens pass 1 MB (hundreds of
thousands of distinct words in one message) is the vector cut to the tokens of a
prefix of the text; a term that first appears after that prefix is not found in
that document. The text itself is always stored whole.
"""

from __future__ import annotations

from collections.abc import Sequence

from qv_session_manager.query import Query, Term
from qv_session_manager.text import tokens

#: Highest position a tsvector stores (PostgreSQL clamps larger ones).
MAX_POSITION = 16383
#: Positions PostgreSQL keeps per lexeme (it silently drops the rest).
MAX_POSITIONS_PER_LEXEME = 256
#: Bytes of lexemes and positions we allow in one tsvector (PostgreSQL: 1048575).
MAX_VECTOR_BYTES = 1_000_000


def quote(token: str) -> str:
    """A lexeme as tsvector/tsquery text. Tokens are letters and digits, but quote anyway."""
    return "'" + token.replace("\\", "\\\\").replace("'", "''") + "'"


def document_vector(text: str) -> tuple[str, bool]:
    """(tsvector literal, exact) for a document; see the module docstring."""
    return vector_of(tokens(text))


#: The positions as text, formatted once ("0" to "16383").
_NUMBERS = tuple(str(number) for number in range(MAX_POSITION + 1))


def vector_of(document: Sequence[str]) -> tuple[str, bool]:
    positions: dict[str, list[int]] = {}
    found = positions.get
    for index, token in enumerate(document, 1):
        seen = found(token)
        if seen is None:
            positions[token] = [index]
        else:
            seen.append(index)
    if len(document) <= MAX_POSITION and max(map(len, positions.values()), default=0) <= MAX_POSITIONS_PER_LEXEME:
        lexemes = "".join(positions)
        # A lexeme takes its UTF-8 bytes, a byte of padding when that is odd, 2 bytes of
        # header and 2 bytes per position. A character takes at most 4 bytes, so the bound
        # spares texts of ordinary size the exact sum.
        if (
            4 * len(lexemes) + 3 * len(positions) + 2 * len(document) <= MAX_VECTOR_BYTES
            or sum((length := len(t.encode("utf-8"))) + (length & 1) + 2 + 2 * len(p) for t, p in positions.items())
            <= MAX_VECTOR_BYTES
        ):
            numbers = _NUMBERS
            if "'" in lexemes or "\\" in lexemes:
                return " ".join([f"{quote(t)}:{','.join([numbers[i] for i in p])}" for t, p in positions.items()]), True
            return " ".join([f"'{t}':{','.join([numbers[i] for i in p])}" for t, p in positions.items()]), True
    kept, size = [], 0
    for token in positions:  # first-occurrence order: cutting keeps the tokens of a prefix
        size += len(token.encode("utf-8"))
        if size > MAX_VECTOR_BYTES:
            break
        kept.append(quote(token))
    return " ".join(kept), False


# -- queries -------------------------------------------------------------------------


def _balanced(operator: str, items: Sequence[str]) -> str:
    """``items`` joined by an associative ``operator`` as a balanced tree.

    PostgreSQL evaluates tsquery trees recursively; a left-deep chain of thousands
    of operands exceeds its stack, a balanced tree never does.
    """
    if len(items) == 1:
        return items[0]
    middle = len(items) // 2
    return f"({_balanced(operator, items[:middle])} {operator} {_balanced(operator, items[middle:])})"


def term_query(term: Term) -> str:
    """A term as tsquery: a phrase of its tokens; the last one a prefix when asked.

    ``(a <-> b) <-> (c <-> d)`` matches where ``c`` follows ``b``, so a balanced
    phrase tree means the same as the chain ``a <-> b <-> c <-> d``.
    """
    lexemes = [quote(token) for token in term.tokens]
    if term.prefix:
        lexemes[-1] += ":*"
    return _balanced("<->", lexemes)


def exact_query(query: Query) -> str | None:
    """The tsquery that answers ``query`` exactly on exact vectors (None: nothing can match).

    A term wider than :data:`MAX_POSITION` tokens cannot occur in a document with an
    exact vector: an alternative requiring one is dropped, an exclusion of one is moot.
    """
    alternatives = []
    for alternative in query.alternatives:
        if any(len(term.tokens) > MAX_POSITION for term in alternative.required):
            continue
        expression = "(" + _balanced("&", [term_query(t) for t in alternative.required]) + ")"
        excluded = [term_query(t) for t in alternative.excluded if len(t.tokens) <= MAX_POSITION]
        if excluded:
            expression += " & !(" + _balanced("|", excluded) + ")"
        alternatives.append("(" + expression + ")")
    return _balanced("|", alternatives) if alternatives else None


def candidate_query(query: Query) -> str | None:
    """A looser tsquery for inexact vectors: every document the query matches also
    matches this one (each alternative's required tokens, without order or exclusions).
    """
    alternatives = []
    for alternative in query.alternatives:
        lexemes: dict[str, None] = {}
        for term in alternative.required:
            for token in term.tokens[:-1]:
                lexemes.setdefault(quote(token))
            lexemes.setdefault(quote(term.tokens[-1]) + (":*" if term.prefix else ""))
        alternatives.append("(" + _balanced("&", list(lexemes)) + ")")
    return _balanced("|", alternatives) if alternatives else None
