"""The IHE PCD-04 ORU^R40 builder: read back by medhub's parser, python-hl7 and hl7apy."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal

import hl7
import pytest
from hl7apy.consts import VALIDATION_LEVEL
from hl7apy.exceptions import ValidationError
from hl7apy.parser import parse_message
from hypothesis import given, settings
from hypothesis import strategies as st

from medhub.errors import InputError, MissingDataError
from medhub.hl7.er7 import Message, decode_er7, parse_er7
from medhub.hl7.pcd01_builder import (
    Containment,
    HierarchicDesignator,
    PatientIdentifier,
    Pcd01Header,
    PcdPatient,
)
from medhub.hl7.pcd04_builder import (
    MDC_EVT_ALARM,
    MDC_EVT_HI,
    MDC_EVT_LO,
    UNIDENTIFIED_PATIENT,
    AlarmPriority,
    AlarmState,
    AlertPhase,
    AlertReport,
    CodedTerm,
    InactivationState,
    build_pcd04_oru,
)

NOW = datetime(2026, 11, 22, 3, 0, 7, tzinfo=UTC)
START = datetime(2026, 11, 22, 4, 0, 0, 500_000, tzinfo=timezone(timedelta(hours=1)))
CHANGED = datetime(2026, 11, 22, 3, 0, 5, tzinfo=UTC)
HEADER = Pcd01Header(
    sending_application=HierarchicDesignator("MEDHUB", "1.2.3.4", "ISO"),
    receiving_application=HierarchicDesignator("ALERT_MANAGER"),
)
PATIENT = PcdPatient(
    identifiers=(
        PatientIdentifier("MRN-1", HierarchicDesignator("HOSP", "1.2.840.114350", "ISO")),
    ),
    family="DOE",
    given="JANE",
    sex="F",
    patient_class="I",
    point_of_care="ICU",
    room="101",
    bed="A",
)
HEART_RATE = CodedTerm("147842", "MDC_ECG_HEART_RATE")
REPORT = AlertReport(
    alert_id="0f8c7a52-7d8e-4c1b-9a51-3f3d2f7a9b10",
    phase="start",
    state="active",
    inactivation="enabled",
    priority="PH",
    kind="SP",
    event=MDC_EVT_HI,
    text="heart-rate critical high",
    source=HEART_RATE,
    value=152.0,
    unit="/min",
    started_at=START,
    changed_at=CHANGED,
    device_id="monitor-1",
    patient=PATIENT,
    abnormality="HH",
    limit_high=140,
)


def build(report: AlertReport = REPORT, control_id: str = "PCD04-1") -> bytes:
    return build_pcd04_oru(report, header=HEADER, control_id=control_id, now=NOW)


def parsed(report: AlertReport = REPORT) -> Message:
    return parse_er7(decode_er7(build(report)))


def facets(message: Message) -> list[tuple[str, ...]]:
    """(OBX-1, -2, -3, -4, -5) of every OBX."""
    return [
        (obx.raw(1), obx.raw(2), obx.raw(3), obx.raw(4), obx.value(5)) for obx in message.all("OBX")
    ]


def test_the_header_declares_the_acm_profile() -> None:
    message = parsed()
    assert message.message_type == ("ORU", "R40", "ORU_R40")
    assert message.control_id == "PCD04-1"
    assert message.get("MSH-12") == "2.6"
    assert (message.get("MSH-15"), message.get("MSH-16"), message.get("MSH-18")) == (
        "AL",
        "NE",
        "UNICODE UTF-8",
    )
    assert message.msh.raw(21) == "IHE_PCD_ACM_001^IHE PCD^1.3.6.1.4.1.19376.1.6.4.4^ISO"
    assert message.get("MSH-7") == "20261122030007+0000"
    assert [s.name for s in message.segments] == ["MSH", "PID", "PV1", "OBR"] + ["OBX"] * 7


def test_patient_point_of_care_and_the_alert_order() -> None:
    message = parsed()
    assert message.get("PID-3.1") == "MRN-1"
    assert message.get("PID-5.1") == "DOE"
    assert message.get("PV1-2") == "I"
    assert message.get("PV1-3.1") + message.get("PV1-3.2") + message.get("PV1-3.3") == "ICU101A"
    obr = message.segment("OBR")
    assert obr is not None
    assert obr.raw(3) == f"{REPORT.alert_id}^MEDHUB^1.2.3.4^ISO"
    assert obr.raw(4) == "196616^MDC_EVT_ALARM^MDC"
    assert obr.raw(7) == "20261122030000.5000+0000"  # the start, in UTC
    assert (obr.raw(8), obr.raw(29)) == ("", ""), "a start has no end and no parent"


def test_the_alert_facets() -> None:
    message = parsed()
    base = "1.0.0.0"
    assert facets(message) == [
        ("1", "ST", "196648^MDC_EVT_HI^MDC", f"{base}.1", "heart-rate critical high"),
        ("2", "NM", "147842^MDC_ECG_HEART_RATE^MDC", f"{base}.2", "152.0"),
        ("3", "ST", "68481^MDC_ATTR_EVENT_PHASE^MDC", f"{base}.3", "start"),
        ("4", "ST", "68482^MDC_ATTR_ALARM_STATE^MDC", f"{base}.4", "active"),
        ("5", "ST", "68483^MDC_ATTR_ALARM_INACTIVATION_STATE^MDC", f"{base}.5", "enabled"),
        ("6", "ST", "68484^MDC_ATTR_ALARM_PRIORITY^MDC", f"{base}.6", "PH"),
        ("7", "ST", "68485^MDC_ATTR_ALERT_TYPE^MDC", f"{base}.7", "SP"),
    ]
    first, source = message.all("OBX")[:2]
    assert first.raw(8) == "HH~PH~SP", "abnormality, priority and kind in OBX-8 of facet 1"
    assert (source.raw(6), source.raw(7)) == ("/min^^UCUM", "<140")
    for obx in (first, source):
        assert obx.raw(14) == "20261122030005+0000"
        assert obx.raw(18) == "monitor-1^MEDHUB^1.2.3.4^ISO"
    assert all(obx.raw(11) == "F" for obx in message.all("OBX"))


@pytest.mark.parametrize(
    ("phase", "state", "inactivation", "ended"),
    [
        ("start", "active", "enabled", False),
        ("continue", "active", "enabled", False),
        ("update", "active", "alert-acknowledged", False),
        ("update", "latched", "audio-paused", False),
        ("end", "inactive", "alert-acknowledged", True),
    ],
)
def test_each_phase_and_state(
    phase: AlertPhase, state: AlarmState, inactivation: InactivationState, ended: bool
) -> None:
    end = CHANGED + timedelta(minutes=2)
    report = replace(
        REPORT, phase=phase, state=state, inactivation=inactivation, ended_at=end if ended else None
    )
    message = parsed(report)
    assert [row[4] for row in facets(message)[2:5]] == [phase, state, inactivation]
    obr = message.segment("OBR")
    assert obr is not None
    assert obr.raw(8) == ("20261122030205+0000" if ended else "")
    if phase == "start":
        assert obr.raw(29) == ""
    else:  # updates and the end point back at the alert (EIP-2, sub-components)
        assert obr.raw(29) == f"^{REPORT.alert_id}&MEDHUB&1.2.3.4&ISO"
        assert message.get("OBR-29.2.1") == REPORT.alert_id


@pytest.mark.parametrize("priority", ["PH", "PM", "PL", "PN"])
def test_each_priority(priority: AlarmPriority) -> None:
    message = parsed(replace(REPORT, priority=priority, abnormality=""))
    first = message.all("OBX")[0]
    assert first.raw(8) == f"{priority}~SP"
    assert facets(message)[5][4] == priority


@pytest.mark.parametrize(
    ("low", "high", "expected"),
    [
        (40, None, ">40"),
        (None, 140, "<140"),
        (Decimal("40.5"), 140.0, "40.5-140.0"),
        (None, None, ""),
    ],
)
def test_the_limit_is_an_hl7_reference_range(
    low: int | Decimal | None, high: float | None, expected: str
) -> None:
    message = parsed(replace(REPORT, limit_low=low, limit_high=high, event=MDC_EVT_LO))
    assert message.all("OBX")[1].raw(7) == expected


def test_without_a_value_the_source_facet_names_the_vital() -> None:
    report = replace(
        REPORT, value=None, event=MDC_EVT_ALARM, kind="ST", priority="PL", abnormality="",
        limit_high=None, text="heart-rate signal lost",
    )  # fmt: skip
    source = parsed(report).all("OBX")[1]
    assert (source.raw(2), source.raw(3), source.raw(5)) == (
        "CWE",
        "68480^MDC_ATTR_ALERT_SOURCE^MDC",
        "147842^MDC_ECG_HEART_RATE^MDC",
    )
    assert (source.raw(6), source.raw(7)) == ("", "")


def test_an_eui64_device_is_named_as_in_pcd01() -> None:
    message = parsed(
        replace(REPORT, device_eui64="0123456789abcdef", containment=Containment(1, 2, 3, 4))
    )
    first = message.all("OBX")[0]
    assert first.raw(18) == "0123456789ABCDEF^EUI-64"
    assert first.raw(4) == "1.2.3.4.1"


def test_an_alert_without_a_patient_has_an_empty_pid() -> None:
    message_bytes = build(replace(REPORT, patient=UNIDENTIFIED_PATIENT))
    assert b"\rPID\rPV1|" in message_bytes, "the segment is there, with no field valued"
    message = parse_er7(decode_er7(message_bytes))
    assert (message.get("PID-3"), message.get("PID-5"), message.get("PV1-2")) == ("", "", "U")
    assert message.get("PV1-3") == ""
    assert message.all("OBX")[0].raw(18) == "monitor-1^MEDHUB^1.2.3.4^ISO"


def _hl7apy(message_bytes: bytes) -> object:
    """hl7apy 1.3 knows no ORU_R40 (nor event R40 in v2.6); PCD-04 keeps the ORU_R01 segment
    grammar, so that grammar is checked with MSH-9 relabelled."""
    text = message_bytes.decode("utf-8").replace("ORU^R40^ORU_R40", "ORU^R01^ORU_R01")
    return parse_message(text, validation_level=VALIDATION_LEVEL.STRICT, find_groups=True)


def test_hl7apy_validates_the_structure_strictly() -> None:
    message = _hl7apy(build(replace(REPORT, phase="end", state="inactive", ended_at=NOW)))
    assert message.validate() is True  # type: ignore[attr-defined]
    order = message.ORU_R01_PATIENT_RESULT.ORU_R01_ORDER_OBSERVATION  # type: ignore[attr-defined]
    assert order.OBR.OBR_29.to_er7() == f"^{REPORT.alert_id}&MEDHUB&1.2.3.4&ISO"
    assert len(order.ORU_R01_OBSERVATION) == 7
    assert order.ORU_R01_OBSERVATION[1].OBX.OBX_7.to_er7() == "<140"


def test_the_empty_pid_is_the_one_thing_a_strict_v26_validator_objects_to() -> None:
    """PID-3 and PID-5 are required in HL7 v2.6 but an unbound device has no patient: the
    choice (see pcd04_builder.UNIDENTIFIED_PATIENT) is an empty PID over a made-up id."""
    message = _hl7apy(build(replace(REPORT, patient=UNIDENTIFIED_PATIENT)))
    with pytest.raises(ValidationError, match="PID_3"):
        message.validate()  # type: ignore[attr-defined]


def test_python_hl7_reads_the_same_message() -> None:
    parsed_hl7 = hl7.parse(build().decode("utf-8"))
    assert str(parsed_hl7.segment("MSH")[9]) == "ORU^R40^ORU_R40"
    obx = parsed_hl7.segments("OBX")
    assert len(obx) == 7
    assert str(obx[2][5]) == "start"
    assert str(obx[0][8]) == "HH~PH~SP"


def test_delimiters_in_values_are_escaped_and_read_back_exactly() -> None:
    text = "HR | high ^ 2 & more ~ \\ line\nnext"
    report = replace(
        REPORT,
        alert_id="A|1^2",
        text=text,
        device_id="bed^3|mon",
        patient=PcdPatient(PATIENT.identifiers, family="O'Neil^Smith|Jr", given="Ann~Marie"),
    )
    message = parsed(report)
    assert len(message.segments) == 11, "a delimiter in a value broke the segment structure"
    assert message.get("OBR-3.1") == "A|1^2"
    assert message.get("OBR-29") == ""
    assert message.get("PID-5.1") == "O'Neil^Smith|Jr"
    assert message.get("PID-5.2") == "Ann~Marie"
    first = message.all("OBX")[0]
    assert first.value(5) == text
    assert first.value(18) == "bed^3|mon"
    update = parse_er7(decode_er7(build(replace(report, phase="update"))))
    assert update.get("OBR-29.2.1") == "A|1^2"


_text = st.text(
    alphabet=st.characters(blacklist_categories=("Cs", "Cc"), blacklist_characters="\x1c\x0b"),
    min_size=1,
    max_size=40,
)


@settings(max_examples=100, deadline=None)
@given(
    text=_text,
    value=st.one_of(
        st.integers(min_value=-(10**9), max_value=10**9),
        st.floats(allow_nan=False, allow_infinity=False),
    ),
)
def test_round_trip_of_text_and_values(text: str, value: int | float) -> None:
    message = parsed(replace(REPORT, text=text, value=value))
    first, source = message.all("OBX")[:2]
    assert first.value(5) == text.replace("\r\n", "\n").replace("\r", "\n")
    assert "e" not in source.value(5).lower(), "NM has no exponent notation"
    assert Decimal(source.value(5)) == Decimal(repr(value) if isinstance(value, float) else value)


def test_what_cannot_be_sent_is_refused_with_its_location() -> None:
    with pytest.raises(MissingDataError, match="MSH-10"):
        build(control_id="")
    with pytest.raises(MissingDataError, match="OBR-3"):
        build(replace(REPORT, alert_id=""))
    with pytest.raises(MissingDataError, match="PID-3"):
        build(
            replace(
                REPORT, patient=PcdPatient((PatientIdentifier("", HierarchicDesignator("H")),), "X")
            )
        )
    with pytest.raises(InputError, match="EUI-64") as bad_eui:
        build(replace(REPORT, device_eui64="0123"))
    location = bad_eui.value.issues[0].location
    assert location is not None and (location.segment, location.field) == ("OBX", 18)
    with pytest.raises(InputError, match="finite"):
        build(replace(REPORT, value=float("nan")))
    with pytest.raises(InputError, match="OBX-7"):
        build(replace(REPORT, limit_high=float("inf")))
    with pytest.raises(InputError, match="table 0078"):
        build(replace(REPORT, abnormality="HIGH"))
    with pytest.raises(InputError, match="OBR-7 needs a time zone"):
        build(replace(REPORT, started_at=datetime(2026, 1, 1)))
