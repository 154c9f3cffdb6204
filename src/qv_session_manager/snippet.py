"""Highlighted snippets, computed from a document's original text and a parsed query.

Backends only report which document matched; the snippet is made here, so it is
the same whichever backend found the hit.
"""

from __future__ import annotations

from .query import Query
from .text import token_spans, tokens

_CHUNK = 4096


def _chunks(text: str) -> list[tuple[int, str]]:
    """Split long text into pieces of about _CHUNK characters, cut at whitespace."""
    pieces = []
    start = 0
    while start < len(text):
        end = min(len(text), start + _CHUNK)
        if end < len(text):
            space = max(text.rfind(" ", start, end), text.rfind("\n", start, end))
            if space > start:
                end = space + 1
        pieces.append((start, text[start:end]))
        start = end
    return pieces


def snippet(
    text: str,
    query: Query,
    *,
    mark: tuple[str, str] = ("**", "**"),
    ellipsis: str = "…",
    width: int = 24,
) -> str:
    """About ``width`` tokens of ``text`` around the first match of ``query``.

    Every occurrence of a positive query term inside the window is wrapped in
    ``mark``; ``ellipsis`` shows where text was cut. When no match is found (the
    query matched another document, or a phrase straddles a chunk border) the
    start of the text is returned without marks.
    """
    terms = query.positive_terms()
    for offset, chunk in _chunks(text):
        words = tokens(chunk)
        # (first token, last token) of each occurrence
        hits = sorted((start, start + len(term.tokens) - 1) for term in terms for start in term.starts(words))
        if not hits:
            continue
        first = hits[0][0]
        window_start = max(0, first - width // 3)
        window_end = min(len(words), window_start + width)
        spans = token_spans(chunk, window_end)
        char_start = 0 if window_start == 0 and offset == 0 else spans[window_start][1]
        char_end = spans[window_end - 1][2]
        pieces = [ellipsis if offset + char_start > 0 else ""]
        cursor = char_start
        for hit_start, hit_end in hits:
            if hit_start < window_start or hit_end >= window_end:
                continue
            start_char, end_char = spans[hit_start][1], spans[hit_end][2]
            if start_char < cursor:
                continue  # overlaps an occurrence already marked
            pieces += [chunk[cursor:start_char], mark[0], chunk[start_char:end_char], mark[1]]
            cursor = end_char
        pieces.append(chunk[cursor:char_end])
        if offset + char_end < len(text):
            pieces.append(ellipsis)
        return "".join(pieces).strip()
    spans = token_spans(text[:_CHUNK], width)
    cut = spans[-1][2] if spans else min(len(text), 200)
    return text[:cut] + (ellipsis if cut < len(text) else "")
