"""The dashboards' live feed across processes, over RabbitMQ, for split roles.

With every role in one process the live hub (:mod:`medhub.api.live`) hears
device ingest, the alert service and the in-process bus directly. When the
``api`` role runs apart from ``devices`` (``medhub serve --role …``, deploy/),
nothing it ingests or raises happens in the API process, and the dashboards'
tiles and alert lists would stop updating without any sign. So:

- :class:`LiveVitalsPublisher`, a device-ingest listener in the ``devices``
  process, sends the newest reading per patient and vital, at most once per
  ``interval``, to the fanout exchange ``medhub.live``: transient messages, no
  confirms. It is a display feed, not data: the samples are stored by ingest
  either way, and a reading lost while the broker is down is replaced by the
  next one a second later.
- :class:`LiveBrokerFeed`, in each ``api`` process, consumes that exchange and
  the outbox events' exchange (``MEDHUB_ALERTS__EXCHANGE``: every alert change
  and notification, relayed after commit by :mod:`medhub.adapters.event_bus`)
  on an exclusive, auto-deleted queue of its own, and hands them to callbacks
  the composition root connects to the hub. It reconnects with back-off.

Both run on their own thread and own their pika connection (``BlockingConnection``
is not thread-safe).
"""

from __future__ import annotations

import threading
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final

import orjson
import pika  # type: ignore[import-untyped]
import structlog
from pika.exceptions import AMQPError  # type: ignore[import-untyped]

from medhub.timeseries.records import SampleRecord, newest_by_patient

log = structlog.get_logger(__name__)

LIVE_EXCHANGE: Final = "medhub.live"
#: What one reading is on the wire (``time`` RFC 3339).
_FIELDS: Final = ("patient", "vital", "value", "unit", "time", "device")


@dataclass(frozen=True, slots=True)
class LiveReading:
    value: float
    unit: str
    time: datetime
    device: str


@dataclass(frozen=True, slots=True)
class BrokerEvent:
    """An outbox event as RabbitMQ delivered it (what the hub's notifications read)."""

    id: int
    topic: str
    created_at: datetime
    payload: Mapping[str, Any]

    def body(self) -> dict[str, Any]:
        return dict(self.payload)


ReadingsCallback = Callable[[dict[str, dict[str, LiveReading]]], None]
AlertCallback = Callable[[str, Mapping[str, Any]], None]
NotificationCallback = Callable[[BrokerEvent], None]


def readings_message(latest: Mapping[str, Mapping[str, SampleRecord]]) -> bytes:
    """The wire form of the newest readings (pure)."""
    return orjson.dumps(
        {
            "readings": [
                {
                    "patient": patient,
                    "vital": vital,
                    "value": record.value,
                    "unit": record.unit,
                    "time": record.corrected_time.astimezone(UTC).isoformat(),
                    "device": record.device_id,
                }
                for patient, vitals in latest.items()
                for vital, record in vitals.items()
            ]
        }
    )


def parse_readings_message(body: bytes) -> dict[str, dict[str, LiveReading]]:
    """Readings from the wire; entries that are not well-formed are skipped (pure).

    Anything may be published to an exchange: one bad entry must not stop the
    feed or reach a browser.
    """
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        return {}
    entries = data.get("readings") if isinstance(data, dict) else None
    latest: dict[str, dict[str, LiveReading]] = {}
    for entry in entries if isinstance(entries, list) else ():
        if not isinstance(entry, dict) or not all(k in entry for k in _FIELDS):
            continue
        patient, vital, value = entry["patient"], entry["vital"], entry["value"]
        if not (isinstance(patient, str) and patient and isinstance(vital, str) and vital):
            continue
        if isinstance(value, bool) or not isinstance(value, int | float):
            continue
        try:
            time = datetime.fromisoformat(str(entry["time"]))
        except ValueError:
            continue
        if time.tzinfo is None:
            continue
        reading = LiveReading(float(value), str(entry["unit"]), time, str(entry["device"]))
        known = latest.setdefault(patient, {}).get(vital)
        if known is None or known.time <= reading.time:
            latest[patient][vital] = reading
    return latest


