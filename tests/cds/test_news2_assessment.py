"""NEWS2 from readings (pure): freshness, missing and stale, band, response, alert edges, FHIR."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from medhub.cds.alarm_codes import Condition, Transition
from medhub.cds.news2 import Consciousness, Risk
from medhub.cds.news2_assessment import News2Assessment, assess, transitions
from medhub.cds.news2_fhir import SNOMED_NEWS2_TOTAL, news2_observation
from medhub.cds.news2_inputs import Reading, ScaleReading
from medhub.clinical.resources import validate_resource

NOW = datetime(2026, 11, 21, 12, 0, tzinfo=UTC)
HOUR = timedelta(hours=1)


def reading(parameter: str, value: float | bool | Consciousness, age: timedelta) -> Reading:
    return Reading(parameter, value, NOW - age, f"device/mon-1/{parameter}")


def normal(age: timedelta = timedelta(minutes=5), **changes: Any) -> list[Reading]:
    """A full set of in-range readings (NEWS2 0), with some values changed."""
    values: dict[str, float | bool | Consciousness] = {
        "respiratory_rate": 16,
        "spo2": 97,
        "on_oxygen": False,
        "systolic_bp": 125,
        "pulse": 72,
        "consciousness": Consciousness.ALERT,
        "temperature": 37.0,
    }
    values.update(changes)
    return [reading(p, v, age) for p, v in values.items()]


def scored(readings: list[Reading], **kwargs: Any) -> News2Assessment:
    return assess("p-1", readings, now=NOW, max_age=HOUR, **kwargs)


def test_a_complete_normal_set_scores_zero_with_routine_monitoring() -> None:
    result = scored(normal())
    assert (result.score.total, result.score.risk, result.complete) == (0, Risk.LOW, True)
    assert result.response.monitoring == "minimum 12-hourly"
    assert result.alert_condition is None
    assert all(p.status == "scored" for p in result.parameters)


def test_a_value_exactly_max_age_old_is_used_a_microsecond_older_is_stale() -> None:
    at_edge = scored(normal(age=HOUR))
    assert at_edge.complete
    older = scored(normal(age=HOUR + timedelta(microseconds=1)))
    assert not older.complete
    assert set(older.stale) == {
        "respiratory_rate",
        "spo2",
        "on_oxygen",
        "systolic_bp",
        "pulse",
        "consciousness",
        "temperature",
    }
    assert older.missing == ()


def test_stale_and_missing_are_listed_not_scored_as_zero() -> None:
    readings = [r for r in normal(respiratory_rate=26) if r.parameter != "temperature"]
    readings = [reading("pulse", 135, 2 * HOUR) if r.parameter == "pulse" else r for r in readings]
    result = scored(readings)
    assert result.missing == ("temperature",)
    assert result.stale == ("pulse",)
    pulse = next(p for p in result.parameters if p.parameter == "pulse")
    assert (pulse.status, pulse.score, pulse.reading and pulse.reading.value) == (
        "stale",
        None,
        135,
    )
    assert result.score.total == 3 and not result.complete  # a lower bound
    assert result.score.risk is Risk.LOW_MEDIUM  # the 3 of the respiration rate counts
    assert "not scored: pulse, temperature" in result.summary()


def test_the_newest_reading_of_a_parameter_wins_whatever_its_source() -> None:
    readings = normal() + [
        Reading("temperature", 39.2, NOW - timedelta(minutes=1), "Observation/t1"),
        Reading("temperature", 35.0, NOW - timedelta(minutes=30), "Observation/t0"),
    ]
    result = scored(readings)
    temperature = next(p for p in result.parameters if p.parameter == "temperature")
    assert temperature.reading is not None and temperature.reading.source == "Observation/t1"
    assert temperature.score == 2


@pytest.mark.parametrize(
    ("changes", "total", "risk", "condition", "urgency"),
    [
        ({"pulse": 95}, 1, Risk.LOW, None, "ward-based response"),
        ({"consciousness": Consciousness.NEW_CONFUSION}, 3, Risk.LOW_MEDIUM,
         Condition.NEWS2_LOW_MEDIUM, "urgent ward-based response"),
        ({"pulse": 95, "spo2": 95, "respiratory_rate": 22}, 4, Risk.LOW, None,
         "ward-based response"),
        ({"pulse": 115, "spo2": 93, "temperature": 38.5}, 5, Risk.MEDIUM,
         Condition.NEWS2_MEDIUM, "key threshold for urgent response"),
        ({"pulse": 115, "spo2": 93, "temperature": 39.1}, 6, Risk.MEDIUM,
         Condition.NEWS2_MEDIUM, "key threshold for urgent response"),
        ({"pulse": 115, "spo2": 93, "on_oxygen": True, "temperature": 38.5}, 7, Risk.HIGH,
         Condition.NEWS2_HIGH, "urgent or emergency response"),
    ],
)  # fmt: skip
def test_bands_alerts_and_responses(
    changes: dict[str, Any], total: int, risk: Risk, condition: Condition | None, urgency: str
) -> None:
    result = scored(normal(**changes))
    assert (result.score.total, result.score.risk) == (total, risk)
    assert result.alert_condition == condition
    assert result.response.urgency == urgency


def test_scale_2_comes_from_the_charted_prescription() -> None:
    readings = normal(spo2=90)
    assert scored(readings).score.parameters["spo2"] == 3
    prescribed = ScaleReading(2, NOW - timedelta(days=3), "Observation/s2")
    result = scored(readings, scale=prescribed)
    assert result.spo2_scale == 2 and result.score.parameters["spo2"] == 0
    assert result.complete  # a prescription does not go stale


@pytest.mark.parametrize(
    ("open_condition", "changes", "complete", "edges"),
    [
        (None, {}, True, []),
        (None, {"pulse": 135}, True, [(Condition.NEWS2_LOW_MEDIUM, Transition.START)]),
        (
            Condition.NEWS2_LOW_MEDIUM,
            {"pulse": 115, "spo2": 93, "on_oxygen": True, "temperature": 38.5},
            True,
            [
                (Condition.NEWS2_LOW_MEDIUM, Transition.END),
                (Condition.NEWS2_HIGH, Transition.START),
            ],
        ),
        (Condition.NEWS2_HIGH, {}, True, [(Condition.NEWS2_HIGH, Transition.END)]),
        (Condition.NEWS2_HIGH, {}, False, []),  # missing data never ends an alert
        (Condition.NEWS2_MEDIUM, {"pulse": 135}, False, []),  # nor lowers one
        (
            None,
            {"pulse": 135, "respiratory_rate": 26},
            False,
            [(Condition.NEWS2_MEDIUM, Transition.START)],
        ),  # a lower bound of 6 is at least medium
        (Condition.NEWS2_MEDIUM, {"pulse": 115, "spo2": 93, "temperature": 38.5}, True, []),
    ],
)
def test_alert_transitions(
    open_condition: Condition | None,
    changes: dict[str, Any],
    complete: bool,
    edges: list[tuple[Condition, Transition]],
) -> None:
    readings = normal(**changes)
    if not complete:
        readings = [r for r in readings if r.parameter != "temperature"]
    assert transitions(open_condition, scored(readings)) == edges


def test_the_news2_observation_is_valid_fhir_with_sub_scores_and_gaps() -> None:
    readings = [r for r in normal(respiratory_rate=26) if r.parameter != "temperature"]
    readings.append(Reading("consciousness", Consciousness.VOICE, NOW, "Observation/acvpu-1"))
    result = scored(readings)
    resource = news2_observation(result)
    validate_resource(resource, expected_type="Observation")
    assert resource["status"] == "preliminary"  # incomplete: a lower bound
    assert resource["valueQuantity"]["value"] == 6
    assert {c["code"] for c in resource["code"]["coding"]} == {"total-score", SNOMED_NEWS2_TOTAL}
    components = {c["code"]["coding"][0]["code"]: c for c in resource["component"]}
    assert components["respiratory_rate-score"]["valueInteger"] == 3
    assert components["consciousness-score"]["valueInteger"] == 3
    assert components["temperature-score"]["dataAbsentReason"]["text"] == "not measured"
    assert resource["derivedFrom"] == [{"reference": "Observation/acvpu-1"}]
    assert "temperature not scored" in resource["note"][0]["text"]
    complete = news2_observation(scored(normal()))
    validate_resource(complete, expected_type="Observation")
    assert complete["status"] == "final" and "note" not in complete
