"""The search parameters medhub serves, driven by the official FHIR R4 SearchParameter definitions.

``medhub/fhir/data/search_parameters.json`` is generated from the HL7 package
``hl7.fhir.r4.examples@4.0.1`` (CC0) by ``tools/vendor_search_parameters.py``;
it holds, per resource type, each parameter's code, type, FHIRPath expression,
reference targets and canonical URL. At import every expression is compiled by
:mod:`medhub.fhir.fhirpath_compile`; a parameter is *served* when its type has
an index (token, string, date, reference, quantity, number, uri) and its
expression compiles. The others (composite and special types, expressions
outside the subset, ``_text``/``_content``) are kept in :data:`NOT_SERVED` so a
search on them is a 400 that names them rather than an unknown parameter.

``_id`` and ``_lastUpdated`` are answered from the resource table itself and
are not indexed (see :mod:`medhub.fhir.sql_search`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from importlib import resources
from typing import Any, Final, Literal

from medhub.fhir.fhirpath_compile import Path, compile_expression

ParamType = Literal["token", "string", "date", "reference", "quantity", "number", "uri"]
_INDEXED_TYPES: Final = frozenset(
    {"token", "string", "date", "reference", "quantity", "number", "uri"}
)
#: Answered from ``fhir_resource`` columns, never from index rows.
RESOURCE_COLUMNS: Final = frozenset({"_id", "_lastUpdated"})
_COMMON_BASES: Final = ("DomainResource", "Resource")


@dataclass(frozen=True, slots=True)
class SearchParam:
    """One served FHIR search parameter: code, type, compiled expression, reference targets."""

    name: str
    type: ParamType
    paths: tuple[Path, ...]
    targets: tuple[str, ...] = ()
    url: str = ""
    expression: str = ""
    #: The top-level elements the paths start from (a choice element by its name, ``value``).
    roots: frozenset[str] = frozenset()

    @property
    def target(self) -> str | None:
        """The only target type of a reference parameter, if it has exactly one."""
        return self.targets[0] if len(self.targets) == 1 else None


@dataclass(frozen=True, slots=True)
class UnservedParam:
    """A parameter FHIR defines on a type that medhub does not index, and why."""

    name: str
    type: str
    reason: str


def _load() -> dict[str, Any]:
    text = resources.files("medhub.fhir").joinpath("data/search_parameters.json").read_text()
    document: dict[str, Any] = json.loads(text)
    return document["parameters"]  # type: ignore[no-any-return]


def _build(
    definitions: dict[str, Any], resource_types: list[str]
) -> tuple[dict[str, tuple[SearchParam, ...]], dict[str, dict[str, UnservedParam]]]:
    served: dict[str, tuple[SearchParam, ...]] = {}
    unserved: dict[str, dict[str, UnservedParam]] = {}
    for resource_type in resource_types:
        found: dict[str, SearchParam] = {}
        missing: dict[str, UnservedParam] = {}
        items = [
            *definitions.get(resource_type, []),
            *(d for base in _COMMON_BASES for d in definitions.get(base, [])),
        ]
        for item in items:
            code, ptype, expression = item["code"], item["type"], item["expression"]
            if code in RESOURCE_COLUMNS or code in found:
                continue
            paths = compile_expression(expression) if expression else None
            if ptype not in _INDEXED_TYPES:
                missing[code] = UnservedParam(code, ptype, f"{ptype} parameters are not supported")
            elif not expression:
                missing[code] = UnservedParam(code, ptype, "FHIR gives it no FHIRPath expression")
            elif paths is None:
                reason = f"expression {expression!r} is outside the supported FHIRPath subset"
                missing[code] = UnservedParam(code, ptype, reason)
            else:
                roots = frozenset(p[0].key for p in paths)
                found[code] = SearchParam(
                    code,
                    ptype,
                    paths,
                    tuple(item.get("target", ())),
                    item["url"],
                    expression,
                    roots,
                )
        served[resource_type] = tuple(found.values())
        unserved[resource_type] = missing
    return served, unserved


_DEFINITIONS: Final = _load()
_TYPES: Final = sorted(t for t in _DEFINITIONS if t not in _COMMON_BASES)

_BUILT: Final = _build(_DEFINITIONS, _TYPES)
SEARCH_PARAMETERS: Final[dict[str, tuple[SearchParam, ...]]] = _BUILT[0]
#: Per type, the parameters FHIR defines that medhub does not serve, with the reason.
NOT_SERVED: Final[dict[str, dict[str, UnservedParam]]] = _BUILT[1]
_BY_NAME: Final = {t: {p.name: p for p in params} for t, params in SEARCH_PARAMETERS.items()}


def search_param(resource_type: str, name: str) -> SearchParam | None:
    """The definition of ``name`` on ``resource_type``, or None if medhub does not index it."""
    return _BY_NAME.get(resource_type, {}).get(name)


def unserved_param(resource_type: str, name: str) -> UnservedParam | None:
    """Why FHIR's parameter ``name`` on ``resource_type`` is not served (None: not unserved)."""
    return NOT_SERVED.get(resource_type, {}).get(name)
