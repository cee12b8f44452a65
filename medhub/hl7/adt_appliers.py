"""Appliers for ADT messages (HL7 v2.5.1 chapter 3), keyed ``ADT^<event>``.

===========================  ====================================================
A01 A02 A03 A04 A05 A08      Patient (PID), Encounter (PV1/PV2) with its
A11 A12 A13                  Locations and Practitioners, AllergyIntolerance
                             (AL1), Condition (DG1)
A28 A31                      Patient and AllergyIntolerance: person events carry
                             no visit (their PV1 is a placeholder, usually class N)
A40                          patient merge, see :mod:`medhub.hl7.patient_merge`
===========================  ====================================================

The mapping itself is pure (``*_mapping.py``, :mod:`medhub.hl7.encounter_state`);
this module finds or creates what the message names and writes the result.
Everything is found by what the message identifies it with, never by medhub ids:

* Patient by PID-3, Practitioner by the XCN id and its assigning authority,
  Location by its path (:mod:`medhub.hl7.location_mapping`), all with the HL7
  update semantics of :mod:`medhub.hl7.identity`;
* Encounter by PV1-19. Without a visit number medhub takes the patient's most
  recent visit that has not ended (for A13, one that has): a v2 interface that
  sends no visit number has one current visit per patient, and creating a new
  Encounter for every A08 would be worse than any guess;
* AllergyIntolerance by patient and allergen; Condition by DG1-20 when sent, else
  by patient, code and encounter. A re-sent AL1/DG1 (an A08 repeats them all)
  updates what is stored instead of adding a copy.

A resource is written only when the message changes it, so a re-sent message
does not grow any history.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from medhub.errors import ConflictError, Hl7Location, Issue
from medhub.fhir.search import Criterion, ReferenceValue, SearchQuery, TokenValue
from medhub.fhir.store import Resources, StoredResource
from medhub.hl7.apply_context import Applier, ApplyContext
from medhub.hl7.clinical_mapping import (
    MappedCondition,
    al1_allergy,
    code_token,
    dg1_condition,
    merge_condition,
    same_code,
)
from medhub.hl7.datatype_mapping import sender_offset
from medhub.hl7.encounter_mapping import (
    V3_PARTICIPATION_TYPE,
    MappedParticipant,
    MappedVisit,
    map_visit,
)
from medhub.hl7.encounter_state import OPEN_STATUSES, next_encounter
from medhub.hl7.er7 import Message
from medhub.hl7.identity import find_by_identifiers, merge_resource, upsert_by_identifiers
from medhub.hl7.location_mapping import MappedLocation, location_display
from medhub.hl7.patient_mapping import pid_to_patient
from medhub.hl7.patient_merge import apply_merge
from medhub.hl7.patient_upsert import upsert_patient
from medhub.hl7.practitioner_mapping import MappedPerson

_CANDIDATES = 100
#: find_by_identifiers returns at most this many; a full page may hide a match.
_LOOKUP = 10


def reference(stored: StoredResource, display: str = "") -> dict[str, Any]:
    """A FHIR Reference to a stored resource (``{"reference": "Type/id"}``)."""
    ref: dict[str, Any] = {"reference": f"{stored.resource_type}/{stored.id}"}
    if display:
        ref["display"] = display
    return ref


def save(resources: Resources, current: StoredResource, resource: dict[str, Any]) -> StoredResource:
    """Write ``resource`` as the next version of ``current``, unless nothing changed."""
    if {k: v for k, v in current.resource.items() if k != "meta"} == resource:
        return current
    return resources.update(current.resource_type, current.id, resource).stored


# -- references the visit makes ------------------------------------------------------------


def person_reference(resources: Resources, person: MappedPerson) -> dict[str, Any] | None:
    """A Reference to the Practitioner an XCN names (found or created), or display-only."""
    if person.practitioner is None:
        return {"display": person.display} if person.display else None
    stored = upsert_by_identifiers(resources, person.practitioner, location=person.location)
    return reference(stored, person.display)


def _participant(resources: Resources, mapped: MappedParticipant) -> dict[str, Any] | None:
    individual = person_reference(resources, mapped.person)
    if individual is None:
        return None
    coding = {"system": V3_PARTICIPATION_TYPE, "code": mapped.type_code}
    coding["display"] = mapped.type_display
    return {"type": [{"coding": [coding]}], "individual": individual}


def _key(identifier: dict[str, Any]) -> tuple[str, str]:
    return str(identifier.get("system", "")), str(identifier.get("value", ""))


def location_reference(resources: Resources, levels: list[MappedLocation]) -> dict[str, Any] | None:
    """Find or create each level of PV1-3 (each ``partOf`` the one above); the innermost's ref.

    All levels are looked up in one search (a bed is usually known already), then
    each is created or updated with the HL7 update semantics of
    :func:`~medhub.hl7.identity.merge_resource`.
    """
    where = Hl7Location("PV1", 1, 3)
    identifiers = [i for level in levels for i in level.resource["identifier"]]
    known = find_by_identifiers(resources, "Location", identifiers)
    parent: dict[str, Any] | None = None
    for level in levels:
        resource = dict(level.resource)
        if parent is not None:
            resource["partOf"] = parent
        wanted = {_key(i) for i in resource["identifier"]}
        matches = [s for s in known if wanted & {_key(i) for i in s.resource.get("identifier", [])}]
        if len(matches) > 1 or len(known) >= _LOOKUP:
            stored = upsert_by_identifiers(resources, resource, location=where)  # rare: be exact
        elif matches:
            stored = save(resources, matches[0], merge_resource(matches[0].resource, resource))
        else:
            stored = resources.create(resource)
        parent = reference(stored)
    if parent is None:
        return None
    return {**parent, "display": location_display(levels)}


# -- the encounter -------------------------------------------------------------------------


def _by_subject(resource_type: str, param: str, subject: str) -> SearchQuery:
    target = (ReferenceValue("Patient", subject.removeprefix("Patient/"), None),)
    criteria = [Criterion(param, "reference", target)]
    return SearchQuery(resource_type, criteria, count=_CANDIDATES, with_total=False)


def find_encounter(
    resources: Resources, visit: MappedVisit, subject: dict[str, Any]
) -> StoredResource | None:
    """The stored visit: by PV1-19, else the patient's current one (see the module docstring)."""
    identifiers = visit.encounter.get("identifier", [])
    if identifiers:
        matches = find_by_identifiers(resources, "Encounter", identifiers)
        if len(matches) > 1:
            location = Hl7Location("PV1", 1, 19)
            text = f"PV1-19 visit number matches {len(matches)} encounters; merge them first"
            raise ConflictError(
                text,
                [Issue(text, code="multiple-matches", location=location, hl7_error_code=205)],
            )
        return matches[0] if matches else None
    wanted = OPEN_STATUSES | ({"finished"} if visit.event == "A13" else set())
    query = _by_subject("Encounter", "subject", subject["reference"])
    for stored in resources.search(query).resources:  # most recently updated first
        if stored.resource.get("status") in wanted:
            return stored
    return None


