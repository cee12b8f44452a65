"""MQTT device consumer: ``devices/+/{vitals,status,alerts}`` into the sample sink, acked after.

A thin shell around the pure decoders in :mod:`medhub.devices.mqtt_payload`
(the payload format is documented there and in ``docs/devices.md``)::

    paho network thread      decode thread                     store thread
    on_message -> queue -->  take what has arrived (<= N msgs) take every decoded batch waiting
                             decode each message        -->    sink.store(all samples) (1 call)
                             (bad ones: logged, counted)       alert handler; status handler
                             (mqtt_batch.BatchDecoder)         PUBACK the batches, in order

Why it is built like this:

* **Store before acknowledging** (DESIGN.md). The client runs with
  ``manual_ack``: a QoS 1 message is PUBACKed only once the sink has returned,
  that is once its samples are committed (or spooled). If the sink raises
  :class:`~medhub.errors.StoreUnavailableError` nothing is acked and the same
  batch is retried with back-off; should the connection drop meanwhile, the
  broker redelivers what was not acked, and the sample store's idempotent
  write keeps a sample that arrives twice from being stored twice.
* **Batching, pipelined, without a timer (group commit).** Per-message JSON
  decoding and per-call store overhead are the known costs
  (bench/device_ingest.py), so one store call serves many messages, and the
  next messages are decoded while the database works on the previous call (the
  store waits on COPY/commit/fsync with the GIL released: +20-40 % measured).
  The decoder takes whatever has arrived and the store thread takes every
  batch decoded while its previous call ran, so batches grow with the load and
  a message arriving at a quiet moment is stored at once. Holding every batch
  open for 20 ms (``batch_seconds``, the old default) put those 20 ms on every
  alert (bench/alert_latency.py, bench/RESULTS.md section 9); it remains an
  option for a deployment that would rather spend fewer commits.
* **Acks in order, on the connection they belong to.** MQTT 3.1.1 §4.6 wants
  PUBACKs in the order the PUBLISHes arrived: batches are FIFO and so are their
  acks. A packet id is only meaningful on the connection it came on: after a
  reconnect the broker resends unacked messages and may reuse their ids for
  new ones, so an ack for a message of an earlier connection is never sent
  (the message is stored anyway; its redelivered copy is acked).
* **Poison messages are acked.** A malformed payload would be redelivered for
  ever; it is logged with its reason and topic, counted per device
  (``note_rejected``), kept in :attr:`MqttIngest.recent_rejections` for
  inspection, and acked. Nothing in a payload can stop the worker.
* **Back-pressure, not loss.** With MQTT 5 the CONNECT carries Receive Maximum
  = the queue size, so the broker never sends more unacked messages than the
  queue holds (MQTT 5.0 §4.9). With 3.1.1 the broker's own in-flight limit
  applies; should the queue still fill up, ``on_message`` blocks the network
  thread, which stops reading the socket and lets TCP push back on the broker.
  (paho's ``max_inflight_messages_set`` only limits messages *we* publish.)
* **Persistence.** A stable client id and a persistent session (see
  :mod:`medhub.adapters.mqtt_connection`) make the broker queue QoS 1 messages
  while medhub is down; they arrive when it returns. On Mosquitto the queue is
  bounded by ``max_queued_messages`` (1000 by default): size it for the
  longest outage to be survived.
* **Nagle at the broker.** Mosquitto sends with Nagle's algorithm unless it
  is configured with ``set_tcp_nodelay true``: the tail of a message waits for
  the TCP ACK of the previous data, which the kernel delays while medhub has
  nothing to send back. PUBACKs sent as each small batch is stored carry that
  ACK at once; with 20 ms batches a message reached ``on_message`` 6-8 ms
  (up to 22 ms) after its publish, and 0.6 ms with ``set_tcp_nodelay true``
  (bench/RESULTS.md section 9). Set it on a broker you run.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final

import paho.mqtt.client as mqtt
import structlog
from paho.mqtt.reasoncodes import ReasonCode
from paho.mqtt.subscribeoptions import SubscribeOptions

from medhub.adapters.mqtt_batch import BatchDecoder, Decoded, Inbound, RejectionStats, merge
from medhub.adapters.mqtt_connection import MqttConnection, connect_async, make_client
from medhub.adapters.mqtt_handlers import (
    AlertsHandler,
    RejectionCounter,
    StatusHandler,
    log_alerts,
    registry_status_handler,
)
from medhub.devices.partition import PartitionGate
from medhub.devices.samples import SampleSink
from medhub.errors import ConfigurationError, StoreUnavailableError
from medhub.metrics import SAMPLES_INGESTED

__all__ = ["IngestOptions", "MqttIngest", "MqttIngestStats", "registry_status_handler"]

log = structlog.get_logger("medhub.adapters.mqtt")

_KINDS: Final = ("vitals", "status", "alerts")
#: Decoded batches waiting for the store thread, which takes them all in one call.
_DECODED_BATCHES: Final = 8


@dataclass(frozen=True, slots=True)
class IngestOptions:
    """Topics, batching and retry behaviour of the consumer."""

    topic_prefix: str = "devices"
    #: MQTT 5 shared subscription group: several medhub processes share the vitals stream.
    shared_group: str | None = None
    #: Or: take only this partition's devices, each process the whole stream (no group);
    #: the gate takes every device until the partition claims show all parts held.
    partition: PartitionGate | None = None
    qos: int = 1
    batch_messages: int = 500
    #: How long a batch waits for more messages after its first; 0: take what has arrived.
    batch_seconds: float = 0.0
    #: Messages held (received, not yet acked); also the MQTT 5 Receive Maximum.
    queue_messages: int = 2000
    #: MQTT 3.1.1: the broker's in-flight limit (Mosquitto ``max_inflight_messages``);
    #: a batch stops waiting once it holds that many, as the broker sends no more.
    broker_inflight: int = 20
    retry_min_seconds: float = 0.2
    retry_max_seconds: float = 10.0
    rejections_kept: int = 100


@dataclass
class MqttIngestStats(RejectionStats):
    """Counters since start; each is written by one thread only."""

    messages: int = 0
    samples: int = 0
    batches: int = 0
    statuses: int = 0
    alerts: int = 0
    store_retries: int = 0
    acks_skipped: int = 0
    connects: int = 0
    disconnects: int = 0
    #: CONNECT answered with a refusal (bad credentials, not authorised, ...).
    refusals: int = 0
    #: No MQTT connection at all (refused TCP, TLS handshake failed, DNS).
    connect_failures: int = 0
    last_error: str | None = None


class MqttIngest:
    """The MQTT consumer; :meth:`start` connects in the background, :meth:`stop` drains."""

    def __init__(
        self,
        connection: MqttConnection,
        sink: SampleSink,
        *,
        options: IngestOptions | None = None,
        rejections: RejectionCounter | None = None,
        on_status: StatusHandler | None = None,
        on_alerts: AlertsHandler = log_alerts,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.connection = connection
        self.options = options or IngestOptions()
        if self.options.partition is not None and self.options.shared_group:
            raise ConfigurationError(
                "MEDHUB_MQTT__PARTITION and MEDHUB_MQTT__SHARED_GROUP exclude each other: "
                "a partition takes its devices from the whole stream"
            )
        self.stats = MqttIngestStats()
        self._decoder = BatchDecoder(
            topic_prefix=self.options.topic_prefix,
            stats=self.stats,
            kept=self.options.rejections_kept,
            owns=None if self.options.partition is None else self.options.partition.owns,
        )
        #: The last refused payloads, newest last (for inspection and the API).
        self.recent_rejections = self._decoder.recent
        self._sink = sink
        self._rejections = rejections
        self._on_status = on_status
        self._on_alerts = on_alerts
        self._clock = clock
        self._queue: queue.Queue[Inbound] = queue.Queue(self.options.queue_messages)
        self._lock = threading.Lock()
        self._generation = 0
        self._connected = False
        self._ready = threading.Event()
        self._closing = threading.Event()
        self._stopping = threading.Event()
        self._in_progress = 0  # batches taken from the queue and not yet acked
        self._decoded: queue.Queue[tuple[list[Inbound], Decoded] | None] = queue.Queue(
            _DECODED_BATCHES
        )
        self._threads: list[threading.Thread] = []
        self._ingested = SAMPLES_INGESTED.labels("mqtt")
        self._client = make_client(connection, manual_ack=True)
        self._client.on_connect = self._on_connect
        self._client.on_disconnect = self._on_disconnect
        self._client.on_connect_fail = self._on_connect_fail
        self._client.on_subscribe = self._on_subscribe
        self._client.on_message = self._on_message

    # -- lifecycle ------------------------------------------------------------------

    def start(self) -> None:
        """Connect (retrying with back-off until the broker answers) and start consuming."""
        self._threads = [
            threading.Thread(target=self._run_decoder, name="mqtt-decode", daemon=True),
            threading.Thread(target=self._run_storer, name="mqtt-store", daemon=True),
        ]
        for thread in self._threads:
            thread.start()
        window = self.options.queue_messages
        connect_async(self._client, self.connection, receive_maximum=window)
        self._client.loop_start()
        log.info("mqtt.starting", connection=repr(self.connection), topics=self.topics())

    def wait_ready(self, timeout: float) -> bool:
        """True once connected and subscribed (for tests and the health check)."""
        return self._ready.wait(timeout)

    @property
    def ready(self) -> bool:
        return self._ready.is_set()

    @property
    def queued(self) -> int:
        """Messages received and waiting to be decoded (``/metrics``: a consumer falling behind)."""
        return self._queue.qsize()

    def stop(self, timeout: float = 10.0) -> None:
        """Store and ack what was received, then disconnect.

        Messages still queued after ``timeout`` are left unacked: the broker
        keeps them in the session and delivers them on the next start.
        """
        self._closing.set()
        deadline = time.monotonic() + timeout
        while self._busy() and time.monotonic() < deadline:
            time.sleep(0.01)
        self._stopping.set()
        for thread in self._threads:
            thread.join(max(0.1, deadline - time.monotonic()))
        self._client.disconnect()
        self._client.loop_stop()
        log.info("mqtt.stopped", messages=self.stats.messages, samples=self.stats.samples)

    @property
    def skipped_messages(self) -> int:
        """Messages of other partitions' devices, acked unread (:mod:`medhub.devices.partition`)."""
        return self._decoder.skipped

    def topics(self) -> list[str]:
        prefix = self.options.topic_prefix
        group = self.options.shared_group
        return [
            f"$share/{group}/{prefix}/+/{kind}" if group else f"{prefix}/+/{kind}"
            for kind in _KINDS
        ]

    # -- paho callbacks (network thread) ---------------------------------------------

    def _on_connect(
        self,
        client: mqtt.Client,
        _userdata: Any,
        flags: mqtt.ConnectFlags,
        reason: ReasonCode,
        _properties: Any,
    ) -> None:
        if reason.is_failure:
            self.stats.refusals += 1
            self.stats.last_error = f"broker refused the connection: {reason}"
            log.error("mqtt.connect_refused", reason=str(reason))
            return
        with self._lock:
            self._generation += 1
            self._connected = True
        self.stats.connects += 1
        log.info("mqtt.connected", session_present=flags.session_present, reason=str(reason))
        qos = self.options.qos
        if self.connection.protocol == "5":
            client.subscribe([(topic, SubscribeOptions(qos=qos)) for topic in self.topics()])
        else:
            client.subscribe([(topic, qos) for topic in self.topics()])

    def _on_connect_fail(self, _client: mqtt.Client, _userdata: Any) -> None:
        # paho does not say why; its loop retries with the reconnect back-off.
        self.stats.connect_failures += 1
        self.stats.last_error = "no connection to the broker (refused, unreachable or TLS failed)"
        if self.stats.connect_failures == 1 or self.stats.connect_failures % 60 == 0:
            log.warning("mqtt.connect_failed", failures=self.stats.connect_failures)

    def _on_subscribe(
        self,
        _client: mqtt.Client,
        _userdata: Any,
        _mid: int,
        reasons: list[ReasonCode],
        _properties: Any,
    ) -> None:
        refused = [str(r) for r in reasons if r.is_failure]
        if refused:
            log.error("mqtt.subscribe_refused", topics=self.topics(), reasons=refused)
            return
        self._ready.set()

    def _on_disconnect(
        self,
        _client: mqtt.Client,
        _userdata: Any,
        _flags: mqtt.DisconnectFlags,
        reason: ReasonCode,
        _properties: Any,
    ) -> None:
        with self._lock:
            self._generation += 1
            self._connected = False
        self._ready.clear()
        self.stats.disconnects += 1
        if not self._closing.is_set():
            log.warning("mqtt.disconnected", reason=str(reason))

    def _on_message(self, _client: mqtt.Client, _userdata: Any, message: mqtt.MQTTMessage) -> None:
        try:
            topic = message.topic
        except UnicodeDecodeError:  # brokers refuse these; never trust that
            topic = "<topic not UTF-8>"
        payload = message.payload
        if type(payload) is not bytes:
            payload = bytes(payload)
        item = Inbound(message.mid, message.qos, topic, payload, self._clock(), self._generation)
        # Blocks the network thread when the worker is behind: TCP then pushes back.
        while not self._closing.is_set():
            try:
                self._queue.put(item, timeout=0.2)
                return
            except queue.Full:
                continue
        # Closing: not queued and not acked, so the broker delivers it again next time.

    # -- worker thread ----------------------------------------------------------------

    def _busy(self) -> bool:
        with self._lock:
            return self._in_progress > 0 or not self._queue.empty()

    def _run_decoder(self) -> None:
        """Collect and decode batches; the next is decoded while the previous is stored.

        Two threads, because storing waits on the database (COPY, commit, fsync)
        with the GIL released, and decoding can use that time. The hand-over
        queue holds a few batches; what the broker may send unacked (Receive
        Maximum, or its in-flight limit) bounds the messages in memory.
        """
        while True:
            batch = self._collect()
            if not batch:
                if self._stopping.is_set():
                    self._hand_over(None)
                    return
                continue
            try:
                decoded = self._decoder.decode(batch)
            except Exception:  # a bug in decoding must not kill the consumer
                log.exception("mqtt.decode_failed", messages=len(batch))
                with self._lock:
                    self._in_progress -= 1
                continue  # nothing acked: redelivered after the next reconnect
            if not self._hand_over((batch, decoded)):
                return

    def _hand_over(self, item: tuple[list[Inbound], Decoded] | None) -> bool:
        while True:
            try:
                self._decoded.put(item, timeout=0.1)
                return True
            except queue.Full:
                if self._stopping.is_set():  # the storer has stopped too, or is stopping
                    return False

    def _run_storer(self) -> None:
        """Store, then ack, the decoded batches in the order received (MQTT 3.1.1 §4.6).

        Every batch decoded while the previous store call ran goes into the
        next call (up to ``batch_messages``): the group commit that makes
        batches large under load without making anyone wait when it is quiet.
        """
        while True:
            try:
                item = self._decoded.get(timeout=0.1)
            except queue.Empty:
                if self._stopping.is_set() and not self._threads[0].is_alive():
                    return
                continue
            if item is None:
                return
            parts, last = self._waiting_batches(item)
            batch = [message for part, _ in parts for message in part]
            decoded = merge([part for _, part in parts])
            try:
                if not self._deliver(decoded, batch):
                    return
                self._acknowledge(batch)
                self.stats.batches += 1
                self.stats.messages += len(batch)
                self.stats.samples += len(decoded.samples)
                self._ingested.inc(len(decoded.samples))
            finally:
                with self._lock:
                    self._in_progress -= len(parts)
            if last:
                return

    def _waiting_batches(
        self, first: tuple[list[Inbound], Decoded]
    ) -> tuple[list[tuple[list[Inbound], Decoded]], bool]:
        """``first`` and the decoded batches queued behind it; True if the end was among them."""
        parts = [first]
        messages = len(first[0])
        while messages < self.options.batch_messages:
            try:
                item = self._decoded.get_nowait()
            except queue.Empty:
                break
            if item is None:
                return parts, True
            parts.append(item)
            messages += len(item[0])
        return parts, False

    def _collect(self) -> list[Inbound]:
        """The next message and what has arrived behind it (waiting ``batch_seconds`` if set)."""
        try:
            first = self._queue.get(timeout=0.1)
        except queue.Empty:
            return []
        with self._lock:  # counted at once, so stop() does not see an idle consumer
            self._in_progress += 1
        batch = [first]
        limit = self.options.batch_messages
        window = (
            self.options.queue_messages
            if self.connection.protocol == "5"
            else self.options.broker_inflight
        )
        deadline = time.monotonic() + self.options.batch_seconds
        while len(batch) < limit:
            try:
                batch.append(self._queue.get_nowait())
                continue
            except queue.Empty:
                pass
            remaining = deadline - time.monotonic()
            if len(batch) >= window or remaining <= 0 or self._stopping.is_set():
                break
            try:
                batch.append(self._queue.get(timeout=remaining))
            except queue.Empty:
                break
        return batch

    def _deliver(self, decoded: Decoded, batch: Sequence[Inbound]) -> bool:
        """Store the batch, retrying with back-off; False if stopped before it was stored."""
        delay = self.options.retry_min_seconds
        received_at = datetime.fromtimestamp(max(item.arrived for item in batch), UTC)
        while True:
            try:
                self._sink.store(decoded.samples, received_at=received_at)
                if decoded.alerts:
                    self._on_alerts(decoded.alerts)
                break
            except Exception as exc:
                # StoreUnavailableError is the expected case; anything else is retried
                # too, since acking would lose samples that were decoded as valid.
                self.stats.store_retries += 1
                if isinstance(exc, StoreUnavailableError):
                    log.warning("mqtt.store_unavailable", reason=str(exc), retry_in=delay)
                else:
                    log.exception("mqtt.store_failed", retry_in=delay)
                if self._stopping.wait(delay):
                    return False
                delay = min(delay * 2, self.options.retry_max_seconds)
        self._after_store(decoded)
        return True

    def _after_store(self, decoded: Decoded) -> None:
        """Status and rejection counts: informational, so failures are logged, not retried."""
        for status in decoded.statuses:
            self.stats.statuses += 1
            if self._on_status is None:
                continue
            try:
                self._on_status(status)
            except Exception as exc:
                log.warning("mqtt.status_not_recorded", device=status.device_id, reason=str(exc))
        self.stats.alerts += len(decoded.alerts)
        if self._rejections is not None:
            for device_id, count in decoded.rejected.items():
                self._rejections.note_rejected(device_id, count)

    def _acknowledge(self, batch: Sequence[Inbound]) -> None:
        with self._lock:
            generation, connected = self._generation, self._connected
        client = self._client
        for item in batch:
            if item.qos == 0:
                continue
            if item.generation != generation or not connected:
                # Its connection is gone: the broker resends it, and that copy is acked.
                self.stats.acks_skipped += 1
                continue
            client.ack(item.mid, item.qos)
