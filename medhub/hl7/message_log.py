"""The HL7 message log: every inbound message, its outcome and the reason if refused.

``hl7_message`` keeps the raw bytes of every message received, accepted or
not, so an interface analyst can inspect and replay a rejected one.
``hl7_control_id`` remembers which (sender, MSH-10) pairs were applied, with a
content hash, so a resent message is acknowledged again without being applied
twice, and a reused control id with other content is caught. Its primary key
makes two concurrent copies of one message collide instead of both applying.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal, Protocol

from sqlalchemy import Index, String, Table, bindparam, insert, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Mapped, Session, mapped_column

from medhub.db.base import MYSQL_TABLE_OPTIONS, Base, LongBlob, LongText, UtcDateTime
from medhub.errors import ConcurrentWriteError, NotFoundError
from medhub.fhir.sql_tables import AutoId

#: accepted: mapped and applied; stored: kept and ACKed AA, a type medhub does not map;
#: duplicate: a resend of an applied message; dead-letter: parsed but could not be
#: applied (AE); rejected: could not be parsed, or not stored at all (AR).
Status = Literal["accepted", "stored", "duplicate", "dead-letter", "rejected"]


class Hl7MessageRow(Base):
    __tablename__ = "hl7_message"

    id: Mapped[int] = mapped_column(AutoId, primary_key=True, autoincrement=True)
    received_at: Mapped[datetime] = mapped_column(UtcDateTime)
    peer: Mapped[str] = mapped_column(String(255))
    sender: Mapped[str] = mapped_column(String(255))
    control_id: Mapped[str] = mapped_column(String(199))
    message_type: Mapped[str] = mapped_column(String(32))
    content_sha256: Mapped[str] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(16))
    ack_code: Mapped[str] = mapped_column(String(2))
    error: Mapped[str | None] = mapped_column(LongText, nullable=True)
    raw: Mapped[bytes] = mapped_column(LongBlob)
    #: The id the message's processing ran under (:mod:`medhub.correlation`).
    correlation_id: Mapped[str | None] = mapped_column(String(64), nullable=True)

    __table_args__ = (
        Index("ix_hl7_message_sender_control", "sender", "control_id"),
        Index("ix_hl7_message_status_received", "status", "received_at"),
        MYSQL_TABLE_OPTIONS,
    )


class Hl7ControlIdRow(Base):
    __tablename__ = "hl7_control_id"

    sender: Mapped[str] = mapped_column(String(255), primary_key=True)
    control_id: Mapped[str] = mapped_column(String(199), primary_key=True)
    content_sha256: Mapped[str] = mapped_column(String(64))

    __table_args__ = (MYSQL_TABLE_OPTIONS,)


_CONTROL_IDS: Table = Hl7ControlIdRow.__table__  # type: ignore[assignment]
_APPLIED_HASH = select(_CONTROL_IDS.c.content_sha256).where(
    _CONTROL_IDS.c.sender == bindparam("sender"),
    _CONTROL_IDS.c.control_id == bindparam("control_id"),
)
_MARK_APPLIED = insert(_CONTROL_IDS)


@dataclass(frozen=True, slots=True)
class LoggedMessage:
    """What the log records about one received message."""

    received_at: datetime
    peer: str
    sender: str
    control_id: str
    message_type: str
    content_sha256: str
    status: Status
    ack_code: str
    raw: bytes
    error: str | None = None
    correlation_id: str | None = None


@dataclass(frozen=True, slots=True)
class MessageQuery:
    """Criteria for listing the message log (all optional, ANDed)."""

    status: str | None = None
    sender: str | None = None
    control_id: str | None = None
    message_type: str | None = None
    since: datetime | None = None
    before_id: int | None = None
    limit: int = 100


class MessageLog(Protocol):
    """The message log inside one unit of work."""

    def record(self, entry: LoggedMessage) -> None:
        """Store the entry (committed with the unit of work)."""

    def applied_hash(self, sender: str, control_id: str) -> str | None:
        """The content hash of the applied message with this sender and MSH-10, if any."""

    def mark_applied(self, sender: str, control_id: str, content_sha256: str) -> None:
        """Remember that this (sender, MSH-10) was applied (or stored)."""


class SqlMessageLog:
    """:class:`MessageLog` on the SQL store's session (same transaction as the resources)."""

    def __init__(self, session: Session) -> None:
        self.session = session

    def record(self, entry: LoggedMessage) -> None:
        row = Hl7MessageRow(
            received_at=entry.received_at,
            peer=entry.peer[:255],
            sender=entry.sender[:255],
            control_id=entry.control_id[:199],
            message_type=entry.message_type[:32],
            content_sha256=entry.content_sha256,
            status=entry.status,
            ack_code=entry.ack_code,
            error=entry.error,
            raw=entry.raw,
            correlation_id=entry.correlation_id,
        )
        self.session.add(row)

    def applied_hash(self, sender: str, control_id: str) -> str | None:
        row = (
            self.session.connection()
            .execute(_APPLIED_HASH, {"sender": sender[:255], "control_id": control_id[:199]})
            .first()
        )
        return None if row is None else str(row[0])

    def mark_applied(self, sender: str, control_id: str, content_sha256: str) -> None:
        try:
            self.session.connection().execute(
                _MARK_APPLIED,
                {
                    "sender": sender[:255],
                    "control_id": control_id[:199],
                    "content_sha256": content_sha256,
                },
            )
        except IntegrityError as exc:
            raise ConcurrentWriteError(
                f"message {control_id!r} from {sender} is being applied concurrently"
            ) from exc

    def get(self, message_id: int) -> Hl7MessageRow:
        row = self.session.get(Hl7MessageRow, message_id)
        if row is None:
            raise NotFoundError(f"HL7 message {message_id} is not in the message log")
        return row

    def search(self, query: MessageQuery) -> list[Hl7MessageRow]:
        """Log rows matching every given criterion, newest first."""
        statement = select(Hl7MessageRow)
        if query.status:
            statement = statement.where(Hl7MessageRow.status == query.status)
        if query.sender:
            statement = statement.where(Hl7MessageRow.sender == query.sender)
        if query.control_id:
            statement = statement.where(Hl7MessageRow.control_id == query.control_id)
        if query.message_type:
            statement = statement.where(Hl7MessageRow.message_type == query.message_type)
        if query.since:
            statement = statement.where(Hl7MessageRow.received_at >= query.since)
        if query.before_id:
            statement = statement.where(Hl7MessageRow.id < query.before_id)
        statement = statement.order_by(Hl7MessageRow.id.desc()).limit(query.limit)
        return list(self.session.scalars(statement))


def message_summary(row: Hl7MessageRow) -> dict[str, Any]:
    """A log row as JSON-ready data without the raw bytes (for listings)."""
    return {
        "id": row.id,
        "received_at": row.received_at.isoformat(),
        "peer": row.peer,
        "sender": row.sender,
        "control_id": row.control_id,
        "message_type": row.message_type,
        "status": row.status,
        "ack_code": row.ack_code,
        "error": row.error,
        "size": len(row.raw),
    }
