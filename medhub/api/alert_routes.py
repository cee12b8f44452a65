"""The alerts JSON API (``/api/v1/alerts``): list alerts and acknowledge one.

The body of each alert is the same JSON that goes to RabbitMQ, so a dashboard
and a message consumer see one shape.
"""

from __future__ import annotations

from typing import Annotated, Any, Final, get_args

from fastapi import APIRouter, Query, Request
from pydantic import BaseModel, Field

from medhub.api.audit import note
from medhub.api.deps import ContextDep
from medhub.api.security import check_patient, principal_of
from medhub.cds.alert_store import AlertService, alert_payload
from medhub.cds.alerts import OPEN_STATES, AlertState
from medhub.errors import InputError, Issue, NotFoundError

router = APIRouter(prefix="/api/v1", tags=["alerts"])

_STATES: Final = {"active": OPEN_STATES, **{s: (s,) for s in get_args(AlertState)}}


class Acknowledgement(BaseModel):
    """``POST /api/v1/alerts/{id}/acknowledge``: who acknowledges (until logins exist)."""

    by: str = Field(min_length=1, max_length=255, examples=["Practitioner/123"])


def _service(context: ContextDep) -> AlertService:
    if context.alerts is None:
        raise NotFoundError("this medhub has no alerting configured")
    return context.alerts


@router.get("/alerts")
def list_alerts(
    request: Request,
    context: ContextDep,
    state: str = "active",
    patient: str | None = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 500,
) -> dict[str, Any]:
    service = _service(context)
    states = _STATES.get(state)
    if states is None:
        message = f"state must be one of {', '.join(_STATES)}, got {state!r}"
        raise InputError(message, [Issue(message, expression=("state",))])
    patient_id = patient.removeprefix("Patient/") if patient else None
    if patient_id is not None:
        check_patient(request, context, patient_id)
    alerts = service.list_alerts(states=states, patient_id=patient_id, limit=limit)
    principal = principal_of(request, context)
    if context.access is not None and (principal.unit_bound or principal.patient):
        access = context.access
        alerts = [a for a in alerts if a.patient_id and access.visible(principal, a.patient_id)]
    note(request, (), patients=[a.patient_id for a in alerts if a.patient_id])
    return {"alerts": [alert_payload(a) for a in alerts]}


@router.post("/alerts/{alert_id}/acknowledge")
def acknowledge(
    alert_id: str, body: Acknowledgement, request: Request, context: ContextDep
) -> dict[str, Any]:
    service = _service(context)
    current = service.get(alert_id)
    if current.patient_id:
        check_patient(request, context, current.patient_id)
    principal = principal_of(request, context)
    # Who acknowledged is the logged-in user when there is one, not what the body claims.
    by = (principal.practitioner or principal.subject) if principal.kind == "user" else body.by
    alert = service.acknowledge(alert_id, by=by)
    return alert_payload(alert)
