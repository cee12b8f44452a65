"""Device-to-patient binding timelines: attribution by sample time, overlaps refused."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from medhub.clinical.device_binding import Binding, BindingTimeline
from medhub.errors import ConflictError, InputError

T0 = datetime(2026, 11, 21, 8, 0, tzinfo=UTC)


def at(hours: float) -> datetime:
    return T0 + timedelta(hours=hours)


def test_a_sample_belongs_to_the_patient_bound_at_its_time() -> None:
    timeline = BindingTimeline(
        [Binding("mon-1", "bed-4", at(5)), Binding("mon-1", "bed-3", at(0), at(5))]
    )
    assert timeline.patient_at(at(-1)) is None
    assert timeline.patient_at(at(0)) == "bed-3"
    assert timeline.patient_at(at(4.99)) == "bed-3"
    assert timeline.patient_at(at(5)) == "bed-4"
    assert timeline.patient_at(at(100)) == "bed-4"
    assert timeline.current() == Binding("mon-1", "bed-4", at(5))


def test_gaps_are_unbound() -> None:
    timeline = BindingTimeline(
        [Binding("mon-1", "a", at(0), at(1)), Binding("mon-1", "b", at(2), at(3))]
    )
    assert [timeline.patient_at(at(h)) for h in (0.5, 1.5, 2.5, 3.5)] == ["a", None, "b", None]
    assert timeline.current() is None


def test_overlapping_bindings_are_refused() -> None:
    timeline = BindingTimeline([Binding("mon-1", "a", at(0), at(2))])
    with pytest.raises(ConflictError, match="Patient/a"):
        timeline.check_new(Binding("mon-1", "b", at(1), at(3)))
    with pytest.raises(ConflictError):
        timeline.check_new(Binding("mon-1", "b", at(-1)))
    timeline.check_new(Binding("mon-1", "b", at(2), at(3)))  # touching is fine
    with pytest.raises(InputError):
        timeline.check_new(Binding("mon-1", "b", at(5), at(4)))


def test_a_new_binding_after_an_open_one_is_allowed_it_closes_the_old() -> None:
    BindingTimeline([Binding("mon-1", "a", at(0))]).check_new(Binding("mon-1", "b", at(1)))


@given(
    st.lists(st.integers(min_value=0, max_value=1000), min_size=1, max_size=20, unique=True),
    st.integers(-10, 1010),
)
def test_patient_at_matches_a_linear_scan(starts: list[int], probe: int) -> None:
    starts.sort()
    bindings = [
        Binding(
            "d", f"p{i}", at(s), at(starts[i + 1]) if i + 1 < len(starts) and i % 2 == 0 else None
        )
        for i, s in enumerate(starts)
    ]
    # make them non-overlapping: every binding ends at the next one's start at the latest
    bindings = [
        Binding(
            b.device_id,
            b.patient_id,
            b.start,
            b.end if b.end is not None else (at(starts[i + 1]) if i + 1 < len(starts) else None),
        )
        for i, b in enumerate(bindings)
    ]
    moment = at(probe)
    expected = next((b.patient_id for b in bindings if b.covers(moment)), None)
    assert BindingTimeline(bindings).patient_at(moment) == expected
