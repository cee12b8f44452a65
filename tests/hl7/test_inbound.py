"""The inbound HL7 service against a real store: ACK only after commit, nothing lost."""

from __future__ import annotations

import threading
from datetime import UTC, datetime

import pytest
from sqlalchemy import func, select

from medhub.db.engine import make_engine
from medhub.fhir.search import parse_search
from medhub.fhir.sql_store import SqlResourceStore
from medhub.hl7.er7 import parse_er7
from medhub.hl7.inbound import Hl7Inbound
from medhub.hl7.message_log import Hl7MessageRow
from medhub.hl7.sql_units import sql_inbound_units
from tests.builders import adt

SYSTEM = "urn:oid:1.2.840.114350"


def inbound_for(store: SqlResourceStore) -> Hl7Inbound:
    return Hl7Inbound(sql_inbound_units(store), clock=lambda: datetime.now(UTC))


def patients(store: SqlResourceStore, mrn: str = "MRN-1") -> list[dict[str, object]]:
    query = parse_search("Patient", [("identifier", f"{SYSTEM}|{mrn}")])
    with store.unit_of_work() as resources:
        return [r.resource for r in resources.search(query).resources]


def log_rows(store: SqlResourceStore) -> list[Hl7MessageRow]:
    with store.session() as session:
        return list(session.scalars(select(Hl7MessageRow).order_by(Hl7MessageRow.id)))


def ack_segments(ack: bytes | None) -> dict[str, list[str]]:
    assert ack is not None
    message = parse_er7(ack.decode())
    return {s.name: s.fields for s in message.segments}


def test_adt_a01_creates_the_patient_and_acks_aa(store: SqlResourceStore) -> None:
    outcome = inbound_for(store).handle(adt(), "test")
    segments = ack_segments(outcome.ack)
    assert segments["MSA"][1:3] == ["AA", "MSG0001"]
    [patient] = patients(store)
    assert patient["name"] == [{"family": "DOE", "given": ["JANE"]}]
    assert patient["birthDate"] == "1970-05-17"
    assert patient["gender"] == "female"
    [row] = log_rows(store)
    assert (row.status, row.ack_code, row.control_id) == ("accepted", "AA", "MSG0001")
    assert row.raw == adt()


def test_a_resent_message_is_acked_again_but_not_applied_twice(store: SqlResourceStore) -> None:
    inbound = inbound_for(store)
    inbound.handle(adt(), "test")
    again = inbound.handle(adt(), "test")
    assert ack_segments(again.ack)["MSA"][1] == "AA"
    assert again.status == "duplicate"
    [patient] = patients(store)
    assert patient["meta"]["versionId"] == "1"  # type: ignore[index]
    assert [r.status for r in log_rows(store)] == ["accepted", "duplicate"]


def test_a_reused_control_id_with_other_content_is_an_error(store: SqlResourceStore) -> None:
    inbound = inbound_for(store)
    inbound.handle(adt(), "test")
    outcome = inbound.handle(adt(family="ROE"), "test")
    segments = ack_segments(outcome.ack)
    assert segments["MSA"][1] == "AE"
    assert segments["ERR"][2] == "MSH^1^10"
    assert segments["ERR"][3].startswith("205^")
    [patient] = patients(store)
    assert patient["name"][0]["family"] == "DOE"  # type: ignore[index]


def test_the_same_control_id_from_another_sender_is_a_new_message(
    store: SqlResourceStore,
) -> None:
    inbound = inbound_for(store)
    inbound.handle(adt(), "test")
    outcome = inbound.handle(adt(mrn="MRN-2", sender="OtherApp"), "test")
    assert outcome.status == "accepted"
    assert len(patients(store, "MRN-2")) == 1


def test_a08_updates_the_patient_and_keeps_what_it_does_not_carry(
    store: SqlResourceStore,
) -> None:
    inbound = inbound_for(store)
    inbound.handle(adt(), "test")
    update = adt("MSG0002", event="A08", family="DOE-SMITH", birth="")
    assert inbound.handle(update, "test").ack_code == "AA"
    [patient] = patients(store)
    assert patient["name"][0]["family"] == "DOE-SMITH"  # type: ignore[index]
    assert patient["birthDate"] == "1970-05-17"
    assert patient["meta"]["versionId"] == "2"  # type: ignore[index]


def test_identifiers_that_match_two_patients_are_refused(store: SqlResourceStore) -> None:
    inbound = inbound_for(store)
    inbound.handle(adt("M1", mrn="A"), "test")
    inbound.handle(adt("M2", mrn="B"), "test")
    both = adt("M3", mrn="A^^^HOSP&1.2.840.114350&ISO^MR~B")
    outcome = inbound.handle(both, "test")
    segments = ack_segments(outcome.ack)
    assert segments["MSA"][1] == "AE"
    assert segments["ERR"][2] == "PID^1^3"
    assert "more than one Patient" in segments["ERR"][8]


