"""Composition of alerting: the alert service, the outbox relay, and the vital-sign watch.

The relay publishes every outbox event (alerts, and HL7's ``lab.result.critical``)
to RabbitMQ when ``MEDHUB_AMQP_URL`` is set, else to the in-process bus. The
watch is an ingest listener: samples -> detector -> alerts.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import structlog

from medhub.adapters.amqp_publisher import AmqpSink
from medhub.adapters.event_bus import InProcessBus, OutboxRelay, Sink, purge_sent
from medhub.cds.alert_store import AlertService
from medhub.cds.vital_watch import VitalWatch
from medhub.config import Settings
from medhub.fhir.sql_store import SqlResourceStore

log = structlog.get_logger(__name__)


@dataclass
class AlertComponents:
    """Alert service, outbox relay (RabbitMQ or in-process bus), watch and its timer."""

    service: AlertService
    relay: OutboxRelay
    bus: InProcessBus | None  # None when MEDHUB_AMQP_URL is set
    watch: VitalWatch
    escalate_after: timedelta
    check_every: float
    keep_sent: timedelta
    _tasks: list[asyncio.Task[None]] = field(default_factory=list)

    def start(self) -> None:
        self.relay.start()
        self._tasks.append(asyncio.create_task(self._checks(), name="alert-checks"))

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks.clear()
        await asyncio.to_thread(self.relay.stop)

    async def _checks(self) -> None:
        """Signal lost, escalation of unanswered alerts, and old outbox receipts, periodically."""
        while True:
            now = datetime.now(UTC)
            try:
                await asyncio.to_thread(self.watch.tick, now)
                await asyncio.to_thread(
                    self.service.escalate_due, now=now, after=self.escalate_after
                )
                await asyncio.to_thread(self._purge, now - self.keep_sent)
            except Exception as exc:  # the store may be down; the next round retries
                log.warning("alerts.checks_failed", reason=str(exc))
            await asyncio.sleep(self.check_every)

    def _purge(self, before: datetime) -> None:
        with self.service.store.session() as session:
            purge_sent(session, before=before)


def build_alerts(settings: Settings, store: SqlResourceStore) -> AlertComponents:
    bus = None
    sink: Sink
    if settings.amqp_url is not None:
        sink = AmqpSink(settings.amqp_url.get_secret_value(), exchange=settings.alerts.exchange)
    else:
        bus = sink = InProcessBus()
    relay = OutboxRelay(store, sink)
    service = AlertService(store, on_commit=relay.notify)
    return AlertComponents(
        service,
        relay,
        bus,
        VitalWatch(service),
        timedelta(seconds=settings.alerts.escalate_after_seconds),
        settings.alerts.check_seconds,
        timedelta(days=settings.alerts.keep_sent_days),
    )
