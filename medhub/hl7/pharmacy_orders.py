"""Prescriptions sent to the pharmacy, and what the pharmacy said about each one.

A saved MedicationRequest becomes an HL7 order (RDE^O11 or ORM^O01, built by
:mod:`medhub.hl7.pharmacy_order_builder`) queued on the outbound MLLP queue in
the prescription's own transaction, so the order exists exactly when the
prescription does. The ``pharmacy_order`` row ties the request to the queued
message, which is how ``GET /api/v1/prescriptions/{id}/orders`` shows
whether the pharmacy acknowledged it (AA), refused it (AE/AR: parked, with
its reason) or has not answered yet (pending, with the attempts so far).

MSH-10 is 20 random hex characters: HL7 v2.5.1 gives MSH-10 a length of 20,
and the partner's duplicate check must never see one reused.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

from sqlalchemy import Index, String, select
from sqlalchemy.orm import Mapped, Session, mapped_column

from medhub.db.base import MYSQL_TABLE_OPTIONS, Base, UtcDateTime
from medhub.fhir.sql_tables import AutoId
from medhub.hl7 import outbound_queue
from medhub.hl7.outbound_queue import Hl7OutboundRow, OutboundMessage
from medhub.hl7.pharmacy_order_builder import (
    OrderControl,
    PharmacyOrderHeader,
    build_pharmacy_order,
)

REQUEST_ID_MAX: Final = 64


class PharmacyOrderRow(Base):
    __tablename__ = "pharmacy_order"

    id: Mapped[int] = mapped_column(AutoId, primary_key=True, autoincrement=True)
    medication_request_id: Mapped[str] = mapped_column(String(REQUEST_ID_MAX))
    order_control: Mapped[str] = mapped_column(String(2))
    destination: Mapped[str] = mapped_column(String(outbound_queue.DESTINATION_MAX))
    outbound_id: Mapped[int] = mapped_column(AutoId)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)

    __table_args__ = (
        Index("ix_pharmacy_order_request", "medication_request_id", "id"),
        MYSQL_TABLE_OPTIONS,
    )


@dataclass(frozen=True, slots=True)
class PharmacyOrder:
    """One order message sent (or being sent) for a prescription."""

    order_control: str
    created_at: datetime
    message: OutboundMessage


class PharmacyOrderSink:
    """Queues a prescription's HL7 order for the pharmacy in the caller's transaction."""

    def __init__(self, session: Session, *, destination: str, header: PharmacyOrderHeader) -> None:
        self.session = session
        self.destination = destination
        self.header = header

    def send(
        self,
        *,
        order_control: OrderControl,
        request_id: str,
        request: dict[str, Any],
        patient: dict[str, Any] | None,
        requester: dict[str, Any] | None,
        medication: dict[str, Any] | None,
        now: datetime,
    ) -> None:
        """Build the order and queue it; a prescription that cannot be encoded is refused.

        The builder raises MissingDataError (naming the FHIR element) when the
        pharmacy could not act on the order, for example a patient without an
        identifier; the prescription's transaction then rolls back, so the
        prescriber learns it now rather than the pharmacy never hearing of it.
        """
        message = build_pharmacy_order(
            dict(request, id=request_id),
            patient or {"resourceType": "Patient"},
            header=self.header,
            control_id=uuid.uuid4().hex[:20],
            now=now,
            order_control=order_control,
            requester=requester,
            medication=medication,
        )
        outbound_id = outbound_queue.enqueue(
            self.session, destination=self.destination, message=message, now=now
        )
        self.session.add(
            PharmacyOrderRow(
                medication_request_id=request_id,
                order_control=order_control,
                destination=self.destination,
                outbound_id=outbound_id,
                created_at=now,
            )
        )


def orders_for(session: Session, request_id: str) -> list[PharmacyOrder]:
    """The orders sent for one prescription, oldest first, with their delivery state."""
    rows = session.execute(
        select(PharmacyOrderRow, Hl7OutboundRow)
        .join(Hl7OutboundRow, Hl7OutboundRow.id == PharmacyOrderRow.outbound_id)
        .where(PharmacyOrderRow.medication_request_id == request_id)
        .order_by(PharmacyOrderRow.id)
    ).all()
    return [
        PharmacyOrder(order.order_control, order.created_at, outbound_queue.view(outbound))
        for order, outbound in rows
    ]
