"""The pharmacy order builder (RDE^O11, ORM^O01 with RXO): read back by medhub's parser,
medhub's own inbound order mapper, and validated strictly with hl7apy.

hl7apy notes (1.3.x): its ``find_groups`` assigns a segment to the first group that
may hold it, so the TQ1 after RXE lands in RDE_O11_TIMING (the group *before* RXE)
and TIMING_ENCODED looks missing; and its validator treats choice groups as
sequences (crs4/hl7apy#151), so no ORM^O01 with RXO validates, and its ORM_O01
lacks the pharmacy RXR of v2.3 §4.8.1. So the RDE tree is assembled along the
v2.5.1 grammar and hl7apy validates it strictly (groups, cardinality, segments,
fields, data types); the ORM is validated segment by segment, and both segment
orders are checked against the standard's message grammar.
"""

from __future__ import annotations

import copy
import json
import re
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from hl7apy.consts import VALIDATION_LEVEL
from hl7apy.core import Message as ApyMessage
from hl7apy.exceptions import ValidationError
from hl7apy.parser import parse_segment
from hypothesis import given, settings
from hypothesis import strategies as st

from medhub.errors import ConfigurationError, InputError, MedhubError, MissingDataError
from medhub.hl7.dosage_timing import repeat_pattern
from medhub.hl7.er7 import Message, decode_er7, parse_er7
from medhub.hl7.er7_fields import HierarchicDesignator
from medhub.hl7.order_mapping import map_orders
from medhub.hl7.pharmacy_order_builder import (
    OrderControl,
    PharmacyOrderHeader,
    build_pharmacy_order,
)

EXAMPLES = Path(__file__).parents[1] / "data" / "fhir-r4-examples"
NOW = datetime(2024, 3, 1, 8, 0, 5, tzinfo=UTC)
UCUM = "http://unitsofmeasure.org"
RXNORM = "http://www.nlm.nih.gov/research/umls/rxnorm"
SNOMED = "http://snomed.info/sct"
V2_0203 = "http://terminology.hl7.org/CodeSystem/v2-0203"
RDE = PharmacyOrderHeader(
    sending_application=HierarchicDesignator("MEDHUB"),
    sending_facility=HierarchicDesignator("GHH"),
    receiving_application=HierarchicDesignator("PHARMACY"),
    receiving_facility=HierarchicDesignator("GHH"),
)
ORM = PharmacyOrderHeader(
    HierarchicDesignator("MEDHUB"), HierarchicDesignator("PHARMACY"), message_type="ORM^O01"
)
PATIENT: dict[str, Any] = {
    "resourceType": "Patient",
    "id": "p1",
    "identifier": [
        {
            "type": {"coding": [{"system": V2_0203, "code": "MR"}]},
            "system": "urn:oid:1.2.840.114350",
            "value": "MRN-1",
        },
        {"system": "urn:medhub:assigning-authority:NHS", "value": "987"},
    ],
    "name": [
        {"use": "usual", "given": ["Annie"], "family": "Doe"},
        {"use": "official", "family": "Doe", "given": ["Jane", "Ann"], "prefix": ["Ms"]},
    ],
    "gender": "female",
    "birthDate": "1970-05-17",
}
PRACTITIONER: dict[str, Any] = {
    "resourceType": "Practitioner",
    "id": "dr1",
    "identifier": [{"system": "http://hl7.org/fhir/sid/us-npi", "value": "1234567893"}],
    "name": [{"family": "Heps", "given": ["Simone"], "suffix": ["MD"]}],
}
REQUEST: dict[str, Any] = {
    "resourceType": "MedicationRequest",
    "id": "rx1",
    "status": "active",
    "intent": "order",
    "medicationCodeableConcept": {
        "coding": [
            {"system": SNOMED, "code": "386864001", "display": "Amlodipine"},
            {"system": RXNORM, "code": "197361", "display": "amlodipine 5 MG Oral Tablet"},
        ]
    },
    "subject": {"reference": "Patient/p1"},
    "requester": {"reference": "Practitioner/dr1"},
    "authoredOn": "2024-03-01T09:30:00+01:00",
    "note": [{"text": "Check blood pressure first"}],
    "dosageInstruction": [
        {
            "text": "Take one tablet every 8 hours",
            "timing": {
                "repeat": {
                    "boundsPeriod": {"start": "2024-03-01T10:00:00+01:00", "end": "2024-03-11"},
                    "frequency": 1,
                    "period": 8,
                    "periodUnit": "h",
                }
            },
            "route": {"coding": [{"system": SNOMED, "code": "26643006", "display": "Oral route"}]},
            "doseAndRate": [
                {"doseQuantity": {"value": 5, "unit": "mg", "system": UCUM, "code": "mg"}}
            ],
        }
    ],
    "dispenseRequest": {
        "numberOfRepeatsAllowed": 2,
        "quantity": {
            "value": 30,
            "unit": "tablet",
            "system": "http://terminology.hl7.org/CodeSystem/v3-orderableDrugForm",
            "code": "TAB",
        },
    },
    "substitution": {"allowedBoolean": False},
}
DOSAGE = ("dosageInstruction", 0)


