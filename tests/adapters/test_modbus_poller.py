"""The Modbus poller against real pymodbus servers on loopback ports.

Every server is the simulated monitor of :mod:`medhub.devices.modbus_sim`,
so these tests also show that the simulator serves what the shipped maps say.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime, timedelta

import pytest
from pymodbus.client import AsyncModbusSerialClient, AsyncModbusTcpClient
from pymodbus.framer import FramerType

from medhub.adapters.modbus_poller import (
    DeviceStats,
    ModbusDevice,
    ModbusPoller,
    SerialEndpoint,
    TcpEndpoint,
    default_client,
    parse_modbus_url,
)
from medhub.devices.modbus_sim import ModbusSimulator, SimulatedDevice
from medhub.devices.register_map import RegisterMap
from medhub.devices.register_map_file import shipped_map
from medhub.devices.samples import Sample
from medhub.errors import ConfigurationError, InputError, StoreUnavailableError

MONITOR = shipped_map("generic-bedside-monitor")
OXIMETER = shipped_map("generic-pulse-oximeter")


class RecordingSink:
    """A sample sink that keeps what it stored, and can be told to fail."""

    def __init__(self, failures: int = 0, error: Exception | None = None) -> None:
        self.failures = failures
        self.error = error or StoreUnavailableError("database is down")
        self.attempts: list[tuple[tuple[Sample, ...], datetime]] = []
        self.stored: list[tuple[tuple[Sample, ...], datetime]] = []
        self._lock = threading.Lock()

    def store(self, samples: Sequence[Sample], *, received_at: datetime) -> None:
        with self._lock:
            self.attempts.append((tuple(samples), received_at))
            if self.failures:
                self.failures -= 1
                raise self.error
            self.stored.append((tuple(samples), received_at))

    def samples(self, device_id: str) -> list[Sample]:
        with self._lock:
            return [s for batch, _ in self.stored for s in batch if s.device_id == device_id]


async def until(condition: Callable[[], bool], what: str) -> None:
    """Wait for something the user would see; the timeout only guards against a hang."""

    async def poll() -> None:
        while not condition():
            await asyncio.sleep(0.02)

    try:
        await asyncio.wait_for(poll(), 30)
    except TimeoutError:
        pytest.fail(f"never happened: {what}")


def device(
    device_id: str, port: int, *, unit: int = 1, reg_map: RegisterMap = MONITOR, scheme: str = "tcp"
) -> ModbusDevice:
    return ModbusDevice(
        device_id=device_id,
        url=f"modbus+{scheme}://127.0.0.1:{port}?unit={unit}",
        register_map=reg_map,
        interval=0.05,
        timeout=0.3,
    )


async def polling(poller: ModbusPoller, scenario: Callable[[], Awaitable[None]]) -> None:
    runner = asyncio.create_task(poller.run())
    try:
        await scenario()
    finally:
        poller.stop()
        await runner


def make_poller(
    devices: Sequence[ModbusDevice], sink: RecordingSink, **options: object
) -> ModbusPoller:
    return ModbusPoller(
        devices,
        sink,
        reconnect_backoff=(0.05, 0.2),
        store_backoff=(0.01, 0.05),
        **options,  # type: ignore[arg-type]
    )


def test_a_healthy_device_keeps_delivering_while_others_fail() -> None:
    sink = RecordingSink()

    async def main() -> None:
        healthy = SimulatedDevice(MONITOR, unit_id=1, seed=1)
        oximeter = SimulatedDevice(OXIMETER, unit_id=2, seed=2)
        failing = SimulatedDevice(MONITOR, unit_id=1)
        hung = SimulatedDevice(MONITOR, unit_id=2)
        failing.mode, hung.mode = "exception", "silent"
        async with (
            ModbusSimulator([healthy, oximeter], port=0) as good,
            ModbusSimulator([failing, hung], port=0) as bad,
        ):
            poller = make_poller(
                [
                    device("bed-1", good.port),
                    device("oxi-1", good.port, unit=2, reg_map=OXIMETER),
                    device("bed-2", bad.port),
                    device("bed-3", bad.port, unit=2),
                ],
                sink,
            )

            async def scenario() -> None:
                await until(lambda: poller.stats["bed-3"].timeouts >= 3, "bed-3 timed out")
                await until(lambda: poller.stats["bed-2"].exception_responses >= 3, "bed-2 failed")
                before = len(sink.samples("bed-1"))
                await until(lambda: len(sink.samples("bed-1")) > before + 16, "bed-1 kept going")
                await until(lambda: len(sink.samples("oxi-1")) >= 4, "oxi-1 delivered")

            await polling(poller, scenario)

    asyncio.run(main())
    bed1 = sink.samples("bed-1")
    assert {s.vital for s in bed1} >= {"heart-rate", "oxygen-saturation", "body-temperature"}
    spo2 = [s.value for s in bed1 if s.vital == "oxygen-saturation"]
    assert all(70 <= v <= 100 for v in spo2)
    assert all(s.unit == "%" for s in bed1 if s.vital == "oxygen-saturation")
    assert {s.vital for s in sink.samples("oxi-1")} == {"oxygen-saturation", "heart-rate"}
    assert sink.samples("bed-2") == sink.samples("bed-3") == []


def test_the_failures_are_counted_per_device_with_the_reason() -> None:
    sink = RecordingSink()

    async def main() -> DeviceStats:
        failing = SimulatedDevice(MONITOR, unit_id=1)
        failing.mode = "exception"
        async with ModbusSimulator([failing], port=0) as server:
            poller = make_poller([device("bed-9", server.port)], sink)

            async def scenario() -> None:
                await until(lambda: poller.stats["bed-9"].exception_responses >= 2, "counted")

            await polling(poller, scenario)
            return poller.stats["bed-9"]

    stats = asyncio.run(main())
    assert stats.last_error == "exception response DEVICE_FAILURE"
    assert stats.polls_ok == 0
    assert stats.timeouts == stats.connect_failures == stats.samples_stored == 0


def test_polling_resumes_after_the_device_restarts() -> None:
    sink = RecordingSink()

    async def main() -> None:
        first = ModbusSimulator([SimulatedDevice(MONITOR, seed=3)], port=0)
        await first.start()
        port = first.port
        poller = make_poller([device("bed-1", port)], sink)

        async def scenario() -> None:
            await until(lambda: len(sink.samples("bed-1")) >= 8, "first samples")
            await first.stop()
            await until(lambda: poller.stats["bed-1"].connect_failures >= 2, "outage noticed")
            stored_during_outage = len(sink.samples("bed-1"))
            restarted = ModbusSimulator([SimulatedDevice(MONITOR, seed=4)], port=port)
            await restarted.start()
            try:
                await until(
                    lambda: len(sink.samples("bed-1")) >= stored_during_outage + 16,
                    "samples after the restart",
                )
            finally:
                await restarted.stop()

        await polling(poller, scenario)

    asyncio.run(main())


def test_a_store_outage_delays_polling_but_loses_no_reading() -> None:
    sink = RecordingSink(failures=4)
    ticks = iter(datetime(2026, 1, 1, tzinfo=UTC) + timedelta(seconds=n) for n in range(10_000))

    async def main() -> int:
        async with ModbusSimulator([SimulatedDevice(OXIMETER, seed=5)], port=0) as server:
            poller = make_poller(
                [device("oxi-1", server.port, reg_map=OXIMETER)], sink, clock=lambda: next(ticks)
            )

            async def scenario() -> None:
                await until(lambda: len(sink.stored) >= 5, "stored after the outage")

            await polling(poller, scenario)
            assert poller.stats["oxi-1"].store_failures == 4
            return poller.stats["oxi-1"].polls_ok

    polls = asyncio.run(main())
    first_reading = sink.attempts[0]
    assert sink.attempts[:5] == [first_reading] * 5  # the same reading, retried, no new poll
    assert sink.stored[0] == first_reading
    assert len(sink.stored) == polls  # every poll's reading was stored
    times = [received_at for _, received_at in sink.stored]
    assert times == sorted(set(times))
    assert all(s.device_time == t for batch, t in sink.stored for s in batch)


def test_samples_the_sink_rejects_are_counted_and_polling_goes_on() -> None:
    sink = RecordingSink(failures=2, error=InputError("device not bound to a patient"))

    async def main() -> int:
        async with ModbusSimulator([SimulatedDevice(OXIMETER)], port=0) as server:
            poller = make_poller([device("oxi-1", server.port, reg_map=OXIMETER)], sink)

            async def scenario() -> None:
                await until(lambda: len(sink.stored) >= 2, "later readings stored")

            await polling(poller, scenario)
            return poller.stats["oxi-1"].samples_rejected

    assert asyncio.run(main()) == 4  # two readings of two values each
    assert sink.stored[0][0] != sink.attempts[0][0]


def test_rtu_frames_through_a_serial_device_server_use_the_same_poller() -> None:
    sink = RecordingSink()

    async def main() -> None:
        unit = SimulatedDevice(MONITOR, unit_id=7, seed=6)
        async with ModbusSimulator([unit], port=0, framer=FramerType.RTU) as server:
            poller = make_poller([device("bed-rtu", server.port, unit=7, scheme="rtu")], sink)

            async def scenario() -> None:
                await until(lambda: len(sink.samples("bed-rtu")) >= 8, "RTU samples")

            await polling(poller, scenario)

    asyncio.run(main())
    assert {s.vital for s in sink.samples("bed-rtu")} >= {"heart-rate", "respiratory-rate"}


def test_stop_ends_a_store_retry_and_reports_what_was_not_stored() -> None:
    sink = RecordingSink(failures=10_000)

    async def main() -> None:
        async with ModbusSimulator([SimulatedDevice(OXIMETER)], port=0) as server:
            poller = make_poller([device("oxi-1", server.port, reg_map=OXIMETER)], sink)

            async def scenario() -> None:
                await until(lambda: len(sink.attempts) >= 3, "retrying")

            await polling(poller, scenario)
            assert poller.stats["oxi-1"].samples_lost_at_shutdown == 2
            assert poller.stats["oxi-1"].polls == 1

    asyncio.run(main())


@pytest.mark.parametrize(
    ("url", "endpoint", "unit"),
    [
        ("modbus+tcp://10.0.0.5?unit=3", TcpEndpoint("10.0.0.5", 502), 3),
        ("modbus+tcp://monitor.icu:1502", TcpEndpoint("monitor.icu", 1502), 1),
        (
            "modbus+rtu:///dev/ttyUSB0?unit=12&baudrate=9600&parity=n&stopbits=2",
            SerialEndpoint("/dev/ttyUSB0", 9600, 8, "N", 2),
            12,
        ),
        ("modbus+rtu://10.0.0.9:4001?unit=2", SerialEndpoint("socket://10.0.0.9:4001"), 2),
    ],
)
def test_device_urls_name_the_endpoint_and_unit(url: str, endpoint: object, unit: int) -> None:
    assert parse_modbus_url(url) == (endpoint, unit)


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("http://10.0.0.5", "scheme must be modbus+tcp or modbus+rtu"),
        ("modbus+tcp://10.0.0.5?unit=300", "unit must be 0..247"),
        ("modbus+tcp://10.0.0.5?unti=3", "unknown parameter(s) unti"),
        ("modbus+tcp://10.0.0.5?unit=one", "invalid literal"),
        ("modbus+tcp:///nohost", "a host is required"),
        ("modbus+rtu:///dev/ttyS0?parity=X", "parity must be N, E or O"),
    ],
)
def test_a_bad_device_url_is_refused_with_the_reason(url: str, reason: str) -> None:
    with pytest.raises(ConfigurationError) as caught:
        parse_modbus_url(url)
    assert url in str(caught.value) and reason in str(caught.value)


def test_device_settings_are_checked_before_polling_starts() -> None:
    with pytest.raises(ConfigurationError, match="interval and timeout"):
        ModbusDevice("d", "modbus+tcp://h", MONITOR, interval=0)
    same = [ModbusDevice("d", "modbus+tcp://h", MONITOR)] * 2
    with pytest.raises(ConfigurationError, match="must be unique"):
        ModbusPoller(same, RecordingSink())


def test_tcp_and_serial_endpoints_get_the_matching_pymodbus_client() -> None:
    async def main() -> None:
        tcp = default_client(TcpEndpoint("127.0.0.1", 1502), 0.5)
        serial = default_client(SerialEndpoint("/dev/ttyUSB0"), 0.5)
        assert isinstance(tcp, AsyncModbusTcpClient)
        assert isinstance(serial, AsyncModbusSerialClient)
        tcp.close()
        serial.close()

    asyncio.run(main())
