"""Composition of the scrape-time metrics: which gauges ``/metrics`` reads, and from what.

The counters and histograms of :mod:`medhub.metrics` are incremented where
things happen; the gauges here are *states* (how deep a queue is, how many
alerts are open, how busy a connection pool is) read when Prometheus scrapes.
They are built here, from the parts the composition root made, so the API
never reaches into stores it has no business importing; each
:class:`~medhub.metrics.ScrapeSource` is one read (one query at most), and a
source that fails is left out of that scrape and counted.

Sources: the database connection pools (resources, samples), the outbound
HL7 queue per destination, the event outbox, open alerts, the group
committer's queue, the MLLP listener's connections, the MQTT consumer's
queue and the sample spool.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import datetime

from prometheus_client.core import CounterMetricFamily, Metric
from sqlalchemy import Engine
from sqlalchemy.pool import QueuePool

from medhub.adapters.group_commit import GroupCommitter
from medhub.adapters.mllp_server import MllpServer
from medhub.adapters.mqtt_ingest import MqttIngest
from medhub.cds.alert_store import AlertService
from medhub.db.outbox import pending_events
from medhub.fhir.sql_store import SqlResourceStore
from medhub.fhir.write_rules import utc_now
from medhub.hl7.outbound_queue import queue_depths
from medhub.metrics import ScrapeCollector, ScrapeSource, gauge
from medhub.timeseries.spool import SpoolingWriter

Clock = Callable[[], datetime]


def pool_source(engines: Mapping[str, Engine]) -> ScrapeSource:
    """Connections checked out, pool size and overflow per engine (SQLAlchemy ``QueuePool``).

    ``checked_out`` reaching ``size`` plus the engine's ``max_overflow`` (5 + 10
    by default) means requests wait for a connection. Engines on another pool
    class (SQLite ``:memory:``, ``NullPool``) have nothing to report and are left out.
    """

    def read() -> Iterable[Metric]:
        pools = {name: e.pool for name, e in engines.items() if isinstance(e.pool, QueuePool)}
        yield gauge(
            "medhub_db_pool_checked_out",
            "Database connections in use, per engine (resources, samples).",
            ["pool"],
            (([name], pool.checkedout()) for name, pool in pools.items()),
        )
        yield gauge(
            "medhub_db_pool_size",
            "Connections the pool keeps open (SQLAlchemy pool_size), per engine.",
            ["pool"],
            (([name], pool.size()) for name, pool in pools.items()),
        )
        yield gauge(
            "medhub_db_pool_overflow",
            "Connections open beyond the pool size (up to max_overflow), per engine.",
            ["pool"],
            (([name], max(0, pool.overflow())) for name, pool in pools.items()),
        )

    return ScrapeSource("db_pool", read)


def hl7_outbound_source(
    store: SqlResourceStore, destinations: Sequence[str], clock: Clock = utc_now
) -> ScrapeSource:
    """Pending and parked outbound HL7 messages per destination, and the oldest's age.

    Configured destinations are reported at 0 when empty, so an alerting rule
    sees the queue drain rather than its series disappear.
    """

    def read() -> Iterable[Metric]:
        with store.session() as session:
            depths = queue_depths(session)
        now = clock()
        counts = {(d, s): 0 for d in destinations for s in ("pending", "parked")}
        ages = dict.fromkeys(destinations, 0.0)
        for depth in depths:
            counts[(depth.destination, depth.status)] = depth.messages
            if depth.status == "pending":
                ages[depth.destination] = max(0.0, (now - depth.oldest).total_seconds())
        yield gauge(
            "medhub_hl7_outbound_queue_messages",
            "Outbound HL7 messages waiting (pending) or refused for good (parked), "
            "per destination.",
            ["destination", "status"],
            ((list(key), n) for key, n in counts.items()),
        )
        yield gauge(
            "medhub_hl7_outbound_oldest_pending_seconds",
            "Age of the oldest pending outbound message per destination (0: none): a "
            "destination's queue is a strict FIFO, so this is how late its partner is.",
            ["destination"],
            (([d], age) for d, age in ages.items()),
        )

    return ScrapeSource("hl7_outbound", read)


def outbox_source(store: SqlResourceStore, clock: Clock = utc_now) -> ScrapeSource:
    """Events waiting in the transactional outbox, by topic, and the oldest's age."""

    def read() -> Iterable[Metric]:
        with store.session() as session:
            pending = pending_events(session)
        now = clock()
        oldest = min((p.oldest for p in pending), default=None)
        yield gauge(
            "medhub_outbox_pending_events",
            "Events (alerts, critical results, prescriptions) not yet confirmed by the "
            "broker, by topic.",
            ["topic"],
            (([p.topic], p.events) for p in pending),
        )
        yield gauge(
            "medhub_outbox_oldest_pending_seconds",
            "Age of the oldest unconfirmed outbox event (0: none): how late alerts reach "
            "their subscribers.",
            [],
            [([], 0.0 if oldest is None else max(0.0, (now - oldest).total_seconds()))],
        )

    return ScrapeSource("outbox", read)


