"""The outbox relay: in-process bus, several relays at once, and RabbitMQ through an outage.

The RabbitMQ test cuts a :class:`~tests.tcp_proxy.TcpProxy` between the relay
and the real broker instead of stopping the server other tests use.
"""

from __future__ import annotations

import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pika
import pytest
from sqlalchemy import func, select

from medhub.adapters.amqp_publisher import AmqpSink
from medhub.adapters.event_bus import (
    DeliveryError,
    InProcessBus,
    OutboxMessage,
    OutboxRelay,
    claim,
    purge_sent,
    topic_matches,
)
from medhub.cds.alarm_codes import Condition, Priority, Transition
from medhub.cds.alert_store import AlertService
from medhub.cds.detector import AlarmEvent, StreamKey, to_us
from medhub.db.outbox import OutboxEventRow
from medhub.fhir.sql_store import SqlResourceStore
from tests.conftest import unavailable
from tests.tcp_proxy import TcpProxy

AMQP_HOST, AMQP_PORT = "127.0.0.1", 5672
T0 = datetime(2026, 11, 22, 3, 0, tzinfo=UTC)


def start(patient: str, *, at: datetime = T0) -> AlarmEvent:
    key = StreamKey("heart-rate", f"monitor-{patient}", "ecg", patient)
    return AlarmEvent(
        0, key, Condition.CRITICAL_HIGH, Transition.START, Priority.HIGH, to_us(at), 150.0, 140.0,
        False,
    )  # fmt: skip


def pending(store: SqlResourceStore) -> list[OutboxEventRow]:
    with store.session() as session:
        query = select(OutboxEventRow).where(OutboxEventRow.status == "pending")
        return list(session.scalars(query.order_by(OutboxEventRow.id)))


def all_ids(store: SqlResourceStore) -> list[int]:
    with store.session() as session:
        return list(session.scalars(select(OutboxEventRow.id).order_by(OutboxEventRow.id)))


def wait_for(condition: Callable[[], bool], what: str, timeout: float = 60.0) -> None:
    """Poll until ``condition`` holds; the timeout only turns a hang into a failure."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"gave up waiting: {what}")
        time.sleep(0.02)


# -- topic matching and the in-process bus ------------------------------------------


@pytest.mark.parametrize(
    ("binding", "key", "matches"),
    [
        ("alerts.#", "alerts.high.heart-rate./min", True),
        ("alerts.#", "alerts", True),
        ("alerts.high.*.*", "alerts.high.heart-rate./min", True),
        ("alerts.*", "alerts.high.heart-rate./min", False),
        ("#.%", "alerts.high.spo2.%", True),
        ("alerts.low.#", "alerts.high.heart-rate./min", False),
        ("#", "lab.result.critical", True),
    ],
)
def test_topic_bindings_match_like_amqp(binding: str, key: str, matches: bool) -> None:
    assert topic_matches(binding.split("."), key.split(".")) is matches


def test_the_bus_delivers_each_alert_and_empties_the_outbox(store: SqlResourceStore) -> None:
    bus = InProcessBus()
    high: list[OutboxMessage] = []
    everything: list[OutboxMessage] = []
    bus.subscribe("alerts.high.#", high.append)
    bus.subscribe("#", everything.append)
    bus.subscribe("alerts.low.#", lambda m: pytest.fail(f"not a low alert: {m}"))
    relay = OutboxRelay(store, bus, clock=lambda: T0)
    alerts = AlertService(store, clock=lambda: T0).apply([start("p1"), start("p2")])
    assert relay.step() == 2
    assert relay.step() == 0
    assert [m.body()["alert_id"] for m in high] == [a.id for a in alerts]
    assert [m.id for m in everything] == all_ids(store)
    assert pending(store) == []


class ParkedBus(InProcessBus):
    """The in-process bus, counting the relay's idle calls: it calls idle() before it waits."""

    def __init__(self) -> None:
        super().__init__()
        self.idles = 0

    def idle(self) -> None:
        self.idles += 1


