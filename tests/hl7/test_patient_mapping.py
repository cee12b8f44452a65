"""PID -> FHIR Patient, on real corpus messages and on hand-written edge cases."""

from __future__ import annotations

from pathlib import Path

import pytest

from medhub.clinical.identifiers import LOCAL_AUTHORITY_PREFIX, V2_0203
from medhub.clinical.resources import validate_resource
from medhub.errors import Hl7Location, MedhubError, MissingDataError
from medhub.hl7.er7 import Message, decode_er7, parse_er7
from medhub.hl7.patient_mapping import V3_MARITAL, pid_to_patient


def message(pid: str | None, msh9: str = "ADT^A01^ADT_A01") -> Message:
    segments = [f"MSH|^~\\&|ADT|GHH|MEDHUB|ICU|20240101120000||{msh9}|C1|P|2.5.1", "EVN|A01"]
    if pid is not None:
        segments.append(pid)
    segments.append("PV1|1|I")
    return parse_er7("\r".join(segments) + "\r")


def pid(
    *, pid3: str = "MRN-1^^^HOSP^MR", pid5: str = "DOE^JANE", pid7: str = "", pid8: str = ""
) -> str:
    return f"PID|1||{pid3}||{pid5}||{pid7}|{pid8}"


def corpus_message(corpus: Path, name: str) -> Message:
    return parse_er7(decode_er7((corpus / "hl7" / name).read_bytes()))


def map_error(msg: Message) -> MedhubError:
    with pytest.raises(MedhubError) as caught:
        pid_to_patient(msg)
    return caught.value


# -- the corpus --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name",
    [
        "ADT-A01-01.hl7",
        "ADT-A04-01.hl7",
        "ADT-A08-01.hl7",
        "ADT-A28-01.hl7",
        "ADT-A31-01.hl7",
        "ADT04-251.hl7",
        "ORU-R01-01.hl7",
        "SIU-S12-01.hl7",
        "VXU-V04-01.hl7",
    ],
)
def test_corpus_pid_maps_to_a_valid_patient(corpus: Path, name: str) -> None:
    patient = pid_to_patient(corpus_message(corpus, name))
    assert validate_resource(patient, expected_type="Patient") == patient
    assert patient["identifier"] and all(i["value"] for i in patient["identifier"])


def test_every_corpus_message_with_a_pid_maps_to_a_valid_patient(corpus: Path) -> None:
    mapped = 0
    for path in sorted((corpus / "hl7").glob("*.hl7")):
        msg = parse_er7(decode_er7(path.read_bytes()))
        if msg.segment("PID") is None:
            continue
        validate_resource(pid_to_patient(msg), expected_type="Patient")
        mapped += 1
    assert mapped >= 50


def test_adt_a01_values_are_mapped_field_by_field(corpus: Path) -> None:
    patient = pid_to_patient(corpus_message(corpus, "ADT-A01-01.hl7"))
    assert patient["resourceType"] == "Patient"
    assert "id" not in patient
    # PID-3: PATID1234^5^M11^test1&2.16.1&HCD^MR^...~123456789^^^USSSA^SS
    # (universal id type HCD is not ISO/UUID/URI: the namespace names the system)
    assert patient["identifier"] == [
        {
            "value": "PATID1234",
            "system": LOCAL_AUTHORITY_PREFIX + "test1",
            "type": {"coding": [{"system": V2_0203, "code": "MR"}]},
        },
        {
            "value": "123456789",
            "system": LOCAL_AUTHORITY_PREFIX + "USSSA",
            "type": {"coding": [{"system": V2_0203, "code": "SS"}]},
        },
    ]
    # PID-5: EVERYMAN&&&&Aniston^ADAM^A^III^Dr.^MD^D~Josh&&&&Bing^^stanley^^^^L
    assert patient["name"] == [
        {
            "family": "EVERYMAN",
            "given": ["ADAM", "A"],
            "suffix": ["III"],
            "prefix": ["Dr."],
            "use": "usual",
        },
        {"family": "Josh", "given": ["stanley"], "use": "official"},
    ]
    assert patient["birthDate"] == "1988-08-18"  # PID-7 198808181126+0215
    assert patient["gender"] == "male"
    assert patient["address"] == [
        {
            "line": ["1000 Hospital Lane", "Ste. 123"],
            "city": "Ann Arbor",  # sent as "Ann Arbor " (trailing blank trimmed)
            "state": "MI",
            "postalCode": "99999",
            "country": "USA",
            "use": "home",
        }
    ]
    assert patient["telecom"] == [
        {"system": "phone", "value": "78788788", "use": "mobile"},
        {"system": "phone", "value": "12121212", "use": "mobile"},
        {"system": "phone", "value": "7777", "use": "mobile"},
        {"system": "phone", "value": "1111", "use": "work"},
    ]
    assert patient["maritalStatus"] == {"coding": [{"system": V3_MARITAL, "code": "M"}]}
    assert patient["deceasedDateTime"] == "2008-08-25"  # PID-29 20080825111630+0115
    assert "deceasedBoolean" not in patient


def test_adt_a04_maps_the_same_patient_as_adt_a01(corpus: Path) -> None:
    a01 = pid_to_patient(corpus_message(corpus, "ADT-A01-01.hl7"))
    a04 = pid_to_patient(corpus_message(corpus, "ADT-A04-01.hl7"))
    assert a04 == a01


# -- required data --------------------------------------------------------------------------


