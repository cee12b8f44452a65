"""Alerts in SQL, their FHIR resources, and their events, committed together.

:class:`AlertService` turns the detector's alarm edges into stored alerts. One
batch of events is one transaction, in which each change writes

* the ``alert`` row (the lifecycle of :mod:`medhub.cds.alerts`),
* FHIR resources through :class:`~medhub.fhir.sql_store.SqlResources`: an
  Observation of the triggering value and, when the patient is known, a Flag
  (FHIR R4 flag.html: ``active`` while the alert is open, ``inactive`` with
  ``period.end`` once resolved; a Flag's subject cannot be a Device, so an
  alert from a device bound to nobody has the Observation only),
* a :class:`~medhub.db.outbox.DomainEvent` in the transactional outbox,

so an alert exists exactly when its event will be published, even if the
broker is down at that moment (DESIGN.md, "Reliability rules").

A START for a stream and condition that already has an open alert raises
nothing new: the detector restarts after a process restart, and a
re-raised alarm would page the nurse twice for one condition.
"""

from __future__ import annotations

import math
import uuid
from collections.abc import Callable, Sequence
from dataclasses import replace
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Final

from sqlalchemy import Float, Index, Integer, String, select
from sqlalchemy.orm import Mapped, Session, mapped_column

from medhub.cds import alerts as lifecycle
from medhub.cds.alarm_codes import Condition, Priority, Transition
from medhub.cds.alerts import OPEN_STATES, Alert, AlertState
from medhub.clinical.vital_codes import UCUM_SYSTEM, device_vital, vital_signs_category
from medhub.db.base import MYSQL_TABLE_OPTIONS, Base, UtcDateTime
from medhub.db.outbox import DomainEvent, SqlEventOutbox
from medhub.errors import NotFoundError
from medhub.fhir.sql_store import SqlResources, SqlResourceStore
from medhub.fhir.store import format_instant
from medhub.fhir.write_rules import utc_now

if TYPE_CHECKING:  # the detector pulls in numba, which migrations need not load
    from medhub.cds.detector import AlarmEvent, StreamKey

#: Code system of the alert conditions in ``Flag.code`` (medhub's own, lower-case names).
CONDITION_SYSTEM: Final = "urn:medhub:alert-condition"
FLAG_CATEGORY_SYSTEM: Final = "http://terminology.hl7.org/CodeSystem/flag-category"
INTERPRETATION_SYSTEM: Final = "http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation"
#: The v3 ObservationInterpretation code of each limit condition (rate and signal lost have none).
_INTERPRETATION: Final[dict[Condition, str]] = {
    Condition.LOW: "L",
    Condition.HIGH: "H",
    Condition.CRITICAL_LOW: "LL",
    Condition.CRITICAL_HIGH: "HH",
}

#: Who a stream's samples are about when its key does not say (device binding at that time).
PatientLookup = Callable[["StreamKey", datetime], "str | None"]
#: Told of every alert change inside its transaction (e.g. to queue an HL7 PCD-04 report).
AlertChangeHook = Callable[[Session, Alert], None]


class AlertRow(Base):
    __tablename__ = "alert"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    patient_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    device_id: Mapped[str] = mapped_column(String(64))
    channel: Mapped[str] = mapped_column(String(64))
    vital: Mapped[str] = mapped_column(String(64))
    condition: Mapped[int] = mapped_column(Integer)
    priority: Mapped[int] = mapped_column(Integer)
    state: Mapped[str] = mapped_column(String(16))
    #: NULL for "signal lost" (the detector's NaN: MariaDB cannot store NaN).
    value: Mapped[float | None] = mapped_column(Float, nullable=True)
    limit_value: Mapped[float | None] = mapped_column(Float, nullable=True)
    unit: Mapped[str] = mapped_column(String(32))
    raised_at: Mapped[datetime] = mapped_column(UtcDateTime)
    acknowledged_at: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)
    acknowledged_by: Mapped[str | None] = mapped_column(String(128), nullable=True)
    escalated_at: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)
    resolved_at: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)
    resolved_value: Mapped[float | None] = mapped_column(Float, nullable=True)
    flag_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    observation_id: Mapped[str | None] = mapped_column(String(64), nullable=True)

    __table_args__ = (
        # The duplicate check: the open alert of one stream and condition.
        Index("ix_alert_stream", "device_id", "vital", "condition", "state"),
        Index("ix_alert_patient", "patient_id", "state"),
        # Escalation: raised alerts, oldest first.
        Index("ix_alert_state_raised", "state", "raised_at"),
        MYSQL_TABLE_OPTIONS,
    )


