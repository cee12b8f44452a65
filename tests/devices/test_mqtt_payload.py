"""MQTT device payloads: what a gateway sends, and everything it gets wrong."""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from medhub.devices.mqtt_payload import (
    MAX_PAYLOAD_BYTES,
    MAX_SAMPLES,
    DeviceTopic,
    decode_alerts,
    decode_status,
    decode_vitals,
    parse_device_time,
    parse_topic,
)
from medhub.devices.samples import Sample
from medhub.errors import InputError, MessageParseError, MissingDataError

TS = "2026-11-21T10:00:00.000Z"
T0 = datetime(2026, 11, 21, 10, tzinfo=UTC)


def payload(*samples: dict[str, Any], ts: object = TS) -> bytes:
    body: dict[str, Any] = {"samples": list(samples)}
    if ts is not None:
        body["ts"] = ts
    return orjson.dumps(body)


def one(sample: dict[str, Any], ts: object = TS) -> Sample:
    decoded = decode_vitals("mon-1", payload(sample, ts=ts))
    assert decoded.rejected == (), decoded.rejected
    (result,) = decoded.samples
    return result


def rejected(sample: dict[str, Any]) -> tuple[str, str]:
    """The (path, message) of the one issue a single bad sample gets."""
    decoded = decode_vitals("mon-1", payload(sample))
    assert decoded.samples == ()
    (issue,) = decoded.rejected
    return issue.expression[0], issue.message


# --- the happy path ---------------------------------------------------------------------


def test_the_documented_example_decodes_into_samples() -> None:
    decoded = decode_vitals(
        "mon-1",
        payload(
            {"vital": "heart-rate", "value": 88, "unit": "/min"},
            {"vital": "oxygen-saturation", "value": 97, "unit": "%", "mdc": "150456"},
            {"vital": "spo2", "value": 96.5, "unit": "%", "channel": "probe-2"},
        ),
    )
    assert decoded.rejected == ()
    assert decoded.samples == (
        Sample("mon-1", "heart-rate", 88.0, "/min", T0),
        Sample("mon-1", "oxygen-saturation", 97.0, "%", T0, "150456"),
        Sample("mon-1", "oxygen-saturation", 96.5, "%", T0, None, "probe-2"),
    )
    assert all(type(s.value) is float for s in decoded.samples)


@pytest.mark.parametrize(
    ("alias", "key"),
    [
        ("hr", "heart-rate"),
        ("HR", "heart-rate"),
        ("pulse-rate", "pulse-rate"),
        ("pulse_rate", "pulse-rate"),
        ("spo2", "oxygen-saturation"),
        ("rr", "respiratory-rate"),
        ("nibp-sys", "systolic-blood-pressure"),
        ("nibp-dia", "diastolic-blood-pressure"),
        ("nibp-mean", "mean-blood-pressure"),
        ("temp", "body-temperature"),
        ("pi", "perfusion-index"),
        ("etco2", "end-tidal-co2"),
        ("spco", "carboxyhemoglobin"),
    ],
)
def test_aliases_name_the_registry_vital(alias: str, key: str) -> None:
    units = {
        "heart-rate": "/min",
        "pulse-rate": "/min",
        "respiratory-rate": "/min",
        "oxygen-saturation": "%",
        "perfusion-index": "%",
        "carboxyhemoglobin": "%",
        "body-temperature": "Cel",
    }
    sample = one({"vital": alias, "value": 10, "unit": units.get(key, "mm[Hg]")})
    assert sample.vital == key


@pytest.mark.parametrize(
    ("vital", "value", "unit", "expected", "canonical"),
    [
        ("body-temperature", 98.6, "[degF]", 37.0, "Cel"),
        ("body-temperature", 310.15, "K", 37.0, "Cel"),
        ("body-temperature", 37.0, "°C", 37.0, "Cel"),
        ("systolic-blood-pressure", 16.0, "kPa", 120.010, "mm[Hg]"),
        ("systolic-blood-pressure", 120, "mmHg", 120.0, "mm[Hg]"),
        ("heart-rate", 72, "bpm", 72.0, "/min"),
        ("heart-rate", 72, "{beats}/min", 72.0, "/min"),
        ("heart-rate", 1.2, "/s", 72.0, "/min"),
        ("oxygen-saturation", 97, "{%}", 97.0, "%"),
        ("end-tidal-co2", 5.0, "kPa", 37.503, "mm[Hg]"),
    ],
)
def test_equivalent_units_are_converted_to_the_canonical_ucum_unit(
    vital: str, value: float, unit: str, expected: float, canonical: str
) -> None:
    sample = one({"vital": vital, "value": value, "unit": unit})
    assert sample.unit == canonical
    assert sample.value == pytest.approx(expected, abs=1e-3)


