"""ACK building: original and enhanced mode, ERR segments, header salvage, escaping."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import hl7
import pytest

from medhub.errors import Hl7Location, Issue, MessageParseError, Severity
from medhub.hl7.ack import AckCode, AckHeader, ack_wanted, build_ack, salvage_header
from medhub.hl7.er7 import Delimiters, Message, parse_er7

NOW = datetime(2024, 3, 5, 12, 30, 15, tzinfo=timezone(timedelta(hours=2)))
INBOUND = (
    "MSH|^~\\&|ADTApp|GHH|MEDHUB|ICU|20240305103000||ADT^A01^ADT_A01|MSG0001|P|2.5.1\r"
    "PID|1||MRN-1^^^HOSP^MR||DOE^JANE||19700517|F\r"
)
PID7 = Issue(
    "PID-7 'notadate' is not an HL7 date",
    code="structure",
    location=Hl7Location("PID", 1, 7),
    hl7_error_code=102,
)


def inbound_with_msh15(mode: str) -> str:
    return INBOUND.replace("|P|2.5.1\r", f"|P|2.5.1|||{mode}\r", 1)


def ack(header: AckHeader, code: AckCode, issues: list[Issue] | None = None, text: str = "") -> str:
    return build_ack(header, code, control_id="ACK-42", now=NOW, issues=issues or [], text=text)


def parsed(text: str) -> Message:
    """The ACK read back by medhub's parser, after checking python-hl7 reads it the same way."""
    message = parse_er7(text)
    other = hl7.parse(text)
    assert [str(s[0]) for s in other] == [s.name for s in message.segments]
    assert str(other.segment("MSH")[10]) == message.control_id
    assert str(other.segment("MSA")[1]) == message.get("MSA-1")
    return message


# -- original mode --------------------------------------------------------------------------


def test_an_accept_ack_echoes_msh_10_and_swaps_sender_and_receiver() -> None:
    text = ack(salvage_header(INBOUND), "AA")
    assert text.endswith("\r") and "\n" not in text
    message = parsed(text)
    assert [s.name for s in message.segments] == ["MSH", "MSA"]
    assert message.get("MSH-3") == "MEDHUB"
    assert message.get("MSH-4") == "ICU"
    assert message.get("MSH-5") == "ADTApp"
    assert message.get("MSH-6") == "GHH"
    assert message.get("MSH-7") == "20240305103015+0000"  # 12:30:15+02:00 in UTC
    assert message.message_type == ("ACK", "A01", "ACK")
    assert message.control_id == "ACK-42"
    assert message.get("MSH-11") == "P"
    assert message.get("MSH-12") == "2.5.1"
    assert message.get("MSA-1") == "AA"
    assert message.get("MSA-2") == "MSG0001"


@pytest.mark.parametrize("code", ["AE", "AR"])
def test_an_error_ack_carries_one_err_segment_per_issue(code: AckCode) -> None:
    second = Issue("PID-8 'Z' is not in table 0001", location=Hl7Location("PID", 1, 8))
    text = ack(salvage_header(INBOUND), code, [PID7, second], text="the message was refused")
    message = parsed(text)
    assert message.get("MSA-1") == code
    assert message.get("MSA-2") == "MSG0001"
    assert message.get("MSA-3") == "the message was refused"
    first_err = message.segment("ERR")
    assert first_err is not None
    assert first_err.raw(2) == "PID^1^7"
    assert first_err.raw(3) == "102^Data type error^HL70357"
    assert first_err.raw(4) == "E"
    assert first_err.value(8) == "PID-7 'notadate' is not an HL7 date"
    assert message.get("ERR(2)-2") == "PID" and message.get("ERR(2)-2.3") == "8"
    assert message.get("ERR(2)-3") == "207"  # no code on the issue: application error
    assert len(message.all("ERR")) == 2


