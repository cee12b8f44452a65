"""The MQTT consumer against the real Mosquitto: stored, then acked; bad payloads; outages.

The sink is the real one (DeviceIngest on a SQLite SampleStore and the device
registry), so "stored exactly once" is checked in the database. Every test
uses its own device ids and client id, so runs in parallel do not collide on
the shared broker, and removes its persistent session at the end.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import paho.mqtt.client as mqtt
import pytest
import trustme
from paho.mqtt.enums import CallbackAPIVersion
from sqlalchemy import select

from medhub.adapters.mqtt_connection import (
    MqttConnection,
    MqttTls,
    make_client,
    parse_mqtt_url,
    redact,
)
from medhub.adapters.mqtt_ingest import (
    IngestOptions,
    MqttIngest,
    registry_status_handler,
)
from medhub.adapters.mqtt_simulator import run_simulator
from medhub.db.engine import make_engine
from medhub.devices.ingest import DeviceIngest
from medhub.devices.mqtt_payload import DeviceAlert
from medhub.devices.partition import Partition, PartitionGate
from medhub.devices.registry import DeviceRegistry
from medhub.devices.registry_tables import DeviceStateRow
from medhub.devices.samples import Sample
from medhub.devices.simulator import SimulatorProfile
from medhub.errors import ConfigurationError, StoreUnavailableError
from medhub.fhir.sql_store import SqlResourceStore
from medhub.timeseries.sample_store import SampleStore
from medhub.timeseries.schema import migrate
from tests.conftest import unavailable
from tests.tcp_proxy import TcpProxy

MQTT_URL = os.environ.get("MEDHUB_TEST_MQTT_URL", "mqtt://127.0.0.1:1883")
T0 = datetime(2026, 11, 21, 10, 0, tzinfo=UTC)
WAIT = 60.0


def wait_until(condition: Callable[[], bool], what: str, timeout: float = WAIT) -> None:
    """Poll until ``condition`` holds; fails (never passes) after ``timeout``."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.02)


def iso(moment: datetime) -> str:
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


@pytest.fixture(scope="module")
def broker() -> MqttConnection:
    connection = parse_mqtt_url(MQTT_URL)
    try:
        socket.create_connection((connection.host, connection.port), timeout=3).close()
    except OSError as exc:
        unavailable("Mosquitto", exc)
    return connection


@dataclass
class Parts:
    samples: SampleStore
    registry: DeviceRegistry
    ingest: DeviceIngest
    store: SqlResourceStore


@pytest.fixture
def parts(sqlite_store: SqlResourceStore, tmp_path: Path) -> Iterator[Parts]:
    engine = make_engine(f"sqlite:///{tmp_path / 'samples.db'}")
    migrate(engine)
    samples = SampleStore(engine)
    registry = DeviceRegistry(sqlite_store)
    yield Parts(samples, registry, DeviceIngest(samples, registry), sqlite_store)
    engine.dispose()


@pytest.fixture
def uid() -> str:
    return uuid.uuid4().hex[:10]


class Consumers:
    """Starts consumers for a test and stops them (and ends their sessions) afterwards."""

    def __init__(self, broker: MqttConnection) -> None:
        self.broker = broker
        self.started: list[MqttIngest] = []
        self.client_ids: set[tuple[str, str]] = set()

    def start(
        self,
        client_id: str,
        sink: Any,
        *,
        protocol: str = "5",
        via: MqttConnection | None = None,
        options: IngestOptions | None = None,
        **kwargs: Any,
    ) -> MqttIngest:
        connection = replace(
            via or self.broker,
            client_id=client_id,
            protocol=protocol,
            session_expiry_seconds=300,
            reconnect_min_seconds=1,
            reconnect_max_seconds=2,
        )
        consumer = MqttIngest(
            connection, sink, options=options or IngestOptions(batch_seconds=0.01), **kwargs
        )
        consumer.start()
        self.started.append(consumer)
        self.client_ids.add((client_id, protocol))
        assert consumer.wait_ready(WAIT), "consumer did not connect and subscribe"
        return consumer

    def close(self) -> None:
        for consumer in self.started:
            consumer.stop(timeout=5)
        for client_id, protocol in self.client_ids:
            end_session(self.broker.with_client_id(client_id), protocol)


