"""The search-index rows of one resource version, table by table (pure; no database).

The SQL store writes what this returns in the same transaction as the
resource; keeping the row shapes here lets the store batch rows of many
resources into one statement per table.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Table

from medhub.fhir.indexing import extract_index_entries
from medhub.fhir.sql_tables import (
    INDEX_TABLES,
    DateIndexRow,
    ReferenceIndexRow,
    StringIndexRow,
    TokenIndexRow,
)

#: Every index table, in the order rows are written and cleared.
INDEX_CORE: list[Table] = [t.__table__ for t in INDEX_TABLES]  # type: ignore[misc]
_TABLE = {t.name: t for t in INDEX_CORE}


def index_rows(
    resource_type: str, resource_id: str, body: dict[str, Any]
) -> list[tuple[Table, list[dict[str, Any]]]]:
    """The rows each index table holds for this resource (tables without rows left out)."""
    entries = extract_index_entries(body)
    owner = {"res_type": resource_type, "res_id": resource_id}
    batches: list[tuple[str, list[dict[str, Any]]]] = [
        (
            TokenIndexRow.__tablename__,
            [
                {**owner, "param": e.param, "system": e.system, "code": e.code}
                for e in entries.tokens
            ],
        ),
        (
            StringIndexRow.__tablename__,
            [
                {**owner, "param": e.param, "normalized": e.normalized, "exact": e.exact}
                for e in entries.strings
            ],
        ),
        (
            DateIndexRow.__tablename__,
            [{**owner, "param": e.param, "low": e.low, "high": e.high} for e in entries.dates],
        ),
        (
            ReferenceIndexRow.__tablename__,
            [
                {
                    **owner,
                    "param": e.param,
                    "target_type": e.target_type,
                    "target_id": e.target_id,
                    "url": e.url,
                }
                for e in entries.references
            ],
        ),
    ]
    return [(_TABLE[name], rows) for name, rows in batches if rows]
