"""The search-index rows of one resource version, table by table (pure; no database).

The SQL store writes what this returns in the same transaction as the
resource; keeping the row shapes here lets the store batch rows of many
resources into one statement per table.
"""

from __future__ import annotations

from dataclasses import fields
from typing import Any

from sqlalchemy import Table

from medhub.fhir.indexing import extract_index_entries
from medhub.fhir.sql_tables import (
    INDEX_TABLES,
    DateIndexRow,
    NumberIndexRow,
    QuantityIndexRow,
    ReferenceIndexRow,
    StringIndexRow,
    TokenIndexRow,
    UriIndexRow,
)

#: Every index table, in the order rows are written and cleared.
INDEX_CORE: list[Table] = [t.__table__ for t in INDEX_TABLES]  # type: ignore[misc]
_TABLE = {t.name: t for t in INDEX_CORE}


def index_rows(
    resource_type: str, resource_id: str, body: dict[str, Any]
) -> list[tuple[Table, list[dict[str, Any]]]]:
    """The rows each index table holds for this resource (tables without rows left out).

    Entry field names are the column names, so a row is the entry plus its owner.
    """
    entries = extract_index_entries(body)
    owner = {"res_type": resource_type, "res_id": resource_id}
    batches: list[tuple[str, list[Any]]] = [
        (TokenIndexRow.__tablename__, entries.tokens),
        (StringIndexRow.__tablename__, entries.strings),
        (DateIndexRow.__tablename__, entries.dates),
        (ReferenceIndexRow.__tablename__, entries.references),
        (QuantityIndexRow.__tablename__, entries.quantities),
        (NumberIndexRow.__tablename__, entries.numbers),
        (UriIndexRow.__tablename__, entries.uris),
    ]
    return [(_TABLE[name], _rows(owner, items)) for name, items in batches if items]


def _rows(owner: dict[str, str], items: list[Any]) -> list[dict[str, Any]]:
    """Rows from entries of one type (``dataclasses.asdict`` deep-copies and is 3x slower)."""
    names = [f.name for f in fields(items[0])]
    return [{**owner, **{n: getattr(e, n) for n in names}} for e in items]
