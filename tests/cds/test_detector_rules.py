"""Each alarm rule as a clinician would see it, through the numba detector."""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from medhub.cds.alarm_codes import Condition, Priority, Transition
from medhub.cds.detector import AlarmEvent, Detector, StreamKey
from medhub.cds.vital_limits import DEFAULT_LIMITS, LimitOverride, LimitPolicy, VitalLimits
from medhub.errors import InputError
from medhub.timeseries.records import SampleRecord

S = 1_000_000
HR = VitalLimits(low=50, high=110, critical_low=40, critical_high=120, hysteresis=5)
START, END = Transition.START, Transition.END


def run(limits: VitalLimits, values: Sequence[float], *, step_s: float = 1.0) -> list[AlarmEvent]:
    detector = Detector()
    idx = detector.register(StreamKey("heart-rate", "monitor-1"), limits)
    times = [round(i * step_s * S) for i in range(len(values))]
    return detector.process([idx] * len(values), times, values)


def edges(events: list[AlarmEvent]) -> list[tuple[float, Condition, Transition]]:
    return [(e.time_us / S, e.condition, e.transition) for e in events]


def test_one_event_per_state_change_not_per_sample() -> None:
    events = run(HR, [80, 115, 116, 117, 118, 80, 80])
    assert edges(events) == [(1, Condition.HIGH, START), (5, Condition.HIGH, END)]
    start = events[0]
    assert (start.priority, start.value, start.limit) == (Priority.MEDIUM, 115.0, 110.0)
    assert start.key == StreamKey("heart-rate", "monitor-1")


def test_limits_are_strict_the_limit_itself_is_in_range() -> None:
    assert run(HR, [110, 50, 80]) == []
    assert run(VitalLimits(critical_low=40, critical_high=120), [120, 40, 80]) == []


def test_critical_limits_are_high_priority_and_escalate_from_high() -> None:
    events = run(HR, [80, 115, 125, 115, 80])
    assert edges(events) == [
        (1, Condition.HIGH, START),
        (2, Condition.HIGH, END),
        (2, Condition.CRITICAL_HIGH, START),
        (3, Condition.CRITICAL_HIGH, END),
        (3, Condition.HIGH, START),
        (4, Condition.HIGH, END),
    ]
    assert events[2].priority == Priority.HIGH


def test_seed_example_heart_rate_above_120_or_below_40_is_critical() -> None:
    limits = DEFAULT_LIMITS["heart-rate"]
    events = run(limits, [80, 121, 80, 80, 39], step_s=1)
    starts = [(e.condition, e.priority) for e in events if e.transition == START]
    assert starts == [
        (Condition.CRITICAL_HIGH, Priority.HIGH),
        (Condition.CRITICAL_LOW, Priority.HIGH),
    ]


def test_hysteresis_keeps_the_alarm_until_the_value_is_well_inside() -> None:
    # high 110, hysteresis 5: 108 and 105.5 keep it, 105 (= 110 - 5) ends it.
    events = run(HR, [80, 112, 108, 111, 105.5, 105])
    assert edges(events) == [(1, Condition.HIGH, START), (5, Condition.HIGH, END)]


def test_without_hysteresis_a_value_hovering_at_the_limit_chatters() -> None:
    events = run(replace_limits(HR, hysteresis=0.0), [80, 112, 108, 111, 105])
    assert len(events) == 4


def test_on_delay_suppresses_short_excursions() -> None:
    limits = replace_limits(HR, on_delay_s=10.0)
    # Out of range for 9 s only: no alarm.
    assert run(limits, [80] + [115] * 10 + [80] * 3) == []
    # Out for 10 s: the alarm starts at the sample 10 s after the excursion began.
    events = run(limits, [80] + [115] * 12 + [80])
    assert edges(events) == [(11, Condition.HIGH, START), (13, Condition.HIGH, END)]


def test_on_delay_restarts_when_the_value_comes_back_in_range() -> None:
    limits = replace_limits(HR, on_delay_s=5.0)
    assert run(limits, [115, 115, 115, 115, 100, 115, 115, 115, 115, 100]) == []


def test_critical_limits_bypass_the_on_delay() -> None:
    limits = replace_limits(HR, on_delay_s=10.0)
    events = run(limits, [80, 130, 80])
    assert edges(events) == [(1, Condition.CRITICAL_HIGH, START), (2, Condition.CRITICAL_HIGH, END)]


def test_rate_of_change_alarm() -> None:
    limits = VitalLimits(rate_per_min=20.0, rate_window_s=10.0)
    # +30/min over a 10 s window (5 per 10 s): alarm; then flat: ends at the next window.
    values = [80.0 + 0.5 * i for i in range(21)] + [90.0] * 20
    events = run(limits, values)
    assert edges(events) == [(10, Condition.RATE, START), (30, Condition.RATE, END)]
    assert events[0].limit == 20.0


def test_slow_drift_within_the_rate_limit_raises_nothing() -> None:
    limits = VitalLimits(rate_per_min=20.0, rate_window_s=10.0)
    assert run(limits, [80.0 + 0.2 * i for i in range(60)]) == []


def test_median_filter_ignores_a_single_artefact() -> None:
    limits = replace_limits(HR, median_window=3)
    spike = [80, 80, 80, 250, 80, 80]
    assert run(limits, spike) == []
    assert edges(run(HR, spike))[0] == (3, Condition.CRITICAL_HIGH, START)
    # A sustained change does get through, one sample later.
    assert edges(run(limits, [80, 80, 130, 130, 130]))[0] == (3, Condition.CRITICAL_HIGH, START)


