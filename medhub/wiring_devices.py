"""Composition of device ingest: sample store, spool, registry, ingest and the transports.

Kept apart from :mod:`medhub.wiring` (the HL7 and FHIR side) so each stays
small; :func:`medhub.wiring.build` calls :func:`build_devices`.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Final
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import structlog

from medhub.adapters.modbus_poller import ModbusDevice, ModbusPoller
from medhub.adapters.mqtt_connection import MqttTls, parse_mqtt_url
from medhub.adapters.mqtt_handlers import AlertsHandler, log_alerts, registry_status_handler
from medhub.adapters.mqtt_ingest import IngestOptions, MqttIngest
from medhub.adapters.serial_reader import SerialReader, pyserial_opener
from medhub.cds.alert_store import AlertService
from medhub.config import Settings
from medhub.db.engine import make_engine
from medhub.devices.ingest import DeviceIngest
from medhub.devices.line_parsers import ParserConfig, default_registry
from medhub.devices.partition import PartitionGate, parse_partition
from medhub.devices.partition_claims import PartitionClaims
from medhub.devices.register_map_file import resolve_register_map
from medhub.devices.registry import DeviceRegistry
from medhub.errors import ConfigurationError
from medhub.fhir.sql_store import SqlResourceStore
from medhub.fhir.write_rules import utc_now
from medhub.timeseries.sample_store import SampleStore
from medhub.timeseries.schema import migrate
from medhub.timeseries.spool import SpoolingWriter
from medhub.wiring_device_alarms import DeviceAlarmHandler

log = structlog.get_logger(__name__)

#: A partitioned consumer renews its claim this often; a claim older than
#: PARTITION_STALE_SECONDS is a process gone, and the others take its devices.
PARTITION_RENEW_SECONDS: Final = 5.0
PARTITION_STALE_SECONDS: Final = 20.0


@dataclass
class DeviceComponents:
    """Everything device ingest is made of, started and stopped by ``medhub serve``."""

    samples: SampleStore
    registry: DeviceRegistry
    ingest: DeviceIngest
    spool: SpoolingWriter | None
    modbus: ModbusPoller | None
    serial: list[SerialReader] = field(default_factory=list)
    mqtt: MqttIngest | None = None
    retention_days: int = 30
    #: With ``MEDHUB_MQTT__PARTITION``: this process's claim, and the decoder's gate.
    partition_claims: PartitionClaims | None = None
    partition_gate: PartitionGate | None = None
    _tasks: list[asyncio.Task[None]] = field(default_factory=list)

    def migrate(self) -> None:
        migrate(self.samples.engine)

    async def start(self) -> None:
        if self.spool is not None:
            self.spool.start()
        for reader in self.serial:
            reader.start()
        if self.mqtt is not None:
            self.mqtt.start()
        if self.modbus is not None:
            self._tasks.append(asyncio.create_task(self.modbus.run(), name="modbus"))
        self._tasks.append(asyncio.create_task(self._retention(), name="sample-retention"))
        if self.partition_claims is not None:
            self._tasks.append(asyncio.create_task(self._claim(), name="partition-claim"))

    async def close(self) -> None:
        if self.mqtt is not None:
            await asyncio.to_thread(self.mqtt.stop, 10.0)
        if self.partition_claims is not None:
            with contextlib.suppress(Exception):  # a dead claim stops counting by itself
                await asyncio.to_thread(self.partition_claims.release)
        if self.modbus is not None:
            self.modbus.stop()
        for task in self._tasks:
            if task.get_name() != "modbus":
                task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks.clear()
        for reader in self.serial:
            await asyncio.to_thread(reader.stop)
        if self.spool is not None:
            await asyncio.to_thread(self.spool.close)
        self.samples.engine.dispose()

    def renew_partition_claim(self) -> bool:
        """Renew the claim and open or close the gate; on any failure take every device."""
        claims, gate = self.partition_claims, self.partition_gate
        if claims is None or gate is None:
            return False
        try:
            covered = claims.renew()
        except Exception as exc:  # cannot tell who is there: skip nothing
            log.warning("mqtt.partition_claim_failed", reason=str(exc))
            covered = False
        if covered != gate.covered:
            log.info(
                "mqtt.partition_covered" if covered else "mqtt.partition_uncovered",
                partition=f"{claims.partition.index}/{claims.partition.count}",
                taking="own devices" if covered else "every device",
            )
        gate.covered = covered
        return covered

    async def _claim(self) -> None:
        """Renew this process's partition claim every few seconds."""
        while True:
            await asyncio.to_thread(self.renew_partition_claim)
            await asyncio.sleep(PARTITION_RENEW_SECONDS)

    async def _retention(self) -> None:
        """Drop samples older than the retention period, hourly (and once at start)."""
        while True:
            cutoff = datetime.now(UTC) - timedelta(days=self.retention_days)
            try:
                await asyncio.to_thread(self.samples.delete_before, cutoff)
            except Exception as exc:  # the store may be down; try again next hour
                log.warning("samples.retention_failed", reason=str(exc))
            await asyncio.sleep(3600)


