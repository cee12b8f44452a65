"""The alarm rules of :mod:`medhub.cds.alarm_rules`, compiled with numba, over arrays.

Per-stream parameters and state live in row-per-stream arrays: ``pf``
(float64) and ``si`` (int64) for the full rules, and two 16-byte hot rows,
``ht`` (last time, signal-lost time) and ``hb`` (the in-range band). Most
samples of a monitored patient are in range with nothing pending; for those
the kernel reads only the hot rows, and keeps them in registers over a run
of samples of the same stream: that is the fast path the throughput target
is about. A stream with an alarm active or pending, a lost signal, a median
filter or a rate rule has its band set to (+inf, -inf), so every one of its
samples takes the slow path, which is the reference's rules line for line.

Events go into preallocated arrays (``ev_i``: stream, time, condition,
transition, priority, acknowledged; ``ev_f``: value, limit). A sample emits
at most :data:`MAX_EVENTS_PER_SAMPLE`, so the kernel stops before the arrays
could overflow and returns where it stopped; the caller drains them and calls
again. Python therefore pays per event, never per sample.

Every function is compiled for one signature only (the wrapper in
:mod:`medhub.cds.detector` converts its inputs), and cached on disk
(``cache=True``), so a test run compiles each once.
"""

from __future__ import annotations

from typing import Any, Final

import numpy as np
from numba import njit

# float64 row (pf): parameters, then the rate reference and the median ring.
BAND_LOW: Final = 0
BAND_HIGH: Final = 1
F_LOW: Final = 2
F_HIGH: Final = 3
F_CRIT_LOW: Final = 4
F_CRIT_HIGH: Final = 5
F_HYSTERESIS: Final = 6
F_RATE: Final = 7
F_LOST_S: Final = 8
F_RATE_REF: Final = 9
F_WINDOW: Final = 10  # 10..16: up to 7 samples
PF_WIDTH: Final = 17

# int64 row (si): the rest of the state and the integer parameters.
ACTIVE: Final = 0
PENDING: Final = 1
PENDING_SINCE: Final = 2
LOST_ACTIVE: Final = 3
RATE_ACTIVE: Final = 4
RATE_REF_T: Final = 5
ACKED: Final = 6
MED_N: Final = 7
MED_POS: Final = 8
DELAY_US: Final = 9
RATE_WINDOW_US: Final = 10
MED_W: Final = 11
FEATURES: Final = 12  # 1 when a median filter or a rate rule needs every sample
SI_WIDTH: Final = 13

# The hot rows, 16 bytes each, all the fast path reads: ht (int64) and hb (float64).
LAST_T: Final = 0
LOST_US: Final = 1
HT_WIDTH: Final = 2
#: hb holds the in-range band while the stream is quiet, and (+inf, -inf) otherwise,
#: so that one comparison sends every sample of a busy stream to the slow path.
HB_WIDTH: Final = 2

# ev_i columns
EV_STREAM: Final = 0
EV_TIME: Final = 1
EV_CONDITION: Final = 2
EV_TRANSITION: Final = 3
EV_PRIORITY: Final = 4
EV_ACKED: Final = 5
EVI_WIDTH: Final = 6

MAX_EVENTS_PER_SAMPLE: Final = 5
NO_TIME: Final = -(2**62)

#: Every kernel function: cached on disk, and without numba's reference-counting
#: runtime (``_nrt=False``, a private option of numba's CPU target). The kernel
#: allocates nothing, yet with the runtime on, every array handed to a helper is
#: increfed and decrefed atomically: measured here, that made the slow path
#: 15x slower (about 4 vs 60 M samples/s when every sample takes it).
_OPTIONS: Final[dict[str, Any]] = {"cache": True, "_nrt": False}
_INLINE: Final[dict[str, Any]] = {**_OPTIONS, "inline": "always"}

