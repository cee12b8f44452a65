"""device registry: bindings to patients over time, live device state

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-22 02:00:00.000000

``device_binding`` holds each device-to-patient attachment as ``[start, end)``
(``ix_device_binding_device_start`` serves "whose was the device at t?");
``device_state`` the last status, last-seen time and clock offset per device.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

import medhub.db.base

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "device_binding",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("device_id", sa.String(length=64), nullable=False),
        sa.Column("patient_id", sa.String(length=64), nullable=False),
        sa.Column("start", medhub.db.base.UtcDateTime(), nullable=False),
        sa.Column("end", medhub.db.base.UtcDateTime(), nullable=True),
        sa.Column("created_at", medhub.db.base.UtcDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_device_binding")),
        mysql_charset="utf8mb4",
        mysql_collate="utf8mb4_bin",
        mysql_engine="InnoDB",
    )
    op.create_index(
        "ix_device_binding_device_start", "device_binding", ["device_id", "start"], unique=False
    )
    op.create_index("ix_device_binding_patient", "device_binding", ["patient_id"], unique=False)
    op.create_table(
        "device_state",
        sa.Column("device_id", sa.String(length=64), nullable=False),
        sa.Column("status", sa.String(length=32), nullable=False),
        sa.Column("status_at", medhub.db.base.UtcDateTime(), nullable=True),
        sa.Column(
            "status_detail",
            sa.Text().with_variant(mysql.LONGTEXT(), "mysql", "mariadb"),
            nullable=True,
        ),
        sa.Column("last_seen", medhub.db.base.UtcDateTime(), nullable=True),
        sa.Column("clock_offset_ms", sa.Float(), nullable=False),
        sa.Column("clock_flagged", sa.Boolean(), nullable=False),
        sa.Column("samples_rejected", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("device_id", name=op.f("pk_device_state")),
        mysql_charset="utf8mb4",
        mysql_collate="utf8mb4_bin",
        mysql_engine="InnoDB",
    )


def downgrade() -> None:
    op.drop_table("device_state")
    op.drop_index("ix_device_binding_patient", table_name="device_binding")
    op.drop_index("ix_device_binding_device_start", table_name="device_binding")
    op.drop_table("device_binding")
