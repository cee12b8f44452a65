"""FHIR searches as MongoDB filters over the embedded index arrays (pure; no I/O).

Each criterion becomes one ``$elemMatch`` on its index array (``tokens``,
``strings``, ``dates``, ``refs``, …; see :mod:`medhub.fhir.mongo_documents`)
with the parameter name and an ``$or`` of the criterion's values, so all conditions
of one value hold on the *same* index entry, as the SQL store's per-row
conditions do. ``_id`` and ``_lastUpdated`` test the document's own ``id``
and ``lastUpdated``. Criteria are ANDed (FHIR R4 search.html#combining). The
semantics, prefixes included, are those of :mod:`medhub.fhir.sql_search`.

Served: ``_id``, ``_lastUpdated``, token (``:not``, ``:text``), string
(prefix, ``:exact``, ``:contains``), date (every prefix, ``ap`` included),
reference, quantity, number and uri (``:below``) criteria, ``:missing`` on
any of them; ``_count``, paging by ``offset``, the total (``with_total``,
``_summary=count``), ``_sort`` (:func:`sort_stages`), ``_include`` and
``_revinclude`` (:mod:`medhub.fhir.mongo_includes`). Not yet: chaining,
``_has`` and ``_elements``, which are refused.

Anything in a :class:`SearchQuery` this module does not know (a new criterion
kind, a new query or value field set away from its default) raises
:class:`InputError` instead of being dropped: ignoring a filter returns more
patients' data than the client asked for.
"""

from __future__ import annotations

import dataclasses
import re
from datetime import datetime
from typing import Any, Final

from medhub.errors import InputError, Issue
from medhub.fhir.mongo_documents import INDEX_ARRAYS, ceil_ms, floor_ms
from medhub.fhir.search import (
    Criterion,
    DateValue,
    MissingValue,
    NumberValue,
    ReferenceValue,
    SearchQuery,
    StringValue,
    TokenValue,
    UriValue,
)

#: Sort order of search results: newest first, then by id (as the SQL store).
SEARCH_SORT: Final = [("lastUpdated", -1), ("id", 1)]

#: Query fields this back-end applies (paging, total, sort and includes in the store's
#: search), and the parser's bookkeeping (which pairs were applied or, leniently, left
#: out), which selects nothing. Any other field set away from its default is refused.
_QUERY_FIELDS: Final = frozenset(
    {"resource_type", "criteria", "count", "with_total", "offset", "summary_count", "includes"}
    | {"sort"}
    | {"used", "ignored"}
)
_INCLUDE_FIELDS: Final = frozenset({"source_type", "param", "target_type", "reverse", "iterate"})
_SORT_KEY_FIELDS: Final = frozenset({"param", "kind", "descending"})
#: The entry field a ``_sort`` key reads, per index kind (ascending, descending), as the
#: SQL store's ``_SORT_COLUMNS``: a date sorts by its range's start up, its end down.
_SORT_FIELDS: Final = {
    "token": ("c", "c"),
    "string": ("n", "n"),
    "date": ("lo", "hi"),
    "reference": ("u", "u"),
    "quantity": ("v", "v"),
    "number": ("v", "v"),
    "uri": ("u", "u"),
}
_CRITERION_FIELDS: Final = frozenset({"param", "kind", "values", "negate"})
_VALUE_TYPES: Final[dict[str, tuple[type, frozenset[str]]]] = {
    "token": (TokenValue, frozenset({"system", "code"})),
    "string": (StringValue, frozenset({"text", "mode"})),
    "date": (DateValue, frozenset({"prefix", "low", "high"})),
    "last_updated": (DateValue, frozenset({"prefix", "low", "high"})),
    "reference": (ReferenceValue, frozenset({"target_type", "target_id", "url"})),
    "token_text": (StringValue, frozenset({"text", "mode"})),
    "quantity": (NumberValue, frozenset({"prefix", "value", "low", "high", "system", "code"})),
    "number": (NumberValue, frozenset({"prefix", "value", "low", "high", "system", "code"})),
    "uri": (UriValue, frozenset({"uri", "below"})),
    "missing": (MissingValue, frozenset({"index", "missing"})),
}
_STRING_MODES: Final = frozenset({"prefix", "exact", "contains"})
_PREFIXES: Final = frozenset({"eq", "ne", "ap", "lt", "le", "gt", "ge", "sa", "eb"})


