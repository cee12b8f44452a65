"""FHIR R4 Dosage timing -> HL7 v2 quantity/timing: TQ1 (v2.5.1 §4.5.4) or TQ (v2.3 §4.4).

Pure. The v2-to-FHIR TQ1[MedicationRequest] map, in reverse:

=========================================  =====================================
dosageInstruction.doseAndRate.doseQuantity  TQ1-2 quantity (CQ) / TQ-1
timing.code, or repeat frequency/period     TQ1-3 repeat pattern (table 0335) / TQ-2
timing.repeat.timeOfDay                     TQ1-4 explicit time (TM) / TQ-2.2
timing.repeat.boundsDuration                TQ1-6 service duration / TQ-3 ``D<n>``
boundsPeriod.start (else authoredOn), .end  TQ1-7 start, TQ1-8 end / TQ-4, TQ-5
priority; asNeeded[x]                       TQ1-9 priority (table 0485: R S A, PRN) / TQ-6
asNeededCodeableConcept                     TQ1-10 condition text / TQ-7
timing.repeat.count                         TQ1-14 total occurrences / TQ-3 ``X<n>``
=========================================  =====================================

A schedule that no table 0335 pattern says exactly (days of the week, meal
times other than morning/evening/bedtime, period ranges) is sent without a
pattern: the dosage text (RXE-7/RXO-7) then carries it. A pharmacy system
must never be handed a guessed schedule.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from medhub.errors import Hl7Location
from medhub.hl7.er7 import escape
from medhub.hl7.er7_fields import DELIMITERS, fhir_number, fhir_time, quantity_units, trimmed

Resource = Mapping[str, Any]

#: FHIR timing abbreviations (v3-GTSAbbreviation) -> repeat pattern (HL7 table 0335).
#: Daily is ``Q1D``, as table 0335 spells it; never "QD", which is on the Joint
#: Commission's do-not-use list because it is misread as QID.
TIMING_CODES: Final = {
    "BID": "BID", "TID": "TID", "QID": "QID", "AM": "QAM", "PM": "QPM", "QD": "Q1D",
    "QOD": "QOD", "Q1H": "Q1H", "Q2H": "Q2H", "Q3H": "Q3H", "Q4H": "Q4H", "Q6H": "Q6H",
    "Q8H": "Q8H", "BED": "QHS", "WK": "Q1W", "MO": "Q1L",
}  # fmt: skip
#: UCUM period units -> the unit letter of ``Q<n><unit>`` (table 0335) and of TQ-3.
PERIOD_UNITS: Final = {"s": "S", "min": "M", "h": "H", "d": "D", "wk": "W", "mo": "L"}
_TIMES_A_DAY: Final = {2: "BID", 3: "TID", 4: "QID"}
_WHEN: Final = {"MORN": "QAM", "EVE": "QPM", "HS": "QHS"}
#: Timing.repeat parts no repeat pattern carries; with any of them there is no pattern.
_NOT_A_PATTERN: Final = ("dayOfWeek", "offset", "periodMax", "frequencyMax", "when")
#: MedicationRequest.priority -> TQ1-9 (table 0485) and TQ-6 (table 0027); no "urgent" there.
PRIORITY: Final = {"routine": "R", "stat": "S", "asap": "A"}
_D: Final = DELIMITERS
_DOSAGE: Final = "MedicationRequest.dosageInstruction[0]"
_DOSE_VALUE: Final = f"{_DOSAGE}.doseAndRate[0].doseQuantity.value"
_DURATION: Final = f"{_DOSAGE}.timing.repeat.boundsDuration.value"


@dataclass(frozen=True, slots=True)
class DosageTiming:
    """One dosage instruction's quantity/timing, ready for TQ1 or ORC-7."""

    dose: Resource
    pattern: str
    times: tuple[str, ...]
    duration: Resource
    start: str
    end: str
    count: str
    priorities: tuple[str, ...]
    condition: str

    def tq1_fields(self) -> list[str]:
        """TQ1-2 … TQ1-14 (TQ1-1, the set id, is the caller's)."""
        dose = fhir_number(self.dose.get("value"), _DOSE_VALUE, Hl7Location("TQ1", 1, 2))
        duration = fhir_number(self.duration.get("value"), _DURATION, Hl7Location("TQ1", 1, 6))
        rep = _D.repetition
        return [
            trimmed([dose, quantity_units(self.dose, _D.subcomponent)]),
            escape(self.pattern, _D),
            rep.join(self.times),
            "",
            trimmed([duration, quantity_units(self.duration, _D.subcomponent)]),
            self.start,
            self.end,
            rep.join(self.priorities),
            escape(self.condition, _D),
            "",
            "",
            "",
            self.count,
        ]

    def tq(self) -> str:
        """ORC-7 as TQ (v2.3 §4.4): quantity, interval (pattern & times), duration
        (``X<count>``, else ``D<n>``-style), start, end, priority (PRN first), condition."""
        sub = _D.subcomponent
        dose_unit = str(self.dose.get("code") or self.dose.get("unit") or "")
        dose = fhir_number(self.dose.get("value"), _DOSE_VALUE, Hl7Location("ORC", 1, 7))
        unit, value = PERIOD_UNITS.get(str(self.duration.get("code"))), self.duration.get("value")
        duration = f"X{self.count}" if self.count else ""
        if not duration and unit and isinstance(value, int) and not isinstance(value, bool):
            duration = f"{unit}{value}"
        priority = "PRN" if "PRN" in self.priorities else next(iter(self.priorities), "")
        return trimmed(
            [
                trimmed([dose, escape(dose_unit, _D)], sub),
                trimmed([escape(self.pattern, _D), ",".join(self.times)], sub),
                duration,
                self.start,
                self.end,
                priority,
                escape(self.condition, _D),
            ]
        )


