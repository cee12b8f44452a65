"""A NEWS2 assessment as a FHIR R4 Observation, recorded when a NEWS2 alert is raised.

Codes: no LOINC code for the NEWS2 total score could be confirmed, so the
primary coding is medhub's own (``urn:medhub:news2|total-score``). The
SNOMED CT UK edition concept 1104051000000101 "Royal College of Physicians
NEWS2 (National Early Warning Score 2) total score" is added as a second
coding: it is the code the UK FHIR profiles fix for the total (Yorkshire &
Humber Interweave ``Observation-NEWS2Score``, the Synanetics Emergency
Department IG examples). Sub-scores are components with medhub codes
(``<parameter>-score``), each ``valueInteger``; a parameter not scored
(stale or missing) is a component with ``dataAbsentReason`` ``unknown`` and
a text saying which.

Category ``survey`` (FHIR observation-category: assessment tools and scores,
as UK Core uses for NEWS2). An incomplete assessment is ``preliminary`` with
a note: its total is a lower bound, not a NEWS2 (RCP 2017: all seven
parameters are needed). ``derivedFrom`` names the charted Observations used;
device samples are not resources, so they are named in the components' text.
"""

from __future__ import annotations

from typing import Any, Final

from medhub.cds.news2_assessment import News2Assessment, ParameterResult
from medhub.cds.news2_inputs import NEWS2_SYSTEM, SNOMED_SYSTEM, UNITS
from medhub.clinical.vital_codes import OBSERVATION_CATEGORY_SYSTEM, UCUM_SYSTEM
from medhub.fhir.store import format_instant

SNOMED_NEWS2_TOTAL: Final = "1104051000000101"
DATA_ABSENT_SYSTEM: Final = "http://terminology.hl7.org/CodeSystem/data-absent-reason"
#: RCP chart wording of each parameter.
LABELS: Final[dict[str, str]] = {
    "respiratory_rate": "respiration rate",
    "spo2": "SpO2",
    "on_oxygen": "air or oxygen",
    "systolic_bp": "systolic blood pressure",
    "pulse": "pulse",
    "consciousness": "consciousness (ACVPU)",
    "temperature": "temperature",
}


def _value_text(result: ParameterResult) -> str:
    reading = result.reading
    if reading is None:
        return "no value"
    value = reading.value
    if result.parameter == "on_oxygen":
        shown = "oxygen" if value else "air"
    elif isinstance(value, bool | str):
        shown = str(value)
    else:
        shown = f"{value:g} {UNITS.get(result.parameter, '')}".strip()
    return f"{shown} at {format_instant(reading.time)} from {reading.source}"


def _component(result: ParameterResult) -> dict[str, Any]:
    label = LABELS[result.parameter]
    component: dict[str, Any] = {
        "code": {
            "coding": [{"system": NEWS2_SYSTEM, "code": f"{result.parameter}-score"}],
            "text": f"NEWS2 {label} score",
        }
    }
    if result.status == "scored" and result.score is not None:
        component["valueInteger"] = result.score
        component["code"]["text"] += f" ({_value_text(result)})"
    else:
        reason = "stale: " + _value_text(result) if result.status == "stale" else "not measured"
        component["dataAbsentReason"] = {
            "coding": [{"system": DATA_ABSENT_SYSTEM, "code": "unknown"}],
            "text": reason,
        }
    return component


def news2_observation(assessment: News2Assessment) -> dict[str, Any]:
    """The assessment as an Observation of the patient (FHIR R4, validated in the tests)."""
    score = assessment.score
    resource: dict[str, Any] = {
        "resourceType": "Observation",
        "status": "final" if assessment.complete else "preliminary",
        "category": [
            {"coding": [{"system": OBSERVATION_CATEGORY_SYSTEM, "code": "survey"}]},
        ],
        "code": {
            "coding": [
                {"system": NEWS2_SYSTEM, "code": "total-score", "display": "NEWS2 total score"},
                {
                    "system": SNOMED_SYSTEM,
                    "code": SNOMED_NEWS2_TOTAL,
                    "display": "Royal College of Physicians NEWS2 (National Early Warning "
                    "Score 2) total score",
                },
            ],
            "text": "NEWS2 total score",
        },
        "subject": {"reference": f"Patient/{assessment.patient_id}"},
        "effectiveDateTime": format_instant(assessment.at),
        "valueQuantity": {
            "value": score.total,
            "unit": "{score}",
            "system": UCUM_SYSTEM,
            "code": "{score}",
        },
        "interpretation": [
            {"text": f"{score.risk.value} clinical risk: {assessment.response.urgency}"}
        ],
        "component": [_component(result) for result in assessment.parameters],
    }
    if assessment.spo2_scale == 2:
        resource["method"] = {"text": "SpO2 scale 2 (prescribed target 88-92 %)"}
    charted = sorted(
        {
            r.reading.source
            for r in assessment.parameters
            if r.status == "scored" and r.reading and r.reading.source.startswith("Observation/")
        }
    )
    if charted:
        resource["derivedFrom"] = [{"reference": source} for source in charted]
    if not assessment.complete:
        unscored = ", ".join(LABELS[p] for p in assessment.stale + assessment.missing)
        resource["note"] = [
            {"text": f"Incomplete: {unscored} not scored; the total is a lower bound."}
        ]
    return resource
