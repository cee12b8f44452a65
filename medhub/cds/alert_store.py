"""Alerts in SQL, their FHIR resources, and their events, committed together.

:class:`AlertService` turns alarm edges (the detector's, NEWS2's and a
device's own, :mod:`medhub.cds.alert_edges`) into stored alerts. One batch of
edges is one transaction, in which each change writes

* the ``alert`` row (the lifecycle of :mod:`medhub.cds.alerts`; the table is
  :mod:`medhub.cds.alert_rows`),
* FHIR resources through :class:`~medhub.fhir.sql_store.SqlResources`
  (:mod:`medhub.cds.alert_resources`): an Observation of the triggering value
  (or the one the edge brings: NEWS2's score) and, when the patient is known,
  a Flag (FHIR R4 flag.html: ``active`` while the alert is open, ``inactive``
  with ``period.end`` once resolved; a Flag's subject cannot be a Device, so
  an alert from a device bound to nobody has the Observation only),
* a :class:`~medhub.db.outbox.DomainEvent` in the transactional outbox,

so an alert exists exactly when its event will be published, even if the
broker is down at that moment (DESIGN.md, "Reliability rules").

A START for a stream and condition that already has an open alert raises
nothing new: the detector restarts after a process restart, and a
re-raised alarm would page the nurse twice for one condition. A device's own
alarm is matched on the device's id of it instead; a START of it that was
already stored (a redelivered MQTT message, even after its END) is not
raised again either.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from dataclasses import replace
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Final

import structlog
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from medhub.cds import alerts as lifecycle
from medhub.cds.alarm_codes import DETECTOR_CONDITIONS, Priority, Transition
from medhub.cds.alert_edges import AlertEdge, StreamSource, edge_of
from medhub.cds.alert_resources import alert_event as alert_event
from medhub.cds.alert_resources import alert_payload as alert_payload
from medhub.cds.alert_resources import flag_resource, observation_resource
from medhub.cds.alert_rows import AlertRow as AlertRow
from medhub.cds.alert_rows import finite, new_row, store_state, view
from medhub.cds.alerts import OPEN_STATES, SEVERITY_OF, Alert, AlertState, Severity
from medhub.clinical.vital_codes import device_vital
from medhub.correlation import continued, current_correlation_id
from medhub.db.outbox import SqlEventOutbox
from medhub.errors import NotFoundError
from medhub.fhir.sql_store import SqlResources, SqlResourceStore
from medhub.fhir.write_rules import utc_now
from medhub.metrics import ALERTS

if TYPE_CHECKING:  # the detector pulls in numba, which migrations need not load
    from medhub.cds.detector import AlarmEvent

log = structlog.get_logger(__name__)

#: Who a stream's samples are about when it does not say (device binding at that time).
PatientLookup = Callable[[StreamSource, datetime], "str | None"]
#: Told of every alert change inside its transaction (e.g. to queue an HL7 PCD-04 report).
AlertChangeHook = Callable[[Session, Alert], None]
#: Told of a first acknowledgement after it committed (the detector, so it stops re-paging).
AcknowledgeListener = Callable[[Alert], object]
#: Told of the alerts a transaction changed, after it committed (the live dashboards).
ChangeListener = Callable[[Sequence[Alert]], None]
_LISTENER_FAILED: Final = "alerts.acknowledge_listener_failed"


class AlertService:
    """Stores alert changes with their FHIR resources and outbox events, one transaction each call.

    ``on_commit`` is called after a transaction that enqueued events committed,
    so a relay can wake up instead of waiting for its next poll. ``patient_for``
    attributes a stream whose key names no patient (the device binding at the
    event's time); it may read the database. ``on_change`` is called with the
    session and the changed alert inside the transaction of every change, after
    its outbox event: what it writes commits, or rolls back, with the alert.
    ``acknowledge_listeners`` are called after an acknowledgement committed
    (wiring registers the vital-sign watch there: the API must not reach into
    the detector). ``change_listeners`` get every committed batch of changed
    alerts (raised, acknowledged, escalated, resolved): the live dashboards,
    which must never see an alert that then rolled back.

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
        self.acknowledge_listeners: list[AcknowledgeListener] = []
        self.change_listeners: list[ChangeListener] = []

    def apply(self, events: Sequence[AlarmEvent | AlertEdge]) -> list[Alert]:
        """Raise alerts for STARTs, resolve them for ENDs; returns the alerts that changed."""
        if not events:
            return []
        edges = [e if isinstance(e, AlertEdge) else edge_of(e) for e in events]
        changed: list[Alert] = []
        now = self._clock()
        # Looked up before the transaction: the lookup reads the database on its own
        # session, which on SQLite would wait for this transaction's write lock.
        patients = [self._patient(edge) for edge in edges]
        with self.store.session() as session:
            resources = SqlResources(session, clock=self._clock)
            outbox = SqlEventOutbox(session)
            for edge, patient in zip(edges, patients, strict=True):
                if edge.transition is Transition.START:
                    alert = self._raise(session, resources, edge, patient)
                else:
                    alert = self._resolve(session, resources, edge, patient)
                if alert is not None:
                    # The alert's events and reports carry the id of the work that raised
                    # it (a request, an HL7 message) or, from device ingest, the alert's id.
                    with continued(current_correlation_id() or alert.id):
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
            before = view(row)
            alert = lifecycle.acknowledge(before, by=by, now=moment)
            if alert != before:
                store_state(row, alert)
                SqlEventOutbox(session).enqueue(alert_event(alert), now=moment)
                self._tell(session, alert)
        if alert != before:
            self._committed([alert])
            for listener in self.acknowledge_listeners:
                try:
                    listener(alert)
                except Exception:  # the acknowledgement is stored; the detector is told best-effort
                    log.exception(_LISTENER_FAILED, alert=alert.id, listener=repr(listener))
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
                alert = lifecycle.escalate(view(row), now=now)
                store_state(row, alert)
                with continued(alert.id):
                    outbox.enqueue(alert_event(alert), now=now)
                    self._tell(session, alert)
                escalated.append(alert)
        self._committed(escalated)
        return escalated

    def get(self, alert_id: str) -> Alert:
        with self.store.session() as session:
            return view(self._row(session, alert_id))

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
            return [view(row) for row in session.scalars(query)]

    def open_counts(self) -> dict[tuple[Severity, AlertState], int]:
        """Open alerts by severity and state, every pair present (``/metrics``).

        Zeros are reported, not left out: an alerting rule on a series that
        vanishes when the last alert closes would never see it return to 0.
        """
        counts = {(s, state): 0 for s in SEVERITY_OF.values() for state in OPEN_STATES}
        query = (
            select(AlertRow.priority, AlertRow.state, func.count())
            .where(AlertRow.state.in_(OPEN_STATES))
            .group_by(AlertRow.priority, AlertRow.state)
        )
        with self.store.session() as session:
            for priority, state, count in session.execute(query):
                key = (SEVERITY_OF[Priority(priority)], state)
                counts[key] = counts.get(key, 0) + int(count)
        return counts

    def open_alerts(self, *, patient_id: str | None = None) -> list[Alert]:
        """Open alerts (raised, acknowledged, escalated), oldest first."""
        query = select(AlertRow).where(AlertRow.state.in_(OPEN_STATES))
        if patient_id is not None:
            query = query.where(AlertRow.patient_id == patient_id)
        with self.store.session() as session:
            return [view(row) for row in session.scalars(query.order_by(AlertRow.raised_at))]

    # -- inside the transaction ------------------------------------------------

    def _tell(self, session: Session, alert: Alert) -> None:
        if self._on_change is not None:
            self._on_change(session, alert)

    def _committed(self, changed: Sequence[Alert]) -> None:
        for alert in changed:  # a handful per batch: the lookup is cheap here
            ALERTS.labels(alert.severity, alert.state).inc()
        if self._on_commit is not None and changed:
            self._on_commit()
        for listener in self.change_listeners if changed else ():
            try:
                listener(changed)
            except Exception:  # the change is committed; telling the dashboards is best-effort
                log.exception("alerts.change_listener_failed", listener=repr(listener))

    def _row(self, session: Session, alert_id: str) -> AlertRow:
        row = session.get(AlertRow, alert_id, with_for_update=True)
        if row is None:
            raise NotFoundError(f"no alert {alert_id}")
        return row

    def _patient(self, edge: AlertEdge) -> str | None:
        if edge.patient_id is not None or self._patient_for is None:
            return edge.patient_id
        return self._patient_for(edge.stream or edge, edge.time)

    def _open_row(self, session: Session, edge: AlertEdge, patient: str | None) -> AlertRow | None:
        if edge.source_alarm is not None:  # a device's own alarm: its id names it
            query = select(AlertRow).where(
                AlertRow.device_id == edge.device_id,
                AlertRow.source_alarm_id == edge.source_alarm,
                AlertRow.state.in_(OPEN_STATES),
            )
        else:
            query = select(AlertRow).where(
                AlertRow.device_id == edge.device_id,
                AlertRow.vital == edge.vital,
                AlertRow.condition == int(edge.condition),
                AlertRow.channel == edge.channel,
                AlertRow.state.in_(OPEN_STATES),
                AlertRow.patient_id.is_(None)
                if patient is None
                else AlertRow.patient_id == patient,
            )
        return session.scalars(query.order_by(AlertRow.raised_at).limit(1)).first()

    def _replayed(self, session: Session, edge: AlertEdge) -> bool:
        """A device alarm's START stored before (open or not): a redelivered message."""
        query = select(AlertRow.id).where(
            AlertRow.device_id == edge.device_id,
            AlertRow.source_alarm_id == edge.source_alarm,
            AlertRow.raised_at == edge.time,
        )
        return session.scalars(query.limit(1)).first() is not None

    def _raise(
        self, session: Session, resources: SqlResources, edge: AlertEdge, patient: str | None
    ) -> Alert | None:
        if self._open_row(session, edge, patient) is not None:
            return None
        if edge.source_alarm is not None and self._replayed(session, edge):
            return None
        vital = device_vital(edge.vital)
        unit = edge.unit if edge.unit is not None else (vital.ucum if vital is not None else "")
        alert = Alert(
            id=str(uuid.uuid4()),
            patient_id=patient,
            device_id=edge.device_id,
            channel=edge.channel,
            vital=edge.vital,
            condition=edge.condition,
            priority=edge.priority,
            state="raised",
            value=edge.value,
            limit=edge.limit,
            unit=unit,
            raised_at=edge.time,
            source_alarm=edge.source_alarm,
            alarm_code=edge.alarm_code,
            event_code=edge.event_code,
            text=edge.text,
        )
        observation_id = None
        if edge.observation is not None:
            observation_id = resources.create(dict(edge.observation)).id
        elif edge.condition in DETECTOR_CONDITIONS or (
            vital is not None and finite(edge.value) is not None
        ):
            observation_id = resources.create(observation_resource(alert)).id
        flag_id = None
        if patient is not None:
            flag_id = resources.create(flag_resource(alert)).id
        stored = replace(alert, flag_id=flag_id, observation_id=observation_id)
        session.add(new_row(stored))
        session.flush()
        return stored

    def _resolve(
        self, session: Session, resources: SqlResources, edge: AlertEdge, patient: str | None
    ) -> Alert | None:
        row = self._open_row(session, edge, patient)
        if row is None:
            return None  # its START was a duplicate, or it was never stored (nothing to end)
        alert = lifecycle.resolve(view(row), now=edge.time, value=finite(edge.value))
        store_state(row, alert)
        if alert.flag_id is not None:
            resources.update("Flag", alert.flag_id, {**flag_resource(alert), "id": alert.flag_id})
        session.flush()
        return alert
