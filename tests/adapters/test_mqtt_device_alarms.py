"""Device alarms over the real Mosquitto: stored as alerts before the PUBACK, bad ones refused.

The consumer runs with the handler ``medhub serve`` wires
(:class:`medhub.wiring_device_alarms.DeviceAlarmHandler` on a real
:class:`~medhub.cds.alert_store.AlertService` and device ingest, SQLite).
Each test has its own topic prefix, so other traffic on the shared broker
(benchmarks, other suites) never reaches its consumer and every count is exact.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from datetime import timedelta

import orjson
from sqlalchemy import select

from medhub.adapters.mqtt_ingest import IngestOptions, MqttIngest
from medhub.cds.alert_edges import AlertEdge
from medhub.cds.alert_store import AlertRow, AlertService
from medhub.cds.alerts import Alert
from medhub.cds.detector import AlarmEvent
from medhub.db.outbox import OutboxEventRow
from medhub.errors import StoreUnavailableError
from medhub.fhir.sql_store import SqlResourceStore
from medhub.wiring_device_alarms import DeviceAlarmHandler
from tests.adapters.test_mqtt_ingest import (
    T0,
    Consumers,
    Parts,
    Publisher,
    iso,
    wait_until,
)
from tests.adapters.test_mqtt_ingest import broker as _broker_fixture
from tests.adapters.test_mqtt_ingest import consumers as _consumers_fixture
from tests.adapters.test_mqtt_ingest import parts as _parts_fixture
from tests.adapters.test_mqtt_ingest import publisher as _publisher_fixture
from tests.adapters.test_mqtt_ingest import uid as _uid_fixture

# The fixtures of the MQTT ingest suite, under their own names here.
broker = _broker_fixture
consumers = _consumers_fixture
parts = _parts_fixture
publisher = _publisher_fixture
uid = _uid_fixture


def start(consumers: Consumers, uid: str, parts: Parts, handler: DeviceAlarmHandler) -> MqttIngest:
    """A consumer on this test's own topic prefix, with the device-alarm handler."""
    return consumers.start(
        f"medhub-test-{uid}",
        parts.ingest,
        options=IngestOptions(topic_prefix=f"t{uid}", batch_seconds=0.01),
        on_alerts=handler,
        rejections=parts.ingest,
    )


def alerts_of(store: SqlResourceStore, device: str) -> list[AlertRow]:
    with store.session() as session:
        query = select(AlertRow).where(AlertRow.device_id == device).order_by(AlertRow.raised_at)
        return list(session.scalars(query))


def topics(store: SqlResourceStore) -> list[str]:
    with store.session() as session:
        rows = session.scalars(select(OutboxEventRow).order_by(OutboxEventRow.id))
        return [row.topic for row in rows]


def spo2_alarm(phase: str, minute: int = 0, **extra: object) -> bytes:
    return orjson.dumps(
        {
            "ts": iso(T0 + timedelta(minutes=minute)),
            "id": "al-1",
            "code": "SPO2_LO",
            "mdc": "196670",
            "priority": "high",
            "phase": phase,
            "vital": "spo2",
            "value": 84,
            "limit": 90,
            "unit": "%",
            "text": "SpO2 LOW 84 < 90",
            **extra,
        }
    )


def test_a_device_alarm_is_raised_deduplicated_and_resolved(
    consumers: Consumers, parts: Parts, uid: str, publisher: Publisher
) -> None:
    device = f"t{uid}-alarm"
    with parts.store.unit_of_work() as resources:
        patient = resources.create({"resourceType": "Patient"}).id
    parts.registry.ensure_devices([device])
    parts.registry.bind(device, patient, T0 - timedelta(hours=1))
    handler = DeviceAlarmHandler(AlertService(parts.store), parts.ingest)
    consumer = start(consumers, uid, parts, handler)
    topic = f"t{uid}/{device}/alerts"
    publisher.send(topic, spo2_alarm("start"))
    publisher.send(topic, spo2_alarm("start"))  # the device repeats itself
    publisher.send(topic, spo2_alarm("continue", 1))
    wait_until(lambda: consumer.stats.messages == 3, "the start, its repeat and a continue")
    [alert] = alerts_of(parts.store, device)  # acked only once stored: it is there now
    assert (alert.state, alert.patient_id, alert.vital) == ("raised", patient, "oxygen-saturation")
    assert (alert.value, alert.limit_value, alert.source_alarm_id, alert.event_code) == (
        84.0,
        90.0,
        "al-1",
        "196670",
    )
    publisher.send(topic, spo2_alarm("end", 2, value=93))
    wait_until(lambda: consumer.stats.messages == 4, "the end")
    [alert] = alerts_of(parts.store, device)
    assert (alert.state, alert.resolved_value) == ("resolved", 93.0)
    assert topics(parts.store) == ["alert.raised", "alert.resolved"]
    consumer.stop(timeout=5)


