"""A simulated bedside monitor on Modbus TCP, so the hub can be seen working without hardware.

``medhub simulate`` and the poller's tests run this: a real pymodbus TCP
server (pymodbus 3.16's ``SimDevice``/``SimData`` simulator API; the older
datastore classes are deprecated) laid out by a register map from
:mod:`medhub.devices.register_map`. Whatever the map lists is served, encoded
exactly as the map says a device encodes it, so the simulator checks the map
and the poller against each other.

Values change over time: each vital is a baseline with a slow sinusoidal drift
and Gaussian noise (:class:`VitalsModel`), evaluated at the moment a request
arrives (a pymodbus ``action`` refreshes the registers before each read). A
device can be switched at run time to answer Modbus exception 04 (server
device failure) or to stop answering, as faulty monitors do.
"""

from __future__ import annotations

import asyncio
import math
import random
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Final, Literal

from pymodbus.constants import ExcCodes
from pymodbus.framer import FramerType
from pymodbus.server import ModbusTcpServer
from pymodbus.simulator import DataType, SimData, SimDevice

from medhub.devices.register_map import Function, RegisterMap, encode_registers

Mode = Literal["normal", "exception", "silent"]


@dataclass(frozen=True, slots=True)
class VitalProfile:
    """Baseline, drift and noise of one vital in the simulated patient."""

    baseline: float
    drift: float
    period_s: float
    noise: float
    low: float
    high: float


#: A stable adult: NEWS2 scores 0 for all of these (Royal College of Physicians, NEWS2 chart).
ADULT_PROFILES: Final[dict[str, VitalProfile]] = {
    "heart-rate": VitalProfile(74, 6, 300, 1.5, 30, 220),
    "oxygen-saturation": VitalProfile(97, 1, 420, 0.4, 70, 100),
    "respiratory-rate": VitalProfile(15, 2, 360, 0.7, 4, 60),
    "systolic-blood-pressure": VitalProfile(122, 8, 900, 2, 60, 250),
    "diastolic-blood-pressure": VitalProfile(78, 5, 900, 1.5, 30, 150),
    "body-temperature": VitalProfile(36.9, 0.2, 1800, 0.03, 33, 42),
}


class VitalsModel:
    """Plausible, changing vitals: ``baseline + drift * sin(2 pi t / period + phase) + noise``.

    Mean pressure is derived as (systolic + 2 diastolic) / 3 so the three
    pressures stay consistent; every value is clamped to a physiological range.
    """

    def __init__(self, *, seed: int | None = None, profiles: dict[str, VitalProfile] | None = None):
        self._random = random.Random(seed)
        self._profiles = profiles or ADULT_PROFILES
        self._phase = {key: self._random.uniform(0, 2 * math.pi) for key in self._profiles}

    def values_at(self, moment: datetime) -> dict[str, float]:
        """One reading of every vital at ``moment`` (vital key -> value in its UCUM unit)."""
        t = moment.timestamp()
        values: dict[str, float] = {}
        for key, p in self._profiles.items():
            wave = p.drift * math.sin(2 * math.pi * t / p.period_s + self._phase[key])
            value = p.baseline + wave + self._random.gauss(0, p.noise)
            values[key] = min(max(value, p.low), p.high)
        if "systolic-blood-pressure" in values and "diastolic-blood-pressure" in values:
            sys_bp, dia_bp = values["systolic-blood-pressure"], values["diastolic-blood-pressure"]
            values["mean-blood-pressure"] = (sys_bp + 2 * dia_bp) / 3
        return values


RegisterImage = dict[Function, dict[int, int]]


def register_image(
    reg_map: RegisterMap, vitals: dict[str, float], *, moment: datetime, flags: dict[str, bool]
) -> RegisterImage:
    """The registers and bits a device with ``reg_map`` holds for these readings.

    The inverse of :func:`medhub.devices.register_map.decode_poll` (up to the
    rounding of integer types); a vital missing from ``vitals`` is stored as
    the entry's first "invalid" sentinel, as a monitor without that value would.
    """
    image: RegisterImage = {function: {} for function in Function}
    if reg_map.clock is not None:
        for i, word in enumerate(reg_map.clock.encode(moment)):
            image[reg_map.clock.function][reg_map.clock.address + i] = word
    for flag in reg_map.flags:
        image[flag.function][flag.address] = int(flags.get(flag.name, True))
    for entry in reg_map.values:
        value = vitals.get(entry.vital.key)
        if value is not None:
            raw = entry.to_raw(value)
        elif entry.invalid:
            raw = min(entry.invalid)
            raw = int(raw) if not entry.encoding.data_type.is_float else raw
        else:
            raw = math.nan if entry.encoding.data_type.is_float else 0
        for i, word in enumerate(encode_registers(raw, entry.encoding)):
            image[entry.function][entry.address + i] = word
    return image


def _ranges(addresses: Iterable[int]) -> list[tuple[int, int]]:
    """Sorted addresses as (start, count) runs of consecutive addresses."""
    runs: list[tuple[int, int]] = []
    for address in sorted(set(addresses)):
        if runs and runs[-1][0] + runs[-1][1] == address:
            runs[-1] = (runs[-1][0], runs[-1][1] + 1)
        else:
            runs.append((address, 1))
    return runs


#: pymodbus needs every table non-empty; unmapped tables get a block no request reaches.
_UNREACHABLE_BITS: Final = 65520
_UNREACHABLE_REGISTER: Final = 65535
_FUNCTION_CODES: Final = {
    1: Function.COIL,
    2: Function.DISCRETE,
    3: Function.HOLDING,
    4: Function.INPUT,
}


