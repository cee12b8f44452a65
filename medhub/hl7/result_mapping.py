"""An ORU^R01 message -> Patients, Observations, DiagnosticReports and Devices (pure).

Walks the message in order, as the ORU_R01 structure nests it (HL7 v2.5.1
§7.3.1): PID starts a patient; ORC/OBR start an order observation; each OBX
under it (including specimen OBX after SPM) is one Observation; NTE after an
OBX is its note. OBX before any OBR (v2.7+ patient observations) form a group
without an order.

Identity, so that a resent or corrected result updates instead of duplicating:
an Observation's identifier is the order's filler number (OBR-3, else ORC-3,
else the placer number OBR-2/ORC-2) with the OBX-3 code and the OBX-4 sub-id
(HL7 v2.5.1 §7.4.2.4: OBX-3 + OBX-4 identify an observation within an order;
OBX-1 is only a sequence number and may change between a report and its
correction). Its system is the order number's assigning authority, else the
sending application's (MSH-3). Without any order number the key is the
patient's first identifier, OBX-14 and the code, scoped to the sender.

Lab vs device: a group whose OBX-3 codes are IEEE 11073 (MDC) terms is IHE
PCD-01 device data; it has no DiagnosticReport (the PCD-01 OBR is a container,
PoCD IG mappingv2). Every other OBR becomes a DiagnosticReport (v2-to-FHIR
OBR[DiagnosticReport]) whose Observations get the ``laboratory`` category.

Devices (PoCD IG / IHE PCD-01): OBX-18 names the equipment. A "device-related"
OBX (containment with trailing zeros such as ``1.0.0.0`` and no value)
describes the device itself: its OBX-3 becomes ``Device.type`` and no
Observation is written. A metric OBX without OBX-18 inherits the equipment of
the nearest earlier OBX of the same VMD, else the same MDS (first numbers of
OBX-4).
"""

from __future__ import annotations

import hashlib
import re
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Final

from medhub.errors import Hl7Location
from medhub.hl7.datatype_mapping import codeable_concept, fhir_datetime, sender_offset
from medhub.hl7.er7 import Message, Segment
from medhub.hl7.hl7_datatypes import (
    ei_identifier,
    field_error,
    field_path,
    hl7_instant,
    sender_system,
)
from medhub.hl7.observation_mapping import MappedObservation, map_obx
from medhub.hl7.patient_mapping import pid_to_patient

OBSERVATION_CATEGORY: Final = "http://terminology.hl7.org/CodeSystem/observation-category"
V2_0074: Final = "http://terminology.hl7.org/CodeSystem/v2-0074"
#: OBR-25 (HL7 table 0123) -> DiagnosticReport.status (v2-to-FHIR DiagnosticReportStatus).
REPORT_STATUS: Final[dict[str, str]] = {
    "O": "registered",
    "I": "registered",
    "S": "registered",
    "A": "partial",
    "P": "preliminary",
    "R": "preliminary",
    "N": "final",
    "F": "final",
    "C": "corrected",
    "M": "corrected",
    "X": "cancelled",
    "Y": "unknown",
    "Z": "unknown",
}
_CONTAINMENT: Final = re.compile(r"^\d+(\.\d+){3}$")
_MAX_KEY: Final = 200


@dataclass(slots=True)
class ResultGroup:
    """One OBR with its OBX (or the OBX before any OBR), mapped."""

    obr: Segment | None
    obr_occurrence: int
    orc: Segment | None
    orc_occurrence: int
    effective: str | None
    observations: list[MappedObservation] = field(default_factory=list)
    report: dict[str, Any] | None = None
    key_location: Hl7Location = field(default_factory=lambda: Hl7Location("PID", 1, 3))


@dataclass(slots=True)
class PatientResults:
    """A patient (from PID) and the result groups reported for them."""

    patient: dict[str, Any]
    groups: list[ResultGroup] = field(default_factory=list)


@dataclass(slots=True)
class ResultMessage:
    """Everything an ORU^R01 means, ready to be linked and stored."""

    patients: list[PatientResults]
    device_types: dict[tuple[str, str], dict[str, Any]]

    def device(self, equipment: dict[str, Any], subject: dict[str, str]) -> dict[str, Any]:
        """The Device for an OBX-18 identifier (PoCD IG MdsDevice: identifier, type, patient)."""
        device: dict[str, Any] = {
            "resourceType": "Device",
            "identifier": [equipment],
            "status": "active",
        }
        device_type = self.device_types.get(identifier_key(equipment))
        if device_type is not None:
            device["type"] = device_type
        device["patient"] = subject
        return device


