"""A device's own alarms on ``devices/{id}/alerts``: the format, and every way it goes wrong."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import orjson
import pytest

from medhub.devices.device_alarm_payload import DeviceAlert, decode_alerts
from medhub.errors import InputError, MessageParseError, MissingDataError

TS = "2026-11-21T10:00:00Z"
T0 = datetime(2026, 11, 21, 10, tzinfo=UTC)


def one(body: dict[str, Any]) -> DeviceAlert:
    decoded = decode_alerts("mon-1", orjson.dumps(body))
    assert decoded.rejected == (), decoded.rejected
    (alert,) = decoded.alerts
    return alert


def test_a_full_physiological_alarm() -> None:
    alert = one(
        {
            "ts": TS,
            "id": "al-1842",
            "code": "SPO2_LO",
            "mdc": "MDC_EVT_LO",
            "priority": "High",
            "phase": "start",
            "vital": "spo2",
            "channel": "probe-1",
            "value": 86,
            "limit": 90,
            "unit": "%",
            "text": "SpO2 86 < 90",
        }
    )
    assert alert == DeviceAlert(
        device_id="mon-1",
        code="SPO2_LO",
        priority="high",
        text="SpO2 86 < 90",
        device_time=T0,
        phase="start",
        vital="oxygen-saturation",
        alarm_id="al-1842",
        kind="physiological",
        mdc="MDC_EVT_LO",
        channel="probe-1",
        value=86.0,
        limit=90.0,
        unit="%",
    )
    assert alert.active and alert.identity == "al-1842"


def test_values_are_converted_to_the_vitals_unit() -> None:
    alert = one(
        {"ts": TS, "code": "T_HI", "priority": "medium", "vital": "temp", "value": 102.2,
         "limit": 100.4, "unit": "[degF]"}
    )  # fmt: skip
    assert alert.unit == "Cel" and alert.value == pytest.approx(39.0)
    assert alert.limit == pytest.approx(38.0)


def test_a_technical_alarm_without_a_vital_and_its_defaults() -> None:
    alert = one({"ts": TS, "code": 196800, "priority": "low", "phase": "end"})
    assert (alert.kind, alert.vital, alert.phase, alert.active) == (
        "technical",
        None,
        "end",
        False,
    )
    assert alert.identity == "196800"  # without an id, the code is the id
    assert (alert.value, alert.limit, alert.unit, alert.text) == (None, None, None, "")


@pytest.mark.parametrize(
    ("fields", "phase"),
    [
        ({}, "start"),
        ({"state": "active"}, "start"),
        ({"state": "cleared"}, "end"),
        ({"phase": "CONTINUE"}, "continue"),
        ({"phase": "end", "state": "cleared"}, "end"),
    ],
)
def test_phase_and_the_earlier_state_field(fields: dict[str, Any], phase: str) -> None:
    assert one({"ts": TS, "code": "X", "priority": "low", **fields}).phase == phase


LOW: dict[str, Any] = {"code": "X", "priority": "low"}
HR: dict[str, Any] = {**LOW, "vital": "hr"}
SPO2: dict[str, Any] = {**LOW, "vital": "spo2", "unit": "%"}


@pytest.mark.parametrize(
    ("fields", "where", "reason"),
    [
        ({"priority": "low"}, "code", "code is missing"),
        ({"code": "X"}, "priority", "priority is missing"),
        ({"code": "X", "priority": "urgent"}, "priority", "not one of high, medium, low, info"),
        ({"code": "", "priority": "low"}, "code", "1-128"),
        ({**LOW, "id": "x" * 129}, "id", "1-128"),
        ({**LOW, "phase": "paused"}, "phase", "not one of"),
        ({**LOW, "phase": "start", "state": "cleared"}, "state", "disagree"),
        ({**LOW, "kind": "advisory"}, "kind", "physiological, technical"),
        ({**LOW, "mdc": "HI"}, "mdc", "IEEE 11073-10101"),
        ({**LOW, "vital": "mood"}, "vital", "unknown vital"),
        ({**HR, "value": 150}, "unit", "unit is missing"),
        ({**HR, "value": 150, "unit": "%"}, "unit", "not a unit of heart-rate"),
        ({**SPO2, "value": 150}, "value", "outside 0-100"),
        ({**SPO2, "limit": -1}, "limit", "outside"),
        ({**LOW, "value": "high"}, "value", "must be a number"),
        ({**LOW, "value": True}, "value", "must be a number"),
        ({**LOW, "text": 5}, "text", "string"),
        ({**LOW, "ts": "yesterday"}, "ts", "RFC 3339"),
    ],
)
def test_a_bad_alarm_is_refused_with_its_field_and_reason(
    fields: dict[str, Any], where: str, reason: str
) -> None:
    body = {"ts": TS, "alerts": [fields, {"code": "OK", "priority": "low"}]}
    decoded = decode_alerts("mon-1", orjson.dumps(body))
    assert [a.code for a in decoded.alerts] == ["OK"]  # the good one is kept
    (issue,) = decoded.rejected
    assert issue.expression == (f"alerts[0].{where}",)
    assert reason in issue.message


def test_a_message_nothing_can_be_used_of_raises() -> None:
    with pytest.raises(MessageParseError):
        decode_alerts("mon-1", b"not json")
    with pytest.raises(MissingDataError):
        decode_alerts("mon-1", orjson.dumps({"code": "X", "priority": "low"}))
    with pytest.raises(InputError):
        decode_alerts("mon-1", orjson.dumps({"ts": "yesterday", "alerts": []}))
