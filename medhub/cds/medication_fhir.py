"""FHIR R4 in and out of the medication-safety checks (pure, no store, no clock).

In: a MedicationRequest becomes a :class:`ProposedOrder` or an
:class:`ActiveMedication`; an AllergyIntolerance becomes an
:class:`AllergyRecord` (or nothing, when it is refuted, entered in error or
no longer active). Out: a :class:`Finding` becomes a DetectedIssue
(FHIR R4 detectedissue.html), an OperationOutcome issue, and an override
becomes a DetectedIssue mitigation and an AuditEvent.

An *override* is how a prescriber goes ahead despite a blocking finding: the
MedicationRequest carries the extension :data:`OVERRIDE_URL` with a ``reason``
(text or a coded reason) and optionally an ``author`` (who decided; else the
request's ``requester``). CDS Hooks' ``overrideReasons`` are offered as codes
for it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Final

from medhub.cds.medication_model import (
    ActiveMedication,
    AllergyRecord,
    DailyDose,
    DrugCode,
    DrugRef,
    Finding,
    ProposedOrder,
)
from medhub.errors import InputError, Issue

OVERRIDE_URL: Final = "https://medhub.dev/fhir/StructureDefinition/medication-safety-override"
ACT_CODE_SYSTEM: Final = "http://terminology.hl7.org/CodeSystem/v3-ActCode"
_ACT_CODE_DISPLAY: Final = {
    "DRG": "Drug Interaction Alert",
    "ALGY": "Allergy Alert",
    "DUPTHPY": "Duplicate Therapy Alert",
    "DOSEH": "High Dose Alert",
    "DOSEL": "Low Dose Alert",
}
#: FHIR's ``Timing.repeat.periodUnit`` (UCUM) in days.
_PERIOD_DAYS: Final = {
    "s": 1 / 86400,
    "min": 1 / 1440,
    "h": 1 / 24,
    "d": 1.0,
    "wk": 7.0,
    "mo": 30.0,
    "a": 365.0,
}
#: Statuses of a MedicationRequest the patient is taking (or about to).
ACTIVE_STATUSES: Final = frozenset({"active", "on-hold"})
#: Intents that are orders (a proposal or plan is advice, not something to dispense).
ORDER_INTENTS: Final = frozenset({"order", "original-order", "instance-order", "filler-order"})
_INACTIVE_ALLERGY: Final = frozenset({"inactive", "resolved"})
_NOT_ALLERGY: Final = frozenset({"refuted", "entered-in-error"})
_MEDICATION_PATH: Final = "MedicationRequest.medication[x]"

#: Looks up a referenced resource (``Medication/12``); None when it cannot be found.
Lookup = Callable[[str], dict[str, Any] | None]


@dataclass(frozen=True, slots=True)
class Override:
    """A prescriber's decision to go ahead despite blocking findings, and why."""

    reason: str
    reason_code: str | None
    author: dict[str, Any] | None


def _codings(concept: Any) -> tuple[DrugCode, ...]:
    if not isinstance(concept, dict):
        return ()
    found: list[DrugCode] = []
    for coding in concept.get("coding") or []:
        if isinstance(coding, dict) and isinstance(coding.get("code"), str):
            display = coding.get("display")
            found.append(
                DrugCode(
                    str(coding.get("system") or ""),
                    coding["code"],
                    display if isinstance(display, str) else None,
                )
            )
    return tuple(found)


def drug_from_concept(concept: Any) -> DrugRef:
    """A CodeableConcept as a drug: its codings and its text."""
    text = concept.get("text") if isinstance(concept, dict) else None
    return DrugRef(_codings(concept), text if isinstance(text, str) else None)


def _medication_resource(request: dict[str, Any], lookup: Lookup | None) -> dict[str, Any] | None:
    reference = request.get("medicationReference")
    if not isinstance(reference, dict):
        return None
    target = reference.get("reference")
    if isinstance(target, str) and target.startswith("#"):
        for contained in request.get("contained") or []:
            if isinstance(contained, dict) and contained.get("id") == target[1:]:
                return contained
        return None
    if isinstance(target, str) and lookup is not None:
        return lookup(target)
    return None


def medication_of(request: dict[str, Any], lookup: Lookup | None = None) -> DrugRef:
    """The drug a MedicationRequest is for, from its concept or its Medication.

    A referenced Medication (contained, or looked up in the store) contributes
    its code and its ingredients' codes, so a compounded product is checked by
    what is in it. A reference that resolves to nothing keeps its display.
    """
    concept = request.get("medicationCodeableConcept")
    if isinstance(concept, dict):
        return drug_from_concept(concept)
    medication = _medication_resource(request, lookup)
    reference = request.get("medicationReference")
    display = reference.get("display") if isinstance(reference, dict) else None
    if medication is None:
        return DrugRef((), display if isinstance(display, str) else None)
    drug = drug_from_concept(medication.get("code"))
    codes = list(drug.codes)
    for ingredient in medication.get("ingredient") or []:
        if isinstance(ingredient, dict):
            codes.extend(_codings(ingredient.get("itemCodeableConcept")))
    text = drug.text or (display if isinstance(display, str) else None)
    return DrugRef(tuple(codes), text)


