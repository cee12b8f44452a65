"""PV1/PV2 of an ADT message -> what the message says about the visit (pure).

Follows the v2-to-FHIR guide's ``PV1[Encounter]`` and ``PV2[Encounter]`` maps
for the elements medhub carries:

============  ==================================================================
PV1-2         ``Encounter.class`` (ConceptMap PatientClass[EncounterClass]:
              E EMER, I IMP, O AMB, P PRENC in v3-ActCode; other codes kept in v2-0004)
PV1-3         ``Encounter.location`` (see :mod:`medhub.hl7.location_mapping`)
PV1-4         ``Encounter.type`` (admission type, table 0007)
PV1-5         ``Encounter.hospitalization.preAdmissionIdentifier``
PV1-7/8/9/17  ``Encounter.participant`` attender / referrer / consultant / admitter
              (v3-ParticipationType ATND / REF / CON / ADM), see
              :mod:`medhub.hl7.practitioner_mapping`
PV1-10        ``Encounter.serviceType`` (hospital service, table 0069)
PV1-14        ``Encounter.hospitalization.admitSource`` (table 0023)
PV1-19        ``Encounter.identifier`` (visit number, type VN)
PV1-36        ``Encounter.hospitalization.dischargeDisposition`` (table 0112)
PV1-44 / 45   ``Encounter.period.start`` / ``.end``
PV2-3         ``Encounter.reasonCode`` (admit reason)
============  ==================================================================

``Encounter.status`` follows the trigger event (ConceptMap
table-hl70003-to-encounter-status), with one deliberate difference: the guide
maps A04 to ``planned``, but HL7 v2.5.1 §3.3.4 defines A04 as "the patient has
arrived or checked in" (an emergency-room visit starts with one), which is
FHIR's ``arrived``; ``planned`` would hide registered, present patients from
every list of who is here. A08 and A12 carry no status of their own (the
guide maps A08 to ``unknown`` because "the transaction does not convey the
status"), so the stored status is kept; only a visit medhub first hears of
through them takes its status from PV1 as the ``PV1[Encounter]`` map says
(finished when PV1-45 is valued, planned for class P, else in-progress).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final

from medhub.errors import Hl7Location, Issue, MissingDataError
from medhub.hl7.datatype_mapping import (
    V2_TABLE_SYSTEM,
    clean,
    codeable_concept,
    cx_identifier,
    fhir_datetime,
    sender_offset,
    v2_table_concept,
)
from medhub.hl7.er7 import Message, Segment
from medhub.hl7.location_mapping import MappedLocation, pl_locations
from medhub.hl7.practitioner_mapping import MappedPerson, xcn_people

V3_ACT_CODE: Final = "http://terminology.hl7.org/CodeSystem/v3-ActCode"
V3_PARTICIPATION_TYPE: Final = "http://terminology.hl7.org/CodeSystem/v3-ParticipationType"

#: HL7 table 0004 -> v3-ActCode (v2-to-FHIR ConceptMap PatientClass[EncounterClass]).
_CLASS: Final = {
    "E": ("EMER", "emergency"),
    "I": ("IMP", "inpatient encounter"),
    "O": ("AMB", "ambulatory"),
    "P": ("PRENC", "pre-admission"),
}
_V2_CLASS_DISPLAY: Final = {
    "R": "Recurring patient",
    "B": "Obstetrics",
    "C": "Commercial Account",
    "N": "Not Applicable",
    "U": "Unknown",
}

#: ADT trigger event (table 0003) -> Encounter.status; A08/A12 keep the stored status.
EVENT_STATUS: Final[dict[str, str]] = {
    "A01": "in-progress",
    "A02": "in-progress",
    "A03": "finished",
    "A04": "arrived",
    "A05": "planned",
    "A11": "cancelled",
    "A13": "in-progress",
}

#: PV1 fields naming people -> v3-ParticipationType (code, display).
_PARTICIPANTS: Final = (
    (7, "ATND", "attender"),
    (8, "REF", "referrer"),
    (9, "CON", "consultant"),
    (17, "ADM", "admitter"),
)


@dataclass(frozen=True, slots=True)
class MappedParticipant:
    """A person PV1 names, with the role (v3-ParticipationType code) they have in the visit."""

    type_code: str
    type_display: str
    person: MappedPerson


@dataclass(frozen=True, slots=True)
class MappedVisit:
    """Everything one ADT message says about one visit, before references are resolved.

    ``encounter`` holds the plain elements (identifier, class, type, serviceType,
    hospitalization, reasonCode); period, status, location and participants are
    kept apart because applying them depends on what is already stored
    (:mod:`medhub.hl7.encounter_state`).
    """

    event: str
    encounter: dict[str, Any]
    status: str | None
    initial_status: str
    planned_location: bool
    locations: list[MappedLocation]
    participants: list[MappedParticipant]
    admitted_at: str | None
    discharged_at: str | None
    at: str


def _required_pv1(message: Message) -> Segment:
    pv1 = message.segment("PV1")
    if pv1 is None:
        text = "the message has no PV1 segment (patient visit)"
        raise MissingDataError(text, [Issue(text, location=Hl7Location("PV1"), hl7_error_code=100)])
    if not clean(pv1.value(2)):
        text = "PV1-2 (patient class) is empty"
        location = Hl7Location("PV1", 1, 2)
        raise MissingDataError(text, [Issue(text, location=location, hl7_error_code=101)])
    return pv1


def encounter_class(pv1: Segment) -> dict[str, Any]:
    """PV1-2 -> Encounter.class (a Coding)."""
    code = clean(pv1.value(2)).upper()
    if code in _CLASS:
        act, display = _CLASS[code]
        return {"system": V3_ACT_CODE, "code": act, "display": display}
    coding: dict[str, Any] = {"system": V2_TABLE_SYSTEM.format(table="0004"), "code": code}
    if code in _V2_CLASS_DISPLAY:
        coding["display"] = _V2_CLASS_DISPLAY[code]
    return coding


def format_now(now: datetime) -> str:
    """``now`` as a FHIR dateTime in UTC (a naive ``now`` is taken to be UTC)."""
    moment = now.replace(tzinfo=UTC) if now.tzinfo is None else now.astimezone(UTC)
    return f"{moment:%Y-%m-%dT%H:%M:%S}Z"


def event_time(message: Message, now: datetime) -> str:
    """When the event happened: EVN-6 (event occurred), else EVN-2 (recorded), else ``now``."""
    evn = message.segment("EVN")
    offset = sender_offset(message)
    if evn is not None:
        for field in (6, 2):
            value = clean(evn.value(field))
            if value:
                return fhir_datetime(value, Hl7Location("EVN", 1, field), default_offset=offset)
    return format_now(now)


def _hospitalization(pv1: Segment) -> dict[str, Any]:
    hospitalization: dict[str, Any] = {}
    pre_admission = cx_identifier(pv1, 5)
    if pre_admission is not None:
        hospitalization["preAdmissionIdentifier"] = pre_admission
    admit_source = v2_table_concept(pv1, 14, "0023")
    if admit_source is not None:
        hospitalization["admitSource"] = admit_source
    disposition = v2_table_concept(pv1, 36, "0112")
    if disposition is not None:
        hospitalization["dischargeDisposition"] = disposition
    return hospitalization


def _encounter(message: Message, pv1: Segment) -> dict[str, Any]:
    encounter: dict[str, Any] = {"resourceType": "Encounter"}
    visit_number = cx_identifier(pv1, 19, type_code="VN")
    if visit_number is not None:
        encounter["identifier"] = [visit_number]
    encounter["class"] = encounter_class(pv1)
    admission_type = v2_table_concept(pv1, 4, "0007")
    if admission_type is not None:
        encounter["type"] = [admission_type]
    service = v2_table_concept(pv1, 10, "0069")
    if service is not None:
        encounter["serviceType"] = service
    hospitalization = _hospitalization(pv1)
    if hospitalization:
        encounter["hospitalization"] = hospitalization
    pv2 = message.segment("PV2")
    reason = codeable_concept(pv2, 3) if pv2 is not None else None
    if reason is not None:
        encounter["reasonCode"] = [reason]
    return encounter


def _participants(pv1: Segment) -> list[MappedParticipant]:
    return [
        MappedParticipant(code, display, person)
        for field, code, display in _PARTICIPANTS
        for person in xcn_people(pv1, field)
    ]


def _time(pv1: Segment, field: int, offset: str | None) -> str | None:
    value = clean(pv1.value(field))
    if not value:
        return None
    return fhir_datetime(value, Hl7Location("PV1", 1, field), default_offset=offset)


def map_visit(message: Message, *, now: datetime) -> MappedVisit:
    """What the message's PV1 (and PV2) say about the visit.

    Raises :class:`MissingDataError` when PV1 or PV1-2 (both required in every
    visit event, HL7 v2.5.1 §3.4.3) is missing, and :class:`InputError` naming
    the field for a malformed time or location.
    """
    pv1 = _required_pv1(message)
    event = message.message_type[1]
    offset = sender_offset(message)
    discharged_at = _time(pv1, 45, offset)
    patient_class = clean(pv1.value(2)).upper()
    if discharged_at is not None:
        initial = "finished"
    elif patient_class == "P":
        initial = "planned"
    else:
        initial = "in-progress"
    return MappedVisit(
        event=event,
        encounter=_encounter(message, pv1),
        status=EVENT_STATUS.get(event),
        initial_status=EVENT_STATUS.get(event, initial),
        planned_location=event == "A05" or patient_class == "P",
        locations=pl_locations(pv1, 3),
        participants=_participants(pv1),
        admitted_at=_time(pv1, 44, offset),
        discharged_at=discharged_at,
        at=event_time(message, now),
    )
