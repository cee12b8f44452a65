"""The outbound HL7 v2 queue: messages waiting for a partner's ACK, one FIFO per destination.

A message is enqueued in the same transaction as the data it is about, so it
exists exactly when that data was committed (the transactional outbox of
DESIGN.md, "Reliability rules"). A sender (``medhub.adapters.mllp_sender``)
claims the head of a destination's queue, sends it over MLLP and records the
outcome; every function here works on the caller's :class:`Session` and never
commits.

Order: HL7 partners apply messages in the order received (an A08 after its
A01, a result after its order), so each destination is a *strict* FIFO: only
its oldest pending message may be sent; the ones behind it wait while it is
retried. A message the partner refuses for good (AE) is parked, which lets the
queue move on; an operator can resend it later, when it goes back into the
queue in its original place (ordered by id).

Claiming is a lease, not a lock held over the network: the claim transaction
locks the head row (``SELECT ... FOR UPDATE SKIP LOCKED`` on PostgreSQL and
MariaDB/MySQL; SQLite's ``BEGIN IMMEDIATE`` write lock serialises it), counts
the attempt and moves ``next_attempt_at`` past the time the exchange may take,
then commits. A second worker sees the head leased and gets nothing; if the
sender dies mid-exchange the lease runs out and the message is sent again
with the same MSH-10, which the partner's duplicate check recognises
(HL7 v2.5.1 §2.10.1, "at least once"). SKIP LOCKED is applied only to the head
row, never to "the oldest row I can lock", which would hand out the second
message while the first is in flight.

Statuses: ``pending`` (waiting or in flight), ``sent`` (AA/CA received),
``parked`` (refused with AE/CE, or out of attempts; ``last_error`` says why).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Final, Literal

from sqlalchemy import Index, Integer, String, func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Mapped, Session, mapped_column

from medhub.correlation import current_correlation_id
from medhub.db.base import MYSQL_TABLE_OPTIONS, Base, LongBlob, LongText, UtcDateTime
from medhub.errors import ConflictError, InputError, Issue, NotFoundError
from medhub.fhir.sql_tables import AutoId
from medhub.hl7.er7 import decode_er7, parse_er7
from medhub.hl7.outbound_policy import GiveUp, RetryPolicy, after_failure

Status = Literal["pending", "sent", "parked"]
STATUSES: Final[tuple[Status, ...]] = ("pending", "sent", "parked")
#: MSH-10 is ST(199) from HL7 v2.6 on; the column matches ``hl7_message.control_id``.
CONTROL_ID_MAX: Final = 199
DESTINATION_MAX: Final = 64


class Hl7OutboundRow(Base):
    __tablename__ = "hl7_outbound"

    id: Mapped[int] = mapped_column(AutoId, primary_key=True, autoincrement=True)
    destination: Mapped[str] = mapped_column(String(DESTINATION_MAX))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    control_id: Mapped[str] = mapped_column(String(CONTROL_ID_MAX))
    message: Mapped[bytes] = mapped_column(LongBlob)
    status: Mapped[str] = mapped_column(String(16))
    attempts: Mapped[int] = mapped_column(Integer)
    next_attempt_at: Mapped[datetime] = mapped_column(UtcDateTime)
    last_error: Mapped[str | None] = mapped_column(LongText, nullable=True)
    ack_code: Mapped[str | None] = mapped_column(String(2), nullable=True)
    ack: Mapped[bytes | None] = mapped_column(LongBlob, nullable=True)
    sent_at: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)
    #: The id of the work that queued it (:mod:`medhub.correlation`), for the sender's logs.
    correlation_id: Mapped[str | None] = mapped_column(String(64), nullable=True)

    __table_args__ = (
        # The claim: the oldest pending message of one destination.
        Index("ix_hl7_outbound_queue", "destination", "status", "id"),
        # A partner drops a second message with a control id it has seen as a
        # duplicate (HL7 v2.5.1 §2.10.1), so reusing one would lose data quietly.
        Index("uq_hl7_outbound_destination_control", "destination", "control_id", unique=True),
        MYSQL_TABLE_OPTIONS,
    )


@dataclass(frozen=True, slots=True)
class OutboundMessage:
    """One queued message and what happened to it so far."""

    id: int
    destination: str
    control_id: str
    message: bytes
    status: Status
    attempts: int
    created_at: datetime
    next_attempt_at: datetime
    last_error: str | None
    ack_code: str | None
    ack: bytes | None
    sent_at: datetime | None
    correlation_id: str | None = None


_STATUS: Final[dict[str, Status]] = {status: status for status in STATUSES}


def view(row: Hl7OutboundRow) -> OutboundMessage:
    """The message as callers see it (status, attempts, the ACK)."""
    return OutboundMessage(
        id=row.id,
        destination=row.destination,
        control_id=row.control_id,
        message=row.message,
        status=_STATUS[row.status],
        attempts=row.attempts,
        created_at=row.created_at,
        next_attempt_at=row.next_attempt_at,
        last_error=row.last_error,
        ack_code=row.ack_code,
        ack=row.ack,
        sent_at=row.sent_at,
        correlation_id=row.correlation_id,
    )


def enqueue(session: Session, *, destination: str, message: bytes, now: datetime) -> int:
    """Queue ``message`` (ER7 bytes, no MLLP framing) for ``destination``; returns its id.

    The message is parsed once here, so a malformed one is refused while the
    caller can still roll back, instead of being parked later. Its MSH-10 is
    what the partner's ACK must echo in MSA-2.
    """
    if not destination or len(destination) > DESTINATION_MAX:
        raise InputError(f"destination name must be 1-{DESTINATION_MAX} characters")
    control_id = parse_er7(decode_er7(message)).control_id
    if len(control_id) > CONTROL_ID_MAX:
        raise InputError(
            f"MSH-10 is {len(control_id)} characters; at most {CONTROL_ID_MAX} are kept"
        )
    row = Hl7OutboundRow(
        destination=destination,
        created_at=now,
        control_id=control_id,
        message=message,
        status="pending",
        attempts=0,
        next_attempt_at=now,
        correlation_id=current_correlation_id(),
    )
    try:
        with session.begin_nested():
            session.add(row)
            session.flush()
    except IntegrityError as exc:
        text = f"MSH-10 {control_id!r} was already queued for {destination!r}"
        raise ConflictError(text, [Issue(text, code="duplicate", hl7_error_code=205)]) from exc
    return row.id


def _head(session: Session, destination: str) -> int | None:
    """Id of the oldest pending message of ``destination`` (no lock)."""
    return session.scalar(
        select(func.min(Hl7OutboundRow.id)).where(
            Hl7OutboundRow.destination == destination, Hl7OutboundRow.status == "pending"
        )
    )


def next_due(session: Session, *, destination: str, now: datetime) -> OutboundMessage | None:
    """The head of ``destination``'s queue if it is due now, without claiming it.

    The sender asks this before opening a connection, so an idle destination
    costs no connection and a down partner costs no attempt.
    """
    head = _head(session, destination)
    if head is None:
        return None
    row = session.get(Hl7OutboundRow, head)
    if row is None or row.status != "pending" or row.next_attempt_at > now:
        return None
    return view(row)


def claim_next(
    session: Session, *, destination: str, now: datetime, lease: timedelta
) -> OutboundMessage | None:
    """Claim the head of ``destination``'s queue for one delivery attempt, or None.

    None when the queue is empty, the head is waiting for its retry time, or
    another worker holds it (locked now, or leased until ``next_attempt_at``).
    The attempt is counted here, so a message that crashes its sender every
    time still runs out of attempts. Commit promptly: the row is locked until then.
    """
    head = _head(session, destination)
    if head is None:
        return None
    row = session.scalars(
        select(Hl7OutboundRow)
        .where(Hl7OutboundRow.id == head, Hl7OutboundRow.status == "pending")
        .with_for_update(skip_locked=True)
        .execution_options(populate_existing=True)
    ).one_or_none()
    if row is None or row.next_attempt_at > now:
        return None
    row.attempts += 1
    row.next_attempt_at = now + lease
    session.flush()
    return view(row)


def _pending_row(session: Session, message_id: int) -> Hl7OutboundRow:
    row = session.get(Hl7OutboundRow, message_id, with_for_update=True, populate_existing=True)
    if row is None:
        raise NotFoundError(f"no outbound HL7 message {message_id}")
    if row.status != "pending":
        raise ConflictError(f"outbound HL7 message {message_id} is {row.status}, not pending")
    return row


def mark_sent(
    session: Session, message_id: int, *, now: datetime, ack_code: str, ack: bytes
) -> None:
    """The partner accepted the message (AA/CA); keep its ACK as the receipt."""
    row = _pending_row(session, message_id)
    row.status, row.sent_at, row.ack_code, row.ack = "sent", now, ack_code[:2] or None, ack


def retry_later(
    session: Session,
    message_id: int,
    *,
    reason: str,
    at: datetime,
    ack_code: str | None = None,
    ack: bytes | None = None,
) -> None:
    """Leave the message at the head of its queue until ``at``, noting why it failed."""
    _retry(_pending_row(session, message_id), reason, at, ack_code, ack)


def park(
    session: Session,
    message_id: int,
    *,
    reason: str,
    ack_code: str | None = None,
    ack: bytes | None = None,
) -> None:
    """Take the message out of the queue (it stays in the table) so the ones behind it go."""
    _park(_pending_row(session, message_id), reason, ack_code, ack)


def record_failure(
    session: Session,
    message_id: int,
    *,
    reason: str,
    now: datetime,
    policy: RetryPolicy,
    jitter: float,
    ack_code: str | None = None,
    ack: bytes | None = None,
) -> Status:
    """A delivery attempt failed transiently: retry with back-off, or park when out of attempts.

    ``jitter`` is in [0, 1] (see :func:`medhub.hl7.outbound_policy.backoff_delay`).
    Returns the status the message is left in (``pending`` or ``parked``).
    """
    row = _pending_row(session, message_id)
    step = after_failure(policy, attempts=row.attempts, now=now, jitter=jitter)
    if isinstance(step, GiveUp):
        _park(row, f"gave up after {step.attempts} attempts; last: {reason}", ack_code, ack)
        return "parked"
    _retry(row, reason, step.when, ack_code, ack)
    return "pending"


def _retry(
    row: Hl7OutboundRow, reason: str, at: datetime, ack_code: str | None, ack: bytes | None
) -> None:
    row.next_attempt_at, row.last_error = at, reason
    row.ack_code, row.ack = (ack_code or "")[:2] or None, ack


def _park(row: Hl7OutboundRow, reason: str, ack_code: str | None, ack: bytes | None) -> None:
    row.status, row.last_error = "parked", reason
    row.ack_code, row.ack = (ack_code or "")[:2] or None, ack


def note_error(session: Session, message_id: int, *, reason: str) -> None:
    """Record why a pending message is stuck (partner unreachable) without using an attempt."""
    session.execute(
        update(Hl7OutboundRow)
        .where(Hl7OutboundRow.id == message_id, Hl7OutboundRow.status == "pending")
        .values(last_error=reason)
    )


def resend(session: Session, message_id: int, *, now: datetime) -> OutboundMessage:
    """Put a parked message back in its queue with fresh attempts (``medhub hl7 outbound resend``).

    It goes back in its original place: being older than what was queued since,
    it is the next one its destination sends.
    """
    row = session.get(Hl7OutboundRow, message_id, with_for_update=True, populate_existing=True)
    if row is None:
        raise NotFoundError(f"no outbound HL7 message {message_id}")
    if row.status != "parked":
        raise ConflictError(
            f"outbound HL7 message {message_id} is {row.status}; only parked messages are resent"
        )
    row.status, row.attempts, row.next_attempt_at = "pending", 0, now
    row.ack_code, row.ack = None, None
    session.flush()
    return view(row)


@dataclass(frozen=True, slots=True)
class QueueDepth:
    """How many messages of one destination are in one status, and since when the oldest."""

    destination: str
    status: Status
    messages: int
    oldest: datetime


def queue_depths(session: Session) -> list[QueueDepth]:
    """Pending and parked messages per destination (``/metrics``); sent ones are history.

    One ``GROUP BY`` over ``ix_hl7_outbound_queue`` (destination, status, id).
    """
    query = (
        select(
            Hl7OutboundRow.destination,
            Hl7OutboundRow.status,
            func.count(),
            func.min(Hl7OutboundRow.created_at),
        )
        .where(Hl7OutboundRow.status.in_(("pending", "parked")))
        .group_by(Hl7OutboundRow.destination, Hl7OutboundRow.status)
    )
    return [
        QueueDepth(destination, status, int(count), oldest)
        for destination, status, count, oldest in session.execute(query)
    ]


def get_message(session: Session, message_id: int) -> OutboundMessage:
    row = session.get(Hl7OutboundRow, message_id, populate_existing=True)
    if row is None:
        raise NotFoundError(f"no outbound HL7 message {message_id}")
    return view(row)


def list_messages(
    session: Session,
    *,
    destination: str | None = None,
    status: Status | None = None,
    limit: int = 100,
    after_id: int = 0,
) -> list[OutboundMessage]:
    """Messages in queue order (by id), filtered; page with ``after_id`` = the last id seen."""
    if status is not None and status not in STATUSES:
        raise InputError(f"status must be one of {', '.join(STATUSES)}")
    query = select(Hl7OutboundRow).where(Hl7OutboundRow.id > after_id)
    if destination is not None:
        query = query.where(Hl7OutboundRow.destination == destination)
    if status is not None:
        query = query.where(Hl7OutboundRow.status == status)
    query = query.order_by(Hl7OutboundRow.id).limit(limit)
    return [view(row) for row in session.scalars(query)]