def test_a_message_without_pid_is_missing_data() -> None:
    error = map_error(message(None))
    assert isinstance(error, MissingDataError)
    assert error.hl7_ack_code == "AE"
    assert error.issues[0].location == Hl7Location("PID")


@pytest.mark.parametrize("pid3", ["", "^^^HOSP^MR", "~"])
def test_an_empty_pid_3_is_missing_data_at_pid_3(pid3: str) -> None:
    error = map_error(message(pid(pid3=pid3)))
    assert isinstance(error, MissingDataError)
    assert "PID-3" in error.message
    assert error.issues[0].location == Hl7Location("PID", 1, 3)
    assert error.issues[0].hl7_error_code == 101


@pytest.mark.parametrize("pid7", ["unknown", "12", "19A0", "19701", "1970051"])
def test_a_bad_pid_7_is_reported_at_pid_7(pid7: str) -> None:
    error = map_error(message(pid(pid7=pid7)))
    assert isinstance(error, MissingDataError)
    assert error.issues[0].location == Hl7Location("PID", 1, 7)
    assert "PID-7" in error.message


@pytest.mark.parametrize("pid7", ["20241345", "20240230", "19700017", "197013"])
def test_an_impossible_pid_7_date_is_reported_at_pid_7(pid7: str) -> None:
    error = map_error(message(pid(pid7=pid7)))
    assert isinstance(error, MissingDataError)
    assert error.issues[0].location == Hl7Location("PID", 1, 7)
    assert error.issues[0].hl7_error_code == 102


@pytest.mark.parametrize(
    ("pid7", "birth"),
    [
        ("1970", "1970"),
        ("197005", "1970-05"),
        ("19700517", "1970-05-17"),
        ("197005171230", "1970-05-17"),
        ("19700517123000.5-0500", "1970-05-17"),
    ],
)
def test_pid_7_precision_is_kept_down_to_the_day(pid7: str, birth: str) -> None:
    patient = pid_to_patient(message(pid(pid7=pid7)))
    assert patient["birthDate"] == birth
    validate_resource(patient)


@pytest.mark.parametrize(
    ("pid8", "gender"),
    [("M", "male"), ("F", "female"), ("U", "unknown"), ("O", "other"), ("f", "female")],
)
def test_pid_8_administrative_sex_maps_to_gender(pid8: str, gender: str) -> None:
    assert pid_to_patient(message(pid(pid8=pid8)))["gender"] == gender


def test_an_absent_pid_8_gives_no_gender() -> None:
    assert "gender" not in pid_to_patient(message(pid()))


def test_a_pid_8_outside_table_0001_is_refused_at_pid_8() -> None:
    error = map_error(message(pid(pid8="X")))
    assert isinstance(error, MissingDataError)
    assert error.issues[0].location == Hl7Location("PID", 1, 8)
    assert error.issues[0].hl7_error_code == 103


# -- values ---------------------------------------------------------------------------------


def test_escape_sequences_in_names_are_decoded() -> None:
    patient = pid_to_patient(message(pid(pid5="O\\T\\NEIL\\S\\SMITH^REN\\XC3A9\\^A\\F\\B")))
    assert patient["name"] == [{"family": "O&NEIL^SMITH", "given": ["RENé", "A|B"]}]
    validate_resource(patient)


@pytest.mark.parametrize(
    ("authority", "system"),
    [
        ("HOSP&1.2.840.114350&ISO", "urn:oid:1.2.840.114350"),
        ("&2.16.840.1.113883.4.1&ISO", "urn:oid:2.16.840.1.113883.4.1"),
        (
            "X&A1B2C3D4-0000-4000-8000-00000000000F&UUID",
            "urn:uuid:a1b2c3d4-0000-4000-8000-00000000000f",
        ),
        ("X&http://hospital.example/mrn&URI", "http://hospital.example/mrn"),
        ("http://hospital.example/ids", "http://hospital.example/ids"),
        ("HOSP", LOCAL_AUTHORITY_PREFIX + "HOSP"),
    ],
)
def test_assigning_authority_becomes_the_identifier_system(authority: str, system: str) -> None:
    patient = pid_to_patient(message(pid(pid3=f"MRN-1^^^{authority}^MR")))
    assert patient["identifier"][0]["system"] == system
    assert patient["identifier"][0]["value"] == "MRN-1"


def test_an_identifier_without_authority_or_type_has_only_a_value() -> None:
    patient = pid_to_patient(message(pid(pid3="12345")))
    assert patient["identifier"] == [{"value": "12345"}]


def test_repetitions_without_a_value_are_skipped() -> None:
    patient = pid_to_patient(message(pid(pid3="^^^A~MRN-2^^^B^MR~")))
    assert [i["value"] for i in patient["identifier"]] == ["MRN-2"]


def test_email_phone_and_death_indicator() -> None:
    pid_segment = (
        "PID|1||MRN-1^^^HOSP^MR||DOE^JANE||19700517|F|||||"
        "^PRN^PH^^^217^5551234~^NET^Internet^jane@example.org|(555)123-4567^WPN^FX"
        "||S" + "|" * 14 + "Y"
    )
    patient = pid_to_patient(message(pid_segment))
    assert patient["telecom"] == [
        {"system": "phone", "value": "(217) 5551234", "use": "home"},
        {"system": "email", "value": "jane@example.org"},
        {"system": "fax", "value": "(555)123-4567", "use": "work"},
    ]
    assert patient["maritalStatus"]["coding"][0]["code"] == "S"
    assert patient["deceasedBoolean"] is True
    assert "address" not in patient
    validate_resource(patient)
