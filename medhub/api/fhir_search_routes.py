"""The FHIR search route (FHIR R4 search.html): `GET /fhir/{type}?…` answered with a searchset.

Paging (search.html#paging): ``self``, ``next`` and ``previous`` links repeat
the applied parameters with ``_offset`` set; the SQL order always ends with the
resource id, so the pages partition the matches while the data is unchanged.
``Prefer: handling=lenient`` (search.html#errors) skips unknown parameters and
reports them in an OperationOutcome entry with search mode ``outcome``; they
are left out of the ``self`` link, which shows what was actually applied.
``_elements`` trims each match to the named elements and marks it SUBSETTED.
"""

from __future__ import annotations

from typing import Any, Final
from urllib.parse import urlencode

import orjson
from fastapi import APIRouter, Request
from fastapi.responses import Response

from medhub.api.deps import ContextDep
from medhub.api.fhir_access import visible_results
from medhub.api.fhir_format import check_type
from medhub.api.outcomes import FHIR_JSON, operation_outcome
from medhub.errors import Issue
from medhub.fhir.search import SearchQuery, parse_search
from medhub.fhir.store import SearchResult, StoredResource

router = APIRouter(prefix="/fhir")

#: FHIR R4 search.html#elements: a trimmed resource carries this tag.
SUBSETTED: Final = {
    "system": "http://terminology.hl7.org/CodeSystem/v3-ObservationValue",
    "code": "SUBSETTED",
    "display": "subsetted",
}
_ALWAYS_KEPT: Final = ("resourceType", "id", "meta")


def subsetted(body: dict[str, Any], elements: tuple[str, ...]) -> dict[str, Any]:
    """``body`` with only ``elements`` (plus resourceType, id, meta), tagged SUBSETTED."""
    kept = {k: v for k, v in body.items() if k in elements or k in _ALWAYS_KEPT}
    meta = dict(kept.get("meta") or {})
    meta["tag"] = [*meta.get("tag", []), SUBSETTED]
    kept["meta"] = meta
    return kept


def _entry(base: str, item: StoredResource, mode: str, elements: tuple[str, ...] | None) -> Any:
    entry: dict[str, Any] = {"fullUrl": f"{base}/{item.resource_type}/{item.id}"}
    if item.body is not None:
        if elements is not None and mode == "match":
            entry["resource"] = subsetted(item.resource, elements)
        else:
            entry["resource"] = orjson.Fragment(item.body)
    entry["search"] = {"mode": mode}
    return entry


def _links(request: Request, query: SearchQuery, result: SearchResult) -> list[dict[str, str]]:
    url = str(request.url.remove_query_params(list(request.query_params.keys())))
    pairs = [(k, v) for k, v in query.used if k != "_offset"]

    def link(relation: str, offset: int) -> dict[str, str]:
        with_offset = [*pairs, ("_offset", str(offset))] if offset else pairs
        return {"relation": relation, "url": f"{url}?{urlencode(with_offset)}".rstrip("?")}

    links = [link("self", query.offset)]
    if query.summary_count or query.count == 0:
        return links
    after = query.offset + query.count
    more = (
        result.total > after if result.total is not None else len(result.resources) == query.count
    )
    if more:
        links.append(link("next", after))
    if query.offset > 0:
        links.append(link("previous", max(0, query.offset - query.count)))
    return links


def searchset(
    request: Request,
    result: SearchResult,
    query: SearchQuery | None = None,
    *,
    paged_by: SearchResult | None = None,
) -> dict[str, Any]:
    """The searchset Bundle of one page of results (``query`` adds paging links and outcome).

    ``paged_by``: the page as the store returned it, before entries the caller
    may not see were taken out, so the ``next`` link still follows the store.
    """
    base = str(request.base_url).rstrip("/") + "/fhir"
    elements = query.elements if query is not None else None
    entries = [_entry(base, item, "match", elements) for item in result.resources]
    entries.extend(_entry(base, item, "include", None) for item in result.included)
    if query is not None and query.ignored:
        names = ", ".join(query.ignored)
        issue = Issue(f"ignored unknown or unsupported search parameters: {names}")
        outcome = operation_outcome([Issue(issue.message, "not-supported", "warning")])
        entries.append({"resource": outcome, "search": {"mode": "outcome"}})
    bundle: dict[str, Any] = {"resourceType": "Bundle", "type": "searchset"}
    if result.total is not None:
        bundle["total"] = result.total
    if query is None:
        bundle["link"] = [{"relation": "self", "url": str(request.url)}]
    else:
        bundle["link"] = _links(request, query, paged_by or result)
    bundle["entry"] = entries
    return bundle


def _lenient(request: Request) -> bool:
    """``Prefer: handling=lenient`` (FHIR R4 search.html#errors); strict is the default."""
    prefer = request.headers.get("prefer", "")
    return any(p.strip() == "handling=lenient" for p in prefer.split(","))


@router.get("/{resource_type}")
def search(request: Request, resource_type: str, context: ContextDep) -> Response:
    check_type(resource_type)
    query = parse_search(
        resource_type, request.query_params.multi_items(), lenient=_lenient(request)
    )
    with context.store.unit_of_work() as resources:
        result = resources.search(query)
    shown = visible_results(request, context, result)
    bundle = searchset(request, shown, query, paged_by=result)
    return Response(orjson.dumps(bundle), media_type=FHIR_JSON)