def test_a_vital_can_be_named_by_its_mdc_code_alone() -> None:
    sample = one({"mdc": 149530, "value": 71, "unit": "/min"})
    assert (sample.vital, sample.mdc_code) == ("pulse-rate", "149530")
    assert one({"mdc": "MDC_PULS_OXIM_SAT_O2", "value": 95, "unit": "%"}).vital == (
        "oxygen-saturation"
    )


def test_the_hl7_pairing_of_heart_rate_and_oximeter_pulse_code_is_still_accepted() -> None:
    assert one({"vital": "hr", "value": 71, "unit": "/min", "mdc": "149530"}).vital == "heart-rate"


def test_per_sample_timestamps_override_the_message_one() -> None:
    sample = one({"vital": "hr", "value": 60, "unit": "/min", "ts": "2026-11-21T11:00:00+01:00"})
    assert sample.device_time == T0


def test_a_list_of_samples_each_with_its_own_time() -> None:
    body = [
        {"vital": "hr", "value": 60, "unit": "/min", "ts": 1795255200},
        {"vital": "hr", "value": 61, "unit": "/min", "ts": 1795255201000},
    ]
    decoded = decode_vitals("mon-1", orjson.dumps(body))
    assert [s.device_time for s in decoded.samples] == [
        datetime.fromtimestamp(1795255200, UTC),
        datetime.fromtimestamp(1795255201, UTC),
    ]


def test_a_list_of_messages_is_a_batch_and_a_bad_one_costs_only_itself() -> None:
    body = [
        {"ts": TS, "samples": [{"vital": "hr", "value": 60, "unit": "/min"}]},
        {"ts": "yesterday", "samples": [{"vital": "hr", "value": 61, "unit": "/min"}]},
        {"ts": TS, "samples": [{"vital": "rr", "value": 14, "unit": "/min"}]},
    ]
    decoded = decode_vitals("mon-1", orjson.dumps(body))
    assert [s.value for s in decoded.samples] == [60.0, 14.0]
    assert [i.expression for i in decoded.rejected] == [("[1].ts",)]


def test_a_single_sample_object_is_a_message() -> None:
    body = {"ts": TS, "vital": "hr", "value": 60, "unit": "/min"}
    (sample,) = decode_vitals("mon-1", orjson.dumps(body)).samples
    assert sample.device_time == T0


def test_an_empty_sample_list_is_a_valid_heartbeat() -> None:
    assert decode_vitals("mon-1", payload()) == ((), ())


# --- bad samples: each is reported and the rest are kept --------------------------------


def test_one_bad_sample_does_not_drop_the_good_ones() -> None:
    decoded = decode_vitals(
        "mon-1",
        payload(
            {"vital": "hr", "value": 88, "unit": "/min"},
            {"vital": "glucose", "value": 5.5, "unit": "mmol/L"},
            {"vital": "spo2", "value": "97", "unit": "%"},
            {"vital": "spo2", "value": 97, "unit": "%"},
        ),
    )
    assert [s.vital for s in decoded.samples] == ["heart-rate", "oxygen-saturation"]
    assert [(i.expression, i.code) for i in decoded.rejected] == [
        (("samples[1].vital",), "code-invalid"),
        (("samples[2].value",), "structure"),
    ]
    assert "glucose" in decoded.rejected[0].message


