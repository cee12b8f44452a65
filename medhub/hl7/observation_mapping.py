"""One OBX segment -> one FHIR R4 Observation (pure; no store, no clock).

Follows the v2-to-FHIR OBX[Observation] map and, for device data, the HL7
Point-of-Care Device IG (mappingv2) / IHE PCD-01:

=======  =================================================================
OBX-3    ``code`` (CWE[CodeableConcept]); an MDC vital sign also gets its
         LOINC coding(s) and the ``vital-signs`` category (FHIR vital-signs
         profile; table in :mod:`medhub.clinical.vital_codes`)
OBX-4    extension ``observation-v2-subid`` (v2-to-FHIR); for PCD-01 this is
         the MDS.VMD.CHAN.METRIC containment, kept verbatim
OBX-5    ``value[x]`` by OBX-2 (:mod:`medhub.hl7.observation_values`)
OBX-7    ``referenceRange`` (text; low/high when it reads ``a-b``/``a to b``)
OBX-8    ``interpretation`` (table 0078 -> v3-ObservationInterpretation)
OBX-11   ``status`` (table 0085, v2-to-FHIR ObservationResultStatus map)
OBX-14   ``effectiveDateTime`` (else OBR-7, given by the caller)
OBX-17   ``method``;  OBX-20 ``bodySite``
OBX-18   the equipment: an identifier for a Device (EUI-64 as the PoCD IG)
=======  =================================================================

Subject, device reference and business identifier are filled in by the
result mapper, which knows the patient, the order and the device.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Final

from medhub.clinical.vital_codes import (
    LOINC_SYSTEM,
    MDC_SYSTEM,
    VitalSign,
    vital_for_loinc,
    vital_for_mdc,
    vital_signs_category,
)
from medhub.errors import Hl7Location
from medhub.hl7.datatype_mapping import codeable_concept, fhir_datetime
from medhub.hl7.er7 import Segment
from medhub.hl7.hl7_datatypes import ei_identifier, field_error, field_path
from medhub.hl7.observation_values import observation_value
from medhub.hl7.ucum_units import quantity_unit

SUBID_EXTENSION: Final = "http://hl7.org/fhir/StructureDefinition/observation-v2-subid"
V3_INTERPRETATION: Final = "http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation"
DATA_ABSENT_REASON: Final = "http://terminology.hl7.org/CodeSystem/data-absent-reason"
#: The PoCD IG's identifier system for an IEEE EUI-64 (MdsDevice example, ``01-23-…-EF``).
EUI64_SYSTEM: Final = "urn:oid:1.2.840.10004.1.1.1.0.0.1.0.0.1.2680"

#: OBX-11 (HL7 table 0085) -> Observation.status (v2-to-FHIR ObservationResultStatus).
RESULT_STATUS: Final[dict[str, str]] = {
    "C": "corrected",
    "D": "entered-in-error",
    "F": "final",
    "I": "registered",
    "N": "final",
    "O": "registered",
    "P": "preliminary",
    "R": "preliminary",
    "S": "preliminary",
    "U": "final",
    "W": "entered-in-error",
    "X": "cancelled",
    "A": "amended",
    "B": "amended",
}
#: Statuses that change only the status of a result sent earlier (OBX-5 may be empty).
STATUS_ONLY: Final = frozenset({"U", "D", "W"})
#: Table 0078 codes that v3-ObservationInterpretation also defines (same code, same meaning).
V3_CODES: Final = frozenset(
    "< > A AA AC B CAR D DET E EX EXP H H> HH HM HU HX I IE IND L L< LL LU LX MS N NCL ND NEG "
    "NR NS POS QCF R RR S SDD SYN-R SYN-S TOX U UNE VS W WR".split()
)
#: Local spellings of critical flags some laboratories send (Cerner, Epic interfaces).
FLAG_ALIASES: Final = {"CH": "HH", "CL": "LL", "C": "AA", "CRIT": "AA", "CRITICAL": "AA"}
#: Flags that mean a critical (panic) value: FHIR v3 HH, LL, AA.
CRITICAL_FLAGS: Final = frozenset({"HH", "LL", "AA"})
#: Statuses of a result that is (still) valid: a cancelled or erroneous one raises no alert.
LIVE_STATUSES: Final = frozenset({"preliminary", "final", "amended", "corrected"})
_RANGE: Final = re.compile(
    r"^\s*(-?\d+(?:\.\d+)?|-?\.\d+)\s*(?:-|–|to)\s*(-?\d+(?:\.\d+)?|-?\.\d+)\s*$",
    re.IGNORECASE,
)
_HEX: Final = re.compile(r"^[0-9A-Fa-f]{16}$")


@dataclass(slots=True)
class MappedObservation:
    """An Observation mapped from one OBX, before subject/device/identifier are linked."""

    resource: dict[str, Any]
    occurrence: int
    code: str
    sub_id: str
    flags: tuple[str, ...]
    status_code: str
    equipment: dict[str, Any] | None
    has_value: bool

    @property
    def status_only(self) -> bool:
        """OBX-11 U/D/W with no value: update the stored result's status, keep its value."""
        return self.status_code in STATUS_ONLY and not self.has_value

    @property
    def critical_flag(self) -> str | None:
        """The critical flag (HH, LL, AA) of a live result, or None."""
        if self.resource["status"] not in LIVE_STATUSES:
            return None
        return next((f for f in self.flags if f in CRITICAL_FLAGS), None)

    @property
    def is_device_data(self) -> bool:
        """True when OBX-3 is an IEEE 11073 (MDC) term: IHE PCD-01 device data."""
        codings = self.resource["code"].get("coding", [])
        return bool(codings) and codings[0].get("system") == MDC_SYSTEM


