"""``GET /api/v1/patients/{id}/news2`` over real stores: the score, its sources, what is missing."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from medhub.api.app import create_app
from medhub.api.deps import ApiContext, ComponentHealth
from medhub.cds.news2_service import News2Service
from medhub.db.engine import make_engine
from medhub.fhir.sql_store import SqlResourceStore
from medhub.timeseries.records import SampleRecord
from medhub.timeseries.sample_store import SampleStore
from medhub.timeseries.schema import migrate

NOW = datetime(2026, 11, 21, 12, 0, tzinfo=UTC)


@pytest.fixture
def parts(
    store: SqlResourceStore, tmp_path: Path
) -> Iterator[tuple[TestClient, SampleStore, SqlResourceStore]]:
    engine = make_engine(f"sqlite:///{tmp_path / 'samples.db'}")
    migrate(engine)
    samples = SampleStore(engine)
    service = News2Service(store, samples, max_age=timedelta(hours=1), clock=lambda: NOW)
    context = ApiContext(
        store=store, health_checks={"db": lambda: ComponentHealth("up")}, news2=service
    )
    with TestClient(create_app(context), raise_server_exceptions=False) as client:
        yield client, samples, store
    engine.dispose()


def test_the_score_says_where_each_value_came_from_and_what_is_missing(
    parts: tuple[TestClient, SampleStore, SqlResourceStore],
) -> None:
    client, samples, store = parts
    with store.unit_of_work() as resources:
        patient = resources.create({"resourceType": "Patient"}).id
        acvpu = resources.create(
            {
                "resourceType": "Observation",
                "status": "final",
                "code": {
                    "coding": [{"system": "http://snomed.info/sct", "code": "1104441000000107"}]
                },
                "subject": {"reference": f"Patient/{patient}"},
                "effectiveDateTime": "2026-11-21T11:50:00Z",
                "valueCodeableConcept": {
                    "coding": [{"system": "http://snomed.info/sct", "code": "450847001"}]
                },
            }
        ).id
    fresh, old = NOW - timedelta(minutes=3), NOW - timedelta(hours=2)

    def sample(vital: str, at: datetime, value: float, unit: str) -> SampleRecord:
        return SampleRecord("mon-1", vital, "", at, at, at, value, unit, patient)

    samples.write(
        [
            sample("respiratory-rate", fresh, 22.0, "/min"),
            sample("oxygen-saturation", fresh, 95.0, "%"),
            sample("heart-rate", fresh, 88.0, "/min"),
            sample("systolic-blood-pressure", old, 85.0, "mm[Hg]"),
        ]
    )
    response = client.get(f"/api/v1/patients/{patient}/news2")
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["patient"] == f"Patient/{patient}"
    assert (body["score"], body["band"], body["complete"], body["red_score"]) == (
        6,
        "medium",
        False,
        True,
    )
    assert body["stale"] == ["systolic_bp"] and body["missing"] == ["on_oxygen", "temperature"]
    by = {p["parameter"]: p for p in body["parameters"]}
    assert by["respiratory_rate"] == {
        "parameter": "respiratory_rate",
        "label": "respiration rate",
        "status": "scored",
        "score": 2,
        "value": 22.0,
        "unit": "/min",
        "time": "2026-11-21T11:57:00Z",
        "source": "device/mon-1/respiratory-rate",
    }
    assert by["consciousness"]["value"] == "P" and by["consciousness"]["score"] == 3
    assert by["consciousness"]["source"] == f"Observation/{acvpu}"
    # stale: shown with its value and time, not scored
    assert (by["systolic_bp"]["status"], by["systolic_bp"]["score"]) == ("stale", None)
    assert by["systolic_bp"]["value"] == 85.0
    assert by["temperature"] == {
        "parameter": "temperature",
        "label": "temperature",
        "status": "missing",
        "score": None,
        "value": None,
        "unit": "Cel",
        "time": None,
        "source": None,
    }
    assert body["response"]["urgency"] == "key threshold for urgent response"
    assert body["response"]["monitoring"] == "minimum 1-hourly"


def test_an_unknown_patient_is_404(parts: tuple[TestClient, SampleStore, SqlResourceStore]) -> None:
    client, _, _ = parts
    response = client.get("/api/v1/patients/nobody/news2")
    assert response.status_code == 404
    assert response.json()["resourceType"] == "OperationOutcome"


def test_without_news2_configured_the_route_says_so(store: SqlResourceStore) -> None:
    context = ApiContext(store=store, health_checks={"db": lambda: ComponentHealth("up")})
    with TestClient(create_app(context), raise_server_exceptions=False) as client:
        response = client.get("/api/v1/patients/p-1/news2")
    assert response.status_code == 404
    assert "NEWS2" in response.text
