"""pharmacy_order: which HL7 order messages were sent for each prescription

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-07 05:30:00.000000

A saved MedicationRequest is sent to the pharmacy through the outbound MLLP
queue; ``pharmacy_order`` ties the request to the queued message so the
pharmacy's ACK can be shown per prescription.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import medhub.db.base

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "pharmacy_order",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("medication_request_id", sa.String(length=64), nullable=False),
        sa.Column("order_control", sa.String(length=2), nullable=False),
        sa.Column("destination", sa.String(length=64), nullable=False),
        sa.Column(
            "outbound_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False
        ),
        sa.Column("created_at", medhub.db.base.UtcDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_pharmacy_order")),
        mysql_charset="utf8mb4",
        mysql_collate="utf8mb4_bin",
        mysql_engine="InnoDB",
    )
    op.create_index(
        "ix_pharmacy_order_request", "pharmacy_order", ["medication_request_id", "id"], unique=False
    )


def downgrade() -> None:
    op.drop_index("ix_pharmacy_order_request", table_name="pharmacy_order")
    op.drop_table("pharmacy_order")