#: The relay's poll in the wake-up tests, far beyond what the tests wait for a delivery:
#: a delivery within ``WOKEN_WITHIN`` can only have come from the alert service's notify.
LONG_POLL = 600.0
WOKEN_WITHIN = 30.0


def test_the_relay_thread_wakes_on_commit(store: SqlResourceStore) -> None:
    """The embedded default: no broker, the relay thread feeds the bus as alerts commit.

    The relay is parked in its ten-minute poll before anything commits, so the
    alert reaching the bus proves it was woken by the commit, not found by a poll.
    """
    bus = ParkedBus()
    received: list[dict[str, Any]] = []
    bus.subscribe("alerts.#", lambda message: received.append(message.body()))
    relay = OutboxRelay(store, bus, poll=LONG_POLL)
    alerts = AlertService(store, on_commit=relay.notify)
    relay.start()
    try:
        wait_for(lambda: bus.idles == 1, "the relay to park in its poll")
        [alert] = alerts.apply([start("p1")])
        wait_for(lambda: len(received) == 1, "the raised alert", timeout=WOKEN_WITHIN)
        wait_for(lambda: bus.idles == 2, "the relay to park again")
        alerts.acknowledge(alert.id, by="nurse-1")
        wait_for(lambda: len(received) == 2, "the acknowledgement", timeout=WOKEN_WITHIN)
    finally:
        relay.stop()
    assert [(b["alert_id"], b["state"]) for b in received] == [
        (alert.id, "raised"),
        (alert.id, "acknowledged"),
    ]
    assert received[1]["acknowledged_by"] == "nurse-1"
    wait_for(lambda: not pending(store), "the outbox to be marked sent")


def test_an_alert_transaction_that_rolls_back_publishes_nothing(store: SqlResourceStore) -> None:
    """Nothing leaves before the commit: a failed transaction neither wakes nor feeds the relay."""
    bus = ParkedBus()
    received: list[dict[str, Any]] = []
    bus.subscribe("#", lambda message: received.append(message.body()))
    relay = OutboxRelay(store, bus, poll=LONG_POLL)
    woken: list[str] = []

    def notify() -> None:
        woken.append("notify")
        relay.notify()

    def refuse(_session: Any, _alert: Any) -> None:  # e.g. the PCD-04 report cannot be queued
        raise RuntimeError("the outbound HL7 queue refused the report")

    failing = AlertService(store, on_commit=notify, on_change=refuse)
    relay.start()
    try:
        wait_for(lambda: bus.idles == 1, "the relay to park in its poll")
        with pytest.raises(RuntimeError, match="refused"):
            failing.apply([start("p1")])
        assert woken == [] and all_ids(store) == []
        assert AlertService(store).open_alerts() == []
        assert bus.idles == 1
        # The relay is still parked and sees nothing; the next alert that commits goes at once.
        [alert] = AlertService(store, on_commit=notify).apply([start("p2")])
        wait_for(lambda: len(received) == 1, "the committed alert", timeout=WOKEN_WITHIN)
    finally:
        relay.stop()
    assert woken == ["notify"]
    assert [(b["alert_id"], b["patient"]) for b in received] == [(alert.id, "p2")]


def test_a_failing_subscriber_leaves_the_row_pending_with_its_error(
    store: SqlResourceStore,
) -> None:
    bus = InProcessBus()
    received: list[int] = []
    failing = [True]

    def flaky(message: OutboxMessage) -> None:
        if failing[0]:
            raise RuntimeError("the dashboard hub is restarting")
        received.append(message.id)

    bus.subscribe("alerts.#", flaky)
    now = [T0]
    relay = OutboxRelay(store, bus, clock=lambda: now[0], backoff_min=1.0, backoff_max=4.0)
    AlertService(store, clock=lambda: T0).apply([start("p1")])
    with pytest.raises(DeliveryError):
        relay.step()
    [row] = pending(store)
    assert row.attempts == 1 and "restarting" in (row.last_error or "")
    assert row.next_attempt_at == T0 + timedelta(seconds=1)
    assert relay.step() == 0  # not due yet: the relay backs off
    failing[0] = False
    now[0] = T0 + timedelta(seconds=1)
    assert relay.step() == 1
    assert received == [row.id] and pending(store) == []


