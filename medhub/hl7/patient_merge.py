"""ADT^A40 merge patient (HL7 v2.5.1 §3.3.40): two patient records become one.

Each PID/MRG pair of the message (ADT_A39 structure: the pair may repeat) says
"the patient named by MRG-1 is the one named by PID-3". medhub then, in the
message's transaction:

1. creates or updates the surviving Patient from PID (as any ADT does);
2. moves every resource that points at the prior Patient (Encounter,
   Observation, AllergyIntolerance, Condition, MedicationRequest,
   ServiceRequest, Flag, DiagnosticReport, DetectedIssue, Device, see
   :data:`PATIENT_REFERENCES`) to the survivor, found through the reference
   search parameters, so a chart opened on the survivor shows the whole history;
3. retires the prior Patient: ``active`` false and ``link`` {other: survivor,
   type: replaced-by} (FHIR R4 patient.html#links); its identifiers move to the
   survivor with ``use`` old, and the survivor gets ``link`` {type: replaces};
4. when no stored Patient carries the MRG-1 identifiers, records them on the
   survivor all the same, so later messages that still use them find it.

Moving the identifiers (rather than copying them) is what keeps identity
unambiguous afterwards: a message still sent with the old MRN resolves to the
survivor alone instead of matching two patients and being refused. Applying the
same merge again finds the identifiers already on the survivor and changes
nothing.
"""

from __future__ import annotations

from typing import Any, Final

from medhub.errors import Hl7Location, Issue, MissingDataError
from medhub.fhir.search import MAX_COUNT, Criterion, ReferenceValue, SearchQuery
from medhub.fhir.store import Resources, StoredResource
from medhub.hl7.apply_context import ApplyContext
from medhub.hl7.datatype_mapping import cx_identifiers
from medhub.hl7.er7 import Message, Segment
from medhub.hl7.identity import find_by_identifiers
from medhub.hl7.patient_mapping import pid_to_patient
from medhub.hl7.patient_upsert import upsert_patient

#: (resource type, reference search parameter, element holding the patient reference).
PATIENT_REFERENCES: Final = (
    ("Encounter", "subject", "subject"),
    ("Observation", "subject", "subject"),
    ("AllergyIntolerance", "patient", "patient"),
    ("Condition", "subject", "subject"),
    ("MedicationRequest", "subject", "subject"),
    ("ServiceRequest", "subject", "subject"),
    ("Flag", "subject", "subject"),
    ("DiagnosticReport", "subject", "subject"),
    ("DetectedIssue", "patient", "patient"),
    ("Device", "patient", "patient"),
)


def _missing(text: str, location: Hl7Location, code: int) -> MissingDataError:
    return MissingDataError(text, [Issue(text, location=location, hl7_error_code=code)])


def merge_pairs(message: Message) -> list[tuple[Message, Segment]]:
    """Each MRG with the PID before it, as (a message holding just that PID, the MRG).

    Raises :class:`MissingDataError` when the message has no MRG (table 0357
    code 100), an MRG has no PID before it, or MRG-1 is empty (code 101).
    """
    pairs: list[tuple[Message, Segment]] = []
    pid: Segment | None = None
    sequence = 0
    for segment in message.segments:
        if segment.name == "PID":
            pid = segment
        elif segment.name == "MRG":
            sequence += 1
            if pid is None:
                raise _missing("MRG comes before any PID", Hl7Location("MRG", sequence), 100)
            if not cx_identifiers(segment, 1):
                text = "MRG-1 (prior patient identifier list) is empty"
                raise _missing(text, Hl7Location("MRG", sequence, 1), 101)
            pairs.append((Message(message.delimiters, [message.msh, pid]), segment))
    if not pairs:
        text = "an A40 merge needs an MRG segment naming the prior patient"
        raise _missing(text, Hl7Location("MRG"), 100)
    return pairs


def _reference(patient_id: str) -> dict[str, Any]:
    return {"reference": f"Patient/{patient_id}"}


def _body(stored: StoredResource) -> dict[str, Any]:
    return {k: v for k, v in stored.resource.items() if k != "meta"}


def move_references(resources: Resources, prior_id: str, survivor_id: str) -> list[StoredResource]:
    """Point every resource that references Patient/prior at Patient/survivor instead."""
    moved: list[StoredResource] = []
    target = (ReferenceValue("Patient", prior_id, None),)
    for resource_type, param, element in PATIENT_REFERENCES:
        criteria = [Criterion(param, "reference", target)]
        query = SearchQuery(resource_type, criteria, count=MAX_COUNT, with_total=False)
        seen: set[str] = set()
        while True:
            found = [s for s in resources.search(query).resources if s.id not in seen]
            if not found:
                break
            for stored in found:
                seen.add(stored.id)
                body = _body(stored)
                if not isinstance(body.get(element), dict):
                    continue
                body[element] = {**body[element], **_reference(survivor_id)}
                body[element].pop("display", None)
                moved.append(resources.update(resource_type, stored.id, body).stored)
    return moved


def _key(identifier: dict[str, Any]) -> tuple[str, str]:
    return str(identifier.get("system", "")), str(identifier.get("value", ""))


def _retire(resources: Resources, prior: StoredResource, survivor_id: str) -> StoredResource:
    body = _body(prior)
    body["active"] = False
    body.pop("identifier", None)
    links = [link for link in body.get("link", []) if link.get("type") != "replaced-by"]
    body["link"] = [*links, {"other": _reference(survivor_id), "type": "replaced-by"}]
    return resources.update("Patient", prior.id, body).stored


def _absorb(
    resources: Resources,
    survivor: StoredResource,
    identifiers: list[dict[str, Any]],
    prior_ids: list[str],
) -> StoredResource:
    body = _body(survivor)
    known = {_key(i) for i in body.get("identifier", [])}
    added = []
    for identifier in identifiers:
        if _key(identifier) not in known:
            known.add(_key(identifier))
            added.append({**identifier, "use": "old"})
    links = list(body.get("link", []))
    linked = {(link.get("other") or {}).get("reference") for link in links}
    for prior_id in prior_ids:
        if _reference(prior_id)["reference"] not in linked:
            links.append({"other": _reference(prior_id), "type": "replaces"})
    if not added and links == body.get("link", []):
        return survivor
    if added:
        body["identifier"] = [*body.get("identifier", []), *added]
    if links:
        body["link"] = links
    return resources.update("Patient", survivor.id, body).stored


def merge_patient(resources: Resources, pid_message: Message, mrg: Segment) -> list[StoredResource]:
    """Apply one PID/MRG pair; returns every resource written."""
    survivor = upsert_patient(resources, pid_to_patient(pid_message))
    prior_identifiers = cx_identifiers(mrg, 1)
    priors = [
        p
        for p in find_by_identifiers(resources, "Patient", prior_identifiers)
        if p.id != survivor.id
    ]
    written: list[StoredResource] = []
    carried = list(prior_identifiers)
    for prior in priors:
        written.extend(move_references(resources, prior.id, survivor.id))
        carried.extend(prior.resource.get("identifier", []))
        written.append(_retire(resources, prior, survivor.id))
    survivor = _absorb(resources, survivor, carried, [p.id for p in priors])
    return [survivor, *written]


def apply_merge(message: Message, context: ApplyContext) -> list[StoredResource]:
    """The A40 applier: every PID/MRG pair of the message, in order."""
    written: list[StoredResource] = []
    for pid_message, mrg in merge_pairs(message):
        written.extend(merge_patient(context.resources, pid_message, mrg))
    return written
