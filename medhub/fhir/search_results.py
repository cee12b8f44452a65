"""Parse the FHIR search *result* parameters (pure; FHIR R4 search.html#return).

``_count``, ``_offset`` (the page start that medhub's paging links carry),
``_sort`` (several keys, ``-`` for descending), ``_include`` / ``_revinclude``
(with ``:iterate`` and ``*``), ``_summary=count``, ``_total``
(``accurate``/``estimate`` count, ``none`` skips the count) and ``_elements``.
Each sets fields of the :class:`~medhub.fhir.search.SearchQuery` being built.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

from medhub.errors import InputError, Issue
from medhub.fhir.search_parameters import search_param

if TYPE_CHECKING:
    from medhub.fhir.search import SearchQuery

_MAX_COUNT: Final = 1000


@dataclass(frozen=True, slots=True)
class SortKey:
    """One ``_sort`` key: a parameter (or ``_id``/``_lastUpdated``) and its direction."""

    param: str
    kind: str  # the index kind the key is read from, or "id" / "last_updated"
    descending: bool = False


@dataclass(frozen=True, slots=True)
class Include:
    """``_include`` (forward) or ``_revinclude`` (reverse); ``param`` None means ``*``."""

    source_type: str | None  # None: ``_revinclude=*``, any type pointing at the page
    param: str | None
    target_type: str | None = None
    reverse: bool = False
    iterate: bool = False


def bad(param: str, message: str) -> InputError:
    """An InputError pointing at the offending query parameter."""
    return InputError(message, [Issue(message, code="invalid", expression=(param,))])


def _whole(key: str, raw: str) -> int:
    try:
        number = int(raw)
    except ValueError as exc:
        raise bad(key, f"{key} must be a whole number, got {raw!r}") from exc
    if number < 0:
        raise bad(key, f"{key} must not be negative, got {raw!r}")
    return number


def _sort(resource_type: str, raw: str) -> tuple[SortKey, ...]:
    keys: list[SortKey] = []
    for item in raw.split(","):
        name = item.strip()
        descending = name.startswith("-")
        name = name.removeprefix("-")
        if name == "_id":
            keys.append(SortKey(name, "id", descending))
        elif name == "_lastUpdated":
            keys.append(SortKey(name, "last_updated", descending))
        else:
            definition = search_param(resource_type, name)
            if definition is None:
                raise bad("_sort", f"cannot sort {resource_type} by unknown parameter {name!r}")
            keys.append(SortKey(name, definition.type, descending))
    return tuple(keys)


def _include(resource_type: str, key: str, raw: str) -> Include:
    name, _, modifier = key.partition(":")
    if modifier not in ("", "iterate", "recurse"):
        raise bad(key, f"modifier :{modifier} is not supported on {name}")
    reverse = name == "_revinclude"
    iterate = modifier != ""
    if raw == "*":
        return Include(None if reverse else resource_type, None, None, reverse, iterate)
    parts = raw.split(":")
    if len(parts) not in (2, 3):
        raise bad(key, f"{key} must be Type:parameter[:target] or *, got {raw!r}")
    source, param = parts[0], parts[1]
    target = parts[2] if len(parts) == 3 else None
    if not reverse and not iterate and source != resource_type:
        raise bad(key, f"_include source {source} is not the searched type {resource_type}")
    if param != "*":
        definition = search_param(source, param)
        if definition is None or definition.type != "reference":
            raise bad(key, f"{source}:{param} is not a reference search parameter")
    return Include(source, None if param == "*" else param, target, reverse, iterate)


def apply_result_parameter(query: SearchQuery, key: str, raw: str) -> bool:
    """Apply ``key=raw`` to ``query`` if it is a result parameter; False if it is not one."""
    name = key.partition(":")[0]
    if name == "_count":
        query.count = min(_whole(key, raw), _MAX_COUNT)
    elif name == "_offset":
        query.offset = _whole(key, raw)
    elif name == "_sort":
        query.sort = query.sort + _sort(query.resource_type, raw)
    elif name in ("_include", "_revinclude"):
        query.includes = (*query.includes, _include(query.resource_type, key, raw))
    elif name == "_summary":
        if raw == "count":
            query.summary_count = True
            query.with_total = True
        elif raw != "false":
            raise bad(key, f"_summary={raw} is not supported (count and false are)")
    elif name == "_total":
        if raw not in ("none", "estimate", "accurate"):
            raise bad(key, f"_total must be none, estimate or accurate, got {raw!r}")
        query.with_total = raw != "none" or query.summary_count
    elif name == "_elements":
        query.elements = tuple(e.strip() for e in raw.split(",") if e.strip())
    else:
        return False
    return True
