"""Register maps: the file check, read planning, and decoding registers into samples."""

from __future__ import annotations

import math
import struct
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from medhub.devices.modbus_sim import RegisterImage, register_image
from medhub.devices.register_map import (
    MAX_REGISTERS_PER_READ,
    DataType,
    Encoding,
    Function,
    ReadRequest,
    RegisterMap,
    decode_poll,
    decode_registers,
    encode_registers,
)
from medhub.devices.register_map_file import (
    load_register_map,
    parse_register_map,
    resolve_register_map,
    shipped_map,
    shipped_map_names,
)
from medhub.errors import ConfigurationError

POLLED_AT = datetime(2026, 3, 1, 12, 0, 0, tzinfo=UTC)
ORDERS = ("big", "little")


def _map(values: str, header: str = "") -> RegisterMap:
    return parse_register_map(f'model = "test"\n{header}\n{values}', source="test.toml")


def _value(
    name: str, address: int, type_: str = "int16", extra: str = "", vital: str = "heart-rate"
) -> str:
    return (
        f'[[value]]\nname = "{name}"\nvital = "{vital}"\nfunction = "holding"\n'
        f'address = {address}\ntype = "{type_}"\n{extra}\n'
    )


def _blocks(
    reg_map: RegisterMap, image: dict[Function, dict[int, int]]
) -> dict[ReadRequest, list[int]]:
    return {
        request: [
            image[request.function].get(a, 0)
            for a in range(request.address, request.address + request.count)
        ]
        for request in reg_map.plan_reads()
    }


# --- decoding each type and order ------------------------------------------------------


@pytest.mark.parametrize(
    ("byte_order", "word_order", "registers"),
    [
        ("big", "big", [0x1234, 0x5678]),  # ABCD
        ("big", "little", [0x5678, 0x1234]),  # CDAB
        ("little", "big", [0x3412, 0x7856]),  # BADC
        ("little", "little", [0x7856, 0x3412]),  # DCBA
    ],
)
def test_32_bit_integers_read_in_each_byte_and_word_order(
    byte_order: str, word_order: str, registers: list[int]
) -> None:
    encoding = Encoding(DataType.UINT32, byte_order, word_order)  # type: ignore[arg-type]
    assert decode_registers(registers, encoding) == 0x12345678


@pytest.mark.parametrize(
    ("byte_order", "word_order", "registers"),
    [
        ("big", "big", [0x3F80, 0x0000]),
        ("big", "little", [0x0000, 0x3F80]),
        ("little", "big", [0x803F, 0x0000]),
        ("little", "little", [0x0000, 0x803F]),
    ],
)
def test_float32_one_reads_as_one_in_each_order(
    byte_order: str, word_order: str, registers: list[int]
) -> None:
    encoding = Encoding(DataType.FLOAT32, byte_order, word_order)  # type: ignore[arg-type]
    assert decode_registers(registers, encoding) == 1.0


def test_signed_types_read_twos_complement_and_64_bit_types_span_four_registers() -> None:
    assert decode_registers([0xFFFE], Encoding(DataType.INT16)) == -2
    assert decode_registers([0xFFFE], Encoding(DataType.UINT16)) == 0xFFFE
    assert decode_registers([0xFFFF, 0xFFFF], Encoding(DataType.INT32)) == -1
    assert decode_registers([0, 0, 0, 1], Encoding(DataType.INT64)) == 1
    assert decode_registers([0x4059, 0, 0, 0], Encoding(DataType.FLOAT64)) == 100.0
    with pytest.raises(ValueError, match="needs 2 registers"):
        decode_registers([1], Encoding(DataType.FLOAT32))


@st.composite
def typed_values(draw: st.DrawFn) -> tuple[Encoding, int | float]:
    data_type = draw(st.sampled_from(list(DataType)))
    encoding = Encoding(data_type, draw(st.sampled_from(ORDERS)), draw(st.sampled_from(ORDERS)))
    if data_type is DataType.FLOAT32:
        return encoding, draw(st.floats(width=32, allow_nan=False))
    if data_type is DataType.FLOAT64:
        return encoding, draw(st.floats(allow_nan=False))
    low, high = data_type.int_range()
    return encoding, draw(st.integers(low, high))


@given(typed_values())
def test_encode_then_decode_round_trips_for_every_type_and_order(
    case: tuple[Encoding, int | float],
) -> None:
    encoding, raw = case
    registers = encode_registers(raw, encoding)
    assert len(registers) == encoding.data_type.registers
    assert all(0 <= word <= 0xFFFF for word in registers)
    assert decode_registers(registers, encoding) == raw


