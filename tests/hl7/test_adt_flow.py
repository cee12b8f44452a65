"""ADT messages through the inbound service into a real store (SQLite, PostgreSQL, MariaDB).

What an EHR pointed at medhub should see: one Encounter per visit that follows
admit, transfer and discharge; cancellations that undo; re-sent allergies and
diagnoses that do not pile up; merged patients whose data follows the survivor;
and an AE naming the field when a message cannot be used.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from medhub.clinical.resources import RESOURCE_TYPES, validate_resource
from medhub.fhir.search import SearchQuery, parse_search
from medhub.fhir.sql_store import SqlResourceStore
from medhub.hl7.batch import split_batch
from medhub.hl7.dispatch import applier_for
from medhub.hl7.er7 import decode_er7, parse_er7
from medhub.hl7.inbound import Hl7Inbound, InboundOutcome
from medhub.hl7.sql_units import sql_inbound_units
from tests.conftest import CORPUS

AUTHORITY = "GHH&1.2.840.99&ISO"
SYSTEM = "urn:oid:1.2.840.99"


def inbound_for(store: SqlResourceStore) -> Hl7Inbound:
    return Hl7Inbound(
        sql_inbound_units(store), clock=lambda: datetime(2024, 3, 10, 12, 0, tzinfo=UTC)
    )


def seg(name: str, **fields: str) -> str:
    values = {int(k[1:]): v for k, v in fields.items()}
    return f"{name}|" + "|".join(values.get(n, "") for n in range(1, max(values) + 1))


def adt(
    event: str,
    control_id: str,
    *,
    mrn: str = "MRN-1",
    visit: str = "V-100",
    bed: str = "ICU^101^A^GHH",
    when: str = "20240301090000+0100",
    pv1: dict[str, str] | None = None,
    extra: tuple[str, ...] = (),
) -> bytes:
    """An ADT message for one patient and visit (CR segment ends, as on the wire)."""
    fields = {"f1": "1", "f2": "I", "f3": bed, "f7": f"D1^WELBY^MARCUS^^^DR^^^{AUTHORITY}"}
    if visit:
        fields["f19"] = f"{visit}^^^{AUTHORITY}^VN"
    fields.update(pv1 or {})
    segments = [
        f"MSH|^~\\&|EHR|GHH|MEDHUB|GHH|{when}||ADT^{event}^ADT_A01|{control_id}|P|2.5.1",
        f"EVN|{event}|{when}",
        f"PID|1||{mrn}^^^{AUTHORITY}^MR||DOE^JANE||19700517|F",
        seg("PV1", **fields),
        *extra,
    ]
    return ("\r".join(segments) + "\r").encode()


def merge(control_id: str, survivor: str, prior: str) -> bytes:
    segments = [
        f"MSH|^~\\&|EHR|GHH|MEDHUB|GHH|20240305090000+0100||ADT^A40^ADT_A39|{control_id}|P|2.5.1",
        "EVN|A40|20240305090000+0100",
        f"PID|1||{survivor}^^^{AUTHORITY}^MR||DOE^JANE||19700517|F",
        f"MRG|{prior}^^^{AUTHORITY}^MR",
    ]
    return ("\r".join(segments) + "\r").encode()


def search(store: SqlResourceStore, resource_type: str, *params: tuple[str, str]) -> list[Any]:
    with store.unit_of_work() as resources:
        found = resources.search(parse_search(resource_type, [*params, ("_count", "1000")]))
        return [r.resource for r in found.resources]


def patient(store: SqlResourceStore, mrn: str) -> dict[str, Any]:
    [found] = search(store, "Patient", ("identifier", f"{SYSTEM}|{mrn}"))
    return found


def accepted(outcome: InboundOutcome) -> InboundOutcome:
    assert (outcome.ack_code, outcome.status) == ("AA", "accepted"), outcome.error
    return outcome


def err_segment(outcome: InboundOutcome) -> list[str]:
    assert outcome.ack is not None
    ack = parse_er7(outcome.ack.decode())
    msa, err = ack.segment("MSA"), ack.segment("ERR")
    assert msa is not None and err is not None
    assert msa.value(1) == "AE"
    return err.fields


def test_admit_transfer_discharge_is_one_encounter_with_its_location_history(
    store: SqlResourceStore,
) -> None:
    inbound = inbound_for(store)
    admit_time = {"f44": "20240301083000+0100"}
    accepted(inbound.handle(adt("A01", "M1", pv1=admit_time), "t"))
    accepted(inbound.handle(adt("A02", "M2", bed="WARD^7^B^GHH", when="20240302100000+0100"), "t"))
    accepted(inbound.handle(adt("A03", "M3", bed="WARD^7^B^GHH", when="20240304160000+0100"), "t"))

    [encounter] = search(store, "Encounter")
    assert encounter["status"] == "finished"
    assert encounter["period"] == {
        "start": "2024-03-01T08:30:00+01:00",
        "end": "2024-03-04T16:00:00+01:00",
    }
    assert encounter["subject"]["reference"] == f"Patient/{patient(store, 'MRN-1')['id']}"
    history = [(e["location"]["display"], e["status"], e["period"]) for e in encounter["location"]]
    assert history == [
        (
            "GHH, ICU, 101, A",
            "completed",
            {"start": "2024-03-01T08:30:00+01:00", "end": "2024-03-02T10:00:00+01:00"},
        ),
        (
            "GHH, WARD, 7, B",
            "completed",
            {"start": "2024-03-02T10:00:00+01:00", "end": "2024-03-04T16:00:00+01:00"},
        ),
    ]
    assert [h["status"] for h in encounter["statusHistory"]] == ["in-progress", "finished"]
    # the bed is a Location inside the room, inside the ward, inside the facility
    bed_id = encounter["location"][0]["location"]["reference"].removeprefix("Location/")
    chain = []
    locations = {loc["id"]: loc for loc in search(store, "Location")}
    node: dict[str, Any] | None = locations[bed_id]
    while node is not None:
        chain.append(node["name"])
        parent = node.get("partOf", {}).get("reference", "").removeprefix("Location/")
        node = locations.get(parent)
    assert chain == ["A", "101", "ICU", "GHH"]
    assert len(locations) == 7  # GHH is shared by both beds
    [doctor] = search(store, "Practitioner")
    assert doctor["name"] == [{"family": "WELBY", "given": ["MARCUS"], "prefix": ["DR"]}]
    assert encounter["participant"][0]["individual"]["reference"] == f"Practitioner/{doctor['id']}"


def test_a11_cancels_the_admission(store: SqlResourceStore) -> None:
    inbound = inbound_for(store)
    accepted(inbound.handle(adt("A01", "M1"), "t"))
    accepted(inbound.handle(adt("A11", "M2", when="20240301100000+0100"), "t"))
    [encounter] = search(store, "Encounter")
    assert encounter["status"] == "cancelled"
    assert [e["status"] for e in encounter["location"]] == ["completed"]
    assert search(store, "Encounter", ("status", "in-progress")) == []


def test_a12_and_a13_undo_a_transfer_and_a_discharge(store: SqlResourceStore) -> None:
    inbound = inbound_for(store)
    accepted(inbound.handle(adt("A01", "M1"), "t"))
    accepted(inbound.handle(adt("A02", "M2", bed="WARD^7^B^GHH"), "t"))
    accepted(inbound.handle(adt("A12", "M3", pv1={"f6": "WARD^7^B^GHH"}), "t"))
    [encounter] = search(store, "Encounter")
    assert [(e["location"]["display"], e["status"]) for e in encounter["location"]] == [
        ("GHH, ICU, 101, A", "active")
    ]
    accepted(inbound.handle(adt("A03", "M4"), "t"))
    accepted(inbound.handle(adt("A13", "M5"), "t"))
    [encounter] = search(store, "Encounter")
    assert encounter["status"] == "in-progress"
    assert "end" not in encounter.get("period", {})
    assert [e["status"] for e in encounter["location"]] == ["active"]


def test_a_visit_without_a_visit_number_is_the_patients_current_one(
    store: SqlResourceStore,
) -> None:
    inbound = inbound_for(store)
    accepted(inbound.handle(adt("A01", "M1", visit=""), "t"))
    accepted(inbound.handle(adt("A08", "M2", visit="", pv1={"f10": "MED"}), "t"))
    accepted(inbound.handle(adt("A03", "M3", visit=""), "t"))
    [encounter] = search(store, "Encounter")
    assert encounter["status"] == "finished"
    assert encounter["serviceType"]["coding"][0]["code"] == "MED"
    accepted(inbound.handle(adt("A01", "M4", visit=""), "t"))  # a new stay after discharge
    statuses = sorted(e["status"] for e in search(store, "Encounter"))
    assert statuses == ["finished", "in-progress"]


ALLERGY = "AL1|1|DA|70618^Penicillin^RXNORM|MO|hives|20200115"
DIAGNOSIS = "DG1|1|I10|J18.9^Pneumonia^I10|Pneumonia|20240301101500+0100|A"


def test_a_resent_a08_does_not_duplicate_allergies_or_diagnoses(store: SqlResourceStore) -> None:
    inbound = inbound_for(store)
    accepted(inbound.handle(adt("A01", "M1", extra=(ALLERGY, DIAGNOSIS)), "t"))
    accepted(inbound.handle(adt("A08", "M2", extra=(ALLERGY, DIAGNOSIS)), "t"))
    severe = ALLERGY.replace("|MO|", "|SV|")
    latex = "AL1|2|EA|LATEX||rash"
    accepted(inbound.handle(adt("A08", "M3", extra=(severe, latex, DIAGNOSIS)), "t"))

    allergies = search(store, "AllergyIntolerance")
    assert sorted(a["code"].get("text", a["code"]["coding"][0]["code"]) for a in allergies) == [
        "70618",
        "LATEX",
    ]
    [penicillin] = [a for a in allergies if a["code"]["coding"][0]["code"] == "70618"]
    assert penicillin["criticality"] == "high"  # updated in place by the third message
    assert penicillin["meta"]["versionId"] == "2"  # the identical resend wrote nothing
    [condition] = search(store, "Condition")
    assert condition["meta"]["versionId"] == "1"
    [encounter] = search(store, "Encounter")
    assert condition["encounter"]["reference"] == f"Encounter/{encounter['id']}"
    assert encounter["meta"]["versionId"] == "1"


def test_a40_moves_the_prior_patients_data_to_the_survivor(store: SqlResourceStore) -> None:
    inbound = inbound_for(store)
    accepted(inbound.handle(adt("A01", "M1", mrn="OLD-7", extra=(ALLERGY, DIAGNOSIS)), "t"))
    accepted(inbound.handle(adt("A04", "M2", mrn="NEW-1", visit="V-200"), "t"))
    prior_id = patient(store, "OLD-7")["id"]
    accepted(inbound.handle(merge("M3", survivor="NEW-1", prior="OLD-7"), "t"))

    survivor = patient(store, "NEW-1")
    assert patient(store, "OLD-7")["id"] == survivor["id"]  # the old MRN finds the survivor
    [old] = [i for i in survivor["identifier"] if i["value"] == "OLD-7"]
    assert (old["system"], old["use"]) == (SYSTEM, "old")
    assert survivor["link"] == [{"other": {"reference": f"Patient/{prior_id}"}, "type": "replaces"}]
    [prior] = search(store, "Patient", ("_id", prior_id))
    assert prior["active"] is False
    assert prior["link"] == [
        {"other": {"reference": f"Patient/{survivor['id']}"}, "type": "replaced-by"}
    ]
    subject = f"Patient/{survivor['id']}"
    assert len(search(store, "Encounter", ("subject", subject))) == 2
    assert search(store, "Encounter", ("subject", f"Patient/{prior_id}")) == []
    assert len(search(store, "AllergyIntolerance", ("patient", subject))) == 1
    assert len(search(store, "Condition", ("subject", subject))) == 1

    # the sender still uses the old MRN for the old visit: it is the survivor's, no conflict
    accepted(inbound.handle(adt("A03", "M4", mrn="OLD-7", extra=(ALLERGY,)), "t"))
    [visit] = search(store, "Encounter", ("identifier", f"{SYSTEM}|V-100"))
    assert (visit["status"], visit["subject"]["reference"]) == ("finished", subject)
    assert len(search(store, "AllergyIntolerance")) == 1
    accepted(inbound.handle(merge("M5", survivor="NEW-1", prior="OLD-7"), "t"))  # resent
    assert patient(store, "NEW-1")["meta"]["versionId"] == survivor["meta"]["versionId"]


def test_a40_with_an_unknown_prior_records_its_identifier(store: SqlResourceStore) -> None:
    accepted(inbound_for(store).handle(merge("M1", survivor="NEW-1", prior="GONE-3"), "t"))
    survivor = patient(store, "NEW-1")
    assert [(i["value"], i.get("use")) for i in survivor["identifier"]] == [
        ("NEW-1", None),
        ("GONE-3", "old"),
    ]
    assert "link" not in survivor


def test_unusable_adt_messages_are_answered_ae_with_the_field_and_store_nothing(
    store: SqlResourceStore,
) -> None:
    inbound = inbound_for(store)
    no_mrg = merge("M1", survivor="NEW-1", prior="X").replace(
        b"MRG|X^^^GHH&1.2.840.99&ISO^MR\r", b""
    )
    err = err_segment(inbound.handle(no_mrg, "t"))
    assert (err[2], err[3].split("^")[0]) == ("MRG^1", "100")
    err = err_segment(inbound.handle(adt("A01", "M2", bed="^^^^^C^^^note only"), "t"))
    assert (err[2], err[3].split("^")[0]) == ("PV1^1^3", "102")
    err = err_segment(inbound.handle(adt("A01", "M3", pv1={"f2": ""}), "t"))
    assert (err[2], err[3].split("^")[0]) == ("PV1^1^2", "101")
    err = err_segment(inbound.handle(adt("A01", "M4", extra=("AL1|1|DA||SV",)), "t"))
    assert (err[2], err[3].split("^")[0]) == ("AL1^1^3", "101")
    for resource_type in ("Patient", "Encounter", "Location", "Practitioner"):
        assert search(store, resource_type) == []


def test_every_corpus_adt_message_is_acknowledged_and_every_stored_resource_is_valid(
    store: SqlResourceStore,
) -> None:
    """All ADT files into one store, in order, as one feed (MSH-10 made unique: the corpus
    reuses ``MSG00001`` for different messages, which a live interface answers AE)."""
    inbound = inbound_for(store)
    paths = sorted([*CORPUS.glob("hl7/ADT-*.hl7"), *CORPUS.glob("hl7/ADT0*.hl7")])
    statuses = {}
    for n, path in enumerate(paths):
        for raw in split_batch(path.read_bytes()).messages:
            fields = raw.split(b"|")
            fields[9] = f"CORPUS-{n}".encode()
            message = b"|".join(fields)
            outcome = inbound.handle(message, "corpus")
            mapped = applier_for(parse_er7(decode_er7(message))) is not None
            assert (outcome.ack_code, outcome.status) == (
                "AA",
                "accepted" if mapped else "stored",
            ), (path.name, outcome.error)
            statuses[path.name] = outcome.status
    assert sum(s == "accepted" for s in statuses.values()) == 16
    counts = {}
    with store.unit_of_work() as resources:
        for resource_type in sorted(RESOURCE_TYPES):
            found = resources.search(SearchQuery(resource_type, count=1000)).resources
            for stored in found:
                validate_resource(stored.resource)
            counts[resource_type] = len(found)
    assert counts["Encounter"] == 5 and counts["Patient"] == 6
    assert counts["AllergyIntolerance"] == 1 and counts["Condition"] == 2
    # ADT-A01 ... ADT-A13 all name visit 40007716 of one sender: one Encounter
    [visit] = search(
        store, "Encounter", ("identifier", "urn:medhub:assigning-authority:AccMng|40007716")
    )
    assert [h["status"] for h in visit["statusHistory"]][:6] == [
        "in-progress",
        "finished",
        "arrived",
        "planned",
        "cancelled",
        "in-progress",
    ]
