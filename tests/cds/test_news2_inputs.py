"""Which charted Observations and samples feed which NEWS2 parameter (pure)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from medhub.cds.news2 import Consciousness
from medhub.cds.news2_inputs import effective_time, observation_readings, sample_readings
from medhub.timeseries.records import SampleRecord

T = datetime(2026, 11, 21, 11, 30, tzinfo=UTC)
VITAL_SIGNS = [
    {
        "coding": [
            {
                "system": "http://terminology.hl7.org/CodeSystem/observation-category",
                "code": "vital-signs",
            }
        ]
    }
]
SURVEY = [
    {
        "coding": [
            {
                "system": "http://terminology.hl7.org/CodeSystem/observation-category",
                "code": "survey",
            }
        ]
    }
]


def observation(code: tuple[str, str], **fields: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "resourceType": "Observation",
        "status": "final",
        "category": VITAL_SIGNS,
        "code": {"coding": [{"system": code[0], "code": code[1]}]},
        "effectiveDateTime": "2026-11-21T11:30:00Z",
    }
    body.update(fields)
    return body


def quantity(value: float, unit: str) -> dict[str, Any]:
    return {"value": value, "unit": unit, "system": "http://unitsofmeasure.org", "code": unit}


LOINC = "http://loinc.org"
SNOMED = "http://snomed.info/sct"


def parsed(resource: dict[str, Any]) -> dict[str, object]:
    readings, _ = observation_readings(resource, source="Observation/o1")
    assert all(r.time == T and r.source == "Observation/o1" for r in readings)
    return {r.parameter: r.value for r in readings}


def loinc(code: str, value: float | None = None, unit: str = "", **fields: Any) -> dict[str, Any]:
    """A LOINC-coded vital-signs Observation, with a quantity when ``value`` is given."""
    if value is not None:
        fields["valueQuantity"] = quantity(value, unit)
    return observation((LOINC, code), **fields)


def part(code: str, value: float, unit: str) -> dict[str, Any]:
    """A component coded in LOINC with a quantity."""
    return {
        "code": {"coding": [{"system": LOINC, "code": code}]},
        "valueQuantity": quantity(value, unit),
    }


def concept(system: str, code: str) -> dict[str, Any]:
    return {"coding": [{"system": system, "code": code}]}


ACVPU = (SNOMED, "1104441000000107")
MEDHUB = "urn:medhub:news2"


@pytest.mark.parametrize(
    ("resource", "expected"),
    [
        (loinc("9279-1", 18, "/min"), {"respiratory_rate": 18}),
        (loinc("59408-5", 95, "%"), {"spo2": 95}),
        (loinc("8867-4", 72, "/min"), {"pulse": 72}),
        (loinc("8310-5", 37.5, "Cel"), {"temperature": 37.5}),
        (loinc("8310-5", 212, "[degF]"), {"temperature": 100.0}),
        # a unit medhub cannot convert is not guessed
        (loinc("8310-5", 37, "C"), {}),
        # a blood-gas SaO2 (laboratory) is not the SpO2 NEWS2 scores
        (loinc("2708-6", 95, "%", category=[]), {}),
        # systolic as a component of the blood-pressure panel
        (
            loinc(
                "85354-9", component=[part("8480-6", 88, "mm[Hg]"), part("8462-4", 50, "mm[Hg]")]
            ),
            {"systolic_bp": 88},
        ),
        # ACVPU: UK Core code with a SNOMED CT finding, or medhub's codes (new confusion)
        (
            observation(ACVPU, category=SURVEY, valueCodeableConcept=concept(SNOMED, "300202002")),
            {"consciousness": Consciousness.VOICE},
        ),
        (
            observation(
                (MEDHUB, "consciousness"),
                category=SURVEY,
                valueCodeableConcept=concept("urn:medhub:acvpu", "C"),
            ),
            {"consciousness": Consciousness.NEW_CONFUSION},
        ),
        (observation(ACVPU, valueCodeableConcept=concept(SNOMED, "12345")), {}),
        # air or oxygen: flow rate, concentration, medhub's boolean, a pulse-ox component
        (loinc("3151-8", 2, "L/min"), {"on_oxygen": True}),
        (loinc("3151-8", 0, "L/min"), {"on_oxygen": False}),
        (loinc("3150-0", 21, "%"), {"on_oxygen": False}),
        (loinc("3150-0", 28, "%"), {"on_oxygen": True}),
        (
            observation((MEDHUB, "air-or-oxygen"), category=[], valueBoolean=True),
            {"on_oxygen": True},
        ),
        (
            loinc("59408-5", 94, "%", component=[part("3151-8", 6, "L/min")]),
            {"spo2": 94, "on_oxygen": True},
        ),
        # what does not count: entered in error, no value, a date without a time
        (loinc("9279-1", 18, "/min", status="entered-in-error"), {}),
        (loinc("9279-1", dataAbsentReason={"text": "asleep"}), {}),
        (loinc("9279-1", 18, "/min", effectiveDateTime="2026-11-21"), {}),
    ],
)
def test_charted_observations(resource: dict[str, Any], expected: dict[str, object]) -> None:
    assert parsed(resource) == expected


def test_the_spo2_scale_is_charted_as_an_integer() -> None:
    readings, scale = observation_readings(
        observation(("urn:medhub:news2", "spo2-scale"), category=[], valueInteger=2),
        source="Observation/s",
    )
    assert readings == [] and scale is not None and (scale.scale, scale.time) == (2, T)
    _, bad = observation_readings(
        observation(("urn:medhub:news2", "spo2-scale"), valueInteger=3), source="Observation/s"
    )
    assert bad is None


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ({"effectiveDateTime": "2026-11-21T12:30:00+01:00"}, T),
        ({"effectiveInstant": "2026-11-21T11:30:00.000Z"}, T),
        ({"effectivePeriod": {"start": "2026-11-21T11:30Z"}}, T),  # to the minute is enough
        ({"effectivePeriod": {"start": "2026-11-21T11:30:00Z"}}, T),
        ({"effectiveDateTime": "2026-11"}, None),
        ({"effectiveDateTime": "2026-11-21T11"}, None),
        ({"effectiveDateTime": "not a date"}, None),
        ({}, None),
    ],
)
def test_effective_time_must_be_precise(fields: dict[str, Any], expected: datetime | None) -> None:
    assert effective_time(fields) == expected


def test_samples_feed_their_parameters() -> None:
    def record(vital: str, value: float) -> SampleRecord:
        return SampleRecord("mon-1", vital, "", T, T, T, value, "", "p-1")

    readings = sample_readings(
        [
            record("heart-rate", 80),
            record("pulse-rate", 82),
            record("diastolic-blood-pressure", 70),
            record("respiratory-rate", float("nan")),
        ]
    )
    assert [(r.parameter, r.value, r.source) for r in readings] == [
        ("pulse", 80, "device/mon-1/heart-rate"),
        ("pulse", 82, "device/mon-1/pulse-rate"),
    ]