def _finite(value: float | None) -> float | None:
    return None if value is None or math.isnan(value) or math.isinf(value) else value


def _view(row: AlertRow) -> Alert:
    state: AlertState = row.state  # type: ignore[assignment]
    return Alert(
        id=row.id,
        patient_id=row.patient_id,
        device_id=row.device_id,
        channel=row.channel,
        vital=row.vital,
        condition=Condition(row.condition),
        priority=Priority(row.priority),
        state=state,
        value=math.nan if row.value is None else row.value,
        limit=math.nan if row.limit_value is None else row.limit_value,
        unit=row.unit,
        raised_at=row.raised_at,
        acknowledged_at=row.acknowledged_at,
        acknowledged_by=row.acknowledged_by,
        escalated_at=row.escalated_at,
        resolved_at=row.resolved_at,
        resolved_value=row.resolved_value,
        flag_id=row.flag_id,
        observation_id=row.observation_id,
    )


def _store(row: AlertRow, alert: Alert) -> None:
    row.state = alert.state
    row.acknowledged_at, row.acknowledged_by = alert.acknowledged_at, alert.acknowledged_by
    row.escalated_at, row.resolved_at = alert.escalated_at, alert.resolved_at
    row.resolved_value = _finite(alert.resolved_value)


def _instant(moment: datetime | None) -> str | None:
    return None if moment is None else format_instant(moment)


def alert_payload(alert: Alert) -> dict[str, Any]:
    """The JSON body published for an alert change (the same for RabbitMQ and the bus)."""
    return {
        "alert_id": alert.id,
        "state": alert.state,
        "patient": alert.patient_id,
        "device": alert.device_id,
        "channel": alert.channel,
        "vital": alert.vital,
        "condition": alert.condition.name.lower(),
        "severity": alert.severity,
        "value": _finite(alert.value),
        "limit": _finite(alert.limit),
        "unit": alert.unit,
        "raised_at": _instant(alert.raised_at),
        "acknowledged_at": _instant(alert.acknowledged_at),
        "acknowledged_by": alert.acknowledged_by,
        "escalated_at": _instant(alert.escalated_at),
        "resolved_at": _instant(alert.resolved_at),
        "resolved_value": _finite(alert.resolved_value),
        "flag": None if alert.flag_id is None else f"Flag/{alert.flag_id}",
        "observation": None
        if alert.observation_id is None
        else f"Observation/{alert.observation_id}",
    }


def alert_event(alert: Alert) -> DomainEvent:
    """Topic ``alert.<state>``; routing key ``alerts.<severity>.<vital>.<unit>``."""
    return DomainEvent(
        topic=f"alert.{alert.state}", routing_key=alert.routing_key, payload=alert_payload(alert)
    )


def _describe(alert: Alert) -> str:
    what = alert.condition.name.lower().replace("_", " ")
    if alert.condition is Condition.SIGNAL_LOST:
        return f"{alert.vital}: signal lost"
    return f"{alert.vital} {what}: {alert.value:g} {alert.unit} (limit {alert.limit:g})"


def observation_resource(alert: Alert) -> dict[str, Any]:
    """The triggering value as a vital-signs Observation (LOINC code, UCUM quantity)."""
    vital = device_vital(alert.vital)
    code: dict[str, Any] = {"text": alert.vital}
    if vital is not None and vital.loinc:
        code["coding"] = vital.loinc_codings()
    resource: dict[str, Any] = {
        "resourceType": "Observation",
        "status": "final",
        "category": [vital_signs_category()],
        "code": code,
        "effectiveDateTime": format_instant(alert.raised_at),
        "device": {"display": alert.device_id},
    }
    if alert.patient_id is not None:
        resource["subject"] = {"reference": f"Patient/{alert.patient_id}"}
    value = _finite(alert.value)
    if value is None:
        resource["dataAbsentReason"] = {"text": "signal lost"}
    else:
        resource["valueQuantity"] = {
            "value": value,
            "unit": alert.unit,
            "system": UCUM_SYSTEM,
            "code": alert.unit,
        }
    interpretation = _INTERPRETATION.get(alert.condition)
    if interpretation is not None:
        resource["interpretation"] = [
            {"coding": [{"system": INTERPRETATION_SYSTEM, "code": interpretation}]}
        ]
    return resource


