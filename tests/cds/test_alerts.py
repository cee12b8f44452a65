"""The alert lifecycle, pure and stored: one transaction per batch, FHIR resources, events."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta

import orjson
import pytest
from sqlalchemy import func, select

from medhub.cds import alerts as lifecycle
from medhub.cds.alarm_codes import Condition, Priority, Transition
from medhub.cds.alert_store import AlertService
from medhub.cds.alerts import Alert
from medhub.cds.detector import AlarmEvent, StreamKey, to_us
from medhub.db.outbox import OutboxEventRow
from medhub.errors import ConflictError, InputError, NotFoundError
from medhub.fhir.sql_store import SqlResourceStore
from medhub.fhir.sql_tables import ResourceRow

T0 = datetime(2026, 11, 22, 3, 0, tzinfo=UTC)
KEY = StreamKey("heart-rate", "monitor-1", "ecg", "p1")


def edge(
    transition: Transition,
    *,
    key: StreamKey = KEY,
    condition: Condition = Condition.CRITICAL_HIGH,
    at: datetime = T0,
    value: float = 152.0,
    limit: float = 140.0,
) -> AlarmEvent:
    priority = Priority.LOW if condition is Condition.SIGNAL_LOST else Priority.HIGH
    return AlarmEvent(0, key, condition, transition, priority, to_us(at), value, limit, False)


def outbox(store: SqlResourceStore) -> list[OutboxEventRow]:
    with store.session() as session:
        return list(session.scalars(select(OutboxEventRow).order_by(OutboxEventRow.id)))


def service(store: SqlResourceStore) -> AlertService:
    return AlertService(store, clock=lambda: T0)


def test_a_start_stores_the_alert_its_flag_observation_and_event(
    store: SqlResourceStore,
) -> None:
    [alert] = service(store).apply([edge(Transition.START)])
    assert (alert.state, alert.severity, alert.unit) == ("raised", "high", "/min")
    assert alert.routing_key == "alerts.high.heart-rate./min"
    with store.unit_of_work() as unit:
        assert alert.flag_id is not None and alert.observation_id is not None
        flag = unit.read("Flag", alert.flag_id).resource
        observation = unit.read("Observation", alert.observation_id).resource
    assert flag["status"] == "active"
    assert flag["subject"] == {"reference": "Patient/p1"}
    assert observation["valueQuantity"]["value"] == 152.0
    assert observation["code"]["coding"][0]["code"] == "8867-4"
    assert observation["interpretation"][0]["coding"][0]["code"] == "HH"
    [row] = outbox(store)
    assert (row.topic, row.routing_key, row.status) == (
        "alert.raised",
        "alerts.high.heart-rate./min",
        "pending",
    )
    body = orjson.loads(row.payload)
    assert body["alert_id"] == alert.id
    assert (body["patient"], body["device"], body["value"], body["limit"]) == (
        "p1",
        "monitor-1",
        152.0,
        140.0,
    )


def test_a_start_while_the_same_alert_is_open_raises_nothing(store: SqlResourceStore) -> None:
    alerts = service(store)
    first = alerts.apply([edge(Transition.START), edge(Transition.START)])
    again = alerts.apply([edge(Transition.START, at=T0 + timedelta(seconds=5))])
    other = alerts.apply([edge(Transition.START, condition=Condition.RATE)])
    assert (len(first), again, len(other)) == (1, [], 1)
    assert len(alerts.open_alerts(patient_id="p1")) == 2
    assert len(outbox(store)) == 2


def test_an_end_resolves_the_alert_and_deactivates_its_flag(store: SqlResourceStore) -> None:
    alerts = service(store)
    [raised] = alerts.apply([edge(Transition.START)])
    end = T0 + timedelta(minutes=2)
    [resolved] = alerts.apply([edge(Transition.END, at=end, value=120.0)])
    assert (resolved.id, resolved.state, resolved.resolved_at) == (raised.id, "resolved", end)
    assert raised.flag_id is not None
    with store.unit_of_work() as unit:
        flag = unit.read("Flag", raised.flag_id).resource
    assert flag["status"] == "inactive"
    assert flag["period"]["end"].startswith("2026-11-22T03:02:00")
    assert [r.topic for r in outbox(store)] == ["alert.raised", "alert.resolved"]
    # Resolved: the next START is a new alert.
    [second] = alerts.apply([edge(Transition.START, at=end + timedelta(minutes=1))])
    assert second.id != raised.id


def test_an_end_without_an_open_alert_changes_nothing(store: SqlResourceStore) -> None:
    assert service(store).apply([edge(Transition.END)]) == []
    assert outbox(store) == []


def test_acknowledge_records_who_and_when_once(store: SqlResourceStore) -> None:
    alerts = service(store)
    [raised] = alerts.apply([edge(Transition.START)])
    later = T0 + timedelta(seconds=30)
    acked = alerts.acknowledge(raised.id, by="Practitioner/nurse-7", now=later)
    again = alerts.acknowledge(raised.id, by="Practitioner/other", now=later + timedelta(1))
    assert (acked.state, acked.acknowledged_by, acked.acknowledged_at) == (
        "acknowledged",
        "Practitioner/nurse-7",
        later,
    )
    assert again == acked
    assert alerts.get(raised.id) == acked
    assert [r.topic for r in outbox(store)] == ["alert.raised", "alert.acknowledged"]
    with pytest.raises(NotFoundError):
        alerts.acknowledge("no-such-alert", by="x")


def test_a_resolved_alert_cannot_be_acknowledged(store: SqlResourceStore) -> None:
    alerts = service(store)
    [raised] = alerts.apply([edge(Transition.START)])
    alerts.apply([edge(Transition.END, at=T0 + timedelta(seconds=10))])
    with pytest.raises(ConflictError):
        alerts.acknowledge(raised.id, by="nurse")


def test_escalation_takes_only_unacknowledged_alerts_past_their_time(
    store: SqlResourceStore,
) -> None:
    alerts = service(store)
    [unanswered] = alerts.apply([edge(Transition.START)])
    [answered] = alerts.apply([edge(Transition.START, condition=Condition.RATE)])
    alerts.acknowledge(answered.id, by="nurse", now=T0 + timedelta(seconds=20))
    after = timedelta(minutes=2)
    assert alerts.escalate_due(now=T0 + timedelta(minutes=1), after=after) == []
    [escalated] = alerts.escalate_due(now=T0 + after, after=after)
    assert (escalated.id, escalated.state, escalated.escalated_at) == (
        unanswered.id,
        "escalated",
        T0 + after,
    )
    assert alerts.escalate_due(now=T0 + 2 * after, after=after) == []
    # An escalated alert can still be acknowledged, and stays open until it resolves.
    acked = alerts.acknowledge(unanswered.id, by="charge-nurse", now=T0 + 2 * after)
    assert (acked.state, acked.escalated_at) == ("acknowledged", T0 + after)
    topics = [r.topic for r in outbox(store)]
    assert topics.count("alert.escalated") == 1


def test_an_unbound_device_alerts_without_a_flag(store: SqlResourceStore) -> None:
    key = StreamKey("oxygen-saturation", "oximeter-9", "spo2", None)
    alerts = AlertService(store, clock=lambda: T0)
    lost = edge(Transition.START, key=key, condition=Condition.SIGNAL_LOST, value=math.nan)
    [alert] = alerts.apply([lost])
    assert (alert.patient_id, alert.flag_id, alert.severity) == (None, None, "low")
    assert math.isnan(alert.value)
    assert alert.observation_id is not None
    with store.unit_of_work() as unit:
        observation = unit.read("Observation", alert.observation_id).resource
    assert "subject" not in observation and "valueQuantity" not in observation
    assert orjson.loads(outbox(store)[0].payload)["value"] is None
    # Deduplicated on the same (patient-less) stream too.
    assert alerts.apply([lost]) == []


def test_the_patient_lookup_attributes_a_device_stream(store: SqlResourceStore) -> None:
    key = StreamKey("heart-rate", "monitor-2", "ecg", None)
    seen: list[tuple[StreamKey, datetime]] = []

    def patient_for(stream: StreamKey, at: datetime) -> str | None:
        # A real lookup reads the device binding in a transaction of its own.
        with store.session() as session:
            session.execute(select(func.count()).select_from(ResourceRow))
        seen.append((stream, at))
        return "p2"

    alerts = AlertService(store, clock=lambda: T0, patient_for=patient_for)
    [alert] = alerts.apply([edge(Transition.START, key=key)])
    assert alert.patient_id == "p2" and alert.flag_id is not None
    assert seen == [(key, T0)]
    # Retrying the same batch (say after a store failure) changes nothing already stored.
    assert alerts.apply([edge(Transition.START, key=key)]) == []


def test_a_batch_is_one_transaction(store: SqlResourceStore) -> None:
    def patient_for(stream: StreamKey, at: datetime) -> str | None:  # noqa: ARG001
        if stream.device_id == "broken":
            raise LookupError("the device registry is unreachable")
        return "p3"

    alerts = AlertService(store, clock=lambda: T0, patient_for=patient_for)
    good = edge(Transition.START, key=StreamKey("heart-rate", "monitor-3", "ecg", None))
    bad = edge(Transition.START, key=StreamKey("heart-rate", "broken", "ecg", None))
    with pytest.raises(LookupError):
        alerts.apply([good, bad])
    assert alerts.open_alerts() == [] and outbox(store) == []
    with store.session() as session:
        assert session.scalar(select(func.count()).select_from(ResourceRow)) == 0


def test_the_pure_transitions() -> None:
    alert = Alert(
        "a1", "p1", "d1", "", "heart-rate", Condition.HIGH, Priority.MEDIUM, "raised",
        130.0, 120.0, "/min", T0,
    )  # fmt: skip
    assert lifecycle.routing_word("mL/(kg.min)") == "mL/(kg_min)"
    assert lifecycle.routing_word("") == "1"
    assert lifecycle.due_for_escalation(alert, now=T0 + timedelta(60), after=timedelta(1))
    with pytest.raises(InputError):
        lifecycle.acknowledge(alert, by=" ", now=T0)
    escalated = lifecycle.escalate(alert, now=T0)
    with pytest.raises(ConflictError):
        lifecycle.escalate(escalated, now=T0)
    resolved = lifecycle.resolve(escalated, now=T0, value=100.0)
    assert not resolved.is_open
    assert lifecycle.resolve(resolved, now=T0 + timedelta(1), value=None) == resolved
