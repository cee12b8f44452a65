"""The FHIR R4 REST interactions (FHIR R4 http.html), except search.

read, vread, create (also conditional), update (also create-on-update and
conditional), patch (JSON Patch, FHIRPath Patch, conditional), delete (also
conditional), history at instance, type and system level, batch and
transaction Bundles, ``$validate`` and ``Patient/$everything``. The semantics
live in :mod:`medhub.fhir.interactions` and :mod:`medhub.fhir.bundles`; this
module turns HTTP into calls and results into headers (``ETag``,
``Last-Modified``, ``Location``) and bodies chosen by ``Prefer: return=``.

Bodies are sent as stored (the JSON validated when it came in), so a read
costs a primary-key lookup and no model round trip.
"""

from __future__ import annotations

from datetime import datetime
from email.utils import format_datetime
from typing import Any
from urllib.parse import urlencode

import orjson
from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool

from medhub.api.deps import ContextDep
from medhub.api.fhir_access import (
    guard_body,
    guard_bundle,
    guard_stored,
    visible_versions,
)
from medhub.api.fhir_format import (
    base_url,
    check_type,
    dumps,
    fhir_response,
    negotiate,
    parse_json,
    prefer_return,
    read_json_body,
)
from medhub.api.fhir_metrics import note_interaction
from medhub.api.fhir_search_routes import searchset
from medhub.api.outcomes import operation_outcome
from medhub.api.security import check_patient
from medhub.clinical.resources import RESOURCE_TYPES, validate_resource
from medhub.errors import GoneError, InputError, Issue, MedhubError, NotFoundError
from medhub.fhir import interactions
from medhub.fhir.bundles import process_bundle, response_fields
from medhub.fhir.dates import parse_fhir_date_range
from medhub.fhir.interactions import Written, parse_etag, patch_format
from medhub.fhir.store import StoredResource
from medhub.fhir.write_hooks import notes_for

router = APIRouter(prefix="/fhir", dependencies=[Depends(negotiate)])

MAX_HISTORY: int = 1000

#: What the OpenAPI description says of the bodies read from the raw request.
_RESOURCE_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            "application/fhir+json": {
                "schema": {"type": "object", "description": "a FHIR R4 resource (JSON)"}
            }
        },
    }
}
_BUNDLE_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            "application/fhir+json": {
                "schema": {
                    "type": "object",
                    "description": "a Bundle of type batch or transaction",
                }
            }
        },
    }
}
_PATCH_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json-patch+json": {
                "schema": {"type": "array", "items": {"type": "object"}},
            },
            "application/fhir+json": {
                "schema": {"type": "object", "description": "a FHIRPath Patch Parameters"}
            },
        },
    }
}


def _version_headers(stored: StoredResource) -> dict[str, str]:
    return {
        "ETag": stored.etag,
        "Last-Modified": format_datetime(stored.last_updated, usegmt=True),
    }


def _resource_response(request: Request, stored: StoredResource, status: int = 200) -> Response:
    return fhir_response(request, stored.body, status=status, headers=_version_headers(stored))


def _written_response(
    request: Request, written: Written, *, what: str, notes: list[Issue] | None = None
) -> Response:
    """The answer to a write, shaped by ``Prefer: return=`` (FHIR R4 http.html#ops).

    ``notes`` are warnings a write hook left (findings that did not block the
    write): they are answered in the OperationOutcome a client asks for with
    ``Prefer: return=OperationOutcome``, and always counted in the
    ``X-Medhub-Warnings`` header so a client that takes the resource back
    still sees that there is something to read.
    """
    stored = written.stored
    if stored is None or stored.deleted:
        message = f"{what}: nothing to delete" if stored is None else f"{what}: deleted"
        if prefer_return(request) == "OperationOutcome":
            body = dumps(
                operation_outcome([Issue(message, code="informational", severity="information")])
            )
            return fhir_response(request, body, status=200)
        headers = {} if stored is None else {"ETag": stored.etag}
        return Response(status_code=204 if stored is None else 200, headers=headers)
    headers = _version_headers(stored)
    if notes:
        headers["X-Medhub-Warnings"] = str(len(notes))
    if written.status == 201 or what != "read":
        headers["Location"] = (
            f"{base_url(request)}/{stored.resource_type}/{stored.id}/_history/{stored.version_id}"
        )
    preference = prefer_return(request)
    if preference == "minimal":
        return Response(status_code=written.status, headers=headers)
    if preference == "OperationOutcome":
        verb = (
            "created" if written.status == 201 else "updated" if stored.version_id > 1 else "stored"
        )
        issue = Issue(
            f"{stored.resource_type}/{stored.id} {verb} (version {stored.version_id})",
            code="informational",
            severity="information",
        )
        body = dumps(operation_outcome([issue, *(notes or [])]))
        return fhir_response(request, body, status=written.status, headers=headers)
    return fhir_response(request, stored.body, status=written.status, headers=headers)


