"""The dashboards' live feed between processes, through the real RabbitMQ.

A devices process's publisher and an api process's feed are two objects here,
each with its own connection, as they would be in two processes; the alert
events come from the real outbox relay and AMQP sink, the way a worker sends them.
"""

from __future__ import annotations

import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pytest

from medhub.adapters.amqp_publisher import AmqpSink
from medhub.adapters.event_bus import OutboxRelay
from medhub.adapters.live_broker import (
    BrokerEvent,
    LiveBrokerFeed,
    LiveReading,
    LiveVitalsPublisher,
    parse_readings_message,
    readings_message,
)
from medhub.cds.alert_store import AlertService
from medhub.db.outbox import DomainEvent, SqlEventOutbox
from medhub.fhir.sql_store import SqlResourceStore
from medhub.timeseries.records import SampleRecord
from tests.adapters.test_amqp_publisher import start
from tests.conftest import unavailable
from tests.tcp_proxy import TcpProxy

AMQP_HOST, AMQP_PORT = "127.0.0.1", 5672
T0 = datetime(2026, 12, 7, 8, 0, tzinfo=UTC)


def record(patient: str | None, vital: str, value: float, seconds: int) -> SampleRecord:
    moment = T0 + timedelta(seconds=seconds)
    return SampleRecord(
        "mon-1", vital, "0", moment, moment, moment, value, "/min", patient_id=patient
    )


def wait_for(condition: Callable[[], bool], what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"gave up waiting: {what}")
        time.sleep(0.02)


class Received:
    """What a feed handed on, by kind."""

    def __init__(self) -> None:
        self.readings: list[dict[str, dict[str, LiveReading]]] = []
        self.alerts: list[tuple[str, Mapping[str, Any]]] = []
        self.notifications: list[BrokerEvent] = []
        self.lock = threading.Lock()

    def feed(self, url: str, events_exchange: str, live_exchange: str) -> LiveBrokerFeed:
        def readings(latest: dict[str, dict[str, LiveReading]]) -> None:
            with self.lock:
                self.readings.append(latest)

        def alert(topic: str, payload: Mapping[str, Any]) -> None:
            with self.lock:
                self.alerts.append((topic, payload))

        def notification(event: BrokerEvent) -> None:
            with self.lock:
                self.notifications.append(event)

        return LiveBrokerFeed(
            url,
            events_exchange=events_exchange,
            live_exchange=live_exchange,
            on_readings=readings,
            on_alert=alert,
            on_notification=notification,
            backoff_max=0.5,
        )


@pytest.fixture
def broker_url() -> str:
    try:
        socket.create_connection((AMQP_HOST, AMQP_PORT), timeout=2).close()
    except OSError as exc:
        unavailable("RabbitMQ", exc)
    return f"amqp://guest:guest@{AMQP_HOST}:{AMQP_PORT}/%2F"


@pytest.fixture
def exchanges() -> tuple[str, str]:
    tag = uuid.uuid4().hex[:10]
    return f"medhub.alerts.test-{tag}", f"medhub.live.test-{tag}"


@pytest.fixture
def received() -> Iterator[Received]:
    yield Received()


# -- the wire format ----------------------------------------------------------------------


def test_readings_go_out_newest_per_patient_and_vital_and_come_back_the_same() -> None:
    from medhub.timeseries.records import newest_by_patient

    latest = newest_by_patient(
        [
            record("p1", "heart-rate", 80, 0),
            record("p1", "heart-rate", 90, 2),  # newer: this one is shown
            record("p1", "spo2", 97, 1),
            record(None, "heart-rate", 50, 3),  # bound to nobody: no tile shows it
        ]
    )
    back = parse_readings_message(readings_message(latest))
    assert set(back) == {"p1"}
    assert back["p1"]["heart-rate"] == LiveReading(90.0, "/min", T0 + timedelta(seconds=2), "mon-1")
    assert back["p1"]["spo2"].value == 97.0


@pytest.mark.parametrize(
    "body",
    [
        b"not json",
        b"[]",
        b'{"readings": "x"}',
        b'{"readings": [{"patient": "p1"}]}',
        b'{"readings": [{"patient": "", "vital": "hr", "value": 1, "unit": "", "time": '
        b'"2026-12-07T08:00:00+00:00", "device": "d"}]}',
        b'{"readings": [{"patient": "p1", "vital": "hr", "value": true, "unit": "", "time": '
        b'"2026-12-07T08:00:00+00:00", "device": "d"}]}',
        b'{"readings": [{"patient": "p1", "vital": "hr", "value": "80", "unit": "", "time": '
        b'"2026-12-07T08:00:00+00:00", "device": "d"}]}',
        b'{"readings": [{"patient": "p1", "vital": "hr", "value": 80, "unit": "", "time": '
        b'"yesterday", "device": "d"}]}',
        b'{"readings": [{"patient": "p1", "vital": "hr", "value": 80, "unit": "", "time": '
        b'"2026-12-07T08:00:00", "device": "d"}]}',  # no zone: which 08:00?
    ],
)
def test_malformed_readings_are_dropped_not_shown(body: bytes) -> None:
    assert parse_readings_message(body) == {}


