"""Prescribing through ``medhub serve``: a safe order reaches a real MLLP pharmacy and is
shown as acknowledged; an unsafe one is refused and never sent; a cancel follows the order.

The pharmacy is a loopback MLLP listener that ACKs AA, configured the way an operator
would, through the environment.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest

from medhub.cds.medication_knowledge import load_default_knowledge
from medhub.config import Hl7DestinationSettings, PrescribingSettings, Settings
from medhub.db.engine import make_engine
from medhub.fhir.sql_store import SqlResourceStore
from medhub.hl7.er7 import parse_er7
from medhub.hl7.outbound_queue import list_messages
from medhub.migrations import upgrade
from medhub.wiring_prescribing import hooked_api_store
from tests.test_outbound_end_to_end import Partner
from tests.test_serve_end_to_end import Server

pytestmark = pytest.mark.slow
RXNORM = "http://www.nlm.nih.gov/research/umls/rxnorm"


def send(server: Server, method: str, path: str, body: dict[str, Any]) -> tuple[int, Any]:
    return server.send(method, path, body)


def order(patient: str, code: str, name: str) -> dict[str, Any]:
    return {
        "resourceType": "MedicationRequest",
        "status": "active",
        "intent": "order",
        "subject": {"reference": patient},
        "medicationCodeableConcept": {"coding": [{"system": RXNORM, "code": code}], "text": name},
        "dosageInstruction": [
            {
                "timing": {"repeat": {"frequency": 1, "period": 1, "periodUnit": "d"}},
                "route": {"coding": [{"system": "http://snomed.info/sct", "code": "26643006"}]},
                "doseAndRate": [{"doseQuantity": {"value": 5, "unit": "mg", "code": "mg"}}],
            }
        ],
    }


def wait_for(predicate: Any, seconds: float = 30) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and not predicate():
        time.sleep(0.1)


def test_orders_reach_the_pharmacy_and_an_unsafe_one_never_does(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pharmacy = Partner()
    monkeypatch.setenv(
        "MEDHUB_HL7_DESTINATIONS",
        json.dumps([{"name": "pharmacy", "host": "127.0.0.1", "port": pharmacy.port}]),
    )
    monkeypatch.setenv("MEDHUB_PRESCRIBING__PHARMACY_DESTINATION", "pharmacy")
    monkeypatch.setenv("MEDHUB_MLLP__ENABLED", "false")
    server = Server(tmp_path)
    server.start()
    try:
        status, patient = send(
            server,
            "POST",
            "/fhir/Patient",
            {
                "resourceType": "Patient",
                "identifier": [{"system": "urn:oid:1.2.3", "value": "MRN-9"}],
                "name": [{"family": "Bianchi", "given": ["Luca"]}],
            },
        )
        assert status == 201
        subject = f"Patient/{patient['id']}"
        status, warfarin = send(
            server, "POST", "/fhir/MedicationRequest", order(subject, "11289", "warfarin")
        )
        assert status == 201, warfarin

        wait_for(lambda: len(pharmacy.received) == 1)
        assert len(pharmacy.received) == 1
        orders_path = f"/api/v1/prescriptions/{warfarin['id']}/orders"
        wait_for(lambda: server.get(orders_path)[1]["orders"][0]["status"] == "sent")
        [sent] = server.get(orders_path)[1]["orders"]
        assert (sent["orderControl"], sent["status"], sent["ackCode"]) == ("NW", "sent", "AA")
        assert sent["controlId"] == pharmacy.received[0]

        status, refused = send(
            server, "POST", "/fhir/MedicationRequest", order(subject, "5640", "ibuprofen")
        )
        assert status == 409
        assert refused["resourceType"] == "OperationOutcome"

        warfarin["status"] = "cancelled"
        status, _ = send(server, "PUT", f"/fhir/MedicationRequest/{warfarin['id']}", warfarin)
        assert status == 200
        wait_for(lambda: len(pharmacy.received) == 2)
        time.sleep(0.5)  # anything the refused order might have sent would be here by now
        assert len(pharmacy.received) == 2
        controls = [o["orderControl"] for o in server.get(orders_path)[1]["orders"]]
        assert controls == ["NW", "CA"]
    finally:
        server.stop()
        pharmacy.close()


def test_an_older_pharmacy_gets_the_order_and_its_cancel_as_orm_o01(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'm.db'}")
    upgrade(engine)
    store = SqlResourceStore(engine)
    settings = Settings(
        hl7_destinations=[Hl7DestinationSettings(name="rx", host="127.0.0.1", port=1)],
        prescribing=PrescribingSettings(pharmacy_destination="rx", pharmacy_message_type="ORM^O01"),
    )
    hooked = hooked_api_store(settings, store, load_default_knowledge())
    with hooked.unit_of_work() as resources:
        resources.update(
            "Patient",
            "p1",
            {
                "resourceType": "Patient",
                "id": "p1",
                "identifier": [{"value": "M1"}],
                "name": [{"family": "X"}],
            },
        )
        saved = resources.create(order("Patient/p1", "11289", "warfarin"))
    body = dict(saved.resource, status="cancelled")
    with hooked.unit_of_work() as resources:
        resources.update("MedicationRequest", saved.id, body)
    with store.session() as session:
        messages = [parse_er7(m.message.decode()) for m in list_messages(session, destination="rx")]
    assert [m.message_type[:2] for m in messages] == [("ORM", "O01"), ("ORM", "O01")]
    assert [m.get("ORC-1") for m in messages] == ["NW", "CA"]
    engine.dispose()
