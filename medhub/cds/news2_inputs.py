"""Where each NEWS2 parameter comes from: device samples and charted FHIR Observations (pure).

The RCP NEWS2 chart (2017) scores seven parameters. Monitors stream five of
them; two are a nurse's observation, charted as FHIR Observations (by an EHR
over FHIR REST, or HL7 v2 ORU mapped to Observations); any of the five may
also be charted by hand (a manual temperature, a manual blood pressure):

======================  =========================================================
parameter               sources (the newest reading wins)
======================  =========================================================
respiration rate        samples ``respiratory-rate``; Observation LOINC 9279-1
SpO2                    samples ``oxygen-saturation``; LOINC 59408-5 or 2708-6
systolic BP             samples ``systolic-blood-pressure``; LOINC 8480-6 (the
                        code, or a component of a blood-pressure panel)
pulse                   samples ``heart-rate`` or ``pulse-rate``; LOINC 8867-4
temperature             samples ``body-temperature``; LOINC 8310-5
consciousness (ACVPU)   Observation SNOMED CT 1104441000000107 "ACVPU scale
                        score" (UK Core Observation-ACVPU profile) or medhub's
                        ``urn:medhub:news2|consciousness``; the value a SNOMED CT
                        AVPU finding (248234008 alert, 300202002 voice, 450847001
                        pain, 422768004 unresponsive) or ``urn:medhub:acvpu``
                        ``A``/``C``/``V``/``P``/``U`` (new confusion has only the
                        medhub code here: no SNOMED CT code for it was confirmed)
air or oxygen           Observation ``urn:medhub:news2|air-or-oxygen``
                        (valueBoolean, true = supplemental oxygen), LOINC 3151-8
                        inhaled oxygen flow rate (> 0 L/min is oxygen) or 3150-0
                        inhaled oxygen concentration (> 21 % is oxygen), as the
                        code or as a component (US Core pulse oximetry puts them
                        on the SpO2 Observation)
SpO2 scale              Observation ``urn:medhub:news2|spo2-scale``
                        (valueInteger 1 or 2): a prescription, so it does not go
                        stale; scale 1 when none is charted
======================  =========================================================

Charted vitals count only with the ``vital-signs`` category (a blood-gas SaO2
from the laboratory is also LOINC 2708-6, and is not what NEWS2 scores). An
Observation counts when its status is final, amended, corrected or
preliminary, its value is usable (a unit medhub can convert to the vital's
UCUM unit; nothing is guessed), and its effective time is precise to the
minute (a date alone cannot say whether the value is an hour old).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Final, Literal

from medhub.cds.news2 import NEWS2_VITALS, Consciousness
from medhub.clinical.vital_codes import LOINC_SYSTEM, UCUM_SYSTEM, unit_conversion
from medhub.clinical.vital_codes import vital_for_loinc as _vital_for_loinc
from medhub.errors import InputError
from medhub.fhir.dates import parse_fhir_date_range
from medhub.timeseries.records import SampleRecord

#: medhub's codes for NEWS2 inputs and results (used where no standard code was confirmed).
NEWS2_SYSTEM: Final = "urn:medhub:news2"
ACVPU_SYSTEM: Final = "urn:medhub:acvpu"
SNOMED_SYSTEM: Final = "http://snomed.info/sct"
#: SNOMED CT UK "ACVPU (Alert Confusion Voice Pain Unresponsive) scale score".
SNOMED_ACVPU: Final = "1104441000000107"
LOINC_O2_FLOW: Final = "3151-8"
LOINC_O2_CONCENTRATION: Final = "3150-0"
#: Inhaled oxygen concentration of room air (%): above it the patient is on oxygen.
AIR_FIO2_PERCENT: Final = 21.0
#: Observation statuses whose value stands (FHIR R4 valueset observation-status).
USABLE_STATUSES: Final = ("final", "amended", "corrected", "preliminary")
VITAL_SIGNS_CATEGORY: Final = "vital-signs"
_PRECISE: Final = timedelta(minutes=1)

#: The News2Observation field each device vital feeds (inverse of ``NEWS2_VITALS``).
PARAMETER_OF_VITAL: Final[dict[str, str]] = {
    vital: parameter for parameter, vitals in NEWS2_VITALS.items() for vital in vitals
}
#: The seven parameters in RCP chart order, and the units they are shown in.
PARAMETERS: Final[tuple[str, ...]] = (
    "respiratory_rate",
    "spo2",
    "on_oxygen",
    "systolic_bp",
    "pulse",
    "consciousness",
    "temperature",
)
UNITS: Final[dict[str, str]] = {
    "respiratory_rate": "/min",
    "spo2": "%",
    "systolic_bp": "mm[Hg]",
    "pulse": "/min",
    "temperature": "Cel",
}
_SNOMED_LEVELS: Final[dict[str, Consciousness]] = {
    "248234008": Consciousness.ALERT,
    "300202002": Consciousness.VOICE,
    "450847001": Consciousness.PAIN,
    "422768004": Consciousness.UNRESPONSIVE,
}

_OXYGEN_CODES: Final = frozenset(
    {
        (LOINC_SYSTEM, LOINC_O2_FLOW),
        (LOINC_SYSTEM, LOINC_O2_CONCENTRATION),
        (NEWS2_SYSTEM, "air-or-oxygen"),
    }
)
_CONSCIOUSNESS_CODES: Final = frozenset(
    {(SNOMED_SYSTEM, SNOMED_ACVPU), (NEWS2_SYSTEM, "consciousness")}
)
_ACVPU_CODES: Final = frozenset(level.value for level in Consciousness)

Value = float | bool | Consciousness


@dataclass(frozen=True, slots=True)
class Reading:
    """One value of one NEWS2 parameter, when it was taken and where it came from."""

    parameter: str
    value: Value
    time: datetime
    #: ``device/<id>/<vital>`` for a sample, ``Observation/<id>`` for a charted value.
    source: str


@dataclass(frozen=True, slots=True)
class ScaleReading:
    """The charted SpO2 scale (RCP: scale 2 only for prescribed 88-92 % targets)."""

    scale: Literal[1, 2]
    time: datetime
    source: str


def sample_readings(samples: Iterable[SampleRecord]) -> list[Reading]:
    """Device samples (the latest per vital) as readings of the parameters they feed."""
    readings = []
    for record in samples:
        parameter = PARAMETER_OF_VITAL.get(record.vital)
        if parameter is None or math.isnan(record.value):
            continue
        source = f"device/{record.device_id}/{record.vital}"
        readings.append(Reading(parameter, record.value, record.corrected_time, source))
    return readings


def _codings(concept: object) -> list[tuple[str, str]]:
    if not isinstance(concept, Mapping):
        return []
    return [
        (str(c.get("system", "")), str(c.get("code", "")))
        for c in concept.get("coding", [])
        if isinstance(c, Mapping)
    ]


def effective_time(resource: Mapping[str, Any]) -> datetime | None:
    """When an Observation was taken, if given to the minute or better (else None)."""
    period = resource.get("effectivePeriod")
    text = resource.get("effectiveDateTime") or resource.get("effectiveInstant")
    if text is None and isinstance(period, Mapping):
        text = period.get("start")
    if not isinstance(text, str):
        return None
    try:
        low, high = parse_fhir_date_range(text)
    except InputError:
        return None
    return low if high - low <= _PRECISE else None


def _quantity(element: Mapping[str, Any], canonical: str) -> float | None:
    quantity = element.get("valueQuantity")
    if not isinstance(quantity, Mapping):
        return None
    value = quantity.get("value")
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    unit = quantity.get("code") if quantity.get("system") == UCUM_SYSTEM else None
    unit = unit or quantity.get("unit")
    conversion = unit_conversion(canonical, str(unit)) if unit is not None else None
    if conversion is None:
        return None
    factor, offset = conversion
    converted = float(value) * factor + offset
    return converted if math.isfinite(converted) else None


def _oxygen(code: tuple[str, str], element: Mapping[str, Any]) -> bool | None:
    """Whether a flow rate, concentration or medhub air/oxygen element says oxygen."""
    if code == (NEWS2_SYSTEM, "air-or-oxygen"):
        value = element.get("valueBoolean")
        return value if isinstance(value, bool) else None
    quantity = element.get("valueQuantity")
    if not isinstance(quantity, Mapping):
        return None
    number = quantity.get("value")
    unit = quantity.get("code") or quantity.get("unit")
    if isinstance(number, bool) or not isinstance(number, int | float):
        return None
    if code == (LOINC_SYSTEM, LOINC_O2_FLOW) and unit in ("L/min", "l/min"):
        return number > 0
    if code == (LOINC_SYSTEM, LOINC_O2_CONCENTRATION) and unit == "%":
        return number > AIR_FIO2_PERCENT
    return None


def _consciousness(element: Mapping[str, Any]) -> Consciousness | None:
    for system, code in _codings(element.get("valueCodeableConcept")):
        if system == SNOMED_SYSTEM and code in _SNOMED_LEVELS:
            return _SNOMED_LEVELS[code]
        if system == ACVPU_SYSTEM and code in _ACVPU_CODES:
            return Consciousness(code)
    return None


def _element_readings(
    element: Mapping[str, Any], *, vital_signs: bool, time: datetime, source: str
) -> list[Reading]:
    """Readings from an Observation or one of its components (its code and value)."""
    readings = []
    for code in _codings(element.get("code")):
        value: Value | None = None
        parameter = None
        if code[0] == LOINC_SYSTEM and vital_signs:
            vital = _vital_for_loinc(code[1])
            parameter = PARAMETER_OF_VITAL.get(vital.key) if vital is not None else None
            if vital is not None and parameter is not None:
                value = _quantity(element, vital.ucum)
        if value is None and code in (
            (LOINC_SYSTEM, LOINC_O2_FLOW),
            (LOINC_SYSTEM, LOINC_O2_CONCENTRATION),
            (NEWS2_SYSTEM, "air-or-oxygen"),
        ):
            parameter, value = "on_oxygen", _oxygen(code, element)
        if value is None and code in (
            (SNOMED_SYSTEM, SNOMED_ACVPU),
            (NEWS2_SYSTEM, "consciousness"),
        ):
            parameter, value = "consciousness", _consciousness(element)
        if value is not None and parameter is not None:
            readings.append(Reading(parameter, value, time, source))
            break
    return readings


def observation_readings(
    resource: Mapping[str, Any], *, source: str
) -> tuple[list[Reading], ScaleReading | None]:
    """The NEWS2 readings a charted Observation holds, and the SpO2 scale if it charts one."""
    if resource.get("status") not in USABLE_STATUSES or "dataAbsentReason" in resource:
        return [], None
    time = effective_time(resource)
    if time is None:
        return [], None
    categories = [c for category in resource.get("category", []) for c in _codings(category)]
    vital_signs = any(code == VITAL_SIGNS_CATEGORY for _, code in categories)
    if (NEWS2_SYSTEM, "spo2-scale") in _codings(resource.get("code")):
        scale = resource.get("valueInteger")
        return [], ScaleReading(scale, time, source) if scale in (1, 2) else None
    readings = _element_readings(resource, vital_signs=vital_signs, time=time, source=source)
    for component in resource.get("component", []):
        if isinstance(component, Mapping) and "dataAbsentReason" not in component:
            readings += _element_readings(
                component, vital_signs=vital_signs, time=time, source=source
            )
    return readings, None
