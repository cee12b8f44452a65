"""fhir search: quantity, number and uri indexes; token display text

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-22 01:55:00.000000

FHIR R4 search.html quantity, number and uri parameters get their own index
tables (``*_lookup`` serves the value comparison, ``*_owner`` the clearing of a
resource's rows on update); ``fhir_idx_token.text`` holds the display text the
``:text`` modifier matches. Values are DOUBLE: FLOAT is single precision on
MariaDB.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def _id_column() -> sa.Column[int]:
    return sa.Column(
        "id",
        sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
        autoincrement=True,
        nullable=False,
    )


def _owner_columns() -> list[sa.Column[str]]:
    return [
        sa.Column("res_type", sa.String(length=64), nullable=False),
        sa.Column("res_id", sa.String(length=64), nullable=False),
        sa.Column("param", sa.String(length=64), nullable=False),
    ]


def _create(name: str, lookup: list[str], *columns: sa.Column[Any]) -> None:
    op.create_table(
        name,
        _id_column(),
        *_owner_columns(),
        *columns,
        sa.PrimaryKeyConstraint("id", name=op.f(f"pk_{name}")),
        mysql_charset="utf8mb4",
        mysql_collate="utf8mb4_bin",
        mysql_engine="InnoDB",
    )
    with op.batch_alter_table(name, schema=None) as batch_op:
        batch_op.create_index(f"ix_{name}_lookup", ["res_type", "param", *lookup], unique=False)
        batch_op.create_index(f"ix_{name}_owner", ["res_type", "res_id"], unique=False)


def upgrade() -> None:
    _create(
        "fhir_idx_quantity",
        ["value"],
        sa.Column("value", sa.Double(), nullable=False),
        sa.Column("system", sa.String(length=255), nullable=True),
        sa.Column("code", sa.String(length=255), nullable=True),
        sa.Column("unit", sa.String(length=255), nullable=True),
    )
    _create("fhir_idx_number", ["value"], sa.Column("value", sa.Double(), nullable=False))
    _create("fhir_idx_uri", ["uri"], sa.Column("uri", sa.String(length=255), nullable=False))
    with op.batch_alter_table("fhir_idx_token", schema=None) as batch_op:
        batch_op.add_column(sa.Column("text", sa.String(length=255), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("fhir_idx_token", schema=None) as batch_op:
        batch_op.drop_column("text")
    for name in ("fhir_idx_uri", "fhir_idx_number", "fhir_idx_quantity"):
        with op.batch_alter_table(name, schema=None) as batch_op:
            batch_op.drop_index(f"ix_{name}_owner")
            batch_op.drop_index(f"ix_{name}_lookup")
        op.drop_table(name)