def _criteria(request: Request) -> str:
    """The query string of a conditional request, without the result-format parameters."""
    pairs = [
        (k, v) for k, v in request.query_params.multi_items() if k not in ("_format", "_pretty")
    ]
    return urlencode(pairs)


def _since(request: Request) -> datetime | None:
    raw = request.query_params.get("_since")
    if raw is None:
        return None
    try:
        return parse_fhir_date_range(raw)[0]
    except InputError as exc:
        message = f"_since must be a FHIR instant, got {raw!r}"
        raise InputError(message, [Issue(message, expression=("_since",))]) from exc


def _count(request: Request) -> int:
    raw = request.query_params.get("_count")
    if raw is None:
        return MAX_HISTORY
    try:
        return max(0, min(int(raw), MAX_HISTORY))
    except ValueError as exc:
        message = f"_count must be a whole number, got {raw!r}"
        raise InputError(message, [Issue(message, expression=("_count",))]) from exc


def history_bundle(request: Request, items: list[StoredResource]) -> dict[str, Any]:
    """A ``history`` Bundle: newest first, each entry with the request that made it."""
    base = base_url(request)
    entries: list[dict[str, Any]] = []
    for item in items:
        entry: dict[str, Any] = {"fullUrl": f"{base}/{item.resource_type}/{item.id}"}
        if item.body is not None:
            entry["resource"] = orjson.Fragment(item.body)
        method = "DELETE" if item.deleted else "POST" if item.version_id == 1 else "PUT"
        url = item.resource_type if method == "POST" else f"{item.resource_type}/{item.id}"
        entry["request"] = {"method": method, "url": url}
        entry["response"] = {
            "status": "204 No Content"
            if item.deleted
            else "201 Created"
            if method == "POST"
            else "200 OK",
            "etag": item.etag,
            "lastModified": item.last_updated.isoformat().replace("+00:00", "Z"),
        }
        entries.append(entry)
    return {
        "resourceType": "Bundle",
        "type": "history",
        "total": len(items),
        "link": [{"relation": "self", "url": str(request.url)}],
        "entry": entries,
    }


# -- system level -------------------------------------------------------------


@router.get("/_history")
def system_history(request: Request, context: ContextDep) -> Response:
    with context.store.unit_of_work() as resources:
        versions = resources.history(None, since=_since(request), count=_count(request))
    versions = visible_versions(request, context, versions)
    return fhir_response(request, dumps(history_bundle(request, versions)))


@router.post("", openapi_extra=_BUNDLE_BODY)
@router.post("/", include_in_schema=False)
async def batch_or_transaction(request: Request, context: ContextDep) -> Response:
    """POST a batch or transaction Bundle to the base (FHIR R4 http.html#transaction)."""
    bundle = await read_json_body(request)
    transaction = isinstance(bundle, dict) and bundle.get("type") == "transaction"
    note_interaction(request, "transaction" if transaction else "batch")
    await run_in_threadpool(guard_bundle, request, context, bundle)
    outcome = await run_in_threadpool(process_bundle, context.store.unit_of_work, bundle)
    # Written resources are echoed only on request (a 5,000-entry load need not come back).
    representation = "return=representation" in request.headers.get("prefer", "").replace(" ", "")
    entries: list[dict[str, Any]] = []
    for result in outcome.results:
        entry: dict[str, Any] = {}
        if result.error is not None:
            entry["response"] = {
                "status": str(result.status),
                "outcome": operation_outcome(result.error.issues),
            }
        elif result.search is not None:
            entry["resource"] = searchset(request, result.search)
            entry["response"] = {"status": "200 OK"}
        else:
            stored = result.stored
            if stored is not None:
                entry["fullUrl"] = f"{base_url(request)}/{stored.resource_type}/{stored.id}"
                if stored.body is not None and (representation or result.read):
                    entry["resource"] = orjson.Fragment(stored.body)
            entry["response"] = response_fields(result)
            if result.notes:
                entry["response"]["outcome"] = operation_outcome(result.notes)
        entries.append(entry)
    body = {"resourceType": "Bundle", "type": outcome.bundle_type, "entry": entries}
    return fhir_response(request, dumps(body))


# -- type level ---------------------------------------------------------------


@router.get("/{resource_type}/_history")
def type_history(request: Request, resource_type: str, context: ContextDep) -> Response:
    check_type(resource_type)
    with context.store.unit_of_work() as resources:
        versions = resources.history(resource_type, since=_since(request), count=_count(request))
    versions = visible_versions(request, context, versions)
    return fhir_response(request, dumps(history_bundle(request, versions)))


