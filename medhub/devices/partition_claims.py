"""Partition claims in the resource database: which ``devices`` process takes which devices.

Each partitioned process (``MEDHUB_MQTT__PARTITION``) upserts its row every
few seconds and reads the rows of its topic prefix; :func:`medhub.devices.
partition.covered` decides from them whether it may skip other partitions'
devices. A process that stops cleanly deletes its row; one that dies leaves
a row that stops being renewed and so stops counting.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager
from datetime import datetime, timedelta

from sqlalchemy import Integer, String, delete, select
from sqlalchemy.orm import Mapped, Session, mapped_column

from medhub.db.base import MYSQL_TABLE_OPTIONS, Base, UtcDateTime
from medhub.devices.partition import Claim, Partition, covered


class PartitionClaimRow(Base):
    """One running partitioned consumer, by its MQTT client id."""

    __tablename__ = "mqtt_partition_claim"

    client_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    topic_prefix: Mapped[str] = mapped_column(String(128))
    part_index: Mapped[int] = mapped_column(Integer)
    part_count: Mapped[int] = mapped_column(Integer)
    renewed_at: Mapped[datetime] = mapped_column(UtcDateTime)

    __table_args__ = (MYSQL_TABLE_OPTIONS,)


class PartitionClaims:
    """This process's claim: renewed (and the whole set judged) by :meth:`renew`.

    ``sessions``: sessions in a transaction, committed on exit (the resource
    store's :meth:`~medhub.fhir.sql_store.SqlResourceStore.session`).
    """

    def __init__(
        self,
        sessions: Callable[[], AbstractContextManager[Session]],
        *,
        client_id: str,
        topic_prefix: str,
        partition: Partition,
        clock: Callable[[], datetime],
        stale_after: timedelta,
    ) -> None:
        self._sessions = sessions
        self.client_id = client_id
        self.topic_prefix = topic_prefix
        self.partition = partition
        self._clock = clock
        self.stale_after = stale_after

    def renew(self) -> bool:
        """Renew this claim; True when the live claims cover every partition."""
        now = self._clock()
        with self._sessions() as session:
            row = session.get(PartitionClaimRow, self.client_id, with_for_update=True)
            if row is None:
                row = PartitionClaimRow(client_id=self.client_id)
                session.add(row)
            row.topic_prefix = self.topic_prefix
            row.part_index, row.part_count = self.partition.index, self.partition.count
            row.renewed_at = now
            session.flush()
            rows = session.scalars(
                select(PartitionClaimRow).where(PartitionClaimRow.topic_prefix == self.topic_prefix)
            ).all()
            claims = [Claim(r.client_id, r.part_index, r.part_count, r.renewed_at) for r in rows]
        return covered(claims, self.partition, now=now, stale_after=self.stale_after)

    def release(self) -> None:
        """Withdraw the claim (a clean stop): the others take every device at their next renewal."""
        with self._sessions() as session:
            session.execute(
                delete(PartitionClaimRow).where(PartitionClaimRow.client_id == self.client_id)
            )