def sample_store(settings: Settings) -> SampleStore:
    """The time-series store (its own engine: it may be another database than the resources)."""
    return SampleStore(make_engine(settings.sample_store_url()))


def build_devices(
    settings: Settings,
    store: SqlResourceStore,
    *,
    samples: SampleStore | None = None,
    alerts: AlertService | None = None,
    transports: bool = True,
) -> DeviceComponents:
    """Device ingest and its transports; ``alerts`` takes the alarms devices send over MQTT.

    ``transports=False`` (a process without the ``devices`` role): the registry and the
    sample store for the API only; no spool file, no MQTT client, no pollers or readers.
    """
    samples = samples or sample_store(settings)
    spool = None
    writer: SampleStore | SpoolingWriter = samples
    if settings.devices.spool_path is not None and transports:
        spool = SpoolingWriter(samples, settings.devices.spool_path)
        writer = spool
    registry = DeviceRegistry(store)
    ingest = DeviceIngest(
        writer,
        registry,
        clock_limit=timedelta(seconds=settings.devices.max_clock_skew_seconds),
        binding_refresh_seconds=settings.devices.binding_refresh_seconds,
    )
    modbus = None
    if settings.modbus_devices and transports:
        modbus = ModbusPoller(
            [
                ModbusDevice(
                    d.id,
                    d.url,
                    resolve_register_map(d.map),
                    d.interval_seconds,
                    d.timeout_seconds,
                )
                for d in settings.modbus_devices
            ],
            ingest,
        )
    parsers = default_registry()
    serial = []
    for port in settings.serial_ports if transports else ():
        try:
            zone = ZoneInfo(port.timezone)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ConfigurationError(
                f"serial port {port.url}: unknown time zone {port.timezone!r}"
            ) from exc
        parser = parsers.create(port.parser, ParserConfig(port.device_id, zone))
        serial.append(
            SerialReader(
                pyserial_opener(port.url, baudrate=port.baudrate),
                parser,
                ingest,
                name=f"serial {port.url}",
            )
        )
    on_alerts: AlertsHandler = log_alerts
    if alerts is not None and settings.alerts.device_alarms:
        on_alerts = DeviceAlarmHandler(alerts, ingest)
    mqtt = None
    claims = gate = None
    if settings.mqtt_url is not None and transports:
        if settings.mqtt.partition is not None:
            partition = parse_partition(settings.mqtt.partition)
            gate = PartitionGate(partition)
            claims = PartitionClaims(
                store.session,
                client_id=settings.mqtt.client_id,
                topic_prefix=settings.mqtt.topic_prefix,
                partition=partition,
                clock=utc_now,
                stale_after=timedelta(seconds=PARTITION_STALE_SECONDS),
            )
        mqtt = _mqtt(settings, ingest, registry, on_alerts, gate)
    return DeviceComponents(
        samples,
        registry,
        ingest,
        spool,
        modbus,
        serial,
        mqtt,
        settings.devices.retention_days,
        partition_claims=claims,
        partition_gate=gate,
    )


def _mqtt(
    settings: Settings,
    ingest: DeviceIngest,
    registry: DeviceRegistry,
    on_alerts: AlertsHandler,
    gate: PartitionGate | None,
) -> MqttIngest:
    assert settings.mqtt_url is not None
    options = settings.mqtt
    tls = None
    if options.tls_ca_file or options.tls_cert_file:
        tls = MqttTls(options.tls_ca_file, options.tls_cert_file, options.tls_key_file)
    connection = parse_mqtt_url(
        settings.mqtt_url.get_secret_value(),
        client_id=options.client_id,
        protocol=options.protocol,
        username=options.username,
        password=options.password.get_secret_value() if options.password else None,
        tls=tls,
        keepalive_seconds=options.keepalive_seconds,
        session_expiry_seconds=options.session_expiry_seconds,
        reconnect_min_seconds=options.reconnect_min_seconds,
        reconnect_max_seconds=options.reconnect_max_seconds,
    )
    return MqttIngest(
        connection,
        ingest,
        options=IngestOptions(
            topic_prefix=options.topic_prefix,
            shared_group=options.shared_group,
            partition=gate,
            batch_messages=options.batch_messages,
            batch_seconds=options.batch_seconds,
            queue_messages=options.queue_messages,
            broker_inflight=options.broker_inflight,
        ),
        rejections=ingest,
        on_status=registry_status_handler(registry),
        on_alerts=on_alerts,
    )
