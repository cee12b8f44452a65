"""Vital-sign detector throughput on one core: numba kernel, numpy, pure-Python reference.

10,000 heart-rate streams with medhub's default limits (critical 40/120, low
50 / high 110, hysteresis 5, on-delay 10 s, signal lost after 30 s), one
sample per second each. Values wander around each stream's baseline and 2 %
of streams have a 5-minute tachycardia, so alarms start and end (the event
counts are printed) but most samples are in range, as on a real ward.

Two batch layouts, as ingest can hand them over:

* interleaved: time-major, one sample of every stream per second (a gateway
  batch of many monitors);
* grouped: stream-major, each stream's run of samples together (a monitor
  sending a minute of numerics in one message).

Candidates:

* numba ``Detector.process``: the full rules (critical, delay, hysteresis,
  signal lost), state carried across batches, ``AlarmEvent`` objects out;
  and the same kernel called directly, without building ``AlarmEvent``s;
* numpy: low/high with hysteresis and on-delay only (no critical limits, no
  signal lost, no filter or rate), vectorised over a streams x time block with
  the state carried between blocks: what array code can do without a loop. It
  is checked to produce the same number of events as the kernel with the
  same rules;
* pure-Python reference (``medhub.cds.alarm_rules``) on a 1 % slice.

Each is warmed up, then run over ``--batches`` batches; the best of 3 runs is
reported.

Usage: python bench/detector.py [--quick] [--streams N] [--seconds-per-batch T]
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from collections.abc import Callable
from typing import Any

import numba
import numpy as np
from _common import print_table

from medhub.cds import detector_kernel as kernel
from medhub.cds.alarm_rules import ReferenceDetector
from medhub.cds.detector import Detector, StreamKey
from medhub.cds.vital_limits import DEFAULT_LIMITS, VitalLimits

Array = np.ndarray[Any, Any]


def walk(streams: int, seconds: int, seed: int) -> Array:
    """(streams, seconds) heart rates: a mean-reverting walk, 2 % of streams in an episode.

    Each stream wanders around its own baseline (Ornstein-Uhlenbeck, stationary
    spread about 5/min); 2 % have a 5-minute tachycardia (mean 118/min) starting
    at a random time, which goes through the delay, the high and critical limits
    and hysteresis on the way back.
    """
    rng = np.random.default_rng(seed)
    mean = np.tile(rng.normal(80.0, 6.0, streams)[:, None], (1, seconds))
    episodes = np.flatnonzero(rng.random(streams) < 0.02)
    for stream, begin in zip(episodes, rng.integers(0, seconds, episodes.size), strict=True):
        mean[stream, begin : begin + 300] = 118.0
    values = np.empty((streams, seconds))
    x = mean[:, 0].copy()
    noise = rng.normal(0.0, 1.0, (seconds, streams))
    for second in range(seconds):
        x += 0.05 * (mean[:, second] - x) + noise[second]
        values[:, second] = x
    return values


class NumpyDetector:
    """Low/high limits with hysteresis and on-delay, vectorised over a (streams, T) block."""

    def __init__(self, streams: int, limits: VitalLimits) -> None:
        assert limits.low is not None and limits.high is not None
        self.low, self.high, self.hyst = limits.low, limits.high, limits.hysteresis
        self.delay = round(limits.on_delay_s * 1e6)
        self.state = {side: np.zeros(streams, dtype=bool) for side in ("low", "high")}
        self.since = {side: np.full(streams, np.iinfo(np.int64).max) for side in ("low", "high")}

    def process(self, times: Array, values: Array) -> int:
        """``times`` (T,) shared by all streams, ``values`` (streams, T); returns events."""
        events = 0
        for side in ("low", "high"):
            if side == "high":
                out, clear = values > self.high, values <= self.high - self.hyst
            else:
                out, clear = values < self.low, values >= self.low + self.hyst
            streams, width = values.shape
            cols = np.arange(width)
            # Start of the current out-of-range run at each sample (-1: it began before).
            run_start = np.maximum.accumulate(np.where(out, -1, cols), axis=1) + 1
            # A run from column 0 may have begun in an earlier block (``since``).
            carried = np.minimum(self.since[side], times[0])[:, None]
            began = np.where(run_start == 0, carried, times[np.minimum(run_start, width - 1)])
            confirmed = out & (times[None, :] - began >= self.delay)
            # Latest set/clear decision at each sample; hysteresis keeps the state between.
            code = np.where(confirmed, 1, np.where(clear, 0, -1))
            last = np.maximum.accumulate(np.where(code >= 0, cols, -1), axis=1)
            taken = np.take_along_axis(code, np.maximum(last, 0), axis=1)
            state = np.where(last >= 0, taken == 1, self.state[side][:, None])
            previous = np.concatenate([self.state[side][:, None], state[:, :-1]], axis=1)
            events += int(np.count_nonzero(state != previous))
            self.state[side] = state[:, -1]
            tail_out = out[:, -1]
            self.since[side] = np.where(tail_out, began[:, -1], np.iinfo(np.int64).max)
        return events


def best_of(runs: int, run: Callable[[], tuple[int, int]]) -> tuple[float, int, int]:
    """(best samples/s, samples, events) over ``runs`` calls of ``run`` -> (samples, events)."""
    best, samples, events = 0.0, 0, 0
    for _ in range(runs):
        started = time.perf_counter()
        samples, events = run()
        best = max(best, samples / (time.perf_counter() - started))
    return best, samples, events


def numba_rate(
    prepared: list[tuple[Array, Array, Array]],
    streams: int,
    limits: VitalLimits,
    *,
    kernel_only: bool = False,
) -> tuple[float, int, int]:
    """Best samples/s of ``Detector.process`` over the batches after ``prepared[0]``.

    ``kernel_only`` calls the compiled kernel on the detector's arrays directly
    (reaching into its private state, as only a benchmark should): no
    ``AlarmEvent`` objects, so the figure is the kernel's alone.
    """
    best, samples, events = 0.0, 0, 0
    for _ in range(3):
        detector = Detector(capacity=streams, event_capacity=1 << 16)
        for i in range(streams):
            detector.register(StreamKey("heart-rate", f"m{i}"), limits)
        detector.process(*prepared[0])  # warm-up batch (and the JIT cache load)
        state = (detector._pf, detector._si, detector._ht, detector._hb)
        buffers = (detector._ev_i, detector._ev_f, detector._scratch)
        samples = events = 0
        started = time.perf_counter()
        for s, t, v in prepared[1:]:
            if kernel_only:
                end, found, _ = kernel.process_batch(s, t, v, 0, *state, *buffers)
                assert end == s.size, "event buffer too small for a kernel-only run"
                events += found
            else:
                events += len(detector.process(s, t, v))
            samples += s.size
        best = max(best, samples / (time.perf_counter() - started))
    return best, samples, events


def layout(values: Array, batch: int, width: int, kind: str) -> tuple[Array, Array, Array]:
    """Batch ``batch`` of the (streams, seconds) matrix as flat (stream, time, value) arrays."""
    streams = values.shape[0]
    ids = np.arange(streams, dtype=np.int32)
    block = values[:, batch * width : (batch + 1) * width]
    seconds = np.arange(batch * width, (batch + 1) * width, dtype=np.int64) * 1_000_000
    if kind == "interleaved":
        return np.tile(ids, width), np.repeat(seconds, streams), block.T.ravel()
    return np.repeat(ids, width), np.tile(seconds, streams), block.ravel()


def numpy_row(values: Array, width: int, batches: int, limits: VitalLimits) -> list[object]:
    """The numpy candidate, and whether the kernel with the same rules finds as many events."""
    streams = values.shape[0]
    same_rules = VitalLimits(
        low=limits.low, high=limits.high, hysteresis=limits.hysteresis, on_delay_s=limits.on_delay_s
    )

    def blocks() -> list[tuple[Array, Array]]:
        return [
            (
                np.arange(b * width, (b + 1) * width, dtype=np.int64) * 1_000_000,
                values[:, b * width : (b + 1) * width],
            )
            for b in range(batches + 1)
        ]

    def numpy_run() -> tuple[int, int]:
        detector = NumpyDetector(streams, same_rules)
        samples = events = 0
        for b, (seconds, block) in enumerate(blocks()):
            found = detector.process(seconds, block)
            if b:
                samples, events = samples + block.size, events + found
        return samples, events

    rate, samples, events = best_of(3, numpy_run)
    prepared = [layout(values, b, width, "grouped") for b in range(batches + 1)]
    _, _, kernel_events = numba_rate(prepared, streams, same_rules)
    check = "same" if events == kernel_events else f"DIFFERENT: kernel {kernel_events}"
    name = f"numpy, low/high + hysteresis + delay only ({check} events)"
    return [name, rate / 1e6, samples, events]


def reference_row(values: Array, width: int, batches: int, limits: VitalLimits) -> list[object]:
    """The pure-Python reference on 1 % of the streams (it is about 500x slower)."""
    few = max(1, values.shape[0] // 100)

    def reference_run() -> tuple[int, int]:
        reference = ReferenceDetector()
        for _ in range(few):
            reference.register(limits)
        samples = events = 0
        for b in range(batches + 1):
            s, t, v = layout(values[:few], b, width, "interleaved")
            found = reference.process(s.tolist(), t.tolist(), v.tolist())
            if b:
                samples, events = samples + s.size, events + len(found)
        return samples, events

    rate, samples, events = best_of(3, reference_run)
    return [f"pure-Python reference, interleaved, {few} streams", rate / 1e6, samples, events]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--streams", type=int, default=10_000)
    parser.add_argument("--seconds-per-batch", type=int, default=100)
    parser.add_argument("--batches", type=int, default=20)
    args = parser.parse_args()
    streams, width = args.streams, args.seconds_per_batch
    batches = 3 if args.quick else args.batches
    limits = DEFAULT_LIMITS["heart-rate"]
    values = walk(streams, width * (batches + 1), seed=7)

    rows: list[list[object]] = []
    for kind in ("interleaved", "grouped"):
        prepared = [layout(values, b, width, kind) for b in range(batches + 1)]
        rate, samples, events = numba_rate(prepared, streams, limits)
        rows.append([f"numba Detector.process, {kind}", rate / 1e6, samples, events])
        rate, samples, events = numba_rate(prepared, streams, limits, kernel_only=True)
        rows.append([f"numba kernel only (no AlarmEvent), {kind}", rate / 1e6, samples, events])
    rows.append(numpy_row(values, width, batches, limits))
    rows.append(reference_row(values, width, batches, limits))

    print(
        f"# detector: {streams:,} heart-rate streams, 1 Hz, {width} s per stream per batch,"
        f" {batches} batches timed after one warm-up"
    )
    print(
        f"# Python {platform.python_version()}, numba {numba.__version__}, one thread,"
        f" {os.cpu_count()} CPUs seen; best of 3 runs"
    )
    print_table(["candidate", "M samples/s", "samples", "events"], rows)


if __name__ == "__main__":
    sys.exit(main())
