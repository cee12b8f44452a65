"""FHIR in and out of the medication checks: drugs, doses, allergies, overrides, records."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from medhub.cds.medication_fhir import (
    OVERRIDE_URL,
    allergy_record,
    detected_issue,
    doses,
    finding_issue,
    medication_of,
    override_audit_event,
    override_of,
    proposed_order,
)
from medhub.cds.medication_model import DailyDose, Finding
from medhub.clinical.resources import validate_resource
from medhub.errors import InputError

EXAMPLES = Path(__file__).resolve().parents[1] / "data" / "fhir-r4-examples"
RXNORM = "http://www.nlm.nih.gov/research/umls/rxnorm"


def example(name: str) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((EXAMPLES / f"{name}.json").read_text())
    return loaded


def dosed(
    value: float, unit: str, frequency: int, period: float, period_unit: str
) -> dict[str, Any]:
    return {
        "resourceType": "MedicationRequest",
        "dosageInstruction": [
            {
                "timing": {
                    "repeat": {"frequency": frequency, "period": period, "periodUnit": period_unit}
                },
                "doseAndRate": [{"doseQuantity": {"value": value, "unit": unit, "code": unit}}],
            }
        ],
    }


@pytest.mark.parametrize(
    ("request_body", "single", "daily"),
    [
        (dosed(500, "mg", 4, 1, "d"), 500, 2000),
        (dosed(1, "g", 1, 8, "h"), 1, 3),
        (dosed(15, "mg", 1, 1, "wk"), 15, 15 / 7),
        (dosed(200, "mg", 2, 1, "d"), 200, 400),
    ],
)
def test_single_and_daily_doses_follow_the_timing(
    request_body: dict[str, Any], single: float, daily: float
) -> None:
    found_single, found_daily = doses(request_body)
    assert found_single is not None and found_single.amount == single
    assert found_daily is not None and found_daily.amount == pytest.approx(daily)


def test_a_dose_without_timing_has_no_daily_dose() -> None:
    body = dosed(500, "mg", 1, 1, "d")
    del body["dosageInstruction"][0]["timing"]
    assert doses(body) == (DailyDose(500, "mg"), None)


def test_the_largest_of_several_instructions_counts() -> None:
    body = dosed(500, "mg", 2, 1, "d")
    body["dosageInstruction"] += dosed(1000, "mg", 3, 1, "d")["dosageInstruction"]
    assert doses(body)[1] == DailyDose(3000, "mg")


def test_a_contained_medication_contributes_its_code_and_ingredients() -> None:
    request = example("MedicationRequest-medrx0301")
    drug = medication_of(request)
    assert [(c.system, c.code) for c in drug.codes] == [("http://snomed.info/sct", "430127000")]
    assert drug.label() == "Oral Form Oxycodone (product)"


def test_a_referenced_medication_is_looked_up() -> None:
    request = {
        "medicationReference": {"reference": "Medication/m1", "display": "the tablets"},
    }
    medication = {
        "resourceType": "Medication",
        "code": {"coding": [{"system": RXNORM, "code": "11289", "display": "warfarin"}]},
    }
    drug = medication_of(request, {"Medication/m1": medication}.get)
    assert [c.code for c in drug.codes] == ["11289"]
    assert medication_of(request, lambda _r: None).text == "the tablets"


def test_every_example_medication_request_converts() -> None:
    for path in sorted(EXAMPLES.glob("MedicationRequest-*.json")):
        order = proposed_order(json.loads(path.read_text()))
        assert order.drug.codes or order.drug.text, path.name


def test_an_allergy_reads_code_text_reaction_substance_and_criticality() -> None:
    record = allergy_record("a1", example("AllergyIntolerance-medication"))
    assert record is not None
    assert record.reference == "AllergyIntolerance/a1"
    assert record.substance.codes
    assert record.criticality == "high"


@pytest.mark.parametrize(
    ("element", "code"),
    [
        ("verificationStatus", "refuted"),
        ("verificationStatus", "entered-in-error"),
        ("clinicalStatus", "resolved"),
        ("clinicalStatus", "inactive"),
    ],
)
def test_a_refuted_or_inactive_allergy_is_not_checked(element: str, code: str) -> None:
    allergy = example("AllergyIntolerance-medication")
    allergy[element] = {"coding": [{"code": code}]}
    assert allergy_record("a1", allergy) is None


def test_an_allergy_with_no_substance_is_not_checked() -> None:
    assert allergy_record("a1", {"resourceType": "AllergyIntolerance"}) is None


def test_an_override_takes_a_text_or_coded_reason_and_defaults_the_author() -> None:
    request = {
        "requester": {"reference": "Practitioner/7"},
        "extension": [
            {"url": "http://other.example/x", "valueString": "ignored"},
            {
                "url": OVERRIDE_URL,
                "extension": [
                    {
                        "url": "reason",
                        "valueCodeableConcept": {
                            "coding": [{"code": "benefit-outweighs-risk", "display": "Benefit"}]
                        },
                    }
                ],
            },
        ],
    }
    found = override_of(request)
    assert found is not None
    assert found.reason_code == "benefit-outweighs-risk" and found.reason == "Benefit"
    assert found.author == {"reference": "Practitioner/7"}
    assert override_of({"extension": []}) is None


def test_an_override_with_a_blank_reason_is_refused_with_its_path() -> None:
    request = {
        "extension": [{"url": OVERRIDE_URL, "extension": [{"url": "reason", "valueString": "  "}]}]
    }
    with pytest.raises(InputError) as caught:
        override_of(request)
    assert caught.value.issues[0].expression == ("MedicationRequest.extension[0]",)


FINDING = Finding(
    kind="drug-interaction",
    severity="high",
    code="DRG",
    summary="warfarin + ibuprofen: major interaction",
    detail="Bleeding risk.",
    implicated=("MedicationRequest/w1",),
    interaction_severity="major",
    source="label",
    source_url="https://example.org/label",
)


def test_the_detected_issue_is_a_valid_r4_resource_with_the_override() -> None:
    override = override_of(
        {
            "requester": {"reference": "Practitioner/7"},
            "extension": [
                {"url": OVERRIDE_URL, "extension": [{"url": "reason", "valueString": "needed"}]}
            ],
        }
    )
    issue = detected_issue(
        FINDING,
        request_reference="MedicationRequest/new",
        patient_reference="Patient/p1",
        identified="2026-12-07T09:00:00.000000Z",
        override=override,
    )
    validate_resource(issue, expected_type="DetectedIssue")
    assert issue["mitigation"][0]["action"]["text"] == "needed"
    assert [i["reference"] for i in issue["implicated"]] == [
        "MedicationRequest/new",
        "MedicationRequest/w1",
    ]
    assert override is not None
    audit = override_audit_event(
        override,
        request_reference="MedicationRequest/new",
        patient_reference="Patient/p1",
        issue_references=["DetectedIssue/d1"],
        recorded="2026-12-07T09:00:00.000000Z",
    )
    validate_resource(audit, expected_type="AuditEvent")


def test_a_finding_is_an_error_only_when_it_blocked() -> None:
    assert finding_issue(FINDING, blocked=True).severity == "error"
    assert finding_issue(FINDING, blocked=False).severity == "warning"
    assert finding_issue(FINDING, blocked=True).expression == ("MedicationRequest.medication[x]",)
