"""Publishing outbox events to RabbitMQ (pika), confirmed, for :class:`~.event_bus.OutboxRelay`.

Every event goes to one durable *topic* exchange (``medhub.alerts`` by
default) under its routing key (``alerts.<severity>.<vital>.<unit>`` for
alerts), as a persistent message (``delivery_mode=2``) with a JSON body.
The channel is in publisher-confirm mode (RabbitMQ's extension to AMQP
0-9-1, "Publisher Confirms"): :meth:`AmqpSink.send` returns only after the
broker acknowledged the message, which for a persistent message routed to a
durable queue means it was written to disk. Only then does the relay mark the
row sent. A message routed to no queue is confirmed and dropped, as AMQP
says; consumers bind a durable queue before they care.

``message_id`` is the outbox row id: a relay that dies between the confirm
and marking the row sent publishes it again, and consumers drop what they
have seen. ``type`` is the event topic (``alert.raised``, ``lab.result.critical``).

When the broker is unreachable the connection is dropped, the send raises
:class:`~.event_bus.DeliveryError` (the row stays pending with the error) and
the next send reconnects. While the relay is idle the sink connects ahead of
time (at start, and after a loss at most every ``idle_connect_seconds``), so
the handshakes (TCP, AMQP, exchange declare, confirm mode: 10-20 ms measured)
are not paid by the first alert. The relay's thread owns the connection:
pika's ``BlockingConnection`` is not thread-safe.
"""

from __future__ import annotations

import time
from typing import Any, Final

import pika  # type: ignore[import-untyped]
import structlog
from pika.exceptions import AMQPError  # type: ignore[import-untyped]

from medhub.adapters.event_bus import DeliveryError, OutboxMessage

log = structlog.get_logger(__name__)

DEFAULT_EXCHANGE: Final = "medhub.alerts"


class AmqpSink:
    """A confirmed publisher on one connection, opened ahead of use and again after a failure."""

    def __init__(
        self,
        url: str,
        *,
        exchange: str = DEFAULT_EXCHANGE,
        connect_timeout: float = 5.0,
        app_id: str = "medhub",
        idle_connect_seconds: float = 5.0,
    ) -> None:
        self.parameters = pika.URLParameters(url)
        # One attempt per send: the relay's backoff, not pika's, decides when to retry.
        self.parameters.connection_attempts = 1
        self.parameters.socket_timeout = connect_timeout
        self.parameters.blocked_connection_timeout = 30.0
        self.exchange = exchange
        self.app_id = app_id
        self.idle_connect_seconds = idle_connect_seconds
        self._idle_connect_at = float("-inf")
        self._connection: Any = None
        self._channel: Any = None

    @property
    def connected(self) -> bool:
        """An open channel to the broker is ready for the next send."""
        return self._channel is not None and bool(self._channel.is_open)

    def send(self, message: OutboxMessage) -> None:
        """Publish and wait for the broker's confirm; raise :class:`DeliveryError` otherwise."""
        properties = pika.BasicProperties(
            content_type="application/json",
            delivery_mode=pika.DeliveryMode.Persistent,
            message_id=str(message.id),
            correlation_id=message.correlation_id,
            type=message.topic,
            timestamp=int(message.created_at.timestamp()),
            app_id=self.app_id,
        )
        try:
            channel = self._ensure_channel()
            # In confirm mode the blocking channel waits for Basic.Ack and raises on Nack.
            channel.basic_publish(
                exchange=self.exchange,
                routing_key=message.routing_key,
                body=message.payload.encode(),
                properties=properties,
            )
        except (AMQPError, OSError) as exc:
            self._drop()
            raise DeliveryError(
                f"RabbitMQ did not confirm event {message.id}: {type(exc).__name__} {exc}"
            ) from exc

    def idle(self) -> None:
        """Serve heartbeats and notice a dead connection; connect if there is none.

        Connection attempts from here are spaced ``idle_connect_seconds`` apart,
        so a broker that is down costs one attempt (and one log line) per
        interval, not one per relay poll; a send still connects at once.
        """
        if self._connection is None:
            now = time.monotonic()
            if now < self._idle_connect_at:
                return
            self._idle_connect_at = now + self.idle_connect_seconds
            try:
                self._ensure_channel()
            except (AMQPError, OSError) as exc:
                self._drop()
                log.info("amqp.connect_failed", host=self.parameters.host, error=str(exc))
            return
        try:
            self._connection.process_data_events(time_limit=0)
        except (AMQPError, OSError):
            self._drop()

    def close(self) -> None:
        self._drop()

    def _ensure_channel(self) -> Any:
        if self._channel is not None and self._channel.is_open:
            return self._channel
        self._drop()
        connection = pika.BlockingConnection(self.parameters)
        try:
            channel = connection.channel()
            channel.exchange_declare(exchange=self.exchange, exchange_type="topic", durable=True)
            channel.confirm_delivery()
        except BaseException:
            _close_quietly(connection)
            raise
        self._connection, self._channel = connection, channel
        log.info("amqp.connected", host=self.parameters.host, exchange=self.exchange)
        return channel

    def _drop(self) -> None:
        connection, self._connection, self._channel = self._connection, None, None
        if connection is not None:
            _close_quietly(connection)


def _close_quietly(connection: Any) -> None:
    try:
        if connection.is_open:
            connection.close()
    except (AMQPError, OSError):
        pass  # it is already gone; nothing more to release
