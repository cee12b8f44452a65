"""Alert transitions and detector throughput, counted on the real ingest -> detector -> store."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from medhub.cds.alert_store import AlertService
from medhub.cds.vital_watch import VitalWatch
from medhub.db.engine import make_engine
from medhub.devices.ingest import DeviceIngest
from medhub.devices.registry import DeviceRegistry
from medhub.fhir.sql_store import SqlResourceStore
from medhub.timeseries.sample_store import SampleStore
from medhub.timeseries.schema import migrate
from tests.cds.test_vital_watch import heart_rates
from tests.scrape import Delta, current

ALERTS = "medhub_alerts_total"


def test_each_committed_transition_counts_once_by_severity_and_state(
    sqlite_store: SqlResourceStore, tmp_path: Path
) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'samples.db'}")
    migrate(engine)
    service = AlertService(sqlite_store)
    ingest = DeviceIngest(SampleStore(engine), DeviceRegistry(sqlite_store))
    ingest.add_listener(VitalWatch(service))
    delta = Delta()
    # 80/min, then 150/min (above the critical 120) for a minute: one high-priority alert
    values = [80.0] * 30 + [150.0] * 60
    for start in range(0, len(values), 20):
        batch = heart_rates("mon-metrics", values)[start : start + 20]
        ingest.store(batch, received_at=batch[-1].device_time + timedelta(milliseconds=10))
    [alert] = service.open_alerts()
    escalated = service.escalate_due(now=alert.raised_at + timedelta(minutes=5), after=timedelta(0))
    assert [a.id for a in escalated] == [alert.id]
    service.acknowledge(alert.id, by="nurse-7")
    service.acknowledge(alert.id, by="nurse-8")  # a second acknowledgement changes nothing
    recovery = heart_rates("mon-metrics", [80.0] * 120)
    for start in range(0, 120, 20):
        batch = [s._replace(device_time=s.device_time + timedelta(minutes=2)) for s in recovery]
        batch = batch[start : start + 20]
        ingest.store(batch, received_at=batch[-1].device_time + timedelta(milliseconds=10))
    engine.dispose()
    after = current()
    severity = alert.severity
    assert severity == "high"
    for state in ("raised", "escalated", "acknowledged", "resolved"):
        assert delta(ALERTS, after, severity=severity, state=state) == 1, state
    assert delta("medhub_detector_samples_total", after) == len(values) + 120
    assert delta("medhub_detector_seconds_count", after) == 5 + 6  # one per ingest batch
