"""The FHIR R4 REST routes (FHIR R4 http.html): read, vread, history.

Bodies are sent as stored (the JSON validated when it came in), so a read
costs a primary-key lookup and no model round trip.
"""

from __future__ import annotations

from email.utils import format_datetime
from typing import Any

import orjson
from fastapi import APIRouter, Request
from fastapi.responses import Response

from medhub.api.deps import ContextDep
from medhub.api.outcomes import FHIR_JSON
from medhub.clinical.resources import RESOURCE_TYPES
from medhub.errors import Issue, NotFoundError
from medhub.fhir.store import StoredResource

router = APIRouter(prefix="/fhir")


def check_type(resource_type: str) -> None:
    if resource_type not in RESOURCE_TYPES:
        text = f"resource type {resource_type!r} is not supported"
        raise NotFoundError(text, [Issue(text, code="not-supported")])


def _resource_response(stored: StoredResource, status: int = 200) -> Response:
    headers = {
        "ETag": stored.etag,
        "Last-Modified": format_datetime(stored.last_updated, usegmt=True),
    }
    return Response(stored.body, status_code=status, media_type=FHIR_JSON, headers=headers)


def history_bundle(
    request: Request, bundle_type: str, items: list[StoredResource], total: int | None
) -> Response:
    base = str(request.base_url).rstrip("/") + "/fhir"
    entries: list[dict[str, Any]] = []
    for item in items:
        entry: dict[str, Any] = {"fullUrl": f"{base}/{item.resource_type}/{item.id}"}
        if item.body is not None:
            entry["resource"] = orjson.Fragment(item.body)
        if bundle_type == "searchset":
            entry["search"] = {"mode": "match"}
        else:
            entry["request"] = {
                "method": "DELETE" if item.deleted else "PUT",
                "url": f"{item.resource_type}/{item.id}",
            }
        entries.append(entry)
    bundle: dict[str, Any] = {"resourceType": "Bundle", "type": bundle_type}
    if total is not None:
        bundle["total"] = total
    bundle["link"] = [{"relation": "self", "url": str(request.url)}]
    bundle["entry"] = entries
    return Response(orjson.dumps(bundle), media_type=FHIR_JSON)


@router.get("/{resource_type}/{resource_id}")
def read(resource_type: str, resource_id: str, context: ContextDep) -> Response:
    check_type(resource_type)
    with context.store.unit_of_work() as resources:
        stored = resources.read(resource_type, resource_id)
    return _resource_response(stored)


@router.get("/{resource_type}/{resource_id}/_history/{version_id}")
def vread(resource_type: str, resource_id: str, version_id: int, context: ContextDep) -> Response:
    check_type(resource_type)
    with context.store.unit_of_work() as resources:
        stored = resources.vread(resource_type, resource_id, version_id)
    return _resource_response(stored)


@router.get("/{resource_type}/{resource_id}/_history")
def history(
    request: Request, resource_type: str, resource_id: str, context: ContextDep
) -> Response:
    check_type(resource_type)
    with context.store.unit_of_work() as resources:
        versions = resources.history(resource_type, resource_id)
    return history_bundle(request, "history", versions, len(versions))
