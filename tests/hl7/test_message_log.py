"""The message log: batches, listing, reprocessing dead letters, over the API and the CLI."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from medhub.api.app import create_app
from medhub.api.deps import ApiContext
from medhub.cli import main
from medhub.config import Settings
from medhub.fhir.search import parse_search
from medhub.fhir.sql_store import SqlResourceStore
from medhub.hl7.inbound import Hl7Inbound
from medhub.hl7.message_log import MessageQuery, SqlMessageLog
from medhub.hl7.reprocess import reprocess
from medhub.hl7.sql_units import sql_inbound_units
from medhub.wiring import build
from tests.builders import adt

SYSTEM = "urn:oid:1.2.840.114350"


def make_inbound(store: SqlResourceStore) -> Hl7Inbound:
    return Hl7Inbound(sql_inbound_units(store), clock=lambda: datetime.now(UTC))


def statuses(store: SqlResourceStore, **criteria: str) -> list[str]:
    with store.session() as session:
        rows = SqlMessageLog(session).search(MessageQuery(**criteria))  # type: ignore[arg-type]
        return [r.status for r in reversed(rows)]


def patient_ids(store: SqlResourceStore, mrn: str) -> list[str]:
    query = parse_search("Patient", [("identifier", f"{SYSTEM}|{mrn}")])
    with store.unit_of_work() as resources:
        return [r.id for r in resources.search(query).resources]


def test_one_batch_mixes_good_bad_and_duplicate_messages_independently(
    store: SqlResourceStore,
) -> None:
    batch = [
        (adt("B1", mrn="B-1"), "p1"),
        (adt("B2", mrn="B-2", birth="bad"), "p2"),
        (b"garbage", "p3"),
        (adt("B1", mrn="B-1"), "p4"),
        (adt("B3", mrn="B-3"), "p5"),
    ]
    outcomes = make_inbound(store).handle_batch(batch)
    assert [(o.status, o.ack_code) for o in outcomes] == [
        ("accepted", "AA"),
        ("dead-letter", "AE"),
        ("rejected", "AR"),
        ("duplicate", "AA"),
        ("accepted", "AA"),
    ]
    assert len(patient_ids(store, "B-1")) == 1
    assert patient_ids(store, "B-2") == []  # the bad message's savepoint rolled back alone
    assert len(patient_ids(store, "B-3")) == 1
    assert statuses(store) == ["accepted", "dead-letter", "rejected", "duplicate", "accepted"]


def test_a_dead_letter_is_applied_when_reprocessed_after_its_cause_is_fixed(
    store: SqlResourceStore,
) -> None:
    inbound = make_inbound(store)
    inbound.handle(adt("R1", mrn="A"), "t")
    inbound.handle(adt("R2", mrn="B"), "t")
    both = adt("R3", mrn="A^^^HOSP&1.2.840.114350&ISO^MR~B", event="A08", family="MERGED")
    assert inbound.handle(both, "t").status == "dead-letter"
    [dead] = _rows(store, status="dead-letter")
    [duplicate] = patient_ids(store, "B")
    with store.unit_of_work() as resources:  # the analyst resolves the duplicate patient
        resources.delete("Patient", duplicate)
    [result] = reprocess(store, inbound, ids=[dead])
    assert (result.status, result.ack_code) == ("accepted", "AA")
    [again] = reprocess(store, inbound, ids=[dead])
    assert again.status == "duplicate"  # never applied twice
    assert statuses(store, control_id="R3") == ["dead-letter", "accepted", "duplicate"]


def _rows(store: SqlResourceStore, **criteria: str) -> list[int]:
    query = MessageQuery(**criteria)  # type: ignore[arg-type]
    with store.session() as session:
        return [r.id for r in SqlMessageLog(session).search(query)]


@pytest.fixture
def api(sqlite_store: SqlResourceStore) -> Iterator[tuple[TestClient, Hl7Inbound]]:
    inbound = make_inbound(sqlite_store)
    context = ApiContext(store=sqlite_store, inbound=inbound, sql_store=sqlite_store)
    with TestClient(create_app(context)) as client:
        yield client, inbound


def test_the_message_log_api_lists_shows_and_reprocesses(
    api: tuple[TestClient, Hl7Inbound],
) -> None:
    client, inbound = api
    inbound.handle(adt("L1", mrn="L-1"), "t")
    inbound.handle(adt("L2", sex="Q"), "t")
    listing = client.get("/api/v1/hl7/messages").json()["messages"]
    assert [(m["control_id"], m["status"]) for m in listing] == [
        ("L2", "dead-letter"),
        ("L1", "accepted"),
    ]
    assert "PID-8" in listing[0]["error"]
    dead = client.get("/api/v1/hl7/messages", params={"status": "dead-letter"}).json()
    assert [m["control_id"] for m in dead["messages"]] == ["L2"]
    one = client.get(f"/api/v1/hl7/messages/{listing[0]['id']}").json()
    assert one["raw"].startswith("MSH|^~\\&|ADTApp")
    again = client.post(f"/api/v1/hl7/messages/{listing[0]['id']}/reprocess").json()
    assert again["status"] == "dead-letter" and again["ack_code"] == "AE"
    missing = client.get("/api/v1/hl7/messages/999999")
    assert missing.status_code == 404
    assert missing.json()["resourceType"] == "OperationOutcome"


def test_the_cli_lists_the_log_as_json_and_reprocesses_by_status(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("MEDHUB_DATABASE_URL", f"sqlite:///{tmp_path / 'cli.db'}")
    assert main(["migrate"]) == 0
    components = build(Settings())
    for raw in (adt("CLI-1", mrn="CLI"), adt("CLI-2", sex="Q")):
        components.inbound.handle(raw, "cli-test")
    components.store.close()
    capsys.readouterr()
    assert main(["hl7", "messages", "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert [(m["control_id"], m["status"]) for m in listed] == [
        ("CLI-2", "dead-letter"),
        ("CLI-1", "accepted"),
    ]
    assert main(["hl7", "reprocess", "--status", "dead-letter"]) == 1  # still AE: exit 1
    assert "CLI-2" in capsys.readouterr().out
    assert main(["hl7", "reprocess"]) == 2  # nothing named: a clear error, not a no-op