def apply_encounter(
    resources: Resources, visit: MappedVisit, subject: dict[str, Any]
) -> StoredResource:
    """Fold the visit event into the stored Encounter (or create it) and store it."""
    location = location_reference(resources, visit.locations)
    participants = [
        p for p in (_participant(resources, m) for m in visit.participants) if p is not None
    ]
    current = find_encounter(resources, visit, subject)
    encounter = next_encounter(
        current.resource if current is not None else None,
        visit,
        subject=subject,
        location=location,
        participants=participants,
    )
    if current is None:
        return resources.create(encounter)
    return save(resources, current, encounter)


# -- allergies and diagnoses ---------------------------------------------------------------


def _candidates(
    resources: Resources, resource_type: str, param: str, subject: str, code: dict[str, Any]
) -> list[StoredResource]:
    query = _by_subject(resource_type, param, subject)
    token = code_token(code)
    if token is not None:
        query.criteria.append(Criterion("code", "token", (TokenValue(token[0], token[1]),)))
    return [s for s in resources.search(query).resources if same_code(s.resource.get("code"), code)]


def upsert_allergy(resources: Resources, allergy: dict[str, Any]) -> StoredResource:
    """Create the allergy, or update the patient's stored allergy to the same allergen."""
    subject = allergy["patient"]["reference"]
    matches = _candidates(resources, "AllergyIntolerance", "patient", subject, allergy["code"])
    if not matches:
        return resources.create(allergy)
    return save(resources, matches[0], merge_resource(matches[0].resource, allergy))


