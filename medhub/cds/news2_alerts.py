"""NEWS2 alerts: re-score patients whose vitals changed, raise and resolve by band.

:class:`News2Watch` is an ingest listener that only notes which patients
got NEWS2 vitals (a set insert: nothing on the ingest path waits for it).
:meth:`News2Watch.run_due`, called by the periodic alert checks, re-scores
each noted patient at most once every ``every`` (not per sample: a monitor
sends every second, and NEWS2 is a bedside score charted every hour or so),
then moves the patient's NEWS2 alert to what the band calls for (RCP NEWS2
2017, "NEWS thresholds and triggers"):

* 3 in one parameter -> ``NEWS2_LOW_MEDIUM`` (medium priority),
  aggregate 5-6 -> ``NEWS2_MEDIUM`` (medium), 7 or more -> ``NEWS2_HIGH`` (high);
* a band change ends the old alert and raises the new one; a fall to the
  low band resolves it; missing or stale data never resolves or lowers one
  (:func:`medhub.cds.news2_assessment.transitions`).

The alerts go through :class:`~medhub.cds.alert_store.AlertService` like the
detector's (alert row, Flag, outbox event to RabbitMQ, PCD-04, the alerts
API), with the NEWS2 Observation (:mod:`medhub.cds.news2_fhir`) recorded on
each raise. The patient's open NEWS2 alert is read from the store, so a
restart neither loses nor duplicates it. Device ``medhub-news2``, vital
``news2``, unit ``{score}``: the alert's routing key is
``alerts.<severity>.news2.{score}``.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Final

import structlog

from medhub.cds.alarm_codes import NEWS2_CONDITIONS, PRIORITY_OF, Condition, Priority, Transition
from medhub.cds.alert_edges import AlertEdge
from medhub.cds.alert_store import AlertService
from medhub.cds.alerts import Alert
from medhub.cds.news2_assessment import THRESHOLD, News2Assessment, transitions
from medhub.cds.news2_fhir import news2_observation
from medhub.cds.news2_inputs import PARAMETER_OF_VITAL
from medhub.cds.news2_service import News2Service
from medhub.errors import StoreUnavailableError
from medhub.timeseries.records import SampleRecord

log = structlog.get_logger(__name__)

#: The alert's "device" and "vital": medhub's NEWS2 scorer, not a monitor.
NEWS2_DEVICE: Final = "medhub-news2"
NEWS2_VITAL: Final = "news2"
NEWS2_UNIT: Final = "{score}"


class News2Watch:
    """Noted patients, re-scored when due; safe to call from ingest and timer threads."""

    def __init__(
        self,
        service: News2Service,
        alerts: AlertService,
        *,
        every: timedelta = timedelta(minutes=1),
    ) -> None:
        self.service = service
        self._alerts = alerts
        self._every = every
        self._lock = threading.Lock()
        self._dirty: set[str] = set()
        self._last: dict[str, datetime] = {}

    def __call__(self, records: Sequence[SampleRecord]) -> None:
        """The ingest listener: note patients with a new NEWS2 vital."""
        patients = {r.patient_id for r in records if r.patient_id and r.vital in PARAMETER_OF_VITAL}
        if patients:
            with self._lock:
                self._dirty |= patients

    def note(self, patient_id: str) -> None:
        """Re-score ``patient_id`` at the next due run (e.g. after a charted observation)."""
        with self._lock:
            self._dirty.add(patient_id)

    def run_due(self, now: datetime) -> list[Alert]:
        """Re-score the noted patients not scored within ``every``; returns alerts changed."""
        with self._lock:
            due = sorted(p for p in self._dirty if self._due(p, now))
            self._dirty.difference_update(due)
            # a patient scored longer than ``every`` ago is due anyway: forget them
            self._last = {p: t for p, t in self._last.items() if now - t < self._every}
        changed: list[Alert] = []
        for index, patient in enumerate(due):
            try:
                changed += self.evaluate(patient, now)
            except StoreUnavailableError as exc:  # try these again at the next run
                log.warning("news2.evaluation_deferred", patients=len(due) - index, reason=str(exc))
                with self._lock:
                    self._dirty.update(due[index:])
                break
            with self._lock:
                self._last[patient] = now
        return changed

    def _due(self, patient_id: str, now: datetime) -> bool:
        last = self._last.get(patient_id)
        return last is None or now - last >= self._every

    def evaluate(self, patient_id: str, now: datetime) -> list[Alert]:
        """Score one patient now and apply the band's alert edges."""
        assessment = self.service.assess(patient_id, now=now)
        open_news2 = [
            a
            for a in self._alerts.open_alerts(patient_id=patient_id)
            if a.condition in NEWS2_CONDITIONS
        ]
        current = max(open_news2, key=lambda a: THRESHOLD[a.condition], default=None)
        edges = [
            self._edge(assessment, condition, transition)
            for condition, transition in transitions(
                None if current is None else current.condition, assessment
            )
        ]
        # more than one open (two processes raced): keep the highest, end the others
        edges += [
            self._edge(assessment, a.condition, Transition.END)
            for a in open_news2
            if a is not current
        ]
        if not edges:
            return []
        log.info(
            "news2.band_changed",
            patient=patient_id,
            total=assessment.score.total,
            risk=assessment.score.risk.value,
            complete=assessment.complete,
        )
        return self._alerts.apply(edges)

    @staticmethod
    def _edge(
        assessment: News2Assessment, condition: Condition, transition: Transition
    ) -> AlertEdge:
        start = transition is Transition.START
        return AlertEdge(
            device_id=NEWS2_DEVICE,
            vital=NEWS2_VITAL,
            condition=condition,
            transition=transition,
            priority=Priority(PRIORITY_OF[condition]),
            time=assessment.at,
            value=float(assessment.score.total),
            limit=THRESHOLD[condition],
            patient_id=assessment.patient_id,
            unit=NEWS2_UNIT,
            text=assessment.summary(),
            observation=news2_observation(assessment) if start else None,
        )