def test_two_relays_never_deliver_one_row_twice(store: SqlResourceStore) -> None:
    AlertService(store).apply([start(f"p{i}") for i in range(40)])
    delivered: list[int] = []
    lock = threading.Lock()

    def record(message: OutboxMessage) -> None:
        with lock:
            delivered.append(message.id)

    relays = []
    for _ in range(2):
        bus = InProcessBus()
        bus.subscribe("#", record)
        relays.append(OutboxRelay(store, bus, batch=3))

    def drain(relay: OutboxRelay) -> None:
        while relay.step():
            pass

    threads = [threading.Thread(target=drain, args=(relay,)) for relay in relays]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    while relays[0].step():  # a relay that found every row locked may have stopped early
        pass
    assert sorted(delivered) == all_ids(store)
    assert pending(store) == []


def test_a_claim_never_marked_sent_is_delivered_again_with_its_id(
    store: SqlResourceStore,
) -> None:
    """A relay that died after the confirm: the lease runs out and the row goes again."""
    AlertService(store, clock=lambda: T0).apply([start("p1")])
    with store.session() as session:
        [lost] = claim(session, now=T0, lease=timedelta(seconds=60), limit=10)
    bus = InProcessBus()
    received: list[int] = []
    bus.subscribe("#", lambda message: received.append(message.id))
    assert OutboxRelay(store, bus, clock=lambda: T0 + timedelta(seconds=59)).step() == 0
    assert OutboxRelay(store, bus, clock=lambda: T0 + timedelta(seconds=60)).step() == 1
    assert received == [lost.id]
    with store.session() as session:
        assert purge_sent(session, before=T0 + timedelta(seconds=60)) == 0
        assert purge_sent(session, before=datetime.now(UTC) + timedelta(seconds=1)) == 1
    assert all_ids(store) == []


def test_an_unreachable_broker_is_a_delivery_error(store: SqlResourceStore) -> None:
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))
    port = closed.getsockname()[1]
    closed.close()  # nothing listens there now
    sink = AmqpSink(f"amqp://guest:guest@127.0.0.1:{port}/%2F", connect_timeout=2)
    AlertService(store, clock=lambda: T0).apply([start("p1")])
    relay = OutboxRelay(store, sink, clock=lambda: T0, backoff_min=2.0)
    with pytest.raises(DeliveryError, match="did not confirm"):
        relay.step()
    [row] = pending(store)
    assert row.last_error and row.next_attempt_at == T0 + timedelta(seconds=2)
    relay.stop()


def test_an_idle_sink_tries_an_unreachable_broker_once_per_interval(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))
    port = closed.getsockname()[1]
    closed.close()  # nothing listens there now
    attempts: list[object] = []
    real = pika.BlockingConnection

    def counting(parameters: object) -> object:
        attempts.append(parameters)
        return real(parameters)

    monkeypatch.setattr(pika, "BlockingConnection", counting)
    sink = AmqpSink(f"amqp://guest:guest@127.0.0.1:{port}/%2F", idle_connect_seconds=3600)
    sink.idle()  # refused: logged, not raised (the relay keeps polling the outbox)
    sink.idle()
    assert len(attempts) == 1 and not sink.connected
    with pytest.raises(DeliveryError):  # a send does not wait for the interval
        sink.send(OutboxMessage(1, "alert.raised", "alerts.high", "{}", T0, 1))
    assert len(attempts) == 2
    sink.close()


# -- RabbitMQ ---------------------------------------------------------------------


@pytest.fixture
def rabbit() -> Iterator[Any]:
    """A channel on the real broker (not through the proxy), for the consumer side."""
    try:
        socket.create_connection((AMQP_HOST, AMQP_PORT), timeout=2).close()
        connection = pika.BlockingConnection(
            pika.ConnectionParameters(AMQP_HOST, AMQP_PORT, connection_attempts=1)
        )
    except (OSError, pika.exceptions.AMQPError) as exc:
        unavailable("RabbitMQ", exc)
    channel = connection.channel()
    yield channel
    connection.close()


