"""Each applied HL7 message leaves one AuditEvent in its own transaction, naming the sender
and the patient; a duplicate or a refused message leaves none."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from medhub.clinical.resources import validate_resource
from medhub.fhir.search import parse_search
from medhub.fhir.sql_store import SqlResourceStore
from medhub.hl7.inbound import Hl7Inbound
from medhub.hl7.sql_units import sql_inbound_units
from tests.hl7.test_adt_flow import adt


def audit_events(store: SqlResourceStore) -> list[dict[str, Any]]:
    with store.unit_of_work() as resources:
        query = parse_search("AuditEvent", [("_count", "100")])
        return [r.resource for r in resources.search(query).resources]


def inbound(store: SqlResourceStore) -> Hl7Inbound:
    clock = lambda: datetime(2024, 3, 10, 12, 0, tzinfo=UTC)  # noqa: E731
    return Hl7Inbound(sql_inbound_units(store), clock=clock, audit=True)


def test_an_applied_message_is_audited_with_its_sender_and_patient(
    store: SqlResourceStore,
) -> None:
    service = inbound(store)
    outcome = service.handle(adt("A01", "AUD-1", mrn="MRN-A"), "10.1.2.3:4567")
    assert outcome.ack_code == "AA"

    [event] = audit_events(store)
    validate_resource(event, expected_type="AuditEvent")
    assert event["type"]["code"] == "110107" and event["action"] == "C"
    agent = event["agent"][0]
    assert agent["who"]["display"] == "EHR|GHH" and agent["network"]["address"] == "10.1.2.3"
    with store.unit_of_work() as resources:
        [patient] = resources.search(parse_search("Patient", [])).resources
    people = [e["what"]["reference"] for e in event["entity"] if e["type"]["code"] == "1"]
    assert people == [f"Patient/{patient.id}"]
    assert any(e.get("name") == "ADT^A01 AUD-1" for e in event["entity"])


def test_a_duplicate_or_refused_message_is_not_audited_as_a_write(
    store: SqlResourceStore,
) -> None:
    service = inbound(store)
    service.handle(adt("A01", "AUD-2"), "t")
    assert service.handle(adt("A01", "AUD-2"), "t").status == "duplicate"
    refused = service.handle(adt("A01", "AUD-3", extra=("AL1|1|DA||SV",)), "t")
    assert refused.ack_code == "AE"
    assert len(audit_events(store)) == 1
