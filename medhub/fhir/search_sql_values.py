"""The SQL of single search values, per FHIR search type (FHIR R4 search.html#ptypes).

For each value: its *shape* (what makes the statement different: prefix,
modifier, whether a system is given), the values it binds in order, and the
condition it puts on one index-table alias, asking the binder for parameters
in that same order. :mod:`medhub.fhir.sql_search` combines them into criteria
and caches statements by shape.

Prefixes (search.html#prefix): on dates, ``eq`` means the resource's range lies
within the searched one, ``ap`` that the ranges overlap; on numbers and
quantities ``eq`` means the value lies in the implicit precision range
(``100`` is ``[99.5, 100.5)``), ``ap`` within 10 %. A quantity without a
system matches its code against both the UCUM code and the unit text.
"""

from __future__ import annotations

from typing import Any, Final

from sqlalchemy import BindParameter, ColumnElement, and_, bindparam, not_, or_

from medhub.fhir.search import (
    DateValue,
    NumberValue,
    ReferenceValue,
    StringValue,
    TokenValue,
    UriValue,
)

Shape = tuple[Any, ...]


class Binder:
    """Hands out bound parameters p0, p1, … in the order the builder asks for them."""

    def __init__(self) -> None:
        self.count = 0

    def __call__(self) -> BindParameter[Any]:
        name = f"p{self.count}"
        self.count += 1
        return bindparam(name)


def _token_shape(value: TokenValue) -> Shape:
    system = "any" if value.system is None else ("none" if value.system == "" else "eq")
    return (system, value.code is not None)


def _token_values(value: TokenValue) -> list[Any]:
    values: list[Any] = [value.code] if value.code is not None else []
    if value.system:
        values.append(value.system)
    return values


def like_pattern(text: str, contains: bool) -> str:
    """A LIKE pattern for a prefix (or substring) match, with the wildcards escaped."""
    escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%" if contains else f"{escaped}%"


def _string_values(value: StringValue) -> list[Any]:
    if value.mode == "exact":
        return [value.text]
    return [like_pattern(value.text, value.mode == "contains")]


#: For each date prefix, which ends of the searched range it binds (FHIR R4 search.html#prefix).
_DATE_BOUNDS: Final = {
    "eq": ("low", "high"),
    "ne": ("low", "high"),
    "ap": ("low", "high"),
    "lt": ("low",),
    "le": ("high",),
    "gt": ("high",),
    "ge": ("low",),
    "sa": ("high",),
    "eb": ("low",),
}


def date_values(value: DateValue) -> list[Any]:
    """The ends of the searched range that the prefix compares against, in bind order."""
    return [getattr(value, end) for end in _DATE_BOUNDS[value.prefix]]


def _number_values(value: NumberValue) -> list[Any]:
    values: list[Any] = (
        [value.low, value.high] if value.prefix in ("eq", "ne", "ap") else [value.value]
    )
    if value.system is not None:
        values.append(value.system)
    if value.code is not None:
        values.append(value.code)
    return values


def _reference_shape(value: ReferenceValue) -> Shape:
    return ("url",) if value.url is not None else ("id", value.target_type is not None)


def _reference_values(value: ReferenceValue) -> list[Any]:
    if value.url is not None:
        return [value.url]
    return [value.target_id] + ([value.target_type] if value.target_type is not None else [])


def value_shape(kind: str, value: Any) -> Shape:
    """What about this value changes the statement (never the value itself)."""
    match kind:
        case "token":
            return _token_shape(value)
        case "string" | "token_text":
            return (value.mode,)
        case "date":
            return (value.prefix,)
        case "reference":
            return _reference_shape(value)
        case "uri":
            return (value.below,)
        case _:  # number, quantity
            return (value.prefix, value.system is not None, value.code is not None)


