"""Simulated bedside monitors: realistic vital-sign streams and their MQTT payloads (pure).

Each :class:`DeviceSimulator` is one monitor on one patient, deterministic for
a ``seed`` and device id (no clock, no I/O: the caller says how far to advance
simulated time). What it produces, and why, so that what is downstream (the
ingest, the detector, the dashboards) sees what a ward sends:

* **A patient of its own**: baselines are drawn per device (heart rate about
  78/min, SpO2 about 97 %, respiratory rate about 15/min, temperature about
  36.9 Cel, blood pressure about 122/76 mm[Hg]).
* **Trends**: each vital wanders slowly around its baseline (an
  Ornstein-Uhlenbeck process, minutes-long), as a resting patient's vitals do.
* **Noise**: per-reading measurement noise, rounded as monitors display
  (integers for rates, SpO2 and pressures; 0.1 for temperature).
* **Cadence**: heart rate, SpO2 and respiratory rate every ``period_seconds``
  (1 s on a monitor, shorter to load-test); temperature every minute; NIBP
  (systolic, diastolic, mean) every five minutes, as a cuff cycles.
* **Dropouts**: a SpO2 probe that falls off (no SpO2 for tens of seconds) and
  a monitor that goes silent altogether (network or transport), so gaps and
  stale-data handling are exercised.
* **Out-of-range episodes**: tachycardia (heart rate up by 40-70/min),
  desaturation (SpO2 down to the 80s) and fever, each ramping in, holding
  for minutes and ramping out; the monitor raises an alert (IEEE 11073-10101
  ``MDC_EVT_HI`` / ``MDC_EVT_LO`` style codes, IEC 60601-1-8 priorities) when
  one starts and clears it when it ends.

Payloads follow the documented format of :mod:`medhub.devices.mqtt_payload`:
a vitals message is ``{"ts", "samples": [...]}`` for one instant, or a list of
those for several (one timestamp per group, which is what makes large batches
cheap to decode).
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Final, Literal

import orjson

#: medhub vital keys (:mod:`medhub.clinical.vital_codes`) and their UCUM units.
UNITS: Final[dict[str, str]] = {
    "heart-rate": "/min",
    "oxygen-saturation": "%",
    "respiratory-rate": "/min",
    "body-temperature": "Cel",
    "systolic-blood-pressure": "mm[Hg]",
    "diastolic-blood-pressure": "mm[Hg]",
    "mean-blood-pressure": "mm[Hg]",
}
_LIMITS: Final[dict[str, tuple[float, float]]] = {
    "heart-rate": (20.0, 250.0),
    "oxygen-saturation": (50.0, 100.0),
    "respiratory-rate": (3.0, 60.0),
    "body-temperature": (33.0, 42.5),
    "systolic-blood-pressure": (50.0, 250.0),
    "diastolic-blood-pressure": (25.0, 150.0),
}
#: (mean, spread) of each patient's baseline; (wander, noise) of the readings.
_BASELINE: Final[dict[str, tuple[float, float]]] = {
    "heart-rate": (78.0, 10.0),
    "oxygen-saturation": (97.0, 1.0),
    "respiratory-rate": (15.0, 2.5),
    "body-temperature": (36.9, 0.25),
    "systolic-blood-pressure": (122.0, 12.0),
    "diastolic-blood-pressure": (76.0, 7.0),
}
_VARIATION: Final[dict[str, tuple[float, float]]] = {
    "heart-rate": (4.0, 1.5),
    "oxygen-saturation": (0.8, 0.4),
    "respiratory-rate": (1.5, 0.8),
    "body-temperature": (0.15, 0.05),
    "systolic-blood-pressure": (6.0, 3.0),
    "diastolic-blood-pressure": (4.0, 2.0),
}
#: Minutes a trend takes to pull back halfway to the baseline.
_TREND_HALF_LIFE_SECONDS: Final = 300.0

EpisodeKind = Literal["tachycardia", "desaturation", "fever"]
#: kind -> (vital, shift range, alert code, priority)
_EPISODES: Final[dict[str, tuple[str, tuple[float, float], str, str]]] = {
    "tachycardia": ("heart-rate", (40.0, 70.0), "MDC_EVT_HI", "high"),
    "desaturation": ("oxygen-saturation", (-16.0, -8.0), "MDC_EVT_LO", "high"),
    "fever": ("body-temperature", (1.4, 2.4), "MDC_EVT_HI", "medium"),
}


@dataclass(frozen=True, slots=True)
class SimulatorProfile:
    """How a simulated monitor behaves; rates are per device per hour of simulated time."""

    period_seconds: float = 1.0
    temperature_period_seconds: float = 60.0
    nibp_period_seconds: float = 300.0
    episodes_per_hour: float = 0.5
    probe_off_per_hour: float = 1.0
    silences_per_hour: float = 0.5
    #: Set False to get every reading (benchmarks count what was sent).
    dropouts: bool = True

    def __post_init__(self) -> None:
        if not self.period_seconds >= 0.001:
            raise ValueError("period_seconds must be at least 0.001 (device times are in ms)")


@dataclass(frozen=True, slots=True)
class Reading:
    """One simulated measurement, in the documented vital names and UCUM units."""

    vital: str
    value: float
    unit: str
    time: datetime


@dataclass(frozen=True, slots=True)
class AlertEvent:
    """The monitor raising (``active``) or clearing an alarm."""

    code: str
    priority: str
    vital: str
    text: str
    time: datetime
    active: bool


@dataclass(frozen=True, slots=True)
class Step:
    """What a monitor produced while simulated time advanced."""

    readings: list[Reading]
    alerts: list[AlertEvent]


@dataclass
class _Episode:
    kind: str
    vital: str
    shift: float
    start: float
    ramp: float
    end: float

    def offset(self, t: float) -> float:
        """The shift at time ``t``: ramping in, holding, ramping out."""
        if t <= self.start or t >= self.end:
            return 0.0
        rise = min(1.0, (t - self.start) / self.ramp, (self.end - t) / self.ramp)
        return self.shift * rise


class DeviceSimulator:
    """One simulated monitor; :meth:`advance` moves its clock and returns what it measured."""

    def __init__(
        self,
        device_id: str,
        *,
        seed: int,
        start: datetime,
        profile: SimulatorProfile | None = None,
    ) -> None:
        if start.tzinfo is None:
            raise ValueError("start must be an aware datetime")
        self.device_id = device_id
        self.profile = profile or SimulatorProfile()
        self._random = random.Random(f"{seed}/{device_id}")
        self._origin = start
        self._t = 0.0  # simulated seconds since start of the last reading produced
        rng = self._random
        self._baseline = {v: rng.gauss(mean, spread) for v, (mean, spread) in _BASELINE.items()}
        self._baseline["oxygen-saturation"] = min(99.0, self._baseline["oxygen-saturation"])
        self._trend = dict.fromkeys(_BASELINE, 0.0)
        self._episodes: list[_Episode] = []
        self._probe_off_until = -1.0
        self._silent_until = -1.0
        self._period_ms = round(self.profile.period_seconds * 1000)
        self._index = 0  # readings are taken at whole milliseconds: index * period
        self._next_evolve = 0.0
        self._next_temperature = rng.uniform(0, self.profile.temperature_period_seconds)
        self._next_nibp = rng.uniform(0, self.profile.nibp_period_seconds)
        self.battery = rng.uniform(60.0, 100.0)

    @property
    def now(self) -> datetime:
        """Simulated time of the next reading."""
        return self._origin + timedelta(milliseconds=self._index * self._period_ms)

    def episodes_active(self, at: datetime) -> list[str]:
        """The out-of-range episodes under way at ``at`` (for tests and logs)."""
        t = (at - self._origin).total_seconds()
        return [e.kind for e in self._episodes if e.start < t < e.end]

    def advance(self, until: datetime) -> Step:
        """Produce every reading due before ``until`` (simulated time only moves forward)."""
        horizon = (until - self._origin).total_seconds()
        readings: list[Reading] = []
        alerts: list[AlertEvent] = []
        profile = self.profile
        while self._index * self._period_ms < horizon * 1000:
            t = self._index * self._period_ms / 1000
            if t >= self._next_evolve:  # trends and events move once a second at most
                step = max(1.0, profile.period_seconds)
                self._evolve(t, step, alerts)
                self._next_evolve = t + step
            if t >= self._silent_until:
                self._fast_readings(t, readings)
                if t >= self._next_temperature:
                    self._next_temperature += profile.temperature_period_seconds
                    readings.append(self._reading("body-temperature", t, 1))
                if t >= self._next_nibp:
                    self._next_nibp += profile.nibp_period_seconds
                    self._nibp(t, readings)
            self._index += 1
        return Step(readings, alerts)

    # -- internals ------------------------------------------------------------------

    def _at(self, t: float) -> datetime:
        return self._origin + timedelta(milliseconds=round(t * 1000))

    def _evolve(self, t: float, dt: float, alerts: list[AlertEvent]) -> None:
        rng = self._random
        pull = 1.0 - math.exp(-dt * math.log(2) / _TREND_HALF_LIFE_SECONDS)
        root = math.sqrt(dt / _TREND_HALF_LIFE_SECONDS)
        for vital, value in self._trend.items():
            wander = _VARIATION[vital][0]
            self._trend[vital] = value - value * pull + rng.gauss(0.0, wander * root)
        hours = dt / 3600.0
        for episode in self._episodes:
            if episode.end <= t:
                alerts.append(self._alert(episode, t, active=False))
        self._episodes = [e for e in self._episodes if e.end > t]
        if rng.random() < self.profile.episodes_per_hour * hours:
            self._start_episode(t, alerts)
        if not self.profile.dropouts:
            return
        if rng.random() < self.profile.probe_off_per_hour * hours:
            self._probe_off_until = t + rng.uniform(10.0, 90.0)
        if rng.random() < self.profile.silences_per_hour * hours:
            self._silent_until = t + rng.uniform(5.0, 60.0)

    def _start_episode(self, t: float, alerts: list[AlertEvent]) -> None:
        rng = self._random
        kind = rng.choice(sorted(_EPISODES))
        if any(e.kind == kind for e in self._episodes):
            return
        vital, (low, high), _, _ = _EPISODES[kind]
        ramp = rng.uniform(20.0, 60.0) if kind != "fever" else rng.uniform(600.0, 1200.0)
        hold = rng.uniform(60.0, 600.0) if kind != "fever" else rng.uniform(1800.0, 3600.0)
        episode = _Episode(kind, vital, rng.uniform(low, high), t, ramp, t + 2 * ramp + hold)
        self._episodes.append(episode)
        alerts.append(self._alert(episode, t, active=True))

    def _alert(self, episode: _Episode, t: float, *, active: bool) -> AlertEvent:
        _, _, code, priority = _EPISODES[episode.kind]
        text = f"{episode.kind} {'started' if active else 'ended'}"
        return AlertEvent(code, priority, episode.vital, text, self._at(t), active)

    def _value(self, vital: str, t: float) -> float:
        noise = _VARIATION[vital][1]
        value = self._baseline[vital] + self._trend[vital] + self._random.gauss(0.0, noise)
        for episode in self._episodes:
            if episode.vital == vital:
                value += episode.offset(t)
        low, high = _LIMITS[vital]
        return min(high, max(low, value))

    def _reading(self, vital: str, t: float, digits: int = 0) -> Reading:
        value = (
            round(self._value(vital, t), digits) if digits else float(round(self._value(vital, t)))
        )
        return Reading(vital, value, UNITS[vital], self._at(t))

    def _fast_readings(self, t: float, readings: list[Reading]) -> None:
        readings.append(self._reading("heart-rate", t))
        if t >= self._probe_off_until:
            readings.append(self._reading("oxygen-saturation", t))
        readings.append(self._reading("respiratory-rate", t))

    def _nibp(self, t: float, readings: list[Reading]) -> None:
        systolic = self._value("systolic-blood-pressure", t)
        diastolic = min(self._value("diastolic-blood-pressure", t), systolic - 15.0)
        mean = diastolic + (systolic - diastolic) / 3.0
        at = self._at(t)
        for vital, value in (
            ("systolic-blood-pressure", systolic),
            ("diastolic-blood-pressure", diastolic),
            ("mean-blood-pressure", mean),
        ):
            readings.append(Reading(vital, float(round(value)), "mm[Hg]", at))


def format_time(moment: datetime) -> str:
    """RFC 3339 with milliseconds and ``Z``, the form the decoder's fast path takes."""
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def vitals_payload(readings: Iterable[Reading]) -> bytes:
    """The documented vitals payload: one ``{"ts", "samples"}`` group per instant.

    One instant gives the object; several give a list of them. Returns ``b""``
    for no readings (nothing to publish).
    """
    groups: dict[datetime, list[dict[str, Any]]] = {}
    for reading in readings:
        groups.setdefault(reading.time, []).append(
            {"vital": reading.vital, "value": reading.value, "unit": reading.unit}
        )
    if not groups:
        return b""
    messages = [{"ts": format_time(at), "samples": items} for at, items in groups.items()]
    return orjson.dumps(messages[0] if len(messages) == 1 else messages)


def vitals_payloads(readings: Sequence[Reading], *, per_message: int = 1000) -> list[bytes]:
    """:func:`vitals_payload` in messages of at most ``per_message`` readings.

    The decoder refuses a message of more than 10,000 samples
    (``mqtt_payload.MAX_SAMPLES``); a device catching up after a silence must split.
    """
    return [
        vitals_payload(readings[i : i + per_message]) for i in range(0, len(readings), per_message)
    ]


def status_payload(state: str, at: datetime, *, battery: float | None = None) -> bytes:
    """A ``devices/{id}/status`` payload."""
    data: dict[str, Any] = {"ts": format_time(at), "state": state}
    if battery is not None:
        data["battery"] = round(battery)
    return orjson.dumps(data)


def alerts_payload(events: Sequence[AlertEvent]) -> bytes:
    """A ``devices/{id}/alerts`` payload (a list of alerts, each with its own time)."""
    return orjson.dumps(
        [
            {
                "ts": format_time(event.time),
                "code": event.code,
                "priority": event.priority,
                "vital": event.vital,
                "text": event.text,
                "state": "active" if event.active else "cleared",
            }
            for event in events
        ]
    )
