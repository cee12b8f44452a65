"""``GET /api/v1/patients/{id}/news2``: the patient's NEWS2 now, and what it asks of the ward.

The body says what every sub-score was computed from (value, unit, time,
source) and which parameters were not scored because they were stale or
never measured, so a partial total is never mistaken for a NEWS2 (RCP NEWS2,
2017: all seven parameters make the score).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter, Request

from medhub.api.deps import ContextDep
from medhub.api.security import check_patient
from medhub.cds.news2_assessment import News2Assessment, ParameterResult
from medhub.cds.news2_fhir import LABELS
from medhub.cds.news2_inputs import UNITS
from medhub.cds.news2_service import News2Service
from medhub.errors import NotFoundError

router = APIRouter(prefix="/api/v1", tags=["alerts"])


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _parameter(result: ParameterResult) -> dict[str, Any]:
    reading = result.reading
    value: Any = None if reading is None else reading.value
    if result.parameter == "on_oxygen" and value is not None:
        value = "oxygen" if value else "air"
    return {
        "parameter": result.parameter,
        "label": LABELS[result.parameter],
        "status": result.status,
        "score": result.score,
        "value": value,
        "unit": UNITS.get(result.parameter),
        "time": None if reading is None else _iso(reading.time),
        "source": None if reading is None else reading.source,
    }


def assessment_body(assessment: News2Assessment) -> dict[str, Any]:
    score, response = assessment.score, assessment.response
    return {
        "patient": f"Patient/{assessment.patient_id}",
        "at": _iso(assessment.at),
        "score": score.total,
        "band": score.risk.value,
        "complete": assessment.complete,
        "red_score": score.red_score,
        "spo2_scale": assessment.spo2_scale,
        "max_age_seconds": assessment.max_age.total_seconds(),
        "parameters": [_parameter(p) for p in assessment.parameters],
        "stale": list(assessment.stale),
        "missing": list(assessment.missing),
        "response": {
            "urgency": response.urgency,
            "monitoring": response.monitoring,
            "action": response.action,
        },
    }


def _service(context: ContextDep) -> News2Service:
    if context.news2 is None:
        raise NotFoundError("this medhub has no NEWS2 scoring configured")
    return context.news2


@router.get("/patients/{patient_id}/news2")
def patient_news2(patient_id: str, request: Request, context: ContextDep) -> dict[str, Any]:
    check_patient(request, context, patient_id)
    assessment = _service(context).assess(patient_id, require_patient=True)
    return assessment_body(assessment)
