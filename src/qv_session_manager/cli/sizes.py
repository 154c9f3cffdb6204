"""Byte counts as people read them: ``210 MiB``, ``1.5 KiB``, ``512 B`` (binary units)."""

from __future__ import annotations

_UNITS = ("KiB", "MiB", "GiB", "TiB", "PiB")


def human_size(count: int) -> str:
    """``count`` bytes in the largest binary unit that keeps the number at least 1.

    Below 10 units one decimal is shown (``1.5 KiB``), from 10 on none (``210 MiB``);
    under 1024 the exact count (``512 B``).
    """
    if count < 1024:
        return f"{count} B"
    value = float(count)
    for unit in _UNITS:
        value /= 1024
        if value < 1024 or unit == _UNITS[-1]:
            return f"{value:.1f} {unit}" if value < 10 else f"{value:.0f} {unit}"
    raise AssertionError("unreachable")  # pragma: no cover