def changed(resource: dict[str, Any], *path: str | int, value: Any = None) -> dict[str, Any]:
    """A deep copy of ``resource`` with the element at ``path`` set (``value=None`` drops it)."""
    copied = copy.deepcopy(resource)
    parent: Any = copied
    for key in path[:-1]:
        parent = parent[key]
    if value is None:
        del parent[path[-1]]
    else:
        parent[path[-1]] = value
    return copied


def build(
    request: dict[str, Any] = REQUEST,
    patient: dict[str, Any] = PATIENT,
    header: PharmacyOrderHeader = RDE,
    **kwargs: Any,
) -> bytes:
    kwargs.setdefault("requester", PRACTITIONER)
    return build_pharmacy_order(request, patient, header=header, control_id="RX-1", now=NOW,
                                **kwargs)  # fmt: skip


def parsed(message: bytes) -> Message:
    return parse_er7(decode_er7(message))


def names(message: Message) -> list[str]:
    return [segment.name for segment in message.segments]


#: RDE_O11 groups of each segment medhub writes (HL7 v2.5.1 §4A.3.4).
RDE_GROUPS: dict[str, tuple[str, ...]] = {
    "PID": ("RDE_O11_PATIENT",),
    "PV1": ("RDE_O11_PATIENT", "RDE_O11_PATIENT_VISIT"),
    "ORC": ("RDE_O11_ORDER",),
    "RXE": ("RDE_O11_ORDER",),
    "NTE": ("RDE_O11_ORDER",),
    "TQ1": ("RDE_O11_ORDER", "RDE_O11_TIMING_ENCODED"),
    "RXR": ("RDE_O11_ORDER",),
}
RDE_GRAMMAR = re.compile(r"^MSH PID PV1 ORC RXE (NTE )*TQ1 RXR $")
#: v2.3 §4.8.1, the pharmacy ORM^O01, as medhub writes it (one order).
ORM_GRAMMAR = re.compile(r"^MSH PID PV1 ORC RXO (NTE )*(RXR )+$")


def strict_rde(message: bytes, *, skip: str = "") -> ApyMessage:
    """The RDE^O11 as an hl7apy tree (v2.5.1 groups), validated strictly; raises if invalid."""
    lines = message.decode("utf-8").strip("\r").split("\r")
    version = lines[0].split("|")[11]
    tree = ApyMessage("RDE_O11", version=version, validation_level=VALIDATION_LEVEL.STRICT)
    tree.msh = lines[0]
    groups: dict[tuple[str, ...], Any] = {}
    for line in lines[1:]:
        if line[:3] == skip:
            continue
        parent: Any = tree
        path = RDE_GROUPS[line[:3]]
        for depth in range(1, len(path) + 1):
            if path[:depth] not in groups:
                groups[path[:depth]] = parent.add_group(path[depth - 1])
            parent = groups[path[:depth]]
        parent.add(parse_segment(line, version=version, validation_level=VALIDATION_LEVEL.STRICT))
    assert tree.validate() is True
    return tree


def strict_orm_segments(message: bytes, version: str) -> None:
    for line in message.decode("utf-8").strip("\r").split("\r"):
        segment = parse_segment(line, version=version, validation_level=VALIDATION_LEVEL.STRICT)
        assert segment.validate() is True, line


# -- the message -------------------------------------------------------------------------


def test_rde_header_and_segment_order() -> None:
    message = parsed(build())
    assert message.message_type == ("RDE", "O11", "RDE_O11")
    assert message.control_id == "RX-1"
    msh = message.msh
    assert [msh.raw(n) for n in (3, 4, 5, 6, 7, 11, 12, 15, 16, 18)] == [
        "MEDHUB", "GHH", "PHARMACY", "GHH", "20240301080005+0000", "P", "2.5.1", "AL", "NE",
        "UNICODE UTF-8",
    ]  # fmt: skip
    assert RDE_GRAMMAR.match(" ".join(names(message)) + " ")


