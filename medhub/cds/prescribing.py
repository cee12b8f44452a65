"""Prescribing with safety checks: the rules of a MedicationRequest write.

Every MedicationRequest that is being prescribed (status active, on-hold or
draft), however it arrives (REST create, create-on-update, a transaction or
batch entry), is checked against the patient's current MedicationRequests and
AllergyIntolerances before it is saved:

* a *blocking* finding (high severity: a contraindicated or major
  interaction, a recorded allergy, the same drug twice, a dose over the
  maximum) refuses the write with 409 and an OperationOutcome naming each
  finding, unless the request carries an override with a reason
  (:data:`medhub.cds.medication_fhir.OVERRIDE_URL`);
* every finding of a saved request is stored as a DetectedIssue linked from
  ``MedicationRequest.detectedIssue``; an override adds the prescriber's
  reason as the DetectedIssue's mitigation and writes an AuditEvent;
* a saved active order emits ``prescription.created`` through the
  transactional outbox and goes to the pharmacy as an HL7 order (new order
  NW; cancel CA or discontinue DC when it is later cancelled or stopped)
  through the outbound MLLP queue, in the same transaction.

Records of other statuses (completed, stopped, entered-in-error: history
imported from another system) are stored unchecked: refusing the past helps
nobody. The checks themselves are pure (:mod:`medhub.cds.medication_checks`).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any, Final, Literal, Protocol

from medhub.cds.medication_checks import check_order
from medhub.cds.medication_fhir import (
    ACTIVE_STATUSES,
    ORDER_INTENTS,
    OVERRIDE_URL,
    Override,
    active_medication,
    allergy_record,
    detected_issue,
    finding_issue,
    medication_of,
    override_audit_event,
    override_of,
    proposed_order,
)
from medhub.cds.medication_knowledge import KnowledgeBase
from medhub.cds.medication_model import ActiveMedication, AllergyRecord, Finding
from medhub.db.outbox import DomainEvent, EventOutbox
from medhub.errors import ConflictError, GoneError, Issue, MedhubError, NotFoundError
from medhub.fhir.search import parse_search
from medhub.fhir.store import Resources, StoredResource, UpdateOutcome, format_instant
from medhub.fhir.write_hooks import WriteNotes

OrderControl = Literal["NW", "CA", "DC"]
#: Statuses that are checked: being prescribed now, or about to be.
CHECKED_STATUSES: Final = ACTIVE_STATUSES | {"draft"}
_PAGE: Final = 500


class MedicationSafetyError(ConflictError):
    """A prescription was refused for a high-severity finding without an override (409)."""

    fhir_issue_code = "business-rule"


class OrderSink(Protocol):
    """Where saved orders go (the pharmacy), inside the caller's transaction."""

    def send(
        self,
        *,
        order_control: OrderControl,
        request_id: str,
        request: dict[str, Any],
        patient: dict[str, Any] | None,
        requester: dict[str, Any] | None,
        medication: dict[str, Any] | None,
        now: datetime,
    ) -> None: ...


def _read(inner: Resources, reference: Any) -> dict[str, Any] | None:
    """A referenced resource (``Type/id``) or None when it is absent or not literal."""
    if not isinstance(reference, str) or reference.count("/") != 1:
        return None
    resource_type, resource_id = reference.split("/")
    try:
        return inner.read(resource_type, resource_id).resource
    except MedhubError:
        return None


def _patient_reference(request: dict[str, Any]) -> str | None:
    subject = request.get("subject")
    reference = subject.get("reference") if isinstance(subject, dict) else None
    if isinstance(reference, str) and reference.startswith("Patient/"):
        return reference
    return None


def _search_all(
    inner: Resources, resource_type: str, pairs: list[tuple[str, str]]
) -> list[StoredResource]:
    found: list[StoredResource] = []
    while True:
        query = parse_search(resource_type, pairs)
        query.count, query.offset, query.with_total = _PAGE, len(found), False
        page = inner.search(query).resources
        found.extend(page)
        if len(page) < _PAGE:
            return found


def patient_context(
    inner: Resources, patient: str, *, exclude: str | None = None
) -> tuple[list[ActiveMedication], list[AllergyRecord]]:
    """The patient's current medications (without ``exclude``) and allergies, from the store."""
    active: list[ActiveMedication] = []
    status = ",".join(sorted(ACTIVE_STATUSES))
    for stored in _search_all(
        inner, "MedicationRequest", [("subject", patient), ("status", status)]
    ):
        if stored.id != exclude:
            active.append(active_medication(stored.id, stored.resource, lambda r: _read(inner, r)))
    allergies: list[AllergyRecord] = []
    for stored in _search_all(inner, "AllergyIntolerance", [("patient", patient)]):
        record = allergy_record(stored.id, stored.resource)
        if record is not None:
            allergies.append(record)
    return active, allergies


