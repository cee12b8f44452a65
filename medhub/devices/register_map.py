"""Modbus register maps: which registers of a device model hold which vital, and how.

Modbus (Modbus Application Protocol v1.1b3) moves bare 16-bit registers and
single bits; what they mean is in each device's manual. A register map is that
manual page as a TOML file, one per device model, so a new monitor needs a file
and no code. The format (see ``register_maps/generic-bedside-monitor.toml``)::

    model = "generic-bedside-monitor"       # required, the file's name is a good choice
    description = "..."                     # optional
    byte_order = "big"                      # default for entries: byte order inside a register
    word_order = "big"                      # default for entries: most significant register first
    max_registers_per_read = 125            # 1..125 (§6.3/§6.4: at most 125 per FC 3/4 request)
    max_gap = 0                             # unmapped registers a read may span to save a request

    [clock]                                 # optional: the device's own clock
    function = "holding"                    # holding | input
    address = 0
    format = "datetime6"                    # datetime6 (Y, M, D, h, m, s) | unix32 (seconds, UTC)
    zone = "UTC"                            # IANA zone the device clock keeps (datetime6)

    [[flag]]                                # optional: status bits, e.g. "SpO2 probe on finger"
    name = "spo2-probe-on"
    function = "discrete"                   # coil | discrete
    address = 0

    [[value]]
    name = "spo2"                           # unique in the file; the sample's channel by default
    vital = "oxygen-saturation"             # a key of medhub.clinical.vital_codes
    function = "holding"                    # holding | input
    address = 102
    type = "int16"                          # int16 uint16 int32 uint32 int64 uint64 float32 float64
    scale = 0.1                             # value = raw * scale + offset
    offset = 0.0
    unit = "%"                              # UCUM, must be the vital's unit after scale/offset
    invalid = [-32768, 32767]               # raw sentinels meaning "no value" (0x7FFF etc.)
    mdc = "MDC_PULS_OXIM_SAT_O2"            # optional IEEE 11073-10101 code kept on the sample
    requires = "spo2-probe-on"              # optional flag that must be set for a valid value
    byte_order = "big"                      # optional, overrides the file default
    word_order = "little"

Modbus has no standard for values wider than one register, so byte order
(inside each register) and word order (of the registers) are per entry: "big"
and "big" is ABCD, word "little" is CDAB (common on PLC-style devices), byte
"little" is BADC, both "little" DCBA.

Everything here is pure: :meth:`RegisterMap.plan_reads` coalesces entries
into few requests and :func:`decode_poll` turns the registers read into
:class:`Sample` objects with the poll time passed in. Reading and checking the
file is :mod:`medhub.devices.register_map_file`; the poller
(:mod:`medhub.adapters.modbus_poller`) does the I/O.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, Final, Literal
from zoneinfo import ZoneInfo

from medhub.clinical.vital_codes import VitalSign
from medhub.devices.samples import Sample

Order = Literal["big", "little"]

#: Modbus Application Protocol v1.1b3 §6.1-§6.4: quantity limits per read request.
MAX_REGISTERS_PER_READ: Final = 125
MAX_BITS_PER_READ: Final = 2000


class Function(StrEnum):
    """The four Modbus data tables, named as in the map file (function codes 3, 4, 1, 2)."""

    HOLDING = "holding"
    INPUT = "input"
    COIL = "coil"
    DISCRETE = "discrete"

    @property
    def is_bits(self) -> bool:
        return self in (Function.COIL, Function.DISCRETE)


class DataType(StrEnum):
    """How many registers a value spans and how its bytes read (``struct`` format)."""

    INT16 = "int16"
    UINT16 = "uint16"
    INT32 = "int32"
    UINT32 = "uint32"
    INT64 = "int64"
    UINT64 = "uint64"
    FLOAT32 = "float32"
    FLOAT64 = "float64"

    @property
    def struct_format(self) -> str:
        return _STRUCT[self]

    @property
    def registers(self) -> int:
        return struct.calcsize(self.struct_format) // 2

    @property
    def is_float(self) -> bool:
        return self in (DataType.FLOAT32, DataType.FLOAT64)

    def int_range(self) -> tuple[int, int]:
        """The raw integers this type can hold (for sentinel checks and encoding)."""
        bits = 16 * self.registers
        if self.value.startswith("u"):
            return 0, 2**bits - 1
        return -(2 ** (bits - 1)), 2 ** (bits - 1) - 1


_STRUCT: Final = {
    DataType.INT16: "h",
    DataType.UINT16: "H",
    DataType.INT32: "i",
    DataType.UINT32: "I",
    DataType.INT64: "q",
    DataType.UINT64: "Q",
    DataType.FLOAT32: "f",
    DataType.FLOAT64: "d",
}


@dataclass(frozen=True, slots=True)
class Encoding:
    """A data type with its byte and word order: everything needed to (de)code registers."""

    data_type: DataType
    byte_order: Order = "big"
    word_order: Order = "big"


def decode_registers(registers: Sequence[int], encoding: Encoding) -> int | float:
    """The raw number in ``registers`` (exactly ``data_type.registers`` of them)."""
    words = list(registers)
    if len(words) != encoding.data_type.registers:
        raise ValueError(f"{encoding.data_type} needs {encoding.data_type.registers} registers")
    if encoding.word_order == "little":
        words.reverse()
    data = b"".join(word.to_bytes(2, encoding.byte_order) for word in words)
    value: int | float = struct.unpack(">" + encoding.data_type.struct_format, data)[0]
    return value


def encode_registers(raw: int | float, encoding: Encoding) -> list[int]:
    """The registers a device holding ``raw`` sends: the inverse of :func:`decode_registers`."""
    data = struct.pack(">" + encoding.data_type.struct_format, raw)
    words = [int.from_bytes(data[i : i + 2], encoding.byte_order) for i in range(0, len(data), 2)]
    if encoding.word_order == "little":
        words.reverse()
    return words


@dataclass(frozen=True, slots=True)
class StatusFlag:
    """One coil or discrete input that qualifies values (probe on, leads attached)."""

    name: str
    function: Function
    address: int


@dataclass(frozen=True, slots=True)
class RegisterValue:
    """One measured value in the map: where it is, how to decode it, which vital it is."""

    name: str
    vital: VitalSign
    function: Function
    address: int
    encoding: Encoding
    scale: float = 1.0
    offset: float = 0.0
    invalid: frozenset[float] = frozenset()
    mdc_code: str | None = None
    channel: str | None = None
    requires: str | None = None

    @property
    def count(self) -> int:
        return self.encoding.data_type.registers

    def to_value(self, raw: int | float) -> float | None:
        """The measured value in the vital's unit, or None for a "no value" reading."""
        if isinstance(raw, float) and not math.isfinite(raw):
            return None
        if raw in self.invalid:
            return None
        return raw * self.scale + self.offset

    def to_raw(self, value: float) -> int | float:
        """The raw number a device stores for ``value`` (rounded and clamped for integers)."""
        raw = (value - self.offset) / self.scale
        if self.encoding.data_type.is_float:
            return raw
        low, high = self.encoding.data_type.int_range()
        return min(max(round(raw), low), high)