def end_session(connection: MqttConnection, protocol: str) -> None:
    """Connect once with a clean session so the broker forgets this client id."""
    v5 = protocol == "5"
    client = mqtt.Client(
        CallbackAPIVersion.VERSION2,
        client_id=connection.client_id,
        protocol=mqtt.MQTTv5 if v5 else mqtt.MQTTv311,
        **({} if v5 else {"clean_session": True}),
    )
    if v5:
        client.connect(connection.host, connection.port, clean_start=True)
    else:
        client.connect(connection.host, connection.port)
    client.loop_start()
    wait_until(client.is_connected, "clean-session connect", timeout=10)
    client.disconnect()
    client.loop_stop()


@pytest.fixture
def consumers(broker: MqttConnection) -> Iterator[Consumers]:
    started = Consumers(broker)
    yield started
    started.close()


class Publisher:
    """A device (or gateway) publishing QoS 1 straight to the broker."""

    def __init__(self, broker: MqttConnection, name: str) -> None:
        self.client = make_client(broker.with_client_id(f"pub-{name}"))
        self.client.max_inflight_messages_set(100)
        self.client.connect(broker.host, broker.port)
        self.client.loop_start()

    def send(self, topic: str, payload: bytes | str, *, qos: int = 1) -> None:
        info = self.client.publish(topic, payload, qos=qos)
        info.wait_for_publish(timeout=WAIT)
        assert info.is_published(), f"broker did not take {topic}"

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@pytest.fixture
def publisher(broker: MqttConnection, uid: str) -> Iterator[Publisher]:
    pub = Publisher(broker, uid)
    yield pub
    pub.close()


def hr_message(start: datetime, count: int, base: float = 70.0) -> bytes:
    """``count`` heart-rate samples one second apart, each with its own time."""
    return orjson.dumps(
        {
            "ts": iso(start),
            "samples": [
                {
                    "vital": "heart-rate",
                    "value": base + i % 20,
                    "unit": "/min",
                    "ts": iso(start + timedelta(seconds=i)),
                }
                for i in range(count)
            ],
        }
    )


def stored(parts: Parts, device: str) -> list[datetime]:
    records = parts.samples.device_samples(
        device, since=T0 - timedelta(days=1), until=T0 + timedelta(days=30), limit=100_000
    )
    return [r.device_time for r in records]


def rejected_count(store: SqlResourceStore, device: str) -> int:
    with store.session() as session:
        row = session.scalars(select(DeviceStateRow).where(DeviceStateRow.device_id == device))
        state = row.one_or_none()
    return 0 if state is None else int(state.samples_rejected)


def nothing_redelivered(
    consumers: Consumers,
    client_id: str,
    parts: Parts,
    publisher: Publisher,
    device: str,
    protocol: str = "5",
) -> MqttIngest:
    """Restart the consumer's session: only a new marker message arrives, so all were acked."""
    again = consumers.start(client_id, parts.ingest, protocol=protocol, rejections=parts.ingest)
    before = parts.ingest.samples_stored
    publisher.send(f"devices/{device}/vitals", hr_message(T0 + timedelta(days=2), 1))
    wait_until(lambda: parts.ingest.samples_stored == before + 1, "the marker sample")
    wait_until(lambda: again.stats.messages >= 1, "the marker message acked")
    assert again.stats.messages == 1
    return again


# -- connection options (no broker) ---------------------------------------------------


def test_urls_give_host_port_credentials_and_tls() -> None:
    plain = parse_mqtt_url("mqtt://broker.ward")
    assert (plain.host, plain.port, plain.tls, plain.username) == ("broker.ward", 1883, None, None)
    secure = parse_mqtt_url("mqtts://gw:s%40cret@broker.ward", client_id="medhub-1")
    assert (secure.port, secure.username, secure.password) == (8883, "gw", "s@cret")
    assert secure.tls == MqttTls() and secure.client_id == "medhub-1"
    assert "s@cret" not in repr(secure) and "s%40cret" not in redact("mqtts://gw:s%40cret@b")
    override = parse_mqtt_url("mqtt://a:b@h:1999", username="other", protocol="3.1.1")
    assert (override.port, override.username, override.protocol) == (1999, "other", "3.1.1")


