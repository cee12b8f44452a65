"""Masimo ASCII 1 lines: real device output, and the ways a serial line goes wrong."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from medhub.devices.masimo import MasimoAscii1Parser, exception_flags
from medhub.devices.samples import Sample
from medhub.errors import InputError, MessageParseError

RAD7 = (
    b"02/22/16 22:47:45 SN=0000123456 SPO2=098% BPM=097 PI=03.60% SPCO=--.-% SPMET=--.-% "
    b"DESAT=-- PIDELTA=+-- ALARM=0000 EXC=000800\r\n"
)
RAD7_FULL = (
    b"12/01/05 11:56:29 SN=0123456789 SPO2=098% BPM=240 PI=20.00% SPCO=01.0% SPMET=00.5% "
    b"DESAT=01 PIDELTA=-02 PVI=027 ALARM=0000 EXC=000820\r\n"
)
RAD5 = b"09/15/10 15:10:29 SPO2=097% BPM=064 PI=11.82% ALARM=20 EXC=800\r\n"
NEW_YORK = ZoneInfo("America/New_York")


def parser(zone: timezone | ZoneInfo = UTC) -> MasimoAscii1Parser:
    return MasimoAscii1Parser("pox-7", zone)


def test_a_radical7_line_gives_spo2_pulse_rate_and_pi_in_utc() -> None:
    record = parser(timezone(timedelta(hours=1))).parse(RAD7)
    when = datetime(2016, 2, 22, 21, 47, 45, tzinfo=UTC)
    assert record.samples == (
        Sample("pox-7", "oxygen-saturation", 98.0, "%", when, "150456"),
        Sample("pox-7", "pulse-rate", 97.0, "/min", when, "149530"),
        Sample("pox-7", "perfusion-index", 3.6, "%", when, "150448"),
    )
    assert record.device_time == when and record.device_time.tzinfo is UTC
    assert record.serial_number == "0000123456"
    assert (record.alarm, record.exception) == (0, 0x800)
    assert record.exception_flags == {"masimo-set"}
    assert record.values["SPCO"] is None and record.values["PIDELTA"] is None


def test_spco_and_spmet_when_the_device_measures_them() -> None:
    record = parser().parse(RAD7_FULL)
    by_vital = {s.vital: s.value for s in record.samples}
    assert by_vital == {
        "oxygen-saturation": 98.0,
        "pulse-rate": 240.0,
        "perfusion-index": 20.0,
        "carboxyhemoglobin": 1.0,
        "methemoglobin": 0.5,
    }
    assert record.values["PIDELTA"] == -2.0 and record.values["PVI"] == 27.0
    assert record.exception_flags == {"masimo-set", "sensor-off"}


def test_a_radical5_line_with_short_bit_fields() -> None:
    record = parser().parse(RAD5)
    assert [s.vital for s in record.samples] == [
        "oxygen-saturation",
        "pulse-rate",
        "perfusion-index",
    ]
    assert (record.alarm, record.exception) == (0x20, 0x800)


def test_dashes_and_sensor_off_zeros_give_no_samples() -> None:
    line = b"02/22/16 22:47:45 SPO2=---% BPM=--- PI=--.--% SPCO=00.0% ALARM=0000 EXC=000021"
    record = parser().parse(line)
    assert [(s.vital, s.value) for s in record.samples] == [("carboxyhemoglobin", 0.0)]
    assert record.exception_flags == {"no-sensor", "sensor-off"}
    zeros = b"02/22/16 22:47:45 SPO2=000% BPM=000 PI=00.00% ALARM=0000 EXC=000828"
    assert parser().parse(zeros).samples == ()


def test_unknown_fields_from_newer_firmware_are_kept_not_fatal() -> None:
    line = b"02/22/16 22:47:45 SPO2=098% SPHB=13.2 RRA=14 ALARM=0000 EXC=000800"
    record = parser().parse(line)
    assert record.other == {"SPHB": "13.2", "RRA": "14"}
    assert len(record.samples) == 1


def test_every_documented_exception_bit_has_a_name() -> None:
    names = exception_flags(0xFFF)
    assert len(names) == 10
    assert exception_flags(0x300) == frozenset()  # reserved bits are not guessed at


@pytest.mark.parametrize(
    ("line", "where"),
    [
        (b"", "time"),
        (b"\r\n", "time"),
        (b"\x00\x00\x00", "line"),
        (b"\xff\xfe\xfd\xfc garbage", "line"),
        (b"NO CARRIER", "time"),
        (b"2/22/16 22:47:45 SPO2=098% EXC=000800", "time"),
        (b"02/22/16 22:47:45", "EXC"),
        (RAD7[:40], "EXC"),
        (RAD7[:-9], "EXC"),
        (RAD7[30:], "time"),
        (b"02/22/16 22:47:45 SN=0000123456 SPO2=98% BPM=097 EXC=000800", "SPO2"),
        (b"02/22/16 22:47:45 SPO2=0980% EXC=000800", "SPO2"),
        (b"02/22/16 22:47:45 BPM=9x7 EXC=000800", "BPM"),
        (b"02/22/16 22:47:45 PI=3.6% EXC=000800", "PI"),
        (b"02/22/16 22:47:45 SPO2=098% SPO2=097% EXC=000800", "SPO2"),
        (b"02/22/16 22:47:45 SPO2=098% garbage EXC=000800", "line"),
        (b"02/22/16 22:47:45 SPO2=098% ALARM=00000 EXC=000800", "ALARM"),
        (b"02/22/16 22:47:45 SPO2=098% EXC=0008", "EXC"),
        (b"02/22/16 22:47:45 SPO2=098% EXC=00080G", "EXC"),
        (b"02/22/16 22:47:45 SN=abc/def EXC=000800", "SN"),
        (b"02/22/16 22:47:45 SPO2=098%\tEXC=000800", "line"),
        (b"02/22/16 22:47:45 SPO2=098% EXC=000800" + b" " * 600, "line"),
    ],
)
def test_garbage_and_truncated_lines_are_refused_with_where(line: bytes, where: str) -> None:
    with pytest.raises(MessageParseError) as caught:
        parser().parse(line)
    assert caught.value.issues[0].expression == (where,)


@pytest.mark.parametrize(
    ("line", "where"),
    [
        (b"13/22/16 22:47:45 EXC=000800", "time"),
        (b"02/30/16 22:47:45 EXC=000800", "time"),
        (b"02/22/16 24:47:45 EXC=000800", "time"),
        (b"02/22/16 22:47:45 SPO2=101% EXC=000800", "SPO2"),
        (b"02/22/16 22:47:45 PI=20.01% EXC=000800", "PI"),
        (b"02/22/16 22:47:45 BPM=999 EXC=000800", "BPM"),
    ],
)
def test_impossible_values_and_dates_are_refused(line: bytes, where: str) -> None:
    with pytest.raises(InputError) as caught:
        parser().parse(line)
    assert caught.value.issues[0].expression == (where,)


def test_a_local_time_in_the_spring_forward_gap_is_refused() -> None:
    with pytest.raises(InputError, match="DST"):
        parser(NEW_YORK).parse(b"03/13/16 02:30:00 SPO2=098% EXC=000800")


def test_the_repeated_fall_back_hour_follows_the_stream() -> None:
    p = parser(NEW_YORK)
    times = [
        p.parse(f"11/06/16 {clock} SPO2=098% EXC=000800".encode()).device_time
        for clock in ("00:59:59", "01:30:00", "01:59:59", "01:00:00", "01:30:00", "02:00:00")
    ]
    assert [t.strftime("%H:%M:%S") for t in times] == [
        "04:59:59",
        "05:30:00",
        "05:59:59",
        "06:00:00",
        "06:30:00",
        "07:00:00",
    ]
    assert times == sorted(times)


def test_str_lines_are_accepted_too() -> None:
    assert len(parser().parse(RAD7.decode()).samples) == 3


@settings(deadline=None)
@given(st.binary(max_size=200))
def test_random_bytes_are_parsed_or_refused_never_crash(raw: bytes) -> None:
    try:
        parser().parse(raw)
    except InputError:
        pass


@settings(deadline=None)
@given(st.integers(min_value=0, max_value=len(RAD7_FULL) - 1), st.binary(min_size=1, max_size=4))
def test_a_corrupted_line_never_yields_a_wrong_reading(position: int, noise: bytes) -> None:
    line = RAD7_FULL[:position] + noise + RAD7_FULL[position + len(noise) :]
    try:
        record = parser().parse(line)
    except InputError:
        return
    for sample in record.samples:  # whatever survives must still be a plausible reading
        assert 0 <= sample.value <= 400
