"""Simulated monitors: deterministic, realistic in cadence and range, and always decodable."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from medhub.clinical.vital_codes import PHYSICAL_RANGES
from medhub.devices.mqtt_payload import decode_alerts, decode_status, decode_vitals
from medhub.devices.simulator import (
    DeviceSimulator,
    Reading,
    SimulatorProfile,
    alerts_payload,
    format_time,
    status_payload,
    vitals_payload,
    vitals_payloads,
)

T0 = datetime(2026, 11, 21, 10, 0, tzinfo=UTC)
QUIET = SimulatorProfile(episodes_per_hour=0.0, dropouts=False)


def run(
    device: str, seconds: float, profile: SimulatorProfile | None = None, seed: int = 1
) -> list:
    sim = DeviceSimulator(device, seed=seed, start=T0, profile=profile)
    return sim.advance(T0 + timedelta(seconds=seconds)).readings


def test_the_same_seed_and_device_give_the_same_stream_and_others_differ() -> None:
    assert run("mon-1", 600) == run("mon-1", 600)
    assert run("mon-1", 600) != run("mon-2", 600)
    assert run("mon-1", 600) != run("mon-1", 600, seed=2)


def test_advancing_in_steps_gives_the_stream_of_one_advance() -> None:
    whole = run("mon-1", 900)
    sim = DeviceSimulator("mon-1", seed=1, start=T0)
    pieces: list[Reading] = []
    for second in (0.5, 1, 1, 7.3, 60, 61, 300, 899.99, 900):
        pieces.extend(sim.advance(T0 + timedelta(seconds=second)).readings)
    assert pieces == whole
    assert sim.advance(T0).readings == []  # time never runs backwards


def test_cadence_is_a_monitors() -> None:
    counts = Counter(r.vital for r in run("mon-1", 3600, QUIET))
    assert counts["heart-rate"] == counts["oxygen-saturation"] == counts["respiratory-rate"] == 3600
    assert counts["body-temperature"] == 60
    for vital in ("systolic-blood-pressure", "diastolic-blood-pressure", "mean-blood-pressure"):
        assert counts[vital] == 12
    fast = Counter(r.vital for r in run("mon-1", 10, SimulatorProfile(period_seconds=0.01)))
    assert fast["heart-rate"] == 1000


def test_readings_are_in_range_rounded_and_ordered() -> None:
    readings = run("mon-3", 4 * 3600, SimulatorProfile(episodes_per_hour=3.0))
    for reading in readings:
        low, high = PHYSICAL_RANGES[reading.vital]
        assert low <= reading.value <= high
        digits = 1 if reading.vital == "body-temperature" else 0
        assert reading.value == round(reading.value, digits)
    times = [r.time for r in readings]
    assert times == sorted(times)
    nibp = [r for r in readings if r.vital.endswith("blood-pressure")]
    by_time: dict[datetime, dict[str, float]] = {}
    for r in nibp:
        by_time.setdefault(r.time, {})[r.vital] = r.value
    for values in by_time.values():
        sys_, dia, mean = (
            values["systolic-blood-pressure"],
            values["diastolic-blood-pressure"],
            values["mean-blood-pressure"],
        )
        assert dia < mean < sys_


def test_a_quiet_patient_stays_in_normal_ranges() -> None:
    readings = run("mon-4", 3600, QUIET)
    hr = [r.value for r in readings if r.vital == "heart-rate"]
    spo2 = [r.value for r in readings if r.vital == "oxygen-saturation"]
    assert 40 < min(hr) and max(hr) < 120
    assert min(spo2) >= 90


def test_episodes_go_out_of_range_and_raise_then_clear_alerts() -> None:
    profile = SimulatorProfile(episodes_per_hour=6.0, dropouts=False)
    sim = DeviceSimulator("mon-5", seed=3, start=T0, profile=profile)
    step = sim.advance(T0 + timedelta(hours=6))
    hr = [r.value for r in step.readings if r.vital == "heart-rate"]
    spo2 = [r.value for r in step.readings if r.vital == "oxygen-saturation"]
    assert max(hr) > 130 and min(spo2) < 90
    kinds = Counter((a.text.split()[0], a.active) for a in step.alerts)
    for kind in ("tachycardia", "desaturation"):
        assert kinds[(kind, True)] >= 1
        assert kinds[(kind, True)] - kinds[(kind, False)] in (0, 1)  # the last may still run
    assert {a.priority for a in step.alerts} <= {"high", "medium"}


def test_dropouts_leave_gaps() -> None:
    profile = SimulatorProfile(probe_off_per_hour=6.0, silences_per_hour=6.0, episodes_per_hour=0)
    readings = run("mon-6", 3 * 3600, profile)
    counts = Counter(r.vital for r in readings)
    seconds = 3 * 3600
    assert counts["oxygen-saturation"] < counts["heart-rate"] < seconds  # probe off; silences


def test_payloads_decode_with_every_reading_accepted() -> None:
    readings = run("mon-7", 400)
    payload = vitals_payload(readings)
    decoded = decode_vitals("mon-7", payload)
    assert decoded.rejected == ()
    assert [(s.vital, s.value, s.unit, s.device_time) for s in decoded.samples] == [
        (r.vital, r.value, r.unit, r.time) for r in readings
    ]
    one_instant = [r for r in readings if r.time == T0]
    assert orjson.loads(vitals_payload(one_instant))["ts"] == "2026-11-21T10:00:00.000Z"
    assert vitals_payload([]) == b""


def test_status_and_alert_payloads_decode() -> None:
    status = decode_status("mon-8", status_payload("online", T0, battery=87.4))
    assert (status.state, status.battery_percent, status.device_time) == ("online", 87.0, T0)
    sim = DeviceSimulator("mon-8", seed=3, start=T0, profile=SimulatorProfile(episodes_per_hour=6))
    events = sim.advance(T0 + timedelta(hours=2)).alerts
    decoded = decode_alerts("mon-8", alerts_payload(events))
    assert decoded.rejected == ()
    assert [(a.code, a.active, a.device_time) for a in decoded.alerts] == [
        (e.code, e.active, e.time) for e in events
    ]


def test_bad_arguments_are_refused() -> None:
    with pytest.raises(ValueError):
        SimulatorProfile(period_seconds=0.0001)
    with pytest.raises(ValueError):
        DeviceSimulator("mon-9", seed=1, start=datetime(2026, 1, 1))


def test_times_are_rfc3339_with_milliseconds() -> None:
    assert format_time(T0 + timedelta(microseconds=1500)) == "2026-11-21T10:00:00.001Z"


@settings(max_examples=25, deadline=None)
@given(
    seed=st.integers(0, 2**32),
    period=st.sampled_from([0.1, 0.25, 1.0, 2.5]),
    seconds=st.floats(1, 120),
)
def test_any_seed_gives_decodable_in_range_payloads(
    seed: int, period: float, seconds: float
) -> None:
    profile = SimulatorProfile(period_seconds=period, episodes_per_hour=20.0)
    sim = DeviceSimulator("mon-h", seed=seed, start=T0, profile=profile)
    readings = sim.advance(T0 + timedelta(seconds=seconds)).readings
    assert readings
    decoded = [decode_vitals("mon-h", p) for p in vitals_payloads(readings, per_message=500)]
    assert all(d.rejected == () for d in decoded)
    assert [s.device_time for d in decoded for s in d.samples] == [r.time for r in readings]