@given(st.lists(st.integers(0, 0xFFFF), min_size=2, max_size=2), st.sampled_from(ORDERS))
def test_any_two_registers_decode_then_encode_to_the_same_registers(
    registers: list[int], word_order: str
) -> None:
    encoding = Encoding(DataType.UINT32, "big", word_order)  # type: ignore[arg-type]
    assert encode_registers(decode_registers(registers, encoding), encoding) == registers


# --- decoding a poll into samples ------------------------------------------------------


def test_a_bedside_monitor_poll_becomes_samples_with_codes_units_and_device_time() -> None:
    monitor = shipped_map("generic-bedside-monitor")
    device_clock = datetime(2026, 3, 1, 11, 59, 58, tzinfo=UTC)
    vitals = {
        "heart-rate": 71.0,
        "oxygen-saturation": 96.5,
        "respiratory-rate": 14.0,
        "systolic-blood-pressure": 121.0,
        "diastolic-blood-pressure": 79.0,
        "mean-blood-pressure": 93.0,
        "body-temperature": 37.25,
    }
    image = register_image(monitor, vitals, moment=device_clock, flags={"spo2-probe-on": True})
    result = decode_poll(monitor, _blocks(monitor, image), device_id="bed-7", polled_at=POLLED_AT)
    by_channel = {s.channel: s for s in result.samples}
    assert by_channel["spo2"].vital == "oxygen-saturation"
    assert by_channel["spo2"].value == pytest.approx(96.5)
    assert by_channel["spo2"].unit == "%"
    assert by_channel["spo2"].mdc_code == "150456"
    assert by_channel["temp"].value == pytest.approx(37.25)
    assert by_channel["temp"].unit == "Cel"
    assert by_channel["ecg"].vital == by_channel["pleth"].vital == "heart-rate"
    assert by_channel["ecg"].mdc_code == "147842"
    assert by_channel["nibp-sys"].unit == "mm[Hg]"
    assert {s.device_time for s in result.samples} == {device_clock}
    assert {s.device_id for s in result.samples} == {"bed-7"}
    assert len(result.samples) == 8
    assert result.skipped == () and result.clock_problem is None


def test_no_value_sentinels_and_a_probe_off_flag_give_no_sample_but_a_reason() -> None:
    monitor = shipped_map("generic-bedside-monitor")
    image = register_image(
        monitor, {"heart-rate": 80.0}, moment=POLLED_AT, flags={"spo2-probe-on": False}
    )
    image[Function.HOLDING][103] = 0x7FFF  # respiration: "no value"
    result = decode_poll(monitor, _blocks(monitor, image), device_id="d", polled_at=POLLED_AT)
    assert [(s.channel, s.value) for s in result.samples] == [("ecg", 80.0)]
    reasons = {s.name: s.reason for s in result.skipped}
    assert reasons["spo2"] == "flag 'spo2-probe-on' is off"
    assert reasons["resp-rate"] == "no value (raw 32767)"
    assert reasons["nibp-sys"] == "no value (raw -32768)"  # a vital the device has not measured


def test_an_impossible_device_clock_falls_back_to_the_poll_time_and_says_so() -> None:
    monitor = shipped_map("generic-bedside-monitor")
    image = register_image(monitor, {"heart-rate": 60.0}, moment=POLLED_AT, flags={})
    image[Function.HOLDING][1] = 13  # month 13
    result = decode_poll(monitor, _blocks(monitor, image), device_id="d", polled_at=POLLED_AT)
    assert result.samples[0].device_time == POLLED_AT
    assert result.clock_problem is not None and "not a time" in result.clock_problem


def test_a_device_clock_in_local_time_is_converted_to_utc() -> None:
    reg_map = _map(
        _value("hr", 10),
        '[clock]\nfunction = "holding"\naddress = 0\nformat = "datetime6"\nzone = "Europe/Berlin"',
    )
    image: RegisterImage = {f: {} for f in Function} | {
        Function.HOLDING: dict(enumerate([2026, 7, 1, 14, 30, 0])) | {10: 70}
    }
    result = decode_poll(reg_map, _blocks(reg_map, image), device_id="d", polled_at=POLLED_AT)
    assert result.samples[0].device_time == datetime(2026, 7, 1, 12, 30, tzinfo=UTC)