def test_one_bad_entry_does_not_hide_the_good_ones() -> None:
    good = {
        "patient": "p1",
        "vital": "spo2",
        "value": 96,
        "unit": "%",
        "time": "2026-12-07T08:00:00+00:00",
        "device": "d",
    }
    body = orjson.dumps({"readings": [{"patient": 7}, good]})
    assert parse_readings_message(body)["p1"]["spo2"].value == 96.0


# -- through RabbitMQ ----------------------------------------------------------------------


def test_readings_published_by_a_devices_process_reach_an_api_process(
    broker_url: str, exchanges: tuple[str, str], received: Received
) -> None:
    events, live = exchanges
    feed = received.feed(broker_url, events, live)
    publisher = LiveVitalsPublisher(broker_url, exchange=live, interval=0.05)
    feed.start()
    try:
        assert feed.wait_connected(30)
        publisher.start()
        publisher([record("p1", "heart-rate", 88, 0), record("p2", "spo2", 95, 0)])
        wait_for(lambda: len(received.readings) >= 1, "the readings at the api process")
        got: dict[str, dict[str, LiveReading]] = {}
        for batch in received.readings:
            got.update(batch)
        assert got["p1"]["heart-rate"].value == 88.0
        assert got["p2"]["spo2"].value == 95.0
    finally:
        publisher.stop()
        feed.stop()


def test_alert_changes_and_notifications_relayed_by_a_worker_reach_the_api_process(
    broker_url: str, exchanges: tuple[str, str], received: Received, store: SqlResourceStore
) -> None:
    events, live = exchanges
    feed = received.feed(broker_url, events, live)
    feed.start()
    relay = OutboxRelay(store, AmqpSink(broker_url, exchange=events), poll=0.05)
    alerts = AlertService(store, on_commit=relay.notify)
    try:
        assert feed.wait_connected(30)
        relay.start()
        [alert] = alerts.apply([start("p-live")])
        alerts.acknowledge(alert.id, by="nurse-1")
        with store.session() as session:
            payload = {"patient_id": "p-live", "flag": "HH", "code": {"code": "2823-3"}}
            SqlEventOutbox(session).enqueue(
                DomainEvent("lab.result.critical", "lab.result.critical", payload),
                now=datetime.now(UTC),
            )
        wait_for(
            lambda: len(received.alerts) >= 2 and len(received.notifications) >= 1,
            "the alert changes and the notification at the api process",
        )
    finally:
        relay.stop()
        feed.stop()
    assert [topic for topic, _ in received.alerts] == ["alert.raised", "alert.acknowledged"]
    assert {body["alert_id"] for _, body in received.alerts} == {alert.id}
    [note] = received.notifications
    assert note.topic == "lab.result.critical" and note.body()["flag"] == "HH"
    assert note.id > 0


def test_the_feed_comes_back_after_the_broker_connection_is_lost(
    broker_url: str, exchanges: tuple[str, str], received: Received
) -> None:
    events, live = exchanges
    with TcpProxy(AMQP_HOST, AMQP_PORT) as proxy:
        proxied = f"amqp://guest:guest@127.0.0.1:{proxy.port}/%2F"
        feed = received.feed(proxied, events, live)
        states: list[bool] = []
        feed.on_state = states.append
        publisher = LiveVitalsPublisher(broker_url, exchange=live, interval=0.05)
        feed.start()
        try:
            assert feed.wait_connected(30)
            proxy.cut()
            wait_for(lambda: not feed.connected, "the feed to notice the cut")
            proxy.restore()
            assert feed.wait_connected(30)
            publisher.start()
            publisher([record("p3", "heart-rate", 101, 0)])
            wait_for(
                lambda: any("p3" in batch for batch in received.readings),
                "a reading after the reconnect",
            )
            # The hub is told each change, so the pages can say the feed was down.
            assert states[:3] == [True, False, True]
        finally:
            publisher.stop()
            feed.stop()


@pytest.mark.usefixtures("broker_url")
def test_a_publisher_without_a_broker_drops_readings_and_recovers(
    exchanges: tuple[str, str],
) -> None:
    """Ingest must never wait for the display feed: readings are dropped, not queued."""
    _, live = exchanges
    with TcpProxy(AMQP_HOST, AMQP_PORT) as proxy:
        publisher = LiveVitalsPublisher(
            f"amqp://guest:guest@127.0.0.1:{proxy.port}/%2F", exchange=live
        )
        proxy.cut()
        publisher([record("p4", "heart-rate", 70, 0)])
        started = time.monotonic()
        assert publisher.flush() == 0  # refused, quickly, and nothing raised
        assert time.monotonic() - started < 10
        proxy.restore()
        publisher([record("p4", "heart-rate", 71, 1)])
        assert publisher.flush() == 1
        publisher.stop()
