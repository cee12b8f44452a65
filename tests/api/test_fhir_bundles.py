"""Batch and transaction Bundles over HTTP on every SQL back-end."""

from __future__ import annotations

import base64
import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import event

from medhub.api.app import create_app
from medhub.api.deps import ApiContext, ComponentHealth
from medhub.fhir.sql_store import SqlResourceStore

JSON = {"Content-Type": "application/fhir+json"}
NPI = "http://hl7.org/fhir/sid/us-npi"


@pytest.fixture
def client(store: SqlResourceStore) -> Iterator[TestClient]:
    context = ApiContext(store=store, health_checks={"database": lambda: ComponentHealth("up")})
    with TestClient(create_app(context), raise_server_exceptions=False) as test_client:
        yield test_client


def transaction(*entries: dict[str, Any], kind: str = "transaction") -> dict[str, Any]:
    return {"resourceType": "Bundle", "type": kind, "entry": list(entries)}


def post_entry(
    resource: dict[str, Any], full_url: str | None = None, **request: Any
) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "resource": resource,
        "request": {"method": "POST", "url": resource["resourceType"], **request},
    }
    if full_url:
        entry["fullUrl"] = full_url
    return entry


def patient(mrn: str) -> dict[str, Any]:
    return {
        "resourceType": "Patient",
        "identifier": [{"system": "urn:oid:1.2.3", "value": mrn}],
        "name": [{"family": "Rossi", "given": ["Maria"]}],
    }


def encounter(subject: str, practitioner: str | None = None) -> dict[str, Any]:
    resource: dict[str, Any] = {
        "resourceType": "Encounter",
        "status": "finished",
        "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"},
        "subject": {"reference": subject},
    }
    if practitioner:
        resource["participant"] = [{"individual": {"reference": practitioner}}]
    return resource


def observation(subject: str, encounter_ref: str, value: float) -> dict[str, Any]:
    return {
        "resourceType": "Observation",
        "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4"}]},
        "subject": {"reference": subject},
        "encounter": {"reference": encounter_ref},
        "valueQuantity": {
            "value": value,
            "unit": "/min",
            "system": "http://unitsofmeasure.org",
            "code": "/min",
        },
    }


def send(client: TestClient, bundle: dict[str, Any], **headers: str) -> Any:
    return client.post("/fhir", json=bundle, headers={**JSON, **headers})


def test_transaction_resolves_urn_uuid_and_conditional_references(client: TestClient) -> None:
    doctor = {
        "resourceType": "Practitioner",
        "identifier": [{"system": NPI, "value": "9999"}],
        "name": [{"family": "Welby"}],
    }
    assert client.post("/fhir/Practitioner", json=doctor, headers=JSON).status_code == 201
    patient_url, encounter_url = f"urn:uuid:{uuid.uuid4()}", f"urn:uuid:{uuid.uuid4()}"
    response = send(
        client,
        transaction(
            post_entry(observation(patient_url, encounter_url, 72), f"urn:uuid:{uuid.uuid4()}"),
            post_entry(
                encounter(patient_url, f"Practitioner?identifier={NPI}|9999"), encounter_url
            ),
            post_entry(patient("T-1"), patient_url),
        ),
    )
    assert response.status_code == 200, response.text
    bundle = response.json()
    assert bundle["type"] == "transaction-response"
    statuses = [e["response"]["status"] for e in bundle["entry"]]
    assert statuses == ["201 Created"] * 3
    locations = [e["response"]["location"] for e in bundle["entry"]]
    obs_id, enc_id, pat_id = (loc.split("/")[1] for loc in locations)
    assert locations[2].startswith("Patient/") and locations[2].endswith("/_history/1")
    stored_obs = client.get(f"/fhir/Observation/{obs_id}").json()
    assert stored_obs["subject"]["reference"] == f"Patient/{pat_id}"
    assert stored_obs["encounter"]["reference"] == f"Encounter/{enc_id}"
    stored_enc = client.get(f"/fhir/Encounter/{enc_id}").json()
    doctor_id = client.get("/fhir/Practitioner", params={"identifier": f"{NPI}|9999"}).json()
    assert stored_enc["participant"][0]["individual"]["reference"] == (
        f"Practitioner/{doctor_id['entry'][0]['resource']['id']}"
    )
    # the rewritten references are indexed: the search by subject finds them
    found = client.get("/fhir/Observation", params={"subject": f"Patient/{pat_id}"}).json()
    assert found["total"] == 1


def test_a_failing_entry_rolls_back_the_whole_transaction(client: TestClient) -> None:
    bad = {**patient("T-2"), "gender": "sometimes"}
    response = send(client, transaction(post_entry(patient("T-1")), post_entry(bad)))
    assert response.status_code == 422
    outcome = response.json()
    assert outcome["resourceType"] == "OperationOutcome"
    assert "Bundle.entry[1]" in outcome["issue"][0]["diagnostics"]
    assert (
        client.get("/fhir/Patient", params={"identifier": "urn:oid:1.2.3|T-1"}).json()["total"] == 0
    )


