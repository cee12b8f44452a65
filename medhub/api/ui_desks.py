"""The pharmacist's and the administrator's dashboards: orders to verify, and the plumbing.

The pharmacist sees recent MedicationRequests (newest first) with the
findings the prescribing check stored (DetectedIssues, overridden or not) and
what the pharmacy system answered to the HL7 order (the outbound queue's
state of each RDE^O11: pending, sent with the pharmacy's ACK, or parked).

The administrator sees users, API keys, devices with their last-seen time and
binding, the HL7 message log with its dead letters, and the outbound MLLP
queue: what is waiting, and what was parked and needs a resend.
"""

from __future__ import annotations

from dataclasses import asdict
from datetime import datetime
from typing import Any, Final

from fastapi import Request

from medhub.api.audit import note
from medhub.api.deps import ApiContext
from medhub.api.live import iso
from medhub.api.permissions import Principal
from medhub.api.ui_census import patient_name
from medhub.api.ui_views import LIVE_ORDERS, issues_of, order_view, search_all
from medhub.hl7.message_log import MessageQuery, SqlMessageLog, message_summary
from medhub.hl7.outbound_queue import OutboundMessage, list_messages
from medhub.hl7.pharmacy_orders import orders_for

RECENT_ORDERS: Final = 50
LOG_ROWS: Final = 25
DEVICE_ROWS: Final = 20


def _when(moment: datetime | None) -> str:
    return iso(moment) if moment is not None else ""


def pharmacist_view(context: ApiContext, principal: Principal, request: Request) -> dict[str, Any]:
    """Recent live orders, their findings and the pharmacy's answer, findings first."""
    with context.store.unit_of_work() as resources:
        result = search_all(
            resources,
            "MedicationRequest",
            [
                ("status", LIVE_ORDERS),
                ("_sort", "-_lastUpdated"),
                ("_count", str(RECENT_ORDERS)),
                ("_include", "MedicationRequest:subject"),
            ],
        )
        issues = issues_of(resources, result.resources)
    names = {
        p.id: patient_name(p.resource) for p in result.included if p.resource_type == "Patient"
    }
    rows = []
    for stored in result.resources:
        row = order_view(stored, issues)
        patient = row["patient"]
        if (
            context.access is not None
            and patient
            and not context.access.visible(principal, patient)
        ):
            continue
        row["patient_name"] = names.get(patient, patient)
        row["orders"] = _pharmacy_orders(context, stored.id)
        rows.append(row)
    note(
        request,
        [f"MedicationRequest/{r['id']}" for r in rows],
        patients=[r["patient"] for r in rows if r["patient"]],
    )
    return {"rows": rows, "with_findings": sum(1 for r in rows if r["issues"])}


def _pharmacy_orders(context: ApiContext, request_id: str) -> list[dict[str, Any]]:
    if context.sql_store is None:
        return []
    with context.sql_store.session() as session:
        return [
            {
                "control": order.order_control,
                "status": order.message.status,
                "ack": order.message.ack_code or "",
                "error": order.message.last_error or "",
                "attempts": order.message.attempts,
                "sent_at": _when(order.message.sent_at),
            }
            for order in orders_for(session, request_id)
        ]


def _outbound(message: OutboundMessage) -> dict[str, Any]:
    return {
        "id": message.id,
        "destination": message.destination,
        "control_id": message.control_id,
        "status": message.status,
        "attempts": message.attempts,
        "created_at": _when(message.created_at),
        "next_attempt_at": _when(message.next_attempt_at),
        "error": message.last_error or "",
        "ack": message.ack_code or "",
    }


def _devices(context: ApiContext, request: Request) -> tuple[list[dict[str, Any]], int]:
    """Bound devices first, then the most recently seen, at most :data:`DEVICE_ROWS`."""
    if context.devices is None:
        return [], 0
    rows = []
    for entry in context.devices.list(limit=1000):
        state, binding = entry.state, entry.binding
        rows.append(
            {
                "id": entry.device_id,
                "status": state.status if state else "unknown",
                "last_seen": _when(state.last_seen) if state else "",
                "clock_flagged": bool(state.clock_flagged) if state else False,
                "patient": binding.patient_id if binding else "",
                "patient_name": "",
            }
        )
    shown = _recent_first(rows)[:DEVICE_ROWS]
    bound = sorted({d["patient"] for d in shown if d["patient"]})
    if bound:
        with context.store.unit_of_work() as resources:
            found = search_all(resources, "Patient", [("_id", ",".join(bound))]).resources
        names = {p.id: patient_name(p.resource) for p in found}
        for device in shown:
            device["patient_name"] = names.get(device["patient"], device["patient"])
        note(request, [f"Patient/{p}" for p in bound], patients=bound)
    return shown, len(rows)


def _recent_first(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    seen = sorted(rows, key=lambda d: d["last_seen"], reverse=True)
    return sorted(seen, key=lambda d: d["patient"] == "")  # stable: bound first, each newest first


def admin_view(context: ApiContext, _principal: Principal, request: Request) -> dict[str, Any]:
    """Users, API keys, devices, the HL7 log with dead letters, and the outbound queue."""
    devices, total = _devices(context, request)
    view: dict[str, Any] = {
        "users": [],
        "keys": [],
        "devices": devices,
        "devices_total": total,
        "messages": [],
        "dead_letters": [],
        "outbound": [],
        "parked": [],
    }
    if context.security is not None:
        view["users"] = [asdict(u) for u in context.security.accounts.list_users()]
        view["keys"] = list(context.security.accounts.list_api_keys())
    if context.sql_store is not None:
        with context.sql_store.session() as session:
            log = SqlMessageLog(session)
            view["messages"] = [
                message_summary(r) for r in log.search(MessageQuery(limit=LOG_ROWS))
            ]
            dead = MessageQuery(status="dead-letter", limit=LOG_ROWS)
            view["dead_letters"] = [message_summary(r) for r in log.search(dead)]
            view["outbound"] = [_outbound(m) for m in list_messages(session, status="pending")]
            view["parked"] = [_outbound(m) for m in list_messages(session, status="parked")]
    return view