def test_orm_header_segment_order_and_version() -> None:
    message = parsed(build(header=ORM))
    assert message.message_type == ("ORM", "O01", "ORM_O01")
    assert ORM_GRAMMAR.match(" ".join(names(message)) + " ")
    v23 = PharmacyOrderHeader(
        HierarchicDesignator("MEDHUB"), HierarchicDesignator("RX"), message_type="ORM^O01",
        version="2.3", application_ack="AL",
    )  # fmt: skip
    old = parsed(build(header=v23))
    assert old.msh.raw(9) == "ORM^O01", "MSH-9 has no message structure before v2.3.1"
    assert (old.get("MSH-12"), old.get("MSH-16")) == ("2.3", "AL")


def test_pid_carries_every_identifier_the_legal_name_birth_date_and_sex() -> None:
    pid = parsed(build()).segment("PID")
    assert pid is not None
    assert pid.raw(3) == "MRN-1^^^&1.2.840.114350&ISO^MR~987^^^NHS"
    assert pid.repetitions(5) == ["Doe^Jane^Ann^^Ms^^L"], (
        "the legal name (PID-5 repeats from 2.3.1)"
    )
    assert (pid.raw(7), pid.raw(8)) == ("19700517", "F")


@pytest.mark.parametrize(
    ("gender", "sex"),
    [("male", "M"), ("female", "F"), ("other", "O"), ("unknown", "U"), (None, "")],
)
def test_pid8_is_table_0001(gender: str | None, sex: str) -> None:
    patient = changed(PATIENT, "gender", value=gender)
    assert parsed(build(patient=patient)).get("PID-8") == sex


