"""Appliers for observation results (ORU^R01: lab and IHE PCD-01 device data).

Stores what :func:`medhub.hl7.result_mapping.map_results` mapped: the Patient
(find-or-create by PID-3), each Device (find-or-create by its OBX-18
identifier), each Observation and each lab DiagnosticReport.

A result is *replaced*, not merged, when it is sent again: a corrected result
(OBX-11 ``C``) is the whole new result, so an interpretation flag the lab
removed must disappear too. The only exception is a status-only update
(OBX-11 ``U``/``D``/``W`` with no value), which keeps the stored value. An
identical resend writes no new version. A result whose identifier names an
Observation of another patient is refused (AE, table 0357 code 205): a reused
filler number must never move a result to the wrong chart.

A live result flagged critical (OBX-8 HH, LL, AA) that was created or changed
raises a ``lab.result.critical`` :class:`~medhub.db.outbox.DomainEvent`,
committed in the same transaction as the Observation.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from medhub.db.outbox import DomainEvent
from medhub.errors import ConflictError, Hl7Location, Issue
from medhub.fhir.search import MAX_COUNT, Criterion, SearchQuery, TokenValue
from medhub.fhir.store import Resources, StoredResource
from medhub.hl7.apply_context import Applier, ApplyContext
from medhub.hl7.er7 import Message
from medhub.hl7.hl7_datatypes import field_path
from medhub.hl7.identity import find_by_identifiers, merge_resource, upsert_by_identifiers
from medhub.hl7.observation_mapping import MappedObservation
from medhub.hl7.patient_upsert import upsert_patient
from medhub.hl7.result_mapping import ResultGroup, ResultMessage, identifier_key, map_results

CRITICAL_TOPIC = "lab.result.critical"


def _without_meta(resource: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in resource.items() if k not in ("id", "meta")}


def stored_by_identifier(
    resources: Resources, resource_type: str, identifiers: list[dict[str, Any]]
) -> dict[tuple[str, str], list[StoredResource]]:
    """The stored resources for many identifiers in one search (one query per OBR, not per OBX)."""
    found: dict[tuple[str, str], list[StoredResource]] = {
        identifier_key(i): [] for i in identifiers
    }
    if not identifiers:
        return found
    values = tuple(TokenValue(*identifier_key(i)) for i in identifiers)
    criteria = [Criterion("identifier", "token", values)]
    query = SearchQuery(resource_type, criteria, count=min(2 * len(values) + 1, MAX_COUNT))
    for stored in resources.search(query).resources:
        for identifier in stored.resource.get("identifier", []):
            key = identifier_key(identifier)
            if key in found and stored not in found[key]:
                found[key].append(stored)
    return found


def store_replacing(
    resources: Resources,
    resource: dict[str, Any],
    *,
    location: Hl7Location,
    keep_stored_value: bool = False,
    matches: list[StoredResource] | None = None,
) -> tuple[StoredResource, bool]:
    """Create, or replace the resource its first identifier names; returns (stored, changed).

    ``matches`` are the stored resources carrying that identifier when the
    caller already looked them up (:func:`stored_by_identifier`).
    """
    resource_type = resource["resourceType"]
    if matches is None:
        matches = find_by_identifiers(resources, resource_type, resource["identifier"][:1])
    if not matches:
        return resources.create(resource), True
    if len(matches) > 1:
        text = f"{field_path(location)} names {len(matches)} stored {resource_type} resources"
        raise ConflictError(text, [Issue(text, code="multiple-matches", location=location)])
    current = matches[0]
    existing = _without_meta(current.resource)
    if existing.get("subject") != resource.get("subject"):
        text = (
            f"{field_path(location)} identifies {resource_type}/{current.id}, which belongs to "
            f"{existing.get('subject', {}).get('reference', 'no patient')}, not to this "
            "message's patient; the order number must not be reused for another patient"
        )
        raise ConflictError(text, [Issue(text, code="conflict", location=location)])
    if keep_stored_value:
        new = merge_resource(existing, resource)
    else:
        new = merge_resource({"identifier": existing.get("identifier", [])}, resource)
    if new == existing:
        return current, False
    return resources.update(resource_type, current.id, new).stored, True


def _devices(
    resources: Resources, mapped: ResultMessage, subject: dict[str, str], group: ResultGroup
) -> dict[tuple[str, str], StoredResource]:
    stored: dict[tuple[str, str], StoredResource] = {}
    for observation in group.observations:
        if observation.equipment is None:
            continue
        key = identifier_key(observation.equipment)
        if key in stored:
            continue
        device = mapped.device(observation.equipment, subject)
        location = Hl7Location("OBX", observation.occurrence, 18)
        stored[key] = upsert_by_identifiers(resources, device, location=location)
    return stored


def _value_and_unit(resource: dict[str, Any]) -> tuple[Any, str | None]:
    if "valueQuantity" in resource:
        quantity = resource["valueQuantity"]
        return quantity.get("value"), quantity.get("code") or quantity.get("unit")
    if "valueCodeableConcept" in resource:
        concept = resource["valueCodeableConcept"]
        coding = (concept.get("coding") or [{}])[0]
        return concept.get("text") or coding.get("display") or coding.get("code"), None
    for key in ("valueString", "valueDateTime", "valueTime"):
        if key in resource:
            return resource[key], None
    return None, None


def critical_event(observation: StoredResource, patient: StoredResource, flag: str) -> DomainEvent:
    """The ``lab.result.critical`` event for a stored Observation."""
    resource = observation.resource
    value, unit = _value_and_unit(resource)
    coding = resource["code"]["coding"][0]
    payload = {
        "observation_id": observation.id,
        "patient_id": patient.id,
        "code": {k: coding[k] for k in ("system", "code", "display") if k in coding},
        "value": value,
        "unit": unit,
        "flag": flag,
        "status": resource["status"],
        "effective": resource.get("effectiveDateTime"),
    }
    return DomainEvent(topic=CRITICAL_TOPIC, routing_key=CRITICAL_TOPIC, payload=payload)


def _observation(
    context: ApplyContext,
    mapped: MappedObservation,
    subject: dict[str, str],
    device: StoredResource | None,
    location: Hl7Location,
    matches: list[StoredResource],
) -> tuple[StoredResource, bool]:
    resource = dict(mapped.resource)
    resource["subject"] = subject
    if device is not None:
        resource["device"] = {"reference": f"Device/{device.id}"}
    return store_replacing(
        context.resources,
        resource,
        location=location,
        keep_stored_value=mapped.status_only,
        matches=matches,
    )


def apply_results(message: Message, context: ApplyContext) -> list[StoredResource]:
    """Store the Patient, Devices, Observations and DiagnosticReports of an ORU^R01."""
    mapped = map_results(message)
    written: list[StoredResource] = []
    for patient_results in mapped.patients:
        patient = upsert_patient(context.resources, patient_results.patient)
        written.append(patient)
        subject = {"reference": f"Patient/{patient.id}"}
        for group in patient_results.groups:
            devices = _devices(context.resources, mapped, subject, group)
            written.extend(devices.values())
            results: list[dict[str, str]] = []
            keys = [o.resource["identifier"][0] for o in group.observations]
            known = stored_by_identifier(context.resources, "Observation", keys)
            for observation, key in zip(group.observations, keys, strict=True):
                device = (
                    devices[identifier_key(observation.equipment)]
                    if observation.equipment is not None
                    else None
                )
                stored, changed = _observation(
                    context,
                    observation,
                    subject,
                    device,
                    group.key_location,
                    known[identifier_key(key)],
                )
                written.append(stored)
                results.append({"reference": f"Observation/{stored.id}"})
                flag = observation.critical_flag
                if changed and flag is not None:
                    context.events.append(critical_event(stored, patient, flag))
            if group.report is not None:
                report = {**group.report, "subject": subject}
                if results:
                    report["result"] = results
                location = group.key_location
                written.append(store_replacing(context.resources, report, location=location)[0])
    return written


APPLIERS: Mapping[str, Applier] = {"ORU^R01": apply_results}
