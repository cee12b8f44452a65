"""``GET /fhir/metadata``: the CapabilityStatement, built from what the code really serves.

The resource types come from the canonical model, the search parameters from
the registry the indexer and the query parser use, so the statement cannot
advertise a parameter that a search would then refuse (FHIR R4
capabilitystatement.html; clients such as HAPI's read it before they search).
"""

from __future__ import annotations

from typing import Any, Final

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response

from medhub import __version__
from medhub.api.fhir_format import base_url, dumps, fhir_response, negotiate
from medhub.clinical.resources import RESOURCE_TYPES
from medhub.fhir.search_parameters import SEARCH_PARAMETERS

router = APIRouter(prefix="/fhir", dependencies=[Depends(negotiate)])

_TYPE_INTERACTIONS: Final = (
    "read",
    "vread",
    "update",
    "patch",
    "delete",
    "history-instance",
    "history-type",
    "create",
    "search-type",
)


def _search_params(resource_type: str) -> list[dict[str, Any]]:
    params = [
        {
            "name": "_id",
            "type": "token",
            "definition": "http://hl7.org/fhir/SearchParameter/Resource-id",
        }
    ]
    for param in SEARCH_PARAMETERS.get(resource_type, ()):
        entry: dict[str, Any] = {"name": param.name, "type": param.type}
        url = getattr(param, "url", None)
        if url:
            entry["definition"] = url
        params.append(entry)
    return params


def _references(resource_type: str) -> list[str]:
    """``Type:param`` for each reference parameter (what ``_include`` accepts)."""
    return [
        f"{resource_type}:{p.name}"
        for p in SEARCH_PARAMETERS.get(resource_type, ())
        if p.type == "reference"
    ]


def _rev_references(resource_type: str) -> list[str]:
    """``Source:param`` for each reference parameter that can point at this type."""
    return sorted(
        f"{source}:{p.name}"
        for source, params in SEARCH_PARAMETERS.items()
        for p in params
        if p.type == "reference" and (not p.targets or resource_type in p.targets)
    )


def capability_statement(base: str) -> dict[str, Any]:
    """The CapabilityStatement of this server (pure; the base URL is the only input)."""
    resources = [
        {
            "type": resource_type,
            "profile": f"http://hl7.org/fhir/StructureDefinition/{resource_type}",
            "interaction": [{"code": code} for code in _TYPE_INTERACTIONS],
            "versioning": "versioned-update",
            "readHistory": True,
            "updateCreate": True,
            "conditionalCreate": True,
            "conditionalRead": "not-supported",
            "conditionalUpdate": True,
            "conditionalDelete": "single",
            "searchInclude": ["*"] + _references(resource_type),
            "searchRevInclude": _rev_references(resource_type),
            "searchParam": _search_params(resource_type),
            **(
                {
                    "operation": [
                        {
                            "name": "everything",
                            "definition": "http://hl7.org/fhir/OperationDefinition/Patient-everything",
                        }
                    ]
                }
                if resource_type == "Patient"
                else {}
            ),
        }
        for resource_type in sorted(RESOURCE_TYPES)
    ]
    return {
        "resourceType": "CapabilityStatement",
        "status": "active",
        "date": "2026-11-22",
        "publisher": "medhub",
        "kind": "instance",
        "software": {"name": "medhub", "version": __version__},
        "implementation": {"description": "medhub FHIR R4 server", "url": base},
        "fhirVersion": "4.0.1",
        "format": ["application/fhir+json", "json"],
        "patchFormat": ["application/json-patch+json", "application/fhir+json"],
        "rest": [
            {
                "mode": "server",
                "resource": resources,
                "interaction": [
                    {"code": "transaction"},
                    {"code": "batch"},
                    {"code": "history-system"},
                ],
                "operation": [
                    {
                        "name": "validate",
                        "definition": "http://hl7.org/fhir/OperationDefinition/Resource-validate",
                    }
                ],
            }
        ],
    }


@router.get("/metadata")
def metadata(request: Request) -> Response:
    return fhir_response(request, dumps(capability_statement(base_url(request))))
