"""``search``: conversations matching a query, with filters, the total count and snippets.

How it reads the store (the storage protocol only, so every backend works):

- one ``search`` without texts, unlimited, for every hit: the total count comes
  from it, and ``--model`` filters it (on the hit's conversation);
- with ``--role``, one ``load`` per hit, keeping conversations where a message of
  that role matches the query (a title match alone does not count);
- one ``load`` per hit shown that matched a message, for its snippet
  (:func:`qv_session_manager.snippet.snippet`).

``--mode semantic`` ranks by meaning instead (the vectors ``qv-sessions embed`` stored,
through :func:`qv_session_manager.meaning.meaning_search`, unlimited, so the total
count is known), ``--mode hybrid`` fuses both rankings; ``--model`` and the time and
metadata filters apply as for words. When vectors cannot be used the search is by
words, and one note on standard error says why; another says how many messages are
not embedded yet.

Queries may start with ``-`` (an exclusion): a word that starts with ``-`` and is
not one of search's own options is a query word (:class:`QueryCommand`), and
``--`` ends the options as usual. A query of exclusions alone matches nothing by
design (:mod:`qv_session_manager.query`); search says so.
"""

from __future__ import annotations

import contextlib
import logging
import re
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, cast

import click
from rich.console import RenderableType
from rich.text import Text

from ..convert import summary
from ..errors import InvalidInputError
from ..manager import SessionManager
from ..meaning import MODES, SearchMode, meaning_search
from ..protocol import ConversationFilter, SearchOrder
from ..query import Query, parse
from ..records import ROLES, SearchHit, check_metadata_filter
from ..snippet import snippet
from ..text import tokens
from ..timeutil import time_range
from .browse import first_message, meta_option
from .common import fail, open_manager, parse_meta, say
from .embed import embed_again_hint, embedder_option, open_spec, required_spec
from .formats import cell_text, columns_option, format_option, json_text, pick_format, render_rows, split_columns
from .ids import all_ids, short_ids
from .paging import emit, emit_text, pager_option, terminal_console
from .render import highlighted, list_table, plain, short_time

#: Marks the CLI asks search for; private-use characters, so they do not occur in chats.
SEARCH_MARK = ("\ue000", "\ue001")
#: Marks in machine-readable output (as the library's default).
TEXT_MARK = ("**", "**")
SEARCH_COLUMNS = ("id", "title", "model", "created", "updated", "score", "message_id", "snippet", "metadata")
SEARCH_DEFAULT = ("id", "title", "updated", "snippet")
_EXCLUSION = re.compile(r"(?:^|\s)-\S")


class QueryCommand(click.Command):
    """A command whose arguments that start with ``-`` but are none of its options are query words.

    So ``search -python`` and ``search rust -java --recent`` work; an argument equal
    to one of the options (``-c``, ``-n``, ``-h``) is still that option: write
    ``search -- -c`` for the word.
    """

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        return super().parse_args(ctx, self.words_last(ctx, args))

    def words_last(self, ctx: click.Context, args: list[str]) -> list[str]:
        """``args`` with the options first, then ``--`` and every query word in order."""
        valued: set[str] = set()
        flags: set[str] = set()
        for param in self.get_params(ctx):
            if isinstance(param, click.Option):
                names = [*param.opts, *param.secondary_opts]
                (flags if param.is_flag or param.count else valued).update(names)
        options: list[str] = []
        words: list[str] = []
        index = 0
        while index < len(args):
            arg = args[index]
            name = arg.split("=", 1)[0]
            if arg == "--":
                words.extend(args[index + 1 :])
                break
            if arg in flags or (arg.startswith("--") and name in valued and "=" in arg):
                options.append(arg)
            elif arg in valued:
                options.extend(args[index : index + 2])
                index += 1
            elif not arg.startswith("--") and arg[:2] in valued and len(arg) > 2:  # -n5
                options.append(arg)
            else:
                words.append(arg)
            index += 1
        return [*options, "--", *words] if words else options


