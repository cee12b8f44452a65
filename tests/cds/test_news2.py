"""NEWS2 (RCP 2017): every band boundary of every parameter, and the risk bands."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from medhub.cds.news2 import (
    Consciousness,
    LatestVitals,
    News2Observation,
    Risk,
    score_news2,
    score_pulse,
    score_respiratory_rate,
    score_spo2,
    score_systolic_bp,
    score_temperature,
)
from medhub.timeseries.records import SampleRecord


@pytest.mark.parametrize(
    ("rate", "score"),
    [(8, 3), (9, 1), (11, 1), (12, 0), (20, 0), (21, 2), (24, 2), (25, 3), (8.4, 3), (8.5, 1)],
)
def test_respiration_rate(rate: float, score: int) -> None:
    assert score_respiratory_rate(rate) == score


@pytest.mark.parametrize(
    ("spo2", "score"), [(91, 3), (92, 2), (93, 2), (94, 1), (95, 1), (96, 0), (100, 0)]
)
def test_spo2_scale_1(spo2: float, score: int) -> None:
    assert score_spo2(spo2, scale=1, on_oxygen=True) == score


@pytest.mark.parametrize(
    ("spo2", "on_oxygen", "score"),
    [
        (83, False, 3),
        (84, False, 2),
        (85, False, 2),
        (86, False, 1),
        (87, False, 1),
        (88, False, 0),
        (92, True, 0),
        (93, False, 0),
        (97, False, 0),
        (93, True, 1),
        (94, True, 1),
        (95, True, 2),
        (96, True, 2),
        (97, True, 3),
    ],
)
def test_spo2_scale_2(spo2: float, on_oxygen: bool, score: int) -> None:
    assert score_spo2(spo2, scale=2, on_oxygen=on_oxygen) == score


@pytest.mark.parametrize(
    ("sbp", "score"),
    [(90, 3), (91, 2), (100, 2), (101, 1), (110, 1), (111, 0), (219, 0), (220, 3)],
)
def test_systolic_bp(sbp: float, score: int) -> None:
    assert score_systolic_bp(sbp) == score


@pytest.mark.parametrize(
    ("pulse", "score"),
    [(40, 3), (41, 1), (50, 1), (51, 0), (90, 0), (91, 1), (110, 1), (111, 2), (130, 2), (131, 3)],
)
def test_pulse(pulse: float, score: int) -> None:
    assert score_pulse(pulse) == score


@pytest.mark.parametrize(
    ("temp", "score"),
    [
        (35.0, 3),
        (35.1, 1),
        (36.0, 1),
        (36.1, 0),
        (38.0, 0),
        (38.1, 1),
        (39.0, 1),
        (39.1, 2),
        (36.04, 1),
        (36.05, 0),
    ],
)
def test_temperature(temp: float, score: int) -> None:
    assert score_temperature(temp) == score


NORMAL = News2Observation(
    respiratory_rate=16,
    spo2=97,
    on_oxygen=False,
    systolic_bp=120,
    pulse=70,
    consciousness=Consciousness.ALERT,
    temperature=37.0,
)


def observe(**changes: object) -> News2Observation:
    values = {name: getattr(NORMAL, name) for name in NORMAL.__slots__}
    values.update(changes)
    return News2Observation(**values)


@pytest.mark.parametrize(
    ("obs", "total", "risk"),
    [
        (NORMAL, 0, Risk.LOW),
        (observe(pulse=95, respiratory_rate=22, on_oxygen=True), 5, Risk.MEDIUM),  # 1+2+2
        (observe(pulse=95, respiratory_rate=22), 3, Risk.LOW),  # 4 would still be low
        (observe(pulse=95, respiratory_rate=22, temperature=38.5), 4, Risk.LOW),
        (observe(consciousness=Consciousness.VOICE), 3, Risk.LOW_MEDIUM),  # red score
        (observe(pulse=131, temperature=38.5), 4, Risk.LOW_MEDIUM),
        (observe(pulse=115, respiratory_rate=22, temperature=39.5), 6, Risk.MEDIUM),
        (observe(pulse=115, respiratory_rate=22, temperature=39.5, systolic_bp=105), 7, Risk.HIGH),
        (observe(spo2=91, respiratory_rate=25, pulse=131), 9, Risk.HIGH),
    ],
)
def test_aggregate_and_risk_bands(obs: News2Observation, total: int, risk: Risk) -> None:
    score = score_news2(obs)
    assert (score.total, score.risk, score.complete) == (total, risk, True)


def test_missing_parameters_are_listed_and_the_score_is_not_complete() -> None:
    score = score_news2(News2Observation(pulse=135))
    assert score.total == 3 and not score.complete
    assert "temperature" in score.missing and "pulse" not in score.missing


def test_news2_from_the_latest_device_vitals() -> None:
    t0 = datetime(2026, 11, 22, 8, 0, tzinfo=UTC)

    def sample(vital: str, value: float, minutes: int) -> SampleRecord:
        t = t0 + timedelta(minutes=minutes)
        return SampleRecord("mon-1", vital, "", t, t, t, value, "", "p-1")

    latest = LatestVitals()
    latest.update(
        [
            sample("respiratory-rate", 18, 0),
            sample("respiratory-rate", 26, 5),  # latest wins: 3
            sample("oxygen-saturation", 95, 5),  # 1
            sample("systolic-blood-pressure", 100, -90),  # too old: missing
            sample("pulse-rate", 112, 5),  # pulse from the oximeter: 2
            sample("body-temperature", 37.0, 4),
        ]
    )
    obs = latest.observation(
        "p-1",
        now=t0 + timedelta(minutes=6),
        max_age=timedelta(hours=1),
        on_oxygen=True,  # 2
        consciousness=Consciousness.ALERT,
    )
    score = score_news2(obs)
    assert score.total == 8 and score.risk is Risk.HIGH
    assert score.missing == ("systolic_bp",)
