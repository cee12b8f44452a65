"""Prescribing over FHIR REST on every SQL back-end: checks before the write, 409 for a
high-severity finding, overrides with a reason, DetectedIssue and AuditEvent records,
the prescription.created event and the HL7 order queued for the pharmacy."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import orjson
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from medhub.api.app import create_app
from medhub.api.deps import ApiContext
from medhub.cds.medication_fhir import OVERRIDE_URL
from medhub.cds.medication_knowledge import load_default_knowledge
from medhub.config import Hl7DestinationSettings, PrescribingSettings, Settings
from medhub.db.outbox import OutboxEventRow
from medhub.fhir.sql_store import SqlResourceStore
from medhub.hl7.er7 import parse_er7
from medhub.hl7.outbound_queue import Hl7OutboundRow
from medhub.wiring_prescribing import hooked_api_store
from tests.hl7.test_adt_flow import adt as adt_message
from tests.hl7.test_adt_flow import inbound_for

JSON = {"Content-Type": "application/fhir+json"}
RXNORM = "http://www.nlm.nih.gov/research/umls/rxnorm"
WARFARIN = ("11289", "warfarin")
IBUPROFEN = ("5640", "ibuprofen")
AMOXICILLIN = ("723", "amoxicillin")
CEPHALEXIN = ("2231", "cephalexin")


def settings(pharmacy: str | None = "pharmacy") -> Settings:
    return Settings(
        hl7_destinations=[Hl7DestinationSettings(name="pharmacy", host="127.0.0.1", port=1)],
        prescribing=PrescribingSettings(pharmacy_destination=pharmacy),
    )


@pytest.fixture
def client(store: SqlResourceStore) -> Iterator[TestClient]:
    hooked = hooked_api_store(settings(), store, load_default_knowledge())
    context = ApiContext(store=hooked, sql_store=store)
    with TestClient(create_app(context), raise_server_exceptions=False) as test_client:
        yield test_client


def post(client: TestClient, body: dict[str, Any], **headers: str) -> Any:
    return client.post(f"/fhir/{body['resourceType']}", json=body, headers={**JSON, **headers})


def new_patient(client: TestClient) -> str:
    body = {
        "resourceType": "Patient",
        "identifier": [{"system": "urn:oid:1.2.3", "value": "MRN-77"}],
        "name": [{"family": "Rossi", "given": ["Maria"]}],
        "birthDate": "1950-02-03",
        "gender": "female",
    }
    response = post(client, body)
    assert response.status_code == 201
    return f"Patient/{response.json()['id']}"


def prescription(
    patient: str, drug: tuple[str, str], *, status: str = "active", **extra: Any
) -> dict[str, Any]:
    code, name = drug
    return {
        "resourceType": "MedicationRequest",
        "status": status,
        "intent": "order",
        "subject": {"reference": patient},
        "medicationCodeableConcept": {
            "coding": [{"system": RXNORM, "code": code, "display": name}],
            "text": name,
        },
        "authoredOn": "2026-12-07T09:00:00Z",
        "dosageInstruction": [
            {
                "text": "one tablet twice a day",
                "timing": {"repeat": {"frequency": 2, "period": 1, "periodUnit": "d"}},
                "route": {"coding": [{"system": "http://snomed.info/sct", "code": "26643006"}]},
                "doseAndRate": [
                    {
                        "doseQuantity": {
                            "value": 1,
                            "unit": "mg",
                            "system": "http://unitsofmeasure.org",
                            "code": "mg",
                        }
                    }
                ],
            }
        ],
        **extra,
    }


def override(reason: str | None) -> list[dict[str, Any]]:
    parts = [] if reason is None else [{"url": "reason", "valueString": reason}]
    return [{"url": OVERRIDE_URL, "extension": parts}]


def allergy(patient: str, text: str, **extra: Any) -> dict[str, Any]:
    return {
        "resourceType": "AllergyIntolerance",
        "patient": {"reference": patient},
        "code": {"text": text},
        "criticality": "high",
        **extra,
    }


def search(client: TestClient, query: str) -> list[dict[str, Any]]:
    bundle = client.get(f"/fhir/{query}").json()
    return [entry["resource"] for entry in bundle.get("entry", [])]


def events(store: SqlResourceStore, topic: str) -> list[dict[str, Any]]:
    with store.session() as session:
        rows = session.scalars(select(OutboxEventRow).where(OutboxEventRow.topic == topic))
        return [orjson.loads(row.payload) for row in rows]


def queued_orders(store: SqlResourceStore) -> list[Any]:
    with store.session() as session:
        rows = session.scalars(select(Hl7OutboundRow).order_by(Hl7OutboundRow.id)).all()
        return [parse_er7(row.message.decode()) for row in rows]


# -- blocking findings ----------------------------------------------------------------


def test_an_interacting_drug_is_refused_with_409_naming_both_drugs(
    client: TestClient, store: SqlResourceStore
) -> None:
    patient = new_patient(client)
    assert post(client, prescription(patient, WARFARIN)).status_code == 201

    response = post(client, prescription(patient, IBUPROFEN))

    assert response.status_code == 409
    outcome = response.json()
    assert outcome["resourceType"] == "OperationOutcome"
    errors = [i for i in outcome["issue"] if i["severity"] == "error"]
    assert errors, outcome
    text = " ".join(i["diagnostics"].lower() for i in errors)
    assert "warfarin" in text and "ibuprofen" in text
    assert errors[0]["expression"] == ["MedicationRequest.medication[x]"]
    assert any(OVERRIDE_URL in i["diagnostics"] for i in outcome["issue"])
    # Nothing of the refused prescription was kept or sent.
    assert len(search(client, f"MedicationRequest?subject={patient}")) == 1
    assert search(client, "DetectedIssue") == []
    assert len(queued_orders(store)) == 1  # the warfarin order only


def test_an_override_with_a_reason_saves_the_order_and_records_who_and_why(
    client: TestClient, store: SqlResourceStore
) -> None:
    patient = new_patient(client)
    warfarin = post(client, prescription(patient, WARFARIN)).json()
    body = prescription(
        patient,
        IBUPROFEN,
        requester={"reference": "Practitioner/dr-house", "display": "Dr House"},
        extension=override("short course, INR checked daily"),
    )

    response = post(client, body)

    assert response.status_code == 201, response.text
    saved = response.json()
    [issue_ref] = saved["detectedIssue"]
    issue = client.get(f"/fhir/{issue_ref['reference']}").json()
    assert issue["severity"] == "high"
    assert issue["code"]["coding"][0]["code"] == "DRG"
    implicated = {i["reference"] for i in issue["implicated"]}
    assert implicated == {f"MedicationRequest/{saved['id']}", f"MedicationRequest/{warfarin['id']}"}
    [mitigation] = issue["mitigation"]
    assert mitigation["action"]["text"] == "short course, INR checked daily"
    assert mitigation["author"]["reference"] == "Practitioner/dr-house"
    [audit] = search(client, "AuditEvent")
    assert audit["agent"][0]["who"]["reference"] == "Practitioner/dr-house"
    described = [e.get("description", "") for e in audit["entity"]]
    assert any("INR checked daily" in d for d in described)
    [created] = [e for e in events(store, "prescription.created") if e["overridden"]]
    assert created["medicationRequest"] == f"MedicationRequest/{saved['id']}"
    assert created["overrideReason"] == "short course, INR checked daily"


def test_an_override_without_a_reason_is_400_naming_the_extension(client: TestClient) -> None:
    patient = new_patient(client)
    post(client, prescription(patient, WARFARIN))
    response = post(client, prescription(patient, IBUPROFEN, extension=override(None)))
    assert response.status_code == 400
    assert response.json()["issue"][0]["expression"] == ["MedicationRequest.extension[0]"]


def test_a_penicillin_allergy_recorded_as_text_blocks_amoxicillin(client: TestClient) -> None:
    patient = new_patient(client)
    assert post(client, allergy(patient, "Penicillin")).status_code == 201
    response = post(client, prescription(patient, AMOXICILLIN))
    assert response.status_code == 409
    assert "amoxicillin" in response.json()["issue"][0]["diagnostics"].lower()


def test_a_refuted_allergy_does_not_block(client: TestClient) -> None:
    patient = new_patient(client)
    refuted = {
        "coding": [
            {
                "system": "http://terminology.hl7.org/CodeSystem/allergyintolerance-verification",
                "code": "refuted",
            }
        ]
    }
    post(client, allergy(patient, "Penicillin", verificationStatus=refuted))
    assert post(client, prescription(patient, AMOXICILLIN)).status_code == 201


def test_the_same_drug_twice_is_refused(client: TestClient) -> None:
    patient = new_patient(client)
    post(client, prescription(patient, WARFARIN))
    response = post(client, prescription(patient, WARFARIN))
    assert response.status_code == 409
    assert search(client, "MedicationRequest?status=active") != []
    assert len(search(client, f"MedicationRequest?subject={patient}")) == 1


def test_another_patients_medication_is_not_held_against_this_one(client: TestClient) -> None:
    first, second = new_patient(client), new_patient(client)
    post(client, prescription(first, WARFARIN))
    assert post(client, prescription(second, IBUPROFEN)).status_code == 201


def test_a_stopped_medication_does_not_interact(client: TestClient) -> None:
    patient = new_patient(client)
    post(client, prescription(patient, WARFARIN, status="stopped"))
    assert post(client, prescription(patient, IBUPROFEN)).status_code == 201


def test_history_imported_as_completed_is_stored_unchecked(client: TestClient) -> None:
    patient = new_patient(client)
    post(client, allergy(patient, "Penicillin"))
    response = post(client, prescription(patient, AMOXICILLIN, status="completed"))
    assert response.status_code == 201
    assert "detectedIssue" not in response.json()


# -- warnings that do not block -----------------------------------------------------------


def test_a_cross_reactivity_warning_saves_the_order_and_says_so(client: TestClient) -> None:
    patient = new_patient(client)
    post(client, allergy(patient, "Penicillin"))

    response = post(
        client,
        prescription(patient, CEPHALEXIN),
        Prefer="return=OperationOutcome",
    )

    assert response.status_code == 201
    assert int(response.headers["x-medhub-warnings"]) >= 1
    warnings = [i for i in response.json()["issue"] if i["severity"] in ("warning", "information")]
    assert any("cephalexin" in i["diagnostics"].lower() for i in warnings)
    [issue] = search(client, "DetectedIssue")
    assert issue["severity"] in ("moderate", "low")
    assert issue["code"]["coding"][0]["code"] == "ALGY"


def test_an_unknown_drug_is_saved_with_a_warning_that_it_was_not_checked(
    client: TestClient,
) -> None:
    patient = new_patient(client)
    body = prescription(patient, ("0", "x"))
    body["medicationCodeableConcept"] = {"text": "Grandma's herbal tonic"}
    response = post(client, body, Prefer="return=OperationOutcome")
    assert response.status_code == 201
    assert any(
        "not in the medication knowledge base" in i["diagnostics"] for i in response.json()["issue"]
    )


# -- bundles ------------------------------------------------------------------------------


def transaction(kind: str, *resources: dict[str, Any]) -> dict[str, Any]:
    return {
        "resourceType": "Bundle",
        "type": kind,
        "entry": [
            {
                "fullUrl": f"urn:uuid:00000000-0000-0000-0000-00000000000{i}",
                "resource": r,
                "request": {"method": "POST", "url": r["resourceType"]},
            }
            for i, r in enumerate(resources)
        ],
    }


def test_a_transaction_with_an_allergy_and_a_matching_order_is_refused_whole(
    client: TestClient,
) -> None:
    patient = new_patient(client)
    bundle = transaction(
        "transaction", allergy(patient, "Penicillin"), prescription(patient, AMOXICILLIN)
    )
    response = client.post("/fhir", json=bundle, headers=JSON)
    assert response.status_code == 409
    assert "Bundle.entry[1]" in response.json()["issue"][0]["diagnostics"]
    assert search(client, "AllergyIntolerance") == []


def test_a_batch_refuses_only_the_unsafe_entry(client: TestClient) -> None:
    patient = new_patient(client)
    bundle = transaction("batch", allergy(patient, "Penicillin"))
    assert client.post("/fhir", json=bundle, headers=JSON).status_code == 200
    bundle = transaction(
        "batch", prescription(patient, AMOXICILLIN), prescription(patient, CEPHALEXIN)
    )
    entries = client.post("/fhir", json=bundle, headers=JSON).json()["entry"]
    assert entries[0]["response"]["status"].startswith("409")
    assert entries[1]["response"]["status"].startswith("201")
    assert entries[1]["response"]["outcome"]["issue"][0]["severity"] in ("warning", "information")


# -- the pharmacy --------------------------------------------------------------------------


def test_a_saved_order_is_queued_for_the_pharmacy_and_listed(
    client: TestClient, store: SqlResourceStore
) -> None:
    patient = new_patient(client)
    saved = post(client, prescription(patient, WARFARIN)).json()

    [order] = queued_orders(store)
    assert order.message_type == ("RDE", "O11", "RDE_O11")
    assert order.get("ORC-1") == "NW"
    assert saved["id"] in order.msh.raw(10) or saved["id"] in order.get("ORC-2")
    assert order.get("RXE-2.1") == "11289"
    assert order.get("PID-3.1") == "MRN-77"
    listed = client.get(f"/api/v1/prescriptions/{saved['id']}/orders").json()
    [entry] = listed["orders"]
    assert entry["orderControl"] == "NW" and entry["status"] == "pending"
    assert entry["destination"] == "pharmacy"


def test_cancelling_an_order_sends_a_cancel_and_stopping_one_a_discontinue(
    client: TestClient, store: SqlResourceStore
) -> None:
    patient = new_patient(client)
    first = post(client, prescription(patient, WARFARIN)).json()
    second = post(client, prescription(patient, AMOXICILLIN)).json()

    first["status"] = "cancelled"
    assert (
        client.put(f"/fhir/MedicationRequest/{first['id']}", json=first, headers=JSON).status_code
        == 200
    )
    second["status"] = "stopped"
    assert (
        client.put(f"/fhir/MedicationRequest/{second['id']}", json=second, headers=JSON).status_code
        == 200
    )

    controls = [m.get("ORC-1") for m in queued_orders(store)]
    assert controls == ["NW", "NW", "CA", "DC"]
    assert len(events(store, "prescription.cancelled")) == 2
    # A cancelled warfarin no longer interacts with a new NSAID.
    assert post(client, prescription(patient, IBUPROFEN)).status_code == 201


def test_a_draft_is_checked_but_not_sent_until_activated(
    client: TestClient, store: SqlResourceStore
) -> None:
    patient = new_patient(client)
    draft = post(client, prescription(patient, WARFARIN, status="draft")).json()
    assert queued_orders(store) == []
    draft["status"] = "active"
    client.put(f"/fhir/MedicationRequest/{draft['id']}", json=draft, headers=JSON)
    assert [m.get("ORC-1") for m in queued_orders(store)] == ["NW"]


def test_orders_of_an_unknown_prescription_are_404(client: TestClient) -> None:
    assert client.get("/api/v1/prescriptions/nope/orders").status_code == 404


# -- allergies that arrived by HL7 --------------------------------------------------------


def test_an_allergy_sent_by_hl7_al1_is_checked_by_its_severity(
    client: TestClient, store: SqlResourceStore
) -> None:
    """AL1-4 SV (severe) maps to criticality high and blocks; MO to low and only warns."""
    inbound = inbound_for(store)
    severe = "AL1|1|DA|70618^Penicillin^RXNORM|SV|hives|20200115"
    moderate = "AL1|1|DA|2670^Codeine^RXNORM|MO|nausea|20200115"
    for control_id, mrn, al1 in (("A1", "HL7-1", severe), ("A2", "HL7-2", moderate)):
        message = adt_message("A01", control_id, mrn=mrn, visit=f"V-{mrn}", extra=(al1,))
        outcome = inbound.handle(message, "t")
        assert outcome.ack_code in ("AA", "CA"), outcome
    [first] = search(client, "Patient?identifier=HL7-1")
    [second] = search(client, "Patient?identifier=HL7-2")

    blocked = post(client, prescription(f"Patient/{first['id']}", AMOXICILLIN))
    warned = post(
        client,
        prescription(f"Patient/{second['id']}", ("2670", "codeine")),
        Prefer="return=OperationOutcome",
    )

    assert blocked.status_code == 409
    assert "penicillin" in blocked.json()["issue"][0]["diagnostics"].lower()
    assert warned.status_code == 201
    assert any("codeine" in i["diagnostics"].lower() for i in warned.json()["issue"])