@pytest.mark.parametrize(
    ("sample", "where", "says"),
    [
        ({"value": 88, "unit": "/min"}, "samples[0].vital", "missing"),
        ({"vital": 7, "value": 88, "unit": "/min"}, "samples[0].vital", "string"),
        ({"vital": ["hr"], "value": 88, "unit": "/min"}, "samples[0].vital", "string"),
        ({"vital": "hr", "unit": "/min"}, "samples[0].value", "missing"),
        ({"vital": "hr", "value": True, "unit": "/min"}, "samples[0].value", "number"),
        ({"vital": "hr", "value": None, "unit": "/min"}, "samples[0].value", "missing"),
        ({"vital": "hr", "value": [88], "unit": "/min"}, "samples[0].value", "number"),
        ({"vital": "hr", "value": 88}, "samples[0].unit", "missing"),
        ({"vital": "hr", "value": 88, "unit": "mg"}, "samples[0].unit", "not a unit"),
        ({"vital": "spo2", "value": 0.97, "unit": "1"}, "samples[0].unit", "not a unit"),
        ({"vital": "etco2", "value": 5, "unit": "%"}, "samples[0].unit", "not a unit"),
        ({"vital": "temp", "value": 37, "unit": "C"}, "samples[0].unit", "not a unit"),
        ({"vital": "spo2", "value": 101, "unit": "%"}, "samples[0].value", "outside"),
        ({"vital": "hr", "value": -1, "unit": "/min"}, "samples[0].value", "outside"),
        ({"vital": "hr", "value": 1e300, "unit": "/s"}, "samples[0].value", "outside"),
        ({"vital": "temp", "value": 212, "unit": "[degF]"}, "samples[0].value", "outside"),
        ({"vital": "hr", "value": 1, "unit": "/min", "mdc": "150456"}, "samples[0].mdc", "is"),
        ({"vital": "hr", "value": 1, "unit": "/min", "mdc": ""}, "samples[0].mdc", "string"),
        ({"vital": "hr", "value": 1, "unit": "/min", "mdc": True}, "samples[0].mdc", "string"),
        ({"mdc": "999999", "value": 1, "unit": "/min"}, "samples[0].vital", "not a known"),
        ({"vital": "hr", "value": 1, "unit": "/min", "channel": "x" * 200}, "", "string"),
        ({"vital": "hr", "value": 1, "unit": "/min", "channel": {}}, "", "string"),
        ({"vital": "hr", "value": 1, "unit": "/min", "ts": "2026-11-21T10:00:00"}, "", "zone"),
        ({"vital": "hr", "value": 1, "unit": "/min", "ts": "21/11/2026"}, "", "RFC 3339"),
        ({"vital": "hr", "value": 1, "unit": "/min", "ts": 0}, "", "clock not set"),
        ({"vital": "hr", "value": 1, "unit": "/min", "ts": 1e18}, "", "too large"),
        ({"vital": "hr", "value": 1, "unit": "/min", "ts": False}, "", "epoch"),
    ],
)
def test_bad_samples_are_rejected_with_where_and_why(
    sample: dict[str, Any], where: str, says: str
) -> None:
    path, message = rejected(sample)
    assert path.startswith(where or "samples[0].")
    assert says in message


def test_a_sample_that_is_not_an_object_is_rejected_in_place() -> None:
    decoded = decode_vitals("mon-1", payload({"vital": "hr", "value": 1, "unit": "/min"}, 42))  # type: ignore[arg-type]
    assert len(decoded.samples) == 1
    assert decoded.rejected[0].expression == ("samples[1]",)


def test_a_sample_without_any_time_is_rejected_when_others_have_one() -> None:
    body = [
        {"vital": "hr", "value": 60, "unit": "/min", "ts": TS},
        {"vital": "hr", "value": 61, "unit": "/min"},
    ]
    decoded = decode_vitals("mon-1", orjson.dumps(body))
    assert len(decoded.samples) == 1
    assert decoded.rejected[0].expression == ("[1].ts",)


# --- bad messages: rejected whole, with the reason -------------------------------------


@pytest.mark.parametrize(
    "raw",
    [
        b"",
        b"not json",
        b'{"ts": "2026-11-21T10:00:00Z", "samples": [',
        b'{"ts": 1, "samples": [{"value": NaN}]}',
        b'{"samples": [{"vital": "hr", "value": Infinity, "unit": "/min"}]}',
        b'{"samples": [{"vital": "hr", "value": 1e400, "unit": "/min"}]}',
        b"\xff\xfe\x00garbage",
        b'{"samples": [{"vital": "\xff"}]}',
    ],
)
def test_what_is_not_json_is_a_parse_error(raw: bytes) -> None:
    with pytest.raises(MessageParseError):
        decode_vitals("mon-1", raw)


@pytest.mark.parametrize("raw", [b"42", b'"hr"', b"null", b"true"])
def test_a_json_scalar_is_the_wrong_shape(raw: bytes) -> None:
    with pytest.raises(MessageParseError, match="object or list"):
        decode_vitals("mon-1", raw)


def test_samples_must_be_a_list() -> None:
    with pytest.raises(InputError) as caught:
        decode_vitals("mon-1", orjson.dumps({"ts": TS, "samples": {"vital": "hr"}}))
    assert caught.value.issues[0].expression == ("samples",)


