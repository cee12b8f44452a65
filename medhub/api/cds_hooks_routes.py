"""CDS Hooks endpoints: ``GET /cds-services`` and ``POST /cds-services/{id}``.

The shapes are CDS Hooks' (cds-hooks.hl7.org); the checks are the ones
``POST /fhir/MedicationRequest`` runs (:mod:`medhub.cds.cds_hooks`). A hook
call only reads: it stores nothing and sends nothing.
"""

from __future__ import annotations

from typing import Any, Final

from fastapi import APIRouter, Request
from starlette.concurrency import run_in_threadpool

from medhub.api.deps import ContextDep
from medhub.api.fhir_format import parse_json
from medhub.api.security import check_patient
from medhub.cds.cds_hooks import HookRequest, card, discovery, parse_request, prefetched_resources
from medhub.cds.medication_checks import check_order
from medhub.cds.medication_fhir import (
    ACTIVE_STATUSES,
    active_medication,
    allergy_record,
    proposed_order,
)
from medhub.cds.medication_knowledge import KnowledgeBase
from medhub.cds.medication_model import ActiveMedication, AllergyRecord
from medhub.cds.prescribing import patient_context
from medhub.fhir.store import Resources

router = APIRouter(prefix="/cds-services", tags=["cds-hooks"])

#: The hook request as the OpenAPI description shows it (the body is checked by hand,
#: so an error names the CDS Hooks element, not a pydantic location).
_HOOK_REQUEST: Final[dict[str, Any]] = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {
                "schema": {
                    "type": "object",
                    "required": ["hook", "hookInstance", "context"],
                    "properties": {
                        "hook": {"type": "string", "enum": ["order-select", "order-sign"]},
                        "hookInstance": {"type": "string"},
                        "fhirServer": {"type": "string"},
                        "context": {
                            "type": "object",
                            "description": "patientId, userId, draftOrders (a Bundle) and, "
                            "for order-select, selections",
                        },
                        "prefetch": {"type": "object"},
                    },
                }
            }
        },
    }
}


@router.get("")
def services() -> dict[str, Any]:
    """The discovery document (CDS Hooks 1.0 §Discovery)."""
    return discovery()


def _record(
    resources: Resources, hook: HookRequest
) -> tuple[list[ActiveMedication], list[AllergyRecord]]:
    """The patient's medications and allergies: prefetched by the EHR, else from the store."""
    medications = prefetched_resources(hook.prefetch, "medications")
    allergies = prefetched_resources(hook.prefetch, "allergies")
    stored_active: list[ActiveMedication] = []
    stored_allergies: list[AllergyRecord] = []
    if medications is None or allergies is None:
        stored_active, stored_allergies = patient_context(resources, f"Patient/{hook.patient_id}")
    active = stored_active
    if medications is not None:
        active = [
            active_medication(str(m.get("id", index)), m)
            for index, m in enumerate(medications)
            if m.get("status") in ACTIVE_STATUSES
        ]
    records = stored_allergies
    if allergies is not None:
        records = [
            record
            for index, a in enumerate(allergies)
            if (record := allergy_record(str(a.get("id", index)), a)) is not None
        ]
    return active, records


def _cards(knowledge: KnowledgeBase, resources: Resources, hook: HookRequest) -> list[Any]:
    active, allergies = _record(resources, hook)
    cards: list[Any] = []
    drafts = hook.to_check + hook.other_drafts
    for order in hook.to_check:
        # The other drafts count as co-prescribed: two new orders can interact too.
        others = [
            active_medication(str(d.get("id", index)), d)
            for index, d in enumerate(drafts)
            if d is not order
        ]
        checked = proposed_order(order)
        findings = check_order(knowledge, checked, active=[*active, *others], allergies=allergies)
        cards.extend(
            card(f, order_label=checked.drug.label(), knowledge_version=knowledge.version)
            for f in findings
        )
    return cards


@router.post("/{service_id}", openapi_extra=_HOOK_REQUEST)
async def call_service(service_id: str, request: Request, context: ContextDep) -> dict[str, Any]:
    """A hook call: cards for each finding (an empty list when all is well)."""
    hook = parse_request(service_id, parse_json(await request.body()))
    knowledge = context.medication_knowledge()

    def run() -> list[Any]:
        check_patient(request, context, hook.patient_id)
        with context.store.unit_of_work() as resources:
            return _cards(knowledge, resources, hook)

    return {"cards": await run_in_threadpool(run)}
