"""ADT -> FHIR mapping, pure: every mapper's output is valid FHIR R4, value by value.

Mapped resources skip ``fhir.resources`` validation on the ingest path, so this
file is the proof that they are valid: every ADT message of the shared corpus
and every hand-built message here goes through each mapper, and the result
through :func:`validate_resource`.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from medhub.clinical.resources import validate_resource
from medhub.errors import Hl7Location, InputError, MedhubError, MissingDataError
from medhub.hl7.clinical_mapping import al1_allergy, dg1_condition, merge_condition, same_code
from medhub.hl7.datatype_mapping import (
    LOCAL_CODING_SYSTEM_PREFIX,
    coding_system,
    cx_identifiers,
    fhir_datetime,
)
from medhub.hl7.encounter_mapping import MappedVisit, map_visit
from medhub.hl7.encounter_state import next_encounter
from medhub.hl7.er7 import Message, decode_er7, parse_er7
from medhub.hl7.location_mapping import LOCATION_SYSTEM, pl_locations
from medhub.hl7.patient_mapping import pid_to_patient
from medhub.hl7.patient_merge import merge_pairs
from medhub.hl7.practitioner_mapping import xcn_person
from tests.conftest import CORPUS

NOW = datetime(2024, 3, 1, 12, 0, tzinfo=UTC)
PATIENT = {"reference": "Patient/p1"}
ENCOUNTER = {"reference": "Encounter/e1"}
ADT_FILES = sorted([*CORPUS.glob("hl7/ADT-*.hl7"), *CORPUS.glob("hl7/ADT0*.hl7")])
VISIT_EVENTS = {"A01", "A02", "A03", "A04", "A05", "A08", "A11", "A12", "A13"}


def message(*segments: str, event: str = "A01", msh7: str = "20240301120000+0100") -> Message:
    msh = f"MSH|^~\\&|EHR|GHH|MEDHUB|ICU|{msh7}||ADT^{event}^ADT_A01|C1|P|2.5.1"
    return parse_er7("\r".join([msh, *segments]) + "\r")


def seg(name: str, **fields: str) -> str:
    """A segment with the fields given as ``f2="I"`` etc."""
    values = {int(k[1:]): v for k, v in fields.items()}
    return f"{name}|" + "|".join(values.get(n, "") for n in range(1, max(values, default=1) + 1))


def pv1(**fields: str) -> str:
    return seg("PV1", **fields)


def visit_message(event: str, **fields: str) -> Message:
    defaults = {"f1": "1", "f2": "I", "f3": "ICU^101^A^GHH", "f19": "V1^^^GHH^VN"}
    return message(
        f"EVN|{event}|20240301100000+0100",
        "PID|1||MRN-1^^^GHH^MR||DOE^JANE",
        pv1(**{**defaults, **fields}),
        event=event,
    )


def assembled(visit: MappedVisit, existing: dict[str, Any] | None = None) -> dict[str, Any]:
    """The Encounter after the event, with stand-in references for what the store resolves."""
    location = (
        {"reference": f"Location/{visit.locations[-1].name}", "display": visit.locations[-1].name}
        if visit.locations
        else None
    )
    participants = [
        {
            "type": [{"coding": [{"code": p.type_code}]}],
            "individual": {"reference": f"Practitioner/{n}", "display": p.person.display},
        }
        for n, p in enumerate(visit.participants)
    ]
    return next_encounter(
        existing, visit, subject=PATIENT, location=location, participants=participants
    )


def valid(resource: dict[str, Any]) -> dict[str, Any]:
    assert validate_resource(resource) == resource
    return resource


def corpus_message(path: Path) -> Message:
    return parse_er7(decode_er7(path.read_bytes()))


# -- the corpus ------------------------------------------------------------------------------


def test_the_corpus_has_adt_messages() -> None:
    assert len(ADT_FILES) >= 30


@pytest.mark.parametrize("path", ADT_FILES, ids=[p.name for p in ADT_FILES])
def test_every_mapper_output_for_a_corpus_message_is_valid_fhir(path: Path) -> None:
    msg = corpus_message(path)
    mapped = 0
    if msg.segment("PID") is not None:
        valid(pid_to_patient(msg))
        mapped += 1
    if msg.segment("PV1") is not None:
        visit = map_visit(msg, now=NOW)
        valid(assembled(visit))
        for level in visit.locations:
            valid(level.resource)
        for participant in visit.participants:
            if participant.person.practitioner is not None:
                valid(participant.person.practitioner)
        mapped += 1
    for n, al1 in enumerate(msg.all("AL1"), start=1):
        valid(al1_allergy(al1, sequence=n, patient=PATIENT))
        mapped += 1
    for n, dg1 in enumerate(msg.all("DG1"), start=1):
        condition = dg1_condition(dg1, sequence=n, subject=PATIENT, encounter=ENCOUNTER)
        valid(condition.resource)
        if condition.asserter is not None and condition.asserter.practitioner is not None:
            valid(condition.asserter.practitioner)
        mapped += 1
    for mrg in msg.all("MRG"):
        identifiers = cx_identifiers(mrg, 1)
        if identifiers:
            valid({"resourceType": "Patient", "identifier": identifiers})
    assert mapped >= 1


def test_folding_the_corpus_visit_events_in_order_stays_valid_at_every_step() -> None:
    encounter: dict[str, Any] | None = None
    events = []
    for path in ADT_FILES:
        msg = corpus_message(path)
        if path.name.startswith("ADT-") and msg.message_type[1] in VISIT_EVENTS:
            encounter = valid(assembled(map_visit(msg, now=NOW), encounter))
            events.append(msg.message_type[1])
    assert events == ["A01", "A02", "A03", "A04", "A05", "A08", "A11", "A13"]
    assert encounter is not None
    statuses = [h["status"] for h in encounter["statusHistory"]]
    assert statuses == [
        "in-progress",
        "finished",
        "arrived",
        "planned",
        "cancelled",
        "in-progress",
    ]
    assert encounter["status"] == "in-progress"
    assert "end" not in encounter["period"]  # A13 cancelled the discharge


# -- Encounter -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("patient_class", "system", "code"),
    [
        ("I", "http://terminology.hl7.org/CodeSystem/v3-ActCode", "IMP"),
        ("O", "http://terminology.hl7.org/CodeSystem/v3-ActCode", "AMB"),
        ("E", "http://terminology.hl7.org/CodeSystem/v3-ActCode", "EMER"),
        ("P", "http://terminology.hl7.org/CodeSystem/v3-ActCode", "PRENC"),
        ("R", "http://terminology.hl7.org/CodeSystem/v2-0004", "R"),
    ],
)
def test_pv1_2_patient_class_becomes_encounter_class(
    patient_class: str, system: str, code: str
) -> None:
    encounter = valid(assembled(map_visit(visit_message("A01", f2=patient_class), now=NOW)))
    assert (encounter["class"]["system"], encounter["class"]["code"]) == (system, code)


@pytest.mark.parametrize(
    ("event", "status"),
    [
        ("A01", "in-progress"),
        ("A02", "in-progress"),
        ("A03", "finished"),
        ("A04", "arrived"),
        ("A05", "planned"),
        ("A08", "in-progress"),
        ("A11", "cancelled"),
        ("A12", "in-progress"),
        ("A13", "in-progress"),
    ],
)
def test_a_new_visit_takes_its_status_from_the_event(event: str, status: str) -> None:
    encounter = valid(assembled(map_visit(visit_message(event), now=NOW)))
    assert encounter["status"] == status
    assert encounter["statusHistory"][-1]["status"] == status


def test_a08_keeps_the_stored_status_and_a08_with_pv1_45_creates_a_finished_visit() -> None:
    admitted = assembled(map_visit(visit_message("A01"), now=NOW))
    updated = valid(assembled(map_visit(visit_message("A08", f2="O"), now=NOW), admitted))
    assert updated["status"] == "in-progress"
    assert updated["class"]["code"] == "AMB"
    assert len(updated["statusHistory"]) == 1
    late = valid(assembled(map_visit(visit_message("A08", f45="20240302"), now=NOW)))
    assert late["status"] == "finished"


def test_pv1_fields_map_to_identifier_period_participants_and_hospitalization() -> None:
    msg = message(
        "EVN|A01|20240301100000+0100",
        "PID|1||MRN-1^^^GHH^MR||DOE^JANE",
        pv1(
            f1="1",
            f2="I",
            f3="ICU^101^A^GHH",
            f4="E",
            f5="PRE-9^^^GHH",
            f7="D1^WELBY^MARCUS^J^^DR^^^GHH&1.2.3&ISO^^^^NPI~D2^KILDARE^JAMES",
            f8="^REFER^LINDA",
            f10="MED",
            f14="7",
            f17="D1^WELBY^MARCUS",
            f19="V1^^^GHH&1.2.3&ISO",
            f36="01",
            f44="20240301093000",
            f45="20240305",
        ),
        "PV2|||J18.9^Pneumonia^I10",
        event="A03",
    )
    visit = map_visit(msg, now=NOW)
    encounter = valid(assembled(visit))
    assert encounter["identifier"] == [
        {
            "system": "urn:oid:1.2.3",
            "value": "V1",
            "type": {
                "coding": [
                    {"system": "http://terminology.hl7.org/CodeSystem/v2-0203", "code": "VN"}
                ]
            },
        }
    ]
    # PV1-44 has no zone: the sender's zone is MSH-7's (+01:00), HL7 v2.5.1 §2.A.22
    assert encounter["period"] == {"start": "2024-03-01T09:30:00+01:00", "end": "2024-03-05"}
    assert encounter["type"][0]["coding"][0]["code"] == "E"
    assert encounter["serviceType"]["coding"][0]["code"] == "MED"
    assert encounter["hospitalization"]["admitSource"]["coding"][0] == {
        "system": "http://terminology.hl7.org/CodeSystem/v2-0023",
        "code": "7",
    }
    assert encounter["hospitalization"]["dischargeDisposition"]["coding"][0]["code"] == "01"
    assert encounter["hospitalization"]["preAdmissionIdentifier"]["value"] == "PRE-9"
    assert encounter["reasonCode"][0]["coding"][0]["system"] == "http://hl7.org/fhir/sid/icd-10-cm"
    roles = [(p.type_code, p.person.display) for p in visit.participants]
    assert roles == [
        ("ATND", "DR MARCUS J WELBY"),
        ("ATND", "JAMES KILDARE"),
        ("REF", "LINDA REFER"),
        ("ADM", "MARCUS WELBY"),
    ]
    welby = visit.participants[0].person.practitioner
    assert welby is not None
    assert valid(welby)["identifier"][0]["system"] == "urn:oid:1.2.3"
    assert welby["name"] == [{"family": "WELBY", "given": ["MARCUS", "J"], "prefix": ["DR"]}]
    assert visit.participants[2].person.practitioner is None  # no XCN-1: no resource


def test_admit_transfer_discharge_keeps_the_location_and_status_history() -> None:
    admitted = assembled(map_visit(visit_message("A01", f44="20240301093000+0100"), now=NOW))
    moved = message(
        "EVN|A02|20240302080000+0100",
        "PID|1||MRN-1^^^GHH^MR",
        pv1(f1="1", f2="I", f3="WARD^7^B^GHH", f19="V1^^^GHH^VN"),
        event="A02",
    )
    transferred = valid(assembled(map_visit(moved, now=NOW), admitted))
    out = message(
        "EVN|A03|20240303170000+0100",
        "PID|1||MRN-1^^^GHH^MR",
        pv1(f1="1", f2="I", f3="WARD^7^B^GHH", f19="V1^^^GHH^VN"),
        event="A03",
    )
    discharged = valid(assembled(map_visit(out, now=NOW), transferred))
    assert [
        (e["location"]["reference"], e["status"], e["period"]) for e in discharged["location"]
    ] == [
        (
            "Location/A",
            "completed",
            {"start": "2024-03-01T09:30:00+01:00", "end": "2024-03-02T08:00:00+01:00"},
        ),
        (
            "Location/B",
            "completed",
            {"start": "2024-03-02T08:00:00+01:00", "end": "2024-03-03T17:00:00+01:00"},
        ),
    ]
    assert discharged["status"] == "finished"
    assert discharged["period"] == {
        "start": "2024-03-01T09:30:00+01:00",
        "end": "2024-03-03T17:00:00+01:00",
    }
    assert discharged["statusHistory"] == [
        {
            "status": "in-progress",
            "period": {"start": "2024-03-01T09:30:00+01:00", "end": "2024-03-03T17:00:00+01:00"},
        },
        {"status": "finished", "period": {"start": "2024-03-03T17:00:00+01:00"}},
    ]


def test_a12_cancel_transfer_drops_the_wrong_bed_and_reopens_the_first() -> None:
    admitted = assembled(map_visit(visit_message("A01"), now=NOW))
    transferred = assembled(map_visit(visit_message("A02", f3="WARD^7^B^GHH"), now=NOW), admitted)
    cancelled = valid(assembled(map_visit(visit_message("A12"), now=NOW), transferred))
    assert [(e["location"]["reference"], e["status"]) for e in cancelled["location"]] == [
        ("Location/A", "active")
    ]
    assert "end" not in cancelled["location"][0]["period"]
    assert cancelled["status"] == "in-progress"


def test_a13_cancel_discharge_reopens_the_visit_and_its_bed() -> None:
    admitted = assembled(map_visit(visit_message("A01"), now=NOW))
    discharged = assembled(map_visit(visit_message("A03"), now=NOW), admitted)
    assert discharged["location"][0]["status"] == "completed"
    reopened = valid(assembled(map_visit(visit_message("A13"), now=NOW), discharged))
    assert reopened["status"] == "in-progress"
    assert "end" not in reopened.get("period", {})
    assert [e["status"] for e in reopened["location"]] == ["active"]
    assert [h["status"] for h in reopened["statusHistory"]] == [
        "in-progress",
        "finished",
        "in-progress",
    ]


def test_a11_cancels_the_visit_and_frees_the_bed() -> None:
    admitted = assembled(map_visit(visit_message("A01"), now=NOW))
    cancelled = valid(assembled(map_visit(visit_message("A11"), now=NOW), admitted))
    assert cancelled["status"] == "cancelled"
    assert cancelled["location"][0]["status"] == "completed"


def test_a05_preadmit_plans_the_location() -> None:
    planned = valid(assembled(map_visit(visit_message("A05", f2="P"), now=NOW)))
    assert planned["status"] == "planned"
    assert planned["location"][0]["status"] == "planned"
    assert planned["class"]["code"] == "PRENC"


def test_participants_of_a_role_are_replaced_and_other_roles_kept() -> None:
    first = assembled(map_visit(visit_message("A01", f7="D1^ONE", f8="R1^REF"), now=NOW))
    second = valid(assembled(map_visit(visit_message("A08", f7="D2^TWO"), now=NOW), first))
    assert [
        (p["type"][0]["coding"][0]["code"], p["individual"]["display"])
        for p in second["participant"]
    ] == [
        ("REF", "REF"),
        ("ATND", "TWO"),
    ]


def test_a_visit_of_another_patient_is_refused() -> None:
    admitted = assembled(map_visit(visit_message("A01"), now=NOW))
    with pytest.raises(MedhubError) as caught:
        next_encounter(
            admitted,
            map_visit(visit_message("A08"), now=NOW),
            subject={"reference": "Patient/other"},
            location=None,
            participants=[],
        )
    assert caught.value.issues[0].location == Hl7Location("PV1", 1, 19)


@pytest.mark.parametrize(
    ("msg", "location"),
    [
        (message("EVN|A01", "PID|1||MRN-1"), Hl7Location("PV1")),
        (visit_message("A01", f2=""), Hl7Location("PV1", 1, 2)),
        (visit_message("A01", f3="^^^^^C^^^just a note"), Hl7Location("PV1", 1, 3)),
        (visit_message("A01", f44="2024-03-01"), Hl7Location("PV1", 1, 44)),
        (visit_message("A01", f44="20240230"), Hl7Location("PV1", 1, 44)),
        (visit_message("A01", f45="20240301+2500"), Hl7Location("PV1", 1, 45)),
        (visit_message("A03", f44="20240305", f45="20240301"), Hl7Location("PV1", 1, 45)),
    ],
    ids=["no-pv1", "no-class", "garbage-pv1-3", "bad-44", "30-february", "bad-zone", "end<start"],
)
def test_unusable_visits_are_refused_naming_the_field(msg: Message, location: Hl7Location) -> None:
    with pytest.raises(InputError) as caught:
        assembled(map_visit(msg, now=NOW))
    assert caught.value.issues[0].location == location
    assert caught.value.issues[0].hl7_error_code in (100, 101, 102)


# -- data types ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "offset", "expected"),
    [
        ("20240301093000+0215", None, "2024-03-01T09:30:00+02:15"),
        ("20240301093000.25-0500", None, "2024-03-01T09:30:00.25-05:00"),
        ("202403010930", "+01:00", "2024-03-01T09:30:00+01:00"),
        ("2024030109", "+01:00", "2024-03-01T09:00:00+01:00"),
        ("20240301093000", None, "2024-03-01"),
        ("20240301", "+01:00", "2024-03-01"),
        ("202403", None, "2024-03"),
        ("2024", None, "2024"),
    ],
)
def test_dtm_becomes_a_fhir_datetime(value: str, offset: str | None, expected: str) -> None:
    assert fhir_datetime(value, Hl7Location("PV1", 1, 44), default_offset=offset) == expected
    valid(
        {
            "resourceType": "Encounter",
            "status": "planned",
            "class": {"code": "X"},
            "period": {"start": expected},
        }
    )


@pytest.mark.parametrize(
    ("name", "system"),
    [
        ("I10", "http://hl7.org/fhir/sid/icd-10-cm"),
        ("I9", "http://hl7.org/fhir/sid/icd-9-cm"),
        ("SCT", "http://snomed.info/sct"),
        ("LN", "http://loinc.org"),
        ("RXNORM", "http://www.nlm.nih.gov/research/umls/rxnorm"),
        ("HL70127", "http://terminology.hl7.org/CodeSystem/v2-0127"),
        ("Hl7128", "http://terminology.hl7.org/CodeSystem/v2-0128"),
        ("99LOCAL", LOCAL_CODING_SYSTEM_PREFIX + "99LOCAL"),
        ("", None),
    ],
)
def test_table_0396_names_become_fhir_systems(name: str, system: str | None) -> None:
    assert coding_system(name) == system


# -- Location, Practitioner ------------------------------------------------------------------


def test_pv1_3_becomes_a_chain_of_locations_from_facility_to_bed() -> None:
    pv = visit_message("A01", f3="ICU^101^A^GHH^^N^MAIN^2^Intensive care").segment("PV1")
    assert pv is not None
    levels = pl_locations(pv, 3)
    assert [(lv.name, lv.resource["physicalType"]["coding"][0]["code"]) for lv in levels] == [
        ("GHH", "si"),
        ("ICU", "wa"),
        ("101", "ro"),
        ("A", "bd"),
    ]
    assert [lv.resource["identifier"][0] for lv in levels] == [
        {"system": LOCATION_SYSTEM, "value": value}
        for value in ("GHH", "GHH^ICU", "GHH^ICU^101", "GHH^ICU^101^A")
    ]
    assert levels[-1].resource["description"] == "Intensive care"
    for level in levels:
        valid(level.resource)


def test_an_xcn_without_a_name_still_identifies_a_practitioner() -> None:
    segment = message(pv1(f1="1", f2="I", f17="D9")).segment("PV1")
    assert segment is not None
    person = xcn_person(segment, 17)
    assert person is not None and person.practitioner is not None
    assert valid(person.practitioner)["identifier"] == [{"value": "D9"}]
    assert person.display == "D9"


# -- AllergyIntolerance, Condition -----------------------------------------------------------


@pytest.mark.parametrize(
    ("al1", "category", "criticality", "severity"),
    [
        (
            "AL1|1|DA|70618^Penicillin^RXNORM|SV|hives~wheezing|20200115",
            "medication",
            "high",
            "severe",
        ),
        ("AL1|1|FA^Food allergy^HL70127|256349002^Peanut^SCT|MO|rash", "food", "low", "moderate"),
        ("AL1|1|EA|POLLEN|MI", "environment", "low", None),
        ("AL1|1|MC|X1^Contrast", None, None, None),
    ],
)
def test_al1_becomes_an_allergy_intolerance(
    al1: str, category: str | None, criticality: str | None, severity: str | None
) -> None:
    segment = message(al1).segment("AL1")
    assert segment is not None
    allergy = valid(al1_allergy(segment, sequence=1, patient=PATIENT))
    assert allergy.get("category", [None]) == [category]
    assert allergy.get("criticality") == criticality
    assert allergy["patient"] == PATIENT
    assert allergy["clinicalStatus"]["coding"][0]["code"] == "active"
    if severity:
        assert allergy["reaction"][0]["severity"] == severity
    else:
        assert "severity" not in allergy.get("reaction", [{}])[0]


def test_al1_values_are_carried() -> None:
    segment = message("AL1|1|DA|70618^Penicillin^RXNORM|SV|hives~wheezing|20200115").segment("AL1")
    assert segment is not None
    allergy = al1_allergy(segment, sequence=1, patient=PATIENT)
    assert allergy["code"] == {
        "coding": [
            {
                "system": "http://www.nlm.nih.gov/research/umls/rxnorm",
                "code": "70618",
                "display": "Penicillin",
            }
        ]
    }
    assert allergy["reaction"][0]["manifestation"] == [{"text": "hives"}, {"text": "wheezing"}]
    assert allergy["onsetDateTime"] == "2020-01-15"
    assert allergy["type"] == "allergy"


def test_dg1_becomes_an_encounter_diagnosis() -> None:
    msg = message(
        seg(
            "DG1",
            f1="1",
            f2="I10",
            f3="J18.9^Pneumonia, unspecified^I10",
            f4="Pneumonia",
            f5="20240301101500+0100",
            f6="A",
            f16="D7^HOUSE^GREGORY",
            f19="20240301120000+0100",
            f20="DX-1^EHR",
        ),
        "DG1|2|I9|71596^OSTEOARTHROS NOS-L/LEG |OSTEOARTHROS NOS-L/LEG ||A",
    )
    first, second = (
        dg1_condition(dg1, sequence=n, subject=PATIENT, encounter=ENCOUNTER)
        for n, dg1 in enumerate(msg.all("DG1"), start=1)
    )
    condition = valid(first.resource)
    assert condition["code"]["coding"] == [
        {
            "system": "http://hl7.org/fhir/sid/icd-10-cm",
            "code": "J18.9",
            "display": "Pneumonia, unspecified",
        }
    ]
    assert condition["code"]["text"] == "Pneumonia"
    assert condition["category"][0]["coding"][0]["code"] == "encounter-diagnosis"
    assert condition["onsetDateTime"] == "2024-03-01T10:15:00+01:00"
    assert condition["recordedDate"] == "2024-03-01T12:00:00+01:00"
    assert condition["identifier"] == [
        {"system": "urn:medhub:assigning-authority:EHR", "value": "DX-1"}
    ]
    assert (condition["subject"], condition["encounter"]) == (PATIENT, ENCOUNTER)
    assert first.asserter is not None and first.asserter.display == "GREGORY HOUSE"
    # DG1-3.3 empty: the coding system is DG1-2 (I9); trailing blanks do not reach FHIR
    legacy = valid(second.resource)
    assert legacy["code"] == {
        "coding": [
            {
                "system": "http://hl7.org/fhir/sid/icd-9-cm",
                "code": "71596",
                "display": "OSTEOARTHROS NOS-L/LEG",
            }
        ],
        "text": "OSTEOARTHROS NOS-L/LEG",
    }


def test_dg1_21_delete_marks_the_diagnosis_entered_in_error() -> None:
    segment = message(seg("DG1", f1="1", f2="I10", f3="J18.9^Pneumonia^I10", f21="D")).segment(
        "DG1"
    )
    assert segment is not None
    incoming = dg1_condition(segment, sequence=1, subject=PATIENT, encounter=None).resource
    stored = {**incoming, "clinicalStatus": {"coding": [{"code": "active"}]}}
    del stored["verificationStatus"]
    merged = valid(merge_condition(stored, incoming))
    assert merged["verificationStatus"]["coding"][0]["code"] == "entered-in-error"
    assert "clinicalStatus" not in merged  # FHIR con-5


def test_same_code_compares_first_codings_and_else_text() -> None:
    assert same_code(
        {"coding": [{"system": "s", "code": "1"}]},
        {"coding": [{"system": "s", "code": "1"}], "text": "x"},
    )
    assert not same_code(
        {"coding": [{"system": "s", "code": "1"}]}, {"coding": [{"system": "t", "code": "1"}]}
    )
    assert same_code({"text": "Latex"}, {"text": "latex "})
    assert not same_code({"text": "Latex"}, {"coding": [{"code": "Latex"}]})


@pytest.mark.parametrize(
    ("segment", "location"),
    [
        ("AL1|1|DA||SV", Hl7Location("AL1", 1, 3)),
        ("DG1|1|I10||", Hl7Location("DG1", 1, 3)),
        ("DG1|1|I10|J18.9^^I10||2024-03-01", Hl7Location("DG1", 1, 5)),
        ("AL1|1|DA|X|||notadate", Hl7Location("AL1", 1, 6)),
    ],
)
def test_unusable_allergies_and_diagnoses_are_refused(segment: str, location: Hl7Location) -> None:
    parsed = message(segment).segments[1]
    with pytest.raises(InputError) as caught:
        if parsed.name == "AL1":
            al1_allergy(parsed, sequence=1, patient=PATIENT)
        else:
            dg1_condition(parsed, sequence=1, subject=PATIENT, encounter=None)
    assert caught.value.issues[0].location == location


# -- A40 -------------------------------------------------------------------------------------


def test_merge_pairs_each_mrg_with_the_pid_before_it() -> None:
    msg = message(
        "EVN|A40",
        "PID|1||NEW-1^^^GHH^MR",
        "MRG|OLD-1^^^GHH^MR~OLD-2^^^GHH",
        "PID|1||NEW-2^^^GHH^MR",
        "MRG|OLD-3^^^GHH^MR",
        event="A40",
    )
    pairs = merge_pairs(msg)
    assert [
        (pid_to_patient(p)["identifier"][0]["value"], [i["value"] for i in cx_identifiers(m, 1)])
        for p, m in pairs
    ] == [
        ("NEW-1", ["OLD-1", "OLD-2"]),
        ("NEW-2", ["OLD-3"]),
    ]


@pytest.mark.parametrize(
    ("segments", "location"),
    [
        (("PID|1||NEW-1^^^GHH^MR",), Hl7Location("MRG")),
        (("PID|1||NEW-1^^^GHH^MR", "MRG|"), Hl7Location("MRG", 1, 1)),
        (("MRG|OLD-1",), Hl7Location("MRG", 1)),
    ],
)
def test_a40_without_a_usable_mrg_is_refused(
    segments: tuple[str, ...], location: Hl7Location
) -> None:
    with pytest.raises(MissingDataError) as caught:
        merge_pairs(message("EVN|A40", *segments, event="A40"))
    assert caught.value.issues[0].location == location
