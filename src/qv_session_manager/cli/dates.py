"""Date options (``--since``, ``--until``): checked when parsed, so errors name the option."""

from __future__ import annotations

import click

from ..errors import InvalidInputError
from ..timeutil import time_range
from .common import fail

#: What a date option takes, for help texts and errors.
DATE_FORMS = "an ISO 8601 date or datetime such as 2025-01-31 or 2025-01-31T14:30"


def check_date(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    """A click callback: ``value`` unchanged when it parses as a time bound, else a user error naming the option."""
    if value is None:
        return None
    option = param.opts[0] if param.opts else param.name
    if not value.strip():
        fail(f"{option} needs a date: give {DATE_FORMS}")
    try:
        time_range(value, None)
    except InvalidInputError:
        fail(f"{option} {value!r} is not a date: give {DATE_FORMS}")
    return value


#: The date options :func:`add_date_checks` checks.
DATE_OPTIONS = ("since", "until")


def add_date_checks(command: click.Command) -> None:
    """Give each ``--since``/``--until`` option of ``command`` that has no callback :func:`check_date`."""
    for param in command.params:
        if isinstance(param, click.Option) and param.name in DATE_OPTIONS and param.callback is None:
            param.callback = check_date
