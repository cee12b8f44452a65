"""What each dashboard shows, gathered from the stores for one principal (no HTML here).

Each ``*_view`` returns the values its template renders. Every patient in a
view has passed :meth:`~medhub.api.patient_access.PatientAccess.visible` (when
the context has care-unit access control), and every page names the patients
it showed with :func:`medhub.api.audit.note`, so the request's AuditEvent says
whose data was seen (DESIGN.md: every read of patient data is recorded).
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any, Final

from fastapi import Request

from medhub.api.audit import note
from medhub.api.deps import ApiContext
from medhub.api.live import iso
from medhub.api.patient_access import CURRENT_ENCOUNTER
from medhub.api.permissions import Principal
from medhub.api.ui_census import PatientSummary, bed_of, census, latest_vitals, summary
from medhub.cds.alert_store import alert_payload
from medhub.fhir.search import parse_search
from medhub.fhir.store import Resources, StoredResource

#: MedicationRequest statuses a clinician still has to think about.
LIVE_ORDERS: Final = "active,on-hold,draft"
_SEVERITY_RANK: Final = {"high": 0, "medium": 1, "moderate": 1, "low": 2}


def now_utc() -> datetime:
    return datetime.now(UTC)


def alert_text(alert: dict[str, Any]) -> str:
    """One line for a clinician (the same words as the page's JavaScript writes)."""
    if alert.get("text"):
        return str(alert["text"])
    vital = str(alert.get("vital", "")).replace("-", " ")
    condition = str(alert.get("condition", "")).replace("_", " ")
    if alert.get("value") is None:
        return f"{vital}: {condition}"
    limit = f" (limit {alert['limit']:g})" if isinstance(alert.get("limit"), float) else ""
    return f"{vital} {condition}: {alert['value']:g} {alert.get('unit', '')}{limit}"


def search_all(resources: Resources, resource_type: str, params: list[tuple[str, str]]) -> Any:
    query = parse_search(resource_type, params)
    query.with_total = False
    return resources.search(query)


def _visible(context: ApiContext, principal: Principal, patient_id: str | None) -> bool:
    if patient_id is None:
        return not (principal.unit_bound or principal.patient)
    return context.access is None or context.access.visible(principal, patient_id)


def open_alerts(
    context: ApiContext, principal: Principal, patients: dict[str, PatientSummary]
) -> list[dict[str, Any]]:
    """Open alerts the principal may see, newest first, each with its patient's name and bed."""
    if context.alerts is None or not principal.can("alerts", "read"):
        return []
    shown = []
    for alert in reversed(context.alerts.open_alerts()):
        if alert.patient_id not in patients and not _visible(context, principal, alert.patient_id):
            continue
        payload = alert_payload(alert)
        patient = patients.get(alert.patient_id or "")
        payload["summary"] = alert_text(payload)
        payload["patient_name"] = (
            patient.name if patient else (alert.patient_id or "unbound device")
        )
        payload["bed"] = patient.bed if patient else ""
        shown.append(payload)
        if patient is not None:
            patient.alerts.append(payload)
    return shown


def _with_vitals(context: ApiContext, patients: Iterable[PatientSummary]) -> None:
    if context.samples is None:
        return
    now = now_utc()
    for patient in patients:
        patient.vitals = latest_vitals(context.samples, patient.id, now=now)


def ward_view(context: ApiContext, principal: Principal, request: Request) -> dict[str, Any]:
    """The nurse's census and alerts (the physician's "my patients" is the same list)."""
    patients = census(context, principal, today=now_utc().date())
    by_id = {p.id: p for p in patients}
    _with_vitals(context, patients)
    alerts = open_alerts(context, principal, by_id)
    note(request, [f"Patient/{p.id}" for p in patients], patients=list(by_id))
    return {"patients": patients, "alerts": alerts}


# -- medication ------------------------------------------------------------------------


def medication_label(request: dict[str, Any]) -> str:
    concept = request.get("medicationCodeableConcept") or {}
    codings = concept.get("coding") or [{}]
    reference = request.get("medicationReference") or {}
    return str(
        concept.get("text") or codings[0].get("display") or reference.get("display") or "(unnamed)"
    )


def dosage_text(request: dict[str, Any]) -> str:
    dosages = request.get("dosageInstruction") or []
    if not dosages:
        return ""
    dosage = dosages[0]
    if dosage.get("text"):
        return str(dosage["text"])
    parts = []
    for rate in dosage.get("doseAndRate") or []:
        quantity = rate.get("doseQuantity") or {}
        if "value" in quantity:
            parts.append(f"{quantity['value']:g} {quantity.get('unit', '')}".strip())
    route = (dosage.get("route") or {}).get("text") or ""
    repeat = (dosage.get("timing") or {}).get("repeat") or {}
    if repeat.get("frequency"):
        parts.append(
            f"{route} {repeat['frequency']}x per {repeat.get('period', 1):g} "
            f"{repeat.get('periodUnit', 'd')}".strip()
        )
    return " ".join(parts)


def issue_view(issue: dict[str, Any]) -> dict[str, Any]:
    codings = (issue.get("code") or {}).get("coding") or [{}]
    return {
        "id": issue.get("id"),
        "severity": issue.get("severity", ""),
        "code": codings[0].get("code", ""),
        "kind": codings[0].get("display") or codings[0].get("code", ""),
        "detail": issue.get("detail", ""),
        "overridden": bool(issue.get("mitigation")),
        "status": issue.get("status", ""),
    }


def order_view(stored: StoredResource, issues: dict[str, dict[str, Any]]) -> dict[str, Any]:
    request = stored.resource
    found = []
    for reference in request.get("detectedIssue") or []:
        issue = issues.get(str(reference.get("reference", "")).removeprefix("DetectedIssue/"))
        if issue is not None:
            found.append(issue_view(issue))
    found.sort(key=lambda i: _SEVERITY_RANK.get(i["severity"], 3))
    subject = str((request.get("subject") or {}).get("reference", ""))
    return {
        "id": stored.id,
        "patient": subject.removeprefix("Patient/"),
        "medication": medication_label(request),
        "dosage": dosage_text(request),
        "status": request.get("status", ""),
        "intent": request.get("intent", ""),
        "authored": request.get("authoredOn") or iso(stored.last_updated),
        "requester": (request.get("requester") or {}).get("display")
        or (request.get("requester") or {}).get("reference", ""),
        "issues": found,
        "worst": found[0]["severity"] if found else "",
    }


def issues_of(resources: Resources, orders: list[StoredResource]) -> dict[str, dict[str, Any]]:
    ids = sorted(
        {
            str(ref.get("reference", "")).removeprefix("DetectedIssue/")
            for order in orders
            for ref in order.resource.get("detectedIssue") or []
            if isinstance(ref, dict)
        }
        - {""}
    )
    found: dict[str, dict[str, Any]] = {}
    for start in range(0, len(ids), 100):
        chunk = ",".join(ids[start : start + 100])
        for stored in search_all(
            resources, "DetectedIssue", [("_id", chunk), ("_count", "100")]
        ).resources:
            found[stored.id] = stored.resource
    return found


def patient_orders(resources: Resources, patient_id: str) -> list[dict[str, Any]]:
    orders = search_all(
        resources,
        "MedicationRequest",
        [
            ("subject", f"Patient/{patient_id}"),
            ("status", LIVE_ORDERS),
            ("_sort", "-_lastUpdated"),
            ("_count", "100"),
        ],
    ).resources
    issues = issues_of(resources, orders)
    return [order_view(o, issues) for o in orders]


def patient_view(
    context: ApiContext, principal: Principal, request: Request, patient_id: str
) -> dict[str, Any]:
    """The patient page: who, where, live tiles, alerts, orders with findings, allergies."""
    note(request, [f"Patient/{patient_id}"], patients=[patient_id])
    if context.access is not None:
        context.access.check_patient(principal, patient_id)
    with context.store.unit_of_work() as resources:
        patient = resources.read("Patient", patient_id).resource
        encounters = search_all(
            resources,
            "Encounter",
            [("subject", f"Patient/{patient_id}"), ("status", CURRENT_ENCOUNTER)],
        ).resources
        bed = bed_of(encounters[0].resource) if encounters else ""
        orders = []
        if principal.can("MedicationRequest", "read"):
            orders = patient_orders(resources, patient_id)
        allergies = []
        if principal.can("AllergyIntolerance", "read"):
            params = [("patient", f"Patient/{patient_id}")]
            allergies = [
                s.resource for s in search_all(resources, "AllergyIntolerance", params).resources
            ]
    entry = summary(patient, bed=bed, today=now_utc().date())
    _with_vitals(context, [entry])
    alerts = open_alerts(context, principal, {entry.id: entry})
    alerts = [a for a in alerts if a["patient"] == patient_id]
    return {
        "patient": entry,
        "alerts": alerts,
        "orders": orders,
        "allergies": [_allergy(a) for a in allergies],
        "can_prescribe": principal.role == "physician"
        and principal.can("MedicationRequest", "write"),
        "can_chart": principal.can("devices", "read"),
        "practitioner": principal.practitioner or "",
    }


def _allergy(resource: dict[str, Any]) -> dict[str, str]:
    code = resource.get("code") or {}
    codings = code.get("coding") or [{}]
    return {
        "substance": str(
            code.get("text") or codings[0].get("display") or codings[0].get("code", "")
        ),
        "criticality": str(resource.get("criticality", "")),
    }


def medication_warnings(
    context: ApiContext, principal: Principal, patients: dict[str, PatientSummary]
) -> list[dict[str, Any]]:
    """Live orders with findings of the physician's patients, worst first."""
    if not patients or not principal.can("MedicationRequest", "read"):
        return []
    rows: list[dict[str, Any]] = []
    with context.store.unit_of_work() as resources:
        ids = sorted(patients)
        for start in range(0, len(ids), 100):
            orders = search_all(
                resources,
                "MedicationRequest",
                [
                    ("subject", ",".join(f"Patient/{i}" for i in ids[start : start + 100])),
                    ("status", LIVE_ORDERS),
                    ("_count", "500"),
                ],
            ).resources
            issues = issues_of(resources, orders)
            rows.extend(order_view(o, issues) for o in orders)
    warned = [r for r in rows if r["issues"]]
    for row in warned:
        row["patient_name"] = patients[row["patient"]].name if row["patient"] in patients else ""
    warned.sort(key=lambda r: (_SEVERITY_RANK.get(r["worst"], 3), r["patient_name"]))
    return warned
