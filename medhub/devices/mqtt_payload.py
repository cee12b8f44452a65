"""MQTT device payloads -> samples, status and alerts (pure: topic and bytes in, dataclasses out).

Topics (the format is documented in docs/devices.md)::

    devices/{device_id}/vitals   {"ts": ..., "samples": [{"vital", "value", "unit", ...}, ...]}
    devices/{device_id}/status   {"ts": ..., "state": "online", "battery": 87}
    devices/{device_id}/alerts   {"ts": ..., "code": ..., "priority": "high", "text": ...}

Why it is shaped like this:

* **One bad sample never costs the good ones.** A vitals message is decoded
  sample by sample; a sample with an unknown vital, a wrong unit or an
  impossible value becomes an :class:`~medhub.errors.Issue` naming its JSON
  path (``samples[3].unit``) and the rest are kept. Only what makes the whole
  message unusable (not JSON, the wrong shape, no usable timestamp, too large)
  raises, as :class:`~medhub.errors.MessageParseError` or
  :class:`~medhub.errors.InputError`, so the transport can log and drop it.
* **Speed.** The ingest target is 100,000 samples/s and JSON decoding is the
  known cost, so: orjson (which also refuses ``NaN``/``Infinity`` and numbers
  that overflow a double, as JSON requires); one timestamp parse per message in
  the common case; per-vital unit tables built once; JSON paths formatted only
  for rejected samples. ``bench/device_decode.py`` measures it.
* **Timestamps are the device's** (ingest adds arrival time and clock offset).
  Accepted: an RFC 3339 string *with* a zone (``Z`` or ``±hh:mm``; ``T``, ``t``
  or a space between date and time; up to 9 fraction digits, kept to the
  microsecond), or a JSON number of epoch seconds or milliseconds: below
  10^11 it is seconds (10^11 s is the year 5138), from 10^11 to below 10^14 it is
  milliseconds (10^11 ms is March 1973), larger is refused (micro/nanoseconds
  are ambiguous). Naive times are refused: a local time without its zone is off
  by hours twice a year. Times before 2000-01-01 are refused: that is a device
  whose clock was never set (epoch 0), not a measurement.
* **Units are required**, and converted to the vital's UCUM unit only when that
  is a pure change of unit (:func:`medhub.clinical.vital_codes.unit_conversion`).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from typing import Any, Final, Literal, NamedTuple

import orjson

from medhub.clinical.vital_codes import (
    ALL_VITAL_SIGNS,
    PHYSICAL_RANGES,
    VITAL_ALIASES,
    VitalSign,
    accepted_units,
    device_vital,
    device_vital_for_mdc,
    mdc_matches,
    unit_conversion,
)
from medhub.devices.samples import Sample
from medhub.errors import InputError, Issue, MessageParseError, MissingDataError

#: A vitals message larger than this is refused before parsing (a runaway gateway).
MAX_PAYLOAD_BYTES: Final = 1 << 20
#: At most this many samples in one message.
MAX_SAMPLES: Final = 10_000
#: Longest device id, MDC code, channel, alert code.
MAX_ID_LENGTH: Final = 128
MAX_TEXT_LENGTH: Final = 1024
#: Earliest accepted device time: earlier means the clock was never set.
EARLIEST_DEVICE_TIME: Final = datetime(2000, 1, 1, tzinfo=UTC)
_EARLIEST_EPOCH: Final = EARLIEST_DEVICE_TIME.timestamp()

TopicKind = Literal["vitals", "status", "alerts"]
_KINDS: Final[frozenset[str]] = frozenset({"vitals", "status", "alerts"})
_DEVICE_ID: Final = re.compile(r"[A-Za-z0-9._:@-]{1,128}\Z")
_RFC3339_FAST: Final = re.compile(
    r"\d{4}-\d\d-\d\dT\d\d:\d\d:[0-5]\d(?:\.\d{1,6})?(?:Z|[+-]\d\d:[0-5]\d)\Z", re.ASCII
)
_RFC3339: Final = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})[Tt ](\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,9}))?([Zz]|[+-]\d{2}:\d{2})?\Z",
    re.ASCII,
)


@dataclass(frozen=True, slots=True)
class DeviceTopic:
    """What an MQTT topic names: which device, and which of its streams."""

    device_id: str
    kind: TopicKind


def parse_topic(topic: str, *, prefix: str = "devices") -> DeviceTopic:
    """Split ``devices/{device_id}/{vitals|status|alerts}``.

    Device ids are 1-128 characters of ``A-Z a-z 0-9 . _ : @ -``: they end up in
    log lines, metric labels and database keys, where anything else is trouble.
    """
    parts = topic.split("/")
    if len(parts) != 3 or parts[0] != prefix or parts[2] not in _KINDS:
        raise InputError(
            f"topic {topic[:200]!r} is not {prefix}/{{device_id}}/(vitals|status|alerts)",
            [Issue(f"unexpected topic {topic[:200]!r}", expression=("topic",))],
        )
    if not _DEVICE_ID.match(parts[1]):
        raise InputError(
            f"device id {parts[1][:200]!r} is not 1-128 of A-Z a-z 0-9 . _ : @ -",
            [Issue("bad device id in topic", expression=("topic",))],
        )
    kind: TopicKind = parts[2]  # type: ignore[assignment]
    return DeviceTopic(parts[1], kind)


class _Reject(Exception):
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
    """A device timestamp (RFC 3339 with zone, or epoch s/ms; see module docs) as aware UTC.

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


