"""A patient's NEWS2 from their latest readings: freshness, score, band, response (pure).

The scorer (:mod:`medhub.cds.news2`) scores what it is given; this decides
what it is given. Per parameter the newest reading
(:mod:`medhub.cds.news2_inputs`) is used if it is at most ``max_age`` old at
``now``; an older one is *stale*: reported with its value and time, not
scored. A parameter with no reading is *missing*. Neither is scored as 0
silently: the assessment lists them and is not ``complete``, and its total
is then a lower bound (each parameter adds 0-3, and unknown oxygen scores
SpO2 scale 2 as on air, its lowest).

The band and the clinical response it calls for follow the RCP NEWS2 report
(Royal College of Physicians, London, 2017), "NEWS thresholds and triggers"
and "Clinical response to the NEWS trigger thresholds": see :data:`RESPONSES`.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Final, Literal

from medhub.cds.alarm_codes import Condition, Transition
from medhub.cds.news2 import Consciousness, News2Observation, News2Score, Risk, score_news2
from medhub.cds.news2_inputs import PARAMETERS, Reading, ScaleReading

ParameterStatus = Literal["scored", "stale", "missing"]


@dataclass(frozen=True, slots=True)
class Response:
    """What the band asks of the ward (RCP NEWS2, clinical response to the triggers)."""

    urgency: str
    monitoring: str
    action: str


#: Keyed by band; ``LOW`` with an aggregate of 0 is :data:`RESPONSE_ZERO`.
RESPONSES: Final[dict[Risk, Response]] = {
    Risk.LOW: Response(
        "ward-based response",
        "minimum 4-6-hourly",
        "inform the registered nurse, who must assess the patient and decide whether "
        "monitoring should be more frequent or care escalated",
    ),
    Risk.LOW_MEDIUM: Response(
        "urgent ward-based response",
        "minimum 1-hourly",
        "registered nurse to inform the medical team caring for the patient, who will "
        "review and decide whether escalation of care is necessary",
    ),
    Risk.MEDIUM: Response(
        "key threshold for urgent response",
        "minimum 1-hourly",
        "registered nurse to inform the medical team immediately and request an urgent "
        "assessment by a clinician or team competent in the care of acutely ill patients; "
        "care in an environment with monitoring facilities",
    ),
    Risk.HIGH: Response(
        "urgent or emergency response",
        "continuous monitoring of vital signs",
        "registered nurse to inform the medical team immediately (at least specialist "
        "registrar level); emergency assessment by a team with critical-care competencies, "
        "including advanced airway management; consider transfer to level 2 or 3 care "
        "(HDU or ICU)",
    ),
}
RESPONSE_ZERO: Final = Response(
    "ward-based response", "minimum 12-hourly", "continue routine NEWS monitoring"
)

#: The alert each band raises; ``LOW`` raises none.
ALERT_CONDITION: Final[dict[Risk, Condition]] = {
    Risk.LOW_MEDIUM: Condition.NEWS2_LOW_MEDIUM,
    Risk.MEDIUM: Condition.NEWS2_MEDIUM,
    Risk.HIGH: Condition.NEWS2_HIGH,
}
#: The threshold each alert condition is about (reported as the alert's limit).
THRESHOLD: Final[dict[Condition, float]] = {
    Condition.NEWS2_LOW_MEDIUM: 3.0,
    Condition.NEWS2_MEDIUM: 5.0,
    Condition.NEWS2_HIGH: 7.0,
}
_RANK: Final[dict[Condition | None, int]] = {
    None: 0,
    Condition.NEWS2_LOW_MEDIUM: 1,
    Condition.NEWS2_MEDIUM: 2,
    Condition.NEWS2_HIGH: 3,
}


@dataclass(frozen=True, slots=True)
class ParameterResult:
    """One parameter of the assessment: its reading (used or stale) and its sub-score."""

    parameter: str
    status: ParameterStatus
    reading: Reading | None = None
    score: int | None = None


@dataclass(frozen=True, slots=True)
class News2Assessment:
    patient_id: str
    at: datetime
    max_age: timedelta
    spo2_scale: Literal[1, 2]
    #: Where the SpO2 scale came from (None: scale 1 by default).
    scale_source: ScaleReading | None
    score: News2Score
    parameters: tuple[ParameterResult, ...]

    @property
    def complete(self) -> bool:
        return self.score.complete

    @property
    def stale(self) -> tuple[str, ...]:
        return tuple(p.parameter for p in self.parameters if p.status == "stale")

    @property
    def missing(self) -> tuple[str, ...]:
        return tuple(p.parameter for p in self.parameters if p.status == "missing")

    @property
    def response(self) -> Response:
        if self.score.risk is Risk.LOW and self.score.total == 0:
            return RESPONSE_ZERO
        return RESPONSES[self.score.risk]

    @property
    def alert_condition(self) -> Condition | None:
        """The NEWS2 alert this band calls for (on incomplete data: at least this one)."""
        return ALERT_CONDITION.get(self.score.risk)

    def summary(self) -> str:
        """One line for the alert: total, band, response, and what was not scored."""
        text = f"NEWS2 {self.score.total} ({self.score.risk.value} risk): {self.response.urgency}"
        unscored = self.stale + self.missing
        if unscored:
            text += f"; not scored: {', '.join(unscored)} (total is a lower bound)"
        return text


def assess(
    patient_id: str,
    readings: Iterable[Reading],
    *,
    now: datetime,
    max_age: timedelta,
    scale: ScaleReading | None = None,
) -> News2Assessment:
    """Score the newest reading of each parameter that is at most ``max_age`` old at ``now``."""
    newest: dict[str, Reading] = {}
    for reading in readings:
        known = newest.get(reading.parameter)
        if known is None or reading.time > known.time:
            newest[reading.parameter] = reading
    used: dict[str, Reading] = {}
    status: dict[str, ParameterStatus] = {}
    for parameter in PARAMETERS:
        latest = newest.get(parameter)
        if latest is None:
            status[parameter] = "missing"
        elif now - latest.time > max_age:
            status[parameter] = "stale"
        else:
            status[parameter] = "scored"
            used[parameter] = latest
    spo2_scale: Literal[1, 2] = scale.scale if scale is not None else 1
    score = score_news2(_observation(used, spo2_scale))
    parameters = tuple(
        ParameterResult(p, status[p], newest.get(p), score.parameters.get(p)) for p in PARAMETERS
    )
    return News2Assessment(patient_id, now, max_age, spo2_scale, scale, score, parameters)


def _observation(used: dict[str, Reading], scale: Literal[1, 2]) -> News2Observation:
    def number(parameter: str) -> float | None:
        reading = used.get(parameter)
        return None if reading is None else float(reading.value)

    oxygen = used.get("on_oxygen")
    level = used.get("consciousness")
    consciousness = level.value if level is not None else None
    return News2Observation(
        respiratory_rate=number("respiratory_rate"),
        spo2=number("spo2"),
        spo2_scale=scale,
        on_oxygen=None if oxygen is None else bool(oxygen.value),
        systolic_bp=number("systolic_bp"),
        pulse=number("pulse"),
        consciousness=consciousness if isinstance(consciousness, Consciousness) else None,
        temperature=number("temperature"),
    )


def transitions(
    open_condition: Condition | None, assessment: News2Assessment
) -> list[tuple[Condition, Transition]]:
    """The alert edges that take the patient's open NEWS2 alert to what the band calls for.

    A band change is the END of the old alert and the START of the new one
    (a rise is a new, unacknowledged alert, as for the detector's limits).
    Missing or stale data never lowers or ends an alert: an incomplete total
    is a lower bound, and a monitor taken off is not a patient getting better.
    """
    target = assessment.alert_condition
    if target == open_condition:
        return []
    if not assessment.complete and _RANK[target] < _RANK[open_condition]:
        return []
    edges: list[tuple[Condition, Transition]] = []
    if open_condition is not None:
        edges.append((open_condition, Transition.END))
    if target is not None:
        edges.append((target, Transition.START))
    return edges
