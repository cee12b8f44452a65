"""Publish simulated monitors over MQTT: what ``medhub simulate`` runs.

Each device is a :class:`~medhub.devices.simulator.DeviceSimulator` whose clock
is the wall clock (so medhub's clock correction sees synchronised devices).
Every ``1 / rate`` seconds a device publishes the readings it took since its
previous message to ``devices/{id}/vitals`` (QoS 1), its alarms to
``devices/{id}/alerts``, and ``online``/``offline`` to ``devices/{id}/status``
at the start and the end. Devices are staggered over the interval, as real
monitors are, so the broker sees a steady stream rather than bursts.

All devices share one MQTT connection, as they would behind an edge gateway.
Publishing waits rather than drops when paho's outgoing queue is full, so a
slow broker slows the simulator down instead of losing readings.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final

import paho.mqtt.client as mqtt
import structlog

from medhub.adapters.mqtt_connection import (
    MqttConnection,
    connect_async,
    make_client,
    parse_mqtt_url,
)
from medhub.devices.simulator import (
    DeviceSimulator,
    SimulatorProfile,
    alerts_payload,
    status_payload,
    vitals_payloads,
)
from medhub.errors import ConfigurationError, StoreUnavailableError

log = structlog.get_logger("medhub.adapters.mqtt_simulator")

_TICK_SECONDS: Final = 0.05
_OUTGOING_QUEUE: Final = 20_000


@dataclass
class SimulatorReport:
    """What a run published."""

    devices: int = 0
    messages: int = 0
    samples: int = 0
    alerts: int = 0
    seconds: float = 0.0


class _Publisher:
    """One paho client that waits for room instead of dropping."""

    def __init__(self, connection: MqttConnection, *, qos: int, connect_timeout: float) -> None:
        self.qos = qos
        self.client = make_client(connection)
        self.client.max_inflight_messages_set(1000)
        self.client.max_queued_messages_set(_OUTGOING_QUEUE)
        self._connected = threading.Event()
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = self._on_disconnect
        connect_async(self.client, connection)
        self.client.loop_start()
        if not self._connected.wait(connect_timeout):
            self.client.loop_stop()
            raise StoreUnavailableError(
                f"MQTT broker {connection.host}:{connection.port} did not accept a connection "
                f"within {connect_timeout:g} s"
            )

    def _on_connect(self, *args: Any) -> None:
        reason = args[3]
        if not reason.is_failure:
            self._connected.set()

    def _on_disconnect(self, *_args: Any) -> None:
        self._connected.clear()

    def publish(self, topic: str, payload: bytes, stop: threading.Event) -> bool:
        """Queue one message; waits while paho's queue is full. False if stopped meanwhile."""
        while True:
            info = self.client.publish(topic, payload, qos=self.qos)
            if info.rc != mqtt.MQTT_ERR_QUEUE_SIZE:
                return True
            if stop.wait(0.01):
                return False

    def close(self, timeout: float) -> None:
        """Wait (up to ``timeout``) until everything queued is acknowledged, then disconnect."""
        deadline = time.monotonic() + timeout
        while self.client.want_write() or self._unacked():
            if time.monotonic() >= deadline:
                log.warning("simulator.unsent_at_close", unacked=self._unacked())
                break
            time.sleep(0.02)
        self.client.disconnect()
        self.client.loop_stop()

    def _unacked(self) -> int:
        return len(self.client._out_messages)  # paho exposes no count of unacked messages


def device_ids(count: int, prefix: str = "sim") -> list[str]:
    """``sim-0001`` …: valid MQTT topic levels and FHIR ids."""
    return [f"{prefix}-{index:04d}" for index in range(1, count + 1)]


def run_simulator(
    connection: MqttConnection | str,
    *,
    devices: int,
    rate: float = 1.0,
    duration: float | None = None,
    seed: int = 0,
    prefix: str = "sim",
    topic_prefix: str = "devices",
    profile: SimulatorProfile | None = None,
    qos: int = 1,
    stop: threading.Event | None = None,
    clock: Callable[[], float] = time.time,
    connect_timeout: float = 30.0,
) -> SimulatorReport:
    """Publish ``devices`` simulated monitors, each ``rate`` messages/s, for ``duration`` s.

    ``connection`` is a :class:`MqttConnection` or an ``mqtt[s]://`` URL (then
    with a random client id and no persistent session). ``duration`` None runs
    until ``stop`` is set (Ctrl-C in the CLI). Readings
    are taken every ``profile.period_seconds`` of device time (1 s by default)
    and a message carries those since the device's previous message.
    """
    if devices < 1 or not rate > 0:
        raise ConfigurationError("simulate: devices must be >= 1 and rate > 0")
    if isinstance(connection, str):
        # A publisher needs no broker-side session: paho itself resends what was not acked.
        client_id = f"medhub-sim-{uuid.uuid4().hex[:8]}"
        connection = parse_mqtt_url(connection, client_id=client_id, persistent=False)
    stop = stop or threading.Event()
    publisher = _Publisher(connection, qos=qos, connect_timeout=connect_timeout)
    started = clock()
    origin = datetime.fromtimestamp(started, UTC)
    ids = device_ids(devices, prefix)
    sims = [DeviceSimulator(d, seed=seed, start=origin, profile=profile) for d in ids]
    interval = 1.0 / rate
    due = [started + interval * (index + 1) / devices for index in range(devices)]
    report = SimulatorReport(devices=devices)
    for sim in sims:
        topic = f"{topic_prefix}/{sim.device_id}/status"
        publisher.publish(topic, status_payload("online", origin, battery=sim.battery), stop)
    log.info("simulator.started", devices=devices, rate=rate, duration=duration)
    try:
        while not stop.is_set():
            now = clock()
            if duration is not None and now - started >= duration:
                break
            for index, sim in enumerate(sims):
                if due[index] > now:
                    continue
                due[index] += interval
                if not _publish_device(publisher, sim, now, topic_prefix, report, stop):
                    break
            stop.wait(_TICK_SECONDS)
    finally:
        end = datetime.fromtimestamp(clock(), UTC)
        for sim in sims:
            topic = f"{topic_prefix}/{sim.device_id}/status"
            publisher.publish(topic, status_payload("offline", end), threading.Event())
        publisher.close(timeout=30.0)
        report.seconds = clock() - started
        log.info(
            "simulator.stopped",
            messages=report.messages,
            samples=report.samples,
            seconds=round(report.seconds, 1),
        )
    return report


def _publish_device(
    publisher: _Publisher,
    sim: DeviceSimulator,
    now: float,
    topic_prefix: str,
    report: SimulatorReport,
    stop: threading.Event,
) -> bool:
    step = sim.advance(datetime.fromtimestamp(now, UTC))
    base = f"{topic_prefix}/{sim.device_id}"
    for payload in vitals_payloads(step.readings):
        if not publisher.publish(f"{base}/vitals", payload, stop):
            return False
        report.messages += 1
    report.samples += len(step.readings)
    if step.alerts:
        if not publisher.publish(f"{base}/alerts", alerts_payload(step.alerts), stop):
            return False
        report.messages += 1
        report.alerts += len(step.alerts)
    return True