class _VitalInfo(NamedTuple):
    """What decoding a sample of one vital needs; a tuple so the hot path unpacks it at once."""

    key: str
    ucum: str
    units: dict[str, tuple[float, float]]
    low: float
    high: float
    vital: VitalSign


def _vital_infos() -> dict[str, _VitalInfo]:
    infos: dict[str, _VitalInfo] = {}
    for vital in ALL_VITAL_SIGNS:
        units: dict[str, tuple[float, float]] = {}
        for unit in accepted_units(vital.ucum):
            conversion = unit_conversion(vital.ucum, unit)
            if conversion is not None:
                units[unit] = conversion
        low, high = PHYSICAL_RANGES[vital.key]
        info = _VitalInfo(vital.key, vital.ucum, units, low, high, vital)
        infos[vital.key] = info
        for alias in VITAL_ALIASES.get(vital.key, ()):
            infos[alias] = info
    return infos


_INFOS: Final[dict[str, _VitalInfo]] = _vital_infos()


def _info_for(name: object, mdc: str | None) -> _VitalInfo:
    """The vital of a sample that is not a plain registry key or alias, or that has an MDC code."""
    if type(name) is str:
        info = _INFOS.get(name)
        if info is None:
            vital = device_vital(name)
            if vital is None:
                raise _Reject(f"unknown vital {name[:64]!r}", "vital", "code-invalid")
            info = _INFOS[vital.key]
        if mdc is not None:
            named = device_vital_for_mdc(mdc)
            if named is not None and named is not info.vital and not mdc_matches(info.vital, mdc):
                raise _Reject(f"mdc {mdc} is {named.key}, not {info.key}", "mdc", "code-invalid")
        return info
    if name is None and mdc is not None:
        vital = device_vital_for_mdc(mdc)
        if vital is None:
            raise _Reject(f"no vital given and mdc {mdc} is not a known vital", "vital", "required")
        return _INFOS[vital.key]
    if name is None:
        raise _Reject("vital is missing", "vital", "required")
    raise _Reject(f"vital must be a string, not {name!r:.64}", "vital", "structure")


def _short_string(item: dict[str, Any], key: str) -> str | None:
    value = item.get(key)
    if value is None:
        return None
    if type(value) is int:
        value = str(value)
    if type(value) is not str or not value or len(value) > MAX_ID_LENGTH:
        raise _Reject(f"{key} must be a string of 1-{MAX_ID_LENGTH} characters", key, "structure")
    return value


def _bad_value_or_unit(info: _VitalInfo, value: object, unit: object) -> _Reject:
    """Why a sample's value or unit is unusable (the slow path, off the hot loop)."""
    if value is None:
        return _Reject("value is missing", "value", "required")
    if type(value) is not int and type(value) is not float:
        return _Reject(f"value must be a number, not {value!r:.64}", "value", "structure")
    if unit is None:
        return _Reject(f"unit is missing (expected {info.ucum})", "unit", "required")
    return _Reject(
        f"unit {unit!r:.32} is not a unit of {info.key}; accepted: "
        + " ".join(accepted_units(info.ucum)),
        "unit",
        "code-invalid",
    )


