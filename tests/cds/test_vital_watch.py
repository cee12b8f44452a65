"""Ingested vitals through the detector into stored alerts, end to end on a real store."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import select

from medhub.cds.alert_store import AlertRow, AlertService
from medhub.cds.vital_watch import VitalWatch
from medhub.db.engine import make_engine
from medhub.db.outbox import OutboxEventRow
from medhub.devices.ingest import DeviceIngest
from medhub.devices.registry import DeviceRegistry
from medhub.devices.samples import Sample
from medhub.errors import StoreUnavailableError
from medhub.fhir.sql_store import SqlResourceStore
from medhub.timeseries.sample_store import SampleStore
from medhub.timeseries.schema import migrate

T0 = datetime(2026, 11, 21, 10, 0, tzinfo=UTC)


def heart_rates(device: str, values: list[float]) -> list[Sample]:
    return [
        Sample(device, "heart-rate", v, "/min", T0 + timedelta(seconds=i))
        for i, v in enumerate(values)
    ]


def test_a_critical_heart_rate_raises_one_alert_with_its_event(
    sqlite_store: SqlResourceStore, tmp_path: Path
) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'samples.db'}")
    migrate(engine)
    registry = DeviceRegistry(sqlite_store)
    with sqlite_store.unit_of_work() as resources:
        patient = resources.create({"resourceType": "Patient", "name": [{"family": "Watch"}]})
    registry.bind("mon-w", patient.id, T0 - timedelta(hours=1))
    ingest = DeviceIngest(SampleStore(engine), registry)
    watch = VitalWatch(AlertService(sqlite_store))
    ingest.add_listener(watch)
    # 80/min, then 150/min (above the critical 120) for a minute, then back to 80
    values = [80.0] * 30 + [150.0] * 60 + [80.0] * 30
    for start in range(0, len(values), 20):
        batch = heart_rates("mon-w", values)[start : start + 20]
        ingest.store(batch, received_at=batch[-1].device_time + timedelta(milliseconds=10))
    with sqlite_store.session() as session:
        alerts = session.scalars(select(AlertRow)).all()
        events = session.scalars(select(OutboxEventRow)).all()
    assert len(alerts) == 1
    [alert] = alerts
    assert (alert.patient_id, alert.vital, alert.state) == (patient.id, "heart-rate", "resolved")
    assert sorted(e.topic for e in events) == ["alert.raised", "alert.resolved"]
    assert all(e.routing_key.startswith("alerts.") for e in events)
    engine.dispose()


def test_transitions_are_kept_while_the_store_is_down(sqlite_store: SqlResourceStore) -> None:
    class Flaky(AlertService):
        down = True

        def apply(self, events):  # type: ignore[no-untyped-def]
            if self.down:
                raise StoreUnavailableError("database down")
            return super().apply(events)

    service = Flaky(sqlite_store)
    watch = VitalWatch(service)
    from medhub.timeseries.records import SampleRecord

    def record(second: int, value: float) -> SampleRecord:
        at = T0 + timedelta(seconds=second)
        return SampleRecord("mon-f", "heart-rate", "", at, at, at, value, "/min", "p-1")

    watch([record(0, 80.0), record(1, 170.0)])  # critical: starts at once, store down
    service.down = False
    watch.tick(T0 + timedelta(seconds=2))  # the retry applies the kept START
    with sqlite_store.session() as session:
        assert [a.state for a in session.scalars(select(AlertRow))] == ["raised"]
