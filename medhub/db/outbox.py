"""The transactional outbox for events medhub sends to other systems.

An event (an alert, ``lab.result.critical``, ``prescription.created`` …) is
written in the same transaction as the data it is about, so it exists exactly
when that data was committed. A publisher (RabbitMQ, or the in-process bus)
reads pending rows, sends them, and marks them sent only after the broker
confirmed; a failure leaves the row pending with its error and a later retry
time. Nothing is published from inside a transaction, and nothing is lost if
the broker is down.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

import orjson
from sqlalchemy import BigInteger, Index, Integer, String, Text, func, select
from sqlalchemy.orm import Mapped, Session, mapped_column

from medhub.correlation import current_correlation_id
from medhub.db.base import MYSQL_TABLE_OPTIONS, Base, LongText, UtcDateTime

AutoId = BigInteger().with_variant(Integer(), "sqlite")


class OutboxEventRow(Base):
    __tablename__ = "outbox_event"

    id: Mapped[int] = mapped_column(AutoId, primary_key=True, autoincrement=True)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    topic: Mapped[str] = mapped_column(String(128))
    routing_key: Mapped[str] = mapped_column(String(255))
    payload: Mapped[str] = mapped_column(LongText)
    status: Mapped[str] = mapped_column(String(16), default="pending")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(UtcDateTime)
    last_error: Mapped[str | None] = mapped_column(Text, nullable=True)
    sent_at: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)
    #: The id of the work that raised the event (:mod:`medhub.correlation`); the AMQP
    #: message carries it as its ``correlation_id`` property.
    correlation_id: Mapped[str | None] = mapped_column(String(64), nullable=True)

    __table_args__ = (
        Index("ix_outbox_event_pending", "status", "next_attempt_at"),
        MYSQL_TABLE_OPTIONS,
    )


@dataclass(frozen=True, slots=True)
class DomainEvent:
    """Something other systems may want to know, e.g. topic ``lab.result.critical``."""

    topic: str
    routing_key: str
    payload: dict[str, Any]


class EventOutbox(Protocol):
    """Where a unit of work puts the events it raises (committed with it)."""

    def enqueue(self, event: DomainEvent, *, now: datetime) -> None: ...


class SqlEventOutbox:
    """:class:`EventOutbox` on a SQLAlchemy session (the caller's transaction)."""

    def __init__(self, session: Session) -> None:
        self.session = session

    def enqueue(self, event: DomainEvent, *, now: datetime) -> None:
        self.session.add(
            OutboxEventRow(
                created_at=now,
                topic=event.topic,
                routing_key=event.routing_key,
                payload=orjson.dumps(event.payload).decode(),
                status="pending",
                attempts=0,
                next_attempt_at=now,
                correlation_id=current_correlation_id(),
            )
        )


@dataclass(frozen=True, slots=True)
class PendingEvents:
    """Events of one topic not yet confirmed by the broker, and since when the oldest waits."""

    topic: str
    events: int
    oldest: datetime


def pending_events(session: Session) -> list[PendingEvents]:
    """Pending outbox events per topic (``/metrics``): a broker that is down shows here first."""
    query = (
        select(OutboxEventRow.topic, func.count(), func.min(OutboxEventRow.created_at))
        .where(OutboxEventRow.status == "pending")
        .group_by(OutboxEventRow.topic)
    )
    return [PendingEvents(topic, int(n), oldest) for topic, n, oldest in session.execute(query)]
