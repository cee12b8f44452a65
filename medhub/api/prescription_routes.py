"""Prescriptions over the JSON API: what was sent to the pharmacy and what it answered.

``GET /api/v1/prescriptions/{id}/orders`` lists the HL7 order messages sent
for one MedicationRequest (new order, cancel, discontinue) with their
delivery state on the outbound queue: ``pending`` (with attempts and the last
error), ``sent`` (the pharmacy's AA/CA) or ``parked`` (refused or given up,
with the reason; resend with ``medhub hl7 outbound resend``).
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request

from medhub.api.deps import ContextDep
from medhub.api.fhir_access import guard_stored
from medhub.errors import NotFoundError
from medhub.hl7.pharmacy_orders import orders_for

router = APIRouter(prefix="/api/v1", tags=["prescriptions"])


@router.get("/prescriptions/{request_id}/orders")
def prescription_orders(request_id: str, request: Request, context: ContextDep) -> dict[str, Any]:
    if context.sql_store is None:
        raise NotFoundError("this medhub keeps no pharmacy orders (no SQL store)")
    with context.store.unit_of_work() as resources:
        stored = resources.read("MedicationRequest", request_id)  # 404 / 410 when unknown
    guard_stored(request, context, stored)
    with context.sql_store.session() as session:
        orders = orders_for(session, request_id)
    return {
        "medicationRequest": f"MedicationRequest/{request_id}",
        "orders": [
            {
                "orderControl": order.order_control,
                "createdAt": order.created_at.isoformat(),
                "destination": order.message.destination,
                "controlId": order.message.control_id,
                "status": order.message.status,
                "attempts": order.message.attempts,
                "ackCode": order.message.ack_code,
                "lastError": order.message.last_error,
                "sentAt": order.message.sent_at.isoformat() if order.message.sent_at else None,
            }
            for order in orders
        ],
    }