def test_a_unix_clock_is_read_with_the_maps_word_order() -> None:
    reg_map = _map(
        _value("hr", 10),
        'word_order = "little"\n[clock]\nfunction = "holding"\naddress = 0\nformat = "unix32"',
    )
    seconds = int(POLLED_AT.timestamp()) - 30
    words = [seconds & 0xFFFF, seconds >> 16]  # low word first
    image: RegisterImage = {f: {} for f in Function} | {
        Function.HOLDING: {0: words[0], 1: words[1], 10: 70}
    }
    result = decode_poll(reg_map, _blocks(reg_map, image), device_id="d", polled_at=POLLED_AT)
    assert result.samples[0].device_time == POLLED_AT - timedelta(seconds=30)


def test_a_map_without_clock_stamps_samples_with_the_poll_time_and_skips_nan() -> None:
    oximeter = shipped_map("generic-pulse-oximeter")
    image = register_image(oximeter, {"heart-rate": 88.0}, moment=POLLED_AT, flags={})
    result = decode_poll(oximeter, _blocks(oximeter, image), device_id="d", polled_at=POLLED_AT)
    assert [(s.vital, s.value, s.device_time) for s in result.samples] == [
        ("heart-rate", 88.0, POLLED_AT)
    ]
    assert result.skipped[0].name == "spo2" and "nan" in result.skipped[0].reason


def test_values_of_a_failed_request_are_skipped_and_the_rest_still_decoded() -> None:
    monitor = shipped_map("generic-bedside-monitor")
    image = register_image(monitor, {"heart-rate": 66.0}, moment=POLLED_AT, flags={})
    blocks = _blocks(monitor, image)
    del blocks[ReadRequest(Function.DISCRETE, 0, 1)]  # the flag request failed
    result = decode_poll(monitor, blocks, device_id="d", polled_at=POLLED_AT)
    assert [s.channel for s in result.samples] == ["ecg"]
    assert {s.name: s.reason for s in result.skipped}["spo2"] == "flag 'spo2-probe-on' was not read"


def test_scale_and_offset_turn_raw_counts_into_the_vitals_unit() -> None:
    reg_map = _map(_value("t", 0, "uint16", "scale = 0.1\noffset = -40", vital="body-temperature"))
    image: RegisterImage = {f: {} for f in Function} | {Function.HOLDING: {0: 772}}
    result = decode_poll(reg_map, _blocks(reg_map, image), device_id="d", polled_at=POLLED_AT)
    assert result.samples[0].value == pytest.approx(37.2)


# --- planning reads --------------------------------------------------------------------


def test_adjacent_registers_are_read_in_one_request_and_gaps_start_a_new_one() -> None:
    reg_map = _map(_value("a", 10) + _value("b", 11, "float32") + _value("c", 13) + _value("d", 20))
    assert reg_map.plan_reads() == (
        ReadRequest(Function.HOLDING, 10, 4),
        ReadRequest(Function.HOLDING, 20, 1),
    )
    bridged = _map(_value("a", 10) + _value("d", 20), "max_gap = 9")
    assert bridged.plan_reads() == (ReadRequest(Function.HOLDING, 10, 11),)


def test_no_request_exceeds_125_registers_and_no_value_is_split() -> None:
    entries = "".join(_value(f"v{i}", 2 * i, "float32") for i in range(63))  # 126 registers
    plan = _map(entries).plan_reads()
    assert [r.count for r in plan] == [124, 2]
    many = "".join(_value(f"v{i}", i) for i in range(200))
    assert [r.count for r in _map(many).plan_reads()] == [125, 75]
    small = _map(many, "max_registers_per_read = 16")
    assert max(r.count for r in small.plan_reads()) == 16


@settings(deadline=None)  # parses a map per example; shared CI cores make timing noisy
@given(
    st.lists(
        st.tuples(st.integers(0, 600), st.sampled_from(["int16", "float32", "float64"])),
        min_size=1,
        max_size=60,
    ),
    st.integers(0, 5),
)
def test_the_plan_covers_every_value_within_the_limits(
    entries: list[tuple[int, str]], max_gap: int
) -> None:
    text = "".join(_value(f"v{i}", address, t) for i, (address, t) in enumerate(entries))
    reg_map = _map(text, f"max_gap = {max_gap}")
    plan = reg_map.plan_reads()
    mapped = {a for v in reg_map.values for a in range(v.address, v.address + v.count)}
    for value in reg_map.values:
        assert any(r.covers(value.function, value.address, value.count) for r in plan)
    for request in plan:
        assert request.count <= MAX_REGISTERS_PER_READ
        unmapped = set(range(request.address, request.address + request.count)) - mapped
        assert max_gap > 0 or not unmapped
    ends = [(r.address, r.address + r.count) for r in plan]
    assert all(end <= next_start for (_, end), (next_start, _) in zip(ends, ends[1:], strict=False))


# --- the file check --------------------------------------------------------------------