def _parameters(url: str, timeout: float) -> Any:
    parameters = pika.URLParameters(url)
    parameters.connection_attempts = 1
    parameters.socket_timeout = timeout
    parameters.heartbeat = 30
    return parameters


def _close_quietly(connection: Any) -> None:
    try:
        if connection is not None and connection.is_open:
            connection.close()
    except Exception:  # already broken: nothing more to release
        pass


class _Worker(ABC):
    """A daemon thread running :meth:`_run` until :meth:`stop` (both classes below)."""

    name = "live"

    def __init__(self) -> None:
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    @abstractmethod
    def _run(self) -> None:
        """The thread's loop; returns once ``self._stop`` is set."""


class LiveVitalsPublisher(_Worker):
    """Device-ingest listener: newest readings to ``medhub.live`` once per ``interval``."""

    name = "live-publisher"

    def __init__(
        self,
        url: str,
        *,
        exchange: str = LIVE_EXCHANGE,
        interval: float = 1.0,
        timeout: float = 5.0,
    ) -> None:
        super().__init__()
        self.parameters = _parameters(url, timeout)
        self.exchange = exchange
        self.interval = interval
        self.published = 0
        self._pending: dict[str, dict[str, SampleRecord]] = {}
        self._lock = threading.Lock()
        self._connection: Any = None
        self._channel: Any = None
        self._failing = False

    def __call__(self, records: Sequence[SampleRecord]) -> None:
        """Keep the newest of each patient's vitals until the next send (cheap: ingest's thread)."""
        latest = newest_by_patient(records)
        if not latest:
            return
        with self._lock:
            for patient, vitals in latest.items():
                pending = self._pending.setdefault(patient, {})
                for vital, record in vitals.items():
                    known = pending.get(vital)
                    if known is None or known.corrected_time <= record.corrected_time:
                        pending[vital] = record

    def stop(self, timeout: float = 5.0) -> None:
        super().stop(timeout)
        _close_quietly(self._connection)
        self._connection = self._channel = None

    def flush(self) -> int:
        """Publish what is pending now; returns how many readings went out (0 on failure)."""
        with self._lock:
            latest, self._pending = self._pending, {}
        if not latest:
            return 0
        try:
            channel = self._ensure_channel()
            channel.basic_publish(
                exchange=self.exchange,
                routing_key="",
                body=readings_message(latest),
                properties=pika.BasicProperties(
                    content_type="application/json", delivery_mode=1, type="vitals.update"
                ),
            )
        except (AMQPError, OSError) as exc:
            _close_quietly(self._connection)
            self._connection = self._channel = None
            if not self._failing:  # once per outage, not once a second
                log.warning("live.publish_failed", error=str(exc) or type(exc).__name__)
            self._failing = True
            return 0
        if self._failing:
            log.info("live.publish_restored")
        self._failing = False
        count = sum(len(vitals) for vitals in latest.values())
        self.published += count
        return count

    def _ensure_channel(self) -> Any:
        if self._channel is not None and self._channel.is_open:
            return self._channel
        _close_quietly(self._connection)
        connection = pika.BlockingConnection(self.parameters)
        channel = connection.channel()
        channel.exchange_declare(exchange=self.exchange, exchange_type="fanout", durable=True)
        self._connection, self._channel = connection, channel
        return channel

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.flush()
                if self._connection is not None:
                    self._connection.process_data_events(time_limit=0)  # heartbeats
            except Exception:  # the display feed must never take ingest down
                log.exception("live.publisher_step_failed")


