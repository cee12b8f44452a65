"""SQL for FHIR searches over the index tables (FHIR R4 search.html).

Each criterion becomes ``res_id IN (SELECT res_id FROM <index table> WHERE
param = … AND (<value> OR <value> …))``; criteria are ANDed.

Statements are cached by the *shape* of a search (which parameters, how many
values, which prefixes and modifiers) with every value a bound parameter:
building a SQLAlchemy statement and its cache key costs about five times more
than executing a prebuilt one (measured: 120 µs against 24 µs per lookup on
SQLite), and the inbound HL7 path runs identifier searches for every message.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final

from sqlalchemy import (
    BindParameter,
    ColumnElement,
    Select,
    and_,
    bindparam,
    false,
    func,
    not_,
    or_,
    select,
)
from sqlalchemy.engine import Connection

from medhub.fhir.search import (
    DateValue,
    ReferenceValue,
    SearchQuery,
    StringValue,
    TokenValue,
)
from medhub.fhir.sql_tables import (
    DateIndexRow,
    ReferenceIndexRow,
    ResourceRow,
    StringIndexRow,
    TokenIndexRow,
)
from medhub.fhir.store import SearchResult, StoredResource

Shape = tuple[Any, ...]
_CACHE_LIMIT: Final = 1024


class _Binder:
    """Hands out bound parameters p0, p1, … in the order the builder asks for them."""

    def __init__(self) -> None:
        self.count = 0

    def __call__(self) -> BindParameter[Any]:
        name = f"p{self.count}"
        self.count += 1
        return bindparam(name)


@dataclass(frozen=True, slots=True)
class SearchStatements:
    """The page query and (if asked) the count query of one search shape."""

    page: Select[Any]
    total: Select[Any] | None


def _token_shape(value: TokenValue) -> Shape:
    system = "any" if value.system is None else ("none" if value.system == "" else "eq")
    return (system, value.code is not None)


def _token_values(value: TokenValue) -> list[Any]:
    values: list[Any] = [value.code] if value.code is not None else []
    if value.system:
        values.append(value.system)
    return values


def _token_sql(shape: Shape, bind: _Binder) -> ColumnElement[bool]:
    system, has_code = shape
    parts: list[ColumnElement[bool]] = []
    if has_code:
        parts.append(TokenIndexRow.code == bind())
    if system == "none":
        parts.append(TokenIndexRow.system.is_(None))
    elif system == "eq":
        parts.append(TokenIndexRow.system == bind())
    return and_(*parts)


def _string_values(value: StringValue) -> list[Any]:
    if value.mode == "exact":
        return [value.text]
    escaped = value.text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return [f"%{escaped}%" if value.mode == "contains" else f"{escaped}%"]


def _string_sql(shape: str, bind: _Binder) -> ColumnElement[bool]:
    if shape == "exact":
        return StringIndexRow.exact == bind()
    return StringIndexRow.normalized.like(bind(), escape="\\")


#: For each date prefix, which ends of the searched range it binds (FHIR R4 search.html#prefix).
_DATE_BOUNDS: Final = {
    "eq": ("low", "high"),
    "ne": ("low", "high"),
    "lt": ("low",),
    "le": ("high",),
    "gt": ("high",),
    "ge": ("low",),
    "sa": ("high",),
    "eb": ("low",),
}


def _date_values(value: DateValue) -> list[Any]:
    return [getattr(value, end) for end in _DATE_BOUNDS[value.prefix]]


def _date_sql(prefix: str, bind: _Binder) -> ColumnElement[bool]:
    low, high = DateIndexRow.low, DateIndexRow.high
    match prefix:
        case "eq":
            return and_(low >= bind(), high <= bind())
        case "ne":
            return not_(and_(low >= bind(), high <= bind()))
        case "lt":
            return low < bind()
        case "le":
            return low < bind()
        case "gt":
            return high > bind()
        case "ge":
            return high > bind()
        case "sa":
            return low >= bind()
        case _:  # "eb"
            return high <= bind()


def _reference_shape(value: ReferenceValue) -> Shape:
    return ("url",) if value.url is not None else ("id", value.target_type is not None)


def _reference_values(value: ReferenceValue) -> list[Any]:
    if value.url is not None:
        return [value.url]
    return [value.target_id] + ([value.target_type] if value.target_type is not None else [])


def _reference_sql(shape: Shape, bind: _Binder) -> ColumnElement[bool]:
    if shape[0] == "url":
        return ReferenceIndexRow.url == bind()
    parts: list[ColumnElement[bool]] = [ReferenceIndexRow.target_id == bind()]
    if shape[1]:
        parts.append(ReferenceIndexRow.target_type == bind())
    return and_(*parts)


_KINDS: Final[
    dict[
        str,
        tuple[
            Any,
            Callable[[Any], Shape],
            Callable[[Any], list[Any]],
            Callable[[Any, _Binder], ColumnElement[bool]],
        ],
    ]
] = {
    "token": (TokenIndexRow, _token_shape, _token_values, _token_sql),
    "string": (StringIndexRow, lambda v: v.mode, _string_values, _string_sql),
    "date": (DateIndexRow, lambda v: v.prefix, _date_values, _date_sql),
    "reference": (ReferenceIndexRow, _reference_shape, _reference_values, _reference_sql),
}


def _shape_and_values(query: SearchQuery) -> tuple[Shape, list[Any]]:
    """The search's shape (the cache key) and its values, in the order they are bound."""
    values: list[Any] = [query.resource_type]
    shapes: list[Shape] = []
    for criterion in query.criteria:
        if criterion.kind == "id":
            shapes.append(("id", len(criterion.values)))
            values.extend(str(v) for v in criterion.values)
            continue
        _, shape_of, values_of, _ = _KINDS[criterion.kind]
        shapes.append((criterion.kind, tuple(shape_of(v) for v in criterion.values)))
        values.append(criterion.param)
        if _codes_prefilter(criterion.kind, shapes[-1][1]):
            values.extend(v.code for v in criterion.values if isinstance(v, TokenValue))
        for value in criterion.values:
            values.extend(values_of(value))
    return (tuple(shapes), query.count, query.with_total), values