@pytest.mark.parametrize(
    "url",
    ["http://h", "mqtt://", "mqtt://h/path", "mqtt://h?x=1", "mqtt://h:99999"],
)
def test_bad_urls_are_configuration_errors(url: str) -> None:
    with pytest.raises(ConfigurationError):
        parse_mqtt_url(url)


def test_a_bad_protocol_is_a_configuration_error() -> None:
    with pytest.raises(ConfigurationError):
        parse_mqtt_url("mqtt://h", protocol="4")


# -- good payloads --------------------------------------------------------------------


@pytest.mark.parametrize("protocol", ["3.1.1", "5"])
def test_single_and_batch_payloads_are_stored_then_acked(
    protocol: str, consumers: Consumers, parts: Parts, uid: str, publisher: Publisher
) -> None:
    device = f"t{uid}-a"
    client_id = f"medhub-test-{uid}"
    consumer = consumers.start(client_id, parts.ingest, protocol=protocol)
    single = {"vital": "hr", "value": 81, "unit": "/min", "ts": iso(T0)}
    envelope = {
        "ts": iso(T0 + timedelta(seconds=1)),
        "samples": [
            {"vital": "heart-rate", "value": 82, "unit": "/min"},
            {"vital": "spo2", "value": 97, "unit": "%", "mdc": "150456"},
            {"vital": "body-temperature", "value": 98.6, "unit": "[degF]"},
        ],
    }
    groups = [
        {
            "ts": iso(T0 + timedelta(seconds=2 + i)),
            "samples": [{"vital": "rr", "value": 14 + i, "unit": "/min"}],
        }
        for i in range(5)
    ]
    for payload in (single, envelope, groups):
        publisher.send(f"devices/{device}/vitals", orjson.dumps(payload))
    wait_until(lambda: parts.ingest.samples_stored == 9, "9 samples stored")
    assert len(stored(parts, device)) == 9
    temperature = parts.samples.device_samples(
        device, since=T0, until=T0 + timedelta(minutes=1), vital="body-temperature"
    )
    assert temperature[0].value == pytest.approx(37.0) and temperature[0].unit == "Cel"
    wait_until(lambda: consumer.stats.messages == 3, "3 messages processed")
    assert consumer.stats.messages_rejected == 0
    consumer.stop(timeout=5)
    again = nothing_redelivered(consumers, client_id, parts, publisher, device, protocol)
    assert again.stats.samples_rejected == 0
    assert parts.registry.get(device).state is not None


# -- bad payloads ---------------------------------------------------------------------


def test_malformed_payloads_are_logged_counted_acked_and_never_stop_the_consumer(
    consumers: Consumers, parts: Parts, uid: str, publisher: Publisher
) -> None:
    device = f"t{uid}-b"
    client_id = f"medhub-test-{uid}"
    consumer = consumers.start(client_id, parts.ingest, rejections=parts.ingest)
    vitals = f"devices/{device}/vitals"
    partly_bad = {
        "ts": iso(T0),
        "samples": [
            {"vital": "heart-rate", "value": 80, "unit": "/min"},
            {"vital": "heart-rate", "value": 900, "unit": "/min", "channel": "ecg2"},
            {"vital": "no-such-vital", "value": 1, "unit": "/min"},
            {"vital": "spo2", "value": 97, "unit": "mm[Hg]"},
        ],
    }
    whole_rejects: list[tuple[str, bytes]] = [
        (vitals, b"{not json"),
        (vitals, b""),
        (vitals, b"[1, 2, 3]"),
        (vitals, b'"a string"'),
        (vitals, orjson.dumps({"samples": [{"vital": "hr", "value": 80, "unit": "/min"}]})),
        (vitals, orjson.dumps({"ts": "yesterday", "samples": []})),
        (vitals, orjson.dumps({"ts": iso(T0), "samples": "many"})),
        (vitals, b"\xff\xfe\x00garbage"),
        (vitals, b"[" * 100_000),
        (vitals, b'{"ts": "' + b"9" * (1 << 20) + b'"}'),  # more than the 1 MiB limit
        (f"devices/{device}/status", b'{"state": "sleepy"}'),
        (f"devices/{device}/alerts", b"{}"),
        (f"devices/{uid}$bad/vitals", orjson.dumps(partly_bad)),
    ]
    publisher.send(vitals, orjson.dumps(partly_bad))
    for topic, payload in whole_rejects:
        publisher.send(topic, payload)
    publisher.send(vitals, hr_message(T0 + timedelta(minutes=1), 3))
    wait_until(lambda: consumer.stats.messages == 2 + len(whole_rejects), "all messages processed")
    assert stored(parts, device) == [T0, *(T0 + timedelta(minutes=1, seconds=s) for s in range(3))]
    stats = consumer.stats
    assert stats.messages_rejected == len(whole_rejects)
    # one issue per message refused whole, one per bad entry ([1, 2, 3] has three)
    assert stats.samples_rejected == 3 + len(whole_rejects) + 2
    assert stats.rejected_by_device[device] == 3 + len(whole_rejects) + 2 - 1
    assert stats.rejected_by_device["(bad topic)"] == 1
    assert rejected_count(parts.store, device) == stats.rejected_by_device[device]
    reasons = [r.reason for r in consumer.recent_rejections]
    assert any("outside" in r for r in reasons) and any("not JSON" in r for r in reasons)
    assert all(len(r.payload) <= 1024 for r in consumer.recent_rejections)
    consumer.stop(timeout=5)
    nothing_redelivered(consumers, client_id, parts, publisher, device)