def test_a_message_timestamp_that_cannot_be_used_rejects_the_message() -> None:
    for ts in ("2026-11-21 10:00", "2026-13-01T00:00:00Z", "2026-11-21T10:00:00", -5, "now"):
        with pytest.raises(InputError) as caught:
            decode_vitals("mon-1", payload({"vital": "hr", "value": 1, "unit": "/min"}, ts=ts))
        assert caught.value.issues[0].expression == ("ts",)


def test_no_timestamp_anywhere_rejects_the_message() -> None:
    with pytest.raises(MissingDataError, match="timestamp"):
        decode_vitals("mon-1", payload({"vital": "hr", "value": 1, "unit": "/min"}, ts=None))


def test_a_mixed_list_is_refused() -> None:
    body = [{"ts": TS, "samples": []}, {"vital": "hr", "value": 1, "unit": "/min", "ts": TS}]
    with pytest.raises(MessageParseError, match="only"):
        decode_vitals("mon-1", orjson.dumps(body))


def test_huge_payloads_are_refused_before_parsing() -> None:
    big = b'{"samples": [' + b" " * MAX_PAYLOAD_BYTES + b"]}"
    with pytest.raises(InputError) as caught:
        decode_vitals("mon-1", big)
    assert caught.value.issues[0].code == "too-long"


def test_too_many_samples_are_refused() -> None:
    sample = {"vital": "hr", "value": 1, "unit": "/min"}
    with pytest.raises(InputError, match="more than"):
        decode_vitals("mon-1", payload(*[sample] * (MAX_SAMPLES + 1)))


# --- timestamps ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("2026-11-21T10:00:00Z", T0),
        ("2026-11-21T10:00:00.5Z", T0 + timedelta(milliseconds=500)),
        ("2026-11-21t10:00:00z", T0),
        ("2026-11-21 10:00:00Z", T0),
        ("2026-11-21T12:30:00+02:30", T0),
        ("2026-11-21T05:00:00-05:00", T0),
        ("2026-11-21T10:00:00.123456789Z", T0 + timedelta(microseconds=123456)),
        (1795255200, datetime.fromtimestamp(1795255200, UTC)),
        (1795255200.25, datetime.fromtimestamp(1795255200.25, UTC)),
        (1795255200250, datetime.fromtimestamp(1795255200.25, UTC)),
    ],
)
def test_device_times_accepted(value: object, expected: datetime) -> None:
    moment = parse_device_time(value)
    assert moment == expected
    assert moment.tzinfo is UTC


@pytest.mark.parametrize(
    "value",
    [
        "2026-11-21T10:00:00",
        "2026-11-21T10:00:60Z",
        "2026-11-31T10:00:00Z",
        "2026-11-21T25:00:00Z",
        "2026-11-21T10:00:00+25:00",
        "20261121T100000Z",
        "2026-W47-6T10:00:00Z",
        "2026-11-21",
        "２０２６-11-21T10:00:00Z",
        "1999-12-31T23:59:59Z",
        "",
        None,
        [],
        True,
        math.nan,
        math.inf,
        -1,
        10**15,
    ],
)
def test_device_times_refused(value: object) -> None:
    with pytest.raises(ValueError):
        parse_device_time(value)


@settings(deadline=None)
@given(st.datetimes(min_value=datetime(2000, 1, 2), max_value=datetime(2200, 1, 1)))
def test_rfc3339_round_trip(moment: datetime) -> None:
    aware = moment.replace(tzinfo=timezone(timedelta(hours=-3, minutes=-30)))
    assert parse_device_time(aware.isoformat()) == aware


@settings(deadline=None)
@given(st.binary(max_size=300))
def test_random_bytes_never_escape_the_error_tree(raw: bytes) -> None:
    try:
        decoded = decode_vitals("mon-1", raw)
    except InputError:
        return
    assert len(decoded.samples) + len(decoded.rejected) >= 0


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=4)
    ),
    max_leaves=12,
)


@settings(deadline=None)
@given(
    st.lists(
        st.fixed_dictionaries(
            {},
            optional={
                "vital": st.sampled_from(["hr", "spo2", "temp", "nope"]) | json_values,
                "value": st.floats(allow_nan=False, allow_infinity=False) | json_values,
                "unit": st.sampled_from(["/min", "%", "Cel", "[degF]", "x"]) | json_values,
                "ts": st.sampled_from([TS, 1795255200, "bad"]) | json_values,
                "mdc": json_values,
                "channel": json_values,
            },
        ),
        max_size=6,
    )
)
def test_random_samples_are_each_decoded_or_rejected(samples: list[dict[str, Any]]) -> None:
    try:
        decoded = decode_vitals("mon-1", json.dumps({"ts": TS, "samples": samples}).encode())
    except InputError:
        return
    assert len(decoded.samples) + len(decoded.rejected) == len(samples)
    for sample in decoded.samples:
        assert math.isfinite(sample.value)
        assert sample.unit in {"/min", "%", "Cel", "mm[Hg]"}


