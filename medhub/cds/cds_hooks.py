"""CDS Hooks for the medication-safety checks (pure: requests in, cards out).

CDS Hooks (cds-hooks.hl7.org, 1.0 and 2.0) lets an EHR ask a service for
advice at set points of its workflow. medhub answers two hooks with the same
checks as ``POST /fhir/MedicationRequest``:

* ``order-select``: the clinician picked orders (``context.selections``) from
  the draft list (``context.draftOrders``, a Bundle): each selected
  MedicationRequest is checked against the patient's record and the other
  drafts;
* ``order-sign``: the clinician is about to sign ``context.draftOrders``:
  every draft is checked.

The patient's record comes from the request's ``prefetch`` (the templates in
:func:`discovery`) when the EHR sent it, otherwise from medhub's own store.
Each finding is a card: indicator ``critical`` for a blocking finding,
``warning`` for moderate and ``info`` for low, with the knowledge base's
source and, for blocking findings, the override reasons the EHR may offer
(CDS Hooks 2.0 ``overrideReasons``).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any, Final, Literal

from medhub.cds.medication_model import Finding
from medhub.errors import InputError, Issue, NotFoundError

HookName = Literal["order-select", "order-sign"]
OVERRIDE_REASON_SYSTEM: Final = "https://medhub.dev/fhir/CodeSystem/override-reason"
#: Reasons a prescriber may give for going ahead despite a critical card.
OVERRIDE_REASONS: Final = (
    ("benefit-outweighs-risk", "Benefit outweighs the risk; will monitor"),
    ("tolerated-before", "Patient has tolerated this combination or drug before"),
    ("allergy-not-relevant", "Recorded allergy is not relevant (e.g. intolerance, not allergy)"),
    ("dose-intended", "Dose is intended (e.g. loading dose, specialist protocol)"),
)
_PREFETCH: Final = {
    "patient": "Patient/{{context.patientId}}",
    "medications": "MedicationRequest?subject={{context.patientId}}&status=active,on-hold",
    "allergies": "AllergyIntolerance?patient={{context.patientId}}",
}
SERVICES: Final[dict[str, HookName]] = {
    "medhub-medication-safety-select": "order-select",
    "medhub-medication-safety-sign": "order-sign",
}
_INDICATOR: Final = {"high": "critical", "moderate": "warning", "low": "info"}


def discovery() -> dict[str, Any]:
    """``GET /cds-services``: the services and the prefetch each one would like."""
    return {
        "services": [
            {
                "hook": hook,
                "id": service_id,
                "title": "medhub medication safety",
                "description": (
                    "Drug-drug interactions, allergies (with class cross-reactivity), "
                    "duplicate therapy and dose ranges for the "
                    + ("selected" if hook == "order-select" else "to-be-signed")
                    + " medication orders."
                ),
                "prefetch": dict(_PREFETCH),
            }
            for service_id, hook in SERVICES.items()
        ]
    }


@dataclass(frozen=True, slots=True)
class HookRequest:
    """A parsed hook call: whose patient, which draft orders to check, and the prefetch."""

    hook: HookName
    hook_instance: str
    patient_id: str
    user_id: str | None
    to_check: list[dict[str, Any]]
    other_drafts: list[dict[str, Any]]
    prefetch: dict[str, Any] = field(default_factory=dict)


def _bad(path: str, message: str) -> InputError:
    text = f"{path}: {message}"
    return InputError(text, [Issue(text, code="invalid", expression=(path,))])


def _draft_requests(context: dict[str, Any]) -> list[dict[str, Any]]:
    bundle = context.get("draftOrders")
    if not isinstance(bundle, dict) or bundle.get("resourceType") != "Bundle":
        raise _bad("context.draftOrders", "must be a Bundle of draft orders")
    drafts: list[dict[str, Any]] = []
    for index, entry in enumerate(bundle.get("entry") or []):
        resource = entry.get("resource") if isinstance(entry, dict) else None
        if not isinstance(resource, dict):
            raise _bad(f"context.draftOrders.entry[{index}]", "has no resource")
        if resource.get("resourceType") == "MedicationRequest":
            drafts.append(resource)
    return drafts


def parse_request(service_id: str, body: Any) -> HookRequest:
    """Check a hook call's shape (CDS Hooks 1.0 §HTTP Request) and pick the orders to check."""
    hook = SERVICES.get(service_id)
    if hook is None:
        raise NotFoundError(f"no CDS service {service_id!r}; see GET /cds-services")
    if not isinstance(body, dict):
        raise _bad("request", "must be a JSON object")
    if body.get("hook") != hook:
        raise _bad("hook", f"service {service_id} answers {hook!r}, got {body.get('hook')!r}")
    instance = body.get("hookInstance")
    if not isinstance(instance, str) or not instance:
        raise _bad("hookInstance", "is required")
    context = body.get("context")
    if not isinstance(context, dict):
        raise _bad("context", "must be an object")
    patient_id = context.get("patientId")
    if not isinstance(patient_id, str) or not patient_id:
        raise _bad("context.patientId", "is required")
    drafts = _draft_requests(context)
    to_check, others = drafts, []
    if hook == "order-select":
        selections = context.get("selections")
        if not isinstance(selections, list) or not all(isinstance(s, str) for s in selections):
            raise _bad("context.selections", "must be a list of references")
        chosen = {s.removeprefix("MedicationRequest/") for s in selections}
        to_check = [d for d in drafts if d.get("id") in chosen]
        others = [d for d in drafts if d.get("id") not in chosen]
    prefetch = body.get("prefetch")
    user = context.get("userId")
    return HookRequest(
        hook=hook,
        hook_instance=instance,
        patient_id=patient_id.removeprefix("Patient/"),
        user_id=user if isinstance(user, str) else None,
        to_check=to_check,
        other_drafts=others,
        prefetch=prefetch if isinstance(prefetch, dict) else {},
    )


def prefetched_resources(prefetch: dict[str, Any], key: str) -> list[dict[str, Any]] | None:
    """The resources of a prefetched search Bundle (None: not prefetched, fetch them)."""
    bundle = prefetch.get(key)
    if bundle is None:
        return None
    if not isinstance(bundle, dict) or bundle.get("resourceType") != "Bundle":
        raise _bad(f"prefetch.{key}", "must be a Bundle (the result of the prefetch search)")
    return [
        entry["resource"]
        for entry in bundle.get("entry") or []
        if isinstance(entry, dict) and isinstance(entry.get("resource"), dict)
    ]


def card(finding: Finding, *, order_label: str, knowledge_version: str) -> dict[str, Any]:
    """One CDS Hooks card for one finding."""
    summary = finding.summary if len(finding.summary) <= 140 else finding.summary[:139] + "…"
    detail = finding.detail
    if finding.management and finding.management not in detail:
        detail += f"\n\n**Management:** {finding.management}"
    detail += f"\n\nOrder checked: {order_label}."
    source: dict[str, Any] = {
        "label": finding.source or f"medhub medication knowledge base {knowledge_version}"
    }
    if finding.source_url:
        source["url"] = finding.source_url
    result: dict[str, Any] = {
        "uuid": str(uuid.uuid4()),
        "summary": summary,
        "detail": detail,
        "indicator": _INDICATOR[finding.severity],
        "source": source,
    }
    if finding.blocking:
        result["overrideReasons"] = [
            {"code": code, "system": OVERRIDE_REASON_SYSTEM, "display": display}
            for code, display in OVERRIDE_REASONS
        ]
    return result
