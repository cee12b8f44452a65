"""Per-device clock offset tracking (pure; no I/O).

Bedside clocks drift and some are set to the wrong zone. Each message gives
one observation: ``received_at - device_clock``, where ``device_clock`` is
the device's clock when it sent the message (the payload's ``sent`` stamp)
or, failing that, the newest sample time in the message. That difference is
the clock offset plus the network delay, and the delay is never negative, so
the *smallest* difference over a recent window is the best estimate of the
offset (the same idea NTP's clock filter uses).

Using the smallest observation also keeps store-and-forward replays, whose
samples are old but whose delay is long, from dragging the estimate; and the
observations of one second of arrival count as one (their smallest), so a
burst of a thousand replayed messages cannot push the live observations out
of the window. A gateway that stamps ``sent`` on each message makes replays
harmless altogether.
The corrected time of a sample is its device time plus the estimate; an
estimate beyond ``limit`` flags the device (charts would otherwise put its
readings at the wrong time, and rules would age them wrongly).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from datetime import datetime, timedelta


@dataclass(frozen=True, slots=True)
class ClockState:
    """The current estimate for one device."""

    offset: timedelta
    flagged: bool
    observations: int


class ClockTracker:
    """The offset of one device's clock, from the last ``window`` observations."""

    def __init__(self, *, limit: timedelta, window: int = 32) -> None:
        self._limit = limit
        self._seen: deque[timedelta] = deque(maxlen=window)
        self._last_second: int | None = None
        self._count = 0

    def observe(self, device_clock: datetime, received_at: datetime) -> ClockState:
        """Record one message and return the estimate including it."""
        delay = received_at - device_clock
        second = int(received_at.timestamp())
        if second == self._last_second and self._seen:
            self._seen[-1] = min(self._seen[-1], delay)
        else:
            self._seen.append(delay)
            self._last_second = second
        self._count += 1
        return self.state

    @property
    def state(self) -> ClockState:
        if not self._seen:
            return ClockState(timedelta(0), False, 0)
        offset = min(self._seen)
        return ClockState(offset, abs(offset) > self._limit, self._count)

    def correct(self, device_time: datetime) -> datetime:
        """The sample's time on medhub's clock."""
        return device_time + self.state.offset
