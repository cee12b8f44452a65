"""search indexes: owner indexes keyed by resource id first

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-22 02:45:00.000000

The ``*_owner`` indexes serve one statement: deleting a resource's index rows
when it changes (``WHERE res_type = ? AND res_id = ?``), which either column
order serves. Led by ``res_type`` they also offered SQLite a way to produce
``res_id`` in order for a search's ``SELECT DISTINCT res_id``, and SQLite took
it, scanning every index row of the type instead of the value lookup: an HL7
patient lookup by identifier went from about 0.02 ms to 2 ms as the tables grew.
"""

from __future__ import annotations

from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

_TABLES = (
    "fhir_idx_token",
    "fhir_idx_string",
    "fhir_idx_date",
    "fhir_idx_reference",
    "fhir_idx_quantity",
    "fhir_idx_number",
    "fhir_idx_uri",
)


def _recreate(columns: list[str]) -> None:
    for table in _TABLES:
        with op.batch_alter_table(table) as batch_op:
            batch_op.drop_index(f"ix_{table}_owner")
            batch_op.create_index(f"ix_{table}_owner", columns, unique=False)


def upgrade() -> None:
    _recreate(["res_id", "res_type"])


def downgrade() -> None:
    _recreate(["res_type", "res_id"])