def test_the_shipped_maps_are_valid_and_found_by_name() -> None:
    assert {"generic-bedside-monitor", "generic-pulse-oximeter"} <= set(shipped_map_names())
    assert resolve_register_map("generic-pulse-oximeter").model == "generic-pulse-oximeter"
    with pytest.raises(ConfigurationError, match="no shipped register map 'nope'"):
        shipped_map("nope")


def test_a_map_file_is_read_from_disk_and_a_missing_file_is_named(tmp_path: Path) -> None:
    path = tmp_path / "mine.toml"
    path.write_text('model = "mine"\n' + _value("hr", 1), encoding="utf-8")
    assert resolve_register_map(str(path)).values[0].name == "hr"
    with pytest.raises(ConfigurationError, match="absent.toml: cannot read"):
        load_register_map(tmp_path / "absent.toml")


@pytest.mark.parametrize(
    ("key", "toml_value", "message"),
    [
        ("vital", '"pulse"', "value[0] 'hr': unknown vital 'pulse'"),
        ("adress", "3", "value[0] 'hr': unknown key 'adress' (typo?)"),
        ("address", "65536", "value[0] 'hr': address 65536 is outside 0..65535"),
        ("address", '"ten"', "value[0] 'hr': 'address' has the wrong type"),
        ("address", "true", "value[0] 'hr': 'address' has the wrong type"),
        ("type", '"int24"', "value[0] 'hr': type 'int24' is not one of int16"),
        ("function", '"coil"', "function 'coil' is not one of holding, input"),
        ("byte_order", '"middle"', "byte_order 'middle' is not big or little"),
        ("invalid", "0x8000", "sentinel 32768 cannot occur in a int16 (-32768..32767)"),
        ("unit", '"1/s"', "unit '1/s' is not '/min'"),
        ("requires", '"probe"', "requires unknown flag 'probe'"),
        ("mdc", '"MDC_TEMP"', "mdc 'MDC_TEMP' is not a code of heart-rate"),
        ("scale", "0", "scale must not be 0"),
    ],
)
def test_a_wrong_entry_is_reported_with_the_file_entry_and_reason(
    key: str, toml_value: str, message: str
) -> None:
    entry = {
        "name": '"hr"',
        "vital": '"heart-rate"',
        "function": '"holding"',
        "address": "1",
        "type": '"int16"',
    }
    entry[key] = toml_value
    text = 'model = "m"\n[[value]]\n' + "".join(f"{k} = {v}\n" for k, v in entry.items())
    with pytest.raises(ConfigurationError) as caught:
        parse_register_map(text, source="bed.toml")
    assert str(caught.value).count("bed.toml: ") == 1
    assert message in str(caught.value)


def test_every_problem_of_a_file_is_reported_at_once_with_its_path() -> None:
    text = (
        'model = "m"\nbyte_order = "middle"\nmax_registers_per_read = 200\n'
        + _value("hr", 1, "int16", "adress = 2")
        + _value("hr", 2)
        + '[[value]]\nname = "x"\n'
    )
    with pytest.raises(ConfigurationError) as caught:
        parse_register_map(text, source="m.toml")
    paths = [issue.expression[0] for issue in caught.value.issues]
    assert paths == [
        "byte_order",
        "max_registers_per_read",
        "value[0].adress",
        "value[2].vital",
        "value",
    ]
    assert "value name 'hr' is used twice" in str(caught.value)


def test_broken_toml_and_a_map_without_values_are_refused() -> None:
    with pytest.raises(ConfigurationError, match="x.toml: not valid TOML"):
        parse_register_map("model = ", source="x.toml")
    with pytest.raises(
        ConfigurationError, match="x.toml: the map has no \\[\\[value\\]\\] entries"
    ):
        parse_register_map('model = "m"', source="x.toml")
    with pytest.raises(ConfigurationError, match="x.toml: 'model' is required"):
        parse_register_map(_value("hr", 1), source="x.toml")
    with pytest.raises(ConfigurationError, match="unknown time zone 'Mars/Olympus'"):
        _map(
            _value("hr", 9),
            '[clock]\nfunction = "holding"\naddress = 0\nformat = "datetime6"\n'
            'zone = "Mars/Olympus"',
        )


def test_float_sentinels_and_a_float_value_nan_are_no_value() -> None:
    reg_map = _map(_value("hr", 0, "float32", "invalid = -1.0"))
    entry = reg_map.values[0]
    assert entry.to_value(-1.0) is None
    assert entry.to_value(math.nan) is None
    assert entry.to_value(struct.unpack(">f", struct.pack(">f", 61.5))[0]) == 61.5
