"""Integers in import files that Python refuses to convert.

Since Python 3.11 ``int()`` of a decimal string longer than
``sys.get_int_max_str_digits()`` (4300 by default) raises a bare ``ValueError``,
which ``json`` lets escape. The import readers decode integers through a hook that
turns that refusal into the reason of an ImportFormatError for the line, as for
any other value the format refuses.
"""

from __future__ import annotations

import sys


def too_long_integer(digits: str) -> str:
    """Why an integer literal of ``digits`` was refused, without repeating the (huge) literal."""
    return (
        f"an integer has {len(digits.lstrip('-'))} digits, more than the {sys.get_int_max_str_digits()} Python converts"
    )
