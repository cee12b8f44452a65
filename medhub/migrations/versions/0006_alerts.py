"""alerts: the lifecycle of clinical alerts raised from vital-sign alarms

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-22 03:00:00.000000

``alert`` holds each alert's state (raised, acknowledged, escalated, resolved)
with the FHIR Flag and Observation written for it; ``ix_alert_stream`` serves
the duplicate check (the open alert of one stream and condition),
``ix_alert_state_raised`` the escalation sweep.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import medhub.db.base

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "alert",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("patient_id", sa.String(length=64), nullable=True),
        sa.Column("device_id", sa.String(length=64), nullable=False),
        sa.Column("channel", sa.String(length=64), nullable=False),
        sa.Column("vital", sa.String(length=64), nullable=False),
        sa.Column("condition", sa.Integer(), nullable=False),
        sa.Column("priority", sa.Integer(), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("value", sa.Float(), nullable=True),
        sa.Column("limit_value", sa.Float(), nullable=True),
        sa.Column("unit", sa.String(length=32), nullable=False),
        sa.Column("raised_at", medhub.db.base.UtcDateTime(), nullable=False),
        sa.Column("acknowledged_at", medhub.db.base.UtcDateTime(), nullable=True),
        sa.Column("acknowledged_by", sa.String(length=128), nullable=True),
        sa.Column("escalated_at", medhub.db.base.UtcDateTime(), nullable=True),
        sa.Column("resolved_at", medhub.db.base.UtcDateTime(), nullable=True),
        sa.Column("resolved_value", sa.Float(), nullable=True),
        sa.Column("flag_id", sa.String(length=64), nullable=True),
        sa.Column("observation_id", sa.String(length=64), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_alert")),
        mysql_charset="utf8mb4",
        mysql_collate="utf8mb4_bin",
        mysql_engine="InnoDB",
    )
    op.create_index(
        "ix_alert_stream", "alert", ["device_id", "vital", "condition", "state"], unique=False
    )
    op.create_index("ix_alert_patient", "alert", ["patient_id", "state"], unique=False)
    op.create_index("ix_alert_state_raised", "alert", ["state", "raised_at"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_alert_state_raised", table_name="alert")
    op.drop_index("ix_alert_patient", table_name="alert")
    op.drop_index("ix_alert_stream", table_name="alert")
    op.drop_table("alert")