def _decode_sample(item: object, device_id: str, default_time: datetime | None) -> Sample:
    """One sample object -> :class:`Sample`, or :class:`_Reject` naming the bad field.

    This is the per-sample hot path: plain dictionary lookups and type checks,
    with every error message built only once something is wrong.
    """
    if type(item) is not dict:
        raise _Reject(f"a sample must be a JSON object, not {item!r:.64}", "", "structure")
    name = item.get("vital")
    mdc = item.get("mdc")
    info = _INFOS.get(name) if type(name) is str else None
    if info is None or mdc is not None:
        mdc = _short_string(item, "mdc")
        info = _info_for(name, mdc)
    key, ucum, units, low, high, _ = info
    value = item.get("value")
    unit = item.get("unit")
    conversion = units.get(unit) if type(unit) is str else None
    if conversion is None or (type(value) is not float and type(value) is not int):
        raise _bad_value_or_unit(info, value, unit)
    factor, offset = conversion
    if factor != 1.0 or offset != 0.0:
        value = value * factor + offset
    if not low <= value <= high:
        raise _Reject(
            f"{key} {value!r} {ucum} is outside {low:g}-{high:g}: not a measurement",
            "value",
            "value",
        )
    ts = item.get("ts")
    if ts is not None:
        try:
            moment = parse_device_time(ts)
        except ValueError as exc:
            raise _Reject(str(exc), "ts", "value") from None
    elif default_time is None:
        raise _Reject("no ts on the sample nor on the message", "ts", "required")
    else:
        moment = default_time
    channel = item.get("channel")
    if channel is not None and (type(channel) is not str or not 0 < len(channel) <= MAX_ID_LENGTH):
        channel = _short_string(item, "channel")
    return Sample(device_id, key, float(value), ucum, moment, mdc, channel)


class DecodedPayload(NamedTuple):
    """The samples of one vitals message, and an Issue for each sample left out.

    A named tuple, not a dataclass: it is built once per MQTT message, and a
    frozen dataclass costs about a microsecond more to build, which is 10 % of a
    one-sample message.
    """

    samples: tuple[Sample, ...]
    rejected: tuple[Issue, ...]


class _Group(NamedTuple):
    """Entries sharing one message timestamp; ``prefix`` is their JSON path."""

    prefix: str
    items: list[Any]
    default_time: datetime | None
    single: bool = False


def _load(payload: bytes) -> Any:
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
        raise _Reject(f"{key} must be a list", f"{prefix}{key}", "structure")
    default_time = None
    if "ts" in data:
        try:
            default_time = parse_device_time(data["ts"])
        except ValueError as exc:
            raise _Reject(str(exc), f"{prefix}ts", "value") from None
    return _Group(f"{prefix}{key}", items, default_time)


def _groups(data: Any, key: str) -> tuple[list[_Group], list[Issue]]:
    """Split a payload into entry groups: an envelope, one bare entry, or a list of either."""
    if type(data) is dict:
        if key not in data:
            return [_Group("", [data], None, single=True)], []
        try:
            return [_envelope(data, key, "")], []
        except _Reject as exc:
            raise InputError(exc.message, [_issue(exc, "")]) from None
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
        except _Reject as exc:
            issues.append(_issue(exc, ""))
    return groups, issues


def _issue(exc: _Reject, path: str) -> Issue:
    where = f"{path}.{exc.field}" if path and exc.field else (path or exc.field or "$")
    return Issue(exc.message, exc.code, expression=(where,))


def _decode_all(
    data: Any,
    key: str,
    decode: Callable[[object, str, datetime | None], Any],
    device_id: str,
    limit: int,
) -> tuple[list[Any], list[Issue]]:
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
            except _Reject as exc:
                path = "" if group.single else f"{group.prefix}[{index}]"
                rejected.append(_issue(exc, path))
                missing_time += exc.field == "ts" and exc.code == "required"
    if total and missing_time == total:
        raise MissingDataError(
            "no usable timestamp: give ts on the message or on each entry",
            [Issue("no usable timestamp", "required", expression=("ts",))],
        )
    return decoded, rejected


def decode_vitals(device_id: str, payload: bytes) -> DecodedPayload:
    """Decode a ``devices/{device_id}/vitals`` payload; see the module docs for the rules.

    Raises :class:`MessageParseError` (not JSON, wrong shape) or
    :class:`InputError` (too large, message timestamp unusable) when nothing in
    the message can be used; otherwise every bad sample is an issue in
    ``rejected`` and every good one a :class:`Sample` in ``samples``.
    """
    samples, rejected = _decode_all(
        _load(payload),
        "samples",
        _decode_sample,
        device_id,
        MAX_SAMPLES,
    )
    return DecodedPayload(tuple(samples), tuple(rejected))


# --- status ------------------------------------------------------------------------------

#: Device states a status message may report (``alarm``: the device is alarming; the
#: alarm itself comes on the alerts topic).
DEVICE_STATES: Final[frozenset[str]] = frozenset(
    {"online", "offline", "standby", "alarm", "error", "maintenance"}
)


@dataclass(frozen=True, slots=True)
class DeviceStatus:
    """A device's own report of its state; ``device_time`` is None for a broker last will."""

    device_id: str
    state: str
    device_time: datetime | None
    battery_percent: float | None = None
    text: str | None = None


