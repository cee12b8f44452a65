"""The vital-sign detector's batch API: streams, their state arrays, and alarm events out.

A *stream* is one vital from one source (a device's channel, attributed to a
patient when the device is bound to one). :meth:`Detector.register` gives it
an index and its resolved limits (see :class:`~medhub.cds.vital_limits.LimitPolicy`);
:meth:`Detector.process` runs arrays of ``(stream index, time, value)``
through the compiled rules (:mod:`medhub.cds.detector_kernel`), keeping every
stream's state between batches; :meth:`Detector.tick` reports streams that
went silent. What comes out is only the changes of alarm state, as
:class:`AlarmEvent`: that is what the alert lifecycle (storage, acknowledge,
escalation, publishing) consumes.

The detector is pure: no clock (``now`` is an argument), no I/O.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Final

import numpy as np

from medhub.cds import detector_kernel as k
from medhub.cds.alarm_codes import Condition, Priority, Transition
from medhub.cds.alarm_rules import compile_limits
from medhub.cds.vital_limits import VitalLimits
from medhub.errors import InputError
from medhub.timeseries.records import SampleRecord

EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
_ONE_US: Final = timedelta(microseconds=1)


def to_us(moment: datetime) -> int:
    """Microseconds since the Unix epoch: the detector's time (exact, unlike float seconds)."""
    return (moment - EPOCH) // _ONE_US


@dataclass(frozen=True, slots=True)
class StreamKey:
    """Where a stream's samples come from, and whom they are about."""

    vital: str
    device_id: str
    channel: str = ""
    patient_id: str | None = None


@dataclass(frozen=True, slots=True)
class AlarmEvent:
    """One edge of one alarm: everything the alert lifecycle needs to act on it."""

    stream: int
    key: StreamKey
    condition: Condition
    transition: Transition
    priority: Priority
    time_us: int
    #: The (filtered) value that caused the edge; NaN for "signal lost".
    value: float
    #: The limit crossed (for signal lost: its time in seconds; for rate: per minute).
    limit: float
    #: On an END: whether someone acknowledged the alarm while it was active.
    acknowledged: bool

    @property
    def time(self) -> datetime:
        return EPOCH + self.time_us * _ONE_US


