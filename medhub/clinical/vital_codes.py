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


# --- Vitals devices send beyond the charted set, names, aliases and units -------------
#
# Bedside monitors stream more than NEWS2 scores. The extra vitals below are kept
# apart from :data:`VITAL_SIGNS` on purpose: that table drives the HL7 v2 mapping
# (``vital_for_mdc``), and the pulse oximeter's pulse rate (``MDC_PULS_OXIM_PULS_RATE``)
# already maps to ``heart-rate`` there. For device streams, pulse rate is its own
# vital: it comes from the plethysmogram, not the ECG; a monitor sends both at
# once, and the gap between them (pulse deficit, or an artefact on either sensor)
# is only visible if the two series are not merged. Its LOINC codes are 8867-4
# (so a FHIR vital-signs heart-rate Observation stays valid) and 8889-8 "Heart
# rate by Pulse oximetry" as the more specific coding.
#
# Codes are only those confirmed in two sources (LOINC; the IEEE 11073-10101
# SCADA term codes, ``131072 + term``: PULS_OXIM_PULS_RATE 18458, PULS_RATE 18442,
# PULS_OXIM_PERF_REL 19376, AWAY_CO2_ET 20636). SpCO and SpMet have no code here:
# the pulse-CO-oximetry LOINC terms could not be confirmed, and the blood-gas
# codes (20563-3, 2614-6) name a laboratory measurement, which these are not.

DEVICE_VITAL_SIGNS: Final[tuple[VitalSign, ...]] = (
    VitalSign(
        "pulse-rate",
        (LoincCode("8867-4", "Heart rate"), LoincCode("8889-8", "Heart rate by Pulse oximetry")),
        "/min",
        ((149530, "MDC_PULS_OXIM_PULS_RATE"), (149514, "MDC_PULS_RATE")),
    ),
    VitalSign(
        "perfusion-index",
        (LoincCode("61006-3", "Perfusion index Tissue by Pulse oximetry"),),
        "%",
        ((150448, "MDC_PULS_OXIM_PERF_REL"),),
    ),
    VitalSign(
        "end-tidal-co2",
        (
            LoincCode(
                "19891-1", "Carbon dioxide [Partial pressure] in Exhaled gas --at end expiration"
            ),
        ),
        "mm[Hg]",
        ((151708, "MDC_AWAY_CO2_ET"),),
    ),
    VitalSign("carboxyhemoglobin", (), "%", ()),
    VitalSign("methemoglobin", (), "%", ()),
)

#: Every vital a device sample may name: the charted set first, then the device extras.
ALL_VITAL_SIGNS: Final[tuple[VitalSign, ...]] = VITAL_SIGNS + DEVICE_VITAL_SIGNS

#: Other names devices and gateways use for a vital (matched after lower-casing and
#: turning ``_`` and spaces into ``-``). Documented in docs/devices.md.
VITAL_ALIASES: Final[dict[str, tuple[str, ...]]] = {
    "heart-rate": ("hr", "heartrate", "ecg-hr"),
    "pulse-rate": ("pr", "pulse", "pulserate", "spo2-pr"),
    "oxygen-saturation": ("spo2", "sp-o2", "o2-sat"),
    "respiratory-rate": ("rr", "resp", "resp-rate", "respiration-rate"),
    "systolic-blood-pressure": ("nibp-sys", "abp-sys", "sbp", "bp-sys", "sys"),
    "diastolic-blood-pressure": ("nibp-dia", "abp-dia", "dbp", "bp-dia", "dia"),
    "mean-blood-pressure": ("nibp-mean", "abp-mean", "map", "mbp", "bp-mean"),
    "body-temperature": ("temp", "temperature", "body-temp"),
    "perfusion-index": ("pi", "perf-index"),
    "end-tidal-co2": ("etco2", "et-co2", "co2-et"),
    "carboxyhemoglobin": ("spco", "sp-co"),
    "methemoglobin": ("spmet", "sp-met"),
}

#: Values outside these bounds are not measurements of a patient but device faults
#: (a percentage above 100, a negative pressure, a heart rate of 900), so a device
#: decoder refuses them instead of charting them. They are physical limits, not
#: alarm limits: alarming is the detector's job.
PHYSICAL_RANGES: Final[dict[str, tuple[float, float]]] = {
    "heart-rate": (0.0, 400.0),
    "pulse-rate": (0.0, 400.0),
    "oxygen-saturation": (0.0, 100.0),
    "respiratory-rate": (0.0, 200.0),
    "systolic-blood-pressure": (0.0, 400.0),
    "diastolic-blood-pressure": (0.0, 400.0),
    "mean-blood-pressure": (0.0, 400.0),
    "body-temperature": (0.0, 50.0),
    "perfusion-index": (0.0, 100.0),
    "end-tidal-co2": (0.0, 200.0),
    "carboxyhemoglobin": (0.0, 100.0),
    "methemoglobin": (0.0, 100.0),
}