@pytest.mark.parametrize(
    ("severity", "letter"), [("fatal", "E"), ("error", "E"), ("warning", "W"), ("information", "I")]
)
def test_err_4_severity_follows_the_issue(severity: Severity, letter: str) -> None:
    issue = Issue("x", severity=severity, hl7_error_code=101)
    message = parsed(ack(salvage_header(INBOUND), "AE", [issue]))
    assert message.get("ERR-4") == letter
    assert message.get("ERR-3.2") == "Required field missing"


def test_an_issue_without_location_or_known_code_still_gives_a_readable_err() -> None:
    issue = Issue("something odd", hl7_error_code=999)
    message = parsed(ack(salvage_header(INBOUND), "AE", [issue]))
    assert message.get("ERR-2") == ""
    assert message.get("ERR-3") == "999"
    assert message.get("ERR-3.2") == "Application error"
    assert message.get("ERR-3.3") == "HL70357"
    assert message.get("ERR-8") == "something odd"


def test_err_2_renders_the_full_erl_location() -> None:
    issue = Issue("bad", location=Hl7Location("PID", 1, 3, 2, 4, 1), hl7_error_code=102)
    message = parsed(ack(salvage_header(INBOUND), "AE", [issue]))
    assert message.segment("ERR") is not None
    assert message.all("ERR")[0].raw(2) == "PID^1^3^2^4^1"


def test_msa_3_text_is_cut_to_80_characters() -> None:
    message = parsed(ack(salvage_header(INBOUND), "AE", text="x" * 200))
    assert message.get("MSA-3") == "x" * 80


def test_a_message_without_trigger_event_gets_plain_ack_type() -> None:
    header = AckHeader(control_id="C1")
    assert parsed(ack(header, "AA")).message_type == ("ACK", "", "")


# -- enhanced mode --------------------------------------------------------------------------


@pytest.mark.parametrize(("code", "commit"), [("AA", "CA"), ("AE", "CE"), ("AR", "CR")])
def test_enhanced_mode_answers_with_commit_codes(code: AckCode, commit: str) -> None:
    header = salvage_header(inbound_with_msh15("AL"))
    assert header.accept_ack_type == "AL"
    message = parsed(ack(header, code, [PID7] if code != "AA" else []))
    assert message.get("MSA-1") == commit
    assert message.get("MSA-2") == "MSG0001"


@pytest.mark.parametrize(
    ("mode", "code", "wanted"),
    [
        ("", "AA", True),
        ("", "AR", True),
        ("AL", "AA", True),
        ("AL", "AE", True),
        ("NE", "AA", False),
        ("NE", "AR", False),
        ("ER", "AA", False),
        ("ER", "AE", True),
        ("ER", "AR", True),
        ("SU", "AA", True),
        ("SU", "AE", False),
        ("er", "AA", False),
    ],
)
def test_ack_wanted_honours_msh_15(mode: str, code: AckCode, wanted: bool) -> None:
    assert ack_wanted(salvage_header(inbound_with_msh15(mode)), code) is wanted


# -- salvaging the header of a message that may not parse ------------------------------------


@pytest.mark.parametrize("text", ["", "garbage", "MSH", "MSH|^~", "PID|1||123\r", "\x00\x01\x02"])
def test_salvage_of_garbage_gives_an_empty_header(text: str) -> None:
    assert salvage_header(text) == AckHeader()


def test_salvage_finds_msh_10_of_a_message_the_parser_refuses() -> None:
    broken = "MSH|^~\\&|App|Fac|MEDHUB|ICU|20240101||ADT^A03|CTRL-42|P\nbad segment\n"
    with pytest.raises(MessageParseError):
        parse_er7(broken)
    header = salvage_header(broken)
    assert header.control_id == "CTRL-42"
    assert header.trigger_event == "A03"
    assert (header.sending_application, header.sending_facility) == ("App", "Fac")
    assert header.version == "2.5.1"  # MSH-12 missing: the default
    message = parsed(ack(header, "AR", [Issue("bad", hl7_error_code=102)]))
    assert message.get("MSA-1") == "AR"
    assert message.get("MSA-2") == "CTRL-42"


