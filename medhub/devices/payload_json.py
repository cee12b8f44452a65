"""JSON device payloads, the parts every MQTT topic shares (pure: bytes in, values out).

:mod:`medhub.devices.mqtt_payload` (vitals, status) and
:mod:`medhub.devices.device_alarm_payload` (a device's own alarms) decode their
entries with these: the size limit and JSON parsing, device timestamps, the
three shapes a message may take (one entry, a list, an envelope with a
message ``ts``), and the rejection of one entry with the JSON path of the
field at fault, so one bad entry never costs the others. The rules are
documented in ``docs/devices.md``.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone
from typing import Any, Final, NamedTuple

import orjson

from medhub.errors import InputError, Issue, MessageParseError, MissingDataError

#: A message larger than this is refused before parsing (a runaway gateway).
MAX_PAYLOAD_BYTES: Final = 1 << 20
#: At most this many entries (samples, alarms) in one message.
MAX_ENTRIES: Final = 10_000
#: Longest device id, MDC code, channel, alarm code or id.
MAX_ID_LENGTH: Final = 128
MAX_TEXT_LENGTH: Final = 1024
#: Earliest accepted device time: earlier means the clock was never set.
EARLIEST_DEVICE_TIME: Final = datetime(2000, 1, 1, tzinfo=UTC)
_EARLIEST_EPOCH: Final = EARLIEST_DEVICE_TIME.timestamp()

_RFC3339_FAST: Final = re.compile(
    r"\d{4}-\d\d-\d\dT\d\d:\d\d:[0-5]\d(?:\.\d{1,6})?(?:Z|[+-]\d\d:[0-5]\d)\Z", re.ASCII
)
_RFC3339: Final = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})[Tt ](\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,9}))?([Zz]|[+-]\d{2}:\d{2})?\Z",
    re.ASCII,
)


class Reject(Exception):
    """One entry (or one message's timestamp) is unusable; carries the Issue fields."""

    def __init__(self, message: str, field: str, code: str = "invalid") -> None:
        super().__init__(message)
        self.message, self.field, self.code = message, field, code


_OFFSETS: dict[str, timezone] = {}


def _zone(text: str) -> timezone:
    zone = _OFFSETS.get(text)
    if zone is None:
        hours, minutes = int(text[1:3]), int(text[4:6])
        if hours > 23 or minutes > 59:
            raise ValueError(f"zone offset {text} is out of range")
        delta = timedelta(hours=hours, minutes=minutes)
        zone = timezone(-delta if text[0] == "-" else delta)
        if len(_OFFSETS) < 64:
            _OFFSETS[text] = zone
    return zone


def parse_device_time(value: object) -> datetime:
    """A device timestamp (RFC 3339 with zone, or epoch s/ms; docs/devices.md) as aware UTC.

    Raises ``ValueError`` with the reason. The common shape (``T``, at most 6
    fraction digits, ``Z`` or an offset) is checked by one regular expression and
    parsed by ``datetime.fromisoformat`` (C); everything else takes the slow path,
    which is there to say exactly what is wrong.
    """
    if type(value) is str:
        if _RFC3339_FAST.match(value):
            try:
                moment = datetime.fromisoformat(value)
            except ValueError:
                raise ValueError(f"timestamp {value!r} is not a valid date and time") from None
            if moment.tzinfo is not UTC:
                moment = moment.astimezone(UTC)
        else:
            moment = _parse_rfc3339_slow(value)
    elif type(value) is int or type(value) is float:
        number = float(value)
        if not number < 1e14:  # also NaN
            raise ValueError(f"epoch {value!r} is too large for seconds or milliseconds")
        seconds = number if number < 1e11 else number / 1000.0
        if seconds < _EARLIEST_EPOCH:
            raise ValueError(f"epoch {value!r} is before 2000: device clock not set")
        return datetime.fromtimestamp(seconds, UTC)
    else:
        raise ValueError(f"timestamp must be an RFC 3339 string or epoch number, not {value!r:.64}")
    if moment < EARLIEST_DEVICE_TIME:
        raise ValueError(f"timestamp {value!r} is before 2000: device clock not set")
    return moment


def _parse_rfc3339_slow(value: str) -> datetime:
    match = _RFC3339.match(value)
    if match is None:
        raise ValueError(f"timestamp {value[:64]!r} is not RFC 3339 (2026-11-21T10:00:00Z)")
    year, month, day, hour, minute, second, fraction, zone = match.groups()
    if zone is None:
        raise ValueError(f"timestamp {value!r} has no zone (add Z or ±hh:mm)")
    if second == "60":
        raise ValueError(f"timestamp {value!r} is a leap second")
    micro = int((fraction + "00000")[:6]) if fraction else 0
    try:
        tz = UTC if zone in ("Z", "z") else _zone(zone)
        moment = datetime(
            int(year), int(month), int(day), int(hour), int(minute), int(second), micro, tz
        )
    except ValueError:
        raise ValueError(f"timestamp {value!r} is not a valid date and time") from None
    return moment.astimezone(UTC)


def short_string(item: dict[str, Any], key: str) -> str | None:
    """An optional identifier field (a number is taken as its text): 1-128 characters."""
    value = item.get(key)
    if value is None:
        return None
    if type(value) is int:
        value = str(value)
    if type(value) is not str or not value or len(value) > MAX_ID_LENGTH:
        raise Reject(f"{key} must be a string of 1-{MAX_ID_LENGTH} characters", key, "structure")
    return value


def text_field(item: dict[str, Any], key: str) -> str | None:
    """An optional free-text field of at most ``MAX_TEXT_LENGTH`` characters."""
    value = item.get(key)
    if value is not None and (type(value) is not str or len(value) > MAX_TEXT_LENGTH):
        raise Reject(f"{key} must be a string of at most {MAX_TEXT_LENGTH}", key, "structure")
    return value


class _Group(NamedTuple):
    """Entries sharing one message timestamp; ``prefix`` is their JSON path."""

    prefix: str
    items: list[Any]
    default_time: datetime | None
    single: bool = False


def load_json(payload: bytes) -> Any:
    """The parsed payload; too large or not JSON (orjson also refuses NaN) refuses it whole."""
    if len(payload) > MAX_PAYLOAD_BYTES:
        raise InputError(
            f"payload is {len(payload)} bytes, more than {MAX_PAYLOAD_BYTES}",
            [Issue("payload too large", code="too-long", expression=("$",))],
        )
    try:
        return orjson.loads(payload)
    except orjson.JSONDecodeError as exc:
        raise MessageParseError(
            f"payload is not JSON: {exc}",
            [Issue(f"not JSON: {exc}", "structure", expression=("$",))],
        ) from exc


def _envelope(data: dict[str, Any], key: str, prefix: str) -> _Group:
    items = data[key]
    if type(items) is not list:
        raise Reject(f"{key} must be a list", f"{prefix}{key}", "structure")
    default_time = None
    if "ts" in data:
        try:
            default_time = parse_device_time(data["ts"])
        except ValueError as exc:
            raise Reject(str(exc), f"{prefix}ts", "value") from None
    return _Group(f"{prefix}{key}", items, default_time)


def _groups(data: Any, key: str) -> tuple[list[_Group], list[Issue]]:
    """Split a payload into entry groups: an envelope, one bare entry, or a list of either."""
    if type(data) is dict:
        if key not in data:
            return [_Group("", [data], None, single=True)], []
        try:
            return [_envelope(data, key, "")], []
        except Reject as exc:
            raise InputError(exc.message, [issue_of(exc, "")]) from None
    if type(data) is not list:
        raise MessageParseError(
            f"payload must be a JSON object or list, not {type(data).__name__}",
            [Issue("wrong top-level JSON type", "structure", expression=("$",))],
        )
    envelopes = sum(1 for entry in data if type(entry) is dict and key in entry)
    if envelopes == 0:
        return [_Group("", data, None)], []
    if envelopes != len(data):
        raise MessageParseError(
            f"a list payload must hold only messages (with {key!r}) or only entries",
            [Issue("mixed list payload", "structure", expression=("$",))],
        )
    groups, issues = [], []
    for index, entry in enumerate(data):
        try:
            groups.append(_envelope(entry, key, f"[{index}]."))
        except Reject as exc:
            issues.append(issue_of(exc, ""))
    return groups, issues


def issue_of(exc: Reject, path: str) -> Issue:
    where = f"{path}.{exc.field}" if path and exc.field else (path or exc.field or "$")
    return Issue(exc.message, exc.code, expression=(where,))


def decode_entries(
    data: Any,
    key: str,
    decode: Callable[[object, str, datetime | None], Any],
    device_id: str,
    limit: int,
) -> tuple[list[Any], list[Issue]]:
    """Decode every entry under ``key`` with ``decode``; a :class:`Reject` costs only its entry.

    Raises when nothing in the message can be used: more than ``limit``
    entries, a bad envelope, or no entry with a usable time at all.
    """
    groups, rejected = _groups(data, key)
    total = len(groups[0].items) if len(groups) == 1 else sum(len(g.items) for g in groups)
    if total > limit:
        raise InputError(
            f"more than {limit} entries in one message",
            [Issue("too many entries", code="too-long", expression=("$",))],
        )
    decoded: list[Any] = []
    missing_time = 0
    for group in groups:
        default_time = group.default_time
        for index, item in enumerate(group.items):
            try:
                decoded.append(decode(item, device_id, default_time))
            except Reject as exc:
                path = "" if group.single else f"{group.prefix}[{index}]"
                rejected.append(issue_of(exc, path))
                missing_time += exc.field == "ts" and exc.code == "required"
    if total and missing_time == total:
        raise MissingDataError(
            "no usable timestamp: give ts on the message or on each entry",
            [Issue("no usable timestamp", "required", expression=("ts",))],
        )
    return decoded, rejected
