"""The ER7 parser: delimiters, segment ends, addressing, escapes, charsets and bad input."""

from __future__ import annotations

from pathlib import Path

import hl7
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from medhub.errors import Hl7Location, MessageParseError
from medhub.hl7.er7 import Delimiters, decode_er7, escape, parse_er7, unescape

MSH = "MSH|^~\\&|SendApp|SendFac|RecvApp|RecvFac|20240101120000||ADT^A01^ADT_A01|CTRL1|P|2.5.1"
PID = "PID|1||MRN-1^^^HOSP^MR~SSN-9^^^SSA&2.16.840.1.113883.4.1&ISO^SS||DOE^JANE^Q"
OBX1 = "OBX|1|NM|8867-4^Heart rate^LN||72|/min"
OBX2 = "OBX|2|NM|9279-1^Resp rate^LN||16|/min"
MESSAGE = "\r".join([MSH, "EVN|A01", PID, OBX1, OBX2, "ZPI|1|custom^value&sub"]) + "\r"


def msh_with(**fields: str) -> str:
    """An MSH segment with MSH-n replaced by ``fields['f<n>']`` (n >= 3)."""
    values = MSH.split("|")
    for key, value in fields.items():
        number = int(key[1:])
        values += [""] * (number - len(values) + 1)
        values[number - 1] = value
    return "|".join(values)


def with_msh18(charset: str) -> str:
    return msh_with(f18=charset)


# -- delimiters and segment ends ----------------------------------------------------------


def test_default_delimiters_come_from_msh_1_and_msh_2() -> None:
    message = parse_er7(MESSAGE)
    assert message.delimiters == Delimiters("|", "^", "~", "\\", "&")
    assert message.delimiters.encoding_characters == "^~\\&"


def test_non_default_delimiters_are_read_from_the_message_itself() -> None:
    text = (
        "MSH#$*!@#App#Fac#Recv#RFac#20240101##ADT$A01#C-7#P#2.5\r"
        "PID#1##123$$$H@1.2@ISO*456##O!F!NEIL$ANN\r"
    )
    message = parse_er7(text)
    assert message.delimiters == Delimiters("#", "$", "*", "!", "@")
    assert message.get("MSH-1") == "#"
    assert message.get("MSH-2") == "$*!@"
    assert message.control_id == "C-7"
    assert message.message_type == ("ADT", "A01", "")
    assert message.get("PID-3[2]") == "456"
    assert message.get("PID-3.4.2") == "1.2"
    assert message.get("PID-5") == "O#NEIL"  # !F! is the escaped field separator
    assert message.get("PID-5.2") == "ANN"


@pytest.mark.parametrize("end", ["\r", "\n", "\r\n"], ids=["CR", "LF", "CRLF"])
def test_segments_split_on_cr_lf_and_crlf(end: str) -> None:
    message = parse_er7(end.join([MSH, PID, OBX1]) + end + end)
    assert [s.name for s in message.segments] == ["MSH", "PID", "OBX"]
    assert message.get("PID-5.2") == "JANE"
    assert message.get("OBX-5") == "72"
    assert message.get("MSH-12") == "2.5.1"  # no line-end character left on the last field


def test_mixed_segment_ends_and_mllp_bytes_around_the_message() -> None:
    message = parse_er7("\x0b" + MSH + "\r\n" + PID + "\n" + OBX1 + "\r\x1c\r")
    assert [s.name for s in message.segments] == ["MSH", "PID", "OBX"]
    assert message.get("OBX-6") == "/min"


# -- fields, repetitions, components, sub-components --------------------------------------


def test_fields_repetitions_components_and_subcomponents() -> None:
    pid = parse_er7(MESSAGE).segment("PID")
    assert pid is not None
    assert pid.raw(3) == "MRN-1^^^HOSP^MR~SSN-9^^^SSA&2.16.840.1.113883.4.1&ISO^SS"
    assert pid.repetitions(3) == ["MRN-1^^^HOSP^MR", "SSN-9^^^SSA&2.16.840.1.113883.4.1&ISO^SS"]
    assert pid.value(3) == "MRN-1"
    assert pid.value(3, 2, 5) == "SS"
    assert pid.value(3, 2, 4) == "SSA"
    assert pid.value(3, 2, 4, 2) == "2.16.840.1.113883.4.1"
    assert pid.value(3, 2, 4, 3) == "ISO"
    assert pid.components(5) == ["DOE", "JANE", "Q"]
    assert pid.repetitions(2) == []  # empty field: no repetitions
    assert pid.raw(99) == "" and pid.value(99) == ""
    assert pid.value(3, 3) == "" and pid.value(3, 1, 9) == "" and pid.value(3, 1, 4, 5) == ""


