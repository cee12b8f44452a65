"""Parse FHIR search query parameters into typed criteria (pure; no database).

Supported so far (FHIR R4 search.html): token ``code``, ``system|code``,
``|code``, ``system|``; string prefix match (default), ``:exact`` and
``:contains``; date with the prefixes eq, ne, lt, le, gt, ge, sa, eb on partial
dates; reference as ``Type/id``, ``id`` or a URL; ``_id``; comma-separated
values are ORed and repeated parameters ANDed; ``_count``.

An unknown parameter is an error rather than silently ignored: ignoring a
filter returns more patients' data than the client asked for.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Final, Literal

from medhub.errors import InputError, Issue
from medhub.fhir.dates import parse_fhir_date_range
from medhub.fhir.indexing import normalize_string, split_reference
from medhub.fhir.search_parameters import search_param

DEFAULT_COUNT: Final = 50
MAX_COUNT: Final = 1000

DatePrefix = Literal["eq", "ne", "lt", "le", "gt", "ge", "sa", "eb"]
_DATE_PREFIXES: Final = ("eq", "ne", "lt", "le", "gt", "ge", "sa", "eb")


@dataclass(frozen=True, slots=True)
class TokenValue:
    system: str | None  # None: any system; "": no system
    code: str | None  # None: any code in the system


@dataclass(frozen=True, slots=True)
class StringValue:
    text: str
    mode: Literal["prefix", "exact", "contains"]


@dataclass(frozen=True, slots=True)
class DateValue:
    prefix: DatePrefix
    low: datetime
    high: datetime


@dataclass(frozen=True, slots=True)
class ReferenceValue:
    target_type: str | None
    target_id: str | None
    url: str | None


Value = TokenValue | StringValue | DateValue | ReferenceValue


@dataclass(frozen=True, slots=True)
class Criterion:
    """One search parameter occurrence: its values are ORed."""

    param: str
    kind: Literal["id", "token", "string", "date", "reference"]
    values: tuple[Value, ...] | tuple[str, ...]


@dataclass(slots=True)
class SearchQuery:
    """A parsed search: criteria ANDed together, plus result parameters."""

    resource_type: str
    criteria: list[Criterion] = field(default_factory=list)
    count: int = DEFAULT_COUNT
    with_total: bool = True  # False skips the COUNT query (internal lookups need no total)


def _bad(param: str, message: str) -> InputError:
    return InputError(message, [Issue(message, code="invalid", expression=(param,))])


def _parse_token(raw: str) -> TokenValue:
    if "|" not in raw:
        return TokenValue(None, raw)
    system, code = raw.split("|", 1)
    return TokenValue(system, code or None)


def _parse_date(param: str, raw: str) -> DateValue:
    prefix: DatePrefix = "eq"
    if raw[:2] in _DATE_PREFIXES and not raw[:2].isdigit():
        prefix = raw[:2]  # type: ignore[assignment]
        raw = raw[2:]
    try:
        low, high = parse_fhir_date_range(raw)
    except InputError as exc:
        raise _bad(param, f"search parameter {param}: {exc.message}") from exc
    return DateValue(prefix, low, high)


def _parse_reference(raw: str) -> ReferenceValue:
    target_type, target_id = split_reference(raw)
    if target_type is None and "/" not in raw and ":" not in raw:
        return ReferenceValue(None, raw, None)
    if target_type is None:
        return ReferenceValue(None, None, raw)
    return ReferenceValue(target_type, target_id, None)


def _criterion(resource_type: str, key: str, raw: str) -> Criterion:
    name, _, modifier = key.partition(":")
    values = [v for v in raw.split(",") if v != ""]
    if not values:
        raise _bad(key, f"search parameter {key} has no value")
    if name == "_id":
        return Criterion(name, "id", tuple(values))
    definition = search_param(resource_type, name)
    if definition is None:
        raise _bad(key, f"unknown search parameter {name!r} for {resource_type}")
    if definition.type == "token":
        if modifier:
            raise _bad(key, f"modifier :{modifier} is not supported on token {name}")
        return Criterion(name, "token", tuple(_parse_token(v) for v in values))
    if definition.type == "string":
        if modifier not in ("", "exact", "contains"):
            raise _bad(key, f"modifier :{modifier} is not supported on string {name}")
        mode: Literal["prefix", "exact", "contains"] = modifier or "prefix"  # type: ignore[assignment]
        texts = tuple(
            StringValue(v if mode == "exact" else normalize_string(v), mode) for v in values
        )
        return Criterion(name, "string", texts)
    if modifier:
        raise _bad(key, f"modifier :{modifier} is not supported on {definition.type} {name}")
    if definition.type == "date":
        return Criterion(name, "date", tuple(_parse_date(key, v) for v in values))
    return Criterion(name, "reference", tuple(_parse_reference(v) for v in values))


def parse_search(resource_type: str, params: Iterable[tuple[str, str]]) -> SearchQuery:
    """Turn ``(name, value)`` query pairs into a :class:`SearchQuery`."""
    query = SearchQuery(resource_type)
    for key, raw in params:
        if key == "_count":
            try:
                query.count = max(0, min(int(raw), MAX_COUNT))
            except ValueError as exc:
                raise _bad(key, f"_count must be a whole number, got {raw!r}") from exc
            continue
        if key in ("_format", "_pretty"):
            continue
        query.criteria.append(_criterion(resource_type, key, raw))
    return query
