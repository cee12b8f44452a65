"""Modbus TCP and RTU poller: reads devices on their intervals and hands samples to a sink.

A thin shell around the pure codec in :mod:`medhub.devices.register_map`: per
device, plan the reads once, then every ``interval`` read the registers,
decode them, and store the samples. One asyncio task per device, so a device
that times out, answers Modbus exceptions (Modbus Application Protocol v1.1b3
§7) or drops its connection only delays itself; each failure is logged with
the device named and counted in :class:`DeviceStats`.

Devices are addressed by URL, the same code path for TCP and serial::

    modbus+tcp://10.1.2.3:502?unit=1
    modbus+rtu:///dev/ttyUSB0?unit=3&baudrate=19200&parity=E&stopbits=1&bytesize=8
    modbus+rtu://10.1.2.4:4001?unit=3      RTU frames through a serial device server

Devices with the same endpoint (units on one RS-485 bus, or behind one TCP
gateway) share one client: a serial port cannot be opened twice, and the
pymodbus client serialises their requests. Reconnects back off exponentially
per endpoint. The pymodbus client's own retries and reconnect task are turned
off so that timeouts and back-off are decided here, in one place.

Nothing read is lost to a store outage: when the sink raises
:class:`StoreUnavailableError` the device keeps the reading and retries storing,
with back-off, before it polls again (DESIGN.md, reliability rules).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Final
from urllib.parse import parse_qs, urlsplit

import structlog
from pymodbus.client import AsyncModbusSerialClient, AsyncModbusTcpClient, ModbusBaseClient
from pymodbus.constants import ExcCodes
from pymodbus.exceptions import ConnectionException, ModbusException, ModbusIOException
from pymodbus.pdu import ModbusPDU
from structlog.typing import FilteringBoundLogger

from medhub.devices.register_map import Block, Function, ReadRequest, RegisterMap, decode_poll
from medhub.devices.samples import Sample, SampleSink
from medhub.errors import ConfigurationError, MedhubError, StoreUnavailableError
from medhub.metrics import SAMPLES_INGESTED, count_rejected

_log = structlog.get_logger("medhub.adapters.modbus")

_TCP_SCHEMES: Final = {"modbus+tcp", "modbus-tcp", "tcp"}
_RTU_SCHEMES: Final = {"modbus+rtu", "modbus-rtu", "rtu"}


@dataclass(frozen=True, slots=True)
class TcpEndpoint:
    host: str
    port: int = 502


@dataclass(frozen=True, slots=True)
class SerialEndpoint:
    port: str
    baudrate: int = 19200
    bytesize: int = 8
    parity: str = "E"  # Modbus over serial line v1.02 §2.5.1: even parity is the default
    stopbits: int = 1


Endpoint = TcpEndpoint | SerialEndpoint


def parse_modbus_url(url: str) -> tuple[Endpoint, int]:
    """The endpoint and unit id (slave address, 1..247) a device URL names."""
    parts = urlsplit(url)
    query = {key: values[-1] for key, values in parse_qs(parts.query).items()}
    allowed = {"unit"} if parts.scheme in _TCP_SCHEMES else {"unit", *SerialEndpoint.__slots__}
    unknown = sorted(set(query) - allowed - {"port"})
    try:
        if unknown:
            raise ValueError(f"unknown parameter(s) {', '.join(unknown)}")
        unit = int(query.get("unit", "1"))
        if not 0 <= unit <= 247:
            raise ValueError("unit must be 0..247")
        if parts.scheme in _TCP_SCHEMES:
            if not parts.hostname:
                raise ValueError("a host is required")
            return TcpEndpoint(parts.hostname, parts.port or 502), unit
        if parts.scheme in _RTU_SCHEMES:
            if parts.hostname:  # pyserial's URL for a raw TCP serial device server
                port = f"socket://{parts.hostname}:{parts.port or 4001}"
            elif parts.path:
                port = parts.path
            else:
                raise ValueError("a serial port path (or a device server host) is required")
            serial = SerialEndpoint(
                port=port,
                baudrate=int(query.get("baudrate", "19200")),
                bytesize=int(query.get("bytesize", "8")),
                parity=query.get("parity", "E").upper(),
                stopbits=int(query.get("stopbits", "1")),
            )
            if serial.parity not in ("N", "E", "O") or serial.bytesize not in (7, 8):
                raise ValueError("parity must be N, E or O and bytesize 7 or 8")
            return serial, unit
        raise ValueError("scheme must be modbus+tcp or modbus+rtu")
    except ValueError as exc:
        raise ConfigurationError(f"Modbus device URL {url!r}: {exc}") from exc


@dataclass(frozen=True, slots=True)
class ModbusDevice:
    """One device to poll: medhub's id for it, where it is, its map and its timing.

    ``interval`` is the time between poll starts (a poll that overruns is
    followed at once, never by a burst of missed ones); ``timeout`` bounds each
    request. Devices sharing an endpoint share its connection, which waits for
    the longest ``timeout`` among them.
    """

    device_id: str
    url: str
    register_map: RegisterMap
    interval: float = 5.0
    timeout: float = 1.0

    def __post_init__(self) -> None:
        if self.interval <= 0 or self.timeout <= 0:
            raise ConfigurationError(f"Modbus device {self.device_id}: interval and timeout > 0")
        parse_modbus_url(self.url)


@dataclass(slots=True)
class DeviceStats:
    """Counters per device, for /metrics and for operators asking "is bed 12 being read?"."""

    polls: int = 0
    polls_ok: int = 0
    timeouts: int = 0
    exception_responses: int = 0
    connect_failures: int = 0
    samples_stored: int = 0
    store_failures: int = 0
    samples_rejected: int = 0
    samples_lost_at_shutdown: int = 0
    last_error: str | None = None
    last_success: datetime | None = None


ClientFactory = Callable[[Endpoint, float], ModbusBaseClient]


def default_client(endpoint: Endpoint, timeout: float) -> ModbusBaseClient:
    """A pymodbus client without its own retries or reconnect task (the poller does those)."""
    if isinstance(endpoint, TcpEndpoint):
        return AsyncModbusTcpClient(
            endpoint.host, port=endpoint.port, timeout=timeout, retries=0, reconnect_delay=0
        )
    try:
        return AsyncModbusSerialClient(
            endpoint.port,
            baudrate=endpoint.baudrate,
            bytesize=endpoint.bytesize,
            parity=endpoint.parity,
            stopbits=endpoint.stopbits,
            timeout=timeout,
            retries=0,
            reconnect_delay=0,
        )
    except RuntimeError as exc:  # pymodbus's way of saying pyserial is missing
        raise ConfigurationError(f"Modbus RTU on {endpoint.port}: {exc}") from exc


class _Link:
    """One client to one endpoint, connected on demand with exponential back-off."""

    def __init__(self, client: ModbusBaseClient, backoff: tuple[float, float]) -> None:
        self.client = client
        self._min, self._max = backoff
        self._delay = self._min
        self._next_attempt = 0.0
        self._lock = asyncio.Lock()

    async def ensure_connected(self) -> bool | None:
        """True if connected; False if an attempt failed; None if still backing off."""
        async with self._lock:
            if self.client.connected:
                return True
            now = asyncio.get_running_loop().time()
            if now < self._next_attempt:
                return None
            if await self.client.connect():
                self._delay = self._min
                return True
            self._next_attempt = now + self._delay
            self._delay = min(self._delay * 2, self._max)
            return False


async def _read(client: ModbusBaseClient, request: ReadRequest, unit: int) -> ModbusPDU:
    read = {
        Function.HOLDING: client.read_holding_registers,
        Function.INPUT: client.read_input_registers,
        Function.COIL: client.read_coils,
        Function.DISCRETE: client.read_discrete_inputs,
    }[request.function]
    return await read(request.address, count=request.count, device_id=unit)


def _exception_name(code: int) -> str:
    try:
        return ExcCodes(code).name
    except ValueError:
        return f"code {code}"


class _Abandon(Exception):
    """The device stopped answering mid-poll; its remaining requests would only time out."""


@dataclass(slots=True)
class _Reading:
    samples: tuple[Sample, ...]
    received_at: datetime


@dataclass(slots=True)
class _DeviceRun:
    device: ModbusDevice
    unit: int
    link: _Link
    plan: tuple[ReadRequest, ...]
    stats: DeviceStats
    log: FilteringBoundLogger = field(repr=False)


class ModbusPoller:
    """Polls every configured device on its own interval until :meth:`stop`."""

    def __init__(
        self,
        devices: Sequence[ModbusDevice],
        sink: SampleSink,
        *,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        client_factory: ClientFactory = default_client,
        reconnect_backoff: tuple[float, float] = (0.5, 30.0),
        store_backoff: tuple[float, float] = (0.5, 30.0),
        shutdown_grace: float = 5.0,
    ) -> None:
        ids = [device.device_id for device in devices]
        if len(set(ids)) != len(ids):
            raise ConfigurationError(f"Modbus device ids must be unique: {ids}")
        self._sink = sink
        self._clock = clock
        self._store_backoff = store_backoff
        self._grace = shutdown_grace
        self._stopping = asyncio.Event()
        self._ingested = SAMPLES_INGESTED.labels("modbus")
        self.stats: dict[str, DeviceStats] = {}
        self._links: dict[Endpoint, _Link] = {}
        self._runs: list[_DeviceRun] = []
        timeouts: dict[Endpoint, float] = {}
        for device in devices:
            endpoint, _unit = parse_modbus_url(device.url)
            timeouts[endpoint] = max(timeouts.get(endpoint, 0.0), device.timeout)
        for endpoint, timeout in timeouts.items():
            self._links[endpoint] = _Link(client_factory(endpoint, timeout), reconnect_backoff)
        for device in devices:
            endpoint, unit = parse_modbus_url(device.url)
            stats = self.stats[device.device_id] = DeviceStats()
            log = _log.bind(device_id=device.device_id, model=device.register_map.model)
            plan = device.register_map.plan_reads()
            self._runs.append(_DeviceRun(device, unit, self._links[endpoint], plan, stats, log))

    def stop(self) -> None:
        """Ask every device to finish its current poll and store, then :meth:`run` returns."""
        self._stopping.set()

    async def run(self) -> None:
        """Poll until :meth:`stop` (or cancellation); then close every connection."""
        tasks = [
            asyncio.create_task(self._poll_forever(run), name=f"modbus {run.device.device_id}")
            for run in self._runs
        ]
        try:
            await self._stopping.wait()
        finally:
            self._stopping.set()
            _done, pending = await asyncio.wait(tasks, timeout=self._grace)
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
            for link in self._links.values():
                link.client.close()

    async def _stopped_within(self, seconds: float) -> bool:
        try:
            await asyncio.wait_for(self._stopping.wait(), max(seconds, 0.0))
        except TimeoutError:
            return False
        return True

    async def _poll_forever(self, run: _DeviceRun) -> None:
        loop = asyncio.get_running_loop()
        due = loop.time()
        while not self._stopping.is_set():
            try:
                reading = await self._poll_once(run)
                if reading is not None and reading.samples:
                    await self._store(run, reading)
            except Exception as exc:  # a bug must cost one poll, never the device's task
                run.stats.last_error = repr(exc)
                run.log.exception("modbus_poll_crashed")
            due = max(due + run.device.interval, loop.time())
            if await self._stopped_within(due - loop.time()):
                return

    async def _poll_once(self, run: _DeviceRun) -> _Reading | None:
        run.stats.polls += 1
        state = await run.link.ensure_connected()
        if not state:
            if state is False:
                run.stats.connect_failures += 1
                run.stats.last_error = f"cannot connect to {run.device.url}"
                run.log.warning("modbus_connect_failed", url=run.device.url)
            return None
        blocks: dict[ReadRequest, Block] = {}
        try:
            for request in run.plan:
                data = await self._read_one(run, request)
                if data is not None:
                    blocks[request] = data
        except _Abandon:
            pass
        if not blocks:
            return None
        polled_at = self._clock()
        result = decode_poll(
            run.device.register_map, blocks, device_id=run.device.device_id, polled_at=polled_at
        )
        if len(blocks) == len(run.plan):
            run.stats.polls_ok += 1
            run.stats.last_success = polled_at
        if result.clock_problem:
            run.log.warning("modbus_clock_invalid", problem=result.clock_problem)
        for skipped in result.skipped:
            run.log.debug("modbus_value_skipped", value=skipped.name, reason=skipped.reason)
        return _Reading(result.samples, polled_at)

    async def _read_one(self, run: _DeviceRun, request: ReadRequest) -> Block | None:
        where = {"function": request.function.value, "address": request.address}
        try:
            response = await _read(run.link.client, request, run.unit)
        except ModbusIOException as exc:
            run.stats.timeouts += 1
            run.stats.last_error = f"no response: {exc}"
            run.log.warning("modbus_timeout", **where, timeout=run.device.timeout)
            raise _Abandon from exc
        except (ConnectionException, ModbusException) as exc:
            run.stats.last_error = f"connection: {exc}"
            run.log.warning("modbus_connection_lost", **where, error=str(exc))
            raise _Abandon from exc
        if response.isError():
            name = _exception_name(response.exception_code)
            run.stats.exception_responses += 1
            run.stats.last_error = f"exception response {name}"
            run.log.warning("modbus_exception_response", **where, exception=name)
            return None
        if request.function.is_bits:
            return list(response.bits[: request.count])
        if len(response.registers) != request.count:
            run.stats.last_error = "short response"
            run.log.warning("modbus_short_response", **where, got=len(response.registers))
            return None
        return list(response.registers)

    async def _store(self, run: _DeviceRun, reading: _Reading) -> None:
        """Store one reading, retrying while the store is unavailable; polling waits meanwhile."""
        delay, ceiling = self._store_backoff
        while True:
            try:
                await asyncio.to_thread(
                    self._sink.store, reading.samples, received_at=reading.received_at
                )
            except StoreUnavailableError as exc:
                run.stats.store_failures += 1
                run.log.warning("modbus_store_unavailable", error=str(exc), retry_in=delay)
            except MedhubError as exc:
                run.stats.samples_rejected += len(reading.samples)
                count_rejected("modbus", "store-refused", len(reading.samples))
                run.log.error("modbus_samples_rejected", error=str(exc))
                return
            except Exception:
                run.stats.store_failures += 1
                run.log.exception("modbus_store_failed", retry_in=delay)
            else:
                run.stats.samples_stored += len(reading.samples)
                self._ingested.inc(len(reading.samples))
                return
            if await self._stopped_within(delay):
                run.stats.samples_lost_at_shutdown += len(reading.samples)
                run.log.error("modbus_samples_lost_at_shutdown", count=len(reading.samples))
                return
            delay = min(delay * 2, ceiling)