def _unsupported(what: str, expression: str) -> InputError:
    message = f"{what} is not supported on the MongoDB back-end"
    return InputError(message, [Issue(message, code="not-supported", expression=(expression,))])


def _non_default_fields(obj: Any, known: frozenset[str]) -> list[str]:
    """Dataclass fields outside ``known`` whose value is not the field's default.

    A field without a default is always reported: whatever it means, this
    back-end does not know how to honour it.
    """
    unknown = []
    for item in dataclasses.fields(obj):
        if item.name in known:
            continue
        if item.default is not dataclasses.MISSING:
            default = item.default
        elif item.default_factory is not dataclasses.MISSING:
            default = item.default_factory()
        else:
            unknown.append(item.name)
            continue
        if getattr(obj, item.name) != default:
            unknown.append(item.name)
    return unknown


def check_supported(query: SearchQuery) -> None:
    """Raise :class:`InputError` for any part of ``query`` this back-end would not apply."""
    for name in _non_default_fields(query, _QUERY_FIELDS):
        raise _unsupported(f"search result parameter {name!r}", name)
    for criterion in query.criteria:
        _check_criterion(criterion)
    for include in query.includes:
        for name in _non_default_fields(include, _INCLUDE_FIELDS):
            raise _unsupported(f"{name!r} on _include", "_include")
    for key in query.sort:
        for name in _non_default_fields(key, _SORT_KEY_FIELDS):
            raise _unsupported(f"{name!r} on _sort", "_sort")
        if key.kind not in _SORT_FIELDS and key.kind not in ("id", "last_updated"):
            raise _unsupported(f"sorting by {key.kind} {key.param}", "_sort")


def _check_criterion(criterion: Criterion) -> None:
    for name in _non_default_fields(criterion, _CRITERION_FIELDS):
        raise _unsupported(f"{name!r} on search parameter {criterion.param}", criterion.param)
    if criterion.kind == "id":
        if not all(isinstance(v, str) for v in criterion.values):
            raise _unsupported(f"the values of {criterion.param}", criterion.param)
        return
    if criterion.kind not in _VALUE_TYPES:
        raise _unsupported(f"{criterion.kind} search ({criterion.param})", criterion.param)
    value_type, known = _VALUE_TYPES[criterion.kind]
    for value in criterion.values:
        if type(value) is not value_type:
            raise _unsupported(f"the values of {criterion.param}", criterion.param)
        for name in _non_default_fields(value, known):
            raise _unsupported(f"{name!r} on search parameter {criterion.param}", criterion.param)
        if isinstance(value, StringValue) and value.mode not in _STRING_MODES:
            raise _unsupported(f"modifier :{value.mode} on {criterion.param}", criterion.param)
        prefix = getattr(value, "prefix", None)
        if prefix is not None and prefix not in _PREFIXES:
            raise _unsupported(f"prefix {prefix} on {criterion.param}", criterion.param)
        if isinstance(value, MissingValue) and value.index not in INDEX_ARRAYS:
            raise _unsupported(f":missing on {value.index} {criterion.param}", criterion.param)


def _token(value: TokenValue) -> dict[str, Any]:
    condition: dict[str, Any] = {}
    if value.code is not None:
        condition["c"] = value.code
    if value.system == "":
        condition["s"] = None  # "|code": the token has no system
    elif value.system is not None:
        condition["s"] = value.system
    return condition


def _string(value: StringValue, normalized: str = "n", exact: str = "e") -> dict[str, Any]:
    """Exact on the stored text; prefix/contains on the normalized form, regex-escaped.

    An anchored prefix (``^…``) lets MongoDB use the index bounds of ``strings.n``.
    Token ``:text`` passes the token's one text field ``x`` for both, as the SQL
    store passes its ``text`` column twice.
    """
    if value.mode == "exact":
        return {exact: value.text}
    escaped = re.escape(value.text)
    return {normalized: {"$regex": escaped if value.mode == "contains" else f"^{escaped}"}}


