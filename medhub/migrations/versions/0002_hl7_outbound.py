"""hl7 outbound queue (medhub.hl7.outbound_queue)

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-22 00:08:59.392841

One FIFO per destination of HL7 v2 messages waiting for the partner's ACK;
``ix_hl7_outbound_queue`` serves the claim of a destination's oldest pending
message, ``uq_hl7_outbound_destination_control`` refuses a reused MSH-10.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import medhub.db.base
from sqlalchemy.dialects import mysql

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "hl7_outbound",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("destination", sa.String(length=64), nullable=False),
        sa.Column("created_at", medhub.db.base.UtcDateTime(), nullable=False),
        sa.Column("control_id", sa.String(length=199), nullable=False),
        sa.Column(
            "message",
            sa.LargeBinary()
            .with_variant(mysql.LONGBLOB(), "mariadb")
            .with_variant(mysql.LONGBLOB(), "mysql"),
            nullable=False,
        ),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", medhub.db.base.UtcDateTime(), nullable=False),
        sa.Column(
            "last_error",
            sa.Text()
            .with_variant(mysql.LONGTEXT(), "mariadb")
            .with_variant(mysql.LONGTEXT(), "mysql"),
            nullable=True,
        ),
        sa.Column("ack_code", sa.String(length=2), nullable=True),
        sa.Column(
            "ack",
            sa.LargeBinary()
            .with_variant(mysql.LONGBLOB(), "mariadb")
            .with_variant(mysql.LONGBLOB(), "mysql"),
            nullable=True,
        ),
        sa.Column("sent_at", medhub.db.base.UtcDateTime(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_hl7_outbound")),
        mysql_charset="utf8mb4",
        mysql_collate="utf8mb4_bin",
        mysql_engine="InnoDB",
    )
    with op.batch_alter_table("hl7_outbound", schema=None) as batch_op:
        batch_op.create_index(
            "ix_hl7_outbound_queue", ["destination", "status", "id"], unique=False
        )
        batch_op.create_index(
            "uq_hl7_outbound_destination_control", ["destination", "control_id"], unique=True
        )


def downgrade() -> None:
    with op.batch_alter_table("hl7_outbound", schema=None) as batch_op:
        batch_op.drop_index("uq_hl7_outbound_destination_control")
        batch_op.drop_index("ix_hl7_outbound_queue")

    op.drop_table("hl7_outbound")
