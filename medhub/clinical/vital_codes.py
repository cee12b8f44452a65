"""Vital-sign codes: IEEE 11073-10101 (MDC) terms, their LOINC codes and UCUM units.

Devices (IHE PCD-01 over HL7 v2, MQTT gateways, Modbus monitors) name what they
measure with MDC codes; the FHIR R4 vital-signs profile (observation-vitalsigns)
wants the LOINC code and the ``vital-signs`` category, with UCUM units. The
HL7 Point-of-Care Device IG (mappingv2, "OBX-3") says to send the MDC code and,
for vital signs, the LOINC code as well: medhub keeps both codings.

The table is deliberately small: the vitals that bedside monitors chart and
that NEWS2 scores. MDC codes are the context-free numeric codes of
IEEE 11073-10101 (partition 2, SCADA, ``32768 + term code``), e.g.
``MDC_PULS_OXIM_SAT_O2`` = 150456. Units are the MDC dimension codes of
partition 4 (``MDC_DIM_*``) mapped to UCUM.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

MDC_SYSTEM: Final = "urn:iso:std:iso:11073:10101"
LOINC_SYSTEM: Final = "http://loinc.org"
UCUM_SYSTEM: Final = "http://unitsofmeasure.org"
OBSERVATION_CATEGORY_SYSTEM: Final = "http://terminology.hl7.org/CodeSystem/observation-category"


@dataclass(frozen=True, slots=True)
class LoincCode:
    code: str
    display: str


@dataclass(frozen=True, slots=True)
class VitalSign:
    """One vital sign: its LOINC code(s), its UCUM unit and the MDC codes devices send."""

    key: str
    loinc: tuple[LoincCode, ...]
    ucum: str
    mdc: tuple[tuple[int, str], ...]

    def loinc_codings(self) -> list[dict[str, str]]:
        """The LOINC codings to add to ``Observation.code`` (FHIR vital-signs profile)."""
        return [{"system": LOINC_SYSTEM, "code": c.code, "display": c.display} for c in self.loinc]


VITAL_SIGNS: Final[tuple[VitalSign, ...]] = (
    VitalSign(
        "heart-rate",
        (LoincCode("8867-4", "Heart rate"),),
        "/min",
        ((147842, "MDC_ECG_HEART_RATE"), (149530, "MDC_PULS_OXIM_PULS_RATE")),
    ),
    VitalSign(
        "oxygen-saturation",
        (
            LoincCode("2708-6", "Oxygen saturation in Arterial blood"),
            LoincCode("59408-5", "Oxygen saturation in Arterial blood by Pulse oximetry"),
        ),
        "%",
        ((150456, "MDC_PULS_OXIM_SAT_O2"),),
    ),
    VitalSign(
        "respiratory-rate",
        (LoincCode("9279-1", "Respiratory rate"),),
        "/min",
        ((151562, "MDC_RESP_RATE"),),
    ),
    VitalSign(
        "systolic-blood-pressure",
        (LoincCode("8480-6", "Systolic blood pressure"),),
        "mm[Hg]",
        ((150021, "MDC_PRESS_BLD_NONINV_SYS"), (150033, "MDC_PRESS_BLD_ART_ABP_SYS")),
    ),
    VitalSign(
        "diastolic-blood-pressure",
        (LoincCode("8462-4", "Diastolic blood pressure"),),
        "mm[Hg]",
        ((150022, "MDC_PRESS_BLD_NONINV_DIA"), (150034, "MDC_PRESS_BLD_ART_ABP_DIA")),
    ),
    VitalSign(
        "mean-blood-pressure",
        (LoincCode("8478-0", "Mean blood pressure"),),
        "mm[Hg]",
        ((150023, "MDC_PRESS_BLD_NONINV_MEAN"), (150035, "MDC_PRESS_BLD_ART_ABP_MEAN")),
    ),
    VitalSign(
        "body-temperature",
        (LoincCode("8310-5", "Body temperature"),),
        "Cel",
        ((150344, "MDC_TEMP"),),
    ),
)

_BY_MDC: Final[dict[str, VitalSign]] = {
    key: vital for vital in VITAL_SIGNS for code, refid in vital.mdc for key in (str(code), refid)
}
_BY_LOINC: Final[dict[str, VitalSign]] = {c.code: v for v in VITAL_SIGNS for c in v.loinc}

#: MDC dimension codes (IEEE 11073-10101 partition 4) -> UCUM, by code and by reference id.
MDC_UNITS: Final[dict[str, str]] = {
    key: ucum
    for code, refid, ucum in (
        (262656, "MDC_DIM_DIMLESS", "1"),
        (262688, "MDC_DIM_PERCENT", "%"),
        (263875, "MDC_DIM_KILO_G", "kg"),
        (264864, "MDC_DIM_BEAT_PER_MIN", "/min"),
        (264928, "MDC_DIM_RESP_PER_MIN", "/min"),
        (266016, "MDC_DIM_MMHG", "mm[Hg]"),
        (266048, "MDC_DIM_CM_H2O", "cm[H2O]"),
        (268192, "MDC_DIM_DEGC", "Cel"),
    )
    for key in (str(code), refid)
}


def vital_for_mdc(code: str) -> VitalSign | None:
    """The vital sign an MDC code (numeric, or its ``MDC_*`` reference id) measures."""
    return _BY_MDC.get(code.strip())


def vital_for_loinc(code: str) -> VitalSign | None:
    """The vital sign a LOINC code names, if it is one of the charted vitals."""
    return _BY_LOINC.get(code.strip())


def ucum_for_mdc_unit(code: str) -> str | None:
    """UCUM for an MDC dimension code (``262688`` or ``MDC_DIM_PERCENT``), or None."""
    return MDC_UNITS.get(code.strip())


def vital_signs_category() -> dict[str, Any]:
    """``Observation.category`` for vital signs (FHIR R4 observation-category)."""
    return {
        "coding": [
            {"system": OBSERVATION_CATEGORY_SYSTEM, "code": "vital-signs", "display": "Vital Signs"}
        ]
    }
