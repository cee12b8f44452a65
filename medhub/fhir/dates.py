"""FHIR date, dateTime and instant values as the time range they cover.

FHIR R4 search.html#date: a value is an implicit range. ``2024`` covers the
whole year, ``2024-03`` the month, ``2024-03-05`` the day, and a dateTime with
seconds the second (or the fraction given). Ranges here are half-open
``[low, high)`` in UTC; values without a zone are taken as UTC.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta, timezone, tzinfo
from typing import Final

from medhub.errors import InputError

_DATE_RE: Final = re.compile(
    r"^(?P<y>\d{4})(?:-(?P<m>\d{2})(?:-(?P<d>\d{2})"
    r"(?:T(?P<H>\d{2}):(?P<M>\d{2})(?::(?P<S>\d{2})(?:\.(?P<f>\d{1,9}))?)?"
    r"(?P<tz>Z|[+-]\d{2}:\d{2})?)?)?)?$"
)


#: The ends of time as Python can hold them; ranges that run past them are clamped.
MIN_UTC = datetime.min.replace(tzinfo=UTC)
MAX_UTC = datetime.max.replace(tzinfo=UTC)


def _next(value: datetime, unit: str, amount: int = 1) -> datetime:
    """``value`` plus one year/month/day/…; ``MAX_UTC`` past the end of the calendar."""
    try:
        if unit == "year":
            return value.replace(year=value.year + 1)
        if unit == "month":
            total = value.year * 12 + value.month - 1 + amount
            return value.replace(year=total // 12, month=total % 12 + 1)
        return value + {
            "day": timedelta(days=1),
            "minute": timedelta(minutes=1),
            "second": timedelta(seconds=1),
        }.get(unit, timedelta(microseconds=amount))
    except (OverflowError, ValueError):
        return MAX_UTC


def _utc(value: datetime) -> datetime:
    try:
        return value.astimezone(UTC)
    except OverflowError:
        return MIN_UTC if value.year == 1 else MAX_UTC


def parse_fhir_date_range(text: str) -> tuple[datetime, datetime]:
    """The UTC range ``[low, high)`` that a FHIR date/dateTime/instant string covers.

    Raises :class:`InputError` for text that is not a FHIR date. Values at the
    ends of the calendar (``9999-12-31``) are clamped, never an overflow.
    """
    match = _DATE_RE.match(text.strip())
    if not match:
        raise InputError(f"{text!r} is not a FHIR date, dateTime or instant")
    parts = match.groupdict()
    try:
        year = int(parts["y"])
        if parts["m"] is None:
            low = datetime(year, 1, 1, tzinfo=UTC)
            return low, _next(low, "year")
        month = int(parts["m"])
        if parts["d"] is None:
            low = datetime(year, month, 1, tzinfo=UTC)
            return low, _next(low, "month")
        day = int(parts["d"])
        if parts["H"] is None:
            low = datetime(year, month, day, tzinfo=UTC)
            return low, _next(low, "day")
        tz: tzinfo = UTC
        if parts["tz"] and parts["tz"] != "Z":
            sign = 1 if parts["tz"][0] == "+" else -1
            hours, minutes = parts["tz"][1:].split(":")
            tz = timezone(timedelta(hours=int(hours), minutes=int(minutes)) * sign)
        local = datetime(year, month, day, int(parts["H"]), int(parts["M"]), tzinfo=tz)
        if parts["S"] is None:
            low = _utc(local)
            return low, _next(low, "minute")
        local = local.replace(second=int(parts["S"]))
        if parts["f"] is None:
            low = _utc(local)
            return low, _next(low, "second")
        digits = parts["f"]
        low = _utc(local.replace(microsecond=int((digits + "000000")[:6])))
        return low, _next(low, "micro", 10 ** max(0, 6 - len(digits)))
    except ValueError as exc:
        raise InputError(f"{text!r} is not a valid date: {exc}") from exc
