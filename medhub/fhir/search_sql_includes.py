"""``_include`` and ``_revinclude`` over the reference index (FHIR R4 search.html#include).

Run after the page query, on the page's resources only: ``_include`` follows
the page's reference rows to their targets, ``_revinclude`` finds the rows
pointing at the page. ``:iterate`` repeats on what was just included (up to
:data:`MAX_ITERATIONS` rounds, so a reference cycle ends). Included resources
are never counted in ``Bundle.total`` and never repeat a match. These
statements depend on the page's ids, so they are built per call rather than
shape-cached.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any, Final

from sqlalchemy import Table, false, select
from sqlalchemy.engine import Connection

from medhub.fhir.search import Include, SearchQuery
from medhub.fhir.sql_tables import ReferenceIndexRow, ResourceRow
from medhub.fhir.store import StoredResource

MAX_ITERATIONS: Final = 3
_RESOURCE: Table = ResourceRow.__table__  # type: ignore[assignment]
_REFERENCE: Table = ReferenceIndexRow.__table__  # type: ignore[assignment]

Key = tuple[str, str]


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


def _by_type(resources: list[StoredResource]) -> dict[str, list[str]]:
    grouped: dict[str, list[str]] = defaultdict(list)
    for resource in resources:
        grouped[resource.resource_type].append(resource.id)
    return grouped


def _targets(connection: Connection, include: Include, ids: list[str]) -> set[Key]:
    r = _REFERENCE
    statement = select(r.c.target_type, r.c.target_id).where(
        r.c.res_type == include.source_type, r.c.res_id.in_(ids), r.c.target_id.is_not(None)
    )
    if include.param is not None:
        statement = statement.where(r.c.param == include.param)
    if include.target_type is not None:
        statement = statement.where(r.c.target_type == include.target_type)
    return {(row[0], row[1]) for row in connection.execute(statement) if row[0] is not None}


def _sources(
    connection: Connection, include: Include, target_type: str, ids: list[str]
) -> set[Key]:
    r = _REFERENCE
    statement = select(r.c.res_type, r.c.res_id).where(
        r.c.target_type == target_type, r.c.target_id.in_(ids)
    )
    if include.source_type is not None:
        statement = statement.where(r.c.res_type == include.source_type)
    if include.param is not None:
        statement = statement.where(r.c.param == include.param)
    return {(row[0], row[1]) for row in connection.execute(statement)}


def _load(connection: Connection, keys: set[Key]) -> list[StoredResource]:
    grouped: dict[str, list[str]] = defaultdict(list)
    for resource_type, resource_id in sorted(keys):
        grouped[resource_type].append(resource_id)
    loaded: list[StoredResource] = []
    for resource_type, ids in grouped.items():
        statement = (
            select(_RESOURCE)
            .where(
                _RESOURCE.c.res_type == resource_type,
                _RESOURCE.c.res_id.in_(ids),
                _RESOURCE.c.deleted == false(),
            )
            .order_by(_RESOURCE.c.res_id)
        )
        loaded.extend(stored_resource(row) for row in connection.execute(statement))
    return loaded


def _round(
    connection: Connection, includes: list[Include], batch: list[StoredResource]
) -> set[Key]:
    wanted: set[Key] = set()
    grouped = _by_type(batch)
    for include in includes:
        if include.reverse:
            for target_type, ids in grouped.items():
                wanted |= _sources(connection, include, target_type, ids)
        elif include.source_type in grouped:
            wanted |= _targets(connection, include, grouped[include.source_type])
    return wanted


def fetch_includes(
    connection: Connection, query: SearchQuery, matches: list[StoredResource]
) -> list[StoredResource]:
    """The resources ``query.includes`` pull in for this page of ``matches``."""
    seen: set[Key] = {(m.resource_type, m.id) for m in matches}
    included: list[StoredResource] = []
    batch = matches
    rules = list(query.includes)
    for depth in range(MAX_ITERATIONS + 1):
        active = rules if depth == 0 else [i for i in rules if i.iterate]
        if not active or not batch:
            break
        keys = _round(connection, active, batch) - seen
        batch = _load(connection, keys)
        seen |= keys
        included.extend(batch)
    return included