def _number(value: NumberValue) -> dict[str, Any]:
    """Number and quantity: FHIR R4 search.html#number/#quantity, as ``sql_search._number_sql``.

    ``eq``/``ne`` test the implicit range ``[low, high)`` of the value's
    precision, ``ap`` the widened range ``[low, high]``; a quantity's system
    must equal, its code matches the code, or the unit when no system is given.
    """
    clauses: list[dict[str, Any]]
    match value.prefix:
        case "eq":
            clauses = [{"v": {"$gte": value.low, "$lt": value.high}}]
        case "ne":
            clauses = [{"$or": [{"v": {"$lt": value.low}}, {"v": {"$gte": value.high}}]}]
        case "ap":
            clauses = [{"v": {"$gte": value.low, "$lte": value.high}}]
        case "lt" | "eb":
            clauses = [{"v": {"$lt": value.value}}]
        case "le":
            clauses = [{"v": {"$lte": value.value}}]
        case "gt" | "sa":
            clauses = [{"v": {"$gt": value.value}}]
        case _:  # "ge"
            clauses = [{"v": {"$gte": value.value}}]
    if value.system is not None:
        clauses.append({"s": value.system})
        if value.code is not None:
            clauses.append({"c": value.code})
    elif value.code is not None:
        clauses.append({"$or": [{"c": value.code}, {"u": value.code}]})
    return clauses[0] if len(clauses) == 1 else {"$and": clauses}


def _uri(value: UriValue) -> dict[str, Any]:
    """Equality, or ``:below`` as an anchored, escaped prefix (FHIR R4 search.html#uri)."""
    if value.below:
        return {"u": {"$regex": f"^{re.escape(value.uri)}"}}
    return {"u": value.uri}


def _date(value: DateValue, lo: str = "lo", hi: str = "hi") -> dict[str, Any]:
    """FHIR R4 search.html#prefix on ranges ``[lo, hi)``, exactly as ``sql_search._date_sql``.

    ``lo`` and ``hi`` name the fields holding the ends of the stored range;
    ``_lastUpdated`` passes the one ``lastUpdated`` field for both, as the SQL
    store passes its ``last_updated`` column twice.
    """
    low, high = floor_ms(value.low), ceil_ms(value.high)
    conditions: list[tuple[str, str, datetime]]
    match value.prefix:
        case "eq":
            conditions = [(lo, "$gte", low), (hi, "$lte", high)]
        case "ne":  # not eq; both ends are always present, so De Morgan is exact
            return {"$or": [{lo: {"$lt": low}}, {hi: {"$gt": high}}]}
        case "ap":
            conditions = [(hi, "$gt", low), (lo, "$lt", high)]
        case "lt":
            conditions = [(lo, "$lt", low)]
        case "le":
            conditions = [(lo, "$lt", high)]
        case "gt":
            conditions = [(hi, "$gt", high)]
        case "ge":
            conditions = [(hi, "$gt", low)]
        case "sa":
            conditions = [(lo, "$gte", high)]
        case _:  # "eb"
            conditions = [(hi, "$lte", low)]
    merged: dict[str, Any] = {}
    for name, operator, bound in conditions:
        merged.setdefault(name, {})[operator] = bound
    return merged


def _reference(value: ReferenceValue) -> dict[str, Any]:
    if value.url is not None:
        return {"u": value.url}
    condition: dict[str, Any] = {"i": value.target_id}
    if value.target_type is not None:
        condition["t"] = value.target_type
    return condition


def _value(kind: str, value: Any) -> dict[str, Any]:
    """The conditions one value puts on one index entry (kinds checked by check_supported)."""
    match kind:
        case "token":
            return _token(value)
        case "token_text":
            return _string(value, "x", "x")
        case "string":
            return _string(value)
        case "date":
            return _date(value)
        case "reference":
            return _reference(value)
        case "uri":
            return _uri(value)
        case _:  # "number", "quantity"
            return _number(value)


