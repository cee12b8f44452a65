"""Parse FHIR search query parameters into typed criteria (pure; no database).

FHIR R4 search.html, over the parameters :mod:`medhub.fhir.search_parameters`
serves: token (``code``, ``system|code``, ``|code``, ``system|``, ``:not``,
``:text``), string (prefix, ``:exact``, ``:contains``), date/number/quantity
with the prefixes eq ne lt le gt ge sa eb ap (partial dates and the implicit
precision range of numbers), reference (``Type/id``, ``id``, URL, ``:Type``),
uri (exact, ``:below``), ``:missing`` on every type, chains
(``subject:Patient.name=x``), reverse chains (``_has:Observation:patient:code=x``),
``_id`` and ``_lastUpdated``. Comma-separated values are ORed, repeated
parameters ANDed. Result parameters are parsed by :mod:`medhub.fhir.search_results`.

An unknown parameter or modifier is an error rather than silently ignored:
ignoring a filter returns more patients' data than the client asked for. With
``lenient=True`` (``Prefer: handling=lenient``) it is skipped and listed in
``SearchQuery.ignored`` so the response can say so.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import Final, Literal

from medhub.errors import InputError, Issue
from medhub.fhir.dates import parse_fhir_date_range
from medhub.fhir.indexing import normalize_string, split_reference
from medhub.fhir.search_parameters import SearchParam, search_param, unserved_param
from medhub.fhir.search_results import Include as Include
from medhub.fhir.search_results import SortKey as SortKey
from medhub.fhir.search_results import apply_result_parameter, bad

DEFAULT_COUNT: Final = 50
MAX_COUNT: Final = 1000
MAX_CHAIN_DEPTH: Final = 3

Prefix = Literal["eq", "ne", "lt", "le", "gt", "ge", "sa", "eb", "ap"]
DatePrefix = Prefix
_PREFIXES: Final = ("eq", "ne", "lt", "le", "gt", "ge", "sa", "eb", "ap")
Kind = Literal[
    "id",
    "last_updated",
    "token",
    "token_text",
    "string",
    "date",
    "reference",
    "quantity",
    "number",
    "uri",
    "missing",
    "chain",
    "has",
]


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


@dataclass(frozen=True, slots=True)
class NumberValue:
    """A number or quantity search value: the prefix, the value and its implicit range.

    ``100`` means ``[99.5, 100.5)`` (FHIR R4 search.html#number: the precision
    of the value given); ``ap`` widens it to 10 % either side.
    """

    prefix: Prefix
    value: float
    low: float
    high: float
    system: str | None = None  # quantity only: None any, else must equal
    code: str | None = None  # quantity only: matches the code (or the unit without system)


@dataclass(frozen=True, slots=True)
class UriValue:
    uri: str
    below: bool = False


@dataclass(frozen=True, slots=True)
class MissingValue:
    """``:missing=true|false`` on a parameter whose entries live in ``index`` rows."""

    index: str
    missing: bool


@dataclass(frozen=True, slots=True)
class ChainValue:
    """``param:Type.inner``: resources whose ``param`` points at a ``Type`` matching ``inner``."""

    target_type: str
    inner: Criterion


@dataclass(frozen=True, slots=True)
class HasValue:
    """``_has:Source:param:inner``: resources some ``Source`` points at via ``param``."""

    source_type: str
    param: str
    inner: Criterion


Value = (
    TokenValue
    | StringValue
    | DateValue
    | ReferenceValue
    | NumberValue
    | UriValue
    | MissingValue
    | ChainValue
    | HasValue
)


@dataclass(frozen=True, slots=True)
class Criterion:
    """One search parameter occurrence: its values are ORed; ``negate`` is token ``:not``."""

    param: str
    kind: Kind
    values: tuple[Value, ...] | tuple[str, ...]
    negate: bool = False


@dataclass(slots=True)
class SearchQuery:
    """A parsed search: criteria ANDed together, plus result parameters."""

    resource_type: str
    criteria: list[Criterion] = field(default_factory=list)
    count: int = DEFAULT_COUNT
    with_total: bool = True  # False skips the COUNT query (internal lookups need no total)
    offset: int = 0
    sort: tuple[SortKey, ...] = ()
    includes: tuple[Include, ...] = ()
    summary_count: bool = False  # ``_summary=count``: the total only, no entries
    elements: tuple[str, ...] | None = None
    ignored: list[str] = field(default_factory=list)  # lenient mode: parameters not applied
    used: list[tuple[str, str]] = field(default_factory=list)  # the pairs that were applied


def _unknown(resource_type: str, name: str, key: str) -> InputError:
    unserved = unserved_param(resource_type, name)
    if unserved is not None:
        return InputError(
            f"search parameter {name!r} on {resource_type} is not supported: {unserved.reason}",
            [Issue(f"{name}: {unserved.reason}", code="not-supported", expression=(key,))],
        )
    return bad(key, f"unknown search parameter {name!r} for {resource_type}")


def _parse_token(raw: str) -> TokenValue:
    if "|" not in raw:
        return TokenValue(None, raw)
    system, code = raw.split("|", 1)
    return TokenValue(system, code or None)


def _split_prefix(raw: str) -> tuple[Prefix, str]:
    if raw[:2] in _PREFIXES:
        return raw[:2], raw[2:]  # type: ignore[return-value]
    return "eq", raw


def _parse_date(param: str, raw: str) -> DateValue:
    prefix, text = _split_prefix(raw)
    try:
        low, high = parse_fhir_date_range(text)
    except InputError as exc:
        raise bad(param, f"search parameter {param}: {exc.message}") from exc
    return DateValue(prefix, low, high)


def _parse_number(param: str, raw: str) -> NumberValue:
    prefix, text = _split_prefix(raw)
    try:
        number = Decimal(text)
    except InvalidOperation as exc:
        raise bad(param, f"search parameter {param}: {text!r} is not a number") from exc
    if not number.is_finite():
        raise bad(param, f"search parameter {param}: {text!r} is not a number")
    exponent = number.as_tuple().exponent
    half = Decimal(5).scaleb(int(exponent) - 1)
    if prefix == "ap":
        half = max(half, abs(number) / 10)
    return NumberValue(prefix, float(number), float(number - half), float(number + half))


def _parse_quantity(param: str, raw: str) -> NumberValue:
    number, _, rest = raw.partition("|")
    parsed = _parse_number(param, number)
    if not rest:
        return parsed
    system, _, code = rest.partition("|")
    return NumberValue(
        parsed.prefix, parsed.value, parsed.low, parsed.high, system or None, code or None
    )


def _parse_reference(raw: str, target_type: str | None) -> ReferenceValue:
    found_type, found_id = split_reference(raw)
    if found_type is None and "/" not in raw and ":" not in raw:
        return ReferenceValue(target_type, raw, None)
    if found_type is None:
        return ReferenceValue(None, None, raw)
    return ReferenceValue(found_type, found_id, None)


def _chain(resource_type: str, key: str, raw: str, lenient: bool, depth: int) -> Criterion:
    """``subject:Patient.name=x`` / ``patient.name=x``: the chained criterion per target type."""
    head, _, rest = key.partition(".")
    name, _, type_modifier = head.partition(":")
    definition = search_param(resource_type, name)
    if definition is None or definition.type != "reference":
        raise bad(key, f"{name!r} is not a reference parameter of {resource_type}; cannot chain")
    if depth >= MAX_CHAIN_DEPTH:
        raise bad(key, f"chains are limited to {MAX_CHAIN_DEPTH} levels")
    targets = (type_modifier,) if type_modifier else definition.targets
    inner_name = rest.partition(".")[0].partition(":")[0]
    usable = [
        t for t in targets if inner_name in ("_id", "_lastUpdated") or search_param(t, inner_name)
    ]
    if not usable:
        raise bad(key, f"no target of {resource_type}.{name} has a parameter {inner_name!r}")
    values = tuple(
        ChainValue(t, criterion(t, rest, raw, lenient=lenient, depth=depth + 1)) for t in usable
    )
    return Criterion(name, "chain", values)


def _has(key: str, raw: str, lenient: bool, depth: int) -> Criterion:
    """``_has:Observation:patient:code=x`` (FHIR R4 search.html#has)."""
    parts = key.split(":", 3)
    if len(parts) != 4 or not all(parts[1:]):
        raise bad(key, f"{key!r} is not of the form _has:Type:reference:parameter")
    _, source_type, ref_name, inner_key = parts
    definition = search_param(source_type, ref_name)
    if definition is None or definition.type != "reference":
        raise bad(key, f"{ref_name!r} is not a reference parameter of {source_type}")
    if depth >= MAX_CHAIN_DEPTH:
        raise bad(key, f"_has is limited to {MAX_CHAIN_DEPTH} levels")
    inner = criterion(source_type, inner_key, raw, lenient=lenient, depth=depth + 1)
    return Criterion("_has", "has", (HasValue(source_type, ref_name, inner),))


def criterion(
    resource_type: str, key: str, raw: str, *, lenient: bool = False, depth: int = 0
) -> Criterion:
    """One ``key=value`` pair as a :class:`Criterion` on ``resource_type``."""
    if key.startswith("_has:"):
        return _has(key, raw, lenient, depth)
    if "." in key.partition("=")[0]:
        return _chain(resource_type, key, raw, lenient, depth)
    name, _, modifier = key.partition(":")
    values = [v for v in raw.split(",") if v != ""]
    if not values:
        raise bad(key, f"search parameter {key} has no value")
    if name == "_id" and not modifier:
        return Criterion(name, "id", tuple(values))
    if name == "_lastUpdated" and not modifier:
        return Criterion(name, "last_updated", tuple(_parse_date(key, v) for v in values))
    definition = search_param(resource_type, name)
    if definition is None:
        raise _unknown(resource_type, name, key)
    if modifier == "missing":
        if raw not in ("true", "false"):
            raise bad(key, f"{key} must be true or false, got {raw!r}")
        # each parameter type has its own index table, named like the type
        return Criterion(name, "missing", (MissingValue(definition.type, raw == "true"),))
    return _typed(definition, key, modifier, values)


def _typed(definition: SearchParam, key: str, modifier: str, values: list[str]) -> Criterion:
    """The criterion of a parameter of a given type (FHIR R4 search.html#ptypes, #modifiers)."""
    name, ptype = definition.name, definition.type
    if ptype == "token" and modifier in ("", "not"):
        return Criterion(name, "token", tuple(_parse_token(v) for v in values), modifier == "not")
    if ptype == "token" and modifier == "text":
        texts = tuple(StringValue(normalize_string(v), "prefix") for v in values)
        return Criterion(name, "token_text", texts)
    if ptype == "string" and modifier in ("", "exact", "contains"):
        mode: Literal["prefix", "exact", "contains"] = modifier or "prefix"  # type: ignore[assignment]
        strings = tuple(
            StringValue(v if mode == "exact" else normalize_string(v), mode) for v in values
        )
        return Criterion(name, "string", strings)
    if ptype == "reference" and (not modifier or modifier in definition.targets):
        refs = tuple(_parse_reference(v, modifier or None) for v in values)
        return Criterion(name, "reference", refs)
    if ptype == "uri" and modifier in ("", "below"):
        return Criterion(name, "uri", tuple(UriValue(v, modifier == "below") for v in values))
    if modifier:
        raise bad(key, f"modifier :{modifier} is not supported on {ptype} parameter {name}")
    if ptype == "date":
        return Criterion(name, "date", tuple(_parse_date(key, v) for v in values))
    if ptype == "number":
        return Criterion(name, "number", tuple(_parse_number(key, v) for v in values))
    return Criterion(name, "quantity", tuple(_parse_quantity(key, v) for v in values))


def parse_search(
    resource_type: str, params: Iterable[tuple[str, str]], *, lenient: bool = False
) -> SearchQuery:
    """Turn ``(name, value)`` query pairs into a :class:`SearchQuery`.

    ``lenient``: unknown or unsupported parameters are skipped and listed in
    ``ignored`` instead of raising (FHIR R4 search.html#errors, ``Prefer: handling``).
    """
    query = SearchQuery(resource_type)
    for key, raw in params:
        try:
            if apply_result_parameter(query, key, raw):
                query.used.append((key, raw))
                continue
            if key in ("_format", "_pretty"):
                continue
            query.criteria.append(criterion(resource_type, key, raw, lenient=lenient))
            query.used.append((key, raw))
        except InputError:
            if not lenient:
                raise
            query.ignored.append(key)
    return query