@router.post("/{resource_type}/$validate", openapi_extra=_RESOURCE_BODY)
async def validate_type(request: Request, resource_type: str) -> Response:
    check_type(resource_type)
    return _validation_outcome(request, resource_type, await read_json_body(request))


@router.post("/{resource_type}", openapi_extra=_RESOURCE_BODY)
async def create(request: Request, resource_type: str, context: ContextDep) -> Response:
    check_type(resource_type)
    body = await read_json_body(request)
    if_none_exist = request.headers.get("if-none-exist")

    def run() -> tuple[Written, list[Issue]]:
        with context.store.unit_of_work() as resources:
            written = interactions.create(
                resources, resource_type, body, if_none_exist=if_none_exist
            )
            if written.stored is not None:
                guard_stored(request, context, written.stored)  # 403 rolls the write back
            return written, notes_for(resources, written.stored)

    written, notes = await run_in_threadpool(run)
    return _written_response(request, written, what="create", notes=notes)


@router.put("/{resource_type}", openapi_extra=_RESOURCE_BODY)
async def conditional_update(request: Request, resource_type: str, context: ContextDep) -> Response:
    check_type(resource_type)
    body = await read_json_body(request)
    criteria, if_match = _criteria(request), parse_etag(request.headers.get("if-match"))

    def run() -> Written:
        with context.store.unit_of_work() as resources:
            guard_body(request, context, body)
            written = interactions.conditional_update(
                resources, resource_type, criteria, body, if_match=if_match
            )
            if written.stored is not None:
                guard_stored(request, context, written.stored)
            return written

    return _written_response(request, await run_in_threadpool(run), what="update")


@router.delete("/{resource_type}")
def conditional_delete(request: Request, resource_type: str, context: ContextDep) -> Response:
    check_type(resource_type)
    criteria = _criteria(request)
    with context.store.unit_of_work() as resources:
        for match in interactions.find_matches(
            resources, resource_type, criteria, where="criteria"
        ):
            guard_stored(request, context, match)
        written = interactions.conditional_delete(resources, resource_type, criteria)
    return _written_response(request, written, what=f"{resource_type}?{criteria}")


@router.patch("/{resource_type}", openapi_extra=_PATCH_BODY)
async def conditional_patch(request: Request, resource_type: str, context: ContextDep) -> Response:
    check_type(resource_type)
    fmt = patch_format(request.headers.get("content-type"))
    document = parse_json(await request.body())
    criteria, if_match = _criteria(request), parse_etag(request.headers.get("if-match"))

    def run() -> Written:
        with context.store.unit_of_work() as resources:
            written = interactions.conditional_patch(
                resources, resource_type, criteria, document, fmt, if_match=if_match
            )
            if written.stored is not None:
                guard_stored(request, context, written.stored)
            return written

    return _written_response(request, await run_in_threadpool(run), what="patch")


# -- instance level -------------------------------------------------------------


@router.get("/{resource_type}/{resource_id}")
def read(request: Request, resource_type: str, resource_id: str, context: ContextDep) -> Response:
    check_type(resource_type)
    with context.store.unit_of_work() as resources:
        stored = resources.read(resource_type, resource_id)
    guard_stored(request, context, stored)
    return _resource_response(request, stored)


@router.get("/{resource_type}/{resource_id}/_history/{version_id}")
def vread(
    request: Request, resource_type: str, resource_id: str, version_id: int, context: ContextDep
) -> Response:
    check_type(resource_type)
    with context.store.unit_of_work() as resources:
        stored = resources.vread(resource_type, resource_id, version_id)
    guard_stored(request, context, stored)
    return _resource_response(request, stored)


@router.get("/{resource_type}/{resource_id}/_history")
def history(
    request: Request, resource_type: str, resource_id: str, context: ContextDep
) -> Response:
    check_type(resource_type)
    with context.store.unit_of_work() as resources:
        versions = resources.history(
            resource_type, resource_id, since=_since(request), count=_count(request)
        )
    for version in versions:
        guard_stored(request, context, version)
    return fhir_response(request, dumps(history_bundle(request, versions)))


@router.put("/{resource_type}/{resource_id}", openapi_extra=_RESOURCE_BODY)
async def update(
    request: Request, resource_type: str, resource_id: str, context: ContextDep
) -> Response:
    check_type(resource_type)
    body = await read_json_body(request)
    if_match = parse_etag(request.headers.get("if-match"))

    def run() -> tuple[Written, list[Issue]]:
        with context.store.unit_of_work() as resources:
            guard_body(request, context, body)
            written = interactions.update(
                resources, resource_type, resource_id, body, if_match=if_match
            )
            if written.stored is not None:
                guard_stored(request, context, written.stored)
            return written, notes_for(resources, written.stored)

    written, notes = await run_in_threadpool(run)
    return _written_response(request, written, what="update", notes=notes)