def alerts_source(alerts: AlertService) -> ScrapeSource:
    """Open alerts by severity and state (one ``GROUP BY`` on the alert table)."""

    def read() -> Iterable[Metric]:
        counts = alerts.open_counts()
        yield gauge(
            "medhub_alerts_open",
            "Open alerts by severity and state (raised, acknowledged, escalated).",
            ["severity", "state"],
            (([severity, state], n) for (severity, state), n in counts.items()),
        )

    return ScrapeSource("alerts_open", read)


def process_source(
    *,
    committer: GroupCommitter | None,
    mllp: MllpServer | None,
    mqtt: MqttIngest | None,
    spool: SpoolingWriter | None,
) -> ScrapeSource:
    """In-process queues: no database, so they are reported even when it is down."""

    def read() -> Iterable[Metric]:
        if committer is not None:
            yield gauge(
                "medhub_hl7_commit_queue_messages",
                "Inbound HL7 messages waiting for the group committer (ACK latency grows with it).",
                [],
                [([], committer.queued)],
            )
        if mllp is not None:
            yield gauge(
                "medhub_mllp_connections",
                "Open MLLP connections to the listener.",
                [],
                [([], mllp.connections)],
            )
        if mqtt is not None:
            yield gauge(
                "medhub_mqtt_queue_messages",
                "MQTT messages received and not yet decoded and stored.",
                [],
                [([], mqtt.queued)],
            )
            gate = mqtt.options.partition
            if gate is not None:
                yield gauge(
                    "medhub_mqtt_partition_covered",
                    "1 while the partition claims show every part held, so this process takes "
                    "only its own devices; 0: it takes every device (a part not running, N "
                    "changing, or the claims unreadable).",
                    [],
                    [([], 1 if gate.covered else 0)],
                )
                yield CounterMetricFamily(
                    "medhub_mqtt_messages_skipped",
                    "MQTT messages of other partitions' devices, acknowledged unread.",
                    value=mqtt.skipped_messages,
                )
        if spool is not None:
            batches, samples = spool.backlog
            yield gauge(
                "medhub_sample_spool_batches",
                "Sample batches waiting in the local spool for the sample store.",
                [],
                [([], batches)],
            )
            yield gauge(
                "medhub_sample_spool_samples",
                "Samples waiting in the local spool for the sample store.",
                [],
                [([], samples)],
            )

    return ScrapeSource("process_queues", read)


def scrape_collector(
    *,
    store: SqlResourceStore,
    sample_engine: Engine | None = None,
    destinations: Sequence[str] = (),
    committer: GroupCommitter | None = None,
    mllp: MllpServer | None = None,
    alerts: AlertService | None = None,
    mqtt: MqttIngest | None = None,
    spool: SpoolingWriter | None = None,
) -> ScrapeCollector:
    """Every scrape-time gauge of one ``medhub serve`` process."""
    engines = {"resources": store.engine}
    if sample_engine is not None and sample_engine is not store.engine:
        engines["samples"] = sample_engine
    sources = [
        process_source(committer=committer, mllp=mllp, mqtt=mqtt, spool=spool),
        pool_source(engines),
        hl7_outbound_source(store, destinations),
        outbox_source(store),
    ]
    if alerts is not None:
        sources.append(alerts_source(alerts))
    return ScrapeCollector(sources)
