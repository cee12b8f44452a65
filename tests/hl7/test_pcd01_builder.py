"""The IHE PCD-01 ORU^R01 builder: read back by medhub's parser, python-hl7 and hl7apy."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal

import hl7
import pytest
from hl7apy.consts import VALIDATION_LEVEL
from hl7apy.parser import parse_message
from hypothesis import given, settings
from hypothesis import strategies as st

from medhub.errors import InputError, MissingDataError
from medhub.hl7.er7 import decode_er7, parse_er7
from medhub.hl7.pcd01_builder import (
    Containment,
    DeviceObservation,
    HierarchicDesignator,
    PatientIdentifier,
    Pcd01Header,
    PcdPatient,
    build_pcd01_oru,
)

NOW = datetime(2024, 3, 1, 8, 0, 5, tzinfo=UTC)
AT = datetime(2024, 3, 1, 9, 0, 0, 250_000, tzinfo=timezone(timedelta(hours=1)))
EUI = "0123456789ABCDEF"
HEADER = Pcd01Header(
    sending_application=HierarchicDesignator("MEDHUB", EUI, "EUI-64"),
    receiving_application=HierarchicDesignator("CIS"),
    receiving_facility=HierarchicDesignator("GHH"),
)
PATIENT = PcdPatient(
    identifiers=(
        PatientIdentifier("MRN-1", HierarchicDesignator("HOSP", "1.2.840.114350", "ISO")),
        PatientIdentifier("987", HierarchicDesignator("NHS"), "NH"),
    ),
    family="DOE",
    given="JANE",
    birth_date=date(1970, 5, 17),
    sex="F",
    point_of_care="ICU",
    room="101",
    bed="A",
)


def observation(
    code: str = "150456",
    text: str = "MDC_PULS_OXIM_SAT_O2",
    value: int | float | Decimal | str = 98,
    unit: str = "%",
    metric: int = 1,
    eui: str = EUI,
) -> DeviceObservation:
    return DeviceObservation(eui, Containment(1, 2, 1, metric), code, text, value, unit, AT)


VITALS = [
    observation(),
    observation("149530", "MDC_PULS_OXIM_PULS_RATE", 72, "/min", 2),
    observation("150344", "MDC_TEMP", Decimal("36.80"), "Cel", 3),
    observation("150021", "MDC_PRESS_BLD_NONINV_SYS", 121.5, "mm[Hg]", 4),
]


def build(
    observations: list[DeviceObservation] | None = None,
    patient: PcdPatient = PATIENT,
    control_id: str = "PCD-1",
) -> bytes:
    return build_pcd01_oru(
        patient, VITALS if observations is None else observations,
        header=HEADER, control_id=control_id, now=NOW,
    )  # fmt: skip


def test_the_header_declares_the_pcd01_profile() -> None:
    message = parse_er7(decode_er7(build()))
    assert message.message_type == ("ORU", "R01", "ORU_R01")
    assert message.get("MSH-12") == "2.6"
    assert message.control_id == "PCD-1"
    assert message.msh.raw(21) == "IHE_PCD_001^IHE PCD^1.3.6.1.4.1.19376.1.6.1.1.1^ISO"
    assert (message.get("MSH-15"), message.get("MSH-16"), message.get("MSH-18")) == (
        "AL",
        "NE",
        "UNICODE UTF-8",
    )
    assert message.msh.raw(3) == f"MEDHUB^{EUI}^EUI-64"
    assert message.get("MSH-7") == "20240301080005+0000"
    assert [s.name for s in message.segments] == ["MSH", "PID", "PV1", "OBR"] + ["OBX"] * 4


def test_patient_visit_and_order_segments() -> None:
    message = parse_er7(decode_er7(build()))
    pid = message.segment("PID")
    assert pid is not None
    assert pid.raw(3) == "MRN-1^^^HOSP&1.2.840.114350&ISO^MR~987^^^NHS^NH"
    assert (message.get("PID-5.1"), message.get("PID-5.2"), message.get("PID-5.7")) == (
        "DOE",
        "JANE",
        "L",
    )
    assert (message.get("PID-7"), message.get("PID-8")) == ("19700517", "F")
    assert message.get("PV1-2") == "I"
    assert message.segment("PV1") is not None
    assert message.get("PV1-3.1") + message.get("PV1-3.2") + message.get("PV1-3.3") == "ICU101A"
    assert message.get("OBR-4") == "182777000"
    assert message.get("OBR-3.1") == "PCD-1"
    assert message.get("OBR-7") == "20240301080000.2500+0000"


def test_one_obx_per_observation_with_mdc_code_containment_ucum_and_eui64() -> None:
    message = parse_er7(decode_er7(build()))
    rows = [
        (
            obx.raw(1),
            obx.raw(2),
            obx.raw(3),
            obx.raw(4),
            obx.value(5),
            obx.raw(6),
            obx.raw(11),
            obx.raw(14),
            obx.raw(18),
        )
        for obx in message.all("OBX")
    ]
    tail = ("R", "20240301080000.2500+0000", f"{EUI}^EUI-64")
    assert rows == [
        ("1", "NM", "150456^MDC_PULS_OXIM_SAT_O2^MDC", "1.2.1.1", "98", "%^^UCUM", *tail),
        ("2", "NM", "149530^MDC_PULS_OXIM_PULS_RATE^MDC", "1.2.1.2", "72", "/min^^UCUM", *tail),
        ("3", "NM", "150344^MDC_TEMP^MDC", "1.2.1.3", "36.80", "Cel^^UCUM", *tail),
        ("4", "NM", "150021^MDC_PRESS_BLD_NONINV_SYS^MDC", "1.2.1.4", "121.5", "mm[Hg]^^UCUM",
         *tail),
    ]  # fmt: skip


def test_python_hl7_reads_the_same_message() -> None:
    parsed = hl7.parse(build().decode("utf-8"))
    assert str(parsed.segment("MSH")[9]) == "ORU^R01^ORU_R01"
    obx = parsed.segments("OBX")
    assert len(obx) == 4
    assert str(obx[0][3]) == "150456^MDC_PULS_OXIM_SAT_O2^MDC"
    assert str(obx[1][5]) == "72"
    assert str(obx[3][6]) == "mm[Hg]^^UCUM"
    assert str(obx[0][18]) == f"{EUI}^EUI-64"


def test_hl7apy_validates_the_structure_strictly() -> None:
    message = parse_message(
        build().decode("utf-8"), validation_level=VALIDATION_LEVEL.STRICT, find_groups=True
    )
    assert message.validate() is True
    result = message.ORU_R01_PATIENT_RESULT
    assert result.ORU_R01_PATIENT.PID.PID_5.XPN_1.to_er7() == "DOE"
    order = result.ORU_R01_ORDER_OBSERVATION
    observations = order.ORU_R01_OBSERVATION
    assert len(observations) == 4
    assert observations[0].OBX.OBX_4.to_er7() == "1.2.1.1"
    assert observations[2].OBX.OBX_5.to_er7() == "36.80"


def test_delimiters_in_values_are_escaped_and_read_back_exactly() -> None:
    tricky_patient = PcdPatient(
        identifiers=(PatientIdentifier("A|1^2", HierarchicDesignator("H&S", "1.2", "ISO")),),
        family="O'Neil^Smith|Jr",
        given="Ann~Marie \\ B",
    )
    text_value = "Sinus rhythm | PVC^2 & more~\\line\nsecond line"
    message_bytes = build(
        [observation("184327", "MDC_ECG_STAT_RHY", text_value, "")],
        patient=tricky_patient,
        control_id="C|1",
    )
    ours = parse_er7(decode_er7(message_bytes))
    assert len(ours.segments) == 5, "a delimiter in a value broke the segment structure"
    pid = ours.segment("PID")
    assert pid is not None and len(pid.fields) == 6
    assert ours.get("PID-3.1") == "A|1^2"
    assert ours.get("PID-3.4.1") == "H&S"
    assert ours.get("PID-5.1") == "O'Neil^Smith|Jr"
    assert ours.get("PID-5.2") == "Ann~Marie \\ B"
    assert ours.control_id == "C|1"
    obx = ours.segment("OBX")
    assert obx is not None
    assert (obx.raw(2), obx.value(5), obx.raw(6)) == ("ST", text_value, "")
    assert len(obx.fields) == 19

    theirs = hl7.parse(message_bytes.decode("utf-8"))
    raw = str(theirs.segments("OBX")[0][5])
    assert theirs.unescape(raw) == text_value.replace("\n", "\r")  # python-hl7: \.br\ -> CR
    assert str(theirs.segment("PID")[5][0][0]) == "O'Neil\\S\\Smith\\F\\Jr"

    strict = parse_message(
        message_bytes.decode("utf-8"), validation_level=VALIDATION_LEVEL.STRICT, find_groups=True
    )
    assert strict.validate() is True


def test_unicode_survives_in_utf8() -> None:
    message_bytes = build(patient=PcdPatient(PATIENT.identifiers, family="Müller", given="Zoë"))
    assert "Müller".encode() in message_bytes
    assert parse_er7(decode_er7(message_bytes)).get("PID-5.2") == "Zoë"


_text = st.text(
    alphabet=st.characters(blacklist_categories=("Cs", "Cc"), blacklist_characters="\x1c\x0b"),
    max_size=40,
)


@settings(max_examples=200, deadline=None)
@given(
    family=_text.filter(bool),
    given_name=_text,
    value=st.one_of(
        _text,
        st.integers(min_value=-(10**12), max_value=10**12),
        st.decimals(allow_nan=False, allow_infinity=False, places=4),
        st.floats(allow_nan=False, allow_infinity=False),
    ),
)
def test_round_trip_of_values(
    family: str, given_name: str, value: int | float | Decimal | str
) -> None:
    message_bytes = build(
        [observation(value=value)],
        patient=PcdPatient(PATIENT.identifiers, family=family, given=given_name),
    )
    message = parse_er7(decode_er7(message_bytes))
    assert message.get("PID-5.1") == family
    assert message.get("PID-5.2") == given_name
    obx = message.segment("OBX")
    assert obx is not None
    if isinstance(value, str):
        assert obx.value(5) == value.replace("\r\n", "\n").replace("\r", "\n")
    else:
        assert obx.raw(2) == "NM"
        assert "e" not in obx.value(5).lower(), "NM has no exponent notation"
        assert Decimal(obx.value(5)) == Decimal(repr(value) if isinstance(value, float) else value)


def test_required_elements_are_demanded() -> None:
    with pytest.raises(MissingDataError, match="at least one observation"):
        build([])
    with pytest.raises(MissingDataError, match="PID-3"):
        build(patient=PcdPatient((), family="DOE"))
    with pytest.raises(MissingDataError, match="PID-5"):
        build(patient=PcdPatient(PATIENT.identifiers, family=""))
    with pytest.raises(MissingDataError, match="MSH-10"):
        build(control_id="")


def test_values_that_cannot_be_sent_are_refused_with_their_location() -> None:
    with pytest.raises(InputError, match="EUI-64") as bad_eui:
        build([observation(), observation(eui="01234567")])
    location = bad_eui.value.issues[0].location
    assert location is not None and (location.segment, location.sequence, location.field) == (
        "OBX",
        2,
        18,
    )
    with pytest.raises(InputError, match="finite"):
        build([observation(value=float("nan"))])
    with pytest.raises(InputError, match="boolean"):
        build([observation(value=True)])
    naive = DeviceObservation(EUI, Containment(1, 1, 1, 1), "1", "X", 1, "", datetime(2024, 1, 1))
    with pytest.raises(InputError, match="time zone"):
        build([naive])
