"""Correlation ids and tracing: one id from the request or message through storage,
alerts and what goes out, on every back-end; spans only when tracing is configured."""

from __future__ import annotations

import io
import json
import re
from collections.abc import Iterator
from contextlib import redirect_stderr
from datetime import UTC, datetime

import pytest
from fastapi.testclient import TestClient
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from sqlalchemy import select

from medhub.api.app import create_app
from medhub.api.deps import ApiContext
from medhub.correlation import (
    accepted_correlation_id,
    correlated,
    current_correlation_id,
)
from medhub.db.outbox import OutboxEventRow
from medhub.fhir.sql_store import SqlResourceStore
from medhub.hl7.message_log import Hl7MessageRow
from medhub.hl7.outbound_queue import Hl7OutboundRow, enqueue, view
from medhub.logs import configure_logging
from medhub.tracing import CORRELATION_ATTRIBUTE, configure_tracing
from tests.builders import adt
from tests.hl7.test_result_flow import inbound_for, lab

HEX32 = r"[0-9a-f]{32}"


@pytest.fixture(scope="module")
def spans() -> Iterator[InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    provider = configure_tracing(exporter)
    assert provider is not None
    yield exporter
    provider.force_flush()


def finished(exporter: InMemorySpanExporter, name: str) -> list[dict[str, object]]:
    provider = configure_tracing(None)
    assert provider is not None
    provider.force_flush()
    return [dict(s.attributes or {}) for s in exporter.get_finished_spans() if s.name == name]


@pytest.mark.parametrize(
    ("given", "kept"),
    [
        ("abc-123", True),
        ("urn:uuid:6f1c1a9e-5c57-4a4e-9d55-0b5c0e0b2b11", True),
        ("a" * 64, True),
        ("a" * 65, False),
        ("two words", False),
        ("line\nbreak", False),
        ('{"json": 1}', False),
        ("", False),
    ],
)
def test_a_client_request_id_is_taken_over_only_when_short_and_plain(
    given: str, kept: bool
) -> None:
    assert (accepted_correlation_id(given) == given) is kept


def test_a_request_runs_under_its_x_request_id_and_answers_with_it(
    sqlite_store: SqlResourceStore, spans: InMemorySpanExporter
) -> None:
    client = TestClient(create_app(ApiContext(store=sqlite_store)))
    with client:
        tagged = client.get("/fhir/Patient", headers={"X-Request-ID": "gw-7f3a"})
        fresh = client.get("/fhir/Patient")
        hostile = client.get(
            "/fhir/Patient", headers={"X-Request-ID": "x\u00e9 y".encode("latin-1")}
        )
    assert tagged.headers["X-Request-ID"] == "gw-7f3a"
    assert fresh.headers["X-Request-ID"] != tagged.headers["X-Request-ID"]
    assert re.fullmatch(HEX32, fresh.headers["X-Request-ID"])
    assert re.fullmatch(HEX32, hostile.headers["X-Request-ID"])
    traced = [
        a for a in finished(spans, "http.request") if a.get(CORRELATION_ATTRIBUTE) == "gw-7f3a"
    ]
    assert traced and traced[0]["http.route"] == "/fhir/{resource_type}"
    assert traced[0]["http.status_code"] == 200
    assert current_correlation_id() is None  # nothing leaks out of the request


def test_an_hl7_message_its_event_and_its_log_lines_share_one_id(
    store: SqlResourceStore, spans: InMemorySpanExporter
) -> None:
    inbound = inbound_for(store)
    stderr = io.StringIO()
    configure_logging("INFO", "json")
    with redirect_stderr(stderr):
        assert inbound.handle(lab("COR-1"), "lis").ack_code == "AA"
    with store.session() as session:
        logged = session.scalars(
            select(Hl7MessageRow).where(Hl7MessageRow.control_id == "COR-1")
        ).one()
        [event] = session.scalars(select(OutboxEventRow)).all()
    assert logged.correlation_id is not None
    assert event.correlation_id == logged.correlation_id  # lab.result.critical carries it
    lines = [json.loads(line) for line in stderr.getvalue().splitlines() if line.startswith("{")]
    accepted = [line for line in lines if line.get("event") == "hl7.inbound.accepted"]
    assert accepted and accepted[0]["correlation_id"] == logged.correlation_id
    traced = finished(spans, "hl7.inbound")
    assert any(a.get(CORRELATION_ATTRIBUTE) == logged.correlation_id for a in traced)
    assert all("MRN-42" not in str(a) and "DOE" not in str(a) for a in traced)  # no PHI


def test_each_message_of_a_batch_gets_its_own_id(store: SqlResourceStore) -> None:
    inbound = inbound_for(store)
    outcomes = inbound.handle_batch([(adt(f"BATCH-{i}", f"MRN-B{i}"), "ehr") for i in range(3)])
    assert [o.ack_code for o in outcomes] == ["AA", "AA", "AA"]
    with store.session() as session:
        ids = session.scalars(
            select(Hl7MessageRow.correlation_id).where(Hl7MessageRow.control_id.like("BATCH-%"))
        ).all()
    assert len(set(ids)) == 3 and None not in ids


def test_outbound_hl7_queued_under_a_request_keeps_its_id(store: SqlResourceStore) -> None:
    now = datetime.now(UTC)
    with store.session() as session, correlated("req-42"):
        queued = enqueue(session, destination="lis", message=adt("OUT-1", event="A08"), now=now)
    with store.session() as session:
        row = session.get(Hl7OutboundRow, queued)
        assert row is not None and view(row).correlation_id == "req-42"