def test_the_relay_connects_to_rabbitmq_before_the_first_alert(
    store: SqlResourceStore, rabbit: Any
) -> None:
    """The handshakes (TCP, AMQP, confirm mode) are done at start, not by the first alert."""
    exchange = f"medhub.alerts.test-{uuid.uuid4().hex[:10]}"
    rabbit.exchange_declare(exchange=exchange, exchange_type="topic", durable=True)
    queue = rabbit.queue_declare(queue="", exclusive=True).method.queue
    rabbit.queue_bind(queue=queue, exchange=exchange, routing_key="alerts.#")
    connections: list[object] = []
    real = pika.BlockingConnection

    def counting(parameters: object) -> object:
        connections.append(parameters)
        return real(parameters)

    sink = AmqpSink(f"amqp://guest:guest@{AMQP_HOST}:{AMQP_PORT}/%2F", exchange=exchange)
    relay = OutboxRelay(store, sink, poll=LONG_POLL)
    alerts = AlertService(store, on_commit=relay.notify)
    try:
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(pika, "BlockingConnection", counting)
            relay.start()
            wait_for(lambda: sink.connected, "the relay to connect while idle")
            [alert] = alerts.apply([start("p1")])
            wait_for(lambda: not pending(store), "the alert to be confirmed", timeout=WOKEN_WITHIN)
            relay.stop()
        method, properties, body = rabbit.basic_get(queue=queue, auto_ack=True)
        assert method is not None and orjson.loads(body)["alert_id"] == alert.id
        # Raised by device ingest (no request or message): the alert's id correlates its events.
        assert properties.correlation_id == alert.id
        assert len(connections) == 1  # the alert went out on the connection opened at start
    finally:
        relay.stop()
        rabbit.exchange_delete(exchange=exchange)


def test_alerts_raised_while_rabbitmq_is_down_arrive_exactly_once(
    store: SqlResourceStore, rabbit: Any
) -> None:
    exchange = f"medhub.alerts.test-{uuid.uuid4().hex[:10]}"
    rabbit.exchange_declare(exchange=exchange, exchange_type="topic", durable=True)
    queue = rabbit.queue_declare(queue="", exclusive=True).method.queue
    rabbit.queue_bind(queue=queue, exchange=exchange, routing_key="alerts.#")
    try:
        with TcpProxy(AMQP_HOST, AMQP_PORT) as proxy:
            sink = AmqpSink(f"amqp://guest:guest@127.0.0.1:{proxy.port}/%2F", exchange=exchange)
            relay = OutboxRelay(store, sink, poll=0.05, backoff_min=0.05, backoff_max=0.2)
            alerts = AlertService(store, on_commit=relay.notify)
            relay.start()
            try:
                raised = alerts.apply([start(f"before{i}") for i in range(3)])
                wait_for(lambda: not pending(store), "the first alerts to be confirmed")

                proxy.cut()
                for i in range(5):  # one transaction each, as the detector batches would be
                    raised += alerts.apply([start(f"down{i}")])
                wait_for(
                    lambda: any(row.last_error for row in pending(store)),
                    "the relay to fail against the cut broker",
                )
                assert len(pending(store)) == 5

                proxy.restore()
                wait_for(lambda: not pending(store), "the outbox to drain after the restore")
            finally:
                relay.stop()
        received: list[tuple[str, dict[str, Any], Any]] = []
        while True:
            method, properties, body = rabbit.basic_get(queue=queue, auto_ack=True)
            if method is None:
                break
            received.append((properties.message_id, orjson.loads(body), properties))
    finally:
        rabbit.exchange_delete(exchange=exchange)
    ids = [message_id for message_id, _, _ in received]
    assert sorted(ids, key=int) == [str(i) for i in all_ids(store)]  # each exactly once
    assert sorted(body["alert_id"] for _, body, _ in received) == sorted(a.id for a in raised)
    _, body, properties = received[-1]
    assert properties.delivery_mode == 2 and properties.type == "alert.raised"
    assert body["severity"] == "high" and body["state"] == "raised"
    with store.session() as session:
        sent = select(func.count()).where(OutboxEventRow.status == "sent")
        assert session.scalar(sent) == 8