def _quantity(value: Any) -> DailyDose | None:
    if not isinstance(value, dict):
        return None
    amount = value.get("value")
    unit = value.get("code") or value.get("unit")
    if isinstance(amount, bool) or not isinstance(amount, int | float) or not isinstance(unit, str):
        return None
    return DailyDose(float(amount), unit)


def _doses_per_day(dosage: dict[str, Any]) -> float | None:
    timing = dosage.get("timing")
    repeat = timing.get("repeat") if isinstance(timing, dict) else None
    if not isinstance(repeat, dict):
        return None
    frequency = repeat.get("frequencyMax") or repeat.get("frequency") or 1
    period = repeat.get("period")
    days = _PERIOD_DAYS.get(str(repeat.get("periodUnit")))
    if not isinstance(frequency, int) or not isinstance(period, int | float) or days is None:
        return None
    if period <= 0:
        return None
    return float(frequency) / (float(period) * days)


def doses(request: dict[str, Any]) -> tuple[DailyDose | None, DailyDose | None]:
    """The largest single dose and the largest daily dose the instructions ask for.

    Daily dose = dose x frequency / period (FHIR R4 datatypes.html#Timing);
    ``frequencyMax`` is used when given, since the check is about the most a
    patient may take. Instructions without a quantity or timing give None.
    """
    single: DailyDose | None = None
    daily: DailyDose | None = None
    for dosage in request.get("dosageInstruction") or []:
        if not isinstance(dosage, dict):
            continue
        for dose_rate in dosage.get("doseAndRate") or []:
            if not isinstance(dose_rate, dict):
                continue
            dose = _quantity(dose_rate.get("doseQuantity"))
            if dose is None:
                continue
            if single is None or (single.unit == dose.unit and dose.amount > single.amount):
                single = dose
            per_day = _doses_per_day(dosage)
            if per_day is not None:
                total = DailyDose(dose.amount * per_day, dose.unit)
                if daily is None or (daily.unit == total.unit and total.amount > daily.amount):
                    daily = total
    return single, daily


def _route(request: dict[str, Any]) -> str | None:
    for dosage in request.get("dosageInstruction") or []:
        if isinstance(dosage, dict):
            route = drug_from_concept(dosage.get("route"))
            if route.codes or route.text:
                return route.label()
    return None


def proposed_order(request: dict[str, Any], lookup: Lookup | None = None) -> ProposedOrder:
    """The prescription being checked, from a MedicationRequest."""
    single, daily = doses(request)
    return ProposedOrder(medication_of(request, lookup), single, daily, _route(request))


def active_medication(
    resource_id: str, request: dict[str, Any], lookup: Lookup | None = None
) -> ActiveMedication:
    """One of the patient's current MedicationRequests."""
    return ActiveMedication(f"MedicationRequest/{resource_id}", medication_of(request, lookup))


def _status_code(concept: Any) -> str | None:
    for coding in _codings(concept):
        return coding.code
    return None


def allergy_record(resource_id: str, allergy: dict[str, Any]) -> AllergyRecord | None:
    """An AllergyIntolerance as the checks see it; None when it should not be checked.

    Refuted or entered-in-error records, and ones no longer active, are left
    out: warning about a disproved allergy trains prescribers to override.
    """
    if _status_code(allergy.get("verificationStatus")) in _NOT_ALLERGY:
        return None
    if _status_code(allergy.get("clinicalStatus")) in _INACTIVE_ALLERGY:
        return None
    substance = drug_from_concept(allergy.get("code"))
    codes = list(substance.codes)
    reactions: list[str] = []
    for reaction in allergy.get("reaction") or []:
        if not isinstance(reaction, dict):
            continue
        codes.extend(_codings(reaction.get("substance")))
        for manifestation in reaction.get("manifestation") or []:
            reactions.append(drug_from_concept(manifestation).label())
    if not codes and not substance.text:
        return None
    criticality = allergy.get("criticality")
    return AllergyRecord(
        f"AllergyIntolerance/{resource_id}",
        DrugRef(tuple(codes), substance.text),
        criticality if isinstance(criticality, str) else None,
        tuple(reactions),
    )