# alarm_codes.Condition / Transition as plain ints (numba freezes them as constants);
# the priorities in _emit are alarm_codes.PRIORITY_OF. Any drift makes the
# kernel-versus-reference tests fail, since the reference uses alarm_codes itself.
_LOW = 1
_HIGH = 2
_CRIT_LOW = 3
_CRIT_HIGH = 4
_RATE = 5
_LOST = 6
_START = 1
_END = 2
_NO_TIME = -(2**62)


@njit(**_INLINE)
def _emit(ev_i, ev_f, n, si, pf, s, t, condition, transition, value):  # type: ignore[no-untyped-def]
    bit = np.int64(1) << condition
    acked = 1 if transition == _END and (si[s, ACKED] & bit) != 0 else 0
    si[s, ACKED] &= ~bit
    if condition == _LOW:
        limit = pf[s, F_LOW]
        priority = 2
    elif condition == _HIGH:
        limit = pf[s, F_HIGH]
        priority = 2
    elif condition == _CRIT_LOW:
        limit = pf[s, F_CRIT_LOW]
        priority = 3
    elif condition == _CRIT_HIGH:
        limit = pf[s, F_CRIT_HIGH]
        priority = 3
    elif condition == _RATE:
        limit = pf[s, F_RATE]
        priority = 2
    else:
        limit = pf[s, F_LOST_S]
        priority = 1
    ev_i[n, EV_STREAM] = s
    ev_i[n, EV_TIME] = t
    ev_i[n, EV_CONDITION] = condition
    ev_i[n, EV_TRANSITION] = transition
    ev_i[n, EV_PRIORITY] = priority
    ev_i[n, EV_ACKED] = acked
    ev_f[n, 0] = value
    ev_f[n, 1] = limit
    return n + 1


@njit(**_INLINE)
def _zone(x, active, pf, s):  # type: ignore[no-untyped-def]
    hyst = pf[s, F_HYSTERESIS]
    if x > pf[s, F_CRIT_HIGH]:
        return _CRIT_HIGH
    if x < pf[s, F_CRIT_LOW]:
        return _CRIT_LOW
    if active == _CRIT_HIGH and x > pf[s, F_CRIT_HIGH] - hyst:
        return _CRIT_HIGH
    if active == _CRIT_LOW and x < pf[s, F_CRIT_LOW] + hyst:
        return _CRIT_LOW
    if x > pf[s, F_HIGH]:
        return _HIGH
    if x < pf[s, F_LOW]:
        return _LOW
    if (active == _HIGH or active == _CRIT_HIGH) and x > pf[s, F_HIGH] - hyst:
        return _HIGH
    if (active == _LOW or active == _CRIT_LOW) and x < pf[s, F_LOW] + hyst:
        return _LOW
    return 0


