"""Samples ingested and refused, counted per transport through the real MQTT, Modbus and serial
paths (Mosquitto, the Modbus simulator on loopback, the serial ingest core)."""

from __future__ import annotations

import asyncio
import socket
import uuid
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import orjson
import pytest

from medhub.adapters.mqtt_connection import MqttConnection, parse_mqtt_url
from medhub.adapters.serial_reader import SerialIngest
from medhub.db.engine import make_engine
from medhub.devices.ingest import DeviceIngest
from medhub.devices.masimo import MasimoAscii1Parser
from medhub.devices.modbus_sim import ModbusSimulator, SimulatedDevice
from medhub.devices.registry import DeviceRegistry
from medhub.errors import InputError
from medhub.fhir.sql_store import SqlResourceStore
from medhub.timeseries.sample_store import SampleStore
from medhub.timeseries.schema import migrate
from tests.adapters import test_modbus_poller as modbus
from tests.adapters.test_mqtt_ingest import (
    MQTT_URL,
    T0,
    Consumers,
    Publisher,
    hr_message,
    wait_until,
)
from tests.adapters.test_serial_reader import RecordingSink, masimo_line
from tests.conftest import unavailable
from tests.scrape import Delta, current

INGESTED = "medhub_samples_ingested_total"
REJECTED = "medhub_samples_rejected_total"


def rejected_by(source: str, delta: Delta) -> dict[str, float]:
    """How many refusals of ``source`` were counted since ``delta``, by reason."""
    after = current()
    reasons = {
        dict(labels)["reason"]
        for name, labels in after
        if name == REJECTED and dict(labels)["source"] == source
    }
    moved = {r: delta(REJECTED, after, source=source, reason=r) for r in reasons}
    return {r: n for r, n in moved.items() if n}


def test_serial_lines_stored_and_refused_are_counted_by_reason() -> None:
    sink = RecordingSink(fail=0)
    core = SerialIngest(MasimoAscii1Parser("pox-m"), sink, max_line_bytes=512)
    delta = Delta()
    core.feed(masimo_line(1) + b"\xff\xfe\x00noise\r\n" + masimo_line(2) + b"x" * 600 + b"\r\n", T0)
    assert core.flush()
    stats = core.snapshot()
    assert delta(INGESTED, source="serial") == stats.stored == 6
    assert rejected_by("serial", delta) == {"structure": 1, "too-long": 1}


def test_serial_batches_the_store_refuses_count_as_store_refused() -> None:
    core = SerialIngest(MasimoAscii1Parser("pox-r"), RecordingSink(1, InputError("no such device")))
    delta = Delta()
    core.feed(masimo_line(1), T0)
    assert core.flush()
    assert delta(INGESTED, source="serial") == 0
    assert rejected_by("serial", delta) == {"store-refused": 3}


def test_modbus_polls_stored_are_counted() -> None:
    sink = modbus.RecordingSink()
    delta = Delta()

    async def main() -> int:
        async with ModbusSimulator([SimulatedDevice(modbus.MONITOR, unit_id=1)], port=0) as sim:
            poller = modbus.make_poller([modbus.device("bed-m", sim.port)], sink)

            async def scenario() -> None:
                await modbus.until(lambda: len(sink.samples("bed-m")) >= 8, "samples stored")

            await modbus.polling(poller, scenario)
            return poller.stats["bed-m"].samples_stored

    stored = asyncio.run(main())
    assert stored >= 8
    assert delta(INGESTED, source="modbus") == stored


@pytest.fixture
def broker() -> MqttConnection:
    connection = parse_mqtt_url(MQTT_URL)
    try:
        socket.create_connection((connection.host, connection.port), timeout=3).close()
    except OSError as exc:
        unavailable("Mosquitto", exc)
    return connection


@pytest.fixture
def ingest(sqlite_store: SqlResourceStore, tmp_path: Path) -> Iterator[DeviceIngest]:
    engine = make_engine(f"sqlite:///{tmp_path / 'samples.db'}")
    migrate(engine)
    yield DeviceIngest(SampleStore(engine), DeviceRegistry(sqlite_store))
    engine.dispose()


def test_mqtt_samples_stored_and_payloads_refused_are_counted(
    broker: MqttConnection, ingest: DeviceIngest
) -> None:
    uid = uuid.uuid4().hex[:10]
    device = f"m{uid}"
    consumers, publisher = Consumers(broker), Publisher(broker, uid)
    delta = Delta()
    try:
        consumer = consumers.start(f"medhub-metrics-{uid}", ingest, rejections=ingest)
        vitals = f"devices/{device}/vitals"
        publisher.send(vitals, hr_message(T0, 5))
        publisher.send(vitals, b"{not json")
        publisher.send(vitals, orjson.dumps({"ts": "yesterday", "samples": []}))
        publisher.send(vitals, hr_message(T0 + timedelta(minutes=1), 3))
        wait_until(lambda: consumer.stats.messages == 4, "all four messages processed")
    finally:
        consumers.close()
        publisher.close()
    assert delta(INGESTED, source="mqtt") == 8 == consumer.stats.samples
    refused = rejected_by("mqtt", delta)
    assert sum(refused.values()) == consumer.stats.samples_rejected == 2
    assert set(refused) <= {"structure", "invalid", "value", "required"}
