"""``GET /metrics``: open to Prometheus, never audited, never PHI, never a 500 for a down source."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pytest
from fastapi.testclient import TestClient
from prometheus_client.core import Metric

from medhub.api.accounts import Accounts
from medhub.api.app import create_app
from medhub.api.audit import AuditTrail
from medhub.api.deps import ApiContext
from medhub.api.permissions import Principal
from medhub.api.security import RateLimiter, Security
from medhub.api.tokens import issue_access_token
from medhub.fhir.search import parse_search
from medhub.fhir.sql_store import SqlResourceStore
from medhub.metrics import ScrapeCollector, ScrapeSource, gauge
from medhub.wiring_metrics import scrape_collector
from tests.scrape import Delta, has, parse, value

SECRET = "metrics-test-secret-0123456789abcdefghijkl"
JSON = {"Content-Type": "application/fhir+json"}


@dataclass
class Site:
    client: TestClient
    store: SqlResourceStore
    admin: dict[str, str]

    def audit_events(self) -> int:
        with self.store.unit_of_work() as resources:
            return resources.search(parse_search("AuditEvent", [("_summary", "count")])).total


def database_down() -> Iterable[Metric]:
    raise ConnectionRefusedError("connection refused")


def steady() -> Iterable[Metric]:
    yield gauge("medhub_test_steady", "Always there.", [], [([], 7)])


@pytest.fixture
def site(sqlite_store: SqlResourceStore) -> Iterator[Site]:
    """The app as ``medhub serve`` builds it: security, audit and the real scrape sources."""
    now = datetime.now(UTC)
    accounts = Accounts(sqlite_store.session, clock=lambda: now)
    collector = scrape_collector(store=sqlite_store, destinations=["lab"])
    failing = ScrapeCollector(
        [*collector.sources, ScrapeSource("test_down", database_down), ScrapeSource("s", steady)]
    )
    context = ApiContext(
        store=sqlite_store,
        sql_store=sqlite_store,
        security=Security(SECRET, accounts, lambda: now, limiter=RateLimiter(60_000, 10_000)),
        audit=AuditTrail(sqlite_store, clock=lambda: now),
        metrics=failing,
    )
    token = issue_access_token(
        Principal(subject="t-admin", role="admin"), secret=SECRET, now=now, ttl=timedelta(hours=1)
    )
    with TestClient(create_app(context), raise_server_exceptions=False) as client:
        yield Site(client, sqlite_store, {**JSON, "Authorization": f"Bearer {token}"})


def test_metrics_are_scraped_without_a_token_in_the_text_format(site: Site) -> None:
    response = site.client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
    samples = parse(response.text)
    assert value(samples, "medhub_test_steady") == 7
    assert has(samples, "medhub_db_pool_checked_out", pool="resources")
    assert has(samples, "medhub_hl7_outbound_queue_messages", destination="lab", status="pending")
    assert has(samples, "medhub_outbox_oldest_pending_seconds")
    assert has(samples, "python_gc_objects_collected_total", generation="0")


def test_a_source_that_fails_is_left_out_and_counted_and_the_scrape_is_200(site: Site) -> None:
    delta = Delta(parse(site.client.get("/metrics").text))
    response = site.client.get("/metrics")
    assert response.status_code == 200
    samples = parse(response.text)
    assert delta("medhub_metrics_collect_errors_total", samples, source="test_down") == 1
    assert value(samples, "medhub_test_steady") == 7  # sources after it still scraped


def test_a_scrape_writes_no_audit_event_and_is_not_rate_limited(site: Site) -> None:
    site.client.get("/fhir/Patient", headers=site.admin)
    before = site.audit_events()
    assert before >= 1  # patient-data access is audited ...
    for _ in range(5):
        assert site.client.get("/metrics").status_code == 200
    assert site.audit_events() == before  # ... a scrape is not


def test_no_patient_data_reaches_the_metrics(site: Site) -> None:
    body = {
        "resourceType": "Patient",
        "identifier": [{"system": "urn:oid:1.2.3", "value": "MRN-7731-SECRET"}],
        "name": [{"family": "Featherstonehaugh", "given": ["Ottoline"]}],
        "birthDate": "1931-02-03",
    }
    created = site.client.post("/fhir/Patient", json=body, headers=site.admin)
    assert created.status_code == 201
    pid = created.json()["id"]
    site.client.get(f"/fhir/Patient/{pid}", headers=site.admin)
    site.client.get("/fhir/Patient?identifier=MRN-7731-SECRET", headers=site.admin)
    site.client.get("/fhir/Patient?family=Featherstonehaugh", headers=site.admin)
    text = site.client.get("/metrics").text
    for secret in (pid, "MRN-7731", "Featherstonehaugh", "Ottoline"):
        assert secret not in text


def test_an_app_without_scrape_sources_serves_the_event_metrics(
    sqlite_store: SqlResourceStore,
) -> None:
    with TestClient(create_app(ApiContext(store=sqlite_store))) as client:
        response = client.get("/metrics")
    assert response.status_code == 200
    assert "# TYPE medhub_fhir_requests_total counter" in response.text