def test_a_conditional_reference_must_match_exactly_one(client: TestClient) -> None:
    response = send(
        client,
        transaction(post_entry(encounter("Patient?identifier=urn:oid:1.2.3|nobody"))),
    )
    assert response.status_code == 412
    assert "Bundle.entry[0]" in response.json()["issue"][0]["diagnostics"]
    unknown = send(client, transaction(post_entry(encounter(f"urn:uuid:{uuid.uuid4()}"))))
    assert unknown.status_code == 400


def test_if_none_exist_in_a_transaction_reuses_the_existing_resource(client: TestClient) -> None:
    existing = client.post("/fhir/Patient", json=patient("T-3"), headers=JSON).json()
    patient_url = f"urn:uuid:{uuid.uuid4()}"
    response = send(
        client,
        transaction(
            post_entry(patient("T-3"), patient_url, ifNoneExist="identifier=urn:oid:1.2.3|T-3"),
            post_entry(encounter(patient_url)),
        ),
    )
    assert response.status_code == 200, response.text
    entries = response.json()["entry"]
    assert entries[0]["response"]["status"] == "200 OK"
    assert entries[0]["response"]["location"].startswith(f"Patient/{existing['id']}/")
    enc_id = entries[1]["response"]["location"].split("/")[1]
    assert client.get(f"/fhir/Encounter/{enc_id}").json()["subject"]["reference"] == (
        f"Patient/{existing['id']}"
    )
    assert (
        client.get("/fhir/Patient", params={"identifier": "urn:oid:1.2.3|T-3"}).json()["total"] == 1
    )


def test_entries_run_in_fhir_order_and_honour_if_match(client: TestClient) -> None:
    old = client.put("/fhir/Patient/t-old", json={**patient("OLD"), "id": "t-old"}, headers=JSON)
    assert old.status_code == 201
    kept = client.put(
        "/fhir/Patient/t-keep", json={**patient("KEEP"), "id": "t-keep"}, headers=JSON
    )
    assert kept.status_code == 201
    response = send(
        client,
        transaction(
            {"request": {"method": "GET", "url": "Patient?identifier=urn:oid:1.2.3|NEW"}},
            {
                "resource": {**patient("KEEP"), "id": "t-keep", "gender": "male"},
                "request": {"method": "PUT", "url": "Patient/t-keep", "ifMatch": 'W/"1"'},
            },
            post_entry(patient("NEW")),
            {"request": {"method": "DELETE", "url": "Patient/t-old"}},
        ),
    )
    assert response.status_code == 200, response.text
    entries = response.json()["entry"]
    # the GET ran last (after the POST), so it sees the new patient
    assert entries[0]["resource"]["total"] == 1
    assert entries[1]["response"]["etag"] == 'W/"2"'
    assert entries[3]["response"]["status"] == "200 OK"
    assert client.get("/fhir/Patient/t-old").status_code == 410
    stale = send(
        client,
        transaction(
            post_entry(patient("NEVER")),
            {
                "resource": {**patient("KEEP"), "id": "t-keep"},
                "request": {"method": "PUT", "url": "Patient/t-keep", "ifMatch": 'W/"1"'},
            },
        ),
    )
    assert stale.status_code == 412
    assert (
        client.get("/fhir/Patient", params={"identifier": "urn:oid:1.2.3|NEVER"}).json()["total"]
        == 0
    )


def test_a_transaction_may_not_touch_one_resource_twice(client: TestClient) -> None:
    entry = {
        "resource": {**patient("X"), "id": "twice"},
        "request": {"method": "PUT", "url": "Patient/twice"},
    }
    response = send(client, transaction(entry, entry))
    assert response.status_code == 400
    assert client.get("/fhir/Patient/twice").status_code == 404


def test_conditional_update_inside_a_transaction(client: TestClient) -> None:
    entry = {
        "resource": patient("CU"),
        "request": {"method": "PUT", "url": "Patient?identifier=urn:oid:1.2.3|CU"},
    }
    first = send(client, transaction(entry)).json()["entry"][0]["response"]
    second = send(client, transaction(entry)).json()["entry"][0]["response"]
    assert first["status"] == "201 Created" and second["status"] == "200 OK"
    assert first["location"].split("/")[1] == second["location"].split("/")[1]


def test_batch_entries_succeed_or_fail_alone(client: TestClient) -> None:
    response = send(
        client,
        transaction(
            post_entry(patient("B-1")),
            post_entry({**patient("B-2"), "birthDate": "not a date"}),
            {"request": {"method": "GET", "url": "Patient/does-not-exist"}},
            post_entry(patient("B-3")),
            kind="batch",
        ),
    )
    assert response.status_code == 200
    bundle = response.json()
    assert bundle["type"] == "batch-response"
    statuses = [e["response"]["status"][:3] for e in bundle["entry"]]
    assert statuses == ["201", "422", "404", "201"]
    outcome = bundle["entry"][1]["response"]["outcome"]
    assert outcome["resourceType"] == "OperationOutcome"
    assert client.get("/fhir/Patient", params={"family": "Rossi"}).json()["total"] == 2


