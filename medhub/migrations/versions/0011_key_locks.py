"""fhir_key_lock: transaction-scoped name locks for find-or-create on MariaDB/MySQL

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-07 07:20:00.000000

A finder upserts the hash of the name it finds by and holds the row's lock
until commit; a second finder of the same name waits for it
(:mod:`medhub.fhir.key_locks`). PostgreSQL uses advisory locks instead and
SQLite needs none; the table exists everywhere so the schema is the same on
every back-end.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "fhir_key_lock",
        sa.Column("lock_key", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.PrimaryKeyConstraint("lock_key"),
        mysql_engine="InnoDB",
        mysql_charset="utf8mb4",
        mysql_collate="utf8mb4_bin",
    )


def downgrade() -> None:
    op.drop_table("fhir_key_lock")
