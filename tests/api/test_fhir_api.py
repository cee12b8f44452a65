"""The FHIR read/search API and /health over HTTP (FastAPI TestClient, real store)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from medhub.api.app import create_app
from medhub.api.deps import ApiContext, ComponentHealth
from medhub.db.engine import make_engine
from medhub.fhir.sql_store import SqlResourceStore

PATIENT = {
    "resourceType": "Patient",
    "identifier": [{"system": "urn:oid:1.2.3", "value": "MRN-9"}],
    "name": [{"family": "Rossi", "given": ["Maria"]}],
    "gender": "female",
}


@pytest.fixture
def client(store: SqlResourceStore) -> Iterator[TestClient]:
    context = ApiContext(store=store, health_checks={"database": lambda: ComponentHealth("up")})
    with TestClient(create_app(context), raise_server_exceptions=False) as test_client:
        yield test_client


def create(store: SqlResourceStore) -> str:
    with store.unit_of_work() as resources:
        return resources.create(dict(PATIENT)).id


def test_read_returns_fhir_json_with_version_headers(
    client: TestClient, store: SqlResourceStore
) -> None:
    patient_id = create(store)
    response = client.get(f"/fhir/Patient/{patient_id}")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/fhir+json")
    assert response.headers["etag"] == 'W/"1"'
    assert response.headers["last-modified"].endswith("GMT")
    body = response.json()
    assert body["id"] == patient_id and body["name"][0]["family"] == "Rossi"


def test_search_by_identifier_returns_a_searchset_bundle(
    client: TestClient, store: SqlResourceStore
) -> None:
    patient_id = create(store)
    response = client.get("/fhir/Patient", params={"identifier": "urn:oid:1.2.3|MRN-9"})
    assert response.status_code == 200
    bundle = response.json()
    assert bundle["resourceType"] == "Bundle" and bundle["type"] == "searchset"
    assert bundle["total"] == 1
    assert bundle["entry"][0]["resource"]["id"] == patient_id
    assert bundle["entry"][0]["fullUrl"].endswith(f"/fhir/Patient/{patient_id}")
    miss = client.get("/fhir/Patient", params={"identifier": "urn:oid:1.2.3|other"}).json()
    assert miss["total"] == 0 and miss["entry"] == []


def test_vread_and_history(client: TestClient, store: SqlResourceStore) -> None:
    patient_id = create(store)
    with store.unit_of_work() as resources:
        resources.update("Patient", patient_id, {**PATIENT, "id": patient_id, "gender": "other"})
    assert client.get(f"/fhir/Patient/{patient_id}/_history/1").json()["gender"] == "female"
    history = client.get(f"/fhir/Patient/{patient_id}/_history").json()
    assert [e["resource"]["meta"]["versionId"] for e in history["entry"]] == ["2", "1"]


@pytest.mark.parametrize(
    ("path", "status", "code"),
    [
        ("/fhir/Patient/does-not-exist", 404, "not-found"),
        ("/fhir/Spaceship/1", 404, "not-supported"),
        ("/fhir/Patient?colour=blue", 400, "invalid"),
        ("/fhir/Patient?birthdate=tomorrow", 400, "invalid"),
        ("/fhir/Patient/x/_history/notanumber", 400, "invalid"),
    ],
)
def test_errors_are_operation_outcomes(
    client: TestClient, path: str, status: int, code: str
) -> None:
    response = client.get(path)
    assert response.status_code == status
    outcome = response.json()
    assert outcome["resourceType"] == "OperationOutcome"
    assert outcome["issue"][0]["code"] == code
    assert "Traceback" not in response.text


def test_unknown_search_parameter_names_the_parameter(client: TestClient) -> None:
    outcome = client.get("/fhir/Patient?colour=blue").json()
    assert outcome["issue"][0]["expression"] == ["colour"]


def test_a_deleted_resource_reads_as_gone(client: TestClient, store: SqlResourceStore) -> None:
    patient_id = create(store)
    with store.unit_of_work() as resources:
        resources.delete("Patient", patient_id)
    response = client.get(f"/fhir/Patient/{patient_id}")
    assert response.status_code == 410
    assert response.json()["issue"][0]["code"] == "deleted"


def test_ready_reports_each_component_and_503_when_one_is_down_while_health_stays_up() -> None:
    engine = make_engine("postgresql+psycopg://nobody@127.0.0.1:1/none?connect_timeout=1")
    store = SqlResourceStore(engine)

    def database() -> ComponentHealth:
        try:
            store.ping()
        except Exception as exc:
            return ComponentHealth("down", str(exc)[:80])
        return ComponentHealth("up")

    context = ApiContext(
        store=store,
        health_checks={"database": database, "amqp": lambda: ComponentHealth("disabled")},
    )
    with TestClient(create_app(context)) as client:
        response = client.get("/ready")
        liveness = client.get("/health")
    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "down"
    assert body["components"]["database"]["status"] == "down"
    assert body["components"]["amqp"]["status"] == "disabled"
    # Liveness does not depend on the database: an outage must not restart every replica.
    assert liveness.status_code == 200
    assert liveness.json()["status"] == "up"


def test_a_store_outage_during_a_read_is_503_not_500() -> None:
    engine = make_engine("postgresql+psycopg://nobody@127.0.0.1:1/none?connect_timeout=1")
    context = ApiContext(store=SqlResourceStore(engine))
    with TestClient(create_app(context), raise_server_exceptions=False) as client:
        response = client.get("/fhir/Patient/abc")
    assert response.status_code == 503
    assert response.json()["issue"][0]["code"] == "transient"
