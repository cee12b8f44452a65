"""Device ingest against a real resource store and sample store: registration, attribution
by sample time across re-binding, clock correction, device state."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from medhub.db.engine import make_engine
from medhub.devices.ingest import DeviceIngest
from medhub.devices.registry import DeviceRegistry
from medhub.devices.samples import Sample
from medhub.errors import ConflictError, InputError, NotFoundError
from medhub.fhir.sql_store import SqlResourceStore
from medhub.timeseries.records import SampleRecord
from medhub.timeseries.sample_store import SampleStore
from medhub.timeseries.schema import migrate

T0 = datetime(2026, 11, 21, 10, 0, tzinfo=UTC)


@pytest.fixture
def samples(tmp_path: Path) -> Iterator[SampleStore]:
    engine = make_engine(f"sqlite:///{tmp_path / 'samples.db'}")
    migrate(engine)
    yield SampleStore(engine)
    engine.dispose()


@pytest.fixture
def registry(store: SqlResourceStore) -> DeviceRegistry:
    return DeviceRegistry(store)


def patient(store: SqlResourceStore, family: str) -> str:
    with store.unit_of_work() as resources:
        return resources.create({"resourceType": "Patient", "name": [{"family": family}]}).id


def hr(device: str, at: datetime, value: float = 80.0) -> Sample:
    return Sample(device, "heart-rate", value, "/min", at, mdc_code="147842")


def window() -> dict[str, datetime]:
    return {"since": T0 - timedelta(hours=2), "until": T0 + timedelta(hours=2)}


def test_an_unknown_device_is_registered_and_its_samples_kept_unbound(
    store: SqlResourceStore, registry: DeviceRegistry, samples: SampleStore
) -> None:
    ingest = DeviceIngest(samples, registry)
    ingest.store([hr("mon-1", T0)], received_at=T0 + timedelta(milliseconds=30))
    with store.unit_of_work() as resources:
        device = resources.read("Device", "mon-1").resource
    assert device["identifier"][0]["value"] == "mon-1"
    [record] = samples.device_samples("mon-1", **window())
    assert record.patient_id is None and record.mdc_code == "147842"
    entry = registry.get("mon-1")
    assert entry.state is not None and entry.state.last_seen == T0 + timedelta(milliseconds=30)


def test_samples_go_to_the_patient_bound_at_their_time_not_at_arrival(
    store: SqlResourceStore, registry: DeviceRegistry, samples: SampleStore
) -> None:
    bed3, bed4 = patient(store, "Bed3"), patient(store, "Bed4")
    ingest = DeviceIngest(samples, registry)
    registry.bind("mon-2", bed3, T0)
    ingest.invalidate_bindings()
    registry.bind("mon-2", bed4, T0 + timedelta(hours=1))  # moved: closes bed 3's binding
    ingest.invalidate_bindings()
    # samples from the device's buffer, all arriving after the move
    late = T0 + timedelta(hours=1, minutes=5)
    ingest.store(
        [
            hr("mon-2", T0 - timedelta(minutes=1)),
            hr("mon-2", T0 + timedelta(minutes=30)),
            hr("mon-2", T0 + timedelta(hours=1, minutes=1)),
        ],
        received_at=late,
        sent_at=late,
    )
    owners = [r.patient_id for r in samples.device_samples("mon-2", **window())]
    assert owners == [None, bed3, bed4]
    assert [b.patient_id for b in registry.timeline("mon-2").bindings] == [bed3, bed4]
    with store.unit_of_work() as resources:
        assert (
            resources.read("Device", "mon-2").resource["patient"]["reference"] == f"Patient/{bed4}"
        )


def test_a_skewed_clock_is_corrected_and_flagged(
    store: SqlResourceStore, registry: DeviceRegistry, samples: SampleStore
) -> None:
    bed = patient(store, "Skew")
    registry.bind("mon-3", bed, T0)
    ingest = DeviceIngest(samples, registry)
    behind = timedelta(seconds=90)
    sent = T0 + timedelta(minutes=10) - behind  # the device thinks it is 90 s earlier
    ingest.store([hr("mon-3", sent)], received_at=T0 + timedelta(minutes=10), sent_at=sent)
    [record] = samples.device_samples("mon-3", **window())
    assert record.device_time == sent
    assert record.corrected_time == T0 + timedelta(minutes=10)
    assert record.patient_id == bed
    state = registry.get("mon-3").state
    assert state is not None and state.clock_flagged and state.clock_offset_ms == 90_000


def test_binding_rules(store: SqlResourceStore, registry: DeviceRegistry) -> None:
    bed = patient(store, "Rules")
    with pytest.raises(NotFoundError):
        registry.bind("mon-4", "no-such-patient", T0)
    registry.bind("mon-4", bed, T0)
    with pytest.raises(ConflictError):
        registry.bind("mon-4", bed, T0 - timedelta(hours=1))  # would overlap the open binding
    with pytest.raises(InputError):
        registry.unbind("mon-4", T0 - timedelta(minutes=1))
    ended = registry.unbind("mon-4", T0 + timedelta(hours=3))
    assert ended.end == T0 + timedelta(hours=3)
    with pytest.raises(NotFoundError):
        registry.unbind("mon-4", T0 + timedelta(hours=4))
    with pytest.raises(InputError):
        registry.bind("bad id!", bed, T0)


def test_a_redelivered_batch_is_stored_once(registry: DeviceRegistry, samples: SampleStore) -> None:
    ingest = DeviceIngest(samples, registry)
    batch = [hr("mon-5", T0 + timedelta(seconds=i)) for i in range(20)]
    ingest.store(batch, received_at=T0 + timedelta(seconds=21))
    ingest.store(batch, received_at=T0 + timedelta(seconds=40))
    assert samples.count() == 20
    assert (ingest.samples_stored, ingest.samples_duplicate) == (20, 20)


def test_listeners_get_the_stored_records(registry: DeviceRegistry, samples: SampleStore) -> None:
    seen: list[SampleRecord] = []
    ingest = DeviceIngest(samples, registry)
    ingest.add_listener(seen.extend)

    def broken(records: object) -> None:
        raise RuntimeError(f"listener bug on {records!r:.10}")

    ingest.add_listener(broken)  # a broken listener does not fail the stored batch
    ingest.store([hr("mon-6", T0)], received_at=T0)
    assert [r.device_id for r in seen] == ["mon-6"]
    assert samples.count() == 1


def test_listeners_run_before_the_device_state_is_written(
    registry: DeviceRegistry, samples: SampleStore
) -> None:
    """The alert a batch raises does not wait behind the operators' last-seen bookkeeping."""
    ingest = DeviceIngest(samples, registry)
    states_seen_by_listener: list[object] = []
    ingest.add_listener(
        lambda _records: states_seen_by_listener.append(registry.get("mon-9").state)
    )
    ingest.store([hr("mon-9", T0)], received_at=T0)
    assert states_seen_by_listener == [None]
    state = registry.get("mon-9").state
    assert state is not None and state.last_seen == T0
