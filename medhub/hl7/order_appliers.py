"""Appliers for orders (ORM^O01, OML^O21) to ServiceRequest / MedicationRequest.

Stores what :func:`medhub.hl7.order_mapping.map_orders` mapped. An order is
found by its placer or filler number (ORC-2/3, OBR-2/3) and *merged*: an
order message often repeats only what changed (a cancel carries ORC-1 ``CA``
and the numbers), and HL7 v2.5.1 §2.5.3 says an empty field means "no
information", so stored elements the message does not carry are kept. A
resent order therefore updates, never duplicates, and writes no new version
when nothing changed.

A cancel or discontinue request (ORC-1 ``CA``/``DC``) for an order medhub does
not know is refused with AE and table 0357 code 204 (unknown key identifier),
as is an order number that already names another patient's order (205).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from medhub.errors import ConflictError, Issue, NotFoundError
from medhub.fhir.store import Resources, StoredResource
from medhub.hl7.apply_context import Applier, ApplyContext
from medhub.hl7.er7 import Message
from medhub.hl7.hl7_datatypes import field_path
from medhub.hl7.identity import find_by_identifiers, merge_resource, upsert_by_identifiers
from medhub.hl7.order_mapping import MappedOrder, map_orders, order_status
from medhub.hl7.patient_upsert import upsert_patient


def _requester(resources: Resources, order: MappedOrder) -> dict[str, str] | None:
    """A reference to the ordering practitioner (found or created by XCN id), or a display."""
    if order.requester is not None:
        stored = upsert_by_identifiers(
            resources, order.requester, location=order.requester_location
        )
        reference = {"reference": f"Practitioner/{stored.id}"}
        if order.requester_display:
            reference["display"] = order.requester_display
        return reference
    if order.requester_display:
        return {"display": order.requester_display}
    return None


def _find(resources: Resources, order: MappedOrder) -> list[StoredResource]:
    """Stored orders with one of the order's numbers (either type when no detail says which)."""
    identifiers = order.resource["identifier"]
    kinds = [order.kind] if order.detail is not None else ["ServiceRequest", "MedicationRequest"]
    for kind in kinds:
        matches = find_by_identifiers(resources, kind, identifiers)
        if matches:
            return matches
    return []


def _status_change(order: MappedOrder, found: StoredResource) -> dict[str, Any]:
    """A cancel/hold without an order detail, applied to a stored order of another type."""
    change: dict[str, Any] = {
        "resourceType": found.resource_type,
        "identifier": order.resource["identifier"],
    }
    status = order_status(order.control, order.orc.value(5).strip().upper(), "MedicationRequest")
    if status is not None:
        change["status"] = status
    return change


def store_order(
    resources: Resources, order: MappedOrder, subject: dict[str, str]
) -> StoredResource:
    """Create the order, or merge it into the stored one its numbers name."""
    location = order.key_location
    matches = _find(resources, order)
    if not matches:
        if order.must_exist:
            text = (
                f"ORC^{order.occurrence} asks to {order.control} an order medhub does not have "
                f"({', '.join(i['value'] for i in order.resource['identifier'])})"
            )
            raise NotFoundError(
                text, [Issue(text, code="not-found", location=location, hl7_error_code=204)]
            )
        return resources.create({"status": "unknown", **order.resource, "subject": subject})
    if len(matches) > 1:
        ids = ", ".join(f"{m.resource_type}/{m.id}" for m in matches)
        text = f"{field_path(location)} order numbers name more than one stored order ({ids})"
        raise ConflictError(
            text, [Issue(text, code="multiple-matches", location=location, hl7_error_code=205)]
        )
    current = matches[0]
    existing = {k: v for k, v in current.resource.items() if k not in ("id", "meta")}
    if existing.get("subject") != subject:
        text = (
            f"{field_path(location)} names {current.resource_type}/{current.id} of "
            f"{existing.get('subject', {}).get('reference')}, not this message's patient"
        )
        raise ConflictError(
            text, [Issue(text, code="conflict", location=location, hl7_error_code=205)]
        )
    incoming = order.resource
    if current.resource_type != order.kind:
        incoming = _status_change(order, current)
    merged = merge_resource(existing, {**incoming, "subject": subject})
    if merged == existing:
        return current
    return resources.update(current.resource_type, current.id, merged).stored


def apply_orders(message: Message, context: ApplyContext) -> list[StoredResource]:
    """Store the Patient, requesters and orders of an ORM^O01 or OML^O21."""
    mapped = map_orders(message)
    patient = upsert_patient(context.resources, mapped.patient)
    subject = {"reference": f"Patient/{patient.id}"}
    written = [patient]
    for order in mapped.orders:
        requester = _requester(context.resources, order)
        if requester is not None:
            order.resource["requester"] = requester
        written.append(store_order(context.resources, order, subject))
    return written


APPLIERS: Mapping[str, Applier] = {"ORM^O01": apply_orders, "OML^O21": apply_orders}