ClockFormat = Literal["datetime6", "unix32"]


@dataclass(frozen=True, slots=True)
class ClockRegisters:
    """The device's clock, so samples carry the device's time instead of the poll time."""

    function: Function
    address: int
    format: ClockFormat
    zone: ZoneInfo
    encoding: Encoding

    @property
    def count(self) -> int:
        return 6 if self.format == "datetime6" else 2

    def decode(self, registers: Sequence[int]) -> datetime:
        """The clock's time as aware UTC; ValueError for an impossible date."""
        if self.format == "unix32":
            seconds = decode_registers(registers, self.encoding)
            return datetime.fromtimestamp(seconds, UTC)
        year, month, day, hour, minute, second = registers
        local = datetime(year, month, day, hour, minute, second, tzinfo=self.zone)
        return local.astimezone(UTC)

    def encode(self, moment: datetime) -> list[int]:
        """Registers holding ``moment`` as this device's clock would (for simulators)."""
        if self.format == "unix32":
            return encode_registers(int(moment.timestamp()), self.encoding)
        local = moment.astimezone(self.zone)
        return [local.year, local.month, local.day, local.hour, local.minute, local.second]


@dataclass(frozen=True, slots=True, order=True)
class ReadRequest:
    """One Modbus read: a table, a start address and a quantity."""

    function: Function
    address: int
    count: int

    def covers(self, function: Function, address: int, count: int) -> bool:
        return (
            function == self.function
            and self.address <= address
            and address + count <= self.address + self.count
        )


