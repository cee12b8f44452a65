"""FHIR requests counted by interaction and status, from the route matched, never the ids."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient

from medhub.api import fhir_capabilities, fhir_routes, fhir_search_routes
from medhub.api.app import create_app
from medhub.api.deps import ApiContext
from medhub.api.fhir_metrics import fhir_interaction
from medhub.fhir.sql_store import SqlResourceStore
from medhub.metrics import exposition
from tests.scrape import Delta, current

JSON = {"Content-Type": "application/fhir+json"}
REQUESTS = "medhub_fhir_requests_total"


@pytest.mark.parametrize(
    ("method", "template", "interaction"),
    [
        ("GET", "/fhir/metadata", "capabilities"),
        ("GET", "/fhir/_history", "history-system"),
        ("POST", "/fhir", "batch"),
        ("POST", "/fhir/", "batch"),
        ("GET", "/fhir", "search-system"),
        ("GET", "/fhir/{resource_type}", "search-type"),
        ("POST", "/fhir/{resource_type}", "create"),
        ("PUT", "/fhir/{resource_type}", "update"),
        ("PATCH", "/fhir/{resource_type}", "patch"),
        ("DELETE", "/fhir/{resource_type}", "delete"),
        ("POST", "/fhir/{resource_type}/_search", "search-type"),
        ("GET", "/fhir/{resource_type}/_history", "history-type"),
        ("GET", "/fhir/{resource_type}/{resource_id}", "read"),
        ("HEAD", "/fhir/{resource_type}/{resource_id}", "read"),
        ("PUT", "/fhir/{resource_type}/{resource_id}", "update"),
        ("PATCH", "/fhir/{resource_type}/{resource_id}", "patch"),
        ("DELETE", "/fhir/{resource_type}/{resource_id}", "delete"),
        ("GET", "/fhir/{resource_type}/{resource_id}/_history", "history-instance"),
        ("GET", "/fhir/{resource_type}/{resource_id}/_history/{version_id}", "vread"),
        ("POST", "/fhir/{resource_type}/$validate", "operation"),
        ("GET", "/fhir/Patient/{patient_id}/$everything", "operation"),
        ("POST", "/fhir/{resource_type}/{resource_id}/_history", "unknown"),
        ("GET", None, "unknown"),
    ],
)
def test_the_interaction_is_read_off_the_route_template(
    method: str, template: str | None, interaction: str
) -> None:
    assert fhir_interaction(method, template) == interaction


def test_every_fhir_route_served_has_a_known_interaction() -> None:
    served = [
        (method, route.path)
        for router in (fhir_capabilities.router, fhir_routes.router, fhir_search_routes.router)
        for route in router.routes
        if isinstance(route, APIRoute)
        for method in route.methods
    ]
    assert len(served) >= 19
    assert [s for s in served if fhir_interaction(*s) == "unknown"] == []


@pytest.fixture
def client(sqlite_store: SqlResourceStore) -> Iterator[TestClient]:
    with TestClient(
        create_app(ApiContext(store=sqlite_store)), raise_server_exceptions=False
    ) as test_client:
        yield test_client


def patient(family: str = "Quirrelby") -> dict[str, Any]:
    return {"resourceType": "Patient", "name": [{"family": family}], "gender": "female"}


def test_reads_searches_and_writes_count_by_interaction_and_status(client: TestClient) -> None:
    delta = Delta()
    created = client.post("/fhir/Patient", json=patient(), headers=JSON)
    assert created.status_code == 201
    pid = created.json()["id"]
    assert client.get(f"/fhir/Patient/{pid}").status_code == 200
    assert client.get("/fhir/Patient/no-such-patient").status_code == 404
    assert client.get("/fhir/Patient?family=Quirrelby").status_code == 200
    assert client.get(f"/fhir/Patient/{pid}/_history/1").status_code == 200
    assert client.get(f"/fhir/Patient/{pid}/_history").status_code == 200
    assert client.put(f"/fhir/Patient/{pid}", json={**patient(), "id": pid}, headers=JSON)
    assert client.delete(f"/fhir/Patient/{pid}").status_code in (200, 204)
    assert client.get("/fhir/metadata").status_code == 200
    assert client.get("/fhir/Patient/1/no/such/route").status_code == 404
    after = current()
    expected = {
        ("create", "201"): 1,
        ("read", "200"): 1,
        ("read", "404"): 1,
        ("search-type", "200"): 1,
        ("vread", "200"): 1,
        ("history-instance", "200"): 1,
        ("update", "200"): 1,
        ("capabilities", "200"): 1,
        ("unknown", "404"): 1,
    }
    for (interaction, status), n in expected.items():
        assert delta(REQUESTS, after, interaction=interaction, status=status) == n, interaction
    assert delta("medhub_fhir_request_seconds_count", after, interaction="read") == 2
    assert delta("medhub_fhir_request_seconds_sum", after, interaction="read") > 0
    # the id of the resource appears in no label
    assert pid not in exposition().decode()


def test_a_bundle_counts_as_the_batch_or_transaction_it_is(client: TestClient) -> None:
    entry = {"resource": patient(), "request": {"method": "POST", "url": "Patient"}}
    delta = Delta()
    for kind in ("transaction", "batch"):
        bundle = {"resourceType": "Bundle", "type": kind, "entry": [entry]}
        assert client.post("/fhir", json=bundle, headers=JSON).status_code == 200
    assert client.post("/fhir", content=b"[1, 2]", headers=JSON).status_code == 400
    after = current()
    assert delta(REQUESTS, after, interaction="transaction", status="200") == 1
    assert delta(REQUESTS, after, interaction="batch", status="200") == 1
    assert delta(REQUESTS, after, interaction="batch", status="400") == 1


def test_requests_outside_fhir_are_not_counted_as_fhir(client: TestClient) -> None:
    delta = Delta()
    assert client.get("/health").status_code == 200
    assert client.get("/fhirish").status_code == 404
    after = current()
    total = sum(v for (name, _), v in after.items() if name == REQUESTS)
    assert total == sum(v for (name, _), v in delta.before.items() if name == REQUESTS)


HTTP = "medhub_http_requests_total"


def test_other_requests_count_by_route_template_never_by_id(client: TestClient) -> None:
    delta = Delta()
    assert client.get("/api/v1/devices/mon-secret-17").status_code == 404
    assert client.get("/health").status_code == 200
    assert client.get("/nowhere/patient-9").status_code == 404
    assert client.request("BREW", "/health").status_code == 405
    assert client.get("/fhir/metadata").status_code == 200  # counted as FHIR only
    after = current()
    route = "/api/v1/devices/{device_id}"
    assert delta(HTTP, after, route=route, method="GET", status="404") == 1
    assert delta(HTTP, after, route="/health", method="GET", status="200") == 1
    assert delta(HTTP, after, route="unmatched", method="GET", status="404") == 1
    assert delta(HTTP, after, route="/health", method="other", status="405") == 1
    assert delta("medhub_http_request_seconds_count", after, route="/health") == 2
    fhir = [
        labels for (name, labels) in after if name == HTTP and ("route", "/fhir/metadata") in labels
    ]
    assert fhir == []
    text = exposition().decode()
    assert "mon-secret-17" not in text and "patient-9" not in text