def test_status_goes_to_the_registry_and_alerts_to_their_handler(
    consumers: Consumers, parts: Parts, uid: str, publisher: Publisher
) -> None:
    device = f"t{uid}-c"
    seen: list[DeviceAlert] = []
    consumer = consumers.start(
        f"medhub-test-{uid}",
        parts.ingest,
        on_status=registry_status_handler(parts.registry),
        on_alerts=seen.extend,
    )
    parts.registry.ensure_devices([device])
    status = {"ts": iso(T0), "state": "standby", "battery": 42, "text": "charging"}
    publisher.send(f"devices/{device}/status", orjson.dumps(status))
    alert = {"ts": iso(T0), "code": "MDC_EVT_HI", "priority": "high", "vital": "hr"}
    publisher.send(f"devices/{device}/alerts", orjson.dumps(alert))
    wait_until(lambda: consumer.stats.messages == 2, "status and alert processed")
    state = parts.registry.get(device).state
    assert state is not None and state.status == "standby" and state.status_at == T0
    assert state.detail == {"battery_percent": 42.0, "text": "charging"}
    assert [(a.device_id, a.code, a.vital) for a in seen] == [(device, "MDC_EVT_HI", "heart-rate")]
    publisher.send(f"devices/{device}/status", b"offline")  # a broker last will
    wait_until(lambda: consumer.stats.messages == 3, "last will processed")
    state = parts.registry.get(device).state
    assert state is not None and state.status == "offline" and state.status_at is None


# -- store failures and outages --------------------------------------------------------


class FlakySink:
    """The real ingest behind a switch: while ``down``, every store fails as a database would."""

    def __init__(self, ingest: DeviceIngest) -> None:
        self.ingest = ingest
        self.down = threading.Event()
        self.failures = 0

    def store(
        self, samples: Sequence[Sample], *, received_at: datetime, sent_at: datetime | None = None
    ) -> None:
        if self.down.is_set():
            self.failures += 1
            raise StoreUnavailableError("the sample database failed: connection refused")
        self.ingest.store(samples, received_at=received_at, sent_at=sent_at)