def test_salvage_keeps_whole_hd_fields_raw_and_reads_the_first_component_of_ids() -> None:
    header = salvage_header(
        "MSH|^~\\&|App^1.2.3^ISO|Fac^4.5^ISO|R|RF|2024||ADT^A01|C1|P^T|2.8^x|||NE\r"
    )
    assert header.sending_application == "App^1.2.3^ISO"  # echoed whole in ACK MSH-5
    assert header.sending_facility == "Fac^4.5^ISO"
    assert header.processing_id == "P"
    assert header.version == "2.8"
    assert header.accept_ack_type == "NE"


def test_non_default_delimiters_are_used_in_the_ack() -> None:
    inbound = "MSH#$*!@#App#Fac#MEDHUB#ICU#20240101##ADT$A04#C-9#P#2.5\rPID#1##1\r"
    header = salvage_header(inbound)
    assert header.delimiters == Delimiters("#", "$", "*", "!", "@")
    text = ack(header, "AE", [PID7])
    assert text.startswith("MSH#$*!@#MEDHUB#ICU#App#Fac#")
    message = parsed(text)
    assert message.delimiters == header.delimiters
    assert message.get("MSA-2") == "C-9"
    assert message.all("ERR")[0].raw(2) == "PID$1$7"
    assert message.get("ERR-3.3") == "HL70357"
    assert message.message_type == ("ACK", "A04", "ACK")


# -- escaping --------------------------------------------------------------------------------


def test_values_containing_delimiters_are_escaped_in_the_ack() -> None:
    header = AckHeader(  # raw ER7, as salvage_header reads it from the inbound message
        sending_application="A\\F\\B",
        sending_facility="F\\S\\G",
        control_id="X\\R\\Y\\T\\Z\\E\\W",
        trigger_event="A01",
    )
    issue = Issue("value 'a|b^c' in PID-5 ~ bad & odd", location=Hl7Location("PID", 1, 5))
    text = ack(header, "AE", [issue], text="refused: a|b")
    message = parsed(text)
    assert message.get("MSH-5") == "A|B"
    assert message.get("MSH-6") == "F^G"
    assert message.get("MSA-2") == "X~Y&Z\\W"
    assert message.get("MSA-3") == "refused: a|b"
    assert message.get("ERR-8") == "value 'a|b^c' in PID-5 ~ bad & odd"
    python_hl7 = hl7.parse(text)
    assert len(python_hl7.segment("MSA")) == 4  # MSA, MSA-1..3: no extra field from a |
    assert len(python_hl7.segment("ERR")) == 9  # ERR, ERR-1..8


def test_a_line_break_in_an_issue_does_not_split_the_ack() -> None:
    issue = Issue("first line\r\nsecond line", hl7_error_code=102)
    message = parsed(ack(salvage_header(INBOUND), "AE", [issue]))
    assert [s.name for s in message.segments] == ["MSH", "MSA", "ERR"]
    assert message.get("ERR-8") == "first line\nsecond line"


@pytest.mark.parametrize(
    ("inbound_msh", "path", "ack_path"),
    [
        ("MSH|^~\\&|App|Fac|R|RF|2024||ADT^A01|MSG\\T\\1|P|2.5.1", "MSH-10", "MSA-2"),
        (
            "MSH|^~\\&|App&2.16.840.1&ISO|Fac|R|RF|2024||ADT^A01|C1|P|2.5.1",
            "MSH-3.1.2",
            "MSH-5.1.2",
        ),
    ],
)
def test_the_ack_echoes_inbound_values_as_the_parser_reads_them(
    inbound_msh: str, path: str, ack_path: str
) -> None:
    inbound = parse_er7(inbound_msh + "\r")
    message = parsed(ack(salvage_header(inbound_msh + "\r"), "AA"))
    assert message.get(ack_path) == inbound.get(path)
