"""Composition of alerting: the alert service, the outbox relay, and the vital-sign watch.

The relay publishes every outbox event (alerts, and HL7's ``lab.result.critical``)
to RabbitMQ when ``MEDHUB_AMQP_URL`` is set, else to the in-process bus. The
watch is an ingest listener: samples -> detector -> alerts.

With ``MEDHUB_ALERTS__PCD04_DESTINATION`` set, every alert change (raised,
acknowledged, escalated, resolved) is also queued as an IHE PCD-04 ORU^R40
(:mod:`medhub.hl7.pcd04_builder`) on the outbound HL7 queue for that
destination, in the change's own transaction (:class:`Pcd04Reporter`, the
alert service's ``on_change`` hook), so the report exists exactly when the
change does; the destination's MLLP sender delivers it and checks the ACK.

An acknowledgement (the alerts API) is passed on to the watch, which marks the
alarm acknowledged in the running detector (``MEDHUB_ALERTS__ACK_SILENCE_SECONDS``).
NEWS2 alerts come from :class:`~medhub.cds.news2_alerts.News2Watch`, re-scoring
the patients whose vitals changed on the same periodic checks.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any, Final

import structlog
from sqlalchemy.orm import Session

from medhub.adapters.amqp_publisher import AmqpSink
from medhub.adapters.event_bus import InProcessBus, OutboxRelay, Sink, purge_sent
from medhub.cds.alarm_codes import Condition, Priority
from medhub.cds.alert_store import AlertService
from medhub.cds.alerts import Alert
from medhub.cds.news2_alerts import News2Watch
from medhub.cds.news2_service import News2Service
from medhub.cds.vital_watch import VitalWatch
from medhub.clinical.identifiers import LOCAL_AUTHORITY_PREFIX, V2_0203
from medhub.clinical.resources import validate_resource
from medhub.clinical.vital_codes import device_vital
from medhub.config import Settings
from medhub.errors import ConfigurationError, GoneError, MedhubError, NotFoundError
from medhub.fhir.sql_store import SqlResources, SqlResourceStore
from medhub.hl7.outbound_queue import enqueue
from medhub.hl7.pcd01_builder import (
    EUI64_PATTERN,
    HierarchicDesignator,
    PatientIdentifier,
    Pcd01Header,
    PcdPatient,
)
from medhub.hl7.pcd04_builder import (
    MDC_EVT_ALARM,
    MDC_EVT_HI,
    MDC_EVT_LO,
    UNIDENTIFIED_PATIENT,
    AlarmPriority,
    AlertPhase,
    AlertReport,
    CodedTerm,
    build_pcd04_oru,
)
from medhub.timeseries.sample_store import SampleStore

log = structlog.get_logger(__name__)


@dataclass
class AlertComponents:
    """Alert service, outbox relay (RabbitMQ or in-process bus), watch and its timer."""

    service: AlertService
    relay: OutboxRelay
    bus: InProcessBus | None  # None when MEDHUB_AMQP_URL is set
    watch: VitalWatch
    escalate_after: timedelta
    check_every: float
    keep_sent: timedelta
    news2: News2Watch | None = None
    #: NEWS2 for the API (also there when NEWS2 alerts are switched off).
    scorer: News2Service | None = None
    _tasks: list[asyncio.Task[None]] = field(default_factory=list)

    def start(
        self, *, relay: bool = True, device_checks: bool = True, escalation: bool = True
    ) -> None:
        """Start what this process's roles run (``medhub serve --role``).

        ``device_checks`` (signal lost, NEWS2 re-scoring) need the detector state of
        the process that ingests samples; ``escalation`` and the outbox purge work on
        the database alone and are safe in any number of processes (rows are locked
        with SKIP LOCKED); so is the relay.
        """
        warm_alert_resources()
        if relay:
            self.relay.start()
        if device_checks or escalation:
            task = self._checks(device_checks=device_checks, escalation=escalation)
            self._tasks.append(asyncio.create_task(task, name="alert-checks"))

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks.clear()
        await asyncio.to_thread(self.relay.stop)

    async def _checks(self, *, device_checks: bool, escalation: bool) -> None:
        """Signal lost, escalation of unanswered alerts, and old outbox receipts, periodically."""
        while True:
            now = datetime.now(UTC)
            try:
                if device_checks:
                    await asyncio.to_thread(self.watch.tick, now)
                    await asyncio.to_thread(self.catch_up_acknowledgements)
                if escalation:
                    await asyncio.to_thread(
                        self.service.escalate_due, now=now, after=self.escalate_after
                    )
                    await asyncio.to_thread(self._purge, now - self.keep_sent)
                if device_checks and self.news2 is not None:
                    await asyncio.to_thread(self.news2.run_due, now)
            except Exception as exc:  # the store may be down; the next round retries
                log.warning("alerts.checks_failed", reason=str(exc))
            await asyncio.sleep(self.check_every)

    def catch_up_acknowledgements(self) -> int:
        """Tell this process's detector of alerts acknowledged through any process's API."""
        return self.watch.catch_up(self.service.list_alerts(states=("acknowledged",)))

    def _purge(self, before: datetime) -> None:
        with self.service.store.session() as session:
            purge_sent(session, before=before)


#: Shaped like the resources an alert writes (:mod:`medhub.cds.alert_resources`).
_WARM_UP_RESOURCES: Final = (
    {
        "resourceType": "Observation",
        "status": "final",
        "category": [
            {
                "coding": [
                    {
                        "system": "http://terminology.hl7.org/CodeSystem/observation-category",
                        "code": "vital-signs",
                    }
                ]
            }
        ],
        "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4"}], "text": "hr"},
        "effectiveDateTime": "2026-01-01T00:00:00Z",
        "device": {"display": "warm-up"},
        "subject": {"reference": "Patient/warm-up"},
        "valueQuantity": {
            "value": 170.0,
            "unit": "/min",
            "system": "http://unitsofmeasure.org",
            "code": "/min",
        },
        "interpretation": [{"coding": [{"system": "urn:warm-up", "code": "HH"}]}],
    },
    {
        "resourceType": "Flag",
        "status": "active",
        "category": [{"coding": [{"system": "urn:warm-up", "code": "clinical"}]}],
        "code": {"coding": [{"system": "urn:warm-up", "code": "high"}], "text": "warm-up"},
        "subject": {"reference": "Patient/warm-up"},
        "period": {"start": "2026-01-01T00:00:00Z", "end": "2026-01-01T00:01:00Z"},
    },
)


def warm_alert_resources() -> None:
    """Validate an Observation and a Flag like an alert's once, at start, before any alert.

    ``fhir.resources`` imports a resource's model module and builds its pydantic
    schema on first use, and :mod:`medhub.clinical.json_kinds` caches its element
    tables per class on first use: the first alert after a start paid 30-70 ms
    for that inside its transaction (bench/alert_latency.py, where that first
    probe was the slowest of the run). Nothing is stored.
    """
    for resource in _WARM_UP_RESOURCES:
        validate_resource(resource)


def build_alerts(
    settings: Settings, store: SqlResourceStore, samples: SampleStore | None = None
) -> AlertComponents:
    bus = None
    sink: Sink
    if settings.amqp_url is not None:
        sink = AmqpSink(settings.amqp_url.get_secret_value(), exchange=settings.alerts.exchange)
    else:
        bus = sink = InProcessBus()
    relay = OutboxRelay(store, sink)
    service = AlertService(store, on_commit=relay.notify, on_change=pcd04_reporter(settings))
    watch = VitalWatch(service, ack_silence=timedelta(seconds=settings.alerts.ack_silence_seconds))
    service.acknowledge_listeners.append(watch.acknowledged)
    scorer = News2Service(store, samples, max_age=timedelta(seconds=settings.news2.max_age_seconds))
    news2 = None
    if settings.news2.alerts:
        news2 = News2Watch(scorer, service, every=timedelta(seconds=settings.news2.every_seconds))
    return AlertComponents(
        service,
        relay,
        bus,
        watch,
        timedelta(seconds=settings.alerts.escalate_after_seconds),
        settings.alerts.check_seconds,
        timedelta(days=settings.alerts.keep_sent_days),
        news2,
        scorer,
    )


# -- IHE PCD-04 reports of alert changes ------------------------------------------------

#: MSH-3 of the reports, and the namespace of the ids medhub assigns (OBR-3, OBX-18).
SENDING_APPLICATION: Final = HierarchicDesignator("MEDHUB")
_EVENT: Final = {
    Condition.LOW: MDC_EVT_LO,
    Condition.CRITICAL_LOW: MDC_EVT_LO,
    Condition.HIGH: MDC_EVT_HI,
    Condition.CRITICAL_HIGH: MDC_EVT_HI,
}
#: HL7 table 0078 abnormal flags of the limit conditions.
_ABNORMAL: Final = {
    Condition.LOW: "L",
    Condition.CRITICAL_LOW: "LL",
    Condition.HIGH: "H",
    Condition.CRITICAL_HIGH: "HH",
}
_PRIORITY: Final[dict[Priority, AlarmPriority]] = {
    Priority.HIGH: "PH",
    Priority.MEDIUM: "PM",
    Priority.LOW: "PL",
}
_PHASE: Final[dict[str, AlertPhase]] = {
    "raised": "start",
    "acknowledged": "update",
    "escalated": "update",
    "resolved": "end",
}
_GENDER: Final = {"male": "M", "female": "F", "other": "O", "unknown": "U"}


def _finite(value: float | None) -> float | None:
    return None if value is None or not math.isfinite(value) else value


def _changed_at(alert: Alert) -> datetime:
    moments = {
        "acknowledged": alert.acknowledged_at,
        "escalated": alert.escalated_at,
        "resolved": alert.resolved_at,
    }
    return moments.get(alert.state) or alert.raised_at


_TECHNICAL: Final = (Condition.SIGNAL_LOST, Condition.DEVICE_TECHNICAL)


def _event(alert: Alert) -> CodedTerm:
    """OBX-3 of the alert: a device's own numeric MDC event code when it sent one."""
    if alert.event_code is not None and alert.event_code.isdigit():
        return CodedTerm(alert.event_code, alert.alarm_code or alert.event_code)
    return _EVENT.get(alert.condition, MDC_EVT_ALARM)


