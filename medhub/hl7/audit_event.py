"""The AuditEvent of an applied HL7 v2 message (pure): which system wrote which patient data.

HTTP access is audited per request by the API; an interface engine's writes
come over MLLP, and are audited here, one AuditEvent per applied message, in
the message's own transaction (so it exists exactly when the data does). The
event type is DICOM's "Import" (DCM 110107: data brought in from an external
source), the agent the sending application and facility (MSH-3/MSH-4) at its
network address, the entities the resources the message wrote and the patients
they are about, and the message itself by its control id and type.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any, Final

from medhub.fhir.store import StoredResource, format_instant

_ENTITY_TYPE: Final = "http://terminology.hl7.org/CodeSystem/audit-entity-type"
_PATIENT_FIELDS: Final = ("subject", "patient")


def _patients(stored: Sequence[StoredResource]) -> set[str]:
    found: set[str] = set()
    for item in stored:
        if item.resource_type == "Patient":
            found.add(item.id)
            continue
        resource = item.resource
        for name in _PATIENT_FIELDS:
            value = resource.get(name)
            reference = value.get("reference") if isinstance(value, dict) else None
            if isinstance(reference, str) and reference.startswith("Patient/"):
                found.add(reference.removeprefix("Patient/"))
    return found


def message_audit_event(
    stored: Sequence[StoredResource],
    *,
    sender: str,
    peer: str,
    control_id: str,
    message_type: str,
    received_at: datetime,
) -> dict[str, Any]:
    """The AuditEvent of one applied message (``stored``: what its applier wrote)."""
    patients = _patients(stored)
    entities: list[dict[str, Any]] = [
        {
            "what": {"reference": f"Patient/{patient}"},
            "type": {"system": _ENTITY_TYPE, "code": "1", "display": "Person"},
        }
        for patient in sorted(patients)
    ]
    entities.extend(
        {
            "what": {"reference": f"{item.resource_type}/{item.id}"},
            "type": {"system": _ENTITY_TYPE, "code": "2", "display": "System Object"},
        }
        for item in stored
        if item.resource_type != "Patient"
    )
    entities.append(
        {
            "type": {"system": _ENTITY_TYPE, "code": "2", "display": "System Object"},
            "name": f"{message_type} {control_id}",
            "description": "HL7 v2 message (MSH-9, MSH-10)",
        }
    )
    return {
        "resourceType": "AuditEvent",
        "type": {
            "system": "http://dicom.nema.org/resources/ontology/DCM",
            "code": "110107",
            "display": "Import",
        },
        "action": "C" if any(item.version_id == 1 for item in stored) else "U",
        "recorded": format_instant(received_at),
        "outcome": "0",
        "agent": [
            {
                "requestor": True,
                "who": {"display": sender},
                "altId": f"hl7:{sender}",
                "network": {"address": peer.rsplit(":", 1)[0], "type": "2"},
            }
        ],
        "source": {"observer": {"display": "medhub MLLP listener"}},
        "entity": entities,
    }
