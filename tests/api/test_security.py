"""Security over HTTP on every SQL back-end: who gets in, what each role may do, which
patients a nurse sees, and the AuditEvent every access leaves behind."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pyotp
import pytest
from fastapi.testclient import TestClient

from medhub.api.accounts import Accounts
from medhub.api.app import create_app
from medhub.api.audit import AuditTrail
from medhub.api.deps import ApiContext
from medhub.api.patient_access import PatientAccess
from medhub.api.permissions import Principal, Role
from medhub.api.security import RateLimiter, Security
from medhub.api.tokens import issue_access_token
from medhub.cds.medication_knowledge import load_default_knowledge
from medhub.config import Settings
from medhub.fhir.sql_store import SqlResourceStore
from medhub.wiring_prescribing import hooked_api_store

SECRET = "security-test-secret-0123456789abcdefghij"
PASSWORD = "correct horse battery"
JSON = {"Content-Type": "application/fhir+json"}


@dataclass
class Clock:
    now: datetime

    def __call__(self) -> datetime:
        return self.now


@dataclass
class Site:
    client: TestClient
    accounts: Accounts
    clock: Clock
    store: SqlResourceStore
    icu_patient: str = ""
    ward_patient: str = ""

    def token(self, role: Role, units: frozenset[str] | None = None, **extra: Any) -> str:
        principal = Principal(subject=f"t-{role}", role=role, care_units=units, **extra)
        return issue_access_token(
            principal, secret=SECRET, now=self.clock(), ttl=timedelta(minutes=15)
        )

    def as_(self, role: Role, units: frozenset[str] | None = None, **extra: Any) -> dict[str, str]:
        return {**JSON, "Authorization": f"Bearer {self.token(role, units, **extra)}"}

    def audit_events(self) -> list[dict[str, Any]]:
        response = self.client.get(
            "/fhir/AuditEvent?_count=1000&_sort=_lastUpdated", headers=self.as_("admin")
        )
        return [e["resource"] for e in response.json().get("entry", [])]


def admit(client: TestClient, headers: dict[str, str], unit: str, name: str) -> str:
    ward = {
        "resourceType": "Location",
        "name": unit,
        "physicalType": {"coding": [{"code": "wa"}]},
    }
    location = client.post("/fhir/Location", json=ward, headers=headers).json()["id"]
    body = {"resourceType": "Patient", "name": [{"family": name}]}
    patient = client.post("/fhir/Patient", json=body, headers=headers).json()["id"]
    encounter = {
        "resourceType": "Encounter",
        "status": "in-progress",
        "class": {"code": "IMP"},
        "subject": {"reference": f"Patient/{patient}"},
        "location": [{"location": {"reference": f"Location/{location}"}}],
    }
    assert client.post("/fhir/Encounter", json=encounter, headers=headers).status_code == 201
    observation = {
        "resourceType": "Observation",
        "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4"}]},
        "subject": {"reference": f"Patient/{patient}"},
        "valueQuantity": {"value": 80, "unit": "/min"},
    }
    assert client.post("/fhir/Observation", json=observation, headers=headers).status_code == 201
    return str(patient)


@pytest.fixture
def site(store: SqlResourceStore) -> Iterator[Site]:
    clock = Clock(datetime.now(UTC))
    accounts = Accounts(store.session, clock=clock)
    security = Security(SECRET, accounts, clock, limiter=RateLimiter(60_000, 10_000))
    context = ApiContext(
        store=hooked_api_store(Settings(), store, load_default_knowledge()),
        sql_store=store,
        security=security,
        access=PatientAccess(store, ttl_seconds=0),
        audit=AuditTrail(store, clock=clock),
    )
    with TestClient(create_app(context), raise_server_exceptions=False) as client:
        result = Site(client, accounts, clock, store)
        admin = result.as_("admin")
        result.icu_patient = admit(client, admin, "ICU", "Icu")
        result.ward_patient = admit(client, admin, "WARD-3", "Ward")
        yield result


# -- authentication --------------------------------------------------------------------


def test_without_credentials_patient_data_is_401_but_metadata_and_health_are_open(
    site: Site,
) -> None:
    for path in ("/fhir/Patient", f"/fhir/Patient/{site.icu_patient}", "/api/v1/alerts"):
        response = site.client.get(path)
        assert response.status_code == 401, path
        assert response.json()["issue"][0]["code"] == "login"
    assert site.client.get("/fhir/metadata").status_code == 200
    assert site.client.get("/health").status_code == 200
    assert site.client.get("/ready").status_code == 200


def test_a_forged_or_expired_token_is_401(site: Site) -> None:
    forged = issue_access_token(
        Principal(subject="x", role="admin"),
        secret="another-secret-0123456789abcdefghijklmn",
        now=site.clock(),
        ttl=timedelta(minutes=5),
    )
    headers = {"Authorization": f"Bearer {forged}"}
    assert site.client.get("/fhir/Patient", headers=headers).status_code == 401
    headers = site.as_("admin")
    site.clock.now += timedelta(minutes=16)
    response = site.client.get("/fhir/Patient", headers=headers)
    assert response.status_code == 401
    assert "expired" in response.json()["issue"][0]["diagnostics"]


def test_a_token_in_the_query_string_is_not_accepted_over_http(site: Site) -> None:
    token = site.token("admin")
    assert site.client.get(f"/fhir/Patient?access_token={token}").status_code == 401


def test_login_refresh_rotation_and_reuse_revokes_the_login(site: Site) -> None:
    site.accounts.create_user("alice", PASSWORD, role="nurse", care_units=["ICU"])
    login = site.client.post("/auth/login", json={"username": "alice", "password": PASSWORD})
    assert login.status_code == 200
    tokens = login.json()
    assert tokens["token_type"] == "Bearer" and tokens["care_units"] == ["ICU"]
    me = site.client.get("/auth/me", headers={"Authorization": f"Bearer {tokens['access_token']}"})
    assert me.json()["role"] == "nurse"

    first = site.client.post("/auth/refresh", json={"refresh_token": tokens["refresh_token"]})
    assert first.status_code == 200
    assert first.json()["refresh_token"] != tokens["refresh_token"]
    # The spent token again: theft assumed, the whole login is revoked.
    reused = site.client.post("/auth/refresh", json={"refresh_token": tokens["refresh_token"]})
    assert reused.status_code == 401
    again = site.client.post("/auth/refresh", json={"refresh_token": first.json()["refresh_token"]})
    assert again.status_code == 401


def test_wrong_passwords_lock_the_account_for_a_while(site: Site) -> None:
    site.accounts.create_user("bob", PASSWORD, role="physician")
    for _ in range(5):
        response = site.client.post("/auth/login", json={"username": "bob", "password": "nope"})
        assert response.status_code == 401
    locked = site.client.post("/auth/login", json={"username": "bob", "password": PASSWORD})
    assert locked.status_code == 429
    site.clock.now += timedelta(minutes=16)
    assert (
        site.client.post("/auth/login", json={"username": "bob", "password": PASSWORD}).status_code
        == 200
    )


def test_a_second_factor_is_required_once_enrolled(site: Site) -> None:
    site.accounts.create_user("carol", PASSWORD, role="admin")
    secret = site.accounts.enroll_totp("carol")
    without = site.client.post("/auth/login", json={"username": "carol", "password": PASSWORD})
    assert without.status_code == 401
    code = pyotp.TOTP(secret).at(site.clock())
    body = {"username": "carol", "password": PASSWORD, "totp": code}
    assert site.client.post("/auth/login", json=body).status_code == 200


def test_api_keys_are_scoped_and_revocable(site: Site) -> None:
    created = site.client.post(
        "/api/v1/api-keys",
        json={"name": "gateway-1", "role": "device-gateway", "scopes": "system/Observation.write"},
        headers=site.as_("admin"),
    )
    assert created.status_code == 201
    key = created.json()["key"]
    headers = {**JSON, "X-API-Key": key}
    observation = {
        "resourceType": "Observation",
        "status": "final",
        "code": {"text": "heart rate"},
        "subject": {"reference": f"Patient/{site.icu_patient}"},
    }
    assert (
        site.client.post("/fhir/Observation", json=observation, headers=headers).status_code == 201
    )
    assert site.client.get("/fhir/Patient", headers=headers).status_code == 403
    assert site.client.get("/fhir/Observation", headers=headers).status_code == 403
    prefix = key.split("_")[1]
    site.client.delete(f"/api/v1/api-keys/{prefix}", headers=site.as_("admin"))
    assert (
        site.client.post("/fhir/Observation", json=observation, headers=headers).status_code == 401
    )


# -- roles -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("role", "method", "path", "allowed"),
    [
        ("receptionist", "GET", "/fhir/Patient", True),
        ("receptionist", "GET", "/fhir/Observation", False),
        ("pharmacist", "GET", "/fhir/MedicationRequest", True),
        ("pharmacist", "POST", "/fhir/Observation", False),
        ("nurse", "POST", "/fhir/MedicationRequest", False),
        ("lab-technician", "GET", "/fhir/AllergyIntolerance", False),
        ("device-gateway", "GET", "/fhir/Patient", False),
        ("physician", "GET", "/fhir/AuditEvent", False),
        ("nurse", "GET", "/api/v1/hl7/messages", False),
        ("integration", "GET", "/api/v1/hl7/messages", True),
        ("physician", "GET", "/api/v1/users", False),
    ],
)
def test_each_role_gets_what_its_table_allows(
    site: Site, role: Role, method: str, path: str, allowed: bool
) -> None:
    body = {"resourceType": path.split("/")[-1], "status": "final", "code": {"text": "x"}}
    response = site.client.request(method, path, json=body, headers=site.as_(role))
    if allowed:  # past the guard (the route itself may still answer 404: nothing configured)
        assert response.status_code not in (401, 403), response.text
    else:
        assert response.status_code == 403, response.text
        assert response.json()["issue"][0]["code"] == "forbidden"


def test_audit_records_cannot_be_changed_by_anyone(site: Site) -> None:
    [event, *_] = site.audit_events()
    admin = site.as_("admin")
    for method in ("PUT", "DELETE", "PATCH"):
        response = site.client.request(
            method, f"/fhir/AuditEvent/{event['id']}", json=event, headers=admin
        )
        assert response.status_code == 403, method
    # Adding a record is how other systems report to an audit repository (IHE RESTful ATNA).
    assert site.client.post("/fhir/AuditEvent", json=event, headers=admin).status_code == 201
    assert (
        site.client.post("/fhir/AuditEvent", json=event, headers=site.as_("nurse")).status_code
        == 403
    )


def test_a_scope_narrows_a_role_but_never_widens_it(site: Site) -> None:
    narrowed = site.as_("physician", scopes=frozenset({"user/Patient.read"}))
    assert site.client.get("/fhir/Patient", headers=narrowed).status_code == 200
    assert site.client.get("/fhir/Observation", headers=narrowed).status_code == 403
    widened = site.as_("receptionist", scopes=frozenset({"user/*.*"}))
    assert site.client.get("/fhir/Observation", headers=widened).status_code == 403


# -- care units ---------------------------------------------------------------------------


def test_a_nurse_sees_only_the_patients_of_her_unit(site: Site) -> None:
    nurse = site.as_("nurse", frozenset({"ICU"}))
    client = site.client
    assert client.get(f"/fhir/Patient/{site.icu_patient}", headers=nurse).status_code == 200
    assert client.get(f"/fhir/Patient/{site.ward_patient}", headers=nurse).status_code == 403
    everything = f"/fhir/Patient/{site.ward_patient}/$everything"
    assert client.get(everything, headers=nurse).status_code == 403
    found = client.get("/fhir/Observation", headers=nurse).json()
    subjects = {e["resource"]["subject"]["reference"] for e in found["entry"]}
    assert subjects == {f"Patient/{site.icu_patient}"}
    assert "total" not in found  # a count would tell about the other unit's patients
    vitals = f"/api/v1/patients/{site.ward_patient}/vitals"
    assert client.get(vitals, headers=nurse).status_code in (403, 404)
    # A nurse granted every unit sees both.
    everywhere = site.as_("nurse", None)
    assert client.get(f"/fhir/Patient/{site.ward_patient}", headers=everywhere).status_code == 200


def test_a_nurse_cannot_write_for_a_patient_of_another_unit(site: Site) -> None:
    nurse = site.as_("nurse", frozenset({"ICU"}))
    observation = {
        "resourceType": "Observation",
        "status": "final",
        "code": {"text": "pain score"},
        "subject": {"reference": f"Patient/{site.ward_patient}"},
    }
    response = site.client.post("/fhir/Observation", json=observation, headers=nurse)
    assert response.status_code == 403
    found = site.client.get(
        f"/fhir/Observation?subject=Patient/{site.ward_patient}", headers=site.as_("admin")
    ).json()
    assert len(found["entry"]) == 1  # the write was rolled back


def test_a_discharge_takes_the_patient_off_the_unit(site: Site) -> None:
    admin, nurse = site.as_("admin"), site.as_("nurse", frozenset({"ICU"}))
    found = site.client.get(f"/fhir/Encounter?subject=Patient/{site.icu_patient}", headers=admin)
    encounter = found.json()["entry"][0]["resource"]
    encounter["status"] = "finished"
    site.client.put(f"/fhir/Encounter/{encounter['id']}", json=encounter, headers=admin)
    assert site.client.get(f"/fhir/Patient/{site.icu_patient}", headers=nurse).status_code == 403


# -- audit ---------------------------------------------------------------------------------


def test_every_access_leaves_an_audit_event_naming_who_and_which_patient(site: Site) -> None:
    before = len(site.audit_events())
    nurse = site.as_("nurse", frozenset({"ICU"}))
    site.client.get(f"/fhir/Patient/{site.icu_patient}", headers=nurse)
    site.client.get(f"/fhir/Observation?subject=Patient/{site.icu_patient}", headers=nurse)
    site.client.get(f"/fhir/Patient/{site.ward_patient}", headers=nurse)  # refused
    site.client.get("/fhir/Patient")  # no credentials

    events = site.audit_events()
    new = [e for e in events if e["agent"][0].get("altId") != "user:t-admin"][-4:]
    assert len(events) >= before + 4
    read, search, refused, anonymous = new
    assert read["subtype"][0]["code"] == "read" and read["outcome"] == "0"
    assert read["agent"][0]["altId"] == "user:t-nurse"
    assert read["agent"][0]["network"]["address"]
    patients = {e["what"]["reference"] for e in search["entity"] if "what" in e}
    assert f"Patient/{site.icu_patient}" in patients
    assert search["subtype"][0]["code"] == "search-type"
    assert refused["outcome"] == "4"
    assert {e["what"]["reference"] for e in refused["entity"] if "what" in e} >= {
        f"Patient/{site.ward_patient}"
    }
    assert anonymous["agent"][0]["who"]["display"] == "anonymous"


def test_security_headers_keep_patient_data_out_of_caches_and_frames(site: Site) -> None:
    response = site.client.get(f"/fhir/Patient/{site.icu_patient}", headers=site.as_("admin"))
    assert response.headers["cache-control"] == "no-store"
    assert response.headers["x-frame-options"] == "DENY"
    assert response.headers["x-content-type-options"] == "nosniff"


def test_a_patient_in_a_bed_is_on_the_ward_above_it_until_transferred(site: Site) -> None:
    """HL7 PV1-3 names the bed; the bed is partOf the room, the room partOf the ward."""
    admin, client = site.as_("admin"), site.client

    def location(name: str, kind: str, part_of: str | None = None) -> str:
        body: dict[str, Any] = {
            "resourceType": "Location",
            "name": name,
            "physicalType": {"coding": [{"code": kind}]},
        }
        if part_of:
            body["partOf"] = {"reference": f"Location/{part_of}"}
        return str(client.post("/fhir/Location", json=body, headers=admin).json()["id"])

    icu_bed = location("A", "bd", location("101", "ro", location("ICU", "wa")))
    ward_bed = location("B", "bd", location("7", "ro", location("WARD-3", "wa")))
    patient = client.post("/fhir/Patient", json={"resourceType": "Patient"}, headers=admin).json()[
        "id"
    ]
    encounter = {
        "resourceType": "Encounter",
        "status": "in-progress",
        "class": {"code": "IMP"},
        "subject": {"reference": f"Patient/{patient}"},
        "location": [{"location": {"reference": f"Location/{icu_bed}"}, "status": "active"}],
    }
    created = client.post("/fhir/Encounter", json=encounter, headers=admin).json()
    icu_nurse = site.as_("nurse", frozenset({"ICU"}))
    ward_nurse = site.as_("nurse", frozenset({"WARD-3"}))
    assert client.get(f"/fhir/Patient/{patient}", headers=icu_nurse).status_code == 200
    assert client.get(f"/fhir/Patient/{patient}", headers=ward_nurse).status_code == 403

    created["location"] = [
        {"location": {"reference": f"Location/{icu_bed}"}, "status": "completed"},
        {"location": {"reference": f"Location/{ward_bed}"}, "status": "active"},
    ]
    client.put(f"/fhir/Encounter/{created['id']}", json=created, headers=admin)
    assert client.get(f"/fhir/Patient/{patient}", headers=icu_nurse).status_code == 403
    assert client.get(f"/fhir/Patient/{patient}", headers=ward_nurse).status_code == 200


def test_json_api_access_is_audited_with_the_patient(site: Site) -> None:
    nurse = site.as_("nurse", frozenset({"ICU"}))
    response = site.client.get(f"/api/v1/patients/{site.icu_patient}/vitals", headers=nurse)
    assert response.status_code in (200, 404)  # 404: no sample store in this app
    [event] = [
        e
        for e in site.audit_events()
        if any(x.get("description", "").endswith("/vitals") for x in e["entity"])
    ]
    people = {x["what"]["reference"] for x in event["entity"] if "what" in x}
    assert f"Patient/{site.icu_patient}" in people
    assert event["agent"][0]["altId"] == "user:t-nurse"


def test_cors_answers_only_the_configured_origins(store: SqlResourceStore) -> None:
    app = create_app(ApiContext(store=store), cors_origins=["https://ehr.example.org"])
    with TestClient(app) as client:
        allowed = client.options(
            "/fhir/Patient",
            headers={
                "Origin": "https://ehr.example.org",
                "Access-Control-Request-Method": "GET",
            },
        )
        other = client.get("/fhir/metadata", headers={"Origin": "https://evil.example"})
    assert allowed.headers["access-control-allow-origin"] == "https://ehr.example.org"
    assert "access-control-allow-origin" not in other.headers


def test_the_rate_limiter_refills_at_its_rate() -> None:
    limiter = RateLimiter(per_minute=60, burst=2)
    assert limiter.take("c", now=0.0) == 0 and limiter.take("c", now=0.0) == 0
    assert limiter.take("c", now=0.0) == pytest.approx(1.0)  # one token a second
    assert limiter.take("other", now=0.0) == 0  # per client
    assert limiter.take("c", now=1.0) == 0


def test_a_client_over_its_rate_gets_429(store: SqlResourceStore) -> None:
    clock = Clock(datetime.now(UTC))
    security = Security(SECRET, Accounts(store.session, clock=clock), clock)
    security.limiter = RateLimiter(per_minute=60, burst=3)
    app = create_app(ApiContext(store=store, security=security))
    token = issue_access_token(
        Principal(subject="busy", role="admin"),
        secret=SECRET,
        now=clock(),
        ttl=timedelta(minutes=5),
    )
    with TestClient(app) as client:
        codes = [
            client.get("/fhir/Patient", headers={"Authorization": f"Bearer {token}"}).status_code
            for _ in range(5)
        ]
    assert codes[:3] == [200, 200, 200] and codes[3:] == [429, 429]


@pytest.mark.parametrize(
    ("body", "status"),
    [
        (b"{not json", 400),
        (b'{"username": "alice"}', 400),
        (b'{"username": 7, "password": []}', 400),
        (b'{"username": "alice", "password": "' + b"x" * 5000 + b'"}', 400),
        (b'{"username": "nobody", "password": "whatever-long-enough"}', 401),
    ],
)
def test_a_malformed_or_oversized_login_is_refused_precisely(
    site: Site, body: bytes, status: int
) -> None:
    response = site.client.post(
        "/auth/login", content=body, headers={"Content-Type": "application/json"}
    )
    assert response.status_code == status
    assert response.json()["resourceType"] == "OperationOutcome"


@pytest.mark.parametrize(
    "headers",
    [
        {"Authorization": "Basic YWRtaW46YWRtaW4="},
        {"Authorization": "Bearer not.a.jwt"},
        {"Authorization": "Bearer " + "A" * 20_000},
        {"X-API-Key": "mhk_"},
        {"X-API-Key": "mhk_abc_" + "x" * 5000},
        {"X-API-Key": "something-else"},
    ],
)
def test_hostile_credentials_are_401_never_500(site: Site, headers: dict[str, str]) -> None:
    response = site.client.get("/fhir/Patient", headers=headers)
    assert response.status_code == 401
    assert response.json()["issue"][0]["code"] == "login"


def test_a_garbage_refresh_token_is_401(site: Site) -> None:
    response = site.client.post("/auth/refresh", json={"refresh_token": "x" * 400})
    assert response.status_code == 401
