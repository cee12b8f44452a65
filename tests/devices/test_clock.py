"""Clock offset estimation: the minimum delay wins, replays do not drag it, skew is flagged."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import given
from hypothesis import strategies as st

from medhub.devices.clock import ClockTracker

T0 = datetime(2026, 11, 21, 10, 0, tzinfo=UTC)
LIMIT = timedelta(seconds=5)


def test_a_device_ninety_seconds_behind_is_corrected_and_flagged() -> None:
    tracker = ClockTracker(limit=LIMIT)
    for i, delay_ms in enumerate([40, 25, 300, 31]):
        sent = T0 + timedelta(seconds=i) - timedelta(seconds=90)
        state = tracker.observe(sent, T0 + timedelta(seconds=i, milliseconds=delay_ms))
    assert state.offset == timedelta(seconds=90, milliseconds=25)
    assert state.flagged
    assert tracker.correct(T0 - timedelta(seconds=90)) == T0 + timedelta(milliseconds=25)


def test_a_synchronised_device_is_not_flagged() -> None:
    tracker = ClockTracker(limit=LIMIT)
    state = tracker.observe(T0, T0 + timedelta(milliseconds=80))
    assert not state.flagged and state.offset == timedelta(milliseconds=80)


def test_a_replay_of_old_samples_does_not_move_the_estimate() -> None:
    tracker = ClockTracker(limit=LIMIT)
    tracker.observe(T0, T0 + timedelta(milliseconds=50))
    for minutes in range(60, 0, -1):  # an hour of spooled messages arriving late
        tracker.observe(T0 - timedelta(minutes=minutes), T0 + timedelta(seconds=1))
    assert tracker.state.offset == timedelta(milliseconds=50)
    assert not tracker.state.flagged


def test_no_observation_means_no_correction() -> None:
    tracker = ClockTracker(limit=LIMIT)
    assert tracker.correct(T0) == T0 and tracker.state.observations == 0


@given(st.integers(-3600_000, 3600_000), st.lists(st.integers(0, 2000), min_size=1, max_size=50))
def test_the_estimate_is_the_offset_plus_the_smallest_delay(
    offset_ms: int, delays: list[int]
) -> None:
    tracker = ClockTracker(limit=LIMIT, window=64)
    for i, delay in enumerate(delays):
        device_clock = T0 + timedelta(seconds=i)
        tracker.observe(device_clock, device_clock + timedelta(milliseconds=offset_ms + delay))
    assert tracker.state.offset == timedelta(milliseconds=offset_ms + min(delays))
