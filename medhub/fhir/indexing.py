"""Extract search-index entries from a FHIR resource (pure; no database).

The SQL store writes these entries into its token, string, date and reference
index tables whenever a resource version is stored, so a search is an indexed
lookup rather than a scan of JSON bodies. Extraction follows FHIR R4
search.html: tokens from Coding/CodeableConcept/Identifier/ContactPoint/code,
strings from text and the parts of HumanName and Address, dates as ranges,
references split into type and id.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from medhub.errors import InputError
from medhub.fhir.dates import parse_fhir_date_range
from medhub.fhir.search_parameters import SEARCH_PARAMETERS, SearchParam

MAX_INDEXED_CHARS = 255
#: The range every back-end can store (MariaDB DATETIME starts at year 1000).
FAR_PAST = datetime(1000, 1, 1, tzinfo=UTC)
FAR_FUTURE = datetime(9999, 12, 31, tzinfo=UTC)


@dataclass(frozen=True, slots=True)
class TokenEntry:
    param: str
    system: str | None
    code: str


@dataclass(frozen=True, slots=True)
class StringEntry:
    param: str
    normalized: str
    exact: str


@dataclass(frozen=True, slots=True)
class DateEntry:
    param: str
    low: datetime
    high: datetime


@dataclass(frozen=True, slots=True)
class ReferenceEntry:
    param: str
    target_type: str | None
    target_id: str | None
    url: str


@dataclass(slots=True)
class IndexEntries:
    """All index entries of one resource version."""

    tokens: list[TokenEntry] = field(default_factory=list)
    strings: list[StringEntry] = field(default_factory=list)
    dates: list[DateEntry] = field(default_factory=list)
    references: list[ReferenceEntry] = field(default_factory=list)


def normalize_string(value: str) -> str:
    """Case- and accent-insensitive form used for string search (FHIR R4 search.html#string)."""
    decomposed = unicodedata.normalize("NFKD", value)
    stripped = "".join(ch for ch in decomposed if not unicodedata.combining(ch))
    return " ".join(stripped.casefold().split())[:MAX_INDEXED_CHARS]


def split_reference(reference: str) -> tuple[str | None, str | None]:
    """``Patient/123`` or ``http://x/fhir/Patient/123/_history/2`` -> (``Patient``, ``123``)."""
    parts = reference.split("/")
    if "_history" in parts:
        parts = parts[: parts.index("_history")]
    if len(parts) >= 2 and parts[-2][:1].isupper() and parts[-1]:
        return parts[-2], parts[-1]
    return None, None


def _walk(node: Any, path: list[str]) -> Iterator[Any]:
    """Every value at ``path`` below ``node``, flattening lists on the way."""
    if isinstance(node, list):
        for item in node:
            yield from _walk(item, path)
        return
    if not path:
        yield node
        return
    if isinstance(node, Mapping) and path[0] in node:
        yield from _walk(node[path[0]], path[1:])


def _tokens(param: str, value: Any) -> Iterator[TokenEntry]:
    if isinstance(value, bool):
        yield TokenEntry(param, None, "true" if value else "false")
    elif isinstance(value, str):
        yield TokenEntry(param, None, value[:MAX_INDEXED_CHARS])
    elif isinstance(value, Mapping):
        if "coding" in value:
            for coding in value.get("coding") or []:
                yield from _tokens(param, coding)
        code = value.get("code", value.get("value"))
        if isinstance(code, str):
            system = value.get("system")
            yield TokenEntry(
                param,
                system[:MAX_INDEXED_CHARS] if isinstance(system, str) else None,
                code[:MAX_INDEXED_CHARS],
            )


_STRING_PARTS = (
    "text",
    "family",
    "given",
    "prefix",
    "suffix",
    "line",
    "city",
    "district",
    "state",
    "postalCode",
    "country",
)


def _strings(param: str, value: Any) -> Iterator[StringEntry]:
    if isinstance(value, str):
        if value.strip():
            yield StringEntry(param, normalize_string(value), value[:MAX_INDEXED_CHARS])
    elif isinstance(value, list):
        for item in value:
            yield from _strings(param, item)
    elif isinstance(value, Mapping):
        for key in _STRING_PARTS:
            if key in value:
                yield from _strings(param, value[key])


def _dates(param: str, value: Any) -> Iterator[DateEntry]:
    try:
        if isinstance(value, str):
            low, high = parse_fhir_date_range(value)
        elif isinstance(value, Mapping) and ("start" in value or "end" in value):
            low = parse_fhir_date_range(value["start"])[0] if "start" in value else FAR_PAST
            high = parse_fhir_date_range(value["end"])[1] if "end" in value else FAR_FUTURE
        else:
            return
        yield DateEntry(param, max(low, FAR_PAST), min(high, FAR_FUTURE))
    except InputError:
        return  # validated resources have valid dates; be lenient with anything else


def _references(search: SearchParam, value: Any) -> Iterator[ReferenceEntry]:
    if isinstance(value, Mapping) and isinstance(value.get("reference"), str):
        url = value["reference"]
        target_type, target_id = split_reference(url)
        if search.target is not None and target_type != search.target:
            return
        yield ReferenceEntry(search.name, target_type, target_id, url[:MAX_INDEXED_CHARS])


def extract_index_entries(resource: Mapping[str, Any]) -> IndexEntries:
    """The index entries for every parameter medhub defines on this resource's type."""
    entries = IndexEntries()
    for search in SEARCH_PARAMETERS.get(str(resource.get("resourceType")), ()):
        for path in search.paths:
            for value in _walk(resource, path.split(".")):
                if search.type == "token":
                    entries.tokens.extend(_tokens(search.name, value))
                elif search.type == "string":
                    entries.strings.extend(_strings(search.name, value))
                elif search.type == "date":
                    entries.dates.extend(_dates(search.name, value))
                else:
                    entries.references.extend(_references(search, value))
    return entries
