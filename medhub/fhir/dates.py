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


def _add_months(value: datetime, months: int) -> datetime:
    total = value.year * 12 + value.month - 1 + months
    return value.replace(year=total // 12, month=total % 12 + 1)


def parse_fhir_date_range(text: str) -> tuple[datetime, datetime]:
    """The UTC range ``[low, high)`` that a FHIR date/dateTime/instant string covers.

    Raises :class:`InputError` for text that is not a FHIR date.
    """
    match = _DATE_RE.match(text.strip())
    if not match:
        raise InputError(f"{text!r} is not a FHIR date, dateTime or instant")
    parts = match.groupdict()
    try:
        year = int(parts["y"])
        if parts["m"] is None:
            low = datetime(year, 1, 1, tzinfo=UTC)
            return low, low.replace(year=year + 1)
        month = int(parts["m"])
        if parts["d"] is None:
            low = datetime(year, month, 1, tzinfo=UTC)
            return low, _add_months(low, 1)
        day = int(parts["d"])
        if parts["H"] is None:
            low = datetime(year, month, day, tzinfo=UTC)
            return low, low + timedelta(days=1)
        tz: tzinfo = UTC
        if parts["tz"] and parts["tz"] != "Z":
            sign = 1 if parts["tz"][0] == "+" else -1
            hours, minutes = parts["tz"][1:].split(":")
            tz = timezone(timedelta(hours=int(hours), minutes=int(minutes)) * sign)
        local = datetime(year, month, day, int(parts["H"]), int(parts["M"]), tzinfo=tz)
        if parts["S"] is None:
            low = local.astimezone(UTC)
            return low, low + timedelta(minutes=1)
        local = local.replace(second=int(parts["S"]))
        if parts["f"] is None:
            low = local.astimezone(UTC)
            return low, low + timedelta(seconds=1)
        digits = parts["f"]
        micros = int((digits + "000000")[:6])
        low = local.replace(microsecond=micros).astimezone(UTC)
        step = timedelta(microseconds=10 ** max(0, 6 - len(digits)))
        return low, low + step
    except ValueError as exc:
        raise InputError(f"{text!r} is not a valid date: {exc}") from exc
