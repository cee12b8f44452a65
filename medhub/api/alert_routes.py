"""The alerts JSON API (``/api/v1/alerts``): list alerts and acknowledge one.

The body of each alert is the same JSON that goes to RabbitMQ, so a dashboard
and a message consumer see one shape.
"""

from __future__ import annotations

from typing import Annotated, Any, Final, get_args

from fastapi import APIRouter, Query
from pydantic import BaseModel, Field

from medhub.api.deps import ContextDep
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
    alerts = service.list_alerts(states=states, patient_id=patient_id, limit=limit)
    return {"alerts": [alert_payload(a) for a in alerts]}


@router.post("/alerts/{alert_id}/acknowledge")
def acknowledge(alert_id: str, body: Acknowledgement, context: ContextDep) -> dict[str, Any]:
    alert = _service(context).acknowledge(alert_id, by=body.by)
    return alert_payload(alert)