def test_while_the_store_is_down_nothing_is_acked_and_all_is_stored_once_after(
    broker: MqttConnection, consumers: Consumers, parts: Parts, uid: str, publisher: Publisher
) -> None:
    device = f"t{uid}-d"
    sink = FlakySink(parts.ingest)
    sink.down.set()
    with TcpProxy(broker.host, broker.port) as proxy:
        via = MqttConnection(host="127.0.0.1", port=proxy.port)
        options = IngestOptions(batch_seconds=0.01, retry_min_seconds=0.05, retry_max_seconds=0.2)
        consumer = consumers.start(f"medhub-test-{uid}", sink, via=via, options=options)
        for i in range(20):
            publisher.send(f"devices/{device}/vitals", hr_message(T0 + timedelta(minutes=i), 5))
        wait_until(lambda: sink.failures >= 3, "store failures")
        assert parts.ingest.samples_stored == 0
        # The connection drops while a batch waits: its packet ids die with it.
        proxy.cut()
        wait_until(lambda: not consumer.ready, "the consumer to notice the cut")
        proxy.restore()
        wait_until(lambda: consumer.ready, "the consumer to reconnect")
        sink.down.clear()
        wait_until(lambda: len(stored(parts, device)) == 100, "100 samples stored")
        wait_until(lambda: consumer.stats.acks_skipped > 0, "stale acks skipped")
    assert parts.ingest.samples_stored == 100
    assert sorted(set(stored(parts, device))) == stored(parts, device)
    assert consumer.stats.store_retries >= 3


@pytest.mark.parametrize("protocol", ["3.1.1", "5"])
def test_broker_outage_mid_stream_stores_every_sample_exactly_once(
    protocol: str,
    broker: MqttConnection,
    consumers: Consumers,
    parts: Parts,
    uid: str,
    publisher: Publisher,
) -> None:
    device = f"t{uid}-e"
    messages, per_message = 300, 10
    with TcpProxy(broker.host, broker.port) as proxy:
        via = MqttConnection(host="127.0.0.1", port=proxy.port)
        consumer = consumers.start(f"medhub-test-{uid}", parts.ingest, protocol=protocol, via=via)
        published = 0
        for i in range(messages):
            start = T0 + timedelta(seconds=i * per_message)
            publisher.send(f"devices/{device}/vitals", hr_message(start, per_message))
            published += 1
            if i == 100:
                wait_until(lambda: parts.ingest.samples_stored > 0, "samples stored before the cut")
                proxy.cut()  # mid-stream: the publisher keeps publishing to the broker
                wait_until(lambda: not consumer.ready, "the consumer to notice the cut")
            if i == 200:
                assert not consumer.ready
                proxy.restore()
        total = messages * per_message
        wait_until(lambda: parts.ingest.samples_stored == total, f"{total} samples stored")
    times = stored(parts, device)
    assert len(times) == total == len(set(times))
    assert consumer.stats.disconnects >= 1 and consumer.stats.connects >= 2
    assert published == messages


class SlowSink:
    """The real ingest, held at a gate: lets a test fill the consumer's queue."""

    def __init__(self, ingest: DeviceIngest) -> None:
        self.ingest = ingest
        self.gate = threading.Event()
        self.calls = 0

    def store(
        self, samples: Sequence[Sample], *, received_at: datetime, sent_at: datetime | None = None
    ) -> None:
        self.calls += 1
        self.gate.wait(WAIT)
        self.ingest.store(samples, received_at=received_at, sent_at=sent_at)


@pytest.mark.parametrize("protocol", ["3.1.1", "5"])
def test_a_full_queue_pushes_back_without_losing_or_deadlocking(
    protocol: str, consumers: Consumers, parts: Parts, uid: str, publisher: Publisher
) -> None:
    device = f"t{uid}-h"
    sink = SlowSink(parts.ingest)
    # 3 slots: with MQTT 3.1.1 the broker sends 20 unacked messages, so the network
    # thread must block on the full queue (and still deliver the acks afterwards)
    options = IngestOptions(batch_messages=2, batch_seconds=0.01, queue_messages=3)
    consumer = consumers.start(f"medhub-test-{uid}", sink, protocol=protocol, options=options)
    for i in range(60):
        publisher.send(f"devices/{device}/vitals", hr_message(T0 + timedelta(minutes=i), 2))
    wait_until(lambda: sink.calls >= 1, "the first store to start")
    sink.gate.set()
    wait_until(lambda: len(stored(parts, device)) == 120, "120 samples stored")
    wait_until(lambda: consumer.stats.messages >= 60, "60 messages acked")
    assert parts.ingest.samples_stored == 120 and consumer.stats.acks_skipped == 0


class GatedSink:
    """The real ingest; its first store call waits at a gate. Keeps every call's sample count."""

    def __init__(self, ingest: DeviceIngest) -> None:
        self.ingest = ingest
        self.gate = threading.Event()
        self.calls: list[int] = []

    def store(
        self, samples: Sequence[Sample], *, received_at: datetime, sent_at: datetime | None = None
    ) -> None:
        self.calls.append(len(samples))
        if len(self.calls) == 1:
            self.gate.wait(WAIT)
        self.ingest.store(samples, received_at=received_at, sent_at=sent_at)


