"""Printing a command's output, through a pager when it would not fit the screen.

Contract of :func:`emit`: when standard output is a terminal, paging is allowed
(no ``--no-pager``) and the output has more lines than the terminal, the output goes
to the pager (``$PAGER``, else ``less``/``more``, through :func:`click.echo_via_pager`;
``less`` gets ``-R`` for colours unless ``$LESS`` says otherwise, another pager gets
the text without styles). Otherwise it is printed as it is. Piped output never pages.
The text given is already safe (rendered by rich from ``Text`` made by
:func:`~qv_session_manager.cli.render.plain`, or escaped by the caller).
"""

from __future__ import annotations

import shutil
import sys
from collections.abc import Callable
from typing import Any, TypeVar

import click
from rich.console import Console, RenderableType

__all__ = ["emit", "emit_text", "pager_option", "terminal_console"]

F = TypeVar("F", bound=Callable[..., Any])


def pager_option(command: F) -> F:
    """``--no-pager``: print everything straight to the terminal."""
    return click.option(
        "--no-pager",
        "no_pager",
        is_flag=True,
        help="Never page (by default output longer than the screen goes to $PAGER on a terminal).",
    )(command)


def terminal_console(*, styled: bool = True) -> Console:
    """A console on stdout: the terminal's size and (when ``styled``) colours there; wide and plain when piped."""
    if sys.stdout.isatty():
        return Console(highlight=False, color_system="auto" if styled else None)
    return Console(width=200, highlight=False, color_system=None)


def _screen_lines() -> int:
    return shutil.get_terminal_size().lines


def emit_text(text: str, *, page: bool) -> None:
    """Print ``text`` (already safe, may hold rich's styles), paged when ``page`` and it is longer than the screen."""
    if page and sys.stdout.isatty() and text.count("\n") >= _screen_lines():
        click.echo_via_pager(text)
        return
    click.echo(text, nl=False)


def emit(*renderables: RenderableType, page: bool, styled: bool = True) -> None:
    """Render with rich on stdout's console (without styles unless ``styled``), then print as :func:`emit_text` does."""
    console = terminal_console(styled=styled)
    with console.capture() as captured:
        for renderable in renderables:
            console.print(renderable)
    emit_text(captured.get(), page=page)
