"""The dashboards over HTTP and WebSocket: login and cookies, role pages, care units, live feed."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine
from starlette.websockets import WebSocketDisconnect

from medhub.api import ui_socket
from medhub.api.accounts import Accounts
from medhub.api.app import create_app
from medhub.api.audit import AuditTrail
from medhub.api.deps import ApiContext
from medhub.api.live import LiveHub, connect_live
from medhub.api.patient_access import PatientAccess
from medhub.api.permissions import Principal, Role
from medhub.api.security import REFRESH_COOKIE, SESSION_COOKIE, RateLimiter, Security
from medhub.api.tokens import issue_access_token
from medhub.api.ui_census import census
from medhub.cds.alert_store import AlertService
from medhub.cds.vital_watch import VitalWatch
from medhub.db.engine import make_engine
from medhub.devices.ingest import DeviceIngest
from medhub.devices.registry import DeviceRegistry
from medhub.devices.samples import Sample
from medhub.fhir.search import parse_search
from medhub.fhir.sql_store import SqlResourceStore
from medhub.fhir.write_rules import utc_now
from medhub.hl7.inbound import Hl7Inbound
from medhub.hl7.sql_units import sql_inbound_units
from medhub.timeseries.records import SampleRecord
from medhub.timeseries.sample_store import SampleStore
from medhub.timeseries.schema import migrate
from tests.builders import adt

SECRET = "ui-test-signing-secret-0123456789abcdefghij"
PASSWORD = "correct horse battery"
BY_PAGE = {"X-Requested-With": "medhub"}


@dataclass
class Site:
    client: TestClient
    context: ApiContext
    accounts: Accounts
    ingest: DeviceIngest
    registry: DeviceRegistry
    watch: VitalWatch
    hub: LiveHub
    icu_patient: str = ""
    ward_patient: str = ""

    def login(self, username: str) -> dict[str, Any]:
        self.client.cookies.clear()
        response = self.client.post(
            "/ui/login", json={"username": username, "password": PASSWORD}, headers=BY_PAGE
        )
        assert response.status_code == 200, response.text
        return dict(response.json())

    def token(self, role: Role, units: frozenset[str] | None, *, ttl: timedelta) -> str:
        principal = Principal(subject=f"t-{role}", role=role, care_units=units)
        return issue_access_token(principal, secret=SECRET, now=datetime.now(UTC), ttl=ttl)

    def vitals(self, device: str, value: float, *, vital: str = "heart-rate") -> None:
        now = datetime.now(UTC)
        self.ingest.store([Sample(device, vital, value, "/min", now)], received_at=now)


def replace_cookie(client: TestClient, name: str, value: str) -> None:
    """Swap a cookie's value in the client's jar, on the domain the server set it for."""
    domain = next((c.domain for c in client.cookies.jar if c.name == name), "testserver.local")
    client.cookies.delete(name)
    client.cookies.set(name, value, domain=domain, path="/")


def _admit(inbound: Hl7Inbound, store: SqlResourceStore, mrn: str, family: str, pv1: str) -> str:
    message = adt(f"ADT-{mrn}", mrn=mrn, family=family).replace(
        b"PV1|1|I|ICU^101^A", f"PV1|1|I|{pv1}".encode()
    )
    assert [o.status for o in inbound.handle_batch([(message, "test")])] == ["accepted"]
    with store.unit_of_work() as resources:
        found = resources.search(parse_search("Patient", [("identifier", mrn)])).resources
    return found[0].id


@pytest.fixture
def samples_engine(tmp_path: Path) -> Iterator[Engine]:
    engine = make_engine(f"sqlite:///{tmp_path / 'samples.db'}")
    migrate(engine)
    yield engine
    engine.dispose()


@pytest.fixture
def site(sqlite_store: SqlResourceStore, samples_engine: Engine) -> Iterator[Site]:
    store = sqlite_store
    samples = SampleStore(samples_engine)
    registry = DeviceRegistry(store)
    ingest = DeviceIngest(samples, registry, binding_refresh_seconds=0)
    alerts = AlertService(store)
    accounts = Accounts(store.session, clock=utc_now)
    security = Security(SECRET, accounts, utc_now, limiter=RateLimiter(60_000, 10_000))
    context = ApiContext(
        store=store,
        sql_store=store,
        samples=samples,
        devices=registry,
        alerts=alerts,
        on_binding_change=ingest.invalidate_bindings,
        security=security,
        access=PatientAccess(store, ttl_seconds=0),
        audit=AuditTrail(store, clock=utc_now),
    )
    app = create_app(context)
    hub = app.state.live
    hub.vitals_interval = 0.05
    connect_live(hub, ingest=ingest)
    inbound = Hl7Inbound(sql_inbound_units(store, validate=False), clock=utc_now)
    for name, role, units in (
        ("nurse-icu", "nurse", ["ICU"]),
        ("nurse-ward", "nurse", ["WARD2"]),
        ("doctor", "physician", ["ICU"]),
        ("pharm", "pharmacist", None),
        ("root", "admin", None),
        ("desk", "receptionist", None),
    ):
        accounts.create_user(name, PASSWORD, role=role, care_units=units, display_name=name)
    with TestClient(app, raise_server_exceptions=False) as client:
        result = Site(client, context, accounts, ingest, registry, VitalWatch(alerts), hub)
        result.icu_patient = _admit(inbound, store, "ICU-1", "ICUPATIENT", "ICU^^^GHH")
        result.ward_patient = _admit(inbound, store, "WARD-1", "WARDPATIENT", "WARD2^^^GHH")
        start = datetime.now(UTC) - timedelta(minutes=1)
        registry.bind("mon-icu", result.icu_patient, start)
        registry.bind("mon-ward", result.ward_patient, start)
        yield result


# -- login and session -------------------------------------------------------------------


def test_login_sets_strict_http_only_cookies_and_sends_each_role_home(site: Site) -> None:
    page = site.client.get("/ui/login")
    assert page.status_code == 200 and 'id="login-form"' in page.text
    body = {"username": "nurse-icu", "password": PASSWORD}
    assert site.client.post("/ui/login", json=body).status_code == 403  # no X-Requested-With
    wrong = site.client.post("/ui/login", json={**body, "password": "nope"}, headers=BY_PAGE)
    assert wrong.status_code == 401
    response = site.client.post("/ui/login", json=body, headers=BY_PAGE)
    assert response.status_code == 200 and response.json()["location"] == "/ui/nurse"
    cookies = {c.split("=", 1)[0]: c.lower() for c in response.headers.get_list("set-cookie")}
    for name, path in ((SESSION_COOKIE, "path=/;"), (REFRESH_COOKIE, "path=/ui")):
        assert "httponly" in cookies[name] and "samesite=strict" in cookies[name]
        assert path in cookies[name]
    home = site.client.get("/ui", follow_redirects=False)
    assert home.status_code == 303 and home.headers["location"] == "/ui/nurse"
    for user, page_path in (("doctor", "/ui/physician"), ("pharm", "/ui/pharmacist")):
        assert site.login(user)["location"] == page_path
    assert site.login("root")["location"] == "/ui/admin"
    site.login("desk")
    assert site.client.get("/ui").status_code == 403  # no dashboard for a receptionist


def test_a_page_without_a_session_redirects_to_login_and_back(site: Site) -> None:
    response = site.client.get("/ui/nurse", follow_redirects=False)
    assert response.status_code == 303
    assert response.headers["location"] == "/ui/login?next=/ui/nurse"
    login = site.client.post(
        "/ui/login",
        json={"username": "nurse-icu", "password": PASSWORD, "next": "/ui/nurse"},
        headers=BY_PAGE,
    )
    assert login.json()["location"] == "/ui/nurse"
    evil = {"username": "nurse-icu", "password": PASSWORD, "next": "https://evil.example/"}
    assert site.client.post("/ui/login", json=evil, headers=BY_PAGE).json()["location"] == (
        "/ui/nurse"
    )


def test_an_expired_session_is_refreshed_with_the_refresh_cookie(site: Site) -> None:
    site.login("nurse-icu")
    expired = issue_access_token(
        Principal(subject="nurse-icu", role="nurse", care_units=frozenset({"ICU"})),
        secret=SECRET,
        now=datetime.now(UTC) - timedelta(hours=1),
        ttl=timedelta(minutes=15),
    )
    replace_cookie(site.client, SESSION_COOKIE, expired)
    page = site.client.get("/ui/nurse", follow_redirects=False)
    assert page.status_code == 200
    assert any(c.startswith(f"{SESSION_COOKIE}=") for c in page.headers.get_list("set-cookie"))
    assert site.client.post("/ui/refresh", headers=BY_PAGE).status_code == 200
    assert site.client.post("/ui/logout").status_code == 403  # no X-Requested-With
    assert site.client.post("/ui/logout", headers=BY_PAGE).json()["location"] == "/ui/login"
    assert site.client.get("/ui/nurse", follow_redirects=False).status_code == 303


# -- pages and care units --------------------------------------------------------------


def test_a_nurse_sees_only_the_patients_of_her_unit(site: Site) -> None:
    site.vitals("mon-icu", 77.0)
    site.login("nurse-icu")
    page = site.client.get("/ui/nurse")
    assert page.status_code == 200
    assert "ICUPATIENT" in page.text and "WARDPATIENT" not in page.text
    assert '<span class="value">77</span>' in page.text
    assert site.client.get(f"/ui/patients/{site.icu_patient}").status_code == 200
    forbidden = site.client.get(f"/ui/patients/{site.ward_patient}")
    assert forbidden.status_code == 403 and "WARDPATIENT" not in forbidden.text
    site.login("nurse-ward")
    page = site.client.get("/ui/nurse")
    assert "WARDPATIENT" in page.text and "ICUPATIENT" not in page.text
    assert site.client.get("/ui/admin").status_code == 403


def test_each_role_page_renders(site: Site) -> None:
    with site.context.store.unit_of_work() as resources:
        issue = resources.create(
            {
                "resourceType": "DetectedIssue",
                "status": "final",
                "severity": "high",
                "code": {"coding": [{"code": "DRG"}]},
                "detail": "warfarin with ibuprofen: bleeding risk",
                "patient": {"reference": f"Patient/{site.icu_patient}"},
            }
        )
        resources.create(
            {
                "resourceType": "MedicationRequest",
                "status": "active",
                "intent": "order",
                "medicationCodeableConcept": {"text": "ibuprofen 400 mg tablet"},
                "subject": {"reference": f"Patient/{site.icu_patient}"},
                "detectedIssue": [{"reference": f"DetectedIssue/{issue.id}"}],
            }
        )
    site.login("doctor")
    physician = site.client.get("/ui/physician")
    assert physician.status_code == 200 and "bleeding risk" in physician.text
    patient = site.client.get(f"/ui/patients/{site.icu_patient}")
    assert 'id="prescribe"' in patient.text and "ibuprofen 400 mg tablet" in patient.text
    site.login("pharm")
    pharmacist = site.client.get("/ui/pharmacist")
    assert pharmacist.status_code == 200 and "bleeding risk" in pharmacist.text
    assert "ICUPATIENT" in pharmacist.text.upper()
    site.login("root")
    admin = site.client.get("/ui/admin")
    assert admin.status_code == 200
    assert "nurse-ward" in admin.text and "mon-icu" in admin.text
    assert site.client.get("/ui/static/ui.css").status_code == 200
    assert site.client.get("/ui/static/../app.py").status_code == 404


# -- the live feed ------------------------------------------------------------------------


def _closed_with(client: TestClient, path: str, **kwargs: Any) -> int:
    with (
        client.websocket_connect(path, **kwargs) as socket,
        pytest.raises(WebSocketDisconnect) as closed,
    ):
        socket.receive_json()
    return closed.value.code


def test_the_socket_needs_a_session_a_live_role_and_our_origin(site: Site) -> None:
    assert _closed_with(site.client, "/ws") == 4401
    assert _closed_with(site.client, "/ws?access_token=forged") == 4401
    site.login("desk")
    assert _closed_with(site.client, "/ws") == 4403  # a receptionist has nothing live
    site.login("nurse-icu")
    assert _closed_with(site.client, "/ws", headers={"Origin": "https://evil.example"}) == 4403


def test_every_page_hears_when_the_server_loses_its_live_feed(site: Site) -> None:
    """Split roles: with the broker feed down, tiles would freeze looking live. A unit-bound
    nurse (who gets no event about no patient) must still be told, and a page opened
    during the outage must say so in its hello."""
    site.login("nurse-icu")
    cookie = site.client.cookies.get(SESSION_COOKIE)
    site.client.cookies.clear()
    with site.client.websocket_connect(f"/ws?access_token={cookie}") as socket:
        assert socket.receive_json()["live"] is True
        site.hub.feed_state(False)
        lost = socket.receive_json()
        assert (lost["type"], lost["live"], lost["patient"]) == ("feed.state", False, None)
        with site.client.websocket_connect(f"/ws?access_token={cookie}") as late:
            assert late.receive_json()["live"] is False
        site.hub.feed_state(False)  # no news: nothing sent
        site.hub.feed_state(True)
        back = socket.receive_json()
        assert (back["type"], back["live"]) == ("feed.state", True)


def test_the_socket_closes_when_its_token_expires(site: Site) -> None:
    token = site.token("nurse", frozenset({"ICU"}), ttl=timedelta(seconds=2))
    site.client.cookies.clear()
    with site.client.websocket_connect(f"/ws?access_token={token}") as socket:
        assert socket.receive_json()["type"] == "hello"
        with pytest.raises(WebSocketDisconnect) as closed:
            socket.receive_json()
    assert closed.value.code == 4401


def test_each_client_gets_only_events_about_patients_it_may_see(site: Site) -> None:
    site.login("nurse-icu")
    icu_cookie = site.client.cookies.get(SESSION_COOKIE)
    site.login("nurse-ward")
    ward_cookie = site.client.cookies.get(SESSION_COOKIE)
    site.client.cookies.clear()
    with (
        site.client.websocket_connect(f"/ws?access_token={icu_cookie}") as icu,
        site.client.websocket_connect(f"/ws?access_token={ward_cookie}") as ward,
    ):
        assert icu.receive_json()["units"] == ["ICU"]
        assert ward.receive_json()["units"] == ["WARD2"]
        site.vitals("mon-ward", 81.0)  # first: the ICU nurse must skip it
        site.vitals("mon-icu", 72.0)
        update = icu.receive_json()
        assert update["type"] == "vitals.update" and update["patient"] == site.icu_patient
        assert update["vitals"]["heart-rate"]["value"] == 72.0
        assert ward.receive_json()["patient"] == site.ward_patient
        start = datetime.now(UTC)
        site.watch(
            [
                SampleRecord(
                    "mon-icu", "heart-rate", "", at, at, at, 175.0, "/min", site.icu_patient
                )
                for at in (start, start + timedelta(seconds=1))
            ]
        )
        raised = next(m for m in iter(icu.receive_json, None) if m["type"] != "vitals.update")
        assert raised["type"] == "alert.raised" and raised["patient"] == site.icu_patient
        site.vitals("mon-ward", 82.0)  # the ward nurse's next event is her own patient's
        assert ward.receive_json()["patient"] == site.ward_patient
        replace_cookie(site.client, SESSION_COOKIE, icu_cookie or "")
        alert_id = raised["alert"]["alert_id"]
        ack = site.client.post(
            f"/api/v1/alerts/{alert_id}/acknowledge", json={"by": "x"}, headers=BY_PAGE
        )
        assert ack.status_code == 200, ack.text
        acknowledged = next(m for m in iter(icu.receive_json, None) if m["type"] != "vitals.update")
        assert acknowledged["type"] == "alert.acknowledged"
        assert acknowledged["alert"]["acknowledged_by"] == "nurse-icu"


def test_the_hub_throttles_vitals_to_one_update_per_patient_per_interval() -> None:
    async def run() -> list[dict[str, Any]]:
        hub = LiveHub(vitals_interval=0.2)
        subscription = hub.subscribe()
        now = datetime.now(UTC)

        def publish() -> None:
            for n in range(5):
                hub.vitals(
                    [SampleRecord("d", "heart-rate", "", now, now, now, 60.0 + n, "/min", "p")]
                )

        thread = threading.Thread(target=publish)
        thread.start()
        thread.join()
        received = [(await asyncio.wait_for(subscription.queue.get(), 1)).message()]
        received.append((await asyncio.wait_for(subscription.queue.get(), 1)).message())
        await asyncio.sleep(0.3)
        assert subscription.queue.empty()
        return received

    first, last = asyncio.run(run())
    assert first["vitals"]["heart-rate"]["value"] == 60.0
    assert last["vitals"]["heart-rate"]["value"] == 64.0


def test_the_census_finds_patients_in_beds_under_the_ward(sqlite_store: SqlResourceStore) -> None:
    inbound = Hl7Inbound(sql_inbound_units(sqlite_store, validate=False), clock=utc_now)
    in_bed = _admit(inbound, sqlite_store, "BED-1", "INBED", "ICU^101^A^GHH")
    _admit(inbound, sqlite_store, "BED-2", "OTHERWARD", "WARD2^7^B^GHH")
    nurse = Principal(subject="n", role="nurse", care_units=frozenset({"ICU"}))
    [entry] = census(ApiContext(store=sqlite_store), nurse, today=datetime.now(UTC).date())
    assert (entry.id, entry.bed, entry.name) == (in_bed, "ICU 101 A", "INBED, Jane")
    everyone = Principal(subject="a", role="admin")
    assert (
        len(census(ApiContext(store=sqlite_store), everyone, today=datetime.now(UTC).date())) == 2
    )


def _audited_patients(site: Site, path_part: str) -> set[str]:
    """The patients named by AuditEvents whose description or agent mentions ``path_part``."""
    with site.context.store.unit_of_work() as resources:
        query = parse_search("AuditEvent", [("_count", "1000")])
        events = [r.resource for r in resources.search(query).resources]
    named: set[str] = set()
    for event in events:
        texts = [e.get("description", "") for e in event["entity"]]
        if any(path_part in text for text in texts):
            named |= {e["what"]["reference"] for e in event["entity"] if e["type"]["code"] == "1"}
    return named


def test_pages_and_the_live_socket_are_audited_with_the_patients_shown(
    site: Site, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(ui_socket, "AUDIT_SECONDS", 0.0)  # audit after every event sent
    site.vitals("mon-icu", 70.0)
    site.login("nurse-icu")
    assert site.client.get("/ui/nurse").status_code == 200
    assert site.client.get(f"/ui/patients/{site.icu_patient}").status_code == 200
    assert _audited_patients(site, "/ui/nurse") == {f"Patient/{site.icu_patient}"}
    assert f"Patient/{site.icu_patient}" in _audited_patients(site, "/ui/patients/")

    cookie = site.client.cookies.get(SESSION_COOKIE)
    with site.client.websocket_connect(f"/ws?access_token={cookie}") as socket:
        socket.receive_json()
        site.vitals("mon-icu", 73.0)
        assert socket.receive_json()["type"] == "vitals.update"
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and not _audited_patients(site, "/ws"):
        time.sleep(0.05)
    assert _audited_patients(site, "/ws") == {f"Patient/{site.icu_patient}"}


def test_a_socket_closed_while_its_audit_waits_for_a_thread_still_records_it(
    sqlite_store: SqlResourceStore,
) -> None:
    """On a busy box the audit write may not have started when the socket's task is
    cancelled (the page closed); the patients shown must be recorded all the same."""
    trail = AuditTrail(sqlite_store, clock=utc_now)
    nurse = Principal(subject="n", role="nurse", care_units=frozenset({"ICU"}))
    client = ui_socket.Client(nurse, ApiContext(store=sqlite_store, audit=trail), None)
    client.sent_patients.add("p-shown")
    socket = type("Socket", (), {"scope": {"type": "websocket", "path": "/ws", "headers": []}})

    async def run() -> None:
        from concurrent.futures import ThreadPoolExecutor

        executor = ThreadPoolExecutor(max_workers=1)
        asyncio.get_running_loop().set_default_executor(executor)
        release = threading.Event()
        executor.submit(release.wait)  # the only worker is busy
        try:
            task = asyncio.create_task(ui_socket._audit(socket, client))  # type: ignore[arg-type]
            await asyncio.sleep(0.05)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
        finally:
            release.set()

    asyncio.run(run())  # shuts the executor down, waiting for its work
    with sqlite_store.unit_of_work() as resources:
        events = resources.search(parse_search("AuditEvent", [])).resources
    [event] = [e.resource for e in events]
    assert event["entity"][0]["what"]["reference"] == "Patient/p-shown"
    assert not client.sent_patients
