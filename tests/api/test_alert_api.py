"""The alerts JSON API: a detected critical heart rate listed, acknowledged once, filtered."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from fastapi.testclient import TestClient

from medhub.api.app import create_app
from medhub.api.deps import ApiContext, ComponentHealth
from medhub.cds.alert_store import AlertService
from medhub.cds.vital_watch import VitalWatch
from medhub.fhir.sql_store import SqlResourceStore
from medhub.timeseries.records import SampleRecord

T0 = datetime(2026, 11, 21, 10, 0, tzinfo=UTC)


@pytest.fixture
def parts(store: SqlResourceStore) -> Iterator[tuple[TestClient, VitalWatch]]:
    service = AlertService(store)
    context = ApiContext(
        store=store, health_checks={"db": lambda: ComponentHealth("up")}, alerts=service
    )
    with TestClient(create_app(context), raise_server_exceptions=False) as client:
        yield client, VitalWatch(service)


def stream(watch: VitalWatch, patient: str, values: list[float]) -> None:
    records = []
    for second, value in enumerate(values):
        at = T0 + timedelta(seconds=second)
        records.append(SampleRecord("mon-a", "heart-rate", "", at, at, at, value, "/min", patient))
    watch(records)


def test_an_alert_is_listed_acknowledged_once_and_filtered(
    parts: tuple[TestClient, VitalWatch],
) -> None:
    client, watch = parts
    stream(watch, "p-1", [80.0, 80.0, 170.0, 171.0])  # critical: raised at once
    active = client.get("/api/v1/alerts").json()["alerts"]
    assert len(active) == 1
    alert = active[0]
    assert alert["patient"] == "p-1"
    assert alert["state"] == "raised" and alert["vital"] == "heart-rate"
    assert client.get("/api/v1/alerts", params={"patient": "Patient/other"}).json()["alerts"] == []
    ack = client.post(
        f"/api/v1/alerts/{alert['alert_id']}/acknowledge", json={"by": "Practitioner/7"}
    )
    assert ack.status_code == 200, ack.text
    assert ack.json()["state"] == "acknowledged"
    again = client.post(
        f"/api/v1/alerts/{alert['alert_id']}/acknowledge", json={"by": "Practitioner/8"}
    )
    assert again.status_code == 200 and again.json()["state"] == "acknowledged"
    assert again.json()["acknowledged_by"] == "Practitioner/7"  # the first acknowledgement stays
    listed = client.get("/api/v1/alerts", params={"state": "acknowledged"}).json()["alerts"]
    assert [a["alert_id"] for a in listed] == [alert["alert_id"]]


@pytest.mark.parametrize(
    ("method", "path", "body", "status"),
    [
        ("get", "/api/v1/alerts?state=sleeping", None, 400),
        ("get", "/api/v1/alerts?limit=0", None, 400),
        ("post", "/api/v1/alerts/nope/acknowledge", {"by": "x"}, 404),
        ("post", "/api/v1/alerts/nope/acknowledge", {}, 400),
        ("post", "/api/v1/alerts/nope/acknowledge", {"by": ""}, 400),
    ],
)
def test_errors_are_precise(
    parts: tuple[TestClient, VitalWatch],
    method: str,
    path: str,
    body: dict[str, str] | None,
    status: int,
) -> None:
    client, _ = parts
    response = client.request(method.upper(), path, json=body)
    assert response.status_code == status, response.text
    assert response.json()["resourceType"] == "OperationOutcome"