def test_terser_paths_address_repetitions_and_segment_occurrences() -> None:
    message = parse_er7(MESSAGE)
    assert message.get("PID-3[2].4.1") == "SSA"
    assert message.get("PID-3[2].4.2") == "2.16.840.1.113883.4.1"
    assert message.get("PID-3[1].4") == "HOSP"
    assert message.get("OBX-5") == "72"
    assert message.get("OBX(1)-3.2") == "Heart rate"
    assert message.get("OBX(2)-5") == "16"
    assert message.get("OBX(2)-3.1") == "9279-1"
    assert message.get("OBX(3)-5") == ""  # no third OBX
    assert message.get("AL1-3") == ""  # no such segment
    assert len(message.all("OBX")) == 2


@pytest.mark.parametrize("path", ["PID", "PID-", "pid-3", "PID-3[x]", "PID-3.1.2.3", "PID3"])
def test_malformed_terser_paths_are_refused(path: str) -> None:
    with pytest.raises(ValueError, match="terser path"):
        parse_er7(MESSAGE).get(path)


def test_z_segments_are_kept_and_addressable() -> None:
    message = parse_er7(MESSAGE)
    assert [s.name for s in message.segments][-1] == "ZPI"
    assert message.get("ZPI-2.2") == "value"
    assert message.get("ZPI-2.2.2") == "sub"


def test_msh_1_and_msh_2_are_numbered_as_in_the_standard() -> None:
    message = parse_er7(MESSAGE)
    msh = message.msh
    assert msh.name == "MSH"
    assert message.get("MSH-1") == "|"
    assert message.get("MSH-2") == "^~\\&"
    assert msh.repetitions(2) == ["^~\\&"]  # the ~ in MSH-2 is not a repetition separator
    assert message.get("MSH-3") == "SendApp"
    assert message.get("MSH-7") == "20240101120000"
    assert message.get("MSH-9.2") == "A01"
    assert message.message_type == ("ADT", "A01", "ADT_A01")
    assert message.control_id == "CTRL1"


# -- escape sequences ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("sent", "read"),
    [
        ("A\\F\\B", "A|B"),
        ("A\\S\\B", "A^B"),
        ("A\\T\\B", "A&B"),
        ("A\\R\\B", "A~B"),
        ("A\\E\\B", "A\\B"),
        ("\\X41\\BC", "ABC"),
        ("caf\\XC3A9\\", "café"),
        ("line1\\.br\\line2", "line1\nline2"),
        ("\\H\\bold\\N\\", "bold"),
        ("A\\Z99\\B", "A\\Z99\\B"),  # unknown escape: kept as sent
        ("A\\X4\\B", "A\\X4\\B"),  # odd number of hex digits: kept as sent
        ("trailing\\", "trailing\\"),
    ],
)
def test_escape_sequences_are_decoded_when_read(sent: str, read: str) -> None:
    message = parse_er7(MSH + "\rZZZ|" + sent + "\r")
    assert message.get("ZZZ-1") == read


def test_escaped_delimiters_do_not_split_components() -> None:
    message = parse_er7(MSH + "\rZZZ|a\\S\\b^c\\T\\d&e\r")
    assert message.get("ZZZ-1.1") == "a^b"
    assert message.get("ZZZ-1.2") == "c&d"
    assert message.get("ZZZ-1.2.2") == "e"


def test_escape_encodes_every_delimiter_and_line_break() -> None:
    d = Delimiters()
    assert escape("a|b^c~d\\e&f\ng", d) == "a\\F\\b\\S\\c\\R\\d\\E\\e\\T\\f\\.br\\g"