def _status(obx: Segment, occurrence: int) -> tuple[str, str]:
    code = obx.value(11).strip().upper()
    location = Hl7Location("OBX", occurrence, 11)
    if not code:
        raise field_error(
            f"{field_path(location)} (observation result status) is empty",
            location,
            101,
            required=True,
        )
    if code not in RESULT_STATUS:
        raise field_error(
            f"{field_path(location)} {code!r} is not a result status (HL7 table 0085)",
            location,
            103,
        )
    return code, RESULT_STATUS[code]


def _code(obx: Segment, occurrence: int) -> tuple[str, dict[str, Any], VitalSign | None]:
    location = Hl7Location("OBX", occurrence, 3)
    concept = codeable_concept(obx, 3)
    code = obx.value(3, 1, 1).strip()
    if not code or concept is None:
        raise field_error(
            f"{field_path(location)} (observation identifier) is empty",
            location,
            101,
            required=True,
        )
    first = concept["coding"][0]
    vital: VitalSign | None = None
    if first.get("system") == MDC_SYSTEM:
        vital = vital_for_mdc(code) or vital_for_mdc(first.get("display", ""))
    elif first.get("system") == LOINC_SYSTEM:
        vital = vital_for_loinc(code)
    if vital is not None:
        known = {(c.get("system"), c.get("code")) for c in concept["coding"]}
        concept["coding"] += [
            c for c in vital.loinc_codings() if (c["system"], c["code"]) not in known
        ]
    return code, concept, vital


def interpretation_codes(obx: Segment) -> tuple[str, ...]:
    """OBX-8 codes (first component of each repetition), local critical aliases resolved."""
    codes = []
    for rep in range(1, len(obx.repetitions(8)) + 1):
        code = obx.value(8, rep, 1).strip()
        if code:
            codes.append(FLAG_ALIASES.get(code.upper(), code))
    return tuple(codes)


def _interpretation(codes: tuple[str, ...]) -> list[dict[str, Any]]:
    concepts: list[dict[str, Any]] = []
    for code in codes:
        if code in V3_CODES:
            concepts.append({"coding": [{"system": V3_INTERPRETATION, "code": code}]})
        else:
            concepts.append({"text": code})
    return concepts


