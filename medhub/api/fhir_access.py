"""Care units and audit on the FHIR routes: what a read, search or write may touch.

The permission table decides per resource type (:func:`medhub.api.security.fhir_guard`);
these functions add the patient: a unit-bound nurse or physician may read and
write only resources about patients on their units, a search answers only
those (matches of other patients are left out of the page and ``total`` is not
given, since a count would tell how many records others have), and every
patient touched is named in the request's AuditEvent.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from fastapi import Request

from medhub.api.audit import note
from medhub.api.deps import ApiContext
from medhub.api.patient_access import patient_of
from medhub.api.permissions import Action
from medhub.api.security import principal_of
from medhub.clinical.resources import RESOURCE_TYPES
from medhub.errors import ForbiddenError, Issue
from medhub.fhir.store import SearchResult, StoredResource


def _note_stored(request: Request, items: list[StoredResource]) -> None:
    refs, patients = [], []
    for item in items:
        refs.append(f"{item.resource_type}/{item.id}")
        if item.body is not None:
            patient = patient_of(item.resource)
            if patient is not None:
                patients.append(patient)
    note(request, refs, patients=patients)


def guard_stored(request: Request, context: ApiContext, stored: StoredResource) -> None:
    """403 unless the caller may see the patient this version is about."""
    _note_stored(request, [stored])
    if context.access is not None and stored.body is not None:
        context.access.check_resource(principal_of(request, context), stored.resource)


def guard_versions(request: Request, context: ApiContext, items: list[StoredResource]) -> None:
    """The same for every version of a history."""
    for item in items:
        guard_stored(request, context, item)


def guard_body(request: Request, context: ApiContext, body: Any) -> None:
    """403 unless a resource about to be written is about a patient the caller may see."""
    if not isinstance(body, dict):
        return
    patient = patient_of(body)
    if patient is not None:
        note(request, (), patients=(patient,))
    if context.access is not None:
        context.access.check_resource(principal_of(request, context), body)


def visible_results(request: Request, context: ApiContext, result: SearchResult) -> SearchResult:
    """The page without what the caller may not see; ``total`` dropped for unit-bound callers."""
    principal = principal_of(request, context)
    access = context.access
    if access is None or not (principal.unit_bound or principal.patient):
        _note_stored(request, [*result.resources, *result.included])
        return result

    def allowed(item: StoredResource) -> bool:
        if item.body is None:
            return False
        patient = patient_of(item.resource)
        return patient is None or access.visible(principal, patient)

    kept = [item for item in result.resources if allowed(item)]
    included = [item for item in result.included if allowed(item)]
    _note_stored(request, [*kept, *included])
    return replace(result, resources=kept, included=included, total=None)


def visible_versions(
    request: Request, context: ApiContext, items: list[StoredResource]
) -> list[StoredResource]:
    """A history list without the versions of patients the caller may not see."""
    if not items:
        return items
    kept = visible_results(request, context, SearchResult(items, None)).resources
    deleted = [item for item in items if item.body is None]
    return [item for item in items if item in kept or item in deleted]


_ACTIONS: dict[str, Action] = {
    "GET": "read",
    "HEAD": "read",
    "POST": "write",
    "PUT": "write",
    "PATCH": "write",
    "DELETE": "delete",
}


def guard_bundle(request: Request, context: ApiContext, bundle: Any) -> None:
    """Each entry's type and action against the caller's permissions, before anything runs.

    A unit-bound caller may send only entries that write a resource about a
    visible patient: a search, delete or patch inside a Bundle could reach
    patients on other units without the store telling which.
    """
    principal = principal_of(request, context)
    entries = bundle.get("entry") if isinstance(bundle, dict) else None
    for index, entry in enumerate(entries if isinstance(entries, list) else []):
        if not isinstance(entry, dict) or not isinstance(entry.get("request"), dict):
            continue  # malformed entries are reported by the Bundle parser
        method = str(entry["request"].get("method", "")).upper()
        url = str(entry["request"].get("url", ""))
        resource_type = url.split("?")[0].split("/")[0]
        action = _ACTIONS.get(method, "read")
        where = f"Bundle.entry[{index}]"
        if resource_type not in RESOURCE_TYPES:
            continue  # the Bundle parser names the bad URL (400)
        if resource_type == "AuditEvent" and method in ("PATCH", "DELETE"):
            raise ForbiddenError(f"{where}: audit records cannot be changed or deleted")
        if not principal.can(resource_type, action):
            raise ForbiddenError(
                f"{where}: role {principal.role} may not {action} {resource_type}",
                [Issue(f"may not {action} {resource_type}", "forbidden", expression=(where,))],
            )
        if principal.unit_bound or principal.patient:
            if method not in ("POST", "PUT"):
                raise ForbiddenError(
                    f"{where}: a caller limited to care units may only create or update in a Bundle"
                )
            guard_body(request, context, entry.get("resource"))
