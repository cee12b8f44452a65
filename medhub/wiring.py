"""The composition root: the one place that reads settings and wires stores, services
and transports together (STYLE.md habit 4). Commands in :mod:`medhub.cli` call it.
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

from sqlalchemy.exc import SQLAlchemyError

from medhub.adapters.group_commit import GroupCommitter
from medhub.adapters.live_broker import LiveBrokerFeed, LiveVitalsPublisher
from medhub.adapters.mllp_sender import MllpDestination, MllpSender, TlsClientOptions
from medhub.adapters.mllp_server import MllpServer, MllpServerConfig, server_ssl_context
from medhub.api.deps import ApiContext, ComponentHealth
from medhub.api.live import LiveHub, connect_live
from medhub.cds.medication_knowledge import KnowledgeBase
from medhub.config import Hl7DestinationSettings, Settings
from medhub.db.engine import make_engine
from medhub.errors import ConfigurationError, MedhubError
from medhub.fhir.sql_store import SqlResourceStore
from medhub.fhir.store import ResourceStore
from medhub.fhir.write_rules import utc_now
from medhub.hl7.inbound import Hl7Inbound
from medhub.hl7.sql_units import sql_inbound_units
from medhub.migrations import known_revisions, schema_revisions
from medhub.wiring_alerts import AlertComponents, build_alerts
from medhub.wiring_devices import DeviceComponents, build_devices, sample_store
from medhub.wiring_metrics import scrape_collector
from medhub.wiring_prescribing import hooked_api_store, load_knowledge
from medhub.wiring_security import SecurityComponents, build_security

#: The roles of ``medhub serve --role`` (:mod:`medhub.serve` says what each runs).
ROLES: Final = ("api", "mllp", "devices", "worker")


def _path(value: Path | None) -> str | None:
    return str(value) if value is not None else None


def destination(settings: Hl7DestinationSettings) -> MllpDestination:
    """An outbound partner's settings as the sender's configuration."""
    tls = None
    if settings.tls or settings.tls_ca_file or settings.tls_cert_file:
        tls = TlsClientOptions(
            ca_file=_path(settings.tls_ca_file),
            cert_file=_path(settings.tls_cert_file),
            key_file=_path(settings.tls_key_file),
            server_hostname=settings.tls_server_hostname,
        )
    return MllpDestination(
        name=settings.name,
        host=settings.host,
        port=settings.port,
        tls=tls,
        connect_timeout_seconds=settings.connect_timeout_seconds,
        ack_timeout_seconds=settings.ack_timeout_seconds,
        max_attempts=settings.max_attempts,
        retry_base_seconds=settings.retry_base_seconds,
        retry_max_seconds=settings.retry_max_seconds,
    )


def make_store(settings: Settings) -> SqlResourceStore:
    engine = make_engine(settings.database_url.get_secret_value(), echo=settings.database_echo)
    return SqlResourceStore(engine, clock=utc_now)


@dataclass
class Components:
    """Everything ``serve`` runs, built from settings."""

    settings: Settings
    store: SqlResourceStore
    inbound: Hl7Inbound
    committer: GroupCommitter
    mllp: MllpServer | None
    senders: list[MllpSender] = field(default_factory=list)
    devices: DeviceComponents | None = None
    alerts: AlertComponents | None = None
    #: The store the API writes through (MedicationRequests checked, orders sent).
    api_store: ResourceStore | None = None
    knowledge: KnowledgeBase | None = None
    security: SecurityComponents | None = None
    #: Split roles: live readings out of a devices process / into an api process.
    live_publisher: LiveVitalsPublisher | None = None
    live_feed: LiveBrokerFeed | None = None


def _mllp_tls(settings: Settings) -> ssl.SSLContext | None:
    mllp = settings.mllp
    if mllp.tls_cert_file is None and mllp.tls_key_file is None:
        if mllp.tls_client_ca_file is not None:
            raise ConfigurationError("MEDHUB_MLLP__TLS_CLIENT_CA_FILE needs a server certificate")
        return None
    if mllp.tls_cert_file is None or mllp.tls_key_file is None:
        raise ConfigurationError("MLLP TLS needs both MEDHUB_MLLP__TLS_CERT_FILE and _KEY_FILE")
    try:
        return server_ssl_context(
            str(mllp.tls_cert_file),
            str(mllp.tls_key_file),
            str(mllp.tls_client_ca_file) if mllp.tls_client_ca_file else None,
        )
    except (OSError, ssl.SSLError) as exc:
        raise ConfigurationError(f"cannot load the MLLP TLS certificate or key: {exc}") from exc


def build(settings: Settings, roles: frozenset[str] = frozenset(ROLES)) -> Components:
    """Everything ``serve`` may run; device transports only for the ``devices`` role."""
    store = make_store(settings)
    engine = store.engine
    units = sql_inbound_units(store, validate=settings.mllp.validate_mapped)
    inbound = Hl7Inbound(
        units,
        clock=utc_now,
        strict_structure=settings.mllp.strict_structure,
        audit=settings.mllp.audit_events,
    )
    # SQLite has one writer at a time; a second worker would only wait on the lock.
    workers = settings.mllp.commit_workers or (1 if engine.dialect.name == "sqlite" else 2)
    committer = GroupCommitter(
        inbound.handle_batch, max_batch=settings.mllp.max_batch, workers=workers
    )
    mllp = None
    if settings.mllp.enabled:
        mllp = MllpServer(
            MllpServerConfig(
                host=settings.mllp.host,
                port=settings.mllp.port,
                max_frame_bytes=settings.mllp.max_frame_bytes,
                idle_timeout_seconds=settings.mllp.idle_timeout_seconds,
                ssl_context=_mllp_tls(settings),
                reuse_port=settings.mllp.reuse_port,
            ),
            handler=committer.submit,
            on_oversize=inbound.reject,
        )
    names = [d.name for d in settings.hl7_destinations]
    if len(set(names)) != len(names):
        raise ConfigurationError(f"HL7 destination names must be unique, got {names}")
    senders = [
        MllpSender(destination(d), store.session, clock=utc_now) for d in settings.hl7_destinations
    ]
    samples = sample_store(settings)
    alerts = build_alerts(settings, store, samples)
    devices = build_devices(
        settings, store, samples=samples, alerts=alerts.service, transports="devices" in roles
    )
    devices.ingest.add_listener(alerts.watch)
    publisher = None
    if "devices" in roles and split_from_devices(roles) and settings.amqp_url is not None:
        # For the dashboards of api processes elsewhere (live_feed below).
        publisher = LiveVitalsPublisher(settings.amqp_url.get_secret_value())
        devices.ingest.add_listener(publisher)
    if alerts.news2 is not None:
        devices.ingest.add_listener(alerts.news2)
    knowledge = load_knowledge(settings)
    return Components(
        settings,
        store,
        inbound,
        committer,
        mllp,
        senders,
        devices,
        alerts,
        api_store=hooked_api_store(settings, store, knowledge),
        knowledge=knowledge,
        security=build_security(settings, store),
        live_publisher=publisher,
    )


def split_from_devices(roles: frozenset[str]) -> bool:
    """The API and device ingest run in different processes (deploy/'s profiles)."""
    return ("api" in roles) != ("devices" in roles)


def live_feed(settings: Settings, hub: LiveHub, roles: frozenset[str]) -> LiveBrokerFeed | None:
    """The ``api`` process's view of what ``devices`` and ``worker`` processes do, over
    RabbitMQ (:mod:`medhub.adapters.live_broker`); None when ingest and alerts happen here.

    Then every alert change reaches the hub from the broker only, acknowledgements
    made here included: one path, so an older event cannot overtake a newer one.
    """
    if "api" not in roles or not split_from_devices(roles) or settings.amqp_url is None:
        return None
    hub.feed_live = False  # until the feed has connected: pages say "not live" meanwhile
    return LiveBrokerFeed(
        settings.amqp_url.get_secret_value(),
        events_exchange=settings.alerts.exchange,
        on_readings=hub.readings,
        on_alert=hub.alert_changed,
        on_notification=hub.outbox_event,
        on_state=hub.feed_state,
    )


def _database_health(store: SqlResourceStore) -> ComponentHealth:
    try:
        store.ping()
    except MedhubError as exc:
        return ComponentHealth("down", exc.message)
    return ComponentHealth("up", store.engine.dialect.name)


def _schema_health(store: SqlResourceStore) -> ComponentHealth:
    try:
        current, head = schema_revisions(store.engine)
    except SQLAlchemyError as exc:
        return ComponentHealth("down", f"cannot read the schema revision: {type(exc).__name__}")
    if current == head:
        return ComponentHealth("up", f"revision {head}")
    if current is not None and current not in known_revisions():
        # Newer than this code: a rolling upgrade migrated first and this replica is
        # the old version still serving. Migrations add, they do not take away (docs/
        # runbook.md), so it stays in service until it is replaced.
        return ComponentHealth("up", f"schema at {current}, newer than this code's {head}")
    return ComponentHealth("down", f"schema at {current or 'nothing'}, code needs {head}")


def api_context(components: Components, roles: frozenset[str] = frozenset(ROLES)) -> ApiContext:
    """What the HTTP side of a process serves, and what its ``/ready`` checks: the
    database and schema always, the MLLP listener and MQTT only where this
    process runs the role that needs them."""
    mllp = components.mllp

    def mllp_health() -> ComponentHealth:
        if mllp is None:
            return ComponentHealth("disabled")
        try:
            return ComponentHealth("up", f"port {mllp.port}")
        except RuntimeError:
            return ComponentHealth("down", "not listening")

    checks = {
        "database": lambda: _database_health(components.store),
        "schema": lambda: _schema_health(components.store),
    }
    if "mllp" in roles:
        checks["mllp"] = mllp_health
    consumer = components.devices.mqtt if components.devices else None

    def mqtt_health() -> ComponentHealth:
        if consumer is None:
            return ComponentHealth("disabled")
        if consumer.ready:
            return ComponentHealth("up", repr(consumer.connection.host))
        return ComponentHealth("down", str(consumer.stats.last_error or "not connected"))

    if "devices" in roles:
        checks["mqtt"] = mqtt_health
    devices = components.devices
    knowledge = components.knowledge or load_knowledge(components.settings)
    secured = components.security or build_security(components.settings, components.store)
    context = ApiContext(
        roles=roles,
        security=secured.security,
        access=secured.access,
        audit=secured.audit,
        store=components.api_store or components.store,
        medication_knowledge=lambda: knowledge,
        health_checks=checks,
        inbound=components.inbound,
        sql_store=components.store,
        devices=devices.registry if devices else None,
        samples=devices.samples if devices else None,
        on_binding_change=devices.ingest.invalidate_bindings if devices else None,
        alerts=components.alerts.service if components.alerts else None,
        news2=components.alerts.scorer if components.alerts else None,
    )
    hub = LiveHub()  # the dashboards' live feed (/ws)
    components.live_feed = live_feed(components.settings, hub, roles)
    if components.live_feed is None:  # everything the dashboards show happens in this process
        alerts = components.alerts
        bus = alerts.bus if alerts else None
        ingest = devices.ingest if devices else None
        connect_live(hub, ingest=ingest, alerts=alerts.service if alerts else None, bus=bus)
    context.live = hub
    context.metrics = scrape_collector(  # the gauges /metrics reads at each scrape
        store=components.store,
        sample_engine=devices.samples.engine if devices else None,
        destinations=[sender.destination.name for sender in components.senders],
        committer=components.committer if "mllp" in roles else None,
        mllp=mllp if "mllp" in roles else None,
        alerts=components.alerts.service if components.alerts else None,
        mqtt=consumer if "devices" in roles else None,
        spool=devices.spool if devices and "devices" in roles else None,
    )
    return context
