"""A device's own alarms on ``devices/{device_id}/alerts`` (pure: bytes in, dataclasses out).

A bedside monitor or pump decides some alarms itself (an arrhythmia, an
occlusion, a lead off) with rules medhub does not have, so it sends them
rather than only the numbers. Each message is one edge of one alarm, in the
terms of IEEE 11073-10101/-10201 alert reporting as IHE PCD-04 carries it
(IHE PCD TF-2 §3.4): an ``id`` the device keeps for the alarm while it lasts,
its ``phase`` (``start``, ``continue``, ``end``), its priority (IEC 60601-1-8:
high, medium, low), physiological or technical, the vital it is about, the
value and the limit crossed. The format is documented in ``docs/devices.md``.

Rejections follow the vitals payload (:mod:`medhub.devices.mqtt_payload`):
a bad alarm is an :class:`~medhub.errors.Issue` naming its JSON path
(``alerts[1].priority``) and the others are kept; only a message nothing can
be used of raises. The earlier alarm shape (``code``, ``priority``,
``state: active|cleared``) is still accepted: ``active`` is ``start``,
``cleared`` is ``end``, and without an ``id`` the code is the alarm's id.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final, Literal, NamedTuple

from medhub.clinical.vital_codes import PHYSICAL_RANGES, accepted_units, device_vital
from medhub.clinical.vital_codes import unit_conversion as _conversion
from medhub.devices.payload_json import (
    MAX_ENTRIES,
    Reject,
    decode_entries,
    load_json,
    parse_device_time,
    short_string,
    text_field,
)
from medhub.errors import Issue

#: Alarm priorities of IEC 60601-1-8 (high, medium, low) plus ``info`` for
#: information signals, which are not alarms.
AlertPriority = Literal["high", "medium", "low", "info"]
#: IHE PCD-04 event phases (MDC_ATTR_EVENT_PHASE) a device may send.
AlarmPhase = Literal["start", "continue", "end"]
#: IEC 60601-1-8: a physiological alarm is about the patient, a technical one about the device.
AlarmKind = Literal["physiological", "technical"]

_PRIORITIES: Final[dict[str, AlertPriority]] = {
    "high": "high",
    "medium": "medium",
    "low": "low",
    "info": "info",
}
_PHASES: Final[dict[str, AlarmPhase]] = {"start": "start", "continue": "continue", "end": "end"}
#: The earlier ``state`` field: active -> start, cleared -> end.
_STATES: Final[dict[str, AlarmPhase]] = {"active": "start", "cleared": "end"}
_KINDS: Final[dict[str, AlarmKind]] = {"physiological": "physiological", "technical": "technical"}
#: An IEEE 11073-10101 code: the numeric context-free code, or its reference id.
_MDC: Final = re.compile(r"(?:\d{1,10}|MDC_[A-Z0-9_]{1,120})\Z")


@dataclass(frozen=True, slots=True)
class DeviceAlert:
    """One edge of an alarm the device raised itself.

    ``alarm_id`` is the device's id of the alarm (its ``code`` when the
    device sends none): the ``start`` and the ``end`` of one alarm carry the
    same one. ``value`` and ``limit`` are in ``unit``, which for a vital is
    its UCUM unit (converted like a sample's).
    """

    device_id: str
    code: str
    priority: AlertPriority
    text: str
    device_time: datetime
    phase: AlarmPhase = "start"
    vital: str | None = None
    alarm_id: str = ""
    kind: AlarmKind = "physiological"
    mdc: str | None = None
    channel: str | None = None
    value: float | None = None
    limit: float | None = None
    unit: str | None = None

    @property
    def active(self) -> bool:
        """Whether the alarm is going on after this edge (start or continue)."""
        return self.phase != "end"

    @property
    def identity(self) -> str:
        return self.alarm_id or self.code


class DecodedAlerts(NamedTuple):
    """The alarms of one message, and an Issue for each one left out."""

    alerts: tuple[DeviceAlert, ...]
    rejected: tuple[Issue, ...]


def _choice(item: dict[str, Any], key: str, choices: dict[str, Any]) -> Any:
    value = item.get(key)
    if value is None:
        return None
    found = choices.get(value.lower()) if type(value) is str else None
    if found is None:
        raise Reject(f"{key} {value!r:.32} is not one of {', '.join(choices)}", key, "code-invalid")
    return found


def _phase(item: dict[str, Any]) -> AlarmPhase:
    phase: AlarmPhase | None = _choice(item, "phase", _PHASES)
    state: AlarmPhase | None = _choice(item, "state", _STATES)
    if phase is not None and state is not None and (phase == "end") != (state == "end"):
        raise Reject(f"phase {phase} and state {item['state']} disagree", "state", "invalid")
    return phase or state or "start"


def _mdc(item: dict[str, Any]) -> str | None:
    mdc = short_string(item, "mdc")
    if mdc is not None and not _MDC.match(mdc):
        raise Reject(
            f"mdc {mdc[:64]!r} is not an IEEE 11073-10101 code (a number or MDC_*)",
            "mdc",
            "code-invalid",
        )
    return mdc


def _number(item: dict[str, Any], key: str) -> float | None:
    value = item.get(key)
    if value is None:
        return None
    if type(value) is not int and type(value) is not float:
        raise Reject(f"{key} must be a number, not {value!r:.64}", key, "structure")
    return float(value)


def _measured(
    item: dict[str, Any], vital: str | None
) -> tuple[float | None, float | None, str | None]:
    """``value``, ``limit`` and their unit: for a vital, converted to its UCUM unit."""
    value, limit = _number(item, "value"), _number(item, "limit")
    unit = short_string(item, "unit")
    if vital is None:
        return value, limit, unit
    named = device_vital(vital)
    assert named is not None
    if value is None and limit is None:
        return None, None, named.ucum
    if unit is None:
        raise Reject(f"unit is missing (expected {named.ucum})", "unit", "required")
    conversion = _conversion(named.ucum, unit)
    if conversion is None:
        raise Reject(
            f"unit {unit!r:.32} is not a unit of {vital}; accepted: "
            + " ".join(accepted_units(named.ucum)),
            "unit",
            "code-invalid",
        )
    factor, offset = conversion
    low, high = PHYSICAL_RANGES[vital]
    converted: list[float | None] = []
    for key, number in (("value", value), ("limit", limit)):
        if number is None:
            converted.append(None)
            continue
        number = number * factor + offset
        if not (math.isfinite(number) and low <= number <= high):
            raise Reject(
                f"{vital} {key} {number!r} {named.ucum} is outside {low:g}-{high:g}",
                key,
                "value",
            )
        converted.append(number)
    return converted[0], converted[1], named.ucum


def _vital(item: dict[str, Any]) -> str | None:
    name = item.get("vital")
    if name is None:
        return None
    named = device_vital(name) if type(name) is str else None
    if named is None:
        raise Reject(f"unknown vital {name!r:.64}", "vital", "code-invalid")
    return named.key


def _time(item: dict[str, Any], default_time: datetime | None) -> datetime:
    if "ts" in item:
        try:
            return parse_device_time(item["ts"])
        except ValueError as exc:
            raise Reject(str(exc), "ts", "value") from None
    if default_time is None:
        raise Reject("no ts on the alarm nor on the message", "ts", "required")
    return default_time


def _decode_alert(item: object, device_id: str, default_time: datetime | None) -> DeviceAlert:
    if type(item) is not dict:
        raise Reject(f"an alarm must be a JSON object, not {item!r:.64}", "", "structure")
    code = short_string(item, "code")
    if code is None:
        raise Reject("code is missing", "code", "required")
    priority: AlertPriority | None = _choice(item, "priority", _PRIORITIES)
    if priority is None:
        raise Reject("priority is missing (high, medium, low or info)", "priority", "required")
    phase = _phase(item)
    vital = _vital(item)
    kind: AlarmKind = _choice(item, "kind", _KINDS) or (
        "physiological" if vital is not None else "technical"
    )
    alarm_id = short_string(item, "id") or code
    mdc = _mdc(item)
    channel = short_string(item, "channel")
    value, limit, unit = _measured(item, vital)
    text = text_field(item, "text") or ""
    moment = _time(item, default_time)
    return DeviceAlert(
        device_id,
        code,
        priority,
        text,
        moment,
        phase,
        vital,
        alarm_id,
        kind,
        mdc,
        channel,
        value,
        limit,
        unit,
    )


def decode_alerts(device_id: str, payload: bytes) -> DecodedAlerts:
    """Decode a ``devices/{device_id}/alerts`` payload: one alarm, a list, or ``{"ts", "alerts"}``.

    Errors follow :func:`medhub.devices.mqtt_payload.decode_vitals`: a bad
    alarm is an issue, the others are kept.
    """
    alerts, rejected = decode_entries(
        load_json(payload), "alerts", _decode_alert, device_id, MAX_ENTRIES
    )
    return DecodedAlerts(tuple(alerts), tuple(rejected))