def identifier_key(identifier: dict[str, Any]) -> tuple[str, str]:
    return str(identifier.get("system", "")), str(identifier["value"])


def _short(value: str) -> str:
    """Keep identifier values indexable (the token index holds 255 characters)."""
    if len(value) <= _MAX_KEY:
        return value
    return "sha256:" + hashlib.sha256(value.encode()).hexdigest()


def _order_number(group: ResultGroup, sender: str) -> tuple[dict[str, Any] | None, Hl7Location]:
    """The order's filler number (else placer number) and the field it came from."""
    obr = ("OBR", group.obr, group.obr_occurrence)
    orc = ("ORC", group.orc, group.orc_occurrence)
    for (name, segment, occurrence), number in ((obr, 3), (orc, 3), (obr, 2), (orc, 2)):
        if segment is not None:
            identifier = ei_identifier(segment, number, default_system=sender)
            if identifier is not None:
                return identifier, Hl7Location(name, occurrence, number)
    return None, Hl7Location("PID", 1, 3)


class _Walk:
    """State while walking one message's segments in order."""

    def __init__(self, message: Message) -> None:
        self.message = message
        self.sender = sender_system(message.msh)
        self.offset = sender_offset(message)
        self.patients: list[PatientResults] = []
        self.device_types: dict[tuple[str, str], dict[str, Any]] = {}
        self.equipment: dict[str, dict[str, Any]] = {}
        self.seen_keys: set[tuple[str, str]] = set()

    def patient(self, segment: Segment, occurrence: int) -> PatientResults:
        if not self.patients:
            text = f"{segment.name}^{occurrence} comes before any PID segment"
            raise field_error(text, Hl7Location(segment.name, occurrence), 100)
        return self.patients[-1]

    def group(self, obr: Segment, occurrence: int, orc: tuple[Segment, int] | None) -> ResultGroup:
        effective = None
        if obr.value(7).strip():
            location = Hl7Location("OBR", occurrence, 7)
            effective = fhir_datetime(obr.value(7), location, default_offset=self.offset)
        orc_segment, orc_occurrence = orc if orc is not None else (None, 0)
        return ResultGroup(obr, occurrence, orc_segment, orc_occurrence, effective)

    def observation(self, group: ResultGroup, obx: Segment, occurrence: int) -> None:
        mapped = map_obx(
            obx,
            occurrence,
            default_effective=group.effective,
            default_offset=self.offset,
            sender=self.sender,
        )
        containment = mapped.sub_id if _CONTAINMENT.match(mapped.sub_id) else ""
        parts = containment.split(".") if containment else []
        scopes = [".".join(parts[:2]), parts[0]] if parts else []
        if mapped.equipment is not None:
            for scope in scopes:
                self.equipment.setdefault(scope, mapped.equipment)
        else:
            mapped.equipment = next(
                (self.equipment[s] for s in scopes if s in self.equipment), None
            )
        if parts and parts[-1] == "0" and not mapped.has_value:
            if parts[1:] == ["0", "0", "0"] and mapped.equipment is not None:
                self.device_types[identifier_key(mapped.equipment)] = mapped.resource["code"]
            return  # a device-related OBX describes the device, it is not an observation
        group.observations.append(mapped)


def _walk(message: Message) -> _Walk:
    walk = _Walk(message)
    counts: Counter[str] = Counter()
    group: ResultGroup | None = None
    orc: tuple[Segment, int] | None = None
    after_obx = False
    for segment in message.segments:
        counts[segment.name] += 1
        occurrence = counts[segment.name]
        if segment.name == "PID":
            solo = Message(message.delimiters, [message.msh, segment])
            walk.patients.append(PatientResults(pid_to_patient(solo)))
            group, orc = None, None
        elif segment.name == "ORC":
            orc = (segment, occurrence)
        elif segment.name == "OBR":
            group = walk.group(segment, occurrence, orc)
            walk.patient(segment, occurrence).groups.append(group)
            orc = None
        elif segment.name == "OBX":
            patient = walk.patient(segment, occurrence)
            if group is None:
                group = ResultGroup(None, 0, None, 0, None)
                patient.groups.append(group)
            walk.observation(group, segment, occurrence)
        elif segment.name == "NTE" and after_obx and group is not None:
            _note(group, segment)
        if segment.name not in ("NTE", "PRT"):
            after_obx = segment.name == "OBX"
    return walk