class SimulatedDevice:
    """One simulated unit: a register map, a patient, and a switchable fault ``mode``.

    ``flags`` sets the map's status bits (all on by default: probe on the
    finger); ``mode`` is ``normal``, ``exception`` (every read answers Modbus
    exception 04) or ``silent`` (reads get no answer, like a hung device).
    """

    def __init__(
        self,
        reg_map: RegisterMap,
        *,
        unit_id: int = 1,
        seed: int | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.reg_map = reg_map
        self.unit_id = unit_id
        self.mode: Mode = "normal"
        self.flags: dict[str, bool] = {flag.name: True for flag in reg_map.flags}
        self.reads = 0
        self._vitals = VitalsModel(seed=seed)
        self._clock = clock
        self._released = asyncio.Event()

    def sim_device(self) -> SimDevice:
        """The pymodbus device: four separate tables (coils, discrete, holding, input)."""
        image = register_image(self.reg_map, {}, moment=self._clock(), flags=self.flags)
        tables: list[list[SimData]] = []
        for function in (Function.COIL, Function.DISCRETE, Function.HOLDING, Function.INPUT):
            blocks = [
                SimData(address=start, count=count, values=0, datatype=DataType.REGISTERS)
                if not function.is_bits
                else SimData(address=start, values=[False] * count, datatype=DataType.BITS)
                for start, count in _ranges(image[function])
            ]
            if not blocks and function.is_bits:
                blocks = [
                    SimData(
                        address=_UNREACHABLE_BITS,
                        values=[False] * 16,
                        datatype=DataType.BITS,
                        readonly=True,
                    )
                ]
            elif not blocks:
                blocks = [SimData(address=_UNREACHABLE_REGISTER, datatype=DataType.INVALID)]
            for block in blocks:
                block.readonly = True
            tables.append(blocks)
        return SimDevice(
            id=self.unit_id,
            simdata=(tables[0], tables[1], tables[2], tables[3]),
            action=self._on_request,
        )

    def release(self) -> None:
        """Let requests held by ``silent`` mode finish (on shutdown)."""
        self._released.set()

    async def _on_request(
        self,
        function_code: int,
        start_address: int,
        _address: int,
        _count: int,
        current_registers: list[int],
        _set_values: list[int] | list[bool] | None,
    ) -> ExcCodes | None:
        """Refresh the table being read to "now", or act out the fault ``mode``."""
        if self.mode == "silent":
            await self._released.wait()
            return ExcCodes.DEVICE_FAILURE
        if self.mode == "exception":
            return ExcCodes.DEVICE_FAILURE
        self.reads += 1
        function = _FUNCTION_CODES[function_code]
        moment = self._clock()
        values = self._vitals.values_at(moment)
        image = register_image(self.reg_map, values, moment=moment, flags=self.flags)
        for address, word in image[function].items():
            if function.is_bits:
                index, bit = divmod(address, 16)
                index -= start_address
                if word:
                    current_registers[index] |= 1 << bit
                else:
                    current_registers[index] &= ~(1 << bit)
            else:
                current_registers[address - start_address] = word
        return None


class ModbusSimulator:
    """A Modbus TCP server for one or more :class:`SimulatedDevice` units (by unit id).

    With ``framer=FramerType.RTU`` it speaks RTU frames over TCP, as a serial
    device server (an RS-485 to Ethernet converter in raw mode) does.
    """

    def __init__(
        self,
        devices: Sequence[SimulatedDevice],
        *,
        host: str = "127.0.0.1",
        port: int = 5020,
        framer: FramerType = FramerType.SOCKET,
    ) -> None:
        self.devices = list(devices)
        self.framer = framer
        self.host = host
        self._requested_port = port
        self._server: ModbusTcpServer | None = None
        self.port = port

    async def start(self) -> None:
        """Listen; with port 0 the bound port is then in :attr:`port`."""
        server = ModbusTcpServer(
            [device.sim_device() for device in self.devices],
            address=(self.host, self._requested_port),
            framer=self.framer,
        )
        await server.serve_forever(background=True)
        sockets = getattr(server.transport, "sockets", None)
        if sockets:
            self.port = int(sockets[0].getsockname()[1])
        self._server = server

    async def stop(self) -> None:
        """Close the listener and every connection; held ``silent`` requests end too."""
        if self._server is not None:
            await self._server.shutdown()  # type: ignore[no-untyped-call]
            self._server = None
        for device in self.devices:
            device.release()
        await asyncio.sleep(0)

    async def __aenter__(self) -> ModbusSimulator:
        await self.start()
        return self

    async def __aexit__(self, *_exc: object) -> None:
        await self.stop()


async def run_simulator(
    reg_map: RegisterMap,
    *,
    host: str = "0.0.0.0",
    port: int = 5020,
    unit_id: int = 1,
    seed: int | None = None,
    on_ready: Callable[[int], None] | None = None,
) -> None:
    """Serve one simulated device until cancelled (what ``medhub simulate`` runs)."""
    simulator = ModbusSimulator(
        [SimulatedDevice(reg_map, unit_id=unit_id, seed=seed)], host=host, port=port
    )
    await simulator.start()
    try:
        if on_ready is not None:
            on_ready(simulator.port)
        await asyncio.Event().wait()
    finally:
        await simulator.stop()