def flag_resource(alert: Alert) -> dict[str, Any]:
    """The alert as a Flag on the patient: active while open, inactive once resolved."""
    period = {"start": format_instant(alert.raised_at)}
    if alert.resolved_at is not None:
        period["end"] = format_instant(alert.resolved_at)
    return {
        "resourceType": "Flag",
        "status": "inactive" if alert.state == "resolved" else "active",
        "category": [{"coding": [{"system": FLAG_CATEGORY_SYSTEM, "code": "clinical"}]}],
        "code": {
            "coding": [{"system": CONDITION_SYSTEM, "code": alert.condition.name.lower()}],
            "text": _describe(alert),
        },
        "subject": {"reference": f"Patient/{alert.patient_id}"},
        "period": period,
    }


class AlertService:
    """Stores alert changes with their FHIR resources and outbox events, one transaction each call.

    ``on_commit`` is called after a transaction that enqueued events committed,
    so a relay can wake up instead of waiting for its next poll. ``patient_for``
    attributes a stream whose key names no patient (the device binding at the
    event's time); it may read the database. ``on_change`` is called with the
    session and the changed alert inside the transaction of every change, after
    its outbox event: what it writes commits, or rolls back, with the alert.

    :meth:`apply` may be retried with the same batch after a failure (the
    store was down): a START already stored is a duplicate and an END of a
    resolved alert finds nothing open, so a retry changes only what is missing.
    """

    def __init__(
        self,
        store: SqlResourceStore,
        *,
        patient_for: PatientLookup | None = None,
        clock: Callable[[], datetime] = utc_now,
        on_commit: Callable[[], None] | None = None,
        on_change: AlertChangeHook | None = None,
    ) -> None:
        self.store = store
        self._patient_for = patient_for
        self._clock = clock
        self._on_commit = on_commit
        self._on_change = on_change

    def apply(self, events: Sequence[AlarmEvent]) -> list[Alert]:
        """Raise alerts for STARTs, resolve them for ENDs; returns the alerts that changed."""
        if not events:
            return []
        changed: list[Alert] = []
        now = self._clock()
        # Looked up before the transaction: the lookup reads the database on its own
        # session, which on SQLite would wait for this transaction's write lock.
        patients = [self._patient(event) for event in events]
        with self.store.session() as session:
            resources = SqlResources(session, clock=self._clock)
            outbox = SqlEventOutbox(session)
            for event, patient in zip(events, patients, strict=True):
                if event.transition is Transition.START:
                    alert = self._raise(session, resources, event, patient)
                else:
                    alert = self._resolve(session, resources, event, patient)
                if alert is not None:
                    outbox.enqueue(alert_event(alert), now=now)
                    self._tell(session, alert)
                    changed.append(alert)
        self._committed(changed)
        return changed

    def acknowledge(self, alert_id: str, *, by: str, now: datetime | None = None) -> Alert:
        """Record who acknowledged the alert; publishes ``alert.acknowledged`` the first time."""
        moment = self._clock() if now is None else now
        with self.store.session() as session:
            row = self._row(session, alert_id)
            before = _view(row)
            alert = lifecycle.acknowledge(before, by=by, now=moment)
            if alert != before:
                _store(row, alert)
                SqlEventOutbox(session).enqueue(alert_event(alert), now=moment)
                self._tell(session, alert)
        self._committed([alert] if alert != before else [])
        return alert

    def escalate_due(self, *, now: datetime, after: timedelta) -> list[Alert]:
        """Escalate every alert raised at least ``after`` ago and still unacknowledged.

        Rows are locked with SKIP LOCKED on PostgreSQL and MariaDB so two
        workers running this at once escalate each alert once.
        """
        escalated: list[Alert] = []
        with self.store.session() as session:
            rows = session.scalars(
                select(AlertRow)
                .where(AlertRow.state == "raised", AlertRow.raised_at <= now - after)
                .order_by(AlertRow.raised_at)
                .with_for_update(skip_locked=True)
            ).all()
            outbox = SqlEventOutbox(session)
            for row in rows:
                alert = lifecycle.escalate(_view(row), now=now)
                _store(row, alert)
                outbox.enqueue(alert_event(alert), now=now)
                self._tell(session, alert)
                escalated.append(alert)
        self._committed(escalated)
        return escalated

    def get(self, alert_id: str) -> Alert:
        with self.store.session() as session:
            return _view(self._row(session, alert_id))

    def list_alerts(
        self,
        *,
        states: Sequence[AlertState] = OPEN_STATES,
        patient_id: str | None = None,
        limit: int = 500,
    ) -> list[Alert]:
        """Alerts in these states (newest first), for the alerts API and dashboards."""
        query = select(AlertRow).where(AlertRow.state.in_(list(states)))
        if patient_id is not None:
            query = query.where(AlertRow.patient_id == patient_id)
        query = query.order_by(AlertRow.raised_at.desc()).limit(limit)
        with self.store.session() as session:
            return [_view(row) for row in session.scalars(query)]

    def open_alerts(self, *, patient_id: str | None = None) -> list[Alert]:
        """Open alerts (raised, acknowledged, escalated), oldest first."""
        query = select(AlertRow).where(AlertRow.state.in_(OPEN_STATES))
        if patient_id is not None:
            query = query.where(AlertRow.patient_id == patient_id)
        with self.store.session() as session:
            return [_view(row) for row in session.scalars(query.order_by(AlertRow.raised_at))]

    # -- inside the transaction ------------------------------------------------

    def _tell(self, session: Session, alert: Alert) -> None:
        if self._on_change is not None:
            self._on_change(session, alert)

    def _committed(self, changed: Sequence[Alert]) -> None:
        if self._on_commit is not None and changed:
            self._on_commit()

    def _row(self, session: Session, alert_id: str) -> AlertRow:
        row = session.get(AlertRow, alert_id, with_for_update=True)
        if row is None:
            raise NotFoundError(f"no alert {alert_id}")
        return row

    def _patient(self, event: AlarmEvent) -> str | None:
        if event.key.patient_id is not None or self._patient_for is None:
            return event.key.patient_id
        return self._patient_for(event.key, event.time)

    def _open_row(
        self, session: Session, event: AlarmEvent, patient: str | None
    ) -> AlertRow | None:
        key = event.key
        query = select(AlertRow).where(
            AlertRow.device_id == key.device_id,
            AlertRow.vital == key.vital,
            AlertRow.condition == int(event.condition),
            AlertRow.channel == key.channel,
            AlertRow.state.in_(OPEN_STATES),
            AlertRow.patient_id.is_(None) if patient is None else AlertRow.patient_id == patient,
        )
        return session.scalars(query.order_by(AlertRow.raised_at).limit(1)).first()

    def _raise(
        self, session: Session, resources: SqlResources, event: AlarmEvent, patient: str | None
    ) -> Alert | None:
        if self._open_row(session, event, patient) is not None:
            return None
        vital = device_vital(event.key.vital)
        alert = Alert(
            id=str(uuid.uuid4()),
            patient_id=patient,
            device_id=event.key.device_id,
            channel=event.key.channel,
            vital=event.key.vital,
            condition=event.condition,
            priority=event.priority,
            state="raised",
            value=event.value,
            limit=event.limit,
            unit=vital.ucum if vital is not None else "",
            raised_at=event.time,
        )
        observation = resources.create(observation_resource(alert))
        flag_id = None
        if patient is not None:
            flag_id = resources.create(flag_resource(alert)).id
        stored = replace(alert, flag_id=flag_id, observation_id=observation.id)
        session.add(
            AlertRow(
                id=stored.id,
                patient_id=stored.patient_id,
                device_id=stored.device_id,
                channel=stored.channel,
                vital=stored.vital,
                condition=int(stored.condition),
                priority=int(stored.priority),
                state=stored.state,
                value=_finite(stored.value),
                limit_value=_finite(stored.limit),
                unit=stored.unit,
                raised_at=stored.raised_at,
                flag_id=stored.flag_id,
                observation_id=stored.observation_id,
            )
        )
        session.flush()
        return stored

    def _resolve(
        self, session: Session, resources: SqlResources, event: AlarmEvent, patient: str | None
    ) -> Alert | None:
        row = self._open_row(session, event, patient)
        if row is None:
            return None  # its START was a duplicate, or it was never stored (nothing to end)
        alert = lifecycle.resolve(_view(row), now=event.time, value=_finite(event.value))
        _store(row, alert)
        if alert.flag_id is not None:
            resources.update("Flag", alert.flag_id, {**flag_resource(alert), "id": alert.flag_id})
        session.flush()
        return alert
