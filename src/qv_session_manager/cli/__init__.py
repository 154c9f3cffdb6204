"""``qv-sessions``: the command line of qv-session-manager (from a checkout: ``pip install -e ".[cli]"``).

Every command works on the store named by ``--url`` (before or after the command; a
bare path is an SQLite file), else ``$QV_SESSION_MANAGER_URL``, else SessionManager's
default file. Exit codes: 0 done, 1 an error (bad URL, unknown backend, missing id,
unreadable file, bad date, a check that found a problem, an embedder that cannot be
opened or reached), printed as one ``error: ...`` line on standard error that says
what to do; 2 a usage error; 130 an import or an embed stopped with Ctrl-C (its
earlier batches stay saved).

``embed`` and ``search --mode semantic|hybrid`` take the embedder from ``--embedder``,
else ``$QV_SESSION_MANAGER_EMBEDDER`` (:mod:`.embed`).

Stored text is untrusted: every output path escapes control characters
(:mod:`qv_session_manager.safe_text`), and store URLs are shown with their password
masked (:mod:`qv_session_manager.redact`), in errors too.
"""

from __future__ import annotations

import os
import sys
from typing import Any

import click

from ..errors import ReadOnlyStorageError, SessionStoreError
from ..manager import URL_VARIABLE
from ..redact import scrub
from ..safe_text import terminal_safe
from .admin import backends_command, delete_command, prune_command, stats_command
from .browse import list_command, show_command
from .chatting import chat_command
from .common import Settings, UserError, noted_urls, say
from .copying import copy_command
from .dates import add_date_checks
from .doctor import doctor_command
from .embed import EMBEDDER_VARIABLE, embed_command
from .files import export_command, import_command
from .searching import search_command
from .urls import LOCAL_URL_KEY, URL_HELP, add_url_option

__all__ = ["main"]

#: What to do about a store that cannot be written, added to its error.
READ_ONLY_FIX = "this user cannot write the store; run the command as one who can write the file and its directory"


def describe(error: BaseException) -> str:
    """One line for an error: OSError's file and reason, else the message."""
    if isinstance(error, OSError) and not isinstance(error, SessionStoreError) and error.strerror:
        where = f"{error.filename}: " if error.filename is not None else ""
        return f"{where}{error.strerror}"
    return str(error).splitlines()[0] if str(error) else type(error).__name__


def _silence_stdout() -> None:
    """Point stdout at /dev/null so that flushing it at exit cannot fail again."""
    try:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    except (OSError, ValueError):  # io.UnsupportedOperation is both: no real descriptor
        pass


class _Commands(click.Group):
    """Turns the library's errors and OSErrors into ``error: ...`` and exit code 1."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except BrokenPipeError:
            # The reader went away (``qv-sessions export - | head``): not worth a message.
            _silence_stdout()
            ctx.exit(1)
        except UserError as error:
            raise UserError(scrub(error.message, _urls(ctx))) from None
        except click.UsageError as error:
            # click quotes some arguments as typed (an unexpected extra argument, say).
            raise click.UsageError(terminal_safe(scrub(error.format_message(), _urls(ctx))), error.ctx) from None
        except ReadOnlyStorageError as error:
            say(f"error: {scrub(describe(error), _urls(ctx))}: {READ_ONLY_FIX}")
            ctx.exit(1)
        except (SessionStoreError, OSError) as error:
            # The library masks URLs in its errors; this also covers what a plugin let through.
            say(f"error: {scrub(describe(error), _urls(ctx))}")
            ctx.exit(1)


def _urls(ctx: click.Context) -> list[str]:
    """Every URL this invocation may quote in an error: those it opened, --url after the command
    and $QV_SESSION_MANAGER_URL."""
    return [*noted_urls(ctx), ctx.find_root().meta.get(LOCAL_URL_KEY) or "", os.environ.get(URL_VARIABLE) or ""]


@click.group(
    cls=_Commands,
    context_settings={"help_option_names": ["-h", "--help"]},
    epilog="Exit codes: 0 done, 1 an error (one 'error: ...' line saying what to do), 2 a usage error, "
    f"130 an import or embed stopped with Ctrl-C. ${EMBEDDER_VARIABLE} names the embedder of embed and "
    "search --mode semantic|hybrid when --embedder is not given.",
)
@click.option(
    "--url",
    envvar=URL_VARIABLE,
    default=None,
    metavar="URL",
    help=f"{URL_HELP} Default: ${URL_VARIABLE}, else ./session_manager.db.",
)
@click.version_option(package_name="qv-session-manager", prog_name="qv-sessions")
@click.pass_context
def main(ctx: click.Context, url: str | None) -> None:
    """Browse, search, move and maintain qv-session-manager conversation stores."""
    ctx.obj = Settings(url=url or None)


for _command in (
    list_command,
    show_command,
    search_command,
    embed_command,
    export_command,
    import_command,
    copy_command,
    delete_command,
    prune_command,
    stats_command,
    backends_command,
    doctor_command,
    chat_command,
):
    main.add_command(_command)
    if _command not in (copy_command, backends_command):  # copy names its own stores; backends opens none
        add_url_option(_command)
    add_date_checks(_command)
