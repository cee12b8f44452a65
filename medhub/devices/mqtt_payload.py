"""MQTT device payloads -> samples, status and alarms (pure: topic and bytes in, dataclasses out).

Topics (the format is documented in docs/devices.md)::

    devices/{device_id}/vitals   {"ts": ..., "samples": [{"vital", "value", "unit", ...}, ...]}
    devices/{device_id}/status   {"ts": ..., "state": "online", "battery": 87}
    devices/{device_id}/alerts   {"ts": ..., "id": ..., "code": ..., "priority": "high",
                                  "phase": "start", ...}

The parts all topics share (JSON, timestamps, message shapes, rejections)
are in :mod:`medhub.devices.payload_json`; a device's own alarms are decoded
by :mod:`medhub.devices.device_alarm_payload` (re-exported here).

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
from dataclasses import dataclass
from datetime import datetime
from typing import Final, Literal, NamedTuple

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
from medhub.devices.device_alarm_payload import AlarmPhase as AlarmPhase
from medhub.devices.device_alarm_payload import AlertPriority as AlertPriority
from medhub.devices.device_alarm_payload import DecodedAlerts as DecodedAlerts
from medhub.devices.device_alarm_payload import DeviceAlert as DeviceAlert
from medhub.devices.device_alarm_payload import decode_alerts as decode_alerts
from medhub.devices.payload_json import EARLIEST_DEVICE_TIME as EARLIEST_DEVICE_TIME
from medhub.devices.payload_json import MAX_ID_LENGTH as MAX_ID_LENGTH
from medhub.devices.payload_json import MAX_PAYLOAD_BYTES as MAX_PAYLOAD_BYTES
from medhub.devices.payload_json import MAX_TEXT_LENGTH as MAX_TEXT_LENGTH
from medhub.devices.payload_json import Reject as _Reject
from medhub.devices.payload_json import decode_entries as _decode_all
from medhub.devices.payload_json import issue_of as _issue
from medhub.devices.payload_json import load_json as _load
from medhub.devices.payload_json import parse_device_time as parse_device_time
from medhub.devices.payload_json import short_string as _short_string
from medhub.devices.payload_json import text_field as _text
from medhub.devices.samples import Sample
from medhub.errors import InputError, Issue, MessageParseError

#: At most this many samples in one message.
MAX_SAMPLES: Final = 10_000

TopicKind = Literal["vitals", "status", "alerts"]
_KINDS: Final[frozenset[str]] = frozenset({"vitals", "status", "alerts"})
_DEVICE_ID: Final = re.compile(r"[A-Za-z0-9._:@-]{1,128}\Z")


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