def test_signal_lost_on_tick_and_restored_by_the_next_sample() -> None:
    detector = Detector()
    idx = detector.register(
        StreamKey("oxygen-saturation", "ox-1"), DEFAULT_LIMITS["oxygen-saturation"]
    )
    detector.process([idx, idx], [0, 1 * S], [97.0, 97.0])
    assert detector.tick(30 * S) == []
    lost = detector.tick(31 * S)
    assert [(e.condition, e.transition, e.priority) for e in lost] == [
        (Condition.SIGNAL_LOST, START, Priority.LOW)
    ]
    assert lost[0].time_us == 31 * S and lost[0].limit == 30.0
    assert detector.tick(60 * S) == []  # still lost: no second alert
    back = detector.process([idx], [61 * S], [96.0])
    assert edges(back) == [(61, Condition.SIGNAL_LOST, END)]


def test_signal_lost_is_found_in_a_batch_even_without_tick() -> None:
    limits = VitalLimits(low=90, signal_lost_s=30)
    detector = Detector()
    idx = detector.register(StreamKey("oxygen-saturation", "ox-1"), limits)
    events = detector.process([idx] * 3, [0, 1 * S, 100 * S], [97.0, 97.0, 97.0])
    assert edges(events) == [(31, Condition.SIGNAL_LOST, START), (100, Condition.SIGNAL_LOST, END)]


def test_invalid_samples_do_not_count_as_signal() -> None:
    limits = VitalLimits(signal_lost_s=5)
    events = run(limits, [97.0] + [math.nan] * 10 + [97.0])
    assert edges(events) == [(5, Condition.SIGNAL_LOST, START), (11, Condition.SIGNAL_LOST, END)]


def test_a_resent_batch_raises_nothing_twice() -> None:
    detector = Detector()
    idx = detector.register(StreamKey("heart-rate", "m"), HR)
    batch = ([idx] * 3, [0, S, 2 * S], [80.0, 130.0, 130.0])
    assert len(detector.process(*batch)) == 1
    assert detector.process(*batch) == []
    assert detector.dropped == 3


def test_state_carries_across_batches() -> None:
    detector = Detector()
    idx = detector.register(StreamKey("heart-rate", "m"), replace_limits(HR, on_delay_s=3.0))
    assert detector.process([idx, idx], [0, S], [115.0, 115.0]) == []
    events = detector.process([idx, idx], [2 * S, 3 * S], [115.0, 115.0])
    assert edges(events) == [(3, Condition.HIGH, START)]


def test_acknowledged_alarm_ends_marked_acknowledged() -> None:
    detector = Detector()
    idx = detector.register(StreamKey("heart-rate", "m"), HR)
    detector.process([idx], [0], [130.0])
    assert detector.active(idx) == [Condition.CRITICAL_HIGH]
    assert not detector.acknowledge(idx, Condition.HIGH)
    assert detector.acknowledge(idx, Condition.CRITICAL_HIGH)
    end = detector.process([idx], [S], [80.0])
    assert [(e.transition, e.acknowledged) for e in end] == [(END, True)]
    # A new alarm on the same stream starts unacknowledged.
    detector.process([idx], [2 * S], [130.0])
    assert detector.process([idx], [3 * S], [80.0])[0].acknowledged is False


def test_many_streams_and_many_events_in_one_batch() -> None:
    detector = Detector(capacity=1, event_capacity=8)
    n = 300
    for i in range(n):
        detector.register(StreamKey("heart-rate", f"m{i}"), HR)
    streams = np.tile(np.arange(n), 4)
    times = np.repeat(np.arange(4) * S, n)
    values = np.tile([80.0, 130.0, 80.0, 130.0], (n, 1)).T.ravel()
    events = detector.process(streams, times, values)
    assert len(events) == n * 3
    assert {e.key.device_id for e in events} == {f"m{i}" for i in range(n)}


def test_new_limits_apply_from_the_next_sample() -> None:
    detector = Detector()
    idx = detector.register(StreamKey("heart-rate", "m"), HR)
    assert detector.process([idx], [0], [80.0]) == []
    detector.set_limits(idx, replace_limits(HR, high=75.0))
    events = detector.process([idx], [S], [80.0])
    assert edges(events) == [(1, Condition.HIGH, START)]
    assert events[0].limit == 75.0


def test_unregistered_stream_is_refused() -> None:
    detector = Detector()
    detector.register(StreamKey("heart-rate", "m"), HR)
    with pytest.raises(InputError):
        detector.process([0, 1], [0, 1], [80.0, 80.0])


def test_records_from_ingest_with_per_patient_limits() -> None:
    policy = LimitPolicy()
    # This patient's baseline is bradycardic: pacing at 45 is expected, not alarming.
    policy.set_patient("p-1", "heart-rate", LimitOverride(low=42, critical_low=35))
    detector = Detector()
    t0 = datetime(2026, 11, 22, 8, 0, tzinfo=UTC)
    for patient in ("p-1", "p-2"):
        key = StreamKey("heart-rate", f"mon-{patient}", "ecg", patient)
        detector.register(key, policy.resolve("heart-rate", patient_id=patient))
    records = [
        SampleRecord(f"mon-{p}", "heart-rate", "ecg", t, t, t, 45.0, "/min", p)
        for i in range(15)
        for t in [t0 + timedelta(seconds=i)]
        for p in ("p-1", "p-2")
    ]
    events = detector.process_records(records)
    assert [(e.key.patient_id, e.condition, e.transition) for e in events] == [
        ("p-2", Condition.LOW, START)
    ]
    assert events[0].time == t0 + timedelta(seconds=10)  # the default 10 s on-delay


def replace_limits(limits: VitalLimits, **changes: float) -> VitalLimits:
    return LimitOverride(**changes).apply(limits)  # type: ignore[arg-type]