@pytest.mark.parametrize(
    ("encounter_class", "patient_class"),
    [
        (None, "U"),
        ({"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "IMP"}, "I"),
        ({"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"}, "O"),
        ({"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "EMER"}, "E"),
        ({"system": "http://terminology.hl7.org/CodeSystem/v2-0004", "code": "R"}, "R"),
    ],
)
def test_pv1_2_patient_class(encounter_class: dict[str, str] | None, patient_class: str) -> None:
    encounter = None
    if encounter_class is not None:
        encounter = {"resourceType": "Encounter", "id": "e1", "class": encounter_class}
    assert parsed(build(encounter=encounter)).get("PV1-2") == patient_class


@pytest.mark.parametrize("control", ["NW", "CA", "DC", "XO"])
def test_orc_order_control_placer_status_time_and_provider(control: OrderControl) -> None:
    message = parsed(build(order_control=control))
    orc = message.segment("ORC")
    assert orc is not None
    assert orc.raw(1) == control
    assert orc.raw(2) == "rx1^medhub"
    assert (orc.raw(5), orc.raw(9)) == ("IP", "20240301093000+0100")
    assert orc.raw(12) == "1234567893^Heps^Simone^^MD^^^^&http://hl7.org/fhir/sid/us-npi&URI"
    assert orc.raw(7) == "", "RDE^O11 carries its timing in TQ1"


@pytest.mark.parametrize(
    ("status", "orc5"),
    [("active", "IP"), ("on-hold", "HD"), ("cancelled", "CA"), ("completed", "CM"),
     ("stopped", "DC"), ("entered-in-error", "ER"), ("draft", "")],
)  # fmt: skip
def test_orc5_is_table_0038(status: str, orc5: str) -> None:
    assert parsed(build(changed(REQUEST, "status", value=status))).get("ORC-5") == orc5


def test_placer_and_filler_identifiers_and_practitioner_without_identifier() -> None:
    request = changed(
        REQUEST,
        "identifier",
        value=[
            {"type": {"coding": [{"system": V2_0203, "code": "PLAC"}]},
             "system": "urn:oid:1.2.3", "value": "P-77"},
            {"type": {"coding": [{"system": V2_0203, "code": "FILL"}]},
             "system": "urn:medhub:assigning-authority:RX", "value": "F-9"},
        ],
    )  # fmt: skip
    practitioner = changed(PRACTITIONER, "identifier")
    orc = parsed(build(request, requester=practitioner)).segment("ORC")
    assert orc is not None
    assert (orc.raw(2), orc.raw(3)) == ("P-77^^1.2.3^ISO", "F-9^RX")
    assert orc.raw(12) == "dr1^Heps^Simone^^MD^^^^medhub"
    no_id = changed(REQUEST, "id", value=None)
    bare = changed(no_id, "identifier", value=[{"system": "urn:oid:9.9", "value": "42"}])
    assert parsed(build(bare)).get("ORC-2") == "42"


def test_rxe_drug_dose_instructions_substitution_and_dispense() -> None:
    rxe = parsed(build()).segment("RXE")
    assert rxe is not None
    assert rxe.raw(1) == ""
    assert rxe.raw(2) == "197361^amlodipine 5 MG Oral Tablet^RXN^386864001^Amlodipine^SCT"
    assert (rxe.raw(3), rxe.raw(4), rxe.raw(5)) == ("5", "", "mg^^UCUM")
    assert rxe.raw(7) == "^Take one tablet every 8 hours"
    assert rxe.raw(9) == "1", "table 0167: substitution not allowed by prescriber"
    assert (rxe.raw(10), rxe.raw(11), rxe.raw(12)) == ("30", "TAB^tablet^L", "2")


def test_dose_range_rate_form_and_additional_instructions() -> None:
    dose_range = {"low": {"value": 1, "unit": "mg", "system": UCUM, "code": "mg"},
                  "high": {"value": 2.5, "unit": "mg", "system": UCUM, "code": "mg"}}  # fmt: skip
    rate = {"value": 50, "unit": "mL/h", "system": UCUM, "code": "mL/h"}
    request = changed(REQUEST, *DOSAGE, "doseAndRate", value=[
        {"doseRange": dose_range, "rateQuantity": rate}
    ])  # fmt: skip
    request["dosageInstruction"][0]["additionalInstruction"] = [
        {"coding": [{"system": SNOMED, "code": "311504000", "display": "With or after food"}]}
    ]
    tablet = {"coding": [{"system": SNOMED, "code": "385055001", "display": "Tablet"}]}
    code = {"coding": [{"system": RXNORM, "code": "1", "display": "X"}]}
    medication = {"resourceType": "Medication", "id": "m1", "code": code, "form": tablet}
    request = changed(request, "medicationCodeableConcept")
    request["medicationReference"] = {"reference": "Medication/m1"}
    rxe = parsed(build(request, medication=medication)).segment("RXE")
    assert rxe is not None
    assert (rxe.raw(2), rxe.raw(3), rxe.raw(4), rxe.raw(5)) == ("1^X^RXN", "1", "2.5", "mg^^UCUM")
    assert rxe.raw(6) == "385055001^Tablet^SCT"
    assert rxe.repetitions(7) == [
        "^Take one tablet every 8 hours",
        "311504000^With or after food^SCT",
    ]
    assert (rxe.raw(23), rxe.raw(24)) == ("50", "mL/h^^UCUM")


def test_contained_medication_is_resolved() -> None:
    request = changed(REQUEST, "medicationCodeableConcept")
    request["contained"] = [{"resourceType": "Medication", "id": "med1",
                             "code": {"text": "Compounded cream"}}]  # fmt: skip
    request["medicationReference"] = {"reference": "#med1"}
    assert parsed(build(request)).get("RXE-2.2") == "Compounded cream"


def test_tq1_quantity_pattern_bounds_and_priority() -> None:
    tq1 = parsed(build()).segment("TQ1")
    assert tq1 is not None
    assert [tq1.raw(n) for n in (1, 2, 3, 7, 8)] == [
        "1", "5^mg&&UCUM", "Q8H", "20240301100000+0100", "20240311",
    ]  # fmt: skip
    request = changed(REQUEST, *DOSAGE, "timing", value={
        "repeat": {"count": 6, "frequency": 2, "period": 1, "periodUnit": "d",
                   "timeOfDay": ["09:00:00", "21:00:00"],
                   "boundsDuration": {"value": 3, "unit": "days", "system": UCUM, "code": "d"}}
    })  # fmt: skip
    request["priority"] = "stat"
    request["dosageInstruction"][0]["asNeededCodeableConcept"] = {"text": "pain"}
    tq1 = parsed(build(request)).segment("TQ1")
    assert tq1 is not None
    assert tq1.raw(3) == "BID"
    assert tq1.repetitions(4) == ["0900", "2100"]
    assert tq1.raw(6) == "3^d&days&UCUM"
    assert tq1.raw(7) == "20240301093000+0100", "no boundsPeriod: TQ1-7 is authoredOn"
    assert tq1.repetitions(9) == ["S", "PRN"]
    assert (tq1.raw(10), tq1.raw(14)) == ("pain", "6")


@pytest.mark.parametrize(
    ("timing", "pattern"),
    [
        ({"repeat": {"frequency": 1, "period": 8, "periodUnit": "h"}}, "Q8H"),
        ({"repeat": {"frequency": 1, "period": 30, "periodUnit": "min"}}, "Q30M"),
        ({"repeat": {"frequency": 1, "period": 1, "periodUnit": "d"}}, "Q1D"),
        ({"repeat": {"frequency": 1, "period": 3.0, "periodUnit": "wk"}}, "Q3W"),
        ({"repeat": {"frequency": 1, "period": 1, "periodUnit": "mo"}}, "Q1L"),
        ({"repeat": {"frequency": 2, "period": 1, "periodUnit": "d"}}, "BID"),
        ({"repeat": {"frequency": 3, "period": 1, "periodUnit": "d"}}, "TID"),
        ({"repeat": {"frequency": 4, "period": 1, "periodUnit": "d"}}, "QID"),
        ({"repeat": {"frequency": 6, "period": 1, "periodUnit": "d"}}, "6ID"),
        ({"repeat": {"count": 1}}, "Once"),
        ({"repeat": {"frequency": 1, "period": 1, "periodUnit": "d", "when": ["MORN"]}}, "QAM"),
        ({"repeat": {"frequency": 1, "period": 1, "periodUnit": "d", "when": ["HS"]}}, "QHS"),
        ({"code": {"coding": [{"code": "QD"}]}}, "Q1D"),
        ({"code": {"coding": [{"code": "BID"}]}, "repeat": {"frequency": 9}}, "BID"),
        ({"code": {"coding": [{"code": "BED"}]}}, "QHS"),
        # what no table 0335 pattern says exactly gets none; the text carries it
        ({"repeat": {"frequency": 3, "period": 1, "periodUnit": "wk"}}, ""),
        ({"repeat": {"frequency": 1, "period": 1, "periodUnit": "d", "when": ["ACM"]}}, ""),
        ({"repeat": {"frequency": 1, "period": 1, "periodUnit": "wk", "dayOfWeek": ["mon"]}}, ""),
        ({"repeat": {"frequency": 1, "period": 4, "periodMax": 6, "periodUnit": "h"}}, ""),
        ({"repeat": {"frequency": 1, "period": 1.5, "periodUnit": "h"}}, ""),
        ({"repeat": {"frequency": 1, "period": 1, "periodUnit": "a"}}, ""),
        ({"repeat": {"timeOfDay": ["09:00:00"]}}, ""),
        ({}, ""),
    ],
)
def test_repeat_pattern_is_table_0335_or_nothing(timing: dict[str, Any], pattern: str) -> None:
    assert repeat_pattern(timing) == pattern


def test_rxr_route_is_table_0162_with_the_snomed_code_kept() -> None:
    assert parsed(build()).get("RXR-1") == "PO"
    rxr = parsed(build()).segment("RXR")
    assert rxr is not None and rxr.raw(1) == "PO^Oral^HL70162^26643006^Oral route^SCT"
    v2_route = {"coding": [{"system": SNOMED, "code": "999"},
                           {"system": "http://terminology.hl7.org/CodeSystem/v2-0162",
                            "code": "IV", "display": "Intravenous"}]}  # fmt: skip
    request = changed(REQUEST, *DOSAGE, "route", value=v2_route)
    request["dosageInstruction"][0]["site"] = {"text": "left arm"}
    request["dosageInstruction"][0]["method"] = {
        "coding": [{"system": SNOMED, "code": "422145002", "display": "Inject"}]
    }
    rxr = parsed(build(request)).segment("RXR")
    assert rxr is not None
    assert rxr.raw(1) == "IV^Intravenous^HL70162^999^^SCT"
    assert (rxr.raw(2), rxr.raw(4)) == ("^left arm", "422145002^Inject^SCT")
    local = changed(REQUEST, *DOSAGE, "route", value={"text": "via PEG tube"})
    assert parsed(build(local)).get("RXR-1.2") == "via PEG tube"


def test_orm_rxo_and_orc7_quantity_timing() -> None:
    request = changed(REQUEST, *DOSAGE, "timing", "repeat", "count", value=21)
    message = parsed(build(request, header=ORM))
    assert message.get("ORC-1") == "NW"
    orc = message.segment("ORC")
    assert orc is not None and orc.raw(7) == "5&mg^Q8H^X21^20240301100000+0100^20240311"
    rxo = message.segment("RXO")
    assert rxo is not None
    assert rxo.raw(1) == "197361^amlodipine 5 MG Oral Tablet^RXN^386864001^Amlodipine^SCT"
    assert (rxo.raw(2), rxo.raw(4)) == ("5", "mg^^UCUM")
    assert rxo.raw(7) == "^Take one tablet every 8 hours"
    assert rxo.raw(9) == "N", "table 0161: substitutions not authorized"
    assert (rxo.raw(11), rxo.raw(12), rxo.raw(13)) == ("30", "TAB^tablet^L", "2")
    assert message.get("RXR-1") == "PO"
    assert message.segment("TQ1") is None


def test_notes_become_nte_segments() -> None:
    request = changed(REQUEST, "note", value=[{"text": "first"}, {"text": " "},
                                              {"text": "two\nlines | here"}])  # fmt: skip
    notes = parsed(build(request)).all("NTE")
    assert [(n.raw(1), n.raw(2), n.value(3)) for n in notes] == [
        ("1", "P", "first"),
        ("2", "P", "two\nlines | here"),
    ]


# -- hl7apy: strict structure ---------------------------------------------------------------


def test_hl7apy_validates_the_rde_o11_strictly() -> None:
    tree = strict_rde(build())
    order = tree.RDE_O11_ORDER
    assert order.RXE.RXE_2.CE_1.to_er7() == "197361"
    assert order.RDE_O11_TIMING_ENCODED.TQ1.TQ1_3.to_er7() == "Q8H"
    assert order.RXR.RXR_1.CE_1.to_er7() == "PO"
    with pytest.raises(ValidationError, match="RXR"):
        strict_rde(build(), skip="RXR")  # the check is not vacuous


@pytest.mark.parametrize("version", ["2.3", "2.4", "2.5.1"])
def test_hl7apy_validates_every_orm_segment_strictly(version: str) -> None:
    header = PharmacyOrderHeader(HierarchicDesignator("MEDHUB"), HierarchicDesignator("RX"),
                                 message_type="ORM^O01", version=version)  # fmt: skip
    strict_orm_segments(build(header=header), version)


def test_delimiters_in_drug_text_and_names_are_escaped() -> None:
    drug = "Amox|clav^500&125 ~ \\F\\ mg"
    request = changed(REQUEST, "medicationCodeableConcept", value={"text": drug})
    request["note"] = [{"text": "a|b^c~d&e\\f"}]
    patient = changed(PATIENT, "name", value=[{"family": "O'Neil^Smith|Jr",
                                               "given": ["Ann~Marie", "\\ B&C"]}])  # fmt: skip
    message_bytes = build(request, patient)
    message = parsed(message_bytes)
    assert names(message) == ["MSH", "PID", "PV1", "ORC", "RXE", "NTE", "TQ1", "RXR"]
    pid, rxe = message.segment("PID"), message.segment("RXE")
    assert pid is not None and rxe is not None
    assert len(pid.fields) == 9 and len(rxe.fields) == 13, "a delimiter shifted fields"
    assert (pid.value(5, 1, 1), pid.value(5, 1, 2), pid.value(5, 1, 3)) == (
        "O'Neil^Smith|Jr",
        "Ann~Marie",
        "\\ B&C",
    )
    assert rxe.value(2, 1, 2) == drug
    assert (rxe.raw(3), rxe.raw(5)) == ("5", "mg^^UCUM")
    assert message.get("NTE-3") == "a|b^c~d&e\\f"
    strict_rde(message_bytes)


_text = st.text(
    alphabet=st.one_of(
        st.sampled_from("|^~\\&\n\r\t "),
        st.characters(blacklist_categories=("Cs", "Cc")),
    ),
    max_size=30,
)


@settings(max_examples=150, deadline=None)
@given(drug=_text, family=_text.filter(str.strip), given_name=_text, note=_text.filter(str.strip))
def test_arbitrary_text_never_shifts_fields(
    drug: str, family: str, given_name: str, note: str
) -> None:
    request = changed(REQUEST, "medicationCodeableConcept", value={
        "coding": [{"system": RXNORM, "code": "197361", "display": drug}]
    })  # fmt: skip
    request["note"] = [{"text": note}]
    patient = changed(PATIENT, "name", value=[{"family": family, "given": [given_name]}])
    for header in (RDE, ORM):
        message = parsed(build(request, patient, header))
        detail = "RXE" if header is RDE else "RXO"
        code_field = 2 if header is RDE else 1

        def same(text: str) -> str:
            return text.replace("\r\n", "\n").replace("\r", "\n")

        assert message.get("PID-5.1") == same(family)
        assert message.get("PID-5.2") == same(given_name)
        assert (message.get("PID-7"), message.get("PID-8")) == ("19700517", "F")
        assert message.get(f"{detail}-{code_field}.1") == "197361"
        assert message.get(f"{detail}-{code_field}.2") == same(drug)
        assert message.get(f"{detail}-{code_field}.3") == "RXN"
        assert message.get(f"{detail}-{code_field + 1}") == "5"
        assert message.get("NTE-3") == same(note)
        assert message.get("RXR-1") == "PO"


def test_what_medhub_sends_maps_back_through_its_own_inbound_mapper() -> None:
    for header in (RDE, ORM):
        result = map_orders(parsed(build(header=header)))
        assert result.patient["identifier"][0]["system"] == "urn:oid:1.2.840.114350"
        assert result.patient["gender"] == "female"
        (order,) = result.orders
        mapped = order.resource
        assert mapped["identifier"][0]["value"] == "rx1"
        assert mapped["status"] == "active"
        assert mapped["medicationCodeableConcept"]["coding"][0] == {
            "system": RXNORM, "code": "197361", "display": "amlodipine 5 MG Oral Tablet"
        }  # fmt: skip
        dosage = mapped["dosageInstruction"][0]
        assert dosage["text"] == "Take one tablet every 8 hours"
        assert dosage["doseAndRate"][0]["doseQuantity"] == {
            "value": 5, "unit": "mg", "system": "http://unitsofmeasure.org", "code": "mg"
        }  # fmt: skip
        assert mapped["dispenseRequest"]["numberOfRepeatsAllowed"] == 2
        assert mapped["authoredOn"] == "2024-03-01T09:30:00+01:00"
        assert mapped["note"] == [{"text": "Check blood pressure first"}]
        assert order.requester is not None
        assert order.requester["identifier"][0]["value"] == "1234567893"


# -- FHIR R4 examples -----------------------------------------------------------------------


def example(name: str) -> dict[str, Any]:
    resource: dict[str, Any] = json.loads((EXAMPLES / f"{name}.json").read_text("utf-8"))
    return resource


def test_the_fhir_r4_example_medrx0308_goes_through_both_shapes() -> None:
    request, patient = example("MedicationRequest-medrx0308"), example("Patient-pat1")
    requester = example("Practitioner-f007")
    rde = build(request, patient, requester=requester)
    strict_rde(rde)
    message = parsed(rde)
    assert message.get("PID-3") == "654321"
    rxe = message.segment("RXE")
    assert rxe is not None and rxe.raw(2) == "856907^Vicodin 5/500 Oral Tablet^RXN"
    assert (message.get("ORC-2"), message.get("ORC-5"), message.get("ORC-12")) == (
        "medrx0308", "CM", "874635264"
    )  # fmt: skip
    assert (message.get("TQ1-3"), message.get("TQ1-9"), message.get("RXR-1")) == (
        "Q4H",
        "PRN",
        "PO",
    )
    orm = build(request, patient, ORM, requester=requester)
    strict_orm_segments(orm, "2.5.1")
    assert parsed(orm).get("RXO-1") == "856907"


@pytest.mark.parametrize(
    "path", sorted(EXAMPLES.glob("MedicationRequest-*.json")), ids=lambda p: p.stem
)
def test_every_fhir_r4_example_is_sent_or_refused_naming_the_element(path: Path) -> None:
    request = json.loads(path.read_text("utf-8"))
    for header in (RDE, ORM):
        try:
            message = build(request, example("Patient-pat1"), header, requester=None)
        except MedhubError as exc:
            assert isinstance(exc, InputError)
            assert all(issue.expression for issue in exc.issues), exc
            continue
        if header is RDE:
            strict_rde(message)
        else:
            strict_orm_segments(message, "2.5.1")


# -- refused ---------------------------------------------------------------------------------


NO_DRUG = changed(REQUEST, "medicationCodeableConcept")
UNITLESS = changed(
    changed(REQUEST, *DOSAGE, "doseAndRate", 0, "doseQuantity", "code"),
    *DOSAGE, "doseAndRate", 0, "doseQuantity", "unit",
)  # fmt: skip
UNCODED_DRUG = changed(REQUEST, "medicationCodeableConcept", value={"coding": [{"system": RXNORM}]})
BY_REFERENCE = changed(NO_DRUG, "medicationReference", value={"reference": "Medication/m9"})


@pytest.mark.parametrize(
    ("request_", "patient", "kwargs", "expression", "where"),
    [
        (NO_DRUG, PATIENT, {}, "MedicationRequest.medicationCodeableConcept", "RXE-2"),
        (UNCODED_DRUG, PATIENT, {}, "MedicationRequest.medicationCodeableConcept", "RXE-2"),
        (BY_REFERENCE, PATIENT, {}, "MedicationRequest.medicationReference", "RXE-2"),
        (BY_REFERENCE, PATIENT, {"medication": {"resourceType": "Medication", "id": "m9"}},
         "Medication.code", "RXE-2"),
        (REQUEST, changed(PATIENT, "identifier"), {}, "Patient.identifier", "PID-3"),
        (REQUEST, changed(PATIENT, "identifier", value=[{"system": "urn:oid:1.2", "value": " "}]),
         {}, "Patient.identifier", "PID-3"),
        (REQUEST, changed(PATIENT, "name", value=[{"text": "Jane Doe"}]), {}, "Patient.name",
         "PID-5"),
        (changed(REQUEST, *DOSAGE, "doseAndRate"), PATIENT, {},
         "MedicationRequest.dosageInstruction[0].doseAndRate[0].doseQuantity", "RXE-3"),
        (UNITLESS, PATIENT, {},
         "MedicationRequest.dosageInstruction[0].doseAndRate[0].doseQuantity.unit", "RXE-5"),
        (changed(REQUEST, *DOSAGE, "route"), PATIENT, {},
         "MedicationRequest.dosageInstruction[0].route", "RXR-1"),
        (changed(changed(REQUEST, "id"), "identifier", value=[]), PATIENT, {},
         "MedicationRequest.id", "ORC-2"),
    ],
)  # fmt: skip
def test_missing_data_names_the_fhir_element(
    request_: dict[str, Any],
    patient: dict[str, Any],
    kwargs: dict[str, Any],
    expression: str,
    where: str,
) -> None:
    with pytest.raises(MissingDataError) as raised:
        build(request_, patient, **kwargs)
    issue = raised.value.issues[0]
    assert expression in issue.expression
    assert issue.location is not None and issue.location.terser() == where
    assert (raised.value.http_status, raised.value.fhir_issue_code) == (422, "required")


def test_orm_needs_no_dose_but_the_route_and_drug_are_still_required() -> None:
    no_dose = changed(REQUEST, *DOSAGE, "doseAndRate")
    assert parsed(build(no_dose, header=ORM)).get("RXO-2") == ""
    with pytest.raises(MissingDataError) as raised:
        build(NO_DRUG, header=ORM)
    assert raised.value.issues[0].location is not None
    assert raised.value.issues[0].location.terser() == "RXO-1"


@pytest.mark.parametrize(
    ("change", "kwargs", "expression"),
    [
        ({"dosageInstruction": REQUEST["dosageInstruction"] * 2}, {},
         "MedicationRequest.dosageInstruction[1]"),
        ({"subject": {"reference": "Patient/someone-else"}}, {}, "MedicationRequest.subject"),
        ({}, {"requester": {"resourceType": "Practitioner", "id": "dr2"}},
         "MedicationRequest.requester"),
        ({}, {"requester": {"resourceType": "Organization", "id": "dr1"}},
         "MedicationRequest.requester"),
        ({"encounter": {"reference": "Encounter/e1"}},
         {"encounter": {"resourceType": "Encounter", "id": "e2"}}, "MedicationRequest.encounter"),
        ({"authoredOn": "2024-13-01"}, {}, "MedicationRequest.authoredOn"),
        ({"authoredOn": "2024-03-01T10:00:00"}, {}, "MedicationRequest.authoredOn"),
        ({"dispenseRequest": {"numberOfRepeatsAllowed": -1}}, {},
         "MedicationRequest.dispenseRequest"),
    ],
)  # fmt: skip
def test_values_that_cannot_be_sent_are_refused_naming_the_element(
    change: dict[str, Any], kwargs: dict[str, Any], expression: str
) -> None:
    with pytest.raises(InputError) as raised:
        build({**REQUEST, **change}, **kwargs)
    assert not isinstance(raised.value, MissingDataError)
    assert raised.value.issues[0].expression == (expression,)


def test_a_medication_other_than_the_one_referenced_is_refused() -> None:
    other = {"resourceType": "Medication", "id": "m1", "code": {"text": "Warfarin"}}
    with pytest.raises(InputError, match="Medication/m9"):
        build(BY_REFERENCE, medication=other)


def test_call_and_header_mistakes_are_refused() -> None:
    with pytest.raises(InputError, match="MSH-10"):
        build_pharmacy_order(REQUEST, PATIENT, header=RDE, control_id="X" * 21, now=NOW)
    with pytest.raises(InputError, match="MSH-10"):
        build_pharmacy_order(REQUEST, PATIENT, header=RDE, control_id="", now=NOW)
    with pytest.raises(InputError, match="time zone"):
        build_pharmacy_order(REQUEST, PATIENT, header=RDE, control_id="1",
                             now=datetime(2024, 1, 1))  # fmt: skip
    with pytest.raises(InputError, match="table 0119"):
        build_pharmacy_order(REQUEST, PATIENT, header=RDE, control_id="1", now=NOW,
                             order_control="OK")  # type: ignore[arg-type]  # fmt: skip
    with pytest.raises(ConfigurationError, match="v2.5"):
        PharmacyOrderHeader(HierarchicDesignator("A"), HierarchicDesignator("B"), version="2.4")
    offset = datetime(2024, 3, 1, 9, 0, 5, tzinfo=timezone(timedelta(hours=1)))
    same = build_pharmacy_order(REQUEST, PATIENT, header=RDE, control_id="1", now=offset)
    assert parsed(same).get("MSH-7") == "20240301080005+0000"
