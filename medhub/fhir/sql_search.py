"""SQL for FHIR search criteria over the index tables (FHIR R4 search.html).

Each criterion becomes ``res_id IN (SELECT res_id FROM <index table> WHERE
param = … AND (<value> OR <value> …))``; criteria are ANDed by the caller.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sqlalchemy import ColumnElement, and_, not_, or_, select

from medhub.fhir.search import (
    Criterion,
    DateValue,
    ReferenceValue,
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


def _token_sql(value: TokenValue) -> ColumnElement[bool]:
    parts: list[ColumnElement[bool]] = []
    if value.code is not None:
        parts.append(TokenIndexRow.code == value.code)
    if value.system == "":
        parts.append(TokenIndexRow.system.is_(None))
    elif value.system is not None:
        parts.append(TokenIndexRow.system == value.system)
    return and_(*parts)


def _string_sql(value: StringValue) -> ColumnElement[bool]:
    if value.mode == "exact":
        return StringIndexRow.exact == value.text
    escaped = value.text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    pattern = f"%{escaped}%" if value.mode == "contains" else f"{escaped}%"
    return StringIndexRow.normalized.like(pattern, escape="\\")


def _date_sql(value: DateValue) -> ColumnElement[bool]:
    low, high = DateIndexRow.low, DateIndexRow.high
    match value.prefix:
        case "eq":
            return and_(low >= value.low, high <= value.high)
        case "ne":
            return not_(and_(low >= value.low, high <= value.high))
        case "lt":
            return low < value.low
        case "le":
            return low < value.high
        case "gt":
            return high > value.high
        case "ge":
            return high > value.low
        case "sa":
            return low >= value.high
        case _:  # "eb"
            return high <= value.low


def _reference_sql(value: ReferenceValue) -> ColumnElement[bool]:
    if value.url is not None:
        return ReferenceIndexRow.url == value.url
    parts: list[ColumnElement[bool]] = [ReferenceIndexRow.target_id == value.target_id]
    if value.target_type is not None:
        parts.append(ReferenceIndexRow.target_type == value.target_type)
    return and_(*parts)


_BUILDERS: dict[str, tuple[Any, Callable[[Any], ColumnElement[bool]]]] = {
    "token": (TokenIndexRow, _token_sql),
    "string": (StringIndexRow, _string_sql),
    "date": (DateIndexRow, _date_sql),
    "reference": (ReferenceIndexRow, _reference_sql),
}


def criterion_sql(resource_type: str, criterion: Criterion) -> ColumnElement[bool]:
    """``res_id IN (index rows of this parameter matching any of the values)``."""
    if criterion.kind == "id":
        return ResourceRow.res_id.in_([str(v) for v in criterion.values])
    table, build = _BUILDERS[criterion.kind]
    matches = or_(*(build(v) for v in criterion.values))
    owners = select(table.res_id).where(
        table.res_type == resource_type, table.param == criterion.param, matches
    )
    return ResourceRow.res_id.in_(owners)
