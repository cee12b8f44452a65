"""The outbox relay, and the in-process event bus it feeds when no broker is configured.

Events are written to ``outbox_event`` in the transaction that raised them
(:mod:`medhub.db.outbox`). :class:`OutboxRelay` is the one loop that moves
them out: claim pending rows oldest first, hand each to a :class:`Sink`, mark
it ``sent`` only once the sink returned (for RabbitMQ: after the publisher
confirm, :mod:`medhub.adapters.amqp_publisher`), and on failure leave it
pending with its error and a later retry time while the relay backs off.

Claiming is a lease, as for outbound HL7 (:mod:`medhub.hl7.outbound_queue`):
one short transaction locks the rows (``FOR UPDATE SKIP LOCKED`` on
PostgreSQL and MariaDB, so two relays never claim one row; SQLite's
``BEGIN IMMEDIATE`` lock serialises them), counts the attempt and moves
``next_attempt_at`` past the lease, then commits; no lock is held while
talking to the broker. A relay that dies between the sink's confirm and
marking the row sent makes the row due again when the lease runs out, so
delivery is *at least once*; every message carries the row id as its
message id for consumers to drop the rare duplicate.

Unlike the HL7 queue there is no strict FIFO: alerts of different patients
must not wait behind each other, and each carries its own timestamps.

:class:`InProcessBus` is the sink of the embedded default (``MEDHUB_AMQP_URL``
unset): subscribers are callbacks bound with AMQP topic patterns
(``alerts.high.#``), called on the relay's thread.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Protocol

import orjson
import structlog
from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session

from medhub.correlation import continued
from medhub.db.outbox import OutboxEventRow
from medhub.errors import MedhubError
from medhub.fhir.sql_store import SqlResourceStore
from medhub.fhir.write_rules import utc_now
from medhub.tracing import span

log = structlog.get_logger(__name__)

#: ``last_error`` is TEXT; a broker's error text is kept short enough to read.
_ERROR_MAX = 2000


@dataclass(frozen=True, slots=True)
class OutboxMessage:
    """One claimed ``outbox_event`` row; ``payload`` is its JSON text as stored."""

    id: int
    topic: str
    routing_key: str
    payload: str
    created_at: datetime
    attempts: int
    correlation_id: str | None = None

    def body(self) -> dict[str, Any]:
        parsed: dict[str, Any] = orjson.loads(self.payload)
        return parsed


class DeliveryError(MedhubError):
    """A sink could not deliver (broker down, a subscriber failed); the row is retried."""


class Sink(Protocol):
    """Where the relay sends events: RabbitMQ, or the in-process bus."""

    def send(self, message: OutboxMessage) -> None:
        """Deliver ``message``; return only once it is safely delivered, else raise."""

    def idle(self) -> None:
        """Called between polls, so a connection can answer heartbeats."""

    def close(self) -> None: ...


# -- the outbox table, on the caller's session ---------------------------------


def claim(session: Session, *, now: datetime, lease: timedelta, limit: int) -> list[OutboxMessage]:
    """Lease up to ``limit`` due pending rows, oldest first, for one delivery attempt."""
    rows = session.scalars(
        select(OutboxEventRow)
        .where(OutboxEventRow.status == "pending", OutboxEventRow.next_attempt_at <= now)
        .order_by(OutboxEventRow.id)
        .limit(limit)
        .with_for_update(skip_locked=True)
        .execution_options(populate_existing=True)
    ).all()
    claimed = []
    for row in rows:
        row.attempts += 1
        row.next_attempt_at = now + lease
        claimed.append(
            OutboxMessage(
                row.id,
                row.topic,
                row.routing_key,
                row.payload,
                row.created_at,
                row.attempts,
                row.correlation_id,
            )
        )
    session.flush()
    return claimed


def mark_sent(session: Session, ids: Sequence[int], *, now: datetime) -> None:
    if ids:
        session.execute(
            update(OutboxEventRow)
            .where(OutboxEventRow.id.in_(ids), OutboxEventRow.status == "pending")
            .values(status="sent", sent_at=now, last_error=None)
        )


def retry_later(session: Session, ids: Sequence[int], *, error: str, at: datetime) -> None:
    if ids:
        session.execute(
            update(OutboxEventRow)
            .where(OutboxEventRow.id.in_(ids), OutboxEventRow.status == "pending")
            .values(next_attempt_at=at, last_error=error[:_ERROR_MAX])
        )


def purge_sent(session: Session, *, before: datetime) -> int:
    """Delete rows sent before ``before`` (they are receipts, not data); returns how many."""
    result = session.execute(
        delete(OutboxEventRow).where(
            OutboxEventRow.status == "sent", OutboxEventRow.sent_at < before
        )
    )
    return int(result.rowcount)  # type: ignore[attr-defined]


# -- the relay -----------------------------------------------------------------


class OutboxRelay:
    """Moves outbox rows to a :class:`Sink` on a background thread (or step by step in tests).

    ``poll`` is how often it looks for rows when nobody calls :meth:`notify`;
    after a failure it waits ``backoff_min``, doubling up to ``backoff_max``,
    and the failed rows become due again at the same time.
    """

    def __init__(
        self,
        store: SqlResourceStore,
        sink: Sink,
        *,
        batch: int = 100,
        poll: float = 1.0,
        lease: timedelta = timedelta(seconds=60),
        backoff_min: float = 0.5,
        backoff_max: float = 30.0,
        clock: Callable[[], datetime] = utc_now,
    ) -> None:
        self.store = store
        self.sink = sink
        self.batch = batch
        self.poll = poll
        self.lease = lease
        self.backoff_min = backoff_min
        self.backoff_max = backoff_max
        self._clock = clock
        self._failures = 0
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def notify(self) -> None:
        """Something was committed to the outbox: look now rather than at the next poll."""
        self._wake.set()

    def backoff(self) -> float:
        """Seconds to wait after the current run of failures (0 when the last step worked)."""
        if not self._failures:
            return 0.0
        return float(min(self.backoff_max, self.backoff_min * 2 ** (self._failures - 1)))

    def step(self) -> int:
        """Claim one batch and deliver it; returns how many rows were sent.

        Raises :class:`DeliveryError` (after recording it on the unsent rows)
        when the sink failed; rows confirmed before the failure are marked sent.
        """
        with self.store.session() as session:
            messages = claim(session, now=self._clock(), lease=self.lease, limit=self.batch)
        if not messages:
            return 0  # nothing due; a failure streak ends only with a delivery
        sent: list[int] = []
        try:
            for message in messages:
                with (
                    continued(message.correlation_id),
                    span("outbox.relay", **{"messaging.destination": message.topic}),
                ):
                    self.sink.send(message)
                sent.append(message.id)
        except Exception as exc:
            self._failures += 1
            done = set(sent)
            unsent = [m.id for m in messages if m.id not in done]
            retry_at = self._clock() + timedelta(seconds=self.backoff())
            with self.store.session() as session:
                mark_sent(session, sent, now=self._clock())
                retry_later(session, unsent, error=f"{type(exc).__name__}: {exc}", at=retry_at)
            if isinstance(exc, DeliveryError):
                raise
            raise DeliveryError(f"delivering outbox events failed: {exc}") from exc
        with self.store.session() as session:
            mark_sent(session, sent, now=self._clock())
        self._failures = 0
        return len(sent)

    def start(self) -> None:
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="outbox-relay", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        """Finish the current step, then stop and close the sink."""
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None
        self.sink.close()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                if self.step() == self.batch:
                    continue  # more may be waiting
            except DeliveryError as exc:
                log.warning("outbox.delivery_failed", error=str(exc), retry_in=self.backoff())
                self._stop.wait(self.backoff())
                continue
            except MedhubError as exc:  # the database is down: the rows are safe in it
                self._failures += 1
                log.warning("outbox.store_failed", error=str(exc), retry_in=self.backoff())
                self._stop.wait(self.backoff())
                continue
            except Exception:
                self._failures += 1
                log.exception("outbox.relay_step_failed")
                self._stop.wait(self.backoff())
                continue
            try:
                self.sink.idle()
            except Exception as exc:  # a lost idle connection is found again on the next send
                log.info("outbox.sink_idle_failed", error=str(exc))
            self._wake.wait(self.poll)
            self._wake.clear()


# -- the in-process bus --------------------------------------------------------

Subscriber = Callable[[OutboxMessage], None]


def topic_matches(binding: Sequence[str], words: Sequence[str]) -> bool:
    """AMQP 0-9-1 topic matching on words: ``*`` is exactly one word, ``#`` zero or more."""
    if not binding:
        return not words
    head, rest = binding[0], binding[1:]
    if head == "#":
        return any(topic_matches(rest, words[i:]) for i in range(len(words) + 1))
    if not words:
        return False
    return head in ("*", words[0]) and topic_matches(rest, words[1:])


class InProcessBus:
    """The embedded default's broker: callbacks bound with topic patterns, on the relay thread.

    A message is marked sent after every matching callback returned; if one
    raises, the message is retried for all of them (at least once, as with
    RabbitMQ), so callbacks should de-duplicate by ``message.id``.
    """

    def __init__(self) -> None:
        self._subscribers: list[tuple[tuple[str, ...], Subscriber]] = []
        self._lock = threading.Lock()

    def subscribe(self, binding: str, callback: Subscriber) -> None:
        with self._lock:
            self._subscribers.append((tuple(binding.split(".")), callback))

    def send(self, message: OutboxMessage) -> None:
        with self._lock:
            subscribers = list(self._subscribers)
        words = message.routing_key.split(".")
        for binding, callback in subscribers:
            if topic_matches(binding, words):
                callback(message)

    def idle(self) -> None:
        pass

    def close(self) -> None:
        pass