def dosage_timing(request: Resource, dosage: Resource) -> DosageTiming:
    """The quantity/timing of ``dosage`` (the request's ``dosageInstruction[0]``).

    Raises :class:`medhub.errors.InputError` naming the element for a date or
    number that is not one.
    """
    timing = dosage.get("timing") or {}
    repeat = timing.get("repeat") or {}
    bounds = repeat.get("boundsPeriod") or {}
    start_at, end_at = Hl7Location("TQ1", 1, 7), Hl7Location("TQ1", 1, 8)
    bounds_path = f"{_DOSAGE}.timing.repeat.boundsPeriod"
    start = fhir_time(bounds.get("start"), f"{bounds_path}.start", start_at)
    if not start:
        start = fhir_time(request.get("authoredOn"), "MedicationRequest.authoredOn", start_at)
    count = repeat.get("count")
    reason = dosage.get("asNeededCodeableConcept") or {}
    priorities = [PRIORITY.get(str(request.get("priority")), "")]
    if dosage.get("asNeededBoolean") or reason:
        priorities.append("PRN")
    coding = (reason.get("coding") or [{}])[0]
    return DosageTiming(
        dose=(dosage.get("doseAndRate") or [{}])[0].get("doseQuantity") or {},
        pattern=repeat_pattern(timing),
        times=tuple(_tm(str(t)) for t in repeat.get("timeOfDay", [])),
        duration=repeat.get("boundsDuration") or {},
        start=start,
        end=fhir_time(bounds.get("end"), f"{bounds_path}.end", end_at),
        count=str(count) if isinstance(count, int) and not isinstance(count, bool) else "",
        priorities=tuple(p for p in priorities if p),
        condition=str(reason.get("text") or coding.get("display") or ""),
    )


def _tm(time_of_day: str) -> str:
    """FHIR ``time`` -> TM: ``HHMM``, with the seconds only when they are not zero."""
    digits = time_of_day.replace(":", "").split(".")[0]
    return digits[:4] if digits[4:] in ("", "00") else digits


def repeat_pattern(timing: Resource) -> str:
    """A FHIR Timing as a repeat pattern (HL7 table 0335); ``""`` when none says it exactly.

    ``timing.code`` first; else ``frequency`` per ``period``: once per period is
    ``Q<n>H``, ``Q<n>D`` …; 2, 3, 4 or n times a day ``BID``, ``TID``, ``QID``,
    ``<n>ID``; once a day in the morning/evening/at bedtime ``QAM``/``QPM``/``QHS``;
    a single occurrence ``Once``.
    """
    for coding in (timing.get("code") or {}).get("coding", []):
        if str(coding.get("code")) in TIMING_CODES:
            return TIMING_CODES[str(coding["code"])]
    repeat = timing.get("repeat") or {}
    extra = [key for key in _NOT_A_PATTERN if repeat.get(key)]
    frequency, period = repeat.get("frequency", 1), repeat.get("period")
    if period is None:
        single = repeat.get("count") == 1 and "frequency" not in repeat
        return "Once" if single and not extra else ""
    unit = repeat.get("periodUnit")
    whole = isinstance(period, int | float) and not isinstance(period, bool) and period % 1 == 0
    if not whole or not isinstance(frequency, int) or unit not in PERIOD_UNITS:
        return ""
    if period < 1 or frequency < 1:
        return ""
    per_day = (period, unit) == (1, "d")
    when = repeat.get("when") or []
    if extra == ["when"] and per_day and frequency == 1 and len(when) == 1 and when[0] in _WHEN:
        return str(_WHEN[when[0]])
    if extra:
        return ""
    if frequency == 1:
        return f"Q{int(period)}{PERIOD_UNITS[unit]}"
    return _TIMES_A_DAY.get(frequency, f"{frequency}ID") if per_day else ""
