"""Watching ingested vitals: samples -> detector -> alerts, as an ingest listener.

:class:`VitalWatch` is called by device ingest with every stored batch. Each
(vital, device, channel, patient) stream is registered with the detector on
first sight, with limits resolved from the defaults and the patient's and
device's overrides; the detector's START/END transitions become alerts
(:class:`medhub.cds.alert_store.AlertService`), stored with their outbox
events in one transaction. If that transaction fails (the database is down),
the transitions are kept and applied with the next batch or tick, so an alarm
that started while the store was away is not lost.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from datetime import datetime

import structlog

from medhub.cds.alert_store import AlertService
from medhub.cds.detector import AlarmEvent, Detector, StreamKey
from medhub.cds.vital_limits import LimitPolicy
from medhub.timeseries.records import SampleRecord

log = structlog.get_logger(__name__)

#: Transitions kept while the store is down; beyond this the oldest are dropped and logged.
MAX_PENDING_EVENTS = 100_000


class VitalWatch:
    """The detector and the alert service, fed by ingest; safe to call from several threads."""

    def __init__(
        self,
        alerts: AlertService,
        *,
        policy: LimitPolicy | None = None,
        detector: Detector | None = None,
    ) -> None:
        self._alerts = alerts
        self._policy = policy or LimitPolicy()
        self._detector = detector or Detector()
        self._registered: set[StreamKey] = set()
        self._lock = threading.Lock()
        self._pending: list[AlarmEvent] = []

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
            events = self._detector.process_records(watched)
        self._apply(events)

    def tick(self, now: datetime) -> None:
        """Signal-lost checks, and a retry of transitions the store could not take earlier."""
        with self._lock:
            events = self._detector.tick(now)
        self._apply(events)

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