def _criterion_sql(shape: Shape, bind: _Binder, res_type: Any) -> ColumnElement[bool]:
    kind, detail = shape
    if kind == "id":
        return ResourceRow.res_id.in_([bind() for _ in range(detail)])
    table, _, _, build = _KINDS[kind]
    param = bind()
    conditions = [table.res_type == res_type, table.param == param]
    if _codes_prefilter(kind, detail):
        conditions.append(table.code.in_([bind() for _ in detail]))
    conditions.append(or_(*(build(value_shape, bind) for value_shape in detail)))
    return ResourceRow.res_id.in_(select(table.res_id).where(*conditions))


def _codes_prefilter(kind: str, detail: Shape) -> bool:
    """Several token values that all name a code get ``code IN (…)`` ahead of their OR.

    An OR of ``(code AND system)`` pairs defeats the (type, param, code) index on
    SQLite, so looking a patient up by two PID-3 identifiers scanned every
    identifier row (260 lookups/s against 3,900 for one identifier, measured).
    """
    return kind == "token" and len(detail) > 1 and all(has_code for _, has_code in detail)


def _build(shape: Shape) -> SearchStatements:
    criteria_shapes, count, with_total = shape
    bind = _Binder()
    res_type = bind()
    conditions: list[ColumnElement[bool]] = [
        ResourceRow.res_type == res_type,
        ResourceRow.deleted == false(),
    ]
    conditions.extend(_criterion_sql(s, bind, res_type) for s in criteria_shapes)
    where = and_(*conditions)
    page = (
        select(ResourceRow.__table__)
        .where(where)
        .order_by(ResourceRow.last_updated.desc(), ResourceRow.res_id)
        .limit(count)
    )
    total = select(func.count()).select_from(ResourceRow.__table__).where(where)
    return SearchStatements(page, total if with_total else None)


_STATEMENTS: dict[Shape, SearchStatements] = {}


def search_statements(query: SearchQuery) -> tuple[SearchStatements, dict[str, Any]]:
    """Prebuilt statements for this search's shape and the parameters to run them with."""
    shape, values = _shape_and_values(query)
    statements = _STATEMENTS.get(shape)
    if statements is None:
        statements = _build(shape)
        if len(_STATEMENTS) >= _CACHE_LIMIT:
            _STATEMENTS.clear()
        _STATEMENTS[shape] = statements
    return statements, {f"p{i}": value for i, value in enumerate(values)}


def run_search(connection: Connection, query: SearchQuery) -> SearchResult:
    """Run the search in the caller's transaction: one page of matches and the total."""
    statements, params = search_statements(query)
    total = None
    if statements.total is not None:
        total = connection.execute(statements.total, params).scalar()
    rows = connection.execute(statements.page, params).all()
    found = [stored_resource(row) for row in rows]
    return SearchResult(found, len(found) if total is None else int(total))


def stored_resource(row: Any) -> StoredResource:
    """A :class:`StoredResource` from a ``fhir_resource`` or ``fhir_resource_history`` row."""
    return StoredResource(
        resource_type=row.res_type,
        id=row.res_id,
        version_id=row.version_id,
        last_updated=row.last_updated,
        deleted=row.deleted,
        body=row.body,
    )