@dataclass
class Found:
    """One hit kept after the filters, with the matched document's text once known."""

    hit: SearchHit
    message_id: str | None
    text: str | None = None


def time_filter(since: str | None, until: str | None, metadata: dict[str, Any] | None) -> ConversationFilter:
    """The filter for ``--since``/``--until`` (inclusive; a date-only ``--until`` is the whole day).

    The bounds were checked when parsed, naming their option (:mod:`.dates`).
    """
    lower, upper = time_range(since, until)
    try:
        check_metadata_filter(metadata)
    except InvalidInputError as error:
        fail(str(error))
    return ConversationFilter("updated_at", lower, upper, metadata)


def _role_match(manager: SessionManager, found: Found, query: Query, role: str) -> bool:
    stored = manager.store.load(found.hit.conversation.id)
    for message in stored.messages if stored is not None else ():
        if message.role == role and query.matches(tokens(message.content)):
            found.message_id, found.text = message.id, message.content
            return True
    return False


def _document_text(manager: SessionManager, found: Found) -> str:
    if found.text is not None:
        return found.text
    if found.message_id is None:
        return found.hit.conversation.title or ""
    stored = manager.store.load(found.hit.conversation.id)
    messages = stored.messages if stored is not None else ()
    return next((message.content for message in messages if message.id == found.message_id), "")


def find(
    manager: SessionManager,
    query: Query,
    filter: ConversationFilter,
    order: SearchOrder,
    model: str | None,
    role: str | None,
) -> list[Found]:
    """Every hit passing the filters, in the search's order (see the module docstring for the cost)."""
    hits = manager.store.search(query, filter, order=order, limit=None, with_text=False)
    kept = [Found(hit, hit.message_id) for hit in hits if model is None or hit.conversation.model_name == model]
    if role is not None:
        kept = [found for found in kept if _role_match(manager, found, query, role)]
    return kept


@contextlib.contextmanager
def _fallback_unlogged() -> Iterator[None]:
    """While searching by meaning, the library's warning about falling back is not printed:
    the command's own note says the same (and Python would print it with no handler set)."""
    logger = logging.getLogger("qv_session_manager")
    handler = logging.NullHandler()
    logger.addHandler(handler)
    try:
        yield
    finally:
        logger.removeHandler(handler)


@dataclass(frozen=True)
class ByMeaning:
    """The hits of a semantic or hybrid search, the ranking used, why it fell back, what is pending."""

    kept: list[Found]
    used: SearchMode
    fallback: str | None
    count_pending: Callable[[], int] | None


def find_by_meaning(
    manager: SessionManager,
    text: str,
    query: Query,
    filter: ConversationFilter,
    mode: SearchMode,
    model: str | None,
) -> ByMeaning:
    """Every hit of a semantic or hybrid search (best first) passing the filters, with its best message's text."""
    with _fallback_unlogged():
        hits, used, fallback, pending = meaning_search(
            manager.store, manager.embedder, text, query, filter, mode=mode, limit=None, offset=0, with_text=True
        )
    kept = [
        Found(hit, hit.message_id, hit.text) for hit in hits if model is None or hit.conversation.model_name == model
    ]
    return ByMeaning(kept, used, fallback, pending)


def _meaning_notes(ctx: click.Context, spec: str, mode: str, found: ByMeaning) -> None:
    """One note when the search fell back to words (why), one when messages have no vector yet."""
    if found.used == "text":
        say(f"note: searched by words, not by meaning ({mode} was asked): {found.fallback}")
    pending = found.count_pending() if found.count_pending is not None else 0
    if pending:
        noun = "message" if pending == 1 else "messages"
        say(f"note: {pending} {noun} not embedded yet: run {embed_again_hint(ctx, spec)}")


