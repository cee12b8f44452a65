"""The FHIR search route (FHIR R4 search.html): `GET /fhir/{type}?…` answered with a searchset."""

from __future__ import annotations

from typing import Any

import orjson
from fastapi import APIRouter, Request
from fastapi.responses import Response

from medhub.api.deps import ContextDep
from medhub.api.fhir_format import check_type
from medhub.api.outcomes import FHIR_JSON
from medhub.fhir.search import parse_search
from medhub.fhir.store import SearchResult

router = APIRouter(prefix="/fhir")


def searchset(request: Request, result: SearchResult) -> dict[str, Any]:
    """The searchset Bundle of one page of results."""
    base = str(request.base_url).rstrip("/") + "/fhir"
    entries: list[dict[str, Any]] = []
    for mode, items in (("match", result.resources), ("include", result.included)):
        for item in items:
            entry: dict[str, Any] = {"fullUrl": f"{base}/{item.resource_type}/{item.id}"}
            if item.body is not None:
                entry["resource"] = orjson.Fragment(item.body)
            entry["search"] = {"mode": mode}
            entries.append(entry)
    bundle: dict[str, Any] = {"resourceType": "Bundle", "type": "searchset"}
    if result.total is not None:
        bundle["total"] = result.total
    bundle["link"] = [{"relation": "self", "url": str(request.url)}]
    bundle["entry"] = entries
    return bundle


@router.get("/{resource_type}")
def search(request: Request, resource_type: str, context: ContextDep) -> Response:
    check_type(resource_type)
    query = parse_search(resource_type, request.query_params.multi_items())
    with context.store.unit_of_work() as resources:
        result = resources.search(query)
    return Response(orjson.dumps(searchset(request, result)), media_type=FHIR_JSON)
