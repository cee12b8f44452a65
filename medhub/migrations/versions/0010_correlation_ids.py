"""correlation ids on the HL7 message log, the event outbox and the outbound HL7 queue

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-07 07:00:00.000000

The id a piece of work was given where it came in (:mod:`medhub.correlation`),
kept with what it wrote for later, so the relay's and the sender's log lines
and the AMQP message name the same id as the inbound message or request.
Nullable: rows written before this revision have none.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

_TABLES = ("hl7_message", "outbox_event", "hl7_outbound")


def upgrade() -> None:
    for table in _TABLES:
        with op.batch_alter_table(table) as batch:
            batch.add_column(sa.Column("correlation_id", sa.String(length=64), nullable=True))


def downgrade() -> None:
    for table in reversed(_TABLES):
        with op.batch_alter_table(table) as batch:
            batch.drop_column("correlation_id")