def alert_report(alert: Alert, patient: PcdPatient) -> AlertReport:
    """What a PCD-04 says about ``alert`` in its current state.

    Phase: raised -> start, acknowledged and escalated -> update, resolved ->
    end (alarm state inactive). Acknowledging does not end the condition
    (IEC 60601-1-8), so an acknowledged alert stays active with inactivation
    state ``alert-acknowledged``. The value is the one that raised the alert,
    or on the end the one it resolved with (medhub keeps no later sample per
    alert). Only limit conditions carry their limit in OBX-7: a rate limit is
    per minute and a signal-lost limit is seconds, not the vital's unit.
    """
    vital = device_vital(alert.vital)
    source = CodedTerm(alert.vital, alert.vital, "L")  # HL7 table 0396: local code
    if vital is not None and vital.mdc:
        code, refid = vital.mdc[0]
        source = CodedTerm(str(code), refid)
    limit = _finite(alert.limit) if alert.condition in _ABNORMAL else None
    low = alert.condition in (Condition.LOW, Condition.CRITICAL_LOW)
    resolved = alert.state == "resolved"
    return AlertReport(
        alert_id=alert.id,
        phase=_PHASE[alert.state],
        state="inactive" if resolved else "active",
        inactivation="enabled" if alert.acknowledged_at is None else "alert-acknowledged",
        priority=_PRIORITY[alert.priority],
        kind="ST" if alert.condition in _TECHNICAL else "SP",
        event=_event(alert),
        text=alert.text or f"{alert.vital} {alert.condition.name.lower().replace('_', ' ')}",
        source=source,
        value=_finite(alert.resolved_value if resolved else alert.value),
        unit=alert.unit,
        started_at=alert.raised_at,
        changed_at=_changed_at(alert),
        device_id=alert.device_id,
        patient=patient,
        abnormality=_ABNORMAL.get(alert.condition, ""),
        limit_low=limit if low else None,
        limit_high=None if low else limit,
        ended_at=alert.resolved_at,
        device_eui64=alert.device_id if EUI64_PATTERN.match(alert.device_id) else None,
    )


