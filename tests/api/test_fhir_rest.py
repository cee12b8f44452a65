"""FHIR REST writes over HTTP on every SQL back-end: create, update, delete, conditionals,
versions, Prefer, history, content negotiation, $validate, $everything and metadata."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from medhub.api.app import create_app
from medhub.api.deps import ApiContext, ComponentHealth
from medhub.fhir.search_parameters import SEARCH_PARAMETERS
from medhub.fhir.sql_store import SqlResourceStore

JSON = {"Content-Type": "application/fhir+json"}


def patient(mrn: str = "MRN-1", **extra: Any) -> dict[str, Any]:
    return {
        "resourceType": "Patient",
        "identifier": [{"system": "urn:oid:1.2.3", "value": mrn}],
        "name": [{"family": "Rossi", "given": ["Maria"]}],
        "gender": "female",
        **extra,
    }


@pytest.fixture
def client(store: SqlResourceStore) -> Iterator[TestClient]:
    context = ApiContext(store=store, health_checks={"database": lambda: ComponentHealth("up")})
    with TestClient(create_app(context), raise_server_exceptions=False) as test_client:
        yield test_client


def post(client: TestClient, body: dict[str, Any], **headers: str) -> Any:
    return client.post(f"/fhir/{body['resourceType']}", json=body, headers={**JSON, **headers})


def count(client: TestClient, query: str) -> int:
    return int(client.get(f"/fhir/{query}").json()["total"])


# -- create -------------------------------------------------------------------------


def test_create_assigns_the_id_and_answers_201_with_location_and_etag(client: TestClient) -> None:
    response = post(client, {**patient(), "id": "client-chosen"})
    assert response.status_code == 201
    body = response.json()
    assert body["id"] != "client-chosen"  # POST ignores the client's id (http.html#create)
    assert body["meta"]["versionId"] == "1"
    assert response.headers["etag"] == 'W/"1"'
    assert response.headers["location"].endswith(f"/fhir/Patient/{body['id']}/_history/1")
    assert response.headers["last-modified"].endswith("GMT")
    assert client.get(f"/fhir/Patient/{body['id']}").json()["name"][0]["family"] == "Rossi"


def test_create_of_an_invalid_resource_is_422_naming_the_element(client: TestClient) -> None:
    response = post(client, patient(gender="sometimes"))
    assert response.status_code == 422
    outcome = response.json()
    assert outcome["resourceType"] == "OperationOutcome"
    assert any("Patient.gender" in e for i in outcome["issue"] for e in i.get("expression", []))
    assert count(client, "Patient?_count=0") == 0


def test_create_with_a_body_of_another_type_is_400(client: TestClient) -> None:
    response = client.post("/fhir/Observation", json=patient(), headers=JSON)
    assert response.status_code == 400
    assert response.json()["issue"][0]["expression"] == ["resourceType"]


def test_conditional_create_returns_the_existing_match(client: TestClient) -> None:
    first = post(client, patient("C-1"), **{"If-None-Exist": "identifier=urn:oid:1.2.3|C-1"})
    again = post(client, patient("C-1"), **{"If-None-Exist": "identifier=urn:oid:1.2.3|C-1"})
    assert first.status_code == 201 and again.status_code == 200
    assert again.json()["id"] == first.json()["id"]
    assert count(client, "Patient?identifier=urn:oid:1.2.3|C-1") == 1
    post(client, patient("C-2", name=[{"family": "Rossi"}]))
    several = post(client, patient("C-3"), **{"If-None-Exist": "family=Rossi"})
    assert several.status_code == 412


# -- update ---------------------------------------------------------------------------


def test_update_creates_with_the_client_id_then_versions(client: TestClient) -> None:
    created = client.put("/fhir/Patient/p-42", json={**patient(), "id": "p-42"}, headers=JSON)
    assert created.status_code == 201 and created.json()["id"] == "p-42"
    updated = client.put(
        "/fhir/Patient/p-42", json={**patient(), "id": "p-42", "gender": "other"}, headers=JSON
    )
    assert updated.status_code == 200
    assert updated.headers["etag"] == 'W/"2"'
    assert client.get("/fhir/Patient/p-42/_history/1").json()["gender"] == "female"
    assert client.get("/fhir/Patient/p-42").json()["gender"] == "other"


def test_update_needs_the_url_id_in_the_body(client: TestClient) -> None:
    missing = client.put("/fhir/Patient/p-1", json=patient(), headers=JSON)
    other = client.put("/fhir/Patient/p-1", json={**patient(), "id": "p-2"}, headers=JSON)
    assert missing.status_code == 400 and other.status_code == 400
    assert client.get("/fhir/Patient/p-1").status_code == 404


def test_if_match_guards_against_lost_updates(client: TestClient) -> None:
    client.put("/fhir/Patient/p-7", json={**patient(), "id": "p-7"}, headers=JSON)
    body = {**patient(), "id": "p-7", "gender": "male"}
    ok = client.put("/fhir/Patient/p-7", json=body, headers={**JSON, "If-Match": 'W/"1"'})
    stale = client.put("/fhir/Patient/p-7", json=body, headers={**JSON, "If-Match": 'W/"1"'})
    assert ok.status_code == 200
    assert stale.status_code == 412
    assert stale.json()["issue"][0]["code"] == "conflict"
    bad = client.put("/fhir/Patient/p-7", json=body, headers={**JSON, "If-Match": "yesterday"})
    assert bad.status_code == 400


def test_conditional_update_creates_then_updates_the_one_match(client: TestClient) -> None:
    url = "/fhir/Patient?identifier=urn:oid:1.2.3|U-1"
    first = client.put(url, json=patient("U-1"), headers=JSON)
    second = client.put(url, json=patient("U-1", gender="other"), headers=JSON)
    assert first.status_code == 201 and second.status_code == 200
    assert second.json()["id"] == first.json()["id"]
    assert second.json()["meta"]["versionId"] == "2"
    post(client, patient("U-2"))
    post(client, patient("U-3"))
    several = client.put("/fhir/Patient?family=Rossi", json=patient("U-4"), headers=JSON)
    assert several.status_code == 412


# -- delete ---------------------------------------------------------------------------


def test_delete_is_soft_and_keeps_history(client: TestClient) -> None:
    patient_id = post(client, patient()).json()["id"]
    deleted = client.delete(f"/fhir/Patient/{patient_id}")
    assert deleted.status_code == 200 and deleted.headers["etag"] == 'W/"2"'
    assert client.get(f"/fhir/Patient/{patient_id}").status_code == 410
    assert client.get(f"/fhir/Patient/{patient_id}/_history/1").status_code == 200
    history = client.get(f"/fhir/Patient/{patient_id}/_history").json()
    assert [e["request"]["method"] for e in history["entry"]] == ["DELETE", "POST"]
    assert client.delete(f"/fhir/Patient/{patient_id}").status_code == 204
    assert count(client, "Patient?identifier=urn:oid:1.2.3|MRN-1") == 0


def test_conditional_delete(client: TestClient) -> None:
    post(client, patient("D-1"))
    assert client.delete("/fhir/Patient?identifier=urn:oid:1.2.3|D-1").status_code == 200
    assert client.delete("/fhir/Patient?identifier=urn:oid:1.2.3|D-1").status_code == 204
    post(client, patient("D-2"))
    post(client, patient("D-3"))
    assert client.delete("/fhir/Patient?family=Rossi").status_code == 412
    assert client.delete("/fhir/Patient").status_code == 400


def test_delete_with_a_stale_if_match_is_412(client: TestClient) -> None:
    patient_id = post(client, patient()).json()["id"]
    assert (
        client.delete(f"/fhir/Patient/{patient_id}", headers={"If-Match": 'W/"9"'}).status_code
        == 412
    )
    assert client.get(f"/fhir/Patient/{patient_id}").status_code == 200


# -- Prefer ---------------------------------------------------------------------------


def test_prefer_return_minimal_and_operation_outcome(client: TestClient) -> None:
    minimal = post(client, patient(), Prefer="return=minimal")
    assert minimal.status_code == 201 and minimal.content == b""
    assert minimal.headers["location"]
    outcome = post(client, patient("P-2"), Prefer="return=OperationOutcome")
    assert outcome.status_code == 201
    assert outcome.json()["resourceType"] == "OperationOutcome"
    assert outcome.json()["issue"][0]["severity"] == "information"


# -- history --------------------------------------------------------------------------


def test_type_and_system_history_with_since_and_count(client: TestClient) -> None:
    first = post(client, patient("H-1")).json()
    post(client, {"resourceType": "Practitioner", "name": [{"family": "Welby"}]})
    third = post(client, patient("H-2")).json()
    types = client.get("/fhir/Patient/_history").json()
    assert types["type"] == "history"
    assert [e["resource"]["id"] for e in types["entry"]] == [third["id"], first["id"]]
    system = client.get("/fhir/_history", params={"_count": 2}).json()
    assert len(system["entry"]) == 2
    assert system["entry"][0]["resource"]["id"] == third["id"]
    since = client.get("/fhir/_history", params={"_since": third["meta"]["lastUpdated"]}).json()
    assert [e["resource"]["id"] for e in since["entry"]] == [third["id"]]
    assert client.get("/fhir/_history", params={"_since": "last tuesday"}).status_code == 400


# -- formats --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("headers", "params"),
    [
        ({"Accept": "application/fhir+xml"}, {}),
        ({"Accept": "text/xml"}, {}),
        ({}, {"_format": "xml"}),
        ({}, {"_format": "application/fhir+xml"}),
    ],
)
def test_xml_is_refused_with_406(
    client: TestClient, headers: dict[str, str], params: dict[str, str]
) -> None:
    response = client.get("/fhir/Patient", headers=headers, params=params)
    assert response.status_code == 406
    assert response.json()["resourceType"] == "OperationOutcome"
    assert "XML" in response.text or "xml" in response.text


def test_json_variants_are_accepted(client: TestClient) -> None:
    for accept in ("application/fhir+json", "application/json", "*/*", "text/html, */*;q=0.8"):
        assert client.get("/fhir/Patient", headers={"Accept": accept}).status_code == 200
    assert client.get("/fhir/Patient", params={"_format": "json"}).status_code == 200


def test_an_xml_body_is_415_and_broken_json_400(client: TestClient) -> None:
    xml = client.post(
        "/fhir/Patient", content=b"<Patient/>", headers={"Content-Type": "application/fhir+xml"}
    )
    assert xml.status_code == 415
    broken = client.post("/fhir/Patient", content=b'{"resourceType": "Pat', headers=JSON)
    assert broken.status_code == 400
    assert broken.json()["issue"][0]["code"] == "structure"


def test_pretty_indents_the_answer(client: TestClient) -> None:
    patient_id = post(client, patient()).json()["id"]
    pretty = client.get(f"/fhir/Patient/{patient_id}", params={"_pretty": "true"})
    assert pretty.text.startswith('{\n  "')
    assert "\n" not in client.get(f"/fhir/Patient/{patient_id}").text


# -- operations -----------------------------------------------------------------------


def test_validate_reports_without_storing(client: TestClient) -> None:
    good = client.post("/fhir/Patient/$validate", json=patient(), headers=JSON)
    assert good.status_code == 200
    assert good.json()["issue"][0]["severity"] == "information"
    bad = client.post(
        "/fhir/Patient/$validate",
        json={
            "resourceType": "Parameters",
            "parameter": [{"name": "resource", "resource": patient(birthDate="17 May 1970")}],
        },
        headers=JSON,
    )
    assert bad.status_code == 200
    issues = bad.json()["issue"]
    assert issues[0]["severity"] == "error"
    assert any("Patient.birthDate" in e for i in issues for e in i.get("expression", []))
    assert count(client, "Patient?_count=0") == 0


def test_everything_returns_the_compartment_and_what_it_references(client: TestClient) -> None:
    doctor = post(client, {"resourceType": "Practitioner", "name": [{"family": "Welby"}]}).json()
    patient_id = post(client, patient()).json()["id"]
    other_id = post(client, patient("OTHER")).json()["id"]
    encounter = {
        "resourceType": "Encounter",
        "status": "in-progress",
        "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "IMP"},
        "subject": {"reference": f"Patient/{patient_id}"},
        "participant": [{"individual": {"reference": f"Practitioner/{doctor['id']}"}}],
    }
    post(client, encounter)
    post(client, {**encounter, "subject": {"reference": f"Patient/{other_id}"}})
    bundle = client.get(f"/fhir/Patient/{patient_id}/$everything").json()
    kinds = sorted(e["resource"]["resourceType"] for e in bundle["entry"])
    assert kinds == ["Encounter", "Patient", "Practitioner"]
    subjects = {
        e["resource"]["subject"]["reference"]
        for e in bundle["entry"]
        if e["resource"]["resourceType"] == "Encounter"
    }
    assert subjects == {f"Patient/{patient_id}"}
    assert client.get("/fhir/Patient/nobody/$everything").status_code == 404


_SAMPLE_VALUES = {
    "token": "x",
    "string": "x",
    "date": "2020",
    "reference": "Patient/x",
    "quantity": "5",
    "number": "5",
    "uri": "http://example.org/x",
    "composite": None,
    "special": None,
}


def test_metadata_advertises_only_search_parameters_that_work(client: TestClient) -> None:
    statement = client.get("/fhir/metadata").json()
    assert statement["resourceType"] == "CapabilityStatement"
    assert statement["fhirVersion"] == "4.0.1"
    resources = {r["type"]: r for r in statement["rest"][0]["resource"]}
    assert "Patient" in resources and "Observation" in resources
    patient_params = {p["name"] for p in resources["Patient"]["searchParam"]}
    assert {"identifier", "name", "birthdate", "gender"} <= patient_params
    for resource_type, entry in resources.items():
        for param in entry["searchParam"]:
            value = _SAMPLE_VALUES.get(param["type"])
            if value is None:
                continue
            response = client.get(f"/fhir/{resource_type}", params={param["name"]: value})
            assert response.status_code == 200, (resource_type, param, response.text)
    assert set(resources) >= set(SEARCH_PARAMETERS)
    for resource_type, entry in resources.items():
        for key, values in (("_include", "searchInclude"), ("_revinclude", "searchRevInclude")):
            for value in entry[values]:
                response = client.get(f"/fhir/{resource_type}", params={key: value})
                assert response.status_code == 200, (resource_type, key, value, response.text)


# -- patch ----------------------------------------------------------------------------

JSON_PATCH = {"Content-Type": "application/json-patch+json"}


def test_json_patch_makes_a_new_version(client: TestClient) -> None:
    patient_id = post(client, patient()).json()["id"]
    response = client.patch(
        f"/fhir/Patient/{patient_id}",
        content=b'[{"op": "replace", "path": "/gender", "value": "other"},'
        b' {"op": "add", "path": "/name/0/given/-", "value": "Luisa"}]',
        headers=JSON_PATCH,
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["gender"] == "other" and body["name"][0]["given"] == ["Maria", "Luisa"]
    assert response.headers["etag"] == 'W/"2"'
    assert count(client, "Patient?given=Luisa") == 1


def test_fhirpath_patch(client: TestClient) -> None:
    patient_id = post(client, patient()).json()["id"]
    parameters = {
        "resourceType": "Parameters",
        "parameter": [
            {
                "name": "operation",
                "part": [
                    {"name": "type", "valueCode": "replace"},
                    {"name": "path", "valueString": "Patient.gender"},
                    {"name": "value", "valueCode": "male"},
                ],
            }
        ],
    }
    response = client.patch(f"/fhir/Patient/{patient_id}", json=parameters, headers=JSON)
    assert response.status_code == 200, response.text
    assert client.get(f"/fhir/Patient/{patient_id}").json()["gender"] == "male"


def test_patch_errors(client: TestClient) -> None:
    patient_id = post(client, patient()).json()["id"]
    url = f"/fhir/Patient/{patient_id}"
    failed_test = client.patch(
        url, content=b'[{"op": "test", "path": "/gender", "value": "male"}]', headers=JSON_PATCH
    )
    assert failed_test.status_code == 422
    assert failed_test.json()["issue"][0]["expression"] == ["Patch[0].path"]
    invalid_result = client.patch(
        url, content=b'[{"op": "replace", "path": "/gender", "value": "often"}]', headers=JSON_PATCH
    )
    assert invalid_result.status_code == 422
    wrong_type = client.patch(url, content=b"<x/>", headers={"Content-Type": "application/xml"})
    assert wrong_type.status_code == 415
    stale = client.patch(
        url,
        content=b'[{"op": "replace", "path": "/gender", "value": "male"}]',
        headers={**JSON_PATCH, "If-Match": 'W/"7"'},
    )
    assert stale.status_code == 412
    assert (
        client.patch("/fhir/Patient/nobody", content=b"[]", headers=JSON_PATCH).status_code == 404
    )
    assert client.get(url).json()["meta"]["versionId"] == "1"


def test_conditional_patch(client: TestClient) -> None:
    post(client, patient("CP-1"))
    response = client.patch(
        "/fhir/Patient?identifier=urn:oid:1.2.3|CP-1",
        content=b'[{"op": "add", "path": "/active", "value": true}]',
        headers=JSON_PATCH,
    )
    assert response.status_code == 200 and response.json()["active"] is True
    missing = client.patch(
        "/fhir/Patient?identifier=urn:oid:1.2.3|none", content=b"[]", headers=JSON_PATCH
    )
    assert missing.status_code == 404