def upsert_condition(resources: Resources, mapped: MappedCondition) -> StoredResource:
    """Create the diagnosis, or update the stored one (DG1-20, else patient+code+encounter)."""
    condition = dict(mapped.resource)
    if mapped.asserter is not None:
        asserter = person_reference(resources, mapped.asserter)
        if asserter is not None:
            condition["asserter"] = asserter
    matches = find_by_identifiers(resources, "Condition", condition.get("identifier", []))
    if not matches:
        encounter = (condition.get("encounter") or {}).get("reference")
        subject = condition["subject"]["reference"]
        matches = [
            s
            for s in _candidates(resources, "Condition", "subject", subject, condition["code"])
            if (s.resource.get("encounter") or {}).get("reference") == encounter
        ]
    if not matches:
        return resources.create(condition)
    return save(resources, matches[0], merge_condition(matches[0].resource, condition))


def apply_allergies(
    resources: Resources, message: Message, patient: dict[str, Any]
) -> list[StoredResource]:
    return [
        upsert_allergy(resources, al1_allergy(al1, sequence=n, patient=patient))
        for n, al1 in enumerate(message.all("AL1"), start=1)
    ]


def apply_conditions(
    resources: Resources,
    message: Message,
    subject: dict[str, Any],
    encounter: dict[str, Any],
) -> list[StoredResource]:
    offset = sender_offset(message)
    mapped = [
        dg1_condition(dg1, sequence=n, subject=subject, encounter=encounter, default_offset=offset)
        for n, dg1 in enumerate(message.all("DG1"), start=1)
    ]
    return [upsert_condition(resources, m) for m in mapped]


# -- the appliers --------------------------------------------------------------------------


def apply_visit_event(message: Message, context: ApplyContext) -> list[StoredResource]:
    """A01-A13: the patient, the visit, its allergies and diagnoses."""
    resources = context.resources
    patient_resource = pid_to_patient(message)
    visit = map_visit(message, now=context.now)
    patient = upsert_patient(resources, patient_resource)
    subject = reference(patient)
    encounter = apply_encounter(resources, visit, subject)
    return [
        patient,
        encounter,
        *apply_allergies(resources, message, subject),
        *apply_conditions(resources, message, subject, reference(encounter)),
    ]


def apply_person_event(message: Message, context: ApplyContext) -> list[StoredResource]:
    """A28/A31 add/update person information: the patient and their allergies."""
    patient = upsert_patient(context.resources, pid_to_patient(message))
    return [patient, *apply_allergies(context.resources, message, reference(patient))]


VISIT_EVENTS = ("A01", "A02", "A03", "A04", "A05", "A08", "A11", "A12", "A13")
PERSON_EVENTS = ("A28", "A31")

APPLIERS: Mapping[str, Applier] = {
    **{f"ADT^{event}": apply_visit_event for event in VISIT_EVENTS},
    **{f"ADT^{event}": apply_person_event for event in PERSON_EVENTS},
    "ADT^A40": apply_merge,
}
