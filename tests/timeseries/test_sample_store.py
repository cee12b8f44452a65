"""The sample store on SQLite and PostgreSQL: idempotent batches, rollups, windows, retention."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from medhub.errors import InputError
from medhub.timeseries.records import SampleRecord
from medhub.timeseries.sample_store import SampleStore, from_micros, to_micros

T0 = datetime(2026, 11, 21, 10, 0, tzinfo=UTC)


def sample(
    seconds: float,
    value: float = 80.0,
    *,
    device: str = "mon-1",
    vital: str = "heart-rate",
    patient: str | None = "p-1",
    skew: float = 0.0,
) -> SampleRecord:
    device_time = T0 + timedelta(seconds=seconds)
    return SampleRecord(
        device_id=device,
        vital=vital,
        channel="",
        device_time=device_time,
        corrected_time=device_time + timedelta(seconds=skew),
        received_at=device_time + timedelta(seconds=1),
        value=value,
        unit="/min",
        patient_id=patient,
        mdc_code="147842",
    )


def window(minutes: int = 60) -> dict[str, datetime]:
    return {"since": T0 - timedelta(minutes=1), "until": T0 + timedelta(minutes=minutes)}


def test_a_batch_round_trips(sample_store: SampleStore) -> None:
    batch = [sample(i, 60 + i) for i in range(10)]
    assert sample_store.write(batch) == 10
    read = sample_store.device_samples("mon-1", **window())
    assert read == batch


def test_a_resent_batch_is_not_stored_or_counted_twice(sample_store: SampleStore) -> None:
    batch = [sample(i, 70) for i in range(5)]
    assert sample_store.write(batch) == 5
    assert sample_store.write(batch) == 0
    assert sample_store.write([*batch, sample(5, 90), sample(5, 90)]) == 1
    assert sample_store.count() == 6
    [bucket] = sample_store.patient_buckets("p-1", "heart-rate", **window(), seconds=60)
    assert (bucket.count, bucket.minimum, bucket.maximum) == (6, 70.0, 90.0)
    assert bucket.mean == pytest.approx((5 * 70 + 90) / 6)


def test_patient_queries_use_the_corrected_time(sample_store: SampleStore) -> None:
    sample_store.write([sample(0, skew=-120), sample(30, skew=-120)])
    early = sample_store.patient_samples(
        "p-1", since=T0 - timedelta(minutes=3), until=T0 - timedelta(minutes=1)
    )
    assert [s.value for s in early] == [80.0, 80.0]
    assert sample_store.patient_samples("p-1", since=T0, until=T0 + timedelta(minutes=5)) == []


def test_buckets_from_rollups_and_from_samples_agree(sample_store: SampleStore) -> None:
    sample_store.write([sample(i * 10, float(i)) for i in range(36)])  # 6 minutes, 6 per minute
    per_minute = sample_store.patient_buckets("p-1", "heart-rate", **window(), seconds=60)
    assert [b.count for b in per_minute] == [6] * 6
    assert [b.start for b in per_minute] == [T0 + timedelta(minutes=m) for m in range(6)]
    per_two = sample_store.patient_buckets("p-1", "heart-rate", **window(), seconds=120)
    assert [(b.count, b.minimum, b.maximum) for b in per_two] == [
        (12, 0, 11),
        (12, 12, 23),
        (12, 24, 35),
    ]
    per_30s = sample_store.patient_buckets("p-1", "heart-rate", **window(), seconds=30)
    assert len(per_30s) == 12 and sum(b.count for b in per_30s) == 36


def test_unbound_samples_are_kept_but_not_rolled_up(sample_store: SampleStore) -> None:
    sample_store.write([sample(0, patient=None), sample(1, patient=None)])
    assert len(sample_store.device_samples("mon-1", **window())) == 2
    assert sample_store.patient_buckets("p-1", "heart-rate", **window(), seconds=60) == []


def test_filters_by_vital_and_device(sample_store: SampleStore) -> None:
    sample_store.write(
        [sample(0), sample(0, vital="oxygen-saturation"), sample(0, device="mon-2", patient="p-2")]
    )
    assert len(sample_store.device_samples("mon-1", **window(), vital="heart-rate")) == 1
    assert len(sample_store.device_samples("mon-1", **window())) == 2
    assert [s.device_id for s in sample_store.patient_samples("p-2", **window())] == ["mon-2"]


def test_bad_windows_are_refused(sample_store: SampleStore) -> None:
    with pytest.raises(InputError):
        sample_store.device_samples("mon-1", since=T0, until=T0)
    with pytest.raises(InputError):
        sample_store.device_samples("mon-1", since=T0.replace(tzinfo=None), until=T0 + timedelta(1))
    with pytest.raises(InputError):
        sample_store.patient_buckets(
            "p-1", "heart-rate", since=T0, until=T0 + timedelta(days=30), seconds=1
        )


def test_retention_drops_old_samples_and_rollups(sample_store: SampleStore) -> None:
    old = T0 - timedelta(days=70)
    sample_store.write([sample(-70 * 86_400), sample(0)])
    sample_store.delete_before(T0 - timedelta(days=30), now=T0)
    assert sample_store.count() == 1
    assert (
        sample_store.patient_buckets(
            "p-1", "heart-rate", since=old - timedelta(1), until=old + timedelta(1), seconds=60
        )
        == []
    )
    assert len(sample_store.patient_buckets("p-1", "heart-rate", **window(), seconds=60)) == 1


def test_a_large_batch(sample_store: SampleStore) -> None:
    batch = [sample(i * 0.25, float(i % 200), device=f"mon-{i % 50}") for i in range(20_000)]
    assert sample_store.write(batch) == 20_000
    assert sample_store.count() == 20_000


@settings(max_examples=50, deadline=None)
@given(
    st.datetimes(
        min_value=datetime(1970, 1, 2), max_value=datetime(2200, 1, 1), timezones=st.just(UTC)
    )
)
def test_microsecond_times_round_trip(moment: datetime) -> None:
    assert from_micros(to_micros(moment)) == moment


def test_the_store_says_unavailable_when_the_database_is_gone() -> None:
    from medhub.db.engine import make_engine
    from medhub.errors import StoreUnavailableError

    store = SampleStore(
        make_engine("postgresql+psycopg://nobody@127.0.0.1:1/none?connect_timeout=1")
    )
    with pytest.raises(StoreUnavailableError):
        store.write([sample(0)])


def test_a_late_binding_claims_the_unattributed_samples(sample_store: SampleStore) -> None:
    sample_store.write([sample(i * 20, 70.0 + i, patient=None) for i in range(6)])  # 2 minutes
    sample_store.write([sample(200, 99.0, patient="p-other")])
    claimed = sample_store.claim_unbound("mon-1", "p-1", start=T0 + timedelta(seconds=30))
    assert claimed == 4
    owners = [s.patient_id for s in sample_store.device_samples("mon-1", **window())]
    assert owners == [None, None, "p-1", "p-1", "p-1", "p-1", "p-other"]
    buckets = sample_store.patient_buckets("p-1", "heart-rate", **window(), seconds=60)
    assert [(b.count, b.minimum, b.maximum) for b in buckets] == [(1, 72, 72), (3, 73, 75)]
    assert sample_store.claim_unbound("mon-1", "p-1", start=T0) == 2
