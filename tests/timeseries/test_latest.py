"""The latest sample per vital of a patient, on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from medhub.timeseries.latest import latest_samples
from medhub.timeseries.records import SampleRecord
from medhub.timeseries.sample_store import SampleStore

T0 = datetime(2026, 11, 21, 10, 0, tzinfo=UTC)


def record(vital: str, minute: int, value: float, patient: str | None = "p-1") -> SampleRecord:
    at = T0 + timedelta(minutes=minute)
    return SampleRecord("mon-1", vital, "", at, at, at, value, "/min", patient)


def test_the_newest_sample_per_vital_up_to_until(sample_store: SampleStore) -> None:
    sample_store.write(
        [
            record("heart-rate", 0, 70),
            record("heart-rate", 5, 75),
            record("heart-rate", 10, 80),  # after ``until``
            record("respiratory-rate", 1, 14),
            record("respiratory-rate", 3, 16, patient="p-2"),  # someone else's
            record("oxygen-saturation", 2, 97, patient=None),  # unattributed
        ]
    )
    found = latest_samples(
        sample_store,
        "p-1",
        ["heart-rate", "respiratory-rate", "oxygen-saturation", "heart-rate"],
        until=T0 + timedelta(minutes=9),
    )
    assert {vital: r.value for vital, r in found.items()} == {
        "heart-rate": 75.0,
        "respiratory-rate": 14.0,
    }
    assert found["heart-rate"].corrected_time == T0 + timedelta(minutes=5)
    assert found["heart-rate"].patient_id == "p-1"
    assert latest_samples(sample_store, "p-1", [], until=T0) == {}