def _any(conditions: list[dict[str, Any]]) -> dict[str, Any]:
    return conditions[0] if len(conditions) == 1 else {"$or": conditions}


def _criterion_filter(criterion: Criterion) -> dict[str, Any]:
    kind = criterion.kind
    if kind == "id":
        return {"id": {"$in": [str(v) for v in criterion.values]}}
    if kind == "last_updated":
        dates = [
            _date(v, "lastUpdated", "lastUpdated")
            for v in criterion.values
            if isinstance(v, DateValue)
        ]
        return _any(dates)
    if kind == "missing":
        tests = []
        for value in criterion.values:
            assert isinstance(value, MissingValue)
            present = {INDEX_ARRAYS[value.index]: {"$elemMatch": {"p": criterion.param}}}
            tests.append({"$nor": [present]} if value.missing else present)
        return _any(tests)
    conditions = [_value(kind, value) for value in criterion.values]
    match: dict[str, Any] = {"p": criterion.param}
    if len(conditions) == 1:
        match.update(conditions[0])
    else:
        match["$or"] = conditions
    found = {INDEX_ARRAYS[kind]: {"$elemMatch": match}}
    # ``:not``: no entry matches, resources without any entry of the parameter included
    # (FHIR R4 search.html#modifiers), as the SQL store's ``NOT IN``.
    return {"$nor": [found]} if criterion.negate else found


def search_filter(query: SearchQuery) -> dict[str, Any]:
    """The filter on ``resources`` selecting the current, non-deleted matches of ``query``.

    Raises :class:`InputError` if the query asks for anything this back-end
    does not implement (see :func:`check_supported`).
    """
    check_supported(query)
    selector: dict[str, Any] = {"type": query.resource_type, "deleted": False}
    criteria = [_criterion_filter(c) for c in query.criteria]
    if criteria:
        selector["$and"] = criteria
    return selector


def sort_stages(query: SearchQuery) -> list[dict[str, Any]]:
    """Aggregation stages ordering the matches by ``query.sort`` (``[]``: the default order).

    As the SQL store: a parameter's key is the smallest of its entries going up,
    the largest going down; resources without one come last either way; ties
    fall back to the id. The keys are computed per document (``$filter`` on the
    parameter, ``$map`` to the field, ``$min``/``$max``, the missing flag) one
    ``$addFields`` stage each rather than nested, a form mongomock evaluates
    too. MongoDB runs ``$sort`` + ``$limit`` as a top-k sort: one pass over the
    matches, not a sort of the whole collection.
    """
    if not query.sort:
        return []
    filters: dict[str, Any] = {}
    values: dict[str, Any] = {}
    keys: dict[str, Any] = {}
    missing_flags: dict[str, Any] = {}
    order: dict[str, int] = {}
    for number, key in enumerate(query.sort):
        direction = -1 if key.descending else 1
        if key.kind in ("id", "last_updated"):
            order.setdefault("id" if key.kind == "id" else "lastUpdated", direction)
            continue
        entries, values_of, key_of, missing = (f"_s{number}{part}" for part in "evkm")
        field = _SORT_FIELDS[key.kind][1 if key.descending else 0]
        filters[entries] = {
            "$filter": {
                "input": f"${INDEX_ARRAYS[key.kind]}",
                "as": "entry",
                "cond": {"$eq": ["$$entry.p", key.param]},
            }
        }
        values[values_of] = {
            "$map": {"input": f"${entries}", "as": "entry", "in": f"$$entry.{field}"}
        }
        keys[key_of] = {"$max" if key.descending else "$min": f"${values_of}"}
        missing_flags[missing] = {
            "$cond": [{"$eq": [{"$ifNull": [f"${key_of}", None]}, None]}, 1, 0]
        }
        order[missing] = 1
        order[key_of] = direction
    order.setdefault("id", 1)
    stages: list[dict[str, Any]] = []
    if filters:
        stages = [filters, values, keys, missing_flags]
    return [*({"$addFields": fields} for fields in stages), {"$sort": order}]