@router.patch("/{resource_type}/{resource_id}", openapi_extra=_PATCH_BODY)
async def patch(
    request: Request, resource_type: str, resource_id: str, context: ContextDep
) -> Response:
    check_type(resource_type)
    fmt = patch_format(request.headers.get("content-type"))
    document = parse_json(await request.body())
    if_match = parse_etag(request.headers.get("if-match"))

    def run() -> Written:
        with context.store.unit_of_work() as resources:
            guard_stored(request, context, resources.read(resource_type, resource_id))
            written = interactions.patch(
                resources, resource_type, resource_id, document, fmt, if_match=if_match
            )
            if written.stored is not None:
                guard_stored(request, context, written.stored)
            return written

    return _written_response(request, await run_in_threadpool(run), what="patch")


@router.delete("/{resource_type}/{resource_id}")
def delete(request: Request, resource_type: str, resource_id: str, context: ContextDep) -> Response:
    check_type(resource_type)
    if_match = parse_etag(request.headers.get("if-match"))
    with context.store.unit_of_work() as resources:
        try:
            guard_stored(request, context, resources.read(resource_type, resource_id))
        except (NotFoundError, GoneError):
            pass  # deleting what is not there answers as before (204 / 200)
        written = interactions.delete(resources, resource_type, resource_id, if_match=if_match)
    return _written_response(request, written, what=f"{resource_type}/{resource_id}")


@router.post("/{resource_type}/{resource_id}/$validate", openapi_extra=_RESOURCE_BODY)
async def validate_instance(request: Request, resource_type: str, resource_id: str) -> Response:
    check_type(resource_type)
    body = await read_json_body(request)
    return _validation_outcome(request, resource_type, body, resource_id=resource_id)


@router.get("/Patient/{patient_id}/$everything")
def everything(request: Request, patient_id: str, context: ContextDep) -> Response:
    """The patient and everything in its compartment, plus what those resources reference.

    Practitioners, locations, organisations, devices and medications the
    patient's records point to are part of the answer, so a receiving system
    can resolve every reference in it (FHIR R4 patient-operation-everything).
    """
    check_patient(request, context, patient_id)
    with context.store.unit_of_work() as resources:
        patient = resources.read("Patient", patient_id)
        related = resources.referencing("Patient", patient_id)
        have = {("Patient", patient_id)} | {(r.resource_type, r.id) for r in related}
        referenced: list[StoredResource] = []
        for item in [patient, *related]:
            for target in _literal_references(item.resource):
                if target in have or target[0] not in RESOURCE_TYPES:
                    continue
                have.add(target)
                try:
                    referenced.append(resources.read(*target))
                except MedhubError:
                    continue  # a dangling or deleted reference is left out, not an error
    base = base_url(request)
    entries = [
        {
            "fullUrl": f"{base}/{item.resource_type}/{item.id}",
            "resource": orjson.Fragment(item.body),
            "search": {"mode": "match" if item in (patient, *related) else "include"},
        }
        for item in [patient, *related, *referenced]
        if item.body is not None
    ]
    bundle = {
        "resourceType": "Bundle",
        "type": "searchset",
        "total": 1 + len(related),
        "link": [{"relation": "self", "url": str(request.url)}],
        "entry": entries,
    }
    return fhir_response(request, dumps(bundle))


def _literal_references(node: Any) -> set[tuple[str, str]]:
    found: set[tuple[str, str]] = set()
    stack = [node]
    while stack:
        current = stack.pop()
        if isinstance(current, dict):
            reference = current.get("reference")
            if isinstance(reference, str) and reference.count("/") == 1:
                resource_type, resource_id = reference.split("/")
                found.add((resource_type, resource_id))
            stack.extend(current.values())
        elif isinstance(current, list):
            stack.extend(current)
    return found


def _validation_outcome(
    request: Request, resource_type: str, body: Any, *, resource_id: str | None = None
) -> Response:
    """``$validate``: 200 with an OperationOutcome whether the resource is valid or not.

    A Parameters body carries the resource in its ``resource`` parameter
    (FHIR R4 resource-operation-validate).
    """
    if isinstance(body, dict) and body.get("resourceType") == "Parameters":
        for parameter in body.get("parameter") or []:
            if isinstance(parameter, dict) and parameter.get("name") == "resource":
                body = parameter.get("resource")
                break
    issues: list[Issue]
    try:
        validated = validate_resource(body, expected_type=resource_type)
        if resource_id is not None and validated.get("id") not in (None, resource_id):
            raise InputError(f"the resource's id is not {resource_id!r}")
        issues = [Issue("the resource is valid", code="informational", severity="information")]
    except MedhubError as exc:
        issues = exc.issues
    return fhir_response(request, dumps(operation_outcome(issues)))
