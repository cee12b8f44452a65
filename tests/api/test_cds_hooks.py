"""CDS Hooks over HTTP with the request shapes of the CDS Hooks specification:
discovery, order-select with prefetch, order-sign from medhub's own store, bad calls."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from medhub.api.app import create_app
from medhub.api.deps import ApiContext
from medhub.fhir.sql_store import SqlResourceStore

RXNORM = "http://www.nlm.nih.gov/research/umls/rxnorm"


@pytest.fixture
def client(sqlite_store: SqlResourceStore) -> Iterator[TestClient]:
    with TestClient(create_app(ApiContext(store=sqlite_store))) as test_client:
        yield test_client


def order(order_id: str, code: str, name: str, status: str = "draft") -> dict[str, Any]:
    return {
        "resourceType": "MedicationRequest",
        "id": order_id,
        "status": status,
        "intent": "order",
        "subject": {"reference": "Patient/p1"},
        "medicationCodeableConcept": {"coding": [{"system": RXNORM, "code": code}], "text": name},
    }


def bundle(*resources: dict[str, Any]) -> dict[str, Any]:
    return {
        "resourceType": "Bundle",
        "type": "collection",
        "entry": [{"resource": r} for r in resources],
    }


def select_call(
    selections: list[str], drafts: list[dict[str, Any]], **prefetch: Any
) -> dict[str, Any]:
    return {
        "hookInstance": "d1577c69-dfbe-44ad-ba6d-3e05e953b2ea",
        "fhirServer": "https://ehr.example.org/fhir",
        "hook": "order-select",
        "context": {
            "userId": "Practitioner/123",
            "patientId": "p1",
            "selections": selections,
            "draftOrders": bundle(*drafts),
        },
        "prefetch": prefetch,
    }


def test_discovery_lists_both_hooks_with_prefetch_templates(client: TestClient) -> None:
    services = client.get("/cds-services").json()["services"]
    assert {s["hook"] for s in services} == {"order-select", "order-sign"}
    for service in services:
        assert service["prefetch"]["medications"].startswith("MedicationRequest?subject=")
        assert service["id"] and service["description"]


def test_order_select_warns_about_the_selected_order_from_prefetch(client: TestClient) -> None:
    warfarin = order("w1", "11289", "warfarin", status="active")
    body = select_call(
        ["MedicationRequest/new-1"],
        [order("new-1", "5640", "ibuprofen")],
        medications=bundle(warfarin),
        allergies=bundle(),
    )
    cards = client.post("/cds-services/medhub-medication-safety-select", json=body).json()["cards"]
    assert len(cards) == 1
    [card] = cards
    assert card["indicator"] == "critical"
    assert len(card["summary"]) <= 140
    assert "warfarin" in card["summary"].lower() and "ibuprofen" in card["summary"].lower()
    assert card["source"]["label"]
    assert card["overrideReasons"] and all(r["code"] for r in card["overrideReasons"])


def test_order_select_checks_only_the_selection_against_the_other_drafts(
    client: TestClient,
) -> None:
    drafts = [order("a", "11289", "warfarin"), order("b", "5640", "ibuprofen")]
    body = select_call(["MedicationRequest/a"], drafts, medications=bundle(), allergies=bundle())
    cards = client.post("/cds-services/medhub-medication-safety-select", json=body).json()["cards"]
    assert [c["indicator"] for c in cards] == ["critical"]  # a vs b, once


def test_order_select_with_nothing_wrong_returns_no_cards(client: TestClient) -> None:
    body = select_call(
        ["MedicationRequest/a"],
        [order("a", "723", "amoxicillin")],
        medications=bundle(),
        allergies=bundle(),
    )
    response = client.post("/cds-services/medhub-medication-safety-select", json=body)
    assert response.status_code == 200
    assert response.json() == {"cards": []}


def test_order_sign_reads_the_record_from_the_store_without_prefetch(client: TestClient) -> None:
    headers = {"Content-Type": "application/fhir+json"}
    client.put("/fhir/Patient/p1", json={"resourceType": "Patient", "id": "p1"}, headers=headers)
    allergy = {
        "resourceType": "AllergyIntolerance",
        "patient": {"reference": "Patient/p1"},
        "code": {"text": "penicillin"},
    }
    assert client.post("/fhir/AllergyIntolerance", json=allergy, headers=headers).status_code == 201
    body = {
        "hookInstance": "e1",
        "hook": "order-sign",
        "context": {
            "userId": "Practitioner/1",
            "patientId": "p1",
            "draftOrders": bundle(order("x", "723", "amoxicillin")),
        },
    }
    cards = client.post("/cds-services/medhub-medication-safety-sign", json=body).json()["cards"]
    assert [c["indicator"] for c in cards] == ["critical"]
    assert "amoxicillin" in cards[0]["detail"].lower()


@pytest.mark.parametrize(
    ("change", "path"),
    [
        (lambda b: b.pop("hookInstance"), "hookInstance"),
        (lambda b: b["context"].pop("patientId"), "context.patientId"),
        (
            lambda b: b["context"].update(draftOrders={"resourceType": "Patient"}),
            "context.draftOrders",
        ),
        (lambda b: b["context"].update(selections="a"), "context.selections"),
        (lambda b: b.update(hook="patient-view"), "hook"),
        (lambda b: b.update(prefetch={"medications": []}), "prefetch.medications"),
    ],
)
def test_a_malformed_call_is_400_naming_the_element(
    client: TestClient, change: Any, path: str
) -> None:
    body = select_call(["MedicationRequest/a"], [order("a", "723", "amoxicillin")])
    change(body)
    response = client.post("/cds-services/medhub-medication-safety-select", json=body)
    assert response.status_code == 400
    assert response.json()["issue"][0]["expression"] == [path]


def test_an_unknown_service_is_404(client: TestClient) -> None:
    response = client.post("/cds-services/nope", json={"hook": "order-select"})
    assert response.status_code == 404
