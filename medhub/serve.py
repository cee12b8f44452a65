"""``medhub serve``: run one process's roles until it is stopped.

A hospital group scales medhub out by running the roles as separate processes
against shared MariaDB/PostgreSQL, RabbitMQ and Mosquitto (``--role``), an edge
box runs them all in one (the default). What each role starts:

``api``
    the HTTP API (``/fhir``, ``/api/v1``, ``/ui``, ``/ws``, ``/cds-services``).
``mllp``
    the MLLP listener and its group committer (several processes on one host
    share the port with ``MEDHUB_MLLP__REUSE_PORT``; duplicates are found in
    the shared message log whichever process a resend reaches).
``devices``
    MQTT, Modbus and serial ingest, the vital-sign detector, signal-lost checks,
    NEWS2 re-scoring and sample retention (several processes: an MQTT shared
    subscription, ``MEDHUB_MQTT__SHARED_GROUP``, and a client id each).
``worker``
    the outbound MLLP senders and escalation of unanswered alerts.

The alert outbox relay runs wherever alerts are raised (``devices``,
``worker``) so an alert does not wait for another process's poll; relays claim
rows with SKIP LOCKED, as the senders do, so any number can run. Every process
serves ``/health``, ``/ready`` and ``/metrics`` on its HTTP port, the full API
only with the ``api`` role.
"""

from __future__ import annotations

import asyncio
import gc
import ssl
from collections.abc import Iterable

import structlog
import uvicorn
from fastapi import FastAPI

from medhub.api.app import create_app, create_ops_app
from medhub.config import Settings
from medhub.errors import ConfigurationError
from medhub.migrations import upgrade
from medhub.tracing import configure_tracing, otlp_exporter
from medhub.wiring import ROLES, Components, api_context, build

log = structlog.get_logger(__name__)


def parse_roles(values: Iterable[str] | None) -> frozenset[str]:
    """``--role`` values (repeated or comma-separated; ``all`` or none: every role)."""
    names = {part.strip() for value in values or () for part in value.split(",") if part.strip()}
    if not names or "all" in names:
        return frozenset(ROLES)
    unknown = sorted(names - set(ROLES))
    if unknown:
        raise ConfigurationError(
            f"unknown role {', '.join(unknown)}; choose from all, {', '.join(ROLES)}"
        )
    return frozenset(names)


def _http_app(components: Components, roles: frozenset[str], *, tls: bool) -> FastAPI:
    context = api_context(components, roles)
    if "api" in roles:
        return create_app(context, cors_origins=components.settings.auth.cors_origins, hsts=tls)
    return create_ops_app(context)


def _uvicorn(app: FastAPI, settings: Settings) -> uvicorn.Server:
    http = settings.http
    config = uvicorn.Config(
        app,
        host=http.host,
        port=http.port,
        log_config=None,
        access_log=False,
        lifespan="on",
        ssl_certfile=str(http.tls_cert_file) if http.tls_cert_file else None,
        ssl_keyfile=str(http.tls_key_file) if http.tls_key_file else None,
        ssl_ca_certs=str(http.tls_client_ca_file) if http.tls_client_ca_file else None,
        ssl_cert_reqs=ssl.CERT_REQUIRED if http.tls_client_ca_file else ssl.CERT_NONE,
    )
    return uvicorn.Server(config)


async def _start(components: Components, roles: frozenset[str]) -> None:
    if "mllp" in roles:
        await components.committer.start()
        if components.mllp is not None:
            await components.mllp.start()
    if "worker" in roles:
        for sender in components.senders:
            await sender.start()
    if "devices" in roles and components.devices is not None:
        await components.devices.start()
    for live in (components.live_publisher, components.live_feed):
        if live is not None:
            live.start()
    if components.alerts is not None and roles & {"devices", "worker"}:
        components.alerts.start(
            relay=True, device_checks="devices" in roles, escalation="worker" in roles
        )


async def _stop(components: Components, roles: frozenset[str]) -> None:
    for live in (components.live_feed, components.live_publisher):
        if live is not None:
            await asyncio.to_thread(live.stop)
    if "mllp" in roles and components.mllp is not None:
        await components.mllp.close()
    if "worker" in roles:
        for sender in components.senders:
            await sender.close()
    if "devices" in roles and components.devices is not None:
        await components.devices.close()
    if components.alerts is not None and roles & {"devices", "worker"}:
        await components.alerts.close()
    if "mllp" in roles:
        await components.committer.close()


async def serve(settings: Settings, roles: frozenset[str] = frozenset(ROLES)) -> None:
    """Build everything, start this process's roles, serve HTTP until stopped."""
    tracing = settings.tracing
    if tracing.otlp_endpoint:
        configure_tracing(
            otlp_exporter(tracing.otlp_endpoint),
            service_name=f"{tracing.service_name}-{'-'.join(sorted(roles))}",
            sample_ratio=tracing.sample_ratio,
        )
    components = build(settings, roles)
    if settings.auto_migrate:
        await asyncio.to_thread(upgrade, components.store.engine)
        if components.devices is not None:
            await asyncio.to_thread(components.devices.migrate)
    if roles != frozenset(ROLES) and settings.amqp_url is None:
        log.warning(
            "medhub.split_roles_without_broker",
            roles=sorted(roles),
            reason="alerts relayed to the in-process bus reach only this process; "
            "set MEDHUB_AMQP_URL when roles run in separate processes",
        )
    server = _uvicorn(
        _http_app(components, roles, tls=settings.http.tls_cert_file is not None), settings
    )
    await _start(components, roles)
    # What start-up built (modules, models, caches) lives as long as the process: keep it
    # out of the collector's full passes, which stop every thread and took 120-216 ms
    # over it once device samples flowed, 18-40 ms without it (bench/alert_latency.py).
    gc.collect()
    gc.freeze()
    log.info("medhub.started", roles=sorted(roles), settings=settings.redacted())
    try:
        await server.serve()
    finally:
        await _stop(components, roles)
        components.store.close()
        log.info("medhub.stopped", roles=sorted(roles))