@pytest.mark.parametrize(
    ("bundle", "where"),
    [
        ({"resourceType": "Patient"}, "Bundle"),
        ({"resourceType": "Bundle", "type": "collection"}, "Bundle.type"),
        (
            {"resourceType": "Bundle", "type": "transaction", "entry": [{"resource": {}}]},
            "Bundle.entry[0].request",
        ),
        (
            {
                "resourceType": "Bundle",
                "type": "transaction",
                "entry": [{"request": {"method": "FETCH", "url": "Patient"}}],
            },
            "Bundle.entry[0].request.method",
        ),
        (
            {
                "resourceType": "Bundle",
                "type": "transaction",
                "entry": [{"request": {"method": "GET", "url": "Spaceship/1"}}],
            },
            "Bundle.entry[0].request.url",
        ),
    ],
)
def test_malformed_bundles_are_400_naming_the_element(
    client: TestClient, bundle: dict[str, Any], where: str
) -> None:
    response = send(client, bundle)
    assert response.status_code == 400
    assert response.json()["issue"][0]["expression"] == [where]


def test_a_large_transaction_is_written_in_a_few_statements(
    client: TestClient, store: SqlResourceStore
) -> None:
    entries = []
    for n in range(100):
        patient_url = f"urn:uuid:{uuid.uuid4()}"
        entries.append(post_entry(patient(f"L-{n}"), patient_url))
        entries.append(post_entry(encounter(patient_url)))
    statements: list[str] = []

    def count(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        statements.append(statement)

    event.listen(store.engine, "before_cursor_execute", count)
    try:
        response = send(client, transaction(*entries))
    finally:
        event.remove(store.engine, "before_cursor_execute", count)
    assert response.status_code == 200, response.text
    assert len(response.json()["entry"]) == 200
    # resource, history and one per index table (+ transaction bookkeeping), not 200 x 6
    assert len(statements) <= 15, statements
    assert client.get("/fhir/Encounter?_count=0").json()["total"] == 100


def test_every_official_example_round_trips_through_one_transaction(client: TestClient) -> None:
    """260 official R4 examples of 19 types PUT in one transaction, then read back unchanged."""
    examples_dir = Path(__file__).parents[1] / "data" / "fhir-r4-examples"
    originals = [json.loads(p.read_text()) for p in sorted(examples_dir.glob("*.json"))]
    entries = [
        {
            "resource": original,
            "request": {"method": "PUT", "url": f"{original['resourceType']}/{original['id']}"},
        }
        for original in originals
    ]
    response = send(client, transaction(*entries))
    assert response.status_code == 200, response.text[:2000]
    assert all(e["response"]["status"] == "201 Created" for e in response.json()["entry"])
    for original in originals:
        read = client.get(f"/fhir/{original['resourceType']}/{original['id']}")
        assert read.status_code == 200
        body = read.json()
        assert {k: v for k, v in body.items() if k != "meta"} == {
            k: v for k, v in original.items() if k != "meta"
        }, original["id"]


def test_patch_entries_in_a_transaction(client: TestClient) -> None:
    created = client.post("/fhir/Patient", json=patient("PB-1"), headers=JSON).json()
    json_patch = base64.b64encode(b'[{"op": "add", "path": "/active", "value": true}]').decode()
    response = send(
        client,
        transaction(
            {
                "resource": {
                    "resourceType": "Binary",
                    "contentType": "application/json-patch+json",
                    "data": json_patch,
                },
                "request": {"method": "PATCH", "url": f"Patient/{created['id']}"},
            },
            {
                "resource": {
                    "resourceType": "Parameters",
                    "parameter": [
                        {
                            "name": "operation",
                            "part": [
                                {"name": "type", "valueCode": "add"},
                                {"name": "path", "valueString": "Patient"},
                                {"name": "name", "valueString": "gender"},
                                {"name": "value", "valueCode": "female"},
                            ],
                        }
                    ],
                },
                "request": {"method": "PATCH", "url": "Patient?identifier=urn:oid:1.2.3|PB-2"},
            },
            post_entry(patient("PB-2")),
        ),
    )
    # the conditional PATCH names a patient the same transaction creates: POST runs first
    assert response.status_code == 200, response.text
    assert client.get(f"/fhir/Patient/{created['id']}").json()["active"] is True
    found = client.get("/fhir/Patient", params={"identifier": "urn:oid:1.2.3|PB-2"}).json()
    assert found["entry"][0]["resource"]["gender"] == "female"