@pytest.mark.parametrize(
    ("raw", "code", "location", "hl7_code", "status"),
    [
        (b"this is not hl7", "AR", "MSH^1", "102", "rejected"),
        (b"MSH|^~\\&|A|B|C|D|20240101||ADT^A01|X1|P\r", "AR", "MSH^1^12", "101", "rejected"),
        (b"MSH|^~\\&|A|B|C|D|20240101|||X1|P|2.5.1\r", "AR", "MSH^1^9", "101", "rejected"),
        (
            b"MSH|^~\\&|A|B|C|D|20240101||ADT^A01|X1|P|2.5.1\r1X|bad\r",
            "AR",
            "^2",
            "102",
            "rejected",
        ),
        (adt(mrn=""), "AE", "PID^1^3", "101", "dead-letter"),
        (adt(birth="notadate"), "AE", "PID^1^7", "102", "dead-letter"),
        (adt(sex="Q"), "AE", "PID^1^8", "103", "dead-letter"),
    ],
)
def test_bad_messages_get_a_precise_refusal_and_are_kept(
    sqlite_store: SqlResourceStore,
    raw: bytes,
    code: str,
    location: str,
    hl7_code: str,
    status: str,
) -> None:
    outcome = inbound_for(sqlite_store).handle(raw, "test")
    segments = ack_segments(outcome.ack)
    assert segments["MSA"][1] == code
    assert segments["ERR"][2] == location
    assert segments["ERR"][3].split("^")[0] == hl7_code
    assert segments["ERR"][4] == "E"
    [row] = log_rows(sqlite_store)
    assert (row.status, row.ack_code, row.raw) == (status, code, raw)
    assert row.error


def test_a_refusal_echoes_msh10_when_it_can_be_read(sqlite_store: SqlResourceStore) -> None:
    outcome = inbound_for(sqlite_store).handle(b"MSH|^~\\&|A|B|C|D|1|||BAD-77|P\r", "test")
    assert ack_segments(outcome.ack)["MSA"][1:3] == ["AR", "BAD-77"]


def test_types_medhub_does_not_map_are_stored_and_acknowledged(
    sqlite_store: SqlResourceStore,
) -> None:
    inbound = inbound_for(sqlite_store)
    outcome = inbound.handle(b"MSH|^~\\&|A|B|C|D|1||ZZZ^Z99|Z-1|P|2.5.1\rZZ1|custom\r", "t")
    assert (outcome.status, outcome.ack_code) == ("stored", "AA")
    again = inbound.handle(b"MSH|^~\\&|A|B|C|D|1||ZZZ^Z99|Z-1|P|2.5.1\rZZ1|custom\r", "t")
    assert again.status == "duplicate"
    assert [r.status for r in log_rows(sqlite_store)] == ["stored", "duplicate"]


def test_enhanced_mode_answers_with_commit_acks(sqlite_store: SqlResourceStore) -> None:
    inbound = inbound_for(sqlite_store)
    assert ack_segments(inbound.handle(adt("E1", msh15="AL"), "t").ack)["MSA"][1] == "CA"
    assert ack_segments(inbound.handle(adt("E2", sex="Q", msh15="AL"), "t").ack)["MSA"][1] == "CE"
    assert inbound.handle(adt("E3", mrn="MRN-3", msh15="ER"), "t").ack is None
    assert inbound.handle(adt("E4", mrn="MRN-4", msh15="NE"), "t").ack is None
    assert len(patients(sqlite_store, "MRN-4")) == 1  # NE: no ACK, still stored


def test_when_the_database_is_down_the_answer_is_ar_never_aa() -> None:
    engine = make_engine("postgresql+psycopg://nobody@127.0.0.1:1/none?connect_timeout=1")
    outcome = inbound_for(SqlResourceStore(engine)).handle(adt(), "test")
    segments = ack_segments(outcome.ack)
    assert segments["MSA"][1] == "AR"
    assert segments["ERR"][3].startswith("207^")


def test_concurrent_copies_of_one_message_apply_once(store: SqlResourceStore) -> None:
    inbound = inbound_for(store)
    codes: list[str] = []

    def send() -> None:
        codes.append(inbound.handle(adt(), "test").ack_code)

    threads = [threading.Thread(target=send) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert codes == ["AA"] * 6
    assert len(patients(store)) == 1
    statuses = sorted(r.status for r in log_rows(store))
    assert statuses == ["accepted"] + ["duplicate"] * 5


def test_every_message_is_logged(store: SqlResourceStore) -> None:
    inbound = inbound_for(store)
    for n in range(10):
        inbound.handle(adt(f"C{n}", mrn=f"M{n % 3}"), "test")
    inbound.handle(b"garbage", "test")
    with store.session() as session:
        assert session.scalar(select(func.count()).select_from(Hl7MessageRow)) == 11


def test_strict_structure_validation_refuses_a_message_missing_a_required_segment(
    sqlite_store: SqlResourceStore,
) -> None:
    strict = Hl7Inbound(
        sql_inbound_units(sqlite_store), clock=lambda: datetime.now(UTC), strict_structure=True
    )
    assert strict.handle(adt("S-1"), "t").ack_code == "AA"
    no_pv1 = adt("S-2").replace(b"PV1|1|I|ICU^101^A\r", b"")
    outcome = strict.handle(no_pv1, "t")
    segments = ack_segments(outcome.ack)
    assert (outcome.status, segments["MSA"][1]) == ("rejected", "AR")
    assert "PV1" in segments["ERR"][8]
    default = inbound_for(sqlite_store).handle(
        adt("S-3", mrn="L").replace(b"PV1|1|I|ICU^101^A\r", b""), "t"
    )
    assert default.status == "dead-letter"  # by default the A01 mapper itself needs PV1: AE