def hit_row(
    manager: SessionManager, found: Found, query: Query, mark: tuple[str, str], order: SearchOrder
) -> dict[str, Any]:
    """The library's hit dict (``summary`` plus score, message_id, snippet) for one hit."""
    row = summary(found.hit.conversation)
    if order == "relevance":
        row["score"] = found.hit.score
    row["message_id"] = found.message_id
    row["snippet"] = snippet(_document_text(manager, found), query, mark=mark)
    return row


def _nothing_hint(query_text: str) -> str:
    if _EXCLUSION.search(query_text):
        return (
            "the query has only exclusions (-word), which match nothing by design: "
            "add a word to look for, e.g. 'python -java'"
        )
    return "the query has no word to look for (punctuation alone matches nothing)"


def _count_line(total: int, offset: int, shown: int) -> Text:
    counted = f"{total} conversation{'s' if total != 1 else ''} match"
    return plain(f"{counted}; showing {offset + 1}-{offset + shown}" if shown and shown < total else counted, "dim")


def _table_cell(column: str, row: dict[str, Any], shorter: dict[str, str]) -> str:
    """One cell of the columns table: short ids, short times, snippets without their marks."""
    key = {"model": "model_name", "created": "created_at", "updated": "updated_at"}.get(column, column)
    value = row.get(key)
    if column == "id":
        return cell_text(shorter.get(row["id"], row["id"]))
    if column in ("created", "updated"):
        return short_time(str(value))
    if column == "snippet":
        return cell_text(str(value).replace(SEARCH_MARK[0], "").replace(SEARCH_MARK[1], ""))
    if column == "score" and isinstance(value, float):
        return f"{value:.3g}"
    return cell_text(value)


def _people_view(
    rows: list[dict[str, Any]],
    shorter: dict[str, str],
    total: int,
    offset: int,
    width: int,
    firsts: dict[str, str] | None = None,
) -> list[RenderableType]:
    """The count line, then two lines a hit (id, time, model, title; the snippet), each cut to ``width``.

    An untitled hit shows its first user message from ``firsts`` (dim, as list does), else ``(untitled)``.
    """
    parts: list[RenderableType] = [_count_line(total, offset, len(rows))]
    for row in rows:
        heading = Text.assemble(
            plain(shorter.get(row["id"], row["id"]), "bold"),
            plain(f"  {short_time(row['updated_at'])}", "dim"),
            plain(f"  {row['model_name']}" if row["model_name"] else "", "dim"),
            "  ",
            _title(row, firsts or {}),
        )
        line = Text("  ").append_text(highlighted(" ".join(row["snippet"].split()), SEARCH_MARK))
        for text in (heading, line):
            text.truncate(width, overflow="ellipsis")
            text.no_wrap = True
            parts.append(text)
    return parts


def _title(row: dict[str, Any], firsts: dict[str, str]) -> Text:
    if row["title"]:
        return plain(" ".join(row["title"].split()), "bold")
    first = firsts.get(row["id"], "")
    return plain(first, "dim") if first else plain("(untitled)", "bold")