@njit(**_INLINE)
def _median(pf, si, s, v, scratch):  # type: ignore[no-untyped-def]
    w = si[s, MED_W]
    pos = si[s, MED_POS]
    pf[s, F_WINDOW + pos] = v
    si[s, MED_POS] = (pos + 1) % w
    n = min(si[s, MED_N] + 1, w)
    si[s, MED_N] = n
    for k in range(n):  # insertion sort: at most 7 values
        item = pf[s, F_WINDOW + k]
        j = k
        while j > 0 and scratch[j - 1] > item:
            scratch[j] = scratch[j - 1]
            j -= 1
        scratch[j] = item
    if n % 2 == 1:
        return scratch[n // 2]
    return (scratch[n // 2 - 1] + scratch[n // 2]) * 0.5


@njit(**_INLINE)
def _set_hot_band(pf, si, hb, s):  # type: ignore[no-untyped-def]
    """Open the fast path only for a quiet stream: no alarm, nothing pending, no filter."""
    if si[s, ACTIVE] | si[s, PENDING] | si[s, LOST_ACTIVE] | si[s, FEATURES] == 0:
        hb[s, 0] = pf[s, BAND_LOW]
        hb[s, 1] = pf[s, BAND_HIGH]
    else:
        hb[s, 0] = np.inf
        hb[s, 1] = -np.inf


@njit(**_OPTIONS)
def _slow(pf, si, ht, hb, s, t, v, ev_i, ev_f, n, scratch):  # type: ignore[no-untyped-def]
    """One sample through every rule; returns the new event count."""
    nan = np.nan
    lt = ht[s, LAST_T]
    if lt != _NO_TIME:
        gap = False
        if si[s, LOST_ACTIVE] != 0:
            n = _emit(ev_i, ev_f, n, si, pf, s, t, _LOST, _END, nan)
            si[s, LOST_ACTIVE] = 0
            gap = True
        elif t - lt >= ht[s, LOST_US]:
            n = _emit(ev_i, ev_f, n, si, pf, s, lt + ht[s, LOST_US], _LOST, _START, nan)
            n = _emit(ev_i, ev_f, n, si, pf, s, t, _LOST, _END, nan)
            gap = True
        if gap:
            si[s, PENDING] = 0
            si[s, MED_N] = 0
            si[s, MED_POS] = 0
            si[s, RATE_REF_T] = _NO_TIME
    ht[s, LAST_T] = t
    x = v
    if si[s, MED_W] > 1:
        x = _median(pf, si, s, v, scratch)
    n = _limits(pf, si, s, t, x, ev_i, ev_f, n)
    if pf[s, F_RATE] < np.inf:
        n = _rate(pf, si, s, t, x, ev_i, ev_f, n)
    _set_hot_band(pf, si, hb, s)
    return n


@njit(**_INLINE)
def _limits(pf, si, s, t, x, ev_i, ev_f, n):  # type: ignore[no-untyped-def]
    active = si[s, ACTIVE]
    e = _zone(x, active, pf, s)
    if e == _LOW or e == _HIGH:
        if si[s, PENDING] != e:
            si[s, PENDING] = e
            si[s, PENDING_SINCE] = t
    else:
        si[s, PENDING] = 0
    if e == active:
        return n
    if e == 0 or e == _CRIT_LOW or e == _CRIT_HIGH:
        if active != 0:
            n = _emit(ev_i, ev_f, n, si, pf, s, t, active, _END, x)
        si[s, ACTIVE] = e
        if e != 0:
            n = _emit(ev_i, ev_f, n, si, pf, s, t, e, _START, x)
        return n
    stepping_down = (active == _CRIT_HIGH and e == _HIGH) or (active == _CRIT_LOW and e == _LOW)
    if active != 0:
        n = _emit(ev_i, ev_f, n, si, pf, s, t, active, _END, x)
        si[s, ACTIVE] = 0
    if stepping_down or t - si[s, PENDING_SINCE] >= si[s, DELAY_US]:
        si[s, ACTIVE] = e
        n = _emit(ev_i, ev_f, n, si, pf, s, t, e, _START, x)
    return n


@njit(**_INLINE)
def _rate(pf, si, s, t, x, ev_i, ev_f, n):  # type: ignore[no-untyped-def]
    ref_t = si[s, RATE_REF_T]
    if ref_t == _NO_TIME:
        si[s, RATE_REF_T] = t
        pf[s, F_RATE_REF] = x
        return n
    elapsed = t - ref_t
    if elapsed < si[s, RATE_WINDOW_US]:
        return n
    exceeded = abs(x - pf[s, F_RATE_REF]) * 60e6 > pf[s, F_RATE] * elapsed
    if exceeded and si[s, RATE_ACTIVE] == 0:
        si[s, RATE_ACTIVE] = 1
        n = _emit(ev_i, ev_f, n, si, pf, s, t, _RATE, _START, x)
    elif not exceeded and si[s, RATE_ACTIVE] != 0:
        si[s, RATE_ACTIVE] = 0
        n = _emit(ev_i, ev_f, n, si, pf, s, t, _RATE, _END, x)
    si[s, RATE_REF_T] = t
    pf[s, F_RATE_REF] = x
    return n


@njit(**_OPTIONS)
def _process(streams, times, values, start, pf, si, ht, hb, ev_i, ev_f, scratch):  # type: ignore[no-untyped-def]
    """Returns (next sample, events, dropped), or next sample -1 on a bad stream index."""
    n = 0
    dropped = 0
    limit = ev_i.shape[0] - MAX_EVENTS_PER_SAMPLE
    total = streams.shape[0]
    count = np.uint64(ht.shape[0])
    i = start
    while i < total:
        s = streams[np.uint64(i)]
        if np.uint64(s) >= count:  # negative too, as a huge unsigned number
            return -1, n, dropped
        # The fast path: a run of in-range samples of one quiet stream, state in registers.
        # Indices are cast to unsigned so numba emits no negative-index wraparound code, and
        # "later than the last sample and within the signal-lost time" is one unsigned
        # comparison: 0 <= t - lt - 1 < lost - 1. Together: about 1.7x the samples/s.
        su = np.uint64(s)
        lt = ht[su, LAST_T]
        lost = np.uint64(ht[su, LOST_US] - 1)
        lo = hb[su, 0]
        hi = hb[su, 1]
        j = i
        while j < total:
            ju = np.uint64(j)
            if streams[ju] != s:
                break
            t = times[ju]
            v = values[ju]
            if not ((np.uint64(t - lt - 1) < lost) & (v >= lo) & (v <= hi)):
                break
            lt = t
            j += 1
        if j > i:
            ht[su, LAST_T] = lt
            i = j
            continue
        # Everything else, one sample at a time.
        v = values[np.uint64(i)]
        t = times[np.uint64(i)]
        i += 1
        if v != v:  # NaN: the monitor's "no valid value"
            continue
        if t <= lt:
            dropped += 1
            continue
        n = _slow(pf, si, ht, hb, s, t, v, ev_i, ev_f, n, scratch)
        if n > limit:
            break
    return i, n, dropped


@njit(**_OPTIONS)
def _tick(now, start, pf, si, ht, hb, ev_i, ev_f):  # type: ignore[no-untyped-def]
    n = 0
    total = ht.shape[0]
    s = start
    while s < total and n < ev_i.shape[0]:
        lt = ht[s, LAST_T]
        if lt != _NO_TIME and si[s, LOST_ACTIVE] == 0 and now - lt >= ht[s, LOST_US]:
            si[s, LOST_ACTIVE] = 1
            _set_hot_band(pf, si, hb, s)
            n = _emit(ev_i, ev_f, n, si, pf, s, lt + ht[s, LOST_US], _LOST, _START, np.nan)
        s += 1
    return s, n


Int32Array = np.ndarray[Any, np.dtype[np.int32]]
Int64Array = np.ndarray[Any, np.dtype[np.int64]]
Float64Array = np.ndarray[Any, np.dtype[np.float64]]


def process_batch(
    streams: Int32Array,
    times_us: Int64Array,
    values: Float64Array,
    start: int,
    pf: Float64Array,
    si: Int64Array,
    ht: Int64Array,
    hb: Float64Array,
    ev_i: Int64Array,
    ev_f: Float64Array,
    scratch: Float64Array,
) -> tuple[int, int, int]:
    """Run samples ``start:`` until the end or the event arrays are nearly full.

    Returns (index of the next unprocessed sample, events written, samples
    dropped as out of order); the index is -1 if a stream index is not registered.
    Inputs must already have the dtypes above.
    """
    result: tuple[int, int, int] = _process(
        streams, times_us, values, start, pf, si, ht, hb, ev_i, ev_f, scratch
    )
    return result


def tick_streams(
    now_us: int,
    start: int,
    pf: Float64Array,
    si: Int64Array,
    ht: Int64Array,
    hb: Float64Array,
    ev_i: Int64Array,
    ev_f: Float64Array,
) -> tuple[int, int]:
    """Start "signal lost" on silent streams from ``start``; returns (next stream, events)."""
    result: tuple[int, int] = _tick(now_us, start, pf, si, ht, hb, ev_i, ev_f)
    return result