def test_malformed_alarms_are_counted_and_the_good_ones_kept(
    consumers: Consumers, parts: Parts, uid: str, publisher: Publisher
) -> None:
    device = f"t{uid}-bad"
    handler = DeviceAlarmHandler(AlertService(parts.store), parts.ingest)
    consumer = start(consumers, uid, parts, handler)
    topic = f"t{uid}/{device}/alerts"
    publisher.send(topic, b"{not json")
    publisher.send(topic, orjson.dumps({"ts": iso(T0), "code": "X", "priority": "urgent"}))
    mixed = {
        "ts": iso(T0),
        "alerts": [
            {"code": "LEAD_OFF", "priority": "medium", "kind": "technical", "id": "t-1"},
            {"code": "HR_HI", "priority": "high", "vital": "hr", "value": 190},  # no unit
            {"code": "NOTE", "priority": "info"},
        ],
    }
    publisher.send(topic, orjson.dumps(mixed))
    wait_until(lambda: consumer.stats.messages == 3, "all three messages")
    assert consumer.stats.messages_rejected == 2  # the two with nothing usable
    assert consumer.stats.samples_rejected == 3  # ... and the alarm without a unit
    reasons = " | ".join(r.reason for r in consumer.recent_rejections)
    assert "not JSON" in reasons and "priority" in reasons and "unit is missing" in reasons
    [alert] = alerts_of(parts.store, device)
    assert (alert.source_alarm_id, alert.vital, alert.patient_id) == ("t-1", "device", None)
    assert handler.informational == 1
    consumer.stop(timeout=5)


class FlakyAlerts(AlertService):
    """The real service behind a switch: while ``down``, every apply fails like a database."""

    def __init__(self, store: SqlResourceStore) -> None:
        super().__init__(store)
        self.down = threading.Event()
        self.failures = 0

    def apply(self, events: Sequence[AlarmEvent | AlertEdge]) -> list[Alert]:
        if self.down.is_set():
            self.failures += 1
            raise StoreUnavailableError("the resource database failed: connection refused")
        return super().apply(events)


def test_the_alarm_is_acked_only_after_its_alert_is_stored(
    consumers: Consumers, parts: Parts, uid: str, publisher: Publisher
) -> None:
    device = f"t{uid}-later"
    alerts = FlakyAlerts(parts.store)
    alerts.down.set()
    consumer = start(consumers, uid, parts, DeviceAlarmHandler(alerts, parts.ingest))
    publisher.send(f"t{uid}/{device}/alerts", spo2_alarm("start"))
    wait_until(lambda: alerts.failures >= 2, "the store failing, retried")
    assert consumer.stats.messages == 0  # not acked while the alert cannot be stored
    assert alerts_of(parts.store, device) == []
    alerts.down.clear()
    wait_until(lambda: consumer.stats.messages == 1, "stored once the store is back")
    assert [a.state for a in alerts_of(parts.store, device)] == ["raised"]
    consumer.stop(timeout=5)
    # the same session again: had the message not been acked, the broker would resend it
    again = start(consumers, uid, parts, DeviceAlarmHandler(alerts, parts.ingest))
    publisher.send(f"t{uid}/{device}/alerts", spo2_alarm("end", 5))
    wait_until(lambda: again.stats.messages >= 1, "the marker alarm")
    assert again.stats.messages == 1
    assert topics(parts.store) == ["alert.raised", "alert.resolved"]
