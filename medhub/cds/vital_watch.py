"""Watching ingested vitals: samples -> detector -> alerts, as an ingest listener.

:class:`VitalWatch` is called by device ingest with every stored batch. Each
(vital, device, channel, patient) stream is registered with the detector on
first sight, with limits resolved from the defaults and the patient's and
device's overrides; the detector's START/END transitions become alerts
(:class:`medhub.cds.alert_store.AlertService`), stored with their outbox
events in one transaction. If that transaction fails (the database is down),
the transitions are kept and applied with the next batch or tick, so an alarm
that started while the store was away is not lost.

Acknowledgements flow back: wiring registers :meth:`VitalWatch.acknowledged`
with the alert service, so an alert acknowledged in the API marks its alarm
acknowledged in the running detector (:meth:`Detector.acknowledge`), and the
:class:`~medhub.cds.ack_latch.AckLatch` keeps that acknowledged alarm from
paging again while it flaps across its limit (``ack_silence``). When the API
runs in another process, :meth:`VitalWatch.catch_up` does the same from the
acknowledged alerts in the database, on the devices process's check timer.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from datetime import datetime, timedelta

import structlog

from medhub.cds.ack_latch import AckLatch
from medhub.cds.alarm_codes import DETECTOR_CONDITIONS
from medhub.cds.alert_store import AlertService
from medhub.cds.alerts import Alert
from medhub.cds.detector import AlarmEvent, Detector, StreamKey, to_us
from medhub.cds.vital_limits import LimitPolicy
from medhub.metrics import DETECTOR_SAMPLES, DETECTOR_SECONDS
from medhub.timeseries.records import SampleRecord

log = structlog.get_logger(__name__)

#: Transitions kept while the store is down; beyond this the oldest are dropped and logged.
MAX_PENDING_EVENTS = 100_000


def _us(duration: timedelta) -> int:
    return duration // timedelta(microseconds=1)


class VitalWatch:
    """The detector and the alert service, fed by ingest; safe to call from several threads."""

    def __init__(
        self,
        alerts: AlertService,
        *,
        policy: LimitPolicy | None = None,
        detector: Detector | None = None,
        ack_silence: timedelta = timedelta(0),
    ) -> None:
        self._alerts = alerts
        self._policy = policy or LimitPolicy()
        self._detector = detector or Detector()
        self._registered: set[StreamKey] = set()
        #: (vital, device, channel) -> the streams of that source (one per patient bound).
        self._by_source: dict[tuple[str, str, str], list[StreamKey]] = {}
        self._latch = AckLatch(_us(ack_silence))
        self._lock = threading.Lock()
        self._pending: list[AlarmEvent] = []
        #: Acknowledged alerts already passed to the detector (see :meth:`catch_up`).
        self._acknowledged: set[str] = set()

    def __call__(self, records: Sequence[SampleRecord]) -> None:
        """Run a stored batch through the detector (the ingest listener)."""
        watched = [r for r in records if r.vital in self._policy.defaults]
        if not watched:
            return
        with self._lock:
            for record in watched:
                key = StreamKey(record.vital, record.device_id, record.channel, record.patient_id)
                if key not in self._registered:
                    limits = self._policy.resolve(
                        record.vital, patient_id=record.patient_id, device_id=record.device_id
                    )
                    self._detector.register(key, limits)
                    self._registered.add(key)
                    source = (key.vital, key.device_id, key.channel)
                    self._by_source.setdefault(source, []).append(key)
            started = time.perf_counter()
            detected = self._detector.process_records(watched)
            DETECTOR_SECONDS.observe(time.perf_counter() - started)
            DETECTOR_SAMPLES.inc(len(watched))
            events = self._latched(detected)
            latest = max(record.corrected_time for record in watched)
            events += self._latch.due(to_us(latest))
        self._apply(events)

    def tick(self, now: datetime) -> None:
        """Signal-lost checks, held ENDs now due, and a retry of transitions not yet stored."""
        with self._lock:
            events = self._latched(self._detector.tick(now))
            events += self._latch.due(to_us(now))
        self._apply(events)

    def acknowledged(self, alert: Alert) -> bool:
        """Tell the detector an alert was acknowledged (the alert service's listener).

        The alert names its stream by vital, device, channel and patient; the
        detector marks the condition acknowledged on the stream where it is
        active. False when no running stream has it active (it ended first,
        the alert is not the detector's, or this process did not raise it).
        """
        if alert.condition not in DETECTOR_CONDITIONS:
            return False
        source = (alert.vital, alert.device_id, alert.channel)
        with self._lock:
            self._acknowledged.add(alert.id)
            told = False
            for key in self._by_source.get(source, ()):
                if key.patient_id not in (None, alert.patient_id):
                    continue
                index = self._detector.index(key)
                if index is not None and self._detector.acknowledge(index, alert.condition):
                    told = True
        log.info("alerts.acknowledged_in_detector", alert=alert.id, known=told)
        return told

    def catch_up(self, acknowledged: Sequence[Alert]) -> int:
        """Pass on acknowledgements made in another process; returns how many were new.

        With ``medhub serve --role api`` and ``--role devices`` apart, the API's
        alert service has no detector to tell: the devices process calls this
        on its check timer with the alerts now acknowledged (read from the
        database), so the latch silences a flapping acknowledged alarm there
        too. ``acknowledged`` is the whole current list: ids no longer in it
        (resolved) are forgotten, so the set stays as small as the open alerts.
        """
        current = {alert.id for alert in acknowledged}
        with self._lock:
            fresh = [alert for alert in acknowledged if alert.id not in self._acknowledged]
            self._acknowledged = (self._acknowledged & current) | {a.id for a in fresh}
        for alert in fresh:
            self.acknowledged(alert)
        return len(fresh)

    def _latched(self, events: list[AlarmEvent]) -> list[AlarmEvent]:
        """Events through the acknowledged-alarm latch (called with the lock held)."""
        latched = self._latch.filter(events)
        for stream, condition in latched.reacknowledge:
            self._detector.acknowledge(stream, condition)
        return latched.events

    def _apply(self, events: list[AlarmEvent]) -> None:
        with self._lock:
            batch, self._pending = self._pending + events, []
        if not batch:
            return
        try:
            self._alerts.apply(batch)
        except Exception as exc:  # the store is down: keep the transitions for the next try
            log.warning("alerts.apply_deferred", events=len(batch), reason=str(exc))
            with self._lock:
                self._pending = batch + self._pending
                if len(self._pending) > MAX_PENDING_EVENTS:
                    dropped = len(self._pending) - MAX_PENDING_EVENTS
                    log.error("alerts.pending_dropped", dropped=dropped)
                    self._pending = self._pending[dropped:]