def _note(group: ResultGroup, nte: Segment) -> None:
    """NTE-3 after an OBX becomes ``Observation.note`` (v2-to-FHIR NTE[Observation])."""
    if not group.observations:
        return
    text = "\n".join(nte.value(3, rep) for rep in range(1, len(nte.repetitions(3)) + 1)).strip()
    if text:
        group.observations[-1].resource.setdefault("note", []).append({"text": text})


def _report(group: ResultGroup, walk: _Walk) -> dict[str, Any]:
    """OBR -> DiagnosticReport (v2-to-FHIR OBR[DiagnosticReport]); links are added later."""
    obr, n = group.obr, group.obr_occurrence
    assert obr is not None
    code = codeable_concept(obr, 4)
    if code is None:
        location = Hl7Location("OBR", n, 4)
        raise field_error(
            f"{field_path(location)} (universal service identifier) is empty",
            location,
            101,
            required=True,
        )
    status_code = obr.value(25).strip().upper()
    if status_code and status_code not in REPORT_STATUS:
        location = Hl7Location("OBR", n, 25)
        raise field_error(
            f"{field_path(location)} {status_code!r} is not a result status (HL7 table 0123)",
            location,
            103,
        )
    report: dict[str, Any] = {
        "resourceType": "DiagnosticReport",
        "identifier": _report_identifiers(group, walk.sender),
        "status": REPORT_STATUS.get(status_code, "unknown"),
    }
    section = obr.value(24).strip()
    if section:
        report["category"] = [{"coding": [{"system": V2_0074, "code": section}]}]
    report["code"] = code
    if group.effective:
        report["effectiveDateTime"] = group.effective
    if obr.value(22).strip():
        location = Hl7Location("OBR", n, 22)
        issued = hl7_instant(obr.value(22), location, default_offset=walk.offset)
        if issued:
            report["issued"] = issued
    return report


def _report_identifiers(group: ResultGroup, sender: str) -> list[dict[str, Any]]:
    identifiers = []
    for number, type_code in ((3, "FILL"), (2, "PLAC")):
        for segment in (group.obr, group.orc):
            identifier = (
                ei_identifier(segment, number, default_system=sender, type_code=type_code)
                if segment is not None
                else None
            )
            if identifier is not None:
                identifiers.append(identifier)
                break
    return identifiers


def _link_identities(patient: PatientResults, walk: _Walk) -> None:
    patient_key = str(patient.patient["identifier"][0]["value"])
    for group in patient.groups:
        order, group.key_location = _order_number(group, walk.sender)
        is_lab = group.obr is not None and not any(o.is_device_data for o in group.observations)
        for mapped in group.observations:
            if order is not None:
                system, base = str(order["system"]), str(order["value"])
            else:
                effective = mapped.resource.get("effectiveDateTime", "")
                system, base = walk.sender, f"{patient_key}/{effective}"
            value = f"{base}/{mapped.code}" + (f"/{mapped.sub_id}" if mapped.sub_id else "")
            if (system, value) in walk.seen_keys:
                value += f"#{mapped.occurrence}"
            walk.seen_keys.add((system, value))
            mapped.resource["identifier"] = [{"system": system, "value": _short(value)}]
            if is_lab and "category" not in mapped.resource:
                mapped.resource["category"] = [
                    {"coding": [{"system": OBSERVATION_CATEGORY, "code": "laboratory"}]}
                ]
        if is_lab:
            report = _report(group, walk)
            if not report["identifier"]:
                code = group.obr.value(4, 1, 1) if group.obr is not None else ""
                key = f"{patient_key}/{code}/{group.effective or ''}"
                report["identifier"] = [{"system": walk.sender, "value": _short(key)}]
            group.report = report


def map_results(message: Message) -> ResultMessage:
    """Map an ORU^R01 (lab or IHE PCD-01) message; raises InputError with the failing field."""
    walk = _walk(message)
    if not walk.patients:
        text = "the message has no PID segment"
        raise field_error(text, Hl7Location("PID"), 100, required=True)
    for patient in walk.patients:
        _link_identities(patient, walk)
    return ResultMessage(walk.patients, walk.device_types)