def _reference_range(obx: Segment) -> list[dict[str, Any]]:
    text = obx.value(7).strip()
    if not text:
        return []
    entry: dict[str, Any] = {"text": text}
    match = _RANGE.match(text)
    if match and obx.value(2).strip().upper() in ("NM", "SN"):
        low, high = float(match[1]), float(match[2])
        if low <= high:
            unit = quantity_unit(obx, 6)
            entry["low"] = {"value": _number(match[1]), **unit}
            entry["high"] = {"value": _number(match[2]), **unit}
    return [entry]


def _number(text: str) -> int | float:
    return float(text) if "." in text else int(text)


def eui64(value: str) -> str | None:
    """An EUI-64 as the PoCD IG writes it (``01-23-45-67-89-AB-CD-EF``), or None."""
    digits = "".join(ch for ch in value if ch not in "-: ")
    if not _HEX.match(digits):
        return None
    upper = digits.upper()
    return "-".join(upper[i : i + 2] for i in range(0, 16, 2))


def equipment_identifier(obx: Segment, *, default_system: str) -> dict[str, Any] | None:
    """OBX-18 (equipment instance identifier, EI) -> Device.identifier, or None.

    IHE PCD-01 sends the EUI-64 of the VMD or MDS either as
    ``id^name^eui64^EUI-64`` (universal id type) or as ``eui64^EUI-64``
    (namespace, as in the PCD TF examples); medhub uses the PoCD IG's EUI-64
    system for both. Any other EI keeps its assigning authority (or the
    sender's system when it has none).
    """
    for rep in range(1, len(obx.repetitions(18)) + 1):
        kinds = {obx.value(18, rep, comp).strip().upper() for comp in (2, 4)}
        if "EUI-64" in kinds:
            for comp in (3, 1):
                normalised = eui64(obx.value(18, rep, comp))
                if normalised:
                    return {"system": EUI64_SYSTEM, "value": normalised}
        identifier = ei_identifier(obx, 18, default_system=default_system, repetition=rep)
        if identifier is not None:
            return identifier
    return None


def map_obx(
    obx: Segment,
    occurrence: int,
    *,
    default_effective: str | None,
    default_offset: str | None,
    sender: str,
) -> MappedObservation:
    """Map one OBX (the ``occurrence``-th OBX of the message, for error locations)."""
    code, concept, vital = _code(obx, occurrence)
    status_code, status = _status(obx, occurrence)
    value = observation_value(obx, occurrence, default_offset=default_offset)
    observation: dict[str, Any] = {"resourceType": "Observation", "status": status}
    sub_id = obx.value(4).strip()
    if sub_id:
        observation["extension"] = [{"url": SUBID_EXTENSION, "valueString": sub_id}]
    if vital is not None:
        observation["category"] = [vital_signs_category()]
    observation["code"] = concept
    effective = default_effective
    if obx.value(14).strip():
        location = Hl7Location("OBX", occurrence, 14)
        effective = fhir_datetime(obx.value(14), location, default_offset=default_offset)
    if effective:
        observation["effectiveDateTime"] = effective
    extensions = value.pop("extension", [])
    if extensions:
        observation["extension"] = [*observation.get("extension", []), *extensions]
    observation.update(value)
    if status_code == "N" and not value:
        observation["dataAbsentReason"] = {
            "coding": [{"system": DATA_ABSENT_REASON, "code": "not-asked"}]
        }
    flags = interpretation_codes(obx)
    if flags:
        observation["interpretation"] = _interpretation(flags)
    for number, key in ((17, "method"), (20, "bodySite")):
        extra = codeable_concept(obx, number)
        if extra:
            observation[key] = extra
    ranges = _reference_range(obx)
    if ranges:
        observation["referenceRange"] = ranges
    return MappedObservation(
        resource=observation,
        occurrence=occurrence,
        code=code,
        sub_id=sub_id,
        flags=flags,
        status_code=status_code,
        equipment=equipment_identifier(obx, default_system=sender),
        has_value=bool(value) or bool(extensions),
    )
