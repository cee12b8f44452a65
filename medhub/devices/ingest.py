"""Device sample ingest: clock correction, patient attribution, storage, and what comes next.

Every transport (MQTT, Modbus, serial) hands decoded samples to
:class:`DeviceIngest`, the :class:`~medhub.devices.samples.SampleSink` of the
hub. For each batch it

1. registers devices it has not seen (a FHIR Device is created for each);
2. updates each device's clock estimate and computes the corrected time;
3. attributes each sample to the patient the device was bound to at that
   corrected time (bindings are cached and refreshed every few seconds, and
   at once when this process changes one);
4. writes the batch to the sample store (idempotent, so a redelivered batch
   is harmless) and only then returns, so the transport may acknowledge;
5. passes the stored records to the listeners (the vital-sign detector), and
   only then records the devices' state, so an alert does not wait for it.

Device state (last seen, clock offset) is written to the registry at most
every ``state_interval`` per device: it is for operators' eyes, and writing it
per message would cost more than the samples.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Protocol

import structlog

from medhub.clinical.device_binding import BindingTimeline
from medhub.devices.clock import ClockTracker
from medhub.devices.samples import Sample
from medhub.timeseries.records import SampleRecord

log = structlog.get_logger(__name__)

RecordsListener = Callable[[Sequence[SampleRecord]], None]


class SampleWriter(Protocol):
    """Where attributed samples are written (the sample store, or its spool)."""

    def write(self, records: Sequence[SampleRecord]) -> int: ...


class Registry(Protocol):
    """What ingest needs of the device registry."""

    def ensure_devices(self, device_ids: list[str]) -> list[str]: ...

    def timelines(self) -> dict[str, BindingTimeline]: ...

    def record_seen(self, seen: list[tuple[str, datetime, float, bool]]) -> None: ...

    def record_state(
        self,
        device_id: str,
        *,
        last_seen: datetime | None = None,
        clock_offset_ms: float | None = None,
        clock_flagged: bool | None = None,
        rejected: int = 0,
    ) -> None: ...


def _utc_now() -> datetime:
    return datetime.now(UTC)


class DeviceIngest:
    """The hub's sample sink; safe to call from several transport threads."""

    def __init__(
        self,
        writer: SampleWriter,
        registry: Registry,
        *,
        clock_limit: timedelta = timedelta(seconds=5),
        binding_refresh_seconds: float = 5.0,
        state_interval_seconds: float = 10.0,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._writer = writer
        self._registry = registry
        self._clock_limit = clock_limit
        self._refresh_seconds = binding_refresh_seconds
        self._state_interval = state_interval_seconds
        self._monotonic = monotonic
        self._lock = threading.Lock()
        self._known: set[str] = set()
        self._clocks: dict[str, ClockTracker] = {}
        self._timelines: dict[str, BindingTimeline] = {}
        self._timelines_at = float("-inf")
        self._state_due: dict[str, float] = {}
        self._last_seen: dict[str, datetime] = {}
        self._listeners: list[RecordsListener] = []
        self.samples_stored = 0
        self.samples_duplicate = 0

    def add_listener(self, listener: RecordsListener) -> None:
        """Call ``listener`` with every batch of records after it is stored."""
        self._listeners.append(listener)

    def invalidate_bindings(self, device_id: str | None = None) -> None:  # noqa: ARG002
        """A binding changed: reload the bindings before the next batch is attributed.

        All bindings are reloaded (one small query), whichever device changed.
        """
        with self._lock:
            self._timelines_at = float("-inf")

    def store(
        self,
        samples: Sequence[Sample],
        *,
        received_at: datetime,
        sent_at: datetime | None = None,
    ) -> None:
        """Attribute and store a batch; returns only when it is stored (or spooled)."""
        if not samples:
            return
        by_device: dict[str, list[Sample]] = {}
        for sample in samples:
            by_device.setdefault(sample.device_id, []).append(sample)
        self._register(list(by_device))
        timelines = self._current_timelines()
        records: list[SampleRecord] = []
        for device_id, device_samples in by_device.items():
            tracker = self._tracker(device_id)
            reference = sent_at or max(s.device_time for s in device_samples)
            state = tracker.observe(reference, received_at)
            if state.flagged and state.observations == 1:
                log.warning(
                    "device.clock_skew",
                    device=device_id,
                    offset_seconds=round(state.offset.total_seconds(), 3),
                )
            timeline = timelines.get(device_id)
            for sample in device_samples:
                corrected = sample.device_time + state.offset
                records.append(  # positional: a keyword call costs more per sample
                    SampleRecord(
                        device_id,
                        sample.vital,
                        sample.channel or "",
                        sample.device_time,
                        corrected,
                        received_at,
                        sample.value,
                        sample.unit,
                        timeline.patient_at(corrected) if timeline else None,
                        sample.mdc_code,
                    )
                )
        inserted = self._writer.write(records)
        with self._lock:
            self.samples_stored += inserted
            self.samples_duplicate += len(records) - inserted
        for listener in self._listeners:
            try:
                listener(records)
            except Exception:  # a listener's bug must not turn a stored batch into a redelivery
                log.exception("device.ingest_listener_failed", listener=repr(listener))
        # After the listeners: this is for operators' eyes, a write to the resource
        # store that an alert raised by this batch should not queue behind.
        self._note_seen(by_device, received_at)

    def attribute(self, device_id: str, device_time: datetime) -> tuple[datetime, str | None]:
        """Medhub's time for a device event (an alarm) and the patient bound to it then.

        The same correction and binding as the device's samples get: its tracked
        clock offset (none yet: its own time) and the bindings in the cache.
        """
        tracker = self._clocks.get(device_id)
        corrected = device_time if tracker is None else tracker.correct(device_time)
        timeline = self._current_timelines().get(device_id)
        return corrected, timeline.patient_at(corrected) if timeline else None

    def note_rejected(self, device_id: str, count: int) -> None:
        """Count samples a decoder refused (shown in the registry state)."""
        try:
            self._registry.record_state(device_id, rejected=count)
        except Exception as exc:  # registry down: counting must not fail the transport
            log.warning("device.state_not_recorded", device=device_id, reason=str(exc))

    # -- internals ------------------------------------------------------------------

    def _register(self, device_ids: list[str]) -> None:
        new = [d for d in device_ids if d not in self._known]
        if not new:
            return
        try:
            created = self._registry.ensure_devices(new)
        except Exception as exc:
            # The registry's database is down: keep storing samples (they are
            # attributable later) and register the devices on a later batch.
            log.warning("device.registration_deferred", devices=new[:10], reason=str(exc))
            return
        for device_id in created:
            log.info("device.registered", device=device_id)
        with self._lock:
            self._known.update(new)

    def _current_timelines(self) -> dict[str, BindingTimeline]:
        now = self._monotonic()
        with self._lock:
            fresh = now - self._timelines_at < self._refresh_seconds
            if fresh:
                return self._timelines
        try:
            timelines = self._registry.timelines()
        except Exception as exc:
            # The registry's database is down: attribute with what we know rather
            # than stop storing samples (the sample store may be elsewhere, or spooled).
            log.warning("device.bindings_unavailable", reason=str(exc))
            return self._timelines
        with self._lock:
            self._timelines, self._timelines_at = timelines, now
        return timelines

    def _tracker(self, device_id: str) -> ClockTracker:
        tracker = self._clocks.get(device_id)
        if tracker is None:
            with self._lock:
                tracker = self._clocks.setdefault(device_id, ClockTracker(limit=self._clock_limit))
        return tracker

    def _note_seen(self, by_device: dict[str, list[Sample]], received_at: datetime) -> None:
        now = self._monotonic()
        due: list[str] = []
        with self._lock:
            for device_id in by_device:
                self._last_seen[device_id] = received_at
                if now >= self._state_due.get(device_id, float("-inf")):
                    self._state_due[device_id] = now + self._state_interval
                    due.append(device_id)
        if not due:
            return
        seen = []
        for device_id in due:
            state = self._clocks[device_id].state
            seen.append(
                (
                    device_id,
                    self._last_seen[device_id],
                    state.offset.total_seconds() * 1000,
                    state.flagged,
                )
            )
        try:
            self._registry.record_seen(seen)
        except Exception as exc:  # state is informational; the samples are stored
            log.warning("device.state_not_recorded", devices=len(seen), reason=str(exc))
