"""``qv-sessions``: the command line of qv-session-manager (``pip install qv-session-manager[cli]``).

Every command works on the store named by ``--url``, else ``$QV_SESSION_MANAGER_URL``,
else SessionManager's default file. User errors (bad URL, unknown backend, missing
id, unreadable file, bad date) print one ``error: ...`` line on standard error and
exit with code 1; usage errors exit with 2.

Stored text is untrusted: every output path escapes control characters
(:mod:`qv_session_manager.safe_text`), and store URLs are shown with their password
masked (:mod:`qv_session_manager.redact`), in errors too.
"""

from __future__ import annotations

import os
import sys
from typing import Any

import click

from ..errors import SessionStoreError
from ..manager import URL_VARIABLE
from ..redact import scrub
from ..safe_text import terminal_safe
from .admin import backends_command, delete_command, prune_command, stats_command
from .browse import list_command, show_command
from .chatting import chat_command
from .common import Settings, UserError, noted_urls, say
from .copying import copy_command
from .doctor import doctor_command
from .files import export_command, import_command
from .searching import search_command

__all__ = ["main"]


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
        except (SessionStoreError, OSError) as error:
            # The library masks URLs in its errors; this also covers what a plugin let through.
            say(f"error: {scrub(describe(error), _urls(ctx))}")
            ctx.exit(1)


def _urls(ctx: click.Context) -> list[str]:
    """Every URL this invocation may quote in an error: those it opened and $QV_SESSION_MANAGER_URL."""
    return [*noted_urls(ctx), os.environ.get(URL_VARIABLE) or ""]


@click.group(cls=_Commands, context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--url", envvar=URL_VARIABLE, default=None, metavar="URL",
    help=f"The store, e.g. sqlite:///chats.db or memory:// (default: ${URL_VARIABLE}, else ./session_manager.db).",
)
@click.pass_context
def main(ctx: click.Context, url: str | None) -> None:
    """Browse, search, move and maintain qv-session-manager conversation stores."""
    ctx.obj = Settings(url=url or None)


for _command in (
    list_command, show_command, search_command, export_command, import_command, copy_command,
    delete_command, prune_command, stats_command, backends_command, doctor_command, chat_command,
):
    main.add_command(_command)