def _authority(system: str) -> HierarchicDesignator:
    """The inverse of :func:`medhub.clinical.identifiers.authority_system` (CX-4)."""
    if system.startswith("urn:oid:"):
        return HierarchicDesignator("", system.removeprefix("urn:oid:"), "ISO")
    if system.startswith("urn:uuid:"):
        return HierarchicDesignator("", system.removeprefix("urn:uuid:"), "UUID")
    if system.startswith(LOCAL_AUTHORITY_PREFIX):
        return HierarchicDesignator(system.removeprefix(LOCAL_AUTHORITY_PREFIX))
    return HierarchicDesignator("", system, "URI") if system else HierarchicDesignator("")


def _type_code(identifier: dict[str, Any]) -> str:
    for coding in (identifier.get("type") or {}).get("coding", []):
        if coding.get("system") == V2_0203 and coding.get("code"):
            return str(coding["code"])
    return ""


def pcd_patient(patient_id: str, resource: dict[str, Any] | None) -> PcdPatient:
    """PID from the stored Patient: its identifiers (not ``old`` ones), official name, birth, sex.

    A Patient with no identifier (or none stored) is sent under medhub's own
    id, type ``PI`` (table 0203, patient internal identifier), so the Alert
    Manager can still tell patients apart. PV1-2 is ``U``: medhub does not look
    up the encounter (patient class, point of care) for an alert.
    """
    resource = resource or {}
    identifiers = tuple(
        PatientIdentifier(str(i["value"]), _authority(str(i.get("system", ""))), _type_code(i))
        for i in resource.get("identifier", [])
        if i.get("value") and i.get("use") != "old"
    ) or (PatientIdentifier(patient_id, SENDING_APPLICATION, "PI"),)
    names = resource.get("name", [])
    name = next((n for n in names if n.get("use") == "official"), names[0] if names else {})
    given = [str(g) for g in name.get("given", [])]
    birth = str(resource.get("birthDate", ""))
    return PcdPatient(
        identifiers=identifiers,
        family=str(name.get("family", "")),
        given=given[0] if given else "",
        middle=given[1] if len(given) > 1 else "",
        birth_date=date.fromisoformat(birth) if len(birth) == 10 else None,
        sex=_GENDER.get(str(resource.get("gender", "")), ""),
        patient_class="U",
    )