class LiveBrokerFeed(_Worker):
    """Consumes live readings and outbox events for one API process's hub."""

    name = "live-feed"

    def __init__(
        self,
        url: str,
        *,
        events_exchange: str,
        on_readings: ReadingsCallback,
        on_alert: AlertCallback,
        on_notification: NotificationCallback,
        on_state: Callable[[bool], None] | None = None,
        live_exchange: str = LIVE_EXCHANGE,
        timeout: float = 5.0,
        backoff_max: float = 30.0,
    ) -> None:
        super().__init__()
        self.parameters = _parameters(url, timeout)
        self.events_exchange = events_exchange
        self.live_exchange = live_exchange
        self.on_readings = on_readings
        self.on_alert = on_alert
        self.on_notification = on_notification
        self.on_state = on_state
        self.backoff_max = backoff_max
        self.received = 0
        self._ready = threading.Event()

    @property
    def connected(self) -> bool:
        """Consuming now (for tests and the logs)."""
        return self._ready.is_set()

    def wait_connected(self, timeout: float) -> bool:
        return self._ready.wait(timeout)

    def deliver(self, exchange: str, properties: Any, body: bytes) -> None:
        """One delivered message to the right callback (also what tests call directly)."""
        self.received += 1
        if exchange == self.live_exchange:
            latest = parse_readings_message(body)
            if latest:
                self.on_readings(latest)
            return
        topic = getattr(properties, "type", None)
        try:
            payload = orjson.loads(body)
        except orjson.JSONDecodeError:
            log.warning("live.event_unreadable", topic=topic)
            return
        if not isinstance(topic, str) or not isinstance(payload, dict):
            log.warning("live.event_unreadable", topic=topic)
            return
        if topic.startswith("alert."):
            self.on_alert(topic, payload)
            return
        try:
            event_id = int(getattr(properties, "message_id", None) or 0)
        except ValueError:
            event_id = 0
        stamp = getattr(properties, "timestamp", None)
        created = datetime.fromtimestamp(stamp, UTC) if stamp else datetime.now(UTC)
        self.on_notification(BrokerEvent(event_id, topic, created, payload))

    def _tell(self, live: bool) -> None:
        if self.on_state is None:
            return
        try:
            self.on_state(live)
        except Exception:  # telling the pages must not end the feed
            log.exception("live.state_listener_failed")

    def _run(self) -> None:
        failures = 0
        while not self._stop.is_set():
            connection = None
            try:
                connection = pika.BlockingConnection(self.parameters)
                channel = connection.channel()
                channel.exchange_declare(
                    exchange=self.events_exchange, exchange_type="topic", durable=True
                )
                channel.exchange_declare(
                    exchange=self.live_exchange, exchange_type="fanout", durable=True
                )
                queue = channel.queue_declare(queue="", exclusive=True, auto_delete=True)
                name = queue.method.queue
                channel.queue_bind(queue=name, exchange=self.events_exchange, routing_key="#")
                channel.queue_bind(queue=name, exchange=self.live_exchange)

                def on_message(_ch: Any, method: Any, properties: Any, body: bytes) -> None:
                    try:
                        self.deliver(method.exchange, properties, body)
                    except Exception:  # one bad event must not end the feed
                        log.exception("live.event_failed")

                channel.basic_consume(queue=name, on_message_callback=on_message, auto_ack=True)
                self._tell(True)  # before ready: whoever waited on ready sees the hub live
                self._ready.set()
                if failures:
                    log.info("live.feed_restored")
                failures = 0
                while not self._stop.is_set():
                    connection.process_data_events(time_limit=0.2)
            except Exception as exc:  # AMQP, socket, or anything else: retry, never die quietly
                self._ready.clear()
                failures += 1
                delay = min(self.backoff_max, 0.5 * 2 ** (failures - 1))
                if failures == 1:  # dashboards stop updating: say so once per outage
                    log.warning("live.feed_lost", error=str(exc) or type(exc).__name__)
                    self._tell(False)
                self._stop.wait(delay)
            finally:
                self._ready.clear()
                _close_quietly(connection)
