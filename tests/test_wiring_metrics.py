"""The scrape-time gauges on every SQL back-end: queues, outbox, open alerts, pools, outages."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from medhub.adapters.group_commit import GroupCommitter
from medhub.cds.alarm_codes import Condition, Priority, Transition
from medhub.cds.alert_edges import AlertEdge
from medhub.cds.alert_store import AlertService
from medhub.db.engine import make_engine
from medhub.db.outbox import DomainEvent, SqlEventOutbox
from medhub.errors import StoreUnavailableError
from medhub.fhir.sql_store import SqlResourceStore
from medhub.hl7.outbound_queue import enqueue, park
from medhub.metrics import exposition
from medhub.timeseries.records import SampleRecord
from medhub.timeseries.spool import SpoolingWriter
from medhub.wiring_metrics import scrape_collector
from tests.builders import adt
from tests.scrape import Delta, Samples, has, parse, value

NOW = datetime.now(UTC)


def scraped(store: SqlResourceStore, **parts: Any) -> Samples:
    """What ``/metrics`` shows for the sources ``medhub serve`` would build from ``parts``."""
    return parse(exposition(scrape_collector(store=store, **parts)).decode())


def test_outbound_queue_depth_per_destination_with_the_configured_ones_at_zero(
    store: SqlResourceStore,
) -> None:
    with store.session() as session:
        first = enqueue(session, destination="cis", message=adt("Q1"), now=NOW - timedelta(hours=1))
        enqueue(session, destination="cis", message=adt("Q2"), now=NOW - timedelta(minutes=5))
        enqueue(session, destination="lab", message=adt("Q3"), now=NOW)
    with store.session() as session:
        park(session, first, reason="AE: unknown patient", ack_code="AE")
    samples = scraped(store, destinations=["cis", "lab", "pharmacy"])
    gauge = "medhub_hl7_outbound_queue_messages"
    assert value(samples, gauge, destination="cis", status="pending") == 1
    assert value(samples, gauge, destination="cis", status="parked") == 1
    assert value(samples, gauge, destination="lab", status="pending") == 1
    assert has(samples, gauge, destination="pharmacy", status="pending")
    assert value(samples, gauge, destination="pharmacy", status="pending") == 0
    age = "medhub_hl7_outbound_oldest_pending_seconds"
    assert 290 < value(samples, age, destination="cis") < 3600  # Q2; the parked Q1 is not waiting
    assert value(samples, age, destination="pharmacy") == 0


def test_outbox_events_waiting_for_the_broker_by_topic(store: SqlResourceStore) -> None:
    event = DomainEvent("lab.result.critical", "lab.result.critical", {"value": 7.1})
    with store.session() as session:
        SqlEventOutbox(session).enqueue(event, now=NOW - timedelta(minutes=2))
        SqlEventOutbox(session).enqueue(event, now=NOW)
    samples = scraped(store)
    assert value(samples, "medhub_outbox_pending_events", topic="lab.result.critical") == 2
    assert 110 < value(samples, "medhub_outbox_oldest_pending_seconds") < 3600


def test_open_alerts_by_severity_and_state_every_pair_reported(store: SqlResourceStore) -> None:
    alerts = AlertService(store)
    start = AlertEdge(
        "mon-1", "heart-rate", Condition.CRITICAL_HIGH, Transition.START, Priority.HIGH, NOW, 150
    )
    low = AlertEdge("mon-2", "heart-rate", Condition.LOW, Transition.START, Priority.LOW, NOW, 45)
    [high_alert, _] = alerts.apply([start, low])
    alerts.acknowledge(high_alert.id, by="nurse-1")
    samples = scraped(store, alerts=alerts)
    gauge = "medhub_alerts_open"
    assert value(samples, gauge, severity="high", state="acknowledged") == 1
    assert value(samples, gauge, severity="low", state="raised") == 1
    assert value(samples, gauge, severity="high", state="raised") == 0
    assert has(samples, gauge, severity="medium", state="escalated")
    assert not has(samples, gauge, severity="high", state="resolved")  # closed: not open


def test_pool_use_per_engine(store: SqlResourceStore, tmp_path: Path) -> None:
    samples_engine = make_engine(f"sqlite:///{tmp_path / 'samples.db'}")
    try:
        # held, not in a transaction: on SQLite a transaction would hold the write lock
        with store.engine.connect(), samples_engine.connect():
            during = scraped(store, sample_engine=samples_engine)
        after = scraped(store, sample_engine=samples_engine)
    finally:
        samples_engine.dispose()
    assert value(during, "medhub_db_pool_checked_out", pool="resources") == 1
    assert value(during, "medhub_db_pool_checked_out", pool="samples") == 1
    assert value(after, "medhub_db_pool_checked_out", pool="samples") == 0
    assert value(after, "medhub_db_pool_size", pool="resources") >= 1
    assert has(after, "medhub_db_pool_overflow", pool="resources")


class DownStore:
    """A sample store that is down: every batch goes to the spool."""

    def write(self, _records: object) -> int:
        raise StoreUnavailableError("the sample store is down")


def test_in_process_queues_are_reported(sqlite_store: SqlResourceStore, tmp_path: Path) -> None:
    spool = SpoolingWriter(DownStore(), tmp_path / "spool.db")
    record = SampleRecord("mon-1", "heart-rate", "", NOW, NOW, NOW, 80.0, "/min", None, None)
    spool.write([record, record._replace(value=81.0)])

    async def main() -> Samples:
        committer = GroupCommitter(lambda _batch: [])
        await committer.start()
        try:
            return scraped(sqlite_store, committer=committer, spool=spool)
        finally:
            await committer.close()

    try:
        samples = asyncio.run(main())
    finally:
        spool.close()
    assert value(samples, "medhub_sample_spool_batches") == 1
    assert value(samples, "medhub_sample_spool_samples") == 2
    assert has(samples, "medhub_hl7_commit_queue_messages")


def test_with_the_database_down_the_scrape_keeps_what_it_can_and_counts_the_rest() -> None:
    down = SqlResourceStore(make_engine("postgresql+psycopg://postgres@127.0.0.1:1/medhub"))
    delta = Delta()
    try:
        samples = scraped(down, destinations=["cis"], alerts=AlertService(down))
    finally:
        down.engine.dispose()
    for source in ("hl7_outbound", "outbox", "alerts_open"):
        assert delta("medhub_metrics_collect_errors_total", samples, source=source) == 1
    assert has(samples, "medhub_db_pool_checked_out", pool="resources")
    assert not has(samples, "medhub_outbox_oldest_pending_seconds")