def waiting_for_the_store(consumer: MqttIngest) -> int:
    """Messages decoded and handed over, not yet taken by the store thread (a test's peek)."""
    return sum(len(item[0]) for item in list(consumer._decoded.queue) if item is not None)


def test_what_arrives_while_a_batch_is_stored_goes_into_the_next_store_call(
    consumers: Consumers, parts: Parts, uid: str, publisher: Publisher
) -> None:
    """Group commit with no batch timer: a lone message is stored at once, never alone under load.

    The first message is stored by itself (nothing waited for company); the five
    that arrive while its store call runs are stored together in the next one.
    """
    device = f"t{uid}-j"
    sink = GatedSink(parts.ingest)
    consumer = consumers.start(f"medhub-test-{uid}", sink, options=IngestOptions())
    assert consumer.options.batch_seconds == 0
    publisher.send(f"devices/{device}/vitals", hr_message(T0, 1))
    wait_until(lambda: len(sink.calls) == 1, "the first store call")
    for i in range(1, 6):
        publisher.send(f"devices/{device}/vitals", hr_message(T0 + timedelta(minutes=i), 2))
    wait_until(lambda: waiting_for_the_store(consumer) == 5, "five messages decoded behind it")
    sink.gate.set()
    wait_until(lambda: len(stored(parts, device)) == 11, "11 samples stored")
    wait_until(lambda: consumer.stats.messages == 6, "6 messages acked")
    assert sink.calls == [1, 10]
    assert consumer.stats.batches == 2


def test_what_arrives_while_medhub_is_stopped_is_delivered_when_it_returns(
    consumers: Consumers, parts: Parts, uid: str, publisher: Publisher
) -> None:
    device = f"t{uid}-i"
    client_id = f"medhub-test-{uid}"
    sink = FlakySink(parts.ingest)
    sink.down.set()
    options = IngestOptions(batch_seconds=0.01, retry_min_seconds=0.05, retry_max_seconds=0.1)
    first = consumers.start(client_id, sink, options=options)
    publisher.send(f"devices/{device}/vitals", hr_message(T0, 3))
    wait_until(lambda: sink.failures >= 1, "a failed store")
    first.stop(timeout=0.5)  # could not store it: not acked, left with the broker
    for i in range(1, 5):  # medhub is down; the broker queues these for its session
        publisher.send(f"devices/{device}/vitals", hr_message(T0 + timedelta(minutes=i), 3))
    sink.down.clear()
    again = consumers.start(client_id, sink, options=options)
    wait_until(lambda: len(stored(parts, device)) == 15, "15 samples stored")
    wait_until(lambda: again.stats.messages == 5, "5 messages acked")
    assert first.stats.messages == 0 and parts.ingest.samples_stored == 15


def test_a_shared_subscription_splits_the_stream_between_consumers(
    consumers: Consumers, parts: Parts, uid: str, publisher: Publisher
) -> None:
    device = f"t{uid}-f"
    options = IngestOptions(batch_seconds=0.01, shared_group=f"medhub-{uid}")
    first = consumers.start(f"medhub-test-{uid}-1", parts.ingest, options=options)
    second = consumers.start(f"medhub-test-{uid}-2", parts.ingest, options=options)
    for i in range(40):
        publisher.send(f"devices/{device}/vitals", hr_message(T0 + timedelta(minutes=i), 2))
    wait_until(lambda: parts.ingest.samples_stored == 80, "80 samples stored")
    assert first.stats.messages + second.stats.messages == 40
    assert first.stats.messages > 0 and second.stats.messages > 0
    assert first.topics()[0] == f"$share/medhub-{uid}/devices/+/vitals"


class DeviceNoting:
    """The real ingest, noting which devices' samples came through this consumer."""

    def __init__(self, ingest: DeviceIngest) -> None:
        self.ingest = ingest
        self.devices: set[str] = set()

    def store(
        self, samples: Sequence[Sample], *, received_at: datetime, sent_at: datetime | None = None
    ) -> None:
        self.devices.update(sample.device_id for sample in samples)
        self.ingest.store(samples, received_at=received_at, sent_at=sent_at)


