"""Time rules shared by every backend.

Timestamps are stored exactly as given. To compare and order them, each one gets a
sort key: an aware timestamp is converted to UTC, a naive one is taken as it is,
that is, **naive timestamps are treated as UTC**. Two naive timestamps therefore
compare by wall-clock time (the usual case: qv-ollama-sdk stamps ``datetime.now()``),
and an aware bound such as ``2025-01-20T00:00+02:00`` selects naive timestamps from
``2025-01-19T22:00`` on.
"""

from __future__ import annotations

from datetime import date, datetime, time, timedelta, timezone

from .errors import InvalidInputError

TimeBound = str | date | datetime | None


def time_key(moment: datetime) -> str:
    """A fixed-width string whose order is the order of the instants (see module doc)."""
    if moment.tzinfo is not None and moment.utcoffset() is not None:
        try:
            moment = moment.astimezone(timezone.utc)
        except OverflowError:
            raise InvalidInputError(f"{moment.isoformat()} is out of range once converted to UTC") from None
    return (
        f"{moment.year:04d}-{moment.month:02d}-{moment.day:02d}T"
        f"{moment.hour:02d}:{moment.minute:02d}:{moment.second:02d}.{moment.microsecond:06d}"
    )


def _parse(value: TimeBound, what: str) -> tuple[datetime, bool] | None:
    """Return the bound as a datetime and whether it was given as a whole day."""
    if value is None or value == "":
        return None
    if isinstance(value, datetime):
        return value, False
    if isinstance(value, date):
        return datetime.combine(value, time()), True
    if not isinstance(value, str):
        raise InvalidInputError(f"{what} must be an ISO date string, a date or a datetime")
    text = value.strip()
    if text.endswith(("Z", "z")):  # Python 3.10's fromisoformat does not take 'Z'
        text = text[:-1] + "+00:00"
    try:
        return datetime.combine(date.fromisoformat(text), time()), True  # a whole day, in any ISO spelling
    except ValueError:
        pass
    try:
        return datetime.fromisoformat(text), False
    except ValueError:
        raise InvalidInputError(f"{what} {value!r} is not an ISO 8601 date or datetime") from None


def time_range(start: TimeBound, end: TimeBound) -> tuple[datetime | None, datetime | None]:
    """Turn user bounds into a half-open range [start, end).

    ``start`` is inclusive. ``end`` is inclusive too, as users mean it: a whole day
    (``"2025-01-20"`` or a ``date``) includes that entire day, a datetime includes
    that very microsecond. Raises InvalidInputError for unparsable bounds.
    """
    parsed_start = _parse(start, "start")
    parsed_end = _parse(end, "end")
    lower = parsed_start[0] if parsed_start else None
    upper = None
    if parsed_end:
        moment, whole_day = parsed_end
        step = timedelta(days=1) if whole_day else timedelta(microseconds=1)
        try:
            upper = moment + step
        except OverflowError:
            upper = None  # the end of time: no upper bound
    return lower, upper
