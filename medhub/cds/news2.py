"""NEWS2, the National Early Warning Score 2 (Royal College of Physicians, London, 2017).

Seven parameters each score 0-3 on the NEWS2 chart; the aggregate and the
"red score" (3 in any one parameter) decide the clinical risk band and the
response (RCP NEWS2 report, chart 1 "The NEWS2 scoring system" and chart 2
"NEWS thresholds and triggers"):

======================  ===========================================
aggregate 0-4           low risk: ward-based response
3 in one parameter      low-medium: urgent ward-based response
aggregate 5-6           medium: key threshold for urgent response
aggregate 7 or more     high: emergency response
======================  ===========================================

Values are scored as charted: RR, SpO2, systolic BP and pulse rounded to
whole numbers, temperature to one decimal (half up), so 8.6 breaths/min is
9 and scores 1, as a nurse charting it would score it. SpO2 scale 2 is for
patients with confirmed hypercapnic respiratory failure and a prescribed
target of 88-92 %; on it, high saturations score only while on oxygen.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Final, Literal

from medhub.timeseries.records import SampleRecord


class Consciousness(StrEnum):
    """ACVPU: alert, new confusion, responds to voice, to pain, unresponsive."""

    ALERT = "A"
    NEW_CONFUSION = "C"
    VOICE = "V"
    PAIN = "P"
    UNRESPONSIVE = "U"


class Risk(StrEnum):
    LOW = "low"
    LOW_MEDIUM = "low-medium"
    MEDIUM = "medium"
    HIGH = "high"


@dataclass(frozen=True, slots=True)
class News2Observation:
    """One set of observations; ``None`` for a parameter not measured."""

    respiratory_rate: float | None = None
    spo2: float | None = None
    spo2_scale: Literal[1, 2] = 1
    on_oxygen: bool | None = None
    systolic_bp: float | None = None
    pulse: float | None = None
    consciousness: Consciousness | None = None
    temperature: float | None = None


@dataclass(frozen=True, slots=True)
class News2Score:
    total: int
    risk: Risk
    #: Score per parameter present (keys as in :class:`News2Observation`).
    parameters: dict[str, int] = field(default_factory=dict)
    #: Parameters not measured: the total is then a lower bound, not a NEWS2 score.
    missing: tuple[str, ...] = ()

    @property
    def complete(self) -> bool:
        return not self.missing

    @property
    def red_score(self) -> bool:
        """Some parameter scores 3 on its own."""
        return any(score == 3 for score in self.parameters.values())


def _whole(value: float) -> int:
    return math.floor(value + 0.5)


def score_respiratory_rate(rate: float) -> int:
    r = _whole(rate)
    if r <= 8:
        return 3
    if r <= 11:
        return 1
    if r <= 20:
        return 0
    if r <= 24:
        return 2
    return 3


def score_spo2(spo2: float, *, scale: Literal[1, 2] = 1, on_oxygen: bool = False) -> int:
    s = _whole(spo2)
    if scale == 1:
        if s <= 91:
            return 3
        if s <= 93:
            return 2
        if s <= 95:
            return 1
        return 0
    if s <= 83:
        return 3
    if s <= 85:
        return 2
    if s <= 87:
        return 1
    if s <= 92 or not on_oxygen:
        return 0
    if s <= 94:
        return 1
    if s <= 96:
        return 2
    return 3


def score_air_or_oxygen(on_oxygen: bool) -> int:
    return 2 if on_oxygen else 0


def score_systolic_bp(systolic: float) -> int:
    s = _whole(systolic)
    if s <= 90:
        return 3
    if s <= 100:
        return 2
    if s <= 110:
        return 1
    if s <= 219:
        return 0
    return 3


def score_pulse(pulse: float) -> int:
    p = _whole(pulse)
    if p <= 40:
        return 3
    if p <= 50:
        return 1
    if p <= 90:
        return 0
    if p <= 110:
        return 1
    if p <= 130:
        return 2
    return 3


def score_consciousness(level: Consciousness) -> int:
    return 0 if level is Consciousness.ALERT else 3


def score_temperature(celsius: float) -> int:
    tenths = math.floor(celsius * 10 + 0.5)  # integer tenths: no float edge at 36.0
    if tenths <= 350:
        return 3
    if tenths <= 360:
        return 1
    if tenths <= 380:
        return 0
    if tenths <= 390:
        return 1
    return 2


def risk_band(total: int, *, red_score: bool) -> Risk:
    if total >= 7:
        return Risk.HIGH
    if total >= 5:
        return Risk.MEDIUM
    if red_score:
        return Risk.LOW_MEDIUM
    return Risk.LOW


def score_news2(obs: News2Observation) -> News2Score:
    """Score what is present; list what is missing (a partial score is never complete)."""
    parameters: dict[str, int] = {}
    missing: list[str] = []
    if obs.respiratory_rate is None:
        missing.append("respiratory_rate")
    else:
        parameters["respiratory_rate"] = score_respiratory_rate(obs.respiratory_rate)
    if obs.spo2 is None:
        missing.append("spo2")
    else:
        parameters["spo2"] = score_spo2(
            obs.spo2, scale=obs.spo2_scale, on_oxygen=bool(obs.on_oxygen)
        )
    if obs.on_oxygen is None:
        missing.append("on_oxygen")
    else:
        parameters["on_oxygen"] = score_air_or_oxygen(obs.on_oxygen)
    if obs.systolic_bp is None:
        missing.append("systolic_bp")
    else:
        parameters["systolic_bp"] = score_systolic_bp(obs.systolic_bp)
    if obs.pulse is None:
        missing.append("pulse")
    else:
        parameters["pulse"] = score_pulse(obs.pulse)
    if obs.consciousness is None:
        missing.append("consciousness")
    else:
        parameters["consciousness"] = score_consciousness(obs.consciousness)
    if obs.temperature is None:
        missing.append("temperature")
    else:
        parameters["temperature"] = score_temperature(obs.temperature)
    total = sum(parameters.values())
    red = any(score == 3 for score in parameters.values())
    return News2Score(total, risk_band(total, red_score=red), parameters, tuple(missing))


#: Which device vital feeds which NEWS2 parameter, in order of preference.
NEWS2_VITALS: Final[dict[str, tuple[str, ...]]] = {
    "respiratory_rate": ("respiratory-rate",),
    "spo2": ("oxygen-saturation",),
    "systolic_bp": ("systolic-blood-pressure",),
    "pulse": ("heart-rate", "pulse-rate"),
    "temperature": ("body-temperature",),
}


class LatestVitals:
    """The latest value of each vital per patient, for a NEWS2 from what monitors sent.

    Air/oxygen and consciousness are not device measurements: the caller
    passes them (from the charted observations).
    """

    def __init__(self) -> None:
        self._latest: dict[str, dict[str, tuple[datetime, float]]] = {}

    def update(self, records: Iterable[SampleRecord]) -> None:
        for record in records:
            if record.patient_id is None or record.value != record.value:
                continue
            vitals = self._latest.setdefault(record.patient_id, {})
            known = vitals.get(record.vital)
            if known is None or record.corrected_time >= known[0]:
                vitals[record.vital] = (record.corrected_time, record.value)

    def latest(self, patient_id: str) -> Mapping[str, tuple[datetime, float]]:
        return self._latest.get(patient_id, {})

    def observation(
        self,
        patient_id: str,
        *,
        now: datetime,
        max_age: timedelta,
        on_oxygen: bool | None,
        consciousness: Consciousness | None,
        spo2_scale: Literal[1, 2] = 1,
    ) -> News2Observation:
        """The patient's latest vitals no older than ``max_age`` at ``now`` (older = missing)."""
        vitals = self.latest(patient_id)
        values: dict[str, float | None] = {}
        for parameter, keys in NEWS2_VITALS.items():
            values[parameter] = None
            for key in keys:
                found = vitals.get(key)
                if found is not None and now - found[0] <= max_age:
                    values[parameter] = found[1]
                    break
        return News2Observation(
            respiratory_rate=values["respiratory_rate"],
            spo2=values["spo2"],
            spo2_scale=spo2_scale,
            on_oxygen=on_oxygen,
            systolic_bp=values["systolic_bp"],
            pulse=values["pulse"],
            consciousness=consciousness,
            temperature=values["temperature"],
        )