def override_of(request: dict[str, Any]) -> Override | None:
    """The prescriber's override in the request, if any; InputError if it has no reason."""
    for index, extension in enumerate(request.get("extension") or []):
        if not isinstance(extension, dict) or extension.get("url") != OVERRIDE_URL:
            continue
        reason: str | None = None
        code: str | None = None
        author: dict[str, Any] | None = None
        for part in extension.get("extension") or []:
            if not isinstance(part, dict):
                continue
            if part.get("url") == "reason":
                if isinstance(part.get("valueString"), str):
                    reason = part["valueString"]
                concept = part.get("valueCodeableConcept")
                if isinstance(concept, dict):
                    coded = drug_from_concept(concept)
                    code = coded.codes[0].code if coded.codes else None
                    reason = coded.text or coded.label()
            elif part.get("url") == "author" and isinstance(part.get("valueReference"), dict):
                author = part["valueReference"]
        if not reason or not reason.strip():
            path = f"MedicationRequest.extension[{index}]"
            message = f"{path}: a medication-safety override needs a reason (extension 'reason')"
            raise InputError(message, [Issue(message, code="required", expression=(path,))])
        if author is None and isinstance(request.get("requester"), dict):
            author = request["requester"]
        return Override(reason.strip(), code, author)
    return None


def finding_issue(finding: Finding, *, blocked: bool) -> Issue:
    """An OperationOutcome issue: an error when it blocked the write, else a warning."""
    text = f"{finding.summary}. {finding.detail}".strip()
    if finding.source:
        text += f" (source: {finding.source})"
    severity = "error" if blocked and finding.blocking else "warning"
    if finding.severity == "low" and severity == "warning":
        severity = "information"
    return Issue(
        text,
        code="business-rule",
        severity=severity,  # type: ignore[arg-type]
        expression=(_MEDICATION_PATH,),
    )


def detected_issue(
    finding: Finding,
    *,
    request_reference: str,
    patient_reference: str,
    identified: str,
    override: Override | None,
) -> dict[str, Any]:
    """The DetectedIssue that records a finding, implicating the request and the records."""
    resource: dict[str, Any] = {
        "resourceType": "DetectedIssue",
        "status": "final",
        "code": {
            "coding": [
                {
                    "system": ACT_CODE_SYSTEM,
                    "code": finding.code,
                    "display": _ACT_CODE_DISPLAY.get(finding.code, finding.code),
                }
            ],
            "text": finding.summary,
        },
        "severity": finding.severity,
        "patient": {"reference": patient_reference},
        "identifiedDateTime": identified,
        "author": {"display": "medhub medication safety check"},
        "implicated": [{"reference": request_reference}]
        + [{"reference": reference} for reference in finding.implicated],
        "detail": finding.detail or finding.summary,
    }
    if finding.source_url:
        resource["reference"] = finding.source_url
    if override is not None and finding.blocking:
        mitigation: dict[str, Any] = {
            "action": {
                "coding": [
                    {"system": ACT_CODE_SYSTEM, "code": "1", "display": "Therapy Appropriate"}
                ],
                "text": override.reason,
            },
            "date": identified,
        }
        if override.author is not None:
            mitigation["author"] = override.author
        resource["mitigation"] = [mitigation]
    return resource


def override_audit_event(
    override: Override,
    *,
    request_reference: str,
    patient_reference: str,
    issue_references: Sequence[str],
    recorded: str,
) -> dict[str, Any]:
    """The AuditEvent of an override: who went ahead despite which findings, and why."""
    agent: dict[str, Any] = {"requestor": True}
    if override.author is not None:
        agent["who"] = override.author
    else:
        agent["who"] = {"display": "unidentified prescriber"}
    entity_type = "http://terminology.hl7.org/CodeSystem/audit-entity-type"
    entities: list[dict[str, Any]] = [
        {
            "what": {"reference": patient_reference},
            "type": {"system": entity_type, "code": "1", "display": "Person"},
        },
        {
            "what": {"reference": request_reference},
            "type": {"system": entity_type, "code": "2", "display": "System Object"},
            "description": f"medication-safety override: {override.reason}",
        },
    ]
    entities.extend(
        {
            "what": {"reference": reference},
            "type": {"system": entity_type, "code": "2", "display": "System Object"},
        }
        for reference in issue_references
    )
    return {
        "resourceType": "AuditEvent",
        "type": {
            "system": "http://terminology.hl7.org/CodeSystem/audit-event-type",
            "code": "rest",
            "display": "Restful Operation",
        },
        "subtype": [
            {"system": "http://hl7.org/fhir/restful-interaction", "code": "create"},
        ],
        "action": "C",
        "recorded": recorded,
        "outcome": "0",
        "outcomeDesc": f"prescribed despite blocking findings: {override.reason}",
        "purposeOfEvent": [
            {
                "coding": [
                    {
                        "system": "http://terminology.hl7.org/CodeSystem/v3-ActReason",
                        "code": "TREAT",
                    }
                ]
            }
        ],
        "agent": [agent],
        "source": {"observer": {"display": "medhub medication safety check"}},
        "entity": entities,
    }
