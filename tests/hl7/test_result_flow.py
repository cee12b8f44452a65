"""Results and orders through the inbound service, on SQLite, PostgreSQL and MariaDB.

Every write goes through ``sql_inbound_units(store, validate=True)`` here, so
each resource the mappers produce is also checked with fhir.resources on its
way into the store: an invalid mapping would be an AE, and these tests assert AA.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import pytest
from sqlalchemy import select

from medhub.db.outbox import OutboxEventRow
from medhub.fhir.search import parse_search
from medhub.fhir.sql_store import SqlResourceStore
from medhub.hl7.er7 import parse_er7
from medhub.hl7.inbound import Hl7Inbound, InboundOutcome
from medhub.hl7.observation_mapping import EUI64_SYSTEM
from medhub.hl7.result_appliers import CRITICAL_TOPIC
from medhub.hl7.sql_units import sql_inbound_units

MDC = "urn:iso:std:iso:11073:10101"
LOINC = "http://loinc.org"
EUI = "01-23-45-67-89-AB-CD-EF"


def inbound_for(store: SqlResourceStore) -> Hl7Inbound:
    return Hl7Inbound(sql_inbound_units(store, validate=True), clock=lambda: datetime.now(UTC))


def seg(*fields: str) -> str:
    return "|".join(fields)


def obx(n: int, value_type: str, code: str, sub: str, value: str, units: str, **more: str) -> str:
    """An OBX; ``more`` sets OBX-7 ref, OBX-8 flags, OBX-11 status, OBX-14 time, OBX-18 device."""
    return seg(
        "OBX", str(n), value_type, code, sub, value, units, more.get("ref", ""),
        more.get("flags", ""), "", "", more.get("status", "F"), "", "", more.get("time", ""),
        "", "", "", more.get("device", ""),
    )  # fmt: skip


def pcd01(control: str, *, spo2: str = "97", status: str = "F", mrn: str = "MRN-42") -> bytes:
    """An IHE PCD-01 ORU^R01: an MDS device OBX, then SpO2 and heart rate metrics."""
    time = "20240301115900+0100"
    segments = [
        f"MSH|^~\\&|GATEWAY|ICU|MEDHUB|HOSP|20240301120000+0100||ORU^R01^ORU_R01|{control}|P|2.6",
        f"PID|1||{mrn}^^^HOSP&1.2.3&ISO^MR||DOE^JOHN||19700101|M",
        "PV1|1|I|ICU^1^A",
        f"OBR|1||MSG-1^GATEWAY|182777000^monitoring of patient^SCT|||{time}",
        obx(1, "", "69965^MDC_DEV_MON_PHYSIO_MULTI_PARAM_MDS^MDC", "1.0.0.0", "", "",
            status="X", device="0123456789ABCDEF^MON^0123456789ABCDEF^EUI-64"),
        obx(2, "NM", "150456^MDC_PULS_OXIM_SAT_O2^MDC", "1.1.1.1", spo2,
            "262688^MDC_DIM_PERCENT^MDC", ref="90-100", status=status, time=time),
        obx(3, "NM", "147842^MDC_ECG_HEART_RATE^MDC", "1.1.1.2", "85",
            "264864^MDC_DIM_BEAT_PER_MIN^MDC", time=time),
    ]  # fmt: skip
    return ("\r".join(segments) + "\r").encode()


def lab(control: str, *extra_obx: str, potassium: str = "6.9", flags: str = "HH") -> bytes:
    segments = [
        f"MSH|^~\\&|LIS|LAB|MEDHUB|HOSP|20240301100000+0100||ORU^R01^ORU_R01|{control}|P|2.5.1",
        "PID|1||MRN-42^^^HOSP&1.2.3&ISO^MR||DOE^JOHN||19700101|M",
        "OBR|1|PLC-7^CPOE|FIL-7^LIS|24320-4^Basic metabolic panel^LN|||20240301093000+0100"
        + "|" * 18
        + "F",
        obx(1, "NM", "2823-3^Potassium^LN", "", potassium, "mmol/L^^UCUM",
            ref="3.5-5.1", flags=flags),
        *extra_obx,
    ]  # fmt: skip
    return ("\r".join(segments) + "\r").encode()


def order(control: str, order_control: str, placer: str = "ORD-1") -> bytes:
    segments = [
        f"MSH|^~\\&|CPOE|WARD|LIS|LAB|20240301090000+0100||ORM^O01^ORM_O01|{control}|P|2.5.1",
        "PID|1||MRN-42^^^HOSP&1.2.3&ISO^MR||DOE^JOHN||19700101|M",
        f"ORC|{order_control}|{placer}^CPOE|||||||20240301085500+0100|||77^WELBY^MARCUS^^^DR",
        "OBR|1|||2823-3^Potassium^LN",
    ]
    return ("\r".join(segments) + "\r").encode()


def search(store: SqlResourceStore, resource_type: str, *params: tuple[str, str]) -> list[Any]:
    with store.unit_of_work() as resources:
        found = resources.search(parse_search(resource_type, list(params))).resources
        return [r.resource for r in found]


def events(store: SqlResourceStore) -> list[OutboxEventRow]:
    with store.session() as session:
        rows = list(session.scalars(select(OutboxEventRow).order_by(OutboxEventRow.id)))
        session.expunge_all()
        return rows


def err_segment(outcome: InboundOutcome) -> list[str]:
    assert outcome.ack is not None
    [err] = [s for s in parse_er7(outcome.ack.decode()).segments if s.name == "ERR"]
    return err.fields


# -- device data --------------------------------------------------------------------------


def test_pcd01_creates_patient_device_and_observations_searchable_by_code_and_subject(
    store: SqlResourceStore,
) -> None:
    outcome = inbound_for(store).handle(pcd01("P1"), "gw")
    assert (outcome.status, outcome.ack_code) == ("accepted", "AA")
    [patient] = search(store, "Patient", ("identifier", "urn:oid:1.2.3|MRN-42"))
    [device] = search(store, "Device", ("identifier", f"{EUI64_SYSTEM}|{EUI}"))
    assert device["type"]["coding"][0]["code"] == "69965"
    assert device["patient"] == {"reference": f"Patient/{patient['id']}"}
    subject = ("subject", f"Patient/{patient['id']}")
    by_loinc = search(store, "Observation", ("code", f"{LOINC}|2708-6"), subject)
    by_mdc = search(store, "Observation", ("code", f"{MDC}|150456"), subject)
    assert [o["id"] for o in by_loinc] == [o["id"] for o in by_mdc]
    [spo2] = by_mdc
    assert spo2["valueQuantity"]["value"] == 97
    assert spo2["valueQuantity"]["code"] == "%"
    assert spo2["device"] == {"reference": f"Device/{device['id']}"}
    assert spo2["effectiveDateTime"] == "2024-03-01T11:59:00+01:00"
    assert len(search(store, "Observation", subject)) == 2  # the device OBX is no Observation
    assert search(store, "Observation", ("category", "vital-signs"), ("code", "8867-4"))


def test_a_corrected_result_updates_the_same_observation(store: SqlResourceStore) -> None:
    inbound = inbound_for(store)
    assert inbound.handle(pcd01("P1"), "gw").ack_code == "AA"
    [before] = search(store, "Observation", ("code", f"{MDC}|150456"))
    corrected = inbound.handle(pcd01("P2", spo2="93", status="C"), "gw")
    assert corrected.ack_code == "AA"
    [after] = search(store, "Observation", ("code", f"{MDC}|150456"))
    assert after["id"] == before["id"]
    assert (after["status"], after["valueQuantity"]["value"]) == ("corrected", 93)
    assert after["meta"]["versionId"] == "2"
    [heart] = search(store, "Observation", ("code", f"{MDC}|147842"))
    assert heart["meta"]["versionId"] == "1"  # unchanged OBX: no new version
    assert len(search(store, "Device")) == 1
    assert len(search(store, "Patient")) == 1


def test_a_status_only_update_keeps_the_stored_value(sqlite_store: SqlResourceStore) -> None:
    inbound = inbound_for(sqlite_store)
    inbound.handle(pcd01("P1", status="P"), "gw")
    assert inbound.handle(pcd01("P2", spo2="", status="U"), "gw").ack_code == "AA"
    [spo2] = search(sqlite_store, "Observation", ("code", f"{MDC}|150456"))
    assert (spo2["status"], spo2["valueQuantity"]["value"]) == ("final", 97)


def test_a_filler_number_reused_for_another_patient_is_refused(store: SqlResourceStore) -> None:
    inbound = inbound_for(store)
    inbound.handle(pcd01("P1"), "gw")
    outcome = inbound.handle(pcd01("P2", mrn="MRN-99"), "gw")
    assert outcome.ack_code == "AE"
    assert err_segment(outcome)[2:4] == ["OBR^1^3", "205^Duplicate key identifier^HL70357"]
    assert len(search(store, "Observation")) == 2


# -- critical results ------------------------------------------------------------------------


def test_a_critical_result_leaves_an_outbox_event_committed_with_it(
    store: SqlResourceStore,
) -> None:
    inbound = inbound_for(store)
    assert inbound.handle(lab("L1"), "lis").ack_code == "AA"
    [potassium] = search(store, "Observation", ("code", f"{LOINC}|2823-3"))
    [patient] = search(store, "Patient")
    [event] = events(store)
    assert (event.topic, event.routing_key, event.status) == (
        CRITICAL_TOPIC,
        CRITICAL_TOPIC,
        "pending",
    )
    payload = orjson.loads(event.payload)
    assert payload == {
        "observation_id": potassium["id"],
        "patient_id": patient["id"],
        "code": {"system": LOINC, "code": "2823-3", "display": "Potassium"},
        "value": 6.9,
        "unit": "mmol/L",
        "flag": "HH",
        "status": "final",
        "effective": "2024-03-01T09:30:00+01:00",
    }
    [report] = search(store, "DiagnosticReport", ("identifier", "FIL-7"))
    assert report["result"] == [{"reference": f"Observation/{potassium['id']}"}]
    # The same result resent under a new control id changes nothing: no second alert.
    assert inbound.handle(lab("L2"), "lis").ack_code == "AA"
    assert len(events(store)) == 1


def test_a_message_that_fails_leaves_neither_result_nor_event(store: SqlResourceStore) -> None:
    bad = obx(2, "NM", "2951-2^Sodium^LN", "", "high", "mmol/L")
    outcome = inbound_for(store).handle(lab("L1", bad), "lis")
    assert (outcome.status, outcome.ack_code) == ("dead-letter", "AE")
    assert err_segment(outcome)[2:4] == ["OBX^2^5", "102^Data type error^HL70357"]
    assert search(store, "Observation") == []
    assert events(store) == []


def test_a_normal_result_raises_no_event(sqlite_store: SqlResourceStore) -> None:
    outcome = inbound_for(sqlite_store).handle(lab("L1", potassium="4.2", flags="N"), "lis")
    assert outcome.status == "accepted"
    assert events(sqlite_store) == []


# -- orders -------------------------------------------------------------------------------


def test_an_order_then_its_cancel_revokes_the_same_service_request(
    store: SqlResourceStore,
) -> None:
    inbound = inbound_for(store)
    assert inbound.handle(order("O1", "NW"), "cpoe").ack_code == "AA"
    [created] = search(store, "ServiceRequest", ("identifier", "ORD-1"))
    assert created["status"] == "active"
    [practitioner] = search(store, "Practitioner")
    assert created["requester"]["reference"] == f"Practitioner/{practitioner['id']}"
    assert inbound.handle(order("O2", "NW"), "cpoe").ack_code == "AA"  # resent: no duplicate
    assert inbound.handle(order("O3", "CA"), "cpoe").ack_code == "AA"
    [cancelled] = search(store, "ServiceRequest")
    assert cancelled["id"] == created["id"]
    assert cancelled["status"] == "revoked"
    assert cancelled["code"] == created["code"]
    assert cancelled["meta"]["versionId"] == "2"
    assert len(search(store, "Practitioner")) == 1


def test_cancelling_an_unknown_order_is_an_error(store: SqlResourceStore) -> None:
    outcome = inbound_for(store).handle(order("O1", "CA", placer="NOPE"), "cpoe")
    assert outcome.ack_code == "AE"
    assert err_segment(outcome)[2:4] == ["ORC^1^2", "204^Unknown key identifier^HL70357"]
    assert search(store, "ServiceRequest") == []


def test_a_cancel_without_detail_finds_and_cancels_a_medication_order(
    sqlite_store: SqlResourceStore,
) -> None:
    inbound = inbound_for(sqlite_store)
    rxo = "RXO|00047040230^Ampicillin 250 mg caps^NDC|2||caps^capsule"
    new = order("M1", "NW", placer="RX-1").replace(b"OBR|1|||2823-3^Potassium^LN", rxo.encode())
    assert inbound.handle(new, "cpoe").ack_code == "AA"
    cancel = order("M2", "CA", placer="RX-1").replace(b"OBR|1|||2823-3^Potassium^LN\r", b"")
    assert inbound.handle(cancel, "cpoe").ack_code == "AA"
    [request] = search(sqlite_store, "MedicationRequest")
    assert (request["status"], request["meta"]["versionId"]) == ("cancelled", "2")
    assert request["medicationCodeableConcept"]["coding"][0]["code"] == "00047040230"
    assert search(sqlite_store, "ServiceRequest") == []


# -- the corpus ---------------------------------------------------------------------------

EXPECTED = {
    "bench/oru_pcd01_7seg.hl7": ("AA", None),
    "hl7/ORU-R01-RMGEAD.hl7": ("AA", None),
    "hl7/LAB-ORU-1.hl7": ("AA", None),
    "hl7/LRI_2.0-NG_CBC_Typ_Message.hl7": ("AA", None),
    "hl7/ORM-O01-01.hl7": ("AA", None),
    "hl7/ORM-O01-03.hl7": ("AA", None),
    "hl7/ORM-O01-04.hl7": ("AA", None),
    "hl7/ORM-O01-05.hl7": ("AA", None),
    "hl7/ORM-O01-06.hl7": ("AA", None),
    "hl7/OML-O21-01.hl7": ("AA", None),
    "hl7/LAB-ORM-1.hl7": ("AA", None),
    # An ED OBX without OBX-3: there is nothing to say what the observation is.
    "hl7/ORU-R01-01.hl7": ("AE", ("OBX^2^3", "101")),
    # Status updates (ORC-1 SC) with neither placer nor filler number: no order to update.
    "hl7/OML-O21-03.hl7": ("AE", ("ORC^1^2", "101")),
    # The GT1 line runs into "ORC|NW|…" (a lost segment end), so OBR has no ORC.
    "hl7/MDHHS-OML-O21-1.hl7": ("AE", ("OBR^1", "100")),
}
COUNTS = {
    "bench/oru_pcd01_7seg.hl7": {"Observation": 3, "Device": 1},
    "hl7/LAB-ORU-1.hl7": {"Observation": 10, "DiagnosticReport": 2},
    "hl7/LRI_2.0-NG_CBC_Typ_Message.hl7": {"Observation": 28, "DiagnosticReport": 1},
    "hl7/ORM-O01-03.hl7": {"ServiceRequest": 2, "Practitioner": 1},
    "hl7/ORM-O01-06.hl7": {"MedicationRequest": 1},
}


def test_the_expectations_cover_every_result_and_order_message_of_the_corpus(
    corpus: Path,
) -> None:
    names = {
        f"hl7/{p.name}"
        for p in (corpus / "hl7").glob("*.hl7")
        if p.name.startswith(("ORU", "ORM", "OML", "LAB-OR", "LRI", "MDHHS-OML"))
    }
    assert names | {"bench/oru_pcd01_7seg.hl7"} == set(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_each_corpus_result_or_order_is_acked_as_expected(
    store: SqlResourceStore, corpus: Path, name: str
) -> None:
    code, err = EXPECTED[name]
    outcome = inbound_for(store).handle((corpus / name).read_bytes(), "corpus")
    assert outcome.ack_code == code, outcome.error
    if err is None:
        assert outcome.status == "accepted"
        for resource_type, count in COUNTS.get(name, {}).items():
            assert len(search(store, resource_type, ("_count", "100"))) == count
    else:
        fields = err_segment(outcome)
        assert (fields[2], fields[3].split("^")[0]) == err
        assert outcome.status == "dead-letter"
        assert search(store, "Patient") == []  # nothing of a refused message is kept
    if name.endswith("LRI_2.0-NG_CBC_Typ_Message.hl7"):
        assert sorted(orjson.loads(e.payload)["flag"] for e in events(store)) == ["HH"] * 4