def test_partitions_give_each_device_to_one_consumer(
    consumers: Consumers, parts: Parts, uid: str, publisher: Publisher
) -> None:
    """Every device's messages at one consumer, whole (its detector sees the whole stream);
    the other consumer acks them unread; each is stored once."""
    sinks = [DeviceNoting(parts.ingest), DeviceNoting(parts.ingest)]
    gates = [PartitionGate(Partition(k, 2)) for k in (0, 1)]
    for gate in gates:
        gate.covered = True  # as the claims in the database would say (test_partition_claims)
    started = [
        consumers.start(
            f"medhub-test-{uid}-p{k}",
            sinks[k],
            options=IngestOptions(batch_seconds=0.01, partition=gates[k]),
        )
        for k in (0, 1)
    ]
    devices = [f"t{uid}-p{n}" for n in range(12)]
    for minute in range(3):
        for device in devices:
            publisher.send(
                f"devices/{device}/vitals", hr_message(T0 + timedelta(minutes=minute), 2)
            )
    wait_until(lambda: parts.ingest.samples_stored == 12 * 3 * 2, "every sample stored once")
    wait_until(lambda: sum(c.stats.messages for c in started) == 2 * 36, "every copy acked")
    owners = {k: {d for d in devices if Partition(k, 2).owns(d)} for k in (0, 1)}
    assert [sinks[k].devices for k in (0, 1)] == [owners[0], owners[1]]
    assert owners[0] and owners[1]
    assert [c.skipped_messages for c in started] == [3 * len(owners[1]), 3 * len(owners[0])]
    assert all(len(stored(parts, d)) == 6 for d in devices)
    assert started[0].topics()[0] == "devices/+/vitals"  # no share group: the whole stream


def test_until_every_partition_is_known_to_be_held_each_consumer_takes_every_device(
    consumers: Consumers, parts: Parts, uid: str, publisher: Publisher
) -> None:
    """A message acked unread is lost unless its owner is there: in doubt, skip nothing;
    the sample store keeps one copy of what both consumers store."""
    sinks = [DeviceNoting(parts.ingest), DeviceNoting(parts.ingest)]
    started = [
        consumers.start(
            f"medhub-test-{uid}-u{k}",
            sinks[k],
            options=IngestOptions(batch_seconds=0.01, partition=PartitionGate(Partition(k, 2))),
        )
        for k in (0, 1)
    ]
    devices = [f"t{uid}-u{n}" for n in range(6)]
    for device in devices:
        publisher.send(f"devices/{device}/vitals", hr_message(T0, 2))
    wait_until(lambda: sum(c.stats.messages for c in started) == 12, "both copies acked")
    wait_until(lambda: all(len(stored(parts, d)) == 2 for d in devices), "every sample")
    assert sinks[0].devices == sinks[1].devices == set(devices)
    assert [c.skipped_messages for c in started] == [0, 0]
    assert parts.ingest.samples_duplicate == 12  # the second copy of each, dropped


def test_a_partition_and_a_share_group_together_are_refused(
    broker: MqttConnection, parts: Parts
) -> None:
    options = IngestOptions(shared_group="medhub", partition=PartitionGate(Partition(0, 2)))
    with pytest.raises(ConfigurationError, match="exclude each other"):
        MqttIngest(broker, DeviceNoting(parts.ingest), options=options)


# -- the simulator, end to end --------------------------------------------------------


def test_simulated_monitors_arrive_stored(consumers: Consumers, parts: Parts, uid: str) -> None:
    consumer = consumers.start(
        f"medhub-test-{uid}", parts.ingest, on_status=registry_status_handler(parts.registry)
    )
    report = run_simulator(
        MQTT_URL,  # a URL: the simulator picks a client id and needs no session
        devices=3,
        rate=4.0,
        duration=1.5,
        seed=7,
        prefix=f"s{uid}",
        profile=SimulatorProfile(period_seconds=0.1),
    )
    assert report.devices == 3 and report.samples > 0
    wait_until(lambda: parts.ingest.samples_stored == report.samples, "every simulated sample")
    wait_until(lambda: consumer.stats.statuses == 6, "online and offline of each device")
    assert consumer.stats.messages_rejected == 0 and consumer.stats.samples_rejected == 0
    state = parts.registry.get(f"s{uid}-0001").state
    assert state is not None and state.status == "offline"


