"""Device alarms into alerts (no broker): start/continue/end, duplicates, attribution, refusals."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import select

from medhub.cds.alarm_codes import Condition
from medhub.cds.alert_edges import AlertEdge
from medhub.cds.alert_store import AlertRow, AlertService
from medhub.cds.alerts import Alert
from medhub.cds.detector import AlarmEvent
from medhub.config import Settings
from medhub.db.engine import make_engine
from medhub.db.outbox import OutboxEventRow
from medhub.devices.device_alarm_payload import DeviceAlert
from medhub.devices.ingest import DeviceIngest
from medhub.devices.registry import DeviceRegistry
from medhub.errors import StoreUnavailableError
from medhub.fhir.sql_store import SqlResourceStore
from medhub.timeseries.sample_store import SampleStore
from medhub.timeseries.schema import migrate
from medhub.wiring_alerts import build_alerts
from medhub.wiring_device_alarms import DeviceAlarmHandler
from medhub.wiring_devices import build_devices

T0 = datetime(2026, 11, 21, 10, 0, tzinfo=UTC)


class Bound:
    """Attribution to a fixed patient, recording what it was asked."""

    def __init__(self, patient: str | None) -> None:
        self.patient = patient
        self.asked: list[tuple[str, datetime]] = []

    def attribute(self, device_id: str, device_time: datetime) -> tuple[datetime, str | None]:
        self.asked.append((device_id, device_time))
        return device_time + timedelta(seconds=2), self.patient


def alarm(phase: str = "start", **changes: object) -> DeviceAlert:
    fields: dict[str, object] = {
        "device_id": "pump-1",
        "code": "OCCL",
        "priority": "high",
        "text": "occlusion downstream",
        "device_time": T0,
        "phase": phase,
        "alarm_id": "a-7",
        "kind": "technical",
        "mdc": "196616",
    }
    fields.update(changes)
    return DeviceAlert(**fields)  # type: ignore[arg-type]


def rows(store: SqlResourceStore) -> list[AlertRow]:
    with store.session() as session:
        return list(session.scalars(select(AlertRow).order_by(AlertRow.raised_at)))


def topics(store: SqlResourceStore) -> list[str]:
    with store.session() as session:
        return [
            r.topic for r in session.scalars(select(OutboxEventRow).order_by(OutboxEventRow.id))
        ]


def test_start_continue_duplicate_and_end_make_one_alert(store: SqlResourceStore) -> None:
    attribution = Bound("p-9")
    handler = DeviceAlarmHandler(AlertService(store), attribution)
    handler([alarm(), alarm()])  # a duplicate in the same batch
    handler([alarm("continue", device_time=T0 + timedelta(seconds=30))])
    handler([alarm()])  # the start redelivered
    [row] = rows(store)
    assert (row.state, row.patient_id, row.condition) == (
        "raised",
        "p-9",
        int(Condition.DEVICE_TECHNICAL),
    )
    assert (row.vital, row.source_alarm_id, row.alarm_code, row.event_code, row.text) == (
        "device",
        "a-7",
        "OCCL",
        "196616",
        "occlusion downstream",
    )
    assert row.raised_at == T0 + timedelta(seconds=2)  # medhub's clock, not the device's
    assert row.observation_id is None and row.flag_id is not None  # no value: no Observation
    handler([alarm("end", device_time=T0 + timedelta(minutes=1))])
    handler([alarm()])  # a very late redelivery of the start after its end: not raised again
    [row] = rows(store)
    assert row.state == "resolved"
    assert topics(store) == ["alert.raised", "alert.resolved"]
    assert handler.stored == 6 and handler.refused == 0  # duplicates included


def test_a_physiological_alarm_records_its_value(store: SqlResourceStore) -> None:
    handler = DeviceAlarmHandler(AlertService(store), Bound(None))
    handler(
        [
            alarm(
                kind="physiological",
                vital="oxygen-saturation",
                value=86.0,
                limit=90.0,
                unit="%",
                alarm_id="s-1",
                priority="medium",
            )
        ]
    )
    [row] = rows(store)
    assert (row.condition, row.priority, row.patient_id) == (
        int(Condition.DEVICE_PHYSIOLOGICAL),
        2,
        None,
    )
    assert (row.value, row.limit_value, row.unit) == (86.0, 90.0, "%")
    assert row.observation_id is not None and row.flag_id is None  # bound to nobody: no Flag


def test_information_signals_and_unstorable_alarms_are_counted_not_stored(
    store: SqlResourceStore,
) -> None:
    handler = DeviceAlarmHandler(AlertService(store), Bound("p-1"))
    handler([alarm(priority="info"), alarm(channel="c" * 100, alarm_id="wide"), alarm()])
    assert [r.source_alarm_id for r in rows(store)] == ["a-7"]
    assert (handler.informational, handler.refused, handler.stored) == (1, 1, 1)


def test_a_database_outage_is_raised_so_the_message_is_not_acked(
    sqlite_store: SqlResourceStore,
) -> None:
    class Down(AlertService):
        def apply(self, events: Sequence[AlarmEvent | AlertEdge]) -> list[Alert]:  # noqa: ARG002
            raise StoreUnavailableError("database down")

    handler = DeviceAlarmHandler(Down(sqlite_store), Bound("p-1"))
    with pytest.raises(StoreUnavailableError):
        handler([alarm()])


def test_ingest_attributes_an_alarm_to_the_patient_bound_at_its_time(
    sqlite_store: SqlResourceStore, tmp_path: Path
) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'samples.db'}")
    migrate(engine)
    registry = DeviceRegistry(sqlite_store)
    registry.ensure_devices(["mon-b"])
    with sqlite_store.unit_of_work() as resources:
        old = resources.create({"resourceType": "Patient"}).id
        new = resources.create({"resourceType": "Patient"}).id
    registry.bind("mon-b", old, T0 - timedelta(hours=2))
    registry.bind("mon-b", new, T0)  # ends the first binding at T0
    ingest = DeviceIngest(SampleStore(engine), registry)
    assert ingest.attribute("mon-b", T0 - timedelta(minutes=1)) == (
        T0 - timedelta(minutes=1),
        old,
    )
    assert ingest.attribute("mon-b", T0) == (T0, new)
    assert ingest.attribute("other", T0) == (T0, None)
    engine.dispose()


def test_serve_wires_acknowledgements_news2_and_device_alarms(
    sqlite_store: SqlResourceStore, tmp_path: Path
) -> None:
    settings = Settings(
        database_url=f"sqlite:///{tmp_path / 'medhub.db'}",
        timeseries_url=f"sqlite:///{tmp_path / 'samples.db'}",
        mqtt_url="mqtt://127.0.0.1:1",
        alerts={"ack_silence_seconds": 30},
        news2={"max_age_seconds": 1800, "every_seconds": 15},
    )
    engine = make_engine(f"sqlite:///{tmp_path / 'samples.db'}")
    samples = SampleStore(engine)
    alerts = build_alerts(settings, sqlite_store, samples)
    assert alerts.watch.acknowledged in alerts.service.acknowledge_listeners
    assert alerts.news2 is not None and alerts.scorer is alerts.news2.service
    assert alerts.scorer.samples is samples
    assert alerts.scorer.max_age == timedelta(minutes=30)
    devices = build_devices(settings, sqlite_store, samples=samples, alerts=alerts.service)
    assert devices.mqtt is not None
    assert isinstance(devices.mqtt._on_alerts, DeviceAlarmHandler)
    quiet = Settings(
        database_url=f"sqlite:///{tmp_path / 'medhub.db'}",
        news2={"alerts": False},
        alerts={"device_alarms": False},
        mqtt_url="mqtt://127.0.0.1:1",
    )
    assert build_alerts(quiet, sqlite_store, samples).news2 is None
    off = build_devices(quiet, sqlite_store, samples=samples, alerts=alerts.service)
    assert off.mqtt is not None and not isinstance(off.mqtt._on_alerts, DeviceAlarmHandler)
    engine.dispose()
