"""alert sources: device-raised alarms and NEWS2 alerts beside the detector's

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-12 09:00:00.000000

A device's own alarm (``devices/+/alerts``) is named by the device's id of it
(``source_alarm_id``), so its start, continue and end find one alert
(``ix_alert_source_alarm``); ``alarm_code`` and ``event_code`` keep the
device's code and its IEEE 11073-10101 event code, ``text`` what the device
(or the NEWS2 scorer) says about it. All nullable: detector alerts have none.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("alert") as batch:
        batch.add_column(sa.Column("source_alarm_id", sa.String(length=128), nullable=True))
        batch.add_column(sa.Column("alarm_code", sa.String(length=128), nullable=True))
        batch.add_column(sa.Column("event_code", sa.String(length=128), nullable=True))
        batch.add_column(sa.Column("text", sa.String(length=1024), nullable=True))
    op.create_index(
        "ix_alert_source_alarm", "alert", ["device_id", "source_alarm_id"], unique=False
    )


def downgrade() -> None:
    op.drop_index("ix_alert_source_alarm", table_name="alert")
    with op.batch_alter_table("alert") as batch:
        batch.drop_column("text")
        batch.drop_column("event_code")
        batch.drop_column("alarm_code")
        batch.drop_column("source_alarm_id")