def _order_control(before: str | None, after: str | None) -> OrderControl | None:
    """What the pharmacy must be told when a request's status goes from ``before`` to ``after``."""
    was_active = before in ACTIVE_STATUSES
    if after == "active" and not was_active:
        return "NW"
    if was_active and after in ("cancelled", "entered-in-error"):
        return "CA"
    if was_active and after == "stopped":
        return "DC"
    return None


class PrescriptionHook:
    """The MedicationRequest write hook (see the module docstring)."""

    def __init__(
        self,
        *,
        knowledge: KnowledgeBase,
        outbox: EventOutbox | None,
        orders: OrderSink | None,
        clock: Callable[[], datetime],
    ) -> None:
        self.knowledge = knowledge
        self.outbox = outbox
        self.orders = orders
        self.clock = clock

    # -- the three writes -------------------------------------------------------

    def create(
        self,
        inner: Resources,
        resource: dict[str, Any],
        *,
        resource_id: str | None,
        notes: WriteNotes,
    ) -> StoredResource:
        request_id = resource_id or str(uuid.uuid4())
        notes_out: list[Issue] = []
        prepared, after = self._checked(inner, request_id, resource, notes_out)
        stored = inner.create(prepared, resource_id=request_id)
        after(stored)
        notes.add(stored, notes_out)
        self._announce(inner, stored, before_status=None)
        return stored

    def update(
        self,
        inner: Resources,
        resource_id: str,
        resource: dict[str, Any],
        *,
        if_match: int | None,
        notes: WriteNotes,
    ) -> UpdateOutcome:
        try:
            current: dict[str, Any] | None = inner.read("MedicationRequest", resource_id).resource
        except (NotFoundError, GoneError):
            current = None
        notes_out: list[Issue] = []
        prepared: dict[str, Any] = resource
        after: Callable[[StoredResource], None] = _nothing
        if self._needs_check(current, resource):
            prepared, after = self._checked(inner, resource_id, resource, notes_out)
        outcome = inner.update("MedicationRequest", resource_id, prepared, if_match=if_match)
        after(outcome.stored)
        notes.add(outcome.stored, notes_out)
        before = current.get("status") if current is not None else None
        self._announce(inner, outcome.stored, before_status=before)
        return outcome

    def delete(
        self, inner: Resources, resource_id: str, *, if_match: int | None
    ) -> StoredResource | None:
        try:
            current = inner.read("MedicationRequest", resource_id)
        except (NotFoundError, GoneError):
            return inner.delete("MedicationRequest", resource_id, if_match=if_match)
        deleted = inner.delete("MedicationRequest", resource_id, if_match=if_match)
        if current.resource.get("status") in ACTIVE_STATUSES:
            self._send(inner, "CA", resource_id, current.resource)
            self._event(current.resource, resource_id, "prescription.cancelled", [], None)
        return deleted

    # -- checking ---------------------------------------------------------------

    @staticmethod
    def _needs_check(current: dict[str, Any] | None, new: dict[str, Any]) -> bool:
        if new.get("status") not in CHECKED_STATUSES:
            return False
        if current is None or current.get("status") not in CHECKED_STATUSES:
            return True
        if new.get("status") == "active" and current.get("status") != "active":
            return True  # a draft signed (or a hold lifted): the record may have changed since
        keys = ("medicationCodeableConcept", "medicationReference", "dosageInstruction", "subject")
        return any(current.get(key) != new.get(key) for key in keys)

    def findings_for(
        self, inner: Resources, request: dict[str, Any], *, request_id: str | None
    ) -> tuple[list[Finding], bool]:
        """The findings for ``request`` against the stored record, and whether the drug resolved."""
        patient = _patient_reference(request)
        order = proposed_order(request, lambda r: _read(inner, r))
        recognised = bool(self.knowledge.resolve(order.drug))
        if patient is None:
            return [], recognised
        active, allergies = patient_context(inner, patient, exclude=request_id)
        return check_order(self.knowledge, order, active=active, allergies=allergies), recognised

    def _checked(
        self,
        inner: Resources,
        request_id: str,
        resource: dict[str, Any],
        notes_out: list[Issue],
    ) -> tuple[dict[str, Any], Callable[[StoredResource], None]]:
        """Run the checks; refuse, or return the request to store and what to write after it."""
        if resource.get("status") not in CHECKED_STATUSES:
            return resource, _nothing
        override = override_of(resource)
        findings, recognised = self.findings_for(inner, resource, request_id=request_id)
        if not recognised:
            label = medication_of(resource).label()
            notes_out.append(
                Issue(
                    f"{label!r} is not in the medication knowledge base "
                    f"({self.knowledge.version}); it was not checked for interactions, "
                    "allergies or dose",
                    code="informational",
                    severity="warning",
                    expression=("MedicationRequest.medication[x]",),
                )
            )
        blocking = [f for f in findings if f.blocking]
        if blocking and override is None:
            issues = [finding_issue(f, blocked=True) for f in findings]
            issues.append(
                Issue(
                    "to prescribe anyway, send the request again with the extension "
                    f"{OVERRIDE_URL} and a reason",
                    code="business-rule",
                    severity="information",
                )
            )
            message = (
                f"prescription refused: {len(blocking)} high-severity finding(s): "
                + "; ".join(f.summary for f in blocking)
            )
            raise MedicationSafetyError(message, issues)
        notes_out.extend(finding_issue(f, blocked=False) for f in findings)
        if not findings:
            return resource, _nothing
        issue_ids = [str(uuid.uuid4()) for _ in findings]
        prepared = dict(resource)
        prepared["detectedIssue"] = [
            *(resource.get("detectedIssue") or []),
            *({"reference": f"DetectedIssue/{i}"} for i in issue_ids),
        ]

        def after(stored: StoredResource) -> None:
            self._record(inner, stored, findings, issue_ids, override)

        return prepared, after

    def _record(
        self,
        inner: Resources,
        stored: StoredResource,
        findings: Sequence[Finding],
        issue_ids: Sequence[str],
        override: Override | None,
    ) -> None:
        """Store the DetectedIssues of a saved request, and the AuditEvent of an override."""
        request = stored.resource
        patient = _patient_reference(request) or "Patient/unknown"
        now = format_instant(self.clock())
        reference = f"MedicationRequest/{stored.id}"
        for finding, issue_id in zip(findings, issue_ids, strict=True):
            issue = detected_issue(
                finding,
                request_reference=reference,
                patient_reference=patient,
                identified=now,
                override=override,
            )
            inner.create(issue, resource_id=issue_id)
        if override is not None and any(f.blocking for f in findings):
            overridden = [
                f"DetectedIssue/{i}" for f, i in zip(findings, issue_ids, strict=True) if f.blocking
            ]
            inner.create(
                override_audit_event(
                    override,
                    request_reference=reference,
                    patient_reference=patient,
                    issue_references=overridden,
                    recorded=now,
                )
            )

    # -- telling others -----------------------------------------------------------

    def _announce(self, inner: Resources, stored: StoredResource, *, before_status: Any) -> None:
        request = stored.resource
        after_status = request.get("status")
        control = _order_control(
            before_status if isinstance(before_status, str) else None,
            after_status if isinstance(after_status, str) else None,
        )
        if before_status is None and after_status in CHECKED_STATUSES:
            issues = [
                r.get("reference")
                for r in request.get("detectedIssue") or []
                if isinstance(r, dict)
            ]
            self._event(request, stored.id, "prescription.created", issues, override_of(request))
        elif control in ("CA", "DC"):
            self._event(request, stored.id, "prescription.cancelled", [], None)
        if control is not None and request.get("intent") in ORDER_INTENTS:
            self._send(inner, control, stored.id, request)

    def _send(
        self, inner: Resources, control: OrderControl, request_id: str, request: dict[str, Any]
    ) -> None:
        if self.orders is None:
            return
        requester = request.get("requester")
        medication = request.get("medicationReference")
        self.orders.send(
            order_control=control,
            request_id=request_id,
            request=request,
            patient=_read(inner, _patient_reference(request)),
            requester=_read(inner, requester.get("reference"))
            if isinstance(requester, dict)
            else None,
            medication=_read(inner, medication.get("reference"))
            if isinstance(medication, dict)
            else None,
            now=self.clock(),
        )

    def _event(
        self,
        request: dict[str, Any],
        request_id: str,
        topic: str,
        issues: Sequence[Any],
        override: Override | None,
    ) -> None:
        if self.outbox is None:
            return
        drug = medication_of(request)
        payload = {
            "medicationRequest": f"MedicationRequest/{request_id}",
            "patient": _patient_reference(request),
            "status": request.get("status"),
            "intent": request.get("intent"),
            "medication": drug.label(),
            "codes": [{"system": c.system, "code": c.code} for c in drug.codes],
            "detectedIssues": [i for i in issues if isinstance(i, str)],
            "overridden": override is not None,
            "overrideReason": override.reason if override is not None else None,
        }
        self.outbox.enqueue(DomainEvent(topic, topic, payload), now=self.clock())


def _nothing(_stored: StoredResource) -> None:
    """Nothing to write after the request."""
