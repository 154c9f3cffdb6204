"""Progress of long commands on standard error: a bar when the total is known, else a spinner.

Every helper yields None, and draws nothing, when standard error is not a terminal
(piped, redirected to a file, under CliRunner), so progress never mixes with output
a program reads. On a terminal a bar stays in its final state above the command's
summary line; a spinner goes away when the work ends. Descriptions are the CLI's own words, never
stored text.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    SpinnerColumn,
    TaskProgressColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

#: A callback setting how much is done (items, or bytes for :func:`byte_bar`).
Advance = Callable[[int], None]


def stderr_is_terminal() -> bool:
    """Whether progress may be drawn: standard error is a terminal."""
    return sys.stderr.isatty()


def _progress(*columns: ProgressColumn | str, transient: bool = False) -> Progress:
    return Progress(*columns, console=Console(stderr=True), transient=transient)


def _known(count: ProgressColumn) -> tuple[ProgressColumn | str, ...]:
    return (
        TextColumn("{task.description}"),
        BarColumn(),
        count,
        TaskProgressColumn(),
        TextColumn("ETA"),
        TimeRemainingColumn(),
    )


def _unknown() -> tuple[ProgressColumn | str, ...]:
    return (SpinnerColumn(), TextColumn("{task.description}"), TextColumn("{task.completed} done"), TimeElapsedColumn())


@contextmanager
def progress_bar(description: str, total: int | None) -> Iterator[Advance | None]:
    """A callback setting how many items are done: a bar with count, percentage and ETA
    when ``total`` is known, a spinner with the count when it is None."""
    if not stderr_is_terminal():
        yield None
        return
    columns = _known(MofNCompleteColumn()) if total is not None else _unknown()
    with _progress(*columns) as bar:
        task = bar.add_task(description, total=total)
        yield lambda done: bar.update(task, completed=done)


@contextmanager
def byte_bar(description: str, total: int | None) -> Iterator[tuple[Advance, Advance] | None]:
    """For reading a file of ``total`` bytes: callbacks ``(bytes read, items done)``.

    A bar of bytes with ETA when ``total`` is known (a file, or standard input
    redirected from one), a spinner with the item count otherwise (a pipe).
    """
    if not stderr_is_terminal():
        yield None
        return
    if total is None:
        with _progress(*_unknown()) as spinner:
            task = spinner.add_task(description, total=None)
            yield (lambda _read: None), (lambda done: spinner.update(task, completed=done))
        return
    columns = (
        TextColumn("{task.description} ({task.fields[items]} so far)"),
        *_known(DownloadColumn(binary_units=True))[1:],
    )
    with _progress(*columns) as bar:
        task = bar.add_task(description, total=max(total, 1), items=0)
        yield (lambda read: bar.update(task, completed=min(read, total))), (lambda done: bar.update(task, items=done))


@contextmanager
def spinner(description: str) -> Iterator[Callable[[str], None] | None]:
    """A spinner for work of unknown length; the callback names the step under way."""
    if not stderr_is_terminal():
        yield None
        return
    with _progress(SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn(), transient=True) as shown:
        task = shown.add_task(description, total=None)
        yield lambda step: shown.update(task, description=f"{description}: {step}")