# -- TLS and credentials: a private Mosquitto with a throw-away CA ----------------------


@pytest.fixture
def secure_broker(tmp_path: Path) -> Iterator[tuple[int, trustme.CA]]:
    """Mosquitto on a free port: TLS only, no anonymous access, user ``ward`` / ``s3cret``."""
    mosquitto = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
    passwd_tool = shutil.which("mosquitto_passwd")
    if not os.path.exists(mosquitto) or passwd_tool is None:
        unavailable("mosquitto binary", FileNotFoundError(mosquitto))
    ca = trustme.CA()
    server = ca.issue_cert("127.0.0.1", "localhost")
    ca.cert_pem.write_to_path(str(tmp_path / "ca.pem"))
    server.cert_chain_pems[0].write_to_path(str(tmp_path / "server.pem"))
    server.private_key_pem.write_to_path(str(tmp_path / "server.key"))
    subprocess.run(
        [str(passwd_tool), "-b", "-c", str(tmp_path / "passwd"), "ward", "s3cret"],
        check=True,
        capture_output=True,
    )
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = int(probe.getsockname()[1])
    (tmp_path / "mosquitto.conf").write_text(
        f"listener {port} 127.0.0.1\n"
        f"cafile {tmp_path / 'ca.pem'}\n"
        f"certfile {tmp_path / 'server.pem'}\n"
        f"keyfile {tmp_path / 'server.key'}\n"
        "allow_anonymous false\n"
        f"password_file {tmp_path / 'passwd'}\n"
        "persistence false\n"
        "user root\n"
    )
    process = subprocess.Popen(
        [mosquitto, "-c", str(tmp_path / "mosquitto.conf")],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:

        def listening() -> bool:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
            except OSError:
                assert process.poll() is None, "mosquitto exited"
                return False
            return True

        wait_until(listening, "the private mosquitto to listen", timeout=20)
        yield port, ca
    finally:
        process.terminate()
        process.wait(10)


def test_tls_and_username_password(
    secure_broker: tuple[int, trustme.CA], parts: Parts, uid: str, tmp_path: Path
) -> None:
    port, _ = secure_broker
    tls = MqttTls(ca_file=tmp_path / "ca.pem")
    url = f"mqtts://ward:s3cret@127.0.0.1:{port}"
    good = replace(parse_mqtt_url(url, tls=tls, client_id=f"medhub-{uid}"), reconnect_max_seconds=2)
    consumer = MqttIngest(good, parts.ingest)
    consumer.start()
    try:
        assert consumer.wait_ready(WAIT)
        device_publisher = make_client(good.with_client_id(f"dev-{uid}"))
        device_publisher.connect(good.host, good.port)
        device_publisher.loop_start()
        info = device_publisher.publish(f"devices/t{uid}-g/vitals", hr_message(T0, 4), qos=1)
        info.wait_for_publish(timeout=WAIT)
        wait_until(lambda: parts.ingest.samples_stored == 4, "4 samples over TLS")
        device_publisher.disconnect()
        device_publisher.loop_stop()
    finally:
        consumer.stop(timeout=5)
    wrong = MqttIngest(replace(good, password="guess", client_id=f"medhub-x-{uid}"), parts.ingest)
    # a certificate the platform's trust store does not know
    untrusted = MqttIngest(replace(good, tls=MqttTls(), client_id=f"medhub-y-{uid}"), parts.ingest)
    for refused in (wrong, untrusted):
        refused.start()
    try:
        wait_until(lambda: wrong.stats.refusals >= 1, "the bad password refused")
        wait_until(lambda: untrusted.stats.connect_failures >= 1, "the TLS handshake to fail")
    finally:
        for refused in (wrong, untrusted):
            refused.stop(timeout=1)
    assert wrong.stats.connects == untrusted.stats.connects == 0
    assert not wrong.ready and not untrusted.ready
    assert wrong.stats.last_error is not None and "refused" in wrong.stats.last_error