class Detector:
    """Registered streams and their per-stream state, processed in batches.

    ``event_capacity`` is how many events one kernel call may write before
    Python drains them; it bounds memory, not what a batch can produce.
    """

    def __init__(self, *, capacity: int = 256, event_capacity: int = 4096) -> None:
        self._keys: list[StreamKey] = []
        self._index: dict[StreamKey, int] = {}
        self._pf = np.zeros((max(capacity, 1), k.PF_WIDTH), dtype=np.float64)
        self._si = np.zeros((max(capacity, 1), k.SI_WIDTH), dtype=np.int64)
        self._ht = np.zeros((max(capacity, 1), k.HT_WIDTH), dtype=np.int64)
        self._hb = np.zeros((max(capacity, 1), k.HB_WIDTH), dtype=np.float64)
        capacity_events = max(event_capacity, k.MAX_EVENTS_PER_SAMPLE * 2)
        self._ev_i = np.zeros((capacity_events, k.EVI_WIDTH), dtype=np.int64)
        self._ev_f = np.zeros((capacity_events, 2), dtype=np.float64)
        self._scratch = np.zeros(8, dtype=np.float64)
        self.dropped = 0

    def __len__(self) -> int:
        return len(self._keys)

    @property
    def keys(self) -> Sequence[StreamKey]:
        return self._keys

    def index(self, key: StreamKey) -> int | None:
        return self._index.get(key)

    def register(self, key: StreamKey, limits: VitalLimits) -> int:
        """The index of ``key``'s stream, new or existing; its limits set to ``limits``."""
        idx = self._index.get(key)
        if idx is None:
            idx = len(self._keys)
            if idx == self._pf.shape[0]:
                self._grow()
            self._keys.append(key)
            self._index[key] = idx
            self._si[idx, :] = 0
            self._ht[idx, k.LAST_T] = k.NO_TIME
            self._si[idx, k.PENDING_SINCE] = k.NO_TIME
            self._si[idx, k.RATE_REF_T] = k.NO_TIME
        self.set_limits(idx, limits)
        return idx

    def set_limits(self, stream: int, limits: VitalLimits) -> None:
        """New limits for a stream; its alarm state carries on and is judged by them next sample.

        A changed median window restarts the filter, since the ring layout depends on it.
        """
        p = compile_limits(limits.validate())
        pf, si = self._pf[stream], self._si[stream]
        pf[k.BAND_LOW] = p.band_low
        pf[k.BAND_HIGH] = p.band_high
        pf[k.F_LOW] = p.low
        pf[k.F_HIGH] = p.high
        pf[k.F_CRIT_LOW] = p.critical_low
        pf[k.F_CRIT_HIGH] = p.critical_high
        pf[k.F_HYSTERESIS] = p.hysteresis
        pf[k.F_RATE] = p.rate_per_min
        pf[k.F_LOST_S] = p.signal_lost_s
        self._ht[stream, k.LOST_US] = p.signal_lost_us
        si[k.DELAY_US] = p.on_delay_us
        si[k.RATE_WINDOW_US] = p.rate_window_us
        if si[k.MED_W] != p.median_window:
            si[k.MED_N] = 0
            si[k.MED_POS] = 0
        si[k.MED_W] = p.median_window
        si[k.FEATURES] = int(p.median_window > 1 or p.rate_per_min < np.inf)
        quiet = not (si[k.ACTIVE] or si[k.PENDING] or si[k.LOST_ACTIVE] or si[k.FEATURES])
        self._hb[stream] = (p.band_low, p.band_high) if quiet else (np.inf, -np.inf)

    def process(
        self, streams: Sequence[int] | np.ndarray[Any, Any], times_us: Any, values: Any
    ) -> list[AlarmEvent]:
        """Run one batch; samples must be in time order per stream (later ones are dropped)."""
        s = np.ascontiguousarray(streams, dtype=np.int32)
        t = np.ascontiguousarray(times_us, dtype=np.int64)
        v = np.ascontiguousarray(values, dtype=np.float64)
        if not (s.ndim == t.ndim == v.ndim == 1 and s.shape == t.shape == v.shape):
            raise InputError("streams, times_us and values must be 1-d arrays of one length")
        events: list[AlarmEvent] = []
        count = len(self._keys)
        start = 0
        while start < s.size:
            start, n, dropped = k.process_batch(
                s,
                t,
                v,
                start,
                self._pf[:count],
                self._si[:count],
                self._ht[:count],
                self._hb[:count],
                self._ev_i,
                self._ev_f,
                self._scratch,
            )
            self.dropped += dropped
            self._drain(n, events)
            if start < 0:
                # Samples before the bad one were processed and their events are kept.
                raise InputError("a stream index is not registered")
        return events

    def tick(self, now: datetime | int) -> list[AlarmEvent]:
        """Report streams silent for their signal-lost time as of ``now``."""
        now_us = now if isinstance(now, int) else to_us(now)
        events: list[AlarmEvent] = []
        start = 0
        while start < len(self._keys):
            count = len(self._keys)
            start, n = k.tick_streams(
                now_us,
                start,
                self._pf[:count],
                self._si[:count],
                self._ht[:count],
                self._hb[:count],
                self._ev_i,
                self._ev_f,
            )
            self._drain(n, events)
        return events

    def process_records(self, records: Iterable[SampleRecord]) -> list[AlarmEvent]:
        """Detection on ingested samples; a record of an unregistered stream is an error.

        The stream is ``(vital, device, channel, patient)``: a monitor moved to
        another patient starts a fresh stream with that patient's limits.
        """
        streams: list[int] = []
        times: list[int] = []
        values: list[float] = []
        for record in records:
            key = StreamKey(record.vital, record.device_id, record.channel, record.patient_id)
            idx = self._index.get(key)
            if idx is None:
                raise InputError(f"no detector stream registered for {key}")
            streams.append(idx)
            times.append(to_us(record.corrected_time))
            values.append(record.value)
        return self.process(streams, times, values)

    def active(self, stream: int) -> list[Condition]:
        """The conditions active on a stream now (limit, rate, signal lost)."""
        si = self._si[stream]
        conditions = [Condition(int(si[k.ACTIVE]))] if si[k.ACTIVE] else []
        if si[k.RATE_ACTIVE]:
            conditions.append(Condition.RATE)
        if si[k.LOST_ACTIVE]:
            conditions.append(Condition.SIGNAL_LOST)
        return conditions

    def acknowledge(self, stream: int, condition: Condition) -> bool:
        """Record that someone acknowledged an active alarm; its END event will say so.

        Returns False when the condition is not active (it ended before the
        acknowledgement arrived, say): the caller can tell the clinician so.
        """
        if condition not in self.active(stream):
            return False
        self._si[stream, k.ACKED] |= 1 << int(condition)
        return True

    def _drain(self, n: int, events: list[AlarmEvent]) -> None:
        rows = self._ev_i[:n].tolist()
        floats = self._ev_f[:n].tolist()
        for (s, t, cond, trans, prio, acked), (value, limit) in zip(rows, floats, strict=True):
            events.append(
                AlarmEvent(
                    stream=s,
                    key=self._keys[s],
                    condition=Condition(cond),
                    transition=Transition(trans),
                    priority=Priority(prio),
                    time_us=t,
                    value=value,
                    limit=limit,
                    acknowledged=bool(acked),
                )
            )

    def _grow(self) -> None:
        size = self._pf.shape[0] * 2
        old = self._pf.shape[0]
        grown: list[Any] = []
        for array in (self._pf, self._si, self._ht, self._hb):
            bigger = np.zeros((size, array.shape[1]), dtype=array.dtype)
            bigger[:old] = array
            grown.append(bigger)
        self._pf, self._si, self._ht, self._hb = grown