def value_binds(kind: str, value: Any) -> list[Any]:
    """The bound values of one search value, in the order :func:`value_sql` binds them."""
    match kind:
        case "token":
            return _token_values(value)
        case "string" | "token_text":
            return _string_values(value)
        case "date":
            return date_values(value)
        case "reference":
            return _reference_values(value)
        case "uri":
            assert isinstance(value, UriValue)
            return [like_pattern(value.uri, False) if value.below else value.uri]
        case _:
            return _number_values(value)


def _token_sql(shape: Shape, bind: Binder, t: Any) -> ColumnElement[bool]:
    system, has_code = shape
    parts: list[ColumnElement[bool]] = []
    if has_code:
        parts.append(t.c.code == bind())
    if system == "none":
        parts.append(t.c.system.is_(None))
    elif system == "eq":
        parts.append(t.c.system == bind())
    return and_(*parts)


def _string_sql(shape: Shape, bind: Binder, column: Any, exact: Any) -> ColumnElement[bool]:
    if shape[0] == "exact":
        return bool_(exact == bind())
    return bool_(column.like(bind(), escape="\\"))


def bool_(expression: Any) -> ColumnElement[bool]:
    """Typing shim: SQLAlchemy comparisons on Core columns are boolean column elements."""
    return expression  # type: ignore[no-any-return]


def date_sql(prefix: str, bind: Binder, low: Any, high: Any) -> ColumnElement[bool]:
    """The condition of one date prefix on a ``[low, high)`` range (or a point: low is high)."""
    match prefix:
        case "eq":
            return and_(low >= bind(), high <= bind())
        case "ne":
            return not_(and_(low >= bind(), high <= bind()))
        case "ap":
            return and_(high > bind(), low < bind())
        case "lt" | "le":
            return bool_(low < bind())
        case "gt" | "ge":
            return bool_(high > bind())
        case "sa":
            return bool_(low >= bind())
        case _:  # "eb"
            return bool_(high <= bind())


def _number_sql(shape: Shape, bind: Binder, t: Any) -> ColumnElement[bool]:
    prefix, has_system, has_code = shape
    value = t.c.value
    match prefix:
        case "eq":
            condition = and_(value >= bind(), value < bind())
        case "ne":
            condition = not_(and_(value >= bind(), value < bind()))
        case "ap":
            condition = and_(value >= bind(), value <= bind())
        case "lt" | "eb":
            condition = bool_(value < bind())
        case "le":
            condition = bool_(value <= bind())
        case "gt" | "sa":
            condition = bool_(value > bind())
        case _:  # "ge"
            condition = bool_(value >= bind())
    parts = [condition]
    if has_system:
        parts.append(t.c.system == bind())
        if has_code:
            parts.append(t.c.code == bind())
    elif has_code:
        code = bind()
        parts.append(or_(t.c.code == code, t.c.unit == code))
    return and_(*parts)


def _reference_sql(shape: Shape, bind: Binder, t: Any) -> ColumnElement[bool]:
    if shape[0] == "url":
        return bool_(t.c.url == bind())
    parts: list[ColumnElement[bool]] = [t.c.target_id == bind()]
    if shape[1]:
        parts.append(t.c.target_type == bind())
    return and_(*parts)


def value_sql(kind: str, shape: Shape, bind: Binder, t: Any) -> ColumnElement[bool]:
    """The condition one value of this shape puts on the index-table alias ``t``."""
    match kind:
        case "token":
            return _token_sql(shape, bind, t)
        case "token_text":
            return _string_sql(shape, bind, t.c.text, t.c.text)
        case "string":
            return _string_sql(shape, bind, t.c.normalized, t.c.exact)
        case "date":
            return date_sql(shape[0], bind, t.c.low, t.c.high)
        case "reference":
            return _reference_sql(shape, bind, t)
        case "uri":
            if shape[0]:
                return bool_(t.c.uri.like(bind(), escape="\\"))
            return bool_(t.c.uri == bind())
        case _:
            return _number_sql(shape, bind, t)
