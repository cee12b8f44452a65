"""mqtt_partition_claim: which devices process takes which partition of the device stream

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-07 10:20:00.000000

Partitioned MQTT consumers (``MEDHUB_MQTT__PARTITION``) renew a row here and
skip other partitions' devices only while the rows show every partition
held (:mod:`medhub.devices.partition_claims`).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from medhub.db.base import UtcDateTime

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "mqtt_partition_claim",
        sa.Column("client_id", sa.String(length=128), nullable=False),
        sa.Column("topic_prefix", sa.String(length=128), nullable=False),
        sa.Column("part_index", sa.Integer(), nullable=False),
        sa.Column("part_count", sa.Integer(), nullable=False),
        sa.Column("renewed_at", UtcDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("client_id", name=op.f("pk_mqtt_partition_claim")),
        mysql_engine="InnoDB",
        mysql_charset="utf8mb4",
        mysql_collate="utf8mb4_bin",
    )


def downgrade() -> None:
    op.drop_table("mqtt_partition_claim")