def decode_status(device_id: str, payload: bytes) -> DeviceStatus:
    """Decode a ``devices/{device_id}/status`` payload.

    Besides the JSON object, a bare ``online``/``offline`` (plain text or a JSON
    string) is accepted without a timestamp: that is what an MQTT last-will
    message usually is, and the broker publishes it when the device is gone, so
    there is no device clock to ask.
    """
    bare = payload.strip().strip(b'"').decode("ascii", "replace").lower()
    if bare in ("online", "offline"):
        return DeviceStatus(device_id, bare, None)
    data = _load(payload)
    if type(data) is not dict:
        raise MessageParseError(
            "a status payload must be a JSON object",
            [Issue("wrong top-level JSON type", "structure", expression=("$",))],
        )
    try:
        state = data.get("state")
        if type(state) is not str or state.lower() not in DEVICE_STATES:
            raise _Reject(
                f"state {state!r:.32} is not one of {', '.join(sorted(DEVICE_STATES))}",
                "state",
                "code-invalid",
            )
        try:
            moment = parse_device_time(data.get("ts"))
        except ValueError as exc:
            raise _Reject(str(exc), "ts", "required" if "ts" not in data else "value") from None
        battery = data.get("battery")
        if battery is not None and (type(battery) not in (int, float) or not 0 <= battery <= 100):
            raise _Reject(f"battery {battery!r:.32} is not a percentage 0-100", "battery", "value")
        text = _text(data, "text")
    except _Reject as exc:
        raise InputError(exc.message, [_issue(exc, "")]) from None
    percent = None if battery is None else float(battery)
    return DeviceStatus(device_id, state.lower(), moment, percent, text)


def _text(item: dict[str, Any], key: str) -> str | None:
    value = item.get(key)
    if value is not None and (type(value) is not str or len(value) > MAX_TEXT_LENGTH):
        raise _Reject(f"{key} must be a string of at most {MAX_TEXT_LENGTH}", key, "structure")
    return value


# --- alerts ------------------------------------------------------------------------------

#: Alarm priorities of IEC 60601-1-8 (high, medium, low) plus ``info`` for
#: information signals, which are not alarms.
AlertPriority = Literal["high", "medium", "low", "info"]
_PRIORITIES: Final[dict[str, AlertPriority]] = {
    "high": "high",
    "medium": "medium",
    "low": "low",
    "info": "info",
}


@dataclass(frozen=True, slots=True)
class DeviceAlert:
    """An alarm the device itself raised (or cleared: ``active`` False)."""

    device_id: str
    code: str
    priority: AlertPriority
    text: str
    device_time: datetime
    active: bool = True
    vital: str | None = None


class DecodedAlerts(NamedTuple):
    """The alerts of one message, and an Issue for each one left out."""

    alerts: tuple[DeviceAlert, ...]
    rejected: tuple[Issue, ...]


def _decode_alert(item: object, device_id: str, default_time: datetime | None) -> DeviceAlert:
    if type(item) is not dict:
        raise _Reject(f"an alert must be a JSON object, not {item!r:.64}", "", "structure")
    code = _short_string(item, "code")
    if code is None:
        raise _Reject("code is missing", "code", "required")
    priority = item.get("priority")
    level = _PRIORITIES.get(priority.lower()) if type(priority) is str else None
    if level is None:
        raise _Reject(
            f"priority {priority!r:.32} is not high, medium, low or info",
            "priority",
            "code-invalid",
        )
    text = _text(item, "text") or ""
    state = item.get("state", "active")
    if state not in ("active", "cleared"):
        raise _Reject(f"state {state!r:.32} is not active or cleared", "state", "code-invalid")
    vital = None
    if item.get("vital") is not None:
        named = device_vital(item["vital"]) if type(item["vital"]) is str else None
        if named is None:
            raise _Reject(f"unknown vital {item['vital']!r:.64}", "vital", "code-invalid")
        vital = named.key
    if "ts" in item:
        try:
            moment = parse_device_time(item["ts"])
        except ValueError as exc:
            raise _Reject(str(exc), "ts", "value") from None
    elif default_time is None:
        raise _Reject("no ts on the alert nor on the message", "ts", "required")
    else:
        moment = default_time
    return DeviceAlert(device_id, code, level, text, moment, state == "active", vital)


def decode_alerts(device_id: str, payload: bytes) -> DecodedAlerts:
    """Decode a ``devices/{device_id}/alerts`` payload: one alert, a list, or ``{"ts", "alerts"}``.

    Errors follow :func:`decode_vitals`: a bad alert is an issue, the others are kept.
    """
    alerts, rejected = _decode_all(
        _load(payload),
        "alerts",
        _decode_alert,
        device_id,
        MAX_SAMPLES,
    )
    return DecodedAlerts(tuple(alerts), tuple(rejected))
