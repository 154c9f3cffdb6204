"""Queries in SQLite FTS5's MATCH syntax (the parsing and the rules are :mod:`qv_session_manager.query`'s)."""

from __future__ import annotations

from ...query import Query, Term


def _fts5_term(term: Term) -> str:
    # Tokens hold only letters and digits, so quoting them cannot break the syntax.
    phrase = '"' + " ".join(term.tokens) + '"'
    return phrase + " *" if term.prefix else phrase


def term_match(token: str) -> str:
    """The FTS5 MATCH form of one token; any str is safe (quotes are doubled)."""
    return '"' + token.replace('"', '""') + '"'


def to_fts5(query: Query) -> str:
    """Compile a non-empty query into SQLite FTS5 MATCH syntax over indexed tokens."""
    if query.is_empty:
        raise ValueError("an empty query has no FTS5 form; match nothing instead")
    parts = []
    for alternative in query.alternatives:
        expression = "(" + " AND ".join(map(_fts5_term, alternative.required)) + ")"
        if alternative.excluded:
            expression += " NOT (" + " OR ".join(map(_fts5_term, alternative.excluded)) + ")"
        parts.append("(" + expression + ")")
    return " OR ".join(parts)
