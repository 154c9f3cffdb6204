"""``embed``: vectors for the stored messages that have none yet, and the ``--embedder`` option.

The embedder is named by a spec (``wordllama``, ``ollama:nomic-embed-text``; see
:func:`qv_session_manager.embedding.open_embedder`): ``--embedder SPEC``, else
``$QV_SESSION_MANAGER_EMBEDDER``. ``embed`` and ``search --mode semantic|hybrid``
take it; without one they stop with a usage error that names both ways to give it.

``embed`` works through :meth:`~qv_session_manager.SessionManager.index_embeddings`:
each batch is stored as soon as it is embedded, so Ctrl-C (exit code 130) keeps every
batch done, and running the command again goes on with what is still pending.
Progress is drawn on standard error only when it is a terminal (:mod:`.progress`);
the summary line and errors go to standard error as for ``import``.
"""

from __future__ import annotations

import contextlib
import shlex
from collections.abc import Callable
from typing import Any, TypeVar

import click
from click.core import ParameterSource

from ..embedding import TextEmbedder, open_embedder
from ..protocol import Capability, offers
from ..vector_records import VectorSpace
from .common import fail, open_manager, say, shown_url
from .files import INTERRUPTED
from .progress import progress_bar, stderr_is_terminal

#: The variable naming the embedder when --embedder is not given.
EMBEDDER_VARIABLE = "QV_SESSION_MANAGER_EMBEDDER"
#: How a spec looks, for help texts and errors.
SPEC_EXAMPLES = "wordllama or ollama:nomic-embed-text"
DEFAULT_BATCH_SIZE = 32
F = TypeVar("F", bound=Callable[..., Any])


def embedder_option(command: F) -> F:
    """``--embedder SPEC``, read from $QV_SESSION_MANAGER_EMBEDDER when not given."""
    return click.option(
        "--embedder",
        "embedder",
        envvar=EMBEDDER_VARIABLE,
        default=None,
        metavar="SPEC",
        help=f"The embedder, e.g. {SPEC_EXAMPLES}. Default: ${EMBEDDER_VARIABLE}.",
    )(command)


def required_spec(spec: str | None, needed_by: str) -> str:
    """The embedder spec given, else a usage error (exit code 2) naming the option and the variable."""
    if spec is None or not spec.strip():
        raise click.UsageError(
            f"{needed_by} needs an embedder: give --embedder SPEC (e.g. {SPEC_EXAMPLES}) or set ${EMBEDDER_VARIABLE}"
        )
    return spec.strip()


def open_spec(spec: str) -> TextEmbedder:
    """The embedder a spec names; its errors (unknown name, missing package) are the CLI's one-line errors."""
    return open_embedder(spec)


def embed_again_hint(ctx: click.Context, spec: str) -> str:
    """The command to run to embed what is pending: with ``--embedder`` when it was given as an option."""
    if ctx.get_parameter_source("embedder") == ParameterSource.COMMANDLINE:
        return f"qv-sessions embed --embedder {shlex.quote(spec)}"
    return "qv-sessions embed"


def _plural(count: int, noun: str) -> str:
    return f"{count} {noun}{'' if count == 1 else 's'}"


@click.command("embed")
@embedder_option
@click.option(
    "--batch-size",
    type=click.IntRange(min=1),
    default=DEFAULT_BATCH_SIZE,
    show_default=True,
    help="Messages embedded and stored at a time.",
)
@click.option(
    "--limit",
    type=click.IntRange(min=0),
    default=None,
    metavar="N",
    help="Embed at most N messages (default: every pending one).",
)
@click.pass_context
def embed_command(ctx: click.Context, embedder: str | None, batch_size: int, limit: int | None) -> None:
    """Embed the stored messages that have no vector yet, for search --mode semantic or hybrid.

    The embedder is --embedder SPEC, else $QV_SESSION_MANAGER_EMBEDDER (e.g.
    wordllama, offline, or ollama:nomic-embed-text, your Ollama server). Messages
    embedded before in the same embedder's model are skipped; a changed message is
    embedded again. Each batch is kept as soon as it is stored: Ctrl-C stops with
    exit code 130 and running the command again finishes. Prints how many messages
    were embedded, how many are still pending and the vector space
    (embedder/model/dimension) on standard error.
    """
    spec = required_spec(embedder, "embed")
    manager = open_manager(ctx)
    store = manager.store
    if not offers(store, Capability.VECTOR_STORAGE):
        fail(
            f"{shown_url(ctx)} keeps no message vectors: search by meaning needs a store that does, e.g. an SQLite file"
        )
    manager.embedder = open_spec(spec)
    # Asks Ollama for the model's dimension: a server that is down stops the command here, in one line.
    space = VectorSpace.of(manager.embedder)
    total: int | None = None
    if stderr_is_terminal():
        pending = store.embedding_counts(space)[1]
        total = pending if limit is None else min(pending, limit)
    done = [0]
    shown = progress_bar("embedding", total) if total else contextlib.nullcontext()
    with shown as advance:

        def count(embedded: int, _pending: int) -> None:
            done[0] = embedded
            if advance is not None:
                advance(embedded)

        try:
            result = manager.index_embeddings(batch_size=batch_size, limit=limit, progress=count)
        except KeyboardInterrupt:
            say(
                f"interrupted: {_plural(done[0], 'message')} embedded before, and kept; "
                f"run {embed_again_hint(ctx, spec)} again to finish"
            )
            ctx.exit(INTERRUPTED)
    say(f"embedded {_plural(result.embedded, 'message')}, {result.pending} pending, in {space.key}")
