"""HL7 batch files: FHS/BHS envelopes are unwrapped and BTS-1 counts are checked."""

from __future__ import annotations

import pytest

from medhub.errors import MessageParseError
from medhub.hl7.batch import split_batch
from tests.builders import adt


def envelope(messages: list[bytes], declared: int | None) -> bytes:
    body = b"".join(messages)
    count = b"" if declared is None else str(declared).encode()
    return b"FHS|^~\\&|APP|FAC\rBHS|^~\\&|APP|FAC\r" + body + b"BTS|" + count + b"\rFTS|1\r"


def test_a_batch_file_yields_its_messages_without_the_envelope() -> None:
    batch = split_batch(envelope([adt("1"), adt("2"), adt("3")], 3))
    assert batch.messages == [adt("1"), adt("2"), adt("3")]
    assert batch.declared_messages == 3 and batch.batches == 1


def test_a_count_that_does_not_match_is_an_error_naming_bts1() -> None:
    with pytest.raises(MessageParseError, match="declares 4 messages but the file holds 3") as e:
        split_batch(envelope([adt("1"), adt("2"), adt("3")], 4))
    assert e.value.issues[0].location is not None
    assert e.value.issues[0].location.terser() == "BTS-1"


def test_plain_files_lf_line_ends_and_a_byte_order_mark_are_accepted() -> None:
    lf = (b"\xef\xbb\xbf" + adt("1") + adt("2")).replace(b"\r", b"\n")
    assert split_batch(lf).messages == [adt("1"), adt("2")]
    assert split_batch(envelope([adt("1")], None)).declared_messages is None


def test_a_non_numeric_count_is_an_error() -> None:
    with pytest.raises(MessageParseError, match="BTS-1"):
        split_batch(envelope([adt("1")], None).replace(b"BTS|", b"BTS|one"))