@dataclass(frozen=True, slots=True)
class RegisterMap:
    """A validated map file; build it with :mod:`medhub.devices.register_map_file`."""

    model: str
    source: str
    values: tuple[RegisterValue, ...]
    flags: tuple[StatusFlag, ...] = ()
    clock: ClockRegisters | None = None
    description: str = ""
    max_registers_per_read: int = MAX_REGISTERS_PER_READ
    max_gap: int = 0

    def plan_reads(self) -> tuple[ReadRequest, ...]:
        """As few read requests as cover every value, flag and the clock.

        Ranges of one table are sorted and merged greedily while the merged
        request stays within the per-request limit and skips at most
        ``max_gap`` unmapped registers (reading unmapped registers makes some
        devices answer "illegal data address", so the default is 0). Greedy
        merging of sorted intervals under a length cap is optimal here: any
        request that closes later can only cover a subset of what the greedy
        one covers.
        """
        spans: list[tuple[Function, int, int]] = [
            (v.function, v.address, v.address + v.count) for v in self.values
        ]
        spans += [(f.function, f.address, f.address + 1) for f in self.flags]
        if self.clock is not None:
            c = self.clock
            spans.append((c.function, c.address, c.address + c.count))
        requests: list[ReadRequest] = []
        current: tuple[Function, int, int] | None = None
        for function, start, end in sorted(set(spans)):
            limit = MAX_BITS_PER_READ if function.is_bits else self.max_registers_per_read
            gap = 0 if function.is_bits else self.max_gap
            if current is not None:
                fn, cur_start, cur_end = current
                fits = fn == function and start <= cur_end + gap
                if fits and max(end, cur_end) - cur_start <= limit:
                    current = (fn, cur_start, max(end, cur_end))
                    continue
                requests.append(ReadRequest(fn, cur_start, cur_end - cur_start))
            current = (function, start, end)
        if current is not None:
            requests.append(ReadRequest(current[0], current[1], current[2] - current[1]))
        return tuple(requests)


Block = Sequence[int] | Sequence[bool]


@dataclass(frozen=True, slots=True)
class Skipped:
    """A value a poll did not turn into a sample, and why (logged, never an error)."""

    name: str
    reason: str


@dataclass(frozen=True, slots=True)
class PollResult:
    """What one poll's registers mean: samples, values without a sample, clock trouble."""

    samples: tuple[Sample, ...]
    skipped: tuple[Skipped, ...] = ()
    clock_problem: str | None = None


def _slice(
    blocks: Mapping[ReadRequest, Block], function: Function, address: int, count: int
) -> list[Any] | None:
    for request, data in blocks.items():
        if request.covers(function, address, count):
            start = address - request.address
            return list(data[start : start + count])
    return None


def _device_time(
    reg_map: RegisterMap, blocks: Mapping[ReadRequest, Block], polled_at: datetime
) -> tuple[datetime, str | None]:
    clock = reg_map.clock
    if clock is None:
        return polled_at, None
    registers = _slice(blocks, clock.function, clock.address, clock.count)
    if registers is None:
        return polled_at, "clock registers were not read; using the poll time"
    try:
        return clock.decode(registers), None
    except (ValueError, OverflowError) as exc:
        return polled_at, f"clock registers {registers} are not a time ({exc}); using the poll time"


def decode_poll(
    reg_map: RegisterMap,
    blocks: Mapping[ReadRequest, Block],
    *,
    device_id: str,
    polled_at: datetime,
) -> PollResult:
    """Turn the data of one poll's read requests into samples.

    ``blocks`` holds the answer of each request that succeeded; values whose
    registers are missing (their request failed), that hold an "invalid"
    sentinel or NaN, or whose required flag is off are skipped with a reason,
    so a partial answer still yields every value it can. ``device_time`` is the
    device clock when the map has one and it reads as a time, else
    ``polled_at`` (aware UTC).
    """
    device_time, clock_problem = _device_time(reg_map, blocks, polled_at)
    flags: dict[str, bool | None] = {}
    for flag in reg_map.flags:
        bits = _slice(blocks, flag.function, flag.address, 1)
        flags[flag.name] = None if bits is None else bool(bits[0])
    samples: list[Sample] = []
    skipped: list[Skipped] = []
    for entry in reg_map.values:
        if entry.requires is not None and not flags[entry.requires]:
            state = "was not read" if flags[entry.requires] is None else "is off"
            skipped.append(Skipped(entry.name, f"flag {entry.requires!r} {state}"))
            continue
        registers = _slice(blocks, entry.function, entry.address, entry.count)
        if registers is None:
            skipped.append(Skipped(entry.name, "registers were not read"))
            continue
        raw = decode_registers(registers, entry.encoding)
        value = entry.to_value(raw)
        if value is None:
            skipped.append(Skipped(entry.name, f"no value (raw {raw!r})"))
            continue
        samples.append(
            Sample(
                device_id=device_id,
                vital=entry.vital.key,
                value=value,
                unit=entry.vital.ucum,
                device_time=device_time,
                mdc_code=entry.mdc_code,
                channel=entry.channel,
            )
        )
    return PollResult(tuple(samples), tuple(skipped), clock_problem)
