"""ORU^R01 -> Observation / DiagnosticReport / Device, pure: corpus, edge cases, generated OBX."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from medhub.clinical.resources import validate_resource
from medhub.clinical.vital_codes import (
    LOINC_SYSTEM,
    MDC_SYSTEM,
    UCUM_SYSTEM,
    ucum_for_mdc_unit,
    vital_for_loinc,
    vital_for_mdc,
)
from medhub.errors import InputError, MedhubError, MissingDataError
from medhub.hl7.er7 import Delimiters, Message, decode_er7, escape, parse_er7
from medhub.hl7.observation_mapping import EUI64_SYSTEM, RESULT_STATUS, SUBID_EXTENSION, eui64
from medhub.hl7.observation_values import VALUE_EXTENSION
from medhub.hl7.pcd01_builder import (
    Containment,
    DeviceObservation,
    HierarchicDesignator,
    PatientIdentifier,
    Pcd01Header,
    PcdPatient,
    build_pcd01_oru,
)
from medhub.hl7.result_mapping import ResultMessage, map_results

SUBJECT = {"reference": "Patient/p1"}
MSH = "MSH|^~\\&|LIS|LAB|MEDHUB|ICU|{msh7}||ORU^R01^ORU_R01|R1|P|2.5.1"
PID = "PID|1||MRN-7^^^HOSP&1.2.3&ISO^MR||ROE^RICHARD||19600101|M"
OBR = "OBR|1|PLC-1^CPOE|FIL-1^LIS|24317-0^CBC^LN|||20240301081500+0100||||||||||||||||||F"


def obx(
    value: str = "72",
    *,
    n: int = 1,
    value_type: str = "NM",
    code: str = "8867-4^Heart rate^LN",
    sub: str = "",
    units: str = "/min",
    ref: str = "",
    flags: str = "",
    status: str = "F",
    time: str = "",
    equipment: str = "",
) -> str:
    fields = ["OBX", str(n), value_type, code, sub, value, units, ref, flags, "", "", status]
    fields += ["", "", time, "", "", "", equipment]
    return "|".join(fields)


def oru(*segments: str, msh7: str = "20240301090000+0100", obr: str | None = OBR) -> Message:
    body = [MSH.format(msh7=msh7), PID, *([obr] if obr else []), *segments]
    return parse_er7("\r".join(body) + "\r")


def observations(mapped: ResultMessage) -> list[dict[str, Any]]:
    return [o.resource for p in mapped.patients for g in p.groups for o in g.observations]


def only(message: Message) -> dict[str, Any]:
    [observation] = observations(map_results(message))
    return observation


def assert_all_valid(mapped: ResultMessage) -> int:
    """Validate every resource a result message maps to, linked the way the applier links them."""
    count = 0
    for patient in mapped.patients:
        validate_resource(patient.patient, expected_type="Patient")
        for group in patient.groups:
            for observation in group.observations:
                resource = {**observation.resource, "subject": SUBJECT}
                if observation.equipment is not None:
                    device = mapped.device(observation.equipment, SUBJECT)
                    assert validate_resource(device, expected_type="Device") == device
                    resource["device"] = {"reference": "Device/d1"}
                assert validate_resource(resource, expected_type="Observation") == resource
                assert resource["status"] in set(RESULT_STATUS.values())
                count += 1
            if group.report is not None:
                results = [{"reference": f"Observation/o{i}"} for i in range(count)]
                report = {**group.report, "subject": SUBJECT, "result": results or None}
                report = {k: v for k, v in report.items() if v is not None}
                assert validate_resource(report, expected_type="DiagnosticReport") == report
                assert report["status"] in {
                    "registered",
                    "partial",
                    "preliminary",
                    "final",
                    "amended",
                    "corrected",
                    "cancelled",
                    "unknown",
                }
                count += 1
    return count


def refusal(message: Message) -> MedhubError:
    with pytest.raises(MedhubError) as caught:
        map_results(message)
    return caught.value


def err(error: MedhubError) -> tuple[str, int | None]:
    [issue] = error.issues
    assert issue.location is not None
    return issue.location.to_er7(), issue.hl7_error_code


# -- the corpus ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("hl7/ORU-R01-RMGEAD.hl7", 2),
        ("hl7/LAB-ORU-1.hl7", 12),
        ("hl7/LRI_2.0-NG_CBC_Typ_Message.hl7", 29),
        ("bench/oru_pcd01_7seg.hl7", 3),
    ],
)
def test_every_corpus_result_maps_to_valid_resources(
    corpus: Path, name: str, expected: int
) -> None:
    message = parse_er7(decode_er7((corpus / name).read_bytes()))
    assert assert_all_valid(map_results(message)) == expected


def test_the_corpus_oru_with_an_obx_without_code_is_refused_at_that_obx(corpus: Path) -> None:
    message = parse_er7(decode_er7((corpus / "hl7" / "ORU-R01-01.hl7").read_bytes()))
    error = refusal(message)
    assert isinstance(error, MissingDataError)
    assert err(error) == ("OBX^2^3", 101)
    assert "OBX(2)-3" in error.message


def test_pcd01_bench_message_gives_mdc_and_loinc_codes_with_ucum_units(corpus: Path) -> None:
    message = parse_er7(decode_er7((corpus / "bench" / "oru_pcd01_7seg.hl7").read_bytes()))
    mapped = map_results(message)
    spo2, heart, resp = observations(mapped)
    assert spo2["code"]["coding"][0] == {
        "system": MDC_SYSTEM,
        "code": "150456",
        "display": "MDC_PULS_OXIM_SAT_O2",
    }
    assert {c["code"] for c in spo2["code"]["coding"][1:]} == {"2708-6", "59408-5"}
    assert heart["code"]["coding"][1]["code"] == "8867-4"
    assert resp["code"]["coding"][1]["code"] == "9279-1"
    assert spo2["valueQuantity"] == {"value": 97, "unit": "%", "system": UCUM_SYSTEM, "code": "%"}
    assert heart["valueQuantity"]["code"] == "/min"
    assert all(o["category"][0]["coding"][0]["code"] == "vital-signs" for o in (spo2, heart, resp))
    assert spo2["extension"] == [{"url": SUBID_EXTENSION, "valueString": "1.1.1.1"}]
    # No offset in OBX-14 nor MSH-7: only the date is safe to keep.
    assert spo2["effectiveDateTime"] == "2025-10-16"
    # OBX-18 is on the first metric only: the others of the same MDS inherit it.
    equipment = [o.equipment for p in mapped.patients for g in p.groups for o in g.observations]
    assert equipment == [equipment[0]] * 3
    assert equipment[0] == {"system": "urn:medhub:assigning-authority:MONITOR", "value": "MON-1"}
    assert [g.report for g in mapped.patients[0].groups] == [None]  # device data: no report


# -- PCD-01 device containment and EUI-64 ------------------------------------------------


def test_device_related_obx_types_the_device_and_is_not_an_observation() -> None:
    message = oru(
        obx(
            "",
            value_type="",
            code="69965^MDC_DEV_MON_PHYSIO_MULTI_PARAM_MDS^MDC",
            sub="1.0.0.0",
            units="",
            status="X",
            equipment="0123456789ABCDEF^MONITOR^0123456789ABCDEF^EUI-64",
        ),
        obx("98", n=2, code="150456^MDC_PULS_OXIM_SAT_O2^MDC", sub="1.1.1.1", units="%"),
        obx("61", n=3, code="149530^MDC_PULS_OXIM_PULS_RATE^MDC", sub="1.1.1.2", units="bpm"),
        obr="OBR|1||MSG-77^MON|182777000^monitoring of patient^SCT|||20240301081500+0100",
    )
    mapped = map_results(message)
    spo2, pulse = observations(mapped)
    eui = {"system": EUI64_SYSTEM, "value": "01-23-45-67-89-AB-CD-EF"}
    group = mapped.patients[0].groups[0]
    assert [o.equipment for o in group.observations] == [eui, eui]
    device = mapped.device(eui, SUBJECT)
    assert device["type"]["coding"][0]["code"] == "69965"
    assert validate_resource(device) == device
    assert pulse["code"]["coding"][1] == {
        "system": LOINC_SYSTEM,
        "code": "8867-4",
        "display": "Heart rate",
    }
    assert pulse["valueQuantity"]["code"] == "/min"
    assert spo2["identifier"] == [
        {"system": "urn:medhub:assigning-authority:MON", "value": "MSG-77/150456/1.1.1.1"}
    ]


def test_what_medhubs_own_pcd01_builder_writes_maps_back() -> None:
    at = datetime(2024, 3, 1, 9, 0, tzinfo=UTC)
    raw = build_pcd01_oru(
        PcdPatient((PatientIdentifier("MRN-1", HierarchicDesignator("HOSP")),), "DOE"),
        [
            DeviceObservation("0123456789abcdef", Containment(1, 1, 1, 1), "150456",
                              "MDC_PULS_OXIM_SAT_O2", 96, "%", at, "F"),
            DeviceObservation("0123456789abcdef", Containment(1, 1, 2, 1), "150021",
                              "MDC_PRESS_BLD_NONINV_SYS", 121.5, "mm[Hg]", at),
        ],
        header=Pcd01Header(HierarchicDesignator("GW"), HierarchicDesignator("MEDHUB")),
        control_id="B1",
        now=at,
    )  # fmt: skip
    mapped = map_results(parse_er7(decode_er7(raw)))
    assert assert_all_valid(mapped) == 2
    spo2, systolic = observations(mapped)
    equipment = {o.equipment["value"] for g in mapped.patients[0].groups for o in g.observations
                 if o.equipment}  # fmt: skip
    assert equipment == {"01-23-45-67-89-AB-CD-EF"}
    assert (spo2["status"], systolic["status"]) == ("final", "preliminary")
    assert systolic["code"]["coding"][1]["code"] == "8480-6"
    assert systolic["valueQuantity"] == {
        "value": 121.5,
        "unit": "mm[Hg]",
        "system": UCUM_SYSTEM,
        "code": "mm[Hg]",
    }
    assert spo2["effectiveDateTime"] == "2024-03-01T09:00:00+00:00"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("0123456789abcdef", "01-23-45-67-89-AB-CD-EF"),
        ("01-23-45-67-89-AB-CD-EF", "01-23-45-67-89-AB-CD-EF"),
        ("01:23:45:67:89:ab:cd:ef", "01-23-45-67-89-AB-CD-EF"),
        ("0123456789ABCDE", None),
        ("MON-1", None),
    ],
)
def test_eui64_is_written_as_the_pocd_ig_does(text: str, expected: str | None) -> None:
    assert eui64(text) == expected


# -- identity ------------------------------------------------------------------------------


def test_identifier_is_filler_number_code_and_sub_id_so_a_correction_maps_the_same() -> None:
    first = only(oru(obx("72", n=1, sub="1")))
    corrected = only(oru(obx("75", n=4, sub="1", status="C")))
    assert first["identifier"] == corrected["identifier"]
    assert first["identifier"] == [
        {"system": "urn:medhub:assigning-authority:LIS", "value": "FIL-1/8867-4/1"}
    ]
    assert corrected["status"] == "corrected"


def test_two_obx_with_the_same_code_and_sub_id_still_get_distinct_identifiers() -> None:
    mapped = map_results(oru(obx("1", n=1), obx("2", n=2)))
    first, second = observations(mapped)
    assert first["identifier"] != second["identifier"]


def test_a_lab_group_becomes_a_diagnostic_report_with_both_order_numbers() -> None:
    mapped = map_results(oru(obx("72")))
    report = mapped.patients[0].groups[0].report
    assert report is not None
    assert [(i["value"], i["type"]["coding"][0]["code"]) for i in report["identifier"]] == [
        ("FIL-1", "FILL"),
        ("PLC-1", "PLAC"),
    ]
    assert report["status"] == "final"
    assert report["effectiveDateTime"] == "2024-03-01T08:15:00+01:00"
    assert only(oru(obx("72")))["category"][0]["coding"][0]["code"] == "vital-signs"
    lab = only(oru(obx("4.1", code="718-7^Hemoglobin^LN", units="g/dL")))
    assert lab["category"][0]["coding"][0]["code"] == "laboratory"


def test_an_obx_without_any_obr_is_keyed_by_patient_time_and_code() -> None:
    observation = only(oru(obx("72", time="20240301080000+0100"), obr=None))
    assert observation["identifier"][0]["value"] == "MRN-7/2024-03-01T08:00:00+01:00/8867-4"


# -- values --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value_type", "value", "units", "expected"),
    [
        ("NM", "7.25", "mmol/L", {"valueQuantity": {"value": 7.25, "code": "mmol/L"}}),
        ("NM", "-3", "", {"valueQuantity": {"value": -3}}),
        ("SN", "<^5", "mg/dl", {"valueQuantity": {"value": 5, "comparator": "<"}}),
        ("SN", ">=^10", "", {"valueQuantity": {"value": 10, "comparator": ">="}}),
        ("SN", "^2^-^4", "", {"valueRange": {"low": {"value": 2}, "high": {"value": 4}}}),
        (
            "SN",
            "^1^:^128",
            "",
            {"valueRatio": {"numerator": {"value": 1}, "denominator": {"value": 128}}},
        ),
        ("SN", "^2^+", "", {"valueString": "2+"}),
        ("NR", "3.5^5.5", "", {"valueRange": {"low": {"value": 3.5}, "high": {"value": 5.5}}}),
        ("ST", "positive~confirmed", "", {"valueString": "positive\nconfirmed"}),
        ("TX", "line 1\\.br\\line 2", "", {"valueString": "line 1\nline 2"}),
        ("DT", "20240229", "", {"valueDateTime": "2024-02-29"}),
        ("TS", "202402291230-0500", "", {"valueDateTime": "2024-02-29T12:30:00-05:00"}),
        ("TM", "0830", "", {"valueTime": "08:30:00"}),
        (
            "CWE",
            "260373001^Detected^SCT",
            "",
            {
                "valueCodeableConcept": {
                    "coding": [
                        {
                            "system": "http://snomed.info/sct",
                            "code": "260373001",
                            "display": "Detected",
                        }
                    ]
                }
            },
        ),
    ],
)
def test_obx5_maps_by_value_type(
    value_type: str, value: str, units: str, expected: dict[str, Any]
) -> None:
    observation = only(oru(obx(value, value_type=value_type, code="X1^Test^L", units=units)))
    for key, want in expected.items():
        got = observation[key]
        if key in ("valueQuantity",):
            got = {k: v for k, v in got.items() if k in want}
        assert got == want
    assert validate_resource({**observation, "subject": SUBJECT})


def test_attachments_travel_in_the_r5_value_extension() -> None:
    image = only(oru(obx("^IM^JPEG^Base64^SGVsbG8=", value_type="ED", code="X^Img^L", units="")))
    assert image["extension"] == [
        {
            "url": VALUE_EXTENSION,
            "valueAttachment": {"data": "SGVsbG8=", "contentType": "image/jpeg"},
        }
    ]
    link = only(oru(obx("https://pacs/x^^IM^PNG", value_type="RP", code="X^Img^L", units="")))
    assert link["extension"][0]["valueAttachment"] == {
        "url": "https://pacs/x",
        "contentType": "image/png",
    }
    for resource in (image, link):
        validate_resource({**resource, "subject": SUBJECT})


def test_an_empty_value_is_a_pending_result_without_value() -> None:
    observation = only(oru(obx("", status="I")))
    assert observation["status"] == "registered"
    assert not any(key.startswith("value") for key in observation)


@pytest.mark.parametrize(
    ("segment", "location", "code", "kind"),
    [
        (obx("seventy-two", n=2), "OBX^2^5", 102, InputError),
        (obx("72~80", n=2), "OBX^2^5^2", 102, InputError),
        (obx("72", n=2, code=""), "OBX^2^3", 101, MissingDataError),
        (obx("72", n=2, status=""), "OBX^2^11", 101, MissingDataError),
        (obx("72", n=2, status="Q"), "OBX^2^11", 103, InputError),
        (obx("72", n=2, value_type=""), "OBX^2^2", 101, MissingDataError),
        (obx("1", n=2, value_type="NA"), "OBX^2^2", 103, InputError),
        (obx("!!^5", n=2, value_type="SN"), "OBX^2^5^^1", 102, InputError),
        (obx("20240230", n=2, value_type="DT"), "OBX^2^5", 102, InputError),
        (obx("72", n=2, time="20240301256000"), "OBX^2^14", 102, InputError),
        (obx("^IM^JPEG^Base64^not base64!", n=2, value_type="ED"), "OBX^2^5^^5", 102, InputError),
    ],
)
def test_unusable_content_is_refused_naming_the_field(
    segment: str, location: str, code: int, kind: type[MedhubError]
) -> None:
    error = refusal(oru(obx("1"), segment))
    assert isinstance(error, kind)
    assert err(error) == (location, code)
    assert error.hl7_ack_code == "AE"
    if "date/time" not in error.message:  # (date errors come from the shared DTM mapper)
        assert "OBX(2)-" in error.message  # the text names the second OBX too


# -- dates, flags, ranges ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("obx14", "msh7", "expected"),
    [
        ("20240301081530+0100", "20240301090000", "2024-03-01T08:15:30+01:00"),
        ("202403010815", "20240301090000-0500", "2024-03-01T08:15:00-05:00"),
        ("2024030108", "20240301090000+0000", "2024-03-01T08:00:00+00:00"),
        ("20240301081530.25+0530", "", "2024-03-01T08:15:30.25+05:30"),
        ("20240301081530", "20240301090000", "2024-03-01"),
        ("202403", "20240301090000+0100", "2024-03"),
    ],
)
def test_effective_keeps_the_zone_or_only_the_safe_precision(
    obx14: str, msh7: str, expected: str
) -> None:
    observation = only(oru(obx("72", time=obx14), msh7=msh7 or "20240301090000"))
    assert observation["effectiveDateTime"] == expected


def test_obr7_is_the_effective_time_when_obx14_is_empty() -> None:
    assert only(oru(obx("72")))["effectiveDateTime"] == "2024-03-01T08:15:00+01:00"


@pytest.mark.parametrize(
    ("flags", "codes", "critical"),
    [
        ("N", ["N"], None),
        ("H", ["H"], None),
        ("HH", ["HH"], "HH"),
        ("LL", ["LL"], "LL"),
        ("A~AA", ["A", "AA"], "AA"),
        ("CH", ["HH"], "HH"),
    ],
)
def test_interpretation_and_critical_flags(
    flags: str, codes: list[str], critical: str | None
) -> None:
    [mapped] = [
        o
        for p in map_results(oru(obx("300", flags=flags))).patients
        for g in p.groups
        for o in g.observations
    ]
    got = [c["coding"][0]["code"] for c in mapped.resource["interpretation"]]
    assert got == codes
    assert mapped.critical_flag == critical


def test_a_cancelled_critical_result_raises_no_alert() -> None:
    [mapped] = [
        o
        for p in map_results(oru(obx("300", flags="HH", status="X"))).patients
        for g in p.groups
        for o in g.observations
    ]
    assert mapped.resource["status"] == "cancelled"
    assert mapped.critical_flag is None


def test_reference_range_gets_low_and_high_when_it_reads_as_a_range() -> None:
    observation = only(oru(obx("12.5", units="g/dL^^UCUM", ref="13 to 18", flags="L")))
    [reference] = observation["referenceRange"]
    assert reference["text"] == "13 to 18"
    assert reference["low"]["value"] == 13 and reference["high"]["value"] == 18
    assert reference["low"]["code"] == "g/dL"
    assert only(oru(obx("3", ref="<5")))["referenceRange"] == [{"text": "<5"}]


@pytest.mark.parametrize(
    ("units", "expected"),
    [
        ("mmHg", {"unit": "mm[Hg]", "system": UCUM_SYSTEM, "code": "mm[Hg]"}),
        ("bpm", {"unit": "/min", "system": UCUM_SYSTEM, "code": "/min"}),
        ("266016^MDC_DIM_MMHG^MDC", {"unit": "mm[Hg]", "system": UCUM_SYSTEM, "code": "mm[Hg]"}),
        (
            "{cells}/uL^cells per microliter^UCUM",
            {"unit": "cells per microliter", "system": UCUM_SYSTEM, "code": "{cells}/uL"},
        ),
        ("giga.l-1", {"unit": "10*9/L", "system": UCUM_SYSTEM, "code": "10*9/L"}),
        ("furlongs", {"unit": "furlongs"}),
    ],
)
def test_units_become_ucum_only_when_known(units: str, expected: dict[str, str]) -> None:
    quantity = only(oru(obx("1", units=units)))["valueQuantity"]
    assert {k: v for k, v in quantity.items() if k != "value"} == expected


def test_vital_code_table_covers_the_charted_vitals() -> None:
    expected = {
        "149530": "8867-4",
        "147842": "8867-4",
        "150456": "2708-6",
        "151562": "9279-1",
        "150021": "8480-6",
        "150033": "8480-6",
        "150022": "8462-4",
        "150034": "8462-4",
        "150023": "8478-0",
        "150035": "8478-0",
        "150344": "8310-5",
    }
    for mdc, loinc in expected.items():
        vital = vital_for_mdc(mdc)
        assert vital is not None and vital.loinc[0].code == loinc
        assert vital_for_loinc(loinc) is not None
    assert vital_for_mdc("150456") is vital_for_mdc("MDC_PULS_OXIM_SAT_O2")
    assert ucum_for_mdc_unit("264864") == "/min"
    assert vital_for_mdc("999999") is None


# -- generated OBX -------------------------------------------------------------------------

_UNITS = st.sampled_from(
    [
        ("", None),
        ("%", "%"),
        ("mmHg", "mm[Hg]"),
        ("bpm", "/min"),
        ("mg/dl", "mg/dL"),
        ("10*9/L^^UCUM", "10*9/L"),
        ("262688^MDC_DIM_PERCENT^MDC", "%"),
        ("caps^capsule", None),
    ]
)
_FLAGS = st.lists(st.sampled_from(["N", "H", "L", "HH", "LL", "A", "AA", "CH", "XYZ"]), max_size=2)
_TEXT = st.text(
    alphabet=st.characters(blacklist_categories=("Cs", "Cc")), min_size=1, max_size=40
).filter(lambda t: t.strip() != "")


@st.composite
def generated_obx(draw: st.DrawFn) -> tuple[str, str, Any, str, str | None, list[str]]:
    """A random NM/ST/CE/CWE OBX: (type, OBX-5, expected value, OBX-6, expected UCUM, flags)."""
    kind = draw(st.sampled_from(["NM", "ST", "CE", "CWE"]))
    units, ucum = draw(_UNITS)
    flags = draw(_FLAGS)
    if kind == "NM":
        raw = draw(st.from_regex(r"[+-]?\d{1,7}(\.\d{1,4})?", fullmatch=True))
        expected: Any = float(raw)
    elif kind == "ST":
        text = draw(_TEXT)
        raw, expected = escape(text, Delimiters()), text
    else:
        code = draw(st.from_regex(r"[A-Za-z0-9-]{1,12}", fullmatch=True))
        system = draw(st.sampled_from(["LN", "SCT", "L", "99ZZZ", ""]))
        raw, expected = f"{code}^Label^{system}", code
    return kind, raw, expected, units, ucum, flags


@settings(max_examples=200, deadline=None)
@given(generated_obx(), st.sampled_from(sorted(RESULT_STATUS)))
def test_generated_obx_map_to_valid_observations(
    case: tuple[str, str, Any, str, str | None, list[str]], status: str
) -> None:
    kind, raw, expected, units, ucum, flags = case
    segment = obx(
        raw, value_type=kind, code="X^Test^L", units=units, flags="~".join(flags), status=status
    )
    mapped = map_results(oru(segment))
    assert assert_all_valid(mapped) == 2  # the Observation and its DiagnosticReport
    [observation] = observations(mapped)
    assert observation["status"] == RESULT_STATUS[status]
    if kind == "NM":
        assert observation["valueQuantity"]["value"] == pytest.approx(expected)
        assert observation["valueQuantity"].get("code") == ucum
    elif kind == "ST":
        assert observation["valueString"] == expected
    else:
        assert observation["valueCodeableConcept"]["coding"][0]["code"] == expected
    assert len(observation.get("interpretation", [])) == len(flags)
    critical = {"HH", "LL", "AA", "CH"} & set(flags)
    live = observation["status"] in {"preliminary", "final", "amended", "corrected"}
    [result] = [o for p in mapped.patients for g in p.groups for o in g.observations]
    assert (result.critical_flag is not None) == bool(critical and live)