def test_escape_turns_cr_and_crlf_into_one_line_break() -> None:
    d = Delimiters()
    assert unescape(escape("a\r\nb\rc", d), d) == "a\nb\nc"


@settings(max_examples=300)
@given(st.text().map(lambda s: s.replace("\r", "")))
def test_escape_then_unescape_round_trips_any_text(text: str) -> None:
    d = Delimiters()
    assert unescape(escape(text, d), d) == text


@settings(max_examples=300)
@given(
    st.permutations("!#$%&*+/:;<=>?@^_`|~\\").map(lambda p: Delimiters(*p[:5])),
    st.text().map(lambda s: s.replace("\r", "")),
)
def test_round_trip_holds_for_non_default_delimiters(delims: Delimiters, text: str) -> None:
    assert unescape(escape(text, delims), delims) == text


@settings(max_examples=200)
@given(st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\r")))
def test_an_escaped_value_reads_back_unchanged_from_a_parsed_message(text: str) -> None:
    message = parse_er7(MSH + "\rZZZ|" + escape(text, Delimiters()) + "|end\r")
    assert message.get("ZZZ-1") == text
    assert message.get("ZZZ-2") == "end"


# -- MSH-18 character sets ------------------------------------------------------------------


def test_8859_1_bytes_are_decoded_as_latin_1() -> None:
    data = (with_msh18("8859/1") + "\rPID|1||1||").encode() + b"M\xfcller\r"
    assert parse_er7(decode_er7(data)).get("PID-5") == "Müller"


@pytest.mark.parametrize("charset", ["UNICODE UTF-8", "UTF-8", "unicode utf-8"])
def test_utf8_declared_is_decoded_as_utf8(charset: str) -> None:
    data = (with_msh18(charset) + "\rPID|1||1||Zoë^Ren\u00e9\r").encode("utf-8")
    message = parse_er7(decode_er7(data))
    assert message.get("PID-5") == "Zoë"
    assert message.get("PID-5.2") == "René"


@pytest.mark.parametrize("charset", ["ASCII", ""])
def test_ascii_declared_but_utf8_sent_is_still_read(charset: str) -> None:
    data = (with_msh18(charset) + "\rPID|1||1||Zoë\r").encode("utf-8")
    assert parse_er7(decode_er7(data)).get("PID-5") == "Zoë"


@pytest.mark.parametrize(
    ("charset", "bad"), [("UNICODE UTF-8", b"\xff\xfe"), ("ASCII", b"M\xfcller")]
)
def test_undecodable_bytes_are_a_parse_error_naming_msh_18(charset: str, bad: bytes) -> None:
    data = (with_msh18(charset) + "\rPID|1||1||").encode() + bad + b"\r"
    with pytest.raises(MessageParseError, match="MSH-18") as caught:
        decode_er7(data)
    assert caught.value.issues[0].location == Hl7Location("MSH", 1, 18)
    assert caught.value.hl7_ack_code == "AR"


def test_decode_refuses_bytes_that_are_not_an_hl7_message() -> None:
    with pytest.raises(MessageParseError, match="MSH"):
        decode_er7(b"GET / HTTP/1.1\r\n")


def test_msh_18_is_honoured_after_leading_line_ends() -> None:
    data = ("\r\n" + with_msh18("8859/1") + "\rPID|1||1||").encode() + b"M\xfcller\r"
    assert parse_er7(decode_er7(data)).get("PID-5") == "Müller"


def test_a_utf8_byte_order_mark_is_tolerated() -> None:
    data = b"\xef\xbb\xbf" + (with_msh18("UNICODE UTF-8") + "\rPID|1||1||Zoë\r").encode()
    assert parse_er7(decode_er7(data)).get("PID-5") == "Zoë"
    assert parse_er7("\ufeff" + MESSAGE).control_id == "CTRL1"


# -- bad input ------------------------------------------------------------------------------


def parse_error(text: str) -> MessageParseError:
    with pytest.raises(MessageParseError) as caught:
        parse_er7(text)
    return caught.value


@pytest.mark.parametrize("text", ["", "   \r\n", "PID|1||123", "HELLO WORLD", "msh|^~\\&|A"])
def test_text_without_an_msh_segment_is_refused(text: str) -> None:
    error = parse_error(text)
    assert "MSH" in error.message
    assert error.issues[0].location == Hl7Location("MSH", 1)
    assert error.hl7_ack_code == "AR"


@pytest.mark.parametrize(
    ("text", "field"),
    [
        ("MSH|^~", 2),  # too short to hold the encoding characters
        ("MSH|^~|A|B", 2),  # only two encoding characters
        ("MSH|^^\\&|A|B", 2),  # repeated encoding character
        ("MSH|^~\\||A|B", 2),  # encoding character equal to the field separator
        ("MSHX^~\\&X", 1),  # alphanumeric field separator
    ],
)
def test_a_broken_msh_header_points_at_msh_1_or_msh_2(text: str, field: int) -> None:
    assert parse_error(text).issues[0].location == Hl7Location("MSH", 1, field)


@pytest.mark.parametrize(
    ("second", "segment"), [("pid|1", ""), ("P1|x", ""), ("PIDX|1", "PID"), ("PI D|1", "")]
)
def test_a_bad_segment_name_is_refused_with_its_position(second: str, segment: str) -> None:
    error = parse_error(MSH + "\r" + second + "\r")
    assert "segment 2" in error.message
    assert error.issues[0].location == Hl7Location(segment, 2)


@pytest.mark.parametrize(
    ("field", "label"),
    [(9, "message type"), (10, "message control id"), (11, "processing id"), (12, "version")],
)
def test_empty_required_msh_fields_are_named_in_the_error(field: int, label: str) -> None:
    error = parse_error(msh_with(**{f"f{field}": ""}) + "\r" + PID + "\r")
    assert f"MSH-{field}" in error.message and label in error.message
    assert error.issues[0].location == Hl7Location("MSH", 1, field)
    assert error.issues[0].hl7_error_code == 101


def test_an_msh_ending_after_msh_11_is_refused_at_msh_12() -> None:
    error = parse_error("MSH|^~\\&|A|B|C|D|20240101||ADT^A01|C1|P\r" + PID + "\r")
    assert error.issues[0].location == Hl7Location("MSH", 1, 12)


def test_an_msh_ending_after_msh_9_is_refused_at_msh_10() -> None:
    error = parse_error("MSH|^~\\&|A|B|C|D|20240101||ADT^A01\r" + PID + "\r")
    assert error.issues[0].location == Hl7Location("MSH", 1, 10)


# -- the corpus of real messages ------------------------------------------------------------


def corpus_files(corpus: Path) -> list[Path]:
    files = sorted((corpus / "hl7").glob("*.hl7"))
    assert len(files) >= 50, "the HL7 corpus is missing or was emptied"
    return files


def python_hl7_control_id(data: bytes) -> str:
    text = data.decode("utf-8-sig").replace("\r\n", "\r").replace("\n", "\r")
    return str(hl7.parse(text).segment("MSH")[10])


def test_every_corpus_file_parses_or_raises_only_message_parse_error(corpus: Path) -> None:
    parsed = 0
    for path in corpus_files(corpus):
        data = path.read_bytes()
        try:
            message = parse_er7(decode_er7(data))
        except MessageParseError:
            continue
        parsed += 1
        assert message.control_id == python_hl7_control_id(data), path.name
        assert message.msh.name == "MSH" and message.message_type[0], path.name
    assert parsed == len(corpus_files(corpus)), "some real corpus messages were refused"


@settings(max_examples=150)
@given(data=st.data())
def test_damaged_corpus_messages_raise_nothing_but_message_parse_error(
    corpus: Path, data: st.DataObject
) -> None:
    path = data.draw(st.sampled_from(corpus_files(corpus)), label="file")
    raw = path.read_bytes()
    cut = data.draw(st.integers(0, len(raw)), label="cut")
    insert = data.draw(st.binary(max_size=8), label="insert")
    damaged = raw[:cut] + insert + raw[cut + len(insert) :]
    try:
        message = parse_er7(decode_er7(damaged))
    except MessageParseError:
        return
    assert message.segments[0].name == "MSH"
    assert message.control_id != ""