_DEVICE_VITALS: Final[dict[str, VitalSign]] = {v.key: v for v in ALL_VITAL_SIGNS}
_VITAL_NAMES: Final[dict[str, VitalSign]] = {
    **{alias: _DEVICE_VITALS[key] for key, aliases in VITAL_ALIASES.items() for alias in aliases},
    **_DEVICE_VITALS,
}
# Device MDC lookup: the device extras win, so MDC_PULS_OXIM_PULS_RATE names pulse-rate.
_DEVICE_BY_MDC: Final[dict[str, VitalSign]] = {
    **_BY_MDC,
    **{
        key: vital
        for vital in DEVICE_VITAL_SIGNS
        for code, refid in vital.mdc
        for key in (str(code), refid)
    },
}


def device_vital(name: str) -> VitalSign | None:
    """The vital a device calls ``name``: a registry key or an alias, any case, ``_`` or ``-``.

    The exact key is tried first so the common case (a gateway that sends
    ``heart-rate``) costs one dictionary lookup.
    """
    vital = _VITAL_NAMES.get(name)
    if vital is None:
        vital = _VITAL_NAMES.get(name.strip().lower().replace("_", "-").replace(" ", "-"))
    return vital


def device_vital_for_mdc(code: str) -> VitalSign | None:
    """The vital an MDC code names for device streams (pulse-oximeter pulse rate -> pulse-rate)."""
    return _DEVICE_BY_MDC.get(code.strip())


def mdc_matches(vital: VitalSign, code: str) -> bool:
    """Whether an MDC code a device sent is one of the codes of ``vital`` (numeric or ref id).

    Both tables count: ``heart-rate`` with ``MDC_PULS_OXIM_PULS_RATE`` is what the
    HL7 mapping has always accepted, and ``pulse-rate`` with it is the device view.
    """
    code = code.strip()
    return any(code in (str(number), refid) for number, refid in vital.mdc)


# --- Units: equivalent spellings and pure conversions to the canonical UCUM unit -------
#
# A conversion is listed only when it is a pure change of unit (a factor, or an
# offset for temperature scales); anything that needs more (etCO2 in % needs the
# barometric pressure, a fraction "1" for a percentage is ambiguous with a
# device that sends 97 as "1") is refused so the sender fixes it. UCUM values:
# mm[Hg] = 133.3220 Pa (UCUM ``m[Hg]`` = 133.3220 kPa); [degF] = 5/9 K from 459.67.

#: Multiply-by factors into the canonical unit, per canonical unit.
_FACTORS: Final[dict[str, dict[str, float]]] = {
    "/min": {
        "/min": 1.0,
        "1/min": 1.0,
        "min-1": 1.0,
        "{beats}/min": 1.0,
        "{beat}/min": 1.0,
        "beats/min": 1.0,
        "bpm": 1.0,
        "{breaths}/min": 1.0,
        "{breath}/min": 1.0,
        "breaths/min": 1.0,
        "brpm": 1.0,
        "rpm": 1.0,
        "/s": 60.0,
        "/h": 1.0 / 60.0,
    },
    "%": {"%": 1.0, "{%}": 1.0, "percent": 1.0, "pct": 1.0},
    "mm[Hg]": {"mm[Hg]": 1.0, "mmHg": 1.0, "mmhg": 1.0, "kPa": 1000.0 / 133.322},
    "Cel": {"Cel": 1.0, "°C": 1.0, "degC": 1.0},
}
_OFFSET_UNITS: Final[dict[str, dict[str, tuple[float, float]]]] = {
    # value * factor + offset
    "Cel": {
        "[degF]": (5.0 / 9.0, -32.0 * 5.0 / 9.0),
        "°F": (5.0 / 9.0, -32.0 * 5.0 / 9.0),
        "degF": (5.0 / 9.0, -32.0 * 5.0 / 9.0),
        "K": (1.0, -273.15),
    },
}


def unit_conversion(canonical: str, unit: str) -> tuple[float, float] | None:
    """``(factor, offset)`` turning a value in ``unit`` into ``canonical``, or None if not pure.

    ``canonical`` is a vital's UCUM unit; the result converts as
    ``value * factor + offset``. None means the unit is not an equivalent of
    ``canonical`` and the value must be refused, not guessed.
    """
    factor = _FACTORS.get(canonical, {}).get(unit)
    if factor is not None:
        return factor, 0.0
    return _OFFSET_UNITS.get(canonical, {}).get(unit)


def accepted_units(canonical: str) -> tuple[str, ...]:
    """Every unit spelling accepted for ``canonical`` (for error messages and the docs)."""
    return tuple(_FACTORS.get(canonical, {})) + tuple(_OFFSET_UNITS.get(canonical, {}))
