"""The alarm rules in plain Python: the reference the numba kernel is tested against.

This module is the specification. :mod:`medhub.cds.detector_kernel` does the
same thing on arrays, fast; tests feed both the same samples (random, and a
recorded ICU stay) and require the same events, so any change to a rule is
made here first and the kernel follows.

For each valid sample (NaN is "no sample": monitors send it for an invalid
reading) at time ``t`` (microseconds) of stream ``s``, in this order:

1. **Order.** A sample not later than the stream's last one is dropped
   (a resent or reordered batch must not raise an alarm twice).
2. **Signal lost.** If the gap since the last sample reached
   ``signal_lost``, the loss is reported: ``START`` at ``last + signal_lost``
   (unless :meth:`ReferenceDetector.tick` already did) and ``END`` at ``t``.
   After a loss, the on-delay, the median window and the rate reference start
   afresh: what came before the gap says nothing about now.
3. **Filter.** With a median window ``w > 1``, the value used below is the
   median of the last ``w`` samples (fewer while the window fills; the mean
   of the two middle ones when there is an even number).
4. **Limits.** One limit alarm per stream, at one of four levels. Critical
   limits start at once; low/high start only once the value has been beyond
   the limit for ``on_delay`` (every sample in between beyond it too). An
   alarm ends, or steps down from critical, only when the value is back
   inside its limit by ``hysteresis``. Switching level is an ``END`` of the
   old condition and a ``START`` of the new one at the same time.
5. **Rate.** Every ``rate_window`` the value is compared with the one a
   window before; a change faster than ``rate_per_min`` starts a rate alarm,
   a slower one ends it.

An event is the tuple ``(stream, time_us, condition, transition, priority,
acknowledged, value, limit)``; ``acknowledged`` is only ever 1 on an ``END``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Final, NamedTuple

from medhub.cds.alarm_codes import PRIORITY_OF, Condition, Transition
from medhub.cds.vital_limits import VitalLimits

#: "No sample yet" and "never" for microsecond times; far from any real time
#: yet far from overflowing when subtracted from one.
NO_TIME: Final = -(2**62)
NEVER: Final = 2**62

LOW: Final = int(Condition.LOW)
HIGH: Final = int(Condition.HIGH)
CRIT_LOW: Final = int(Condition.CRITICAL_LOW)
CRIT_HIGH: Final = int(Condition.CRITICAL_HIGH)
RATE: Final = int(Condition.RATE)
LOST: Final = int(Condition.SIGNAL_LOST)
START: Final = int(Transition.START)
END: Final = int(Transition.END)


class EventRow(NamedTuple):
    stream: int
    time_us: int
    condition: int
    transition: int
    priority: int
    acknowledged: int
    value: float
    limit: float


@dataclass(frozen=True, slots=True)
class CompiledLimits:
    """:class:`VitalLimits` as the numbers the rules compare with (absent = infinite)."""

    low: float
    high: float
    critical_low: float
    critical_high: float
    hysteresis: float
    on_delay_us: int
    rate_per_min: float
    rate_window_us: int
    median_window: int
    signal_lost_us: int
    signal_lost_s: float

    @property
    def band_low(self) -> float:
        """The lowest value that is in range (no alarm, nothing pending)."""
        return max(self.low, self.critical_low)

    @property
    def band_high(self) -> float:
        return min(self.high, self.critical_high)


def compile_limits(limits: VitalLimits) -> CompiledLimits:
    def lower(value: float | None) -> float:
        return -math.inf if value is None else float(value)

    def upper(value: float | None) -> float:
        return math.inf if value is None else float(value)

    lost = limits.signal_lost_s
    return CompiledLimits(
        low=lower(limits.low),
        high=upper(limits.high),
        critical_low=lower(limits.critical_low),
        critical_high=upper(limits.critical_high),
        hysteresis=float(limits.hysteresis),
        on_delay_us=round(limits.on_delay_s * 1e6),
        rate_per_min=upper(limits.rate_per_min),
        rate_window_us=round(limits.rate_window_s * 1e6),
        median_window=limits.median_window,
        signal_lost_us=NEVER if lost is None else max(1, round(lost * 1e6)),
        signal_lost_s=math.nan if lost is None else float(lost),
    )


def zone(value: float, active: int, p: CompiledLimits) -> int:
    """The limit condition ``value`` is in, given the one already active (for hysteresis)."""
    if value > p.critical_high:
        return CRIT_HIGH
    if value < p.critical_low:
        return CRIT_LOW
    if active == CRIT_HIGH and value > p.critical_high - p.hysteresis:
        return CRIT_HIGH
    if active == CRIT_LOW and value < p.critical_low + p.hysteresis:
        return CRIT_LOW
    if value > p.high:
        return HIGH
    if value < p.low:
        return LOW
    if active in (HIGH, CRIT_HIGH) and value > p.high - p.hysteresis:
        return HIGH
    if active in (LOW, CRIT_LOW) and value < p.low + p.hysteresis:
        return LOW
    return 0


def limit_of(condition: int, p: CompiledLimits) -> float:
    return (0.0, p.low, p.high, p.critical_low, p.critical_high, p.rate_per_min, p.signal_lost_s)[
        condition
    ]


def median(values: list[float]) -> float:
    ordered = sorted(values)
    n = len(ordered)
    if n % 2:
        return ordered[n // 2]
    return (ordered[n // 2 - 1] + ordered[n // 2]) * 0.5


@dataclass(slots=True)
class StreamState:
    active: int = 0
    pending: int = 0
    pending_since: int = NO_TIME
    last_time: int = NO_TIME
    lost: bool = False
    rate_active: bool = False
    rate_ref_time: int = NO_TIME
    rate_ref_value: float = math.nan
    acknowledged: int = 0
    window: list[float] = field(default_factory=list)


class ReferenceDetector:
    """Per-stream state and the rules above, one sample at a time."""

    def __init__(self) -> None:
        self.limits: list[CompiledLimits] = []
        self.states: list[StreamState] = []
        self.dropped = 0

    def register(self, limits: VitalLimits) -> int:
        self.limits.append(compile_limits(limits))
        self.states.append(StreamState())
        return len(self.limits) - 1

    def process(
        self, streams: list[int], times_us: list[int], values: list[float]
    ) -> list[EventRow]:
        out: list[EventRow] = []
        for s, t, v in zip(streams, times_us, values, strict=True):
            self._sample(int(s), int(t), float(v), out)
        return out

    def tick(self, now_us: int) -> list[EventRow]:
        """Start "signal lost" on every stream silent for its limit by ``now_us``."""
        out: list[EventRow] = []
        for s, (p, st) in enumerate(zip(self.limits, self.states, strict=True)):
            if (
                st.last_time != NO_TIME
                and not st.lost
                and now_us - st.last_time >= p.signal_lost_us
            ):
                st.lost = True
                self._emit(out, s, st.last_time + p.signal_lost_us, LOST, START, math.nan, p)
        return out

    def acknowledge(self, stream: int, condition: int) -> bool:
        """Mark an active condition acknowledged; False if it is not active."""
        st = self.states[stream]
        if condition not in self.active(stream):
            return False
        st.acknowledged |= 1 << condition
        return True

    def active(self, stream: int) -> list[int]:
        st = self.states[stream]
        conditions = [st.active] if st.active else []
        if st.rate_active:
            conditions.append(RATE)
        if st.lost:
            conditions.append(LOST)
        return conditions

    def _emit(
        self,
        out: list[EventRow],
        s: int,
        t: int,
        condition: int,
        transition: int,
        value: float,
        p: CompiledLimits,
    ) -> None:
        st = self.states[s]
        bit = 1 << condition
        acknowledged = 1 if transition == END and st.acknowledged & bit else 0
        st.acknowledged &= ~bit
        out.append(
            EventRow(
                s,
                t,
                condition,
                transition,
                PRIORITY_OF[condition],
                acknowledged,
                value,
                limit_of(condition, p),
            )
        )

    def _sample(self, s: int, t: int, v: float, out: list[EventRow]) -> None:
        if v != v:
            return
        p, st = self.limits[s], self.states[s]
        if st.last_time != NO_TIME:
            if t <= st.last_time:
                self.dropped += 1
                return
            gap = False
            if st.lost:
                self._emit(out, s, t, LOST, END, math.nan, p)
                st.lost = False
                gap = True
            elif t - st.last_time >= p.signal_lost_us:
                self._emit(out, s, st.last_time + p.signal_lost_us, LOST, START, math.nan, p)
                self._emit(out, s, t, LOST, END, math.nan, p)
                gap = True
            if gap:
                st.pending = 0
                st.window.clear()
                st.rate_ref_time = NO_TIME
        st.last_time = t
        x = v
        if p.median_window > 1:
            st.window.append(v)
            if len(st.window) > p.median_window:
                del st.window[0]
            x = median(st.window)
        self._limits(s, t, x, p, st, out)
        if p.rate_per_min < math.inf:
            self._rate(s, t, x, p, st, out)

    def _limits(
        self, s: int, t: int, x: float, p: CompiledLimits, st: StreamState, out: list[EventRow]
    ) -> None:
        e = zone(x, st.active, p)
        if e in (LOW, HIGH):
            if st.pending != e:
                st.pending = e
                st.pending_since = t
        else:
            st.pending = 0
        if e == st.active:
            return
        if e == 0 or e in (CRIT_LOW, CRIT_HIGH):
            if st.active:
                self._emit(out, s, t, st.active, END, x, p)
            st.active = e
            if e:
                self._emit(out, s, t, e, START, x, p)
            return
        stepping_down = (st.active, e) in ((CRIT_HIGH, HIGH), (CRIT_LOW, LOW))
        if st.active:
            self._emit(out, s, t, st.active, END, x, p)
            st.active = 0
        if stepping_down or t - st.pending_since >= p.on_delay_us:
            st.active = e
            self._emit(out, s, t, e, START, x, p)

    def _rate(
        self, s: int, t: int, x: float, p: CompiledLimits, st: StreamState, out: list[EventRow]
    ) -> None:
        if st.rate_ref_time == NO_TIME:
            st.rate_ref_time, st.rate_ref_value = t, x
            return
        elapsed = t - st.rate_ref_time
        if elapsed < p.rate_window_us:
            return
        exceeded = abs(x - st.rate_ref_value) * 60e6 > p.rate_per_min * elapsed
        if exceeded and not st.rate_active:
            st.rate_active = True
            self._emit(out, s, t, RATE, START, x, p)
        elif not exceeded and st.rate_active:
            st.rate_active = False
            self._emit(out, s, t, RATE, END, x, p)
        st.rate_ref_time, st.rate_ref_value = t, x