@click.command("search", cls=QueryCommand)
@click.argument("query", nargs=-1, required=True)
@click.option("--recent", is_flag=True, help="Newest first instead of best match first.")
@click.option("-n", "--limit", type=click.IntRange(min=0), default=20, show_default=True)
@click.option("--offset", type=click.IntRange(min=0), default=0, show_default=True)
@click.option("--since", metavar="DATE", default=None, help="Updated at or after DATE (ISO date or datetime).")
@click.option(
    "--until", metavar="DATE", default=None, help="Updated at or before DATE (a date includes the whole day)."
)
@click.option("--model", metavar="NAME", default=None, help="Only conversations with this model.")
@click.option(
    "--role",
    type=click.Choice(sorted(ROLES)),
    default=None,
    help="Only where a message of this role matches (titles do not count).",
)
@click.option(
    "--mode",
    type=click.Choice(MODES),
    default="text",
    show_default=True,
    help="text: by words; semantic: by meaning (the vectors of 'qv-sessions embed'); hybrid: both rankings fused.",
)
@embedder_option
@meta_option
@columns_option(SEARCH_COLUMNS, SEARCH_DEFAULT)
@format_option
@pager_option
@click.pass_context
def search_command(
    ctx: click.Context,
    query: tuple[str, ...],
    recent: bool,
    limit: int,
    offset: int,
    since: str | None,
    until: str | None,
    model: str | None,
    role: str | None,
    mode: str,
    embedder: str | None,
    meta: tuple[str, ...],
    columns: tuple[str, ...],
    output_format: str | None,
    as_json: bool,
    no_pager: bool,
) -> None:
    """Find conversations matching QUERY: words, "phrases", prefix*, -exclusions, OR.

    The words of QUERY are joined with spaces. A word that starts with - excludes
    (search rust -java, search -- -java); a query of exclusions alone matches
    nothing. Prints how many conversations match in all, then each hit with a
    snippet of the matching text; ID columns show unique prefixes on a terminal.

    --mode semantic finds conversations by meaning (run 'qv-sessions embed' first),
    --mode hybrid ranks by words and meaning together; both need an embedder
    (--embedder SPEC, else $QV_SESSION_MANAGER_EMBEDDER) and are best first. When
    vectors cannot be used, a note on standard error says why and the search is by
    words.
    """
    query_text = " ".join(query)
    by_meaning = mode != "text"
    spec = ""
    if by_meaning:
        for given, option in ((recent, "--recent"), (role is not None, "--role")):
            if given:
                raise click.UsageError(f"{option} applies to --mode text only")
        spec = required_spec(embedder, f"search --mode {mode}")
    chosen_format = pick_format(output_format, as_json)
    chosen = split_columns(columns, SEARCH_COLUMNS, SEARCH_DEFAULT)
    filter = time_filter(since, until, parse_meta(meta))
    manager = open_manager(ctx)
    parsed = parse(query_text)
    order: SearchOrder = "recent" if recent else "relevance"
    if parsed.is_empty:
        say(f"note: {_nothing_hint(query_text)}")
        kept: list[Found] = []
    elif by_meaning:
        manager.embedder = open_spec(spec)
        meaning = find_by_meaning(manager, query_text, parsed, filter, cast(SearchMode, mode), model)
        _meaning_notes(ctx, spec, mode, meaning)
        kept = meaning.kept
    else:
        kept = find(manager, parsed, filter, order, model, role)
    mark = SEARCH_MARK if chosen_format == "table" else TEXT_MARK
    rows = [hit_row(manager, found, parsed, mark, order) for found in kept[offset : offset + limit]]
    if chosen_format == "table":
        if not kept:
            say("no matches", err=False)
            return
        shorter = short_ids(all_ids(manager), [row["id"] for row in rows]) if sys.stdout.isatty() else {}
        width = terminal_console().width
        if columns:  # the chosen columns as a table, like list's
            cells = [{column: _table_cell(column, row, shorter) for column in chosen} for row in rows]
            view: list[RenderableType] = [_count_line(len(kept), offset, len(rows))]
            emit(*view, list_table(cells, chosen, styled=sys.stdout.isatty(), width=width), page=not no_pager)
        else:
            # An untitled hit is headed by its first user message, as list shows it.
            firsts = {row["id"]: first_message(manager, row["id"])[0] for row in rows if not row["title"]}
            emit(*_people_view(rows, shorter, len(kept), offset, width, firsts), page=not no_pager)
        return
    say(f"{len(kept)} conversation{'s' if len(kept) != 1 else ''} match")
    if chosen_format == "json" and not columns:
        emit_text(json_text(rows), page=False)
        return
    for row in rows:
        row.update(model=row["model_name"], created=row["created_at"], updated=row["updated_at"])
    emit_text(render_rows(rows, chosen, chosen_format), page=not no_pager and chosen_format != "jsonl")