def test_orjson_and_json_agree_on_what_is_decoded() -> None:
    body = {"ts": TS, "samples": [{"vital": "hr", "value": 88, "unit": "/min"}]}
    assert decode_vitals("m", json.dumps(body).encode()) == decode_vitals("m", orjson.dumps(body))


# --- topics ---------------------------------------------------------------------------------


def test_topics_name_the_device_and_the_stream() -> None:
    assert parse_topic("devices/icu-3.bed-7/vitals") == DeviceTopic("icu-3.bed-7", "vitals")
    assert parse_topic("devices/x/alerts").kind == "alerts"


@pytest.mark.parametrize(
    "topic",
    [
        "devices/x/other",
        "devices//vitals",
        "devices/a b/vitals",
        "devices/+/vitals",
        "devices/#/vitals",
        "devices/x/y/vitals",
        "sensors/x/vitals",
        "devices/" + "x" * 129 + "/vitals",
    ],
)
def test_bad_topics_are_refused(topic: str) -> None:
    with pytest.raises(InputError):
        parse_topic(topic)


# --- status -------------------------------------------------------------------------------


def test_status_with_battery() -> None:
    status = decode_status("mon-1", orjson.dumps({"ts": TS, "state": "Online", "battery": 87}))
    assert (status.state, status.device_time, status.battery_percent) == ("online", T0, 87.0)


@pytest.mark.parametrize("raw", [b"offline", b"offline\n", b'"offline"', b"ONLINE"])
def test_a_last_will_word_is_a_status_without_a_device_time(raw: bytes) -> None:
    status = decode_status("mon-1", raw)
    assert status.device_time is None
    assert status.state in {"online", "offline"}


@pytest.mark.parametrize(
    ("body", "where"),
    [
        ({"ts": TS, "state": "sleeping"}, "state"),
        ({"ts": TS}, "state"),
        ({"state": "alarm"}, "ts"),
        ({"ts": "2026-11-21T10:00:00", "state": "alarm"}, "ts"),
        ({"ts": TS, "state": "alarm", "battery": 140}, "battery"),
        ({"ts": TS, "state": "alarm", "battery": "full"}, "battery"),
        ({"ts": TS, "state": "alarm", "text": 5}, "text"),
    ],
)
def test_bad_status_is_refused_with_where(body: dict[str, Any], where: str) -> None:
    with pytest.raises(InputError) as caught:
        decode_status("mon-1", orjson.dumps(body))
    assert caught.value.issues[0].expression == (where,)


@pytest.mark.parametrize("raw", [b"garbage", b"[1]", b""])
def test_status_that_is_not_a_json_object_is_a_parse_error(raw: bytes) -> None:
    with pytest.raises(MessageParseError):
        decode_status("mon-1", raw)


# --- alerts -------------------------------------------------------------------------------


def test_an_alert_from_the_device() -> None:
    body = {"ts": TS, "code": "SPO2_LOW", "priority": "HIGH", "text": "SpO2 low", "vital": "spo2"}
    (alert,) = decode_alerts("mon-1", orjson.dumps(body)).alerts
    assert (alert.code, alert.priority, alert.text, alert.device_time) == (
        "SPO2_LOW",
        "high",
        "SpO2 low",
        T0,
    )
    assert alert.active and alert.vital == "oxygen-saturation"


def test_alerts_in_an_envelope_share_its_time_and_bad_ones_are_reported() -> None:
    body = {
        "ts": TS,
        "alerts": [
            {"code": 196, "priority": "medium", "state": "cleared"},
            {"code": "X", "priority": "urgent"},
            {"priority": "low"},
        ],
    }
    decoded = decode_alerts("mon-1", orjson.dumps(body))
    (alert,) = decoded.alerts
    assert (alert.code, alert.active, alert.text) == ("196", False, "")
    assert [i.expression for i in decoded.rejected] == [
        ("alerts[1].priority",),
        ("alerts[2].code",),
    ]


def test_an_alert_without_a_time_is_refused() -> None:
    with pytest.raises(MissingDataError):
        decode_alerts("mon-1", orjson.dumps({"code": "X", "priority": "low"}))