@dataclass(frozen=True)
class Pcd04Reporter:
    """The alert service's ``on_change`` hook: queue a PCD-04 for ``destination`` in the change's
    transaction (MSH-3 ``MEDHUB``, MSH-5 the destination's name, a fresh MSH-10 each).

    A failure to queue (the database) rolls the change back with it, and the
    alert service's caller retries. A report that cannot be built (a bug, not an
    outage) is logged and the alert still commits: a clinician's alert must never
    wait for the Alert Manager's copy.
    """

    destination: str
    clock: Callable[[], datetime] = lambda: datetime.now(UTC)
    control_id: Callable[[], str] = lambda: uuid.uuid4().hex

    def __call__(self, session: Session, alert: Alert) -> None:
        patient = UNIDENTIFIED_PATIENT
        if alert.patient_id is not None:
            patient = pcd_patient(alert.patient_id, self._patient(session, alert.patient_id))
        now = self.clock()
        header = Pcd01Header(SENDING_APPLICATION, HierarchicDesignator(self.destination))
        try:
            message = build_pcd04_oru(
                alert_report(alert, patient), header=header, control_id=self.control_id(), now=now
            )
        except MedhubError as exc:
            log.error("alerts.pcd04_not_built", alert=alert.id, state=alert.state, reason=str(exc))
            return
        enqueue(session, destination=self.destination, message=message, now=now)

    @staticmethod
    def _patient(session: Session, patient_id: str) -> dict[str, Any] | None:
        try:
            return SqlResources(session).read("Patient", patient_id).resource
        except (NotFoundError, GoneError) as exc:
            log.warning("alerts.pcd04_patient_unknown", patient=patient_id, reason=str(exc))
            return None


def pcd04_reporter(settings: Settings) -> Pcd04Reporter | None:
    """The PCD-04 hook when ``alerts.pcd04_destination`` names a configured HL7 destination."""
    name = settings.alerts.pcd04_destination
    if name is None:
        return None
    names = [d.name for d in settings.hl7_destinations]
    if name not in names:
        raise ConfigurationError(
            f"MEDHUB_ALERTS__PCD04_DESTINATION {name!r} is not one of the HL7 destinations "
            f"(MEDHUB_HL7_DESTINATIONS: {', '.join(names) or 'none configured'})"
        )
    return Pcd04Reporter(name)
