"""Deliver queued HL7 v2 messages to one partner over MLLP, retrying until an ACK confirms them.

One :class:`MllpSender` per destination (an asyncio task). Its loop:

1. when it has no connection, ask the queue whether a message is due; if one
   is, connect (TLS / mutual TLS optional). A partner that is down costs no
   attempts: the sender backs off between connects and notes the reason on the
   waiting message, so ``medhub hl7 outbound list`` shows why it waits;
2. claim the head of the destination's queue (``medhub.hl7.outbound_queue``);
3. send it in one MLLP frame (HL7 v2.5.1 Appendix C) on the persistent
   connection and wait for one ACK frame, both bounded by the ACK timeout;
4. judge the ACK (``medhub.hl7.outbound_policy.judge_ack``: AA/CA sent, AE/CE
   parked with the ERR text, AR/CR or an ACK that does not echo our MSH-10
   retried) and record it; no ACK in time, or a connection dropped, is
   retried with back-off, and parked after ``max_attempts``.

After a timeout, a dropped connection or an ACK for another message the
connection is closed and opened again: an ACK still on its way would
otherwise be read as the answer to the next message.

The database work runs in a thread (``asyncio.to_thread``) on sessions from
the injected factory (``SqlResourceStore.session``), each call one short
transaction; nothing is held open across the network. Delivery is "at least
once": a message whose outcome could not be recorded is sent again with the
same MSH-10, which the partner's duplicate check recognises.

Each recorded exchange counts in ``medhub_hl7_messages_total{direction="out",
interface=<destination>}`` as ``sent``, ``retry`` or ``parked``, and the time
from writing a message to reading its ACK in ``medhub_hl7_ack_seconds``.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import ssl
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TypeVar

import structlog
from sqlalchemy.orm import Session

from medhub.correlation import continued
from medhub.errors import ConfigurationError, MedhubError
from medhub.hl7.mllp_framing import FramingProblem, MllpDecoder, encode_frame
from medhub.hl7.outbound_policy import AckVerdict, RetryPolicy, backoff_delay, judge_ack
from medhub.hl7.outbound_queue import (
    OutboundMessage,
    claim_next,
    mark_sent,
    next_due,
    note_error,
    park,
    record_failure,
)
from medhub.metrics import HL7_ACK_SECONDS, HL7_MESSAGES
from medhub.tracing import span

log = structlog.get_logger(__name__)

SessionFactory = Callable[[], AbstractContextManager[Session]]
Clock = Callable[[], datetime]
T = TypeVar("T")
READ_CHUNK = 64 * 1024


def utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True, slots=True)
class TlsClientOptions:
    """TLS towards the partner. ``ca_file`` None trusts the system store; ``cert_file`` and
    ``key_file`` present a client certificate (mutual TLS); ``server_hostname`` overrides
    the name checked in the partner's certificate (default: the destination host)."""

    ca_file: str | None = None
    cert_file: str | None = None
    key_file: str | None = None
    server_hostname: str | None = None


@dataclass(frozen=True, slots=True)
class MllpDestination:
    """One HL7 partner: where it listens, how to talk to it, how patiently to retry."""

    name: str
    host: str
    port: int
    tls: TlsClientOptions | None = None
    connect_timeout_seconds: float = 10.0
    ack_timeout_seconds: float = 30.0
    max_attempts: int = 10
    retry_base_seconds: float = 5.0
    retry_max_seconds: float = 600.0
    reconnect_base_seconds: float = 1.0
    reconnect_max_seconds: float = 60.0
    poll_interval_seconds: float = 1.0
    max_frame_bytes: int = 4 * 1024 * 1024

    @property
    def retry_policy(self) -> RetryPolicy:
        return RetryPolicy(
            max_attempts=self.max_attempts,
            base_delay_seconds=self.retry_base_seconds,
            max_delay_seconds=self.retry_max_seconds,
        )

    @property
    def claim_lease(self) -> timedelta:
        """Longer than one exchange can take (write + ACK, each bounded by the ACK timeout)."""
        return timedelta(seconds=2 * self.ack_timeout_seconds + 30)


def client_ssl_context(options: TlsClientOptions) -> ssl.SSLContext:
    """TLS 1.2+ client context that verifies the partner, with an optional client certificate."""
    try:
        context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=options.ca_file)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        if options.cert_file:
            context.load_cert_chain(options.cert_file, options.key_file)
    except (OSError, ssl.SSLError) as exc:
        raise ConfigurationError(f"MLLP client TLS files cannot be loaded: {exc}") from exc
    return context


@dataclass
class _Connection:
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    decoder: MllpDecoder
    ready: list[bytes] = field(default_factory=list)

    @property
    def usable(self) -> bool:
        return not (self.writer.is_closing() or self.reader.at_eof())

    async def read_frame(self) -> bytes:
        while not self.ready:
            data = await self.reader.read(READ_CHUNK)
            if not data:
                raise ConnectionError("the partner closed the connection before a complete ACK")
            for item in self.decoder.feed(data):
                if isinstance(item, bytes):
                    self.ready.append(item)
                elif item.kind == "oversize":
                    raise _OversizeAck(item)
        return self.ready.pop(0)


class _OversizeAck(Exception):
    def __init__(self, problem: FramingProblem) -> None:
        super().__init__(f"the answer is a frame of {problem.size} bytes, too large for an ACK")


class MllpSender:
    """Delivers one destination's queue; ``start()`` runs it as a task, ``close()`` stops it."""

    def __init__(
        self,
        destination: MllpDestination,
        sessions: SessionFactory,
        *,
        clock: Clock = utc_now,
        jitter: Callable[[], float] = random.random,
    ) -> None:
        self.destination = destination
        self._sessions = sessions
        self._clock = clock
        self._jitter = jitter
        self._policy = destination.retry_policy
        self._ssl = client_ssl_context(destination.tls) if destination.tls else None
        self._connection: _Connection | None = None
        self._connect_failures = 0
        self._stopping = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        name = destination.name
        outcomes = ("sent", "retry", "parked")
        self._counted = {s: HL7_MESSAGES.labels("out", name, s) for s in outcomes}
        self._ack_seconds = HL7_ACK_SECONDS.labels("out", name)

    async def start(self) -> None:
        self._stopping.clear()
        self._task = asyncio.create_task(self.run(), name=f"mllp-sender-{self.destination.name}")

    async def close(self, grace_seconds: float | None = None) -> None:
        """Stop after the exchange in flight (up to ``grace_seconds``); close the connection."""
        self._stopping.set()
        task, self._task = self._task, None
        if task is not None:
            grace = self.destination.ack_timeout_seconds * 2 + 5
            done, _ = await asyncio.wait(
                {task}, timeout=grace if grace_seconds is None else grace_seconds
            )
            if not done:
                task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self._drop()

    async def run(self) -> None:
        """Deliver until :meth:`close`; one failing step is logged and never ends the loop."""
        while not self._stopping.is_set():
            try:
                busy = await self.step()
            except asyncio.CancelledError:
                raise
            except MedhubError as exc:  # the database is down: wait, the queue is still there
                log.warning(
                    "mllp_out.store_failed", destination=self.destination.name, error=str(exc)
                )
                busy = False
            except Exception:
                log.exception("mllp_out.step_failed", destination=self.destination.name)
                busy = False
            if not busy:
                await self._pause(self.destination.poll_interval_seconds)
        await self._drop()

    async def step(self) -> bool:
        """One round: connect if needed, deliver the head message. False when there was none."""
        if self._connection is None or not self._connection.usable:
            await self._drop()
            due = await self._db(
                lambda s: next_due(s, destination=self.destination.name, now=self._clock())
            )
            if due is None:
                return False
            if not await self._connect(due):
                return True
        claimed = await self._db(
            lambda s: claim_next(
                s,
                destination=self.destination.name,
                now=self._clock(),
                lease=self.destination.claim_lease,
            )
        )
        if claimed is None:
            return False
        with (
            continued(claimed.correlation_id),  # the logs name the work that queued it
            span("mllp.outbound", **{"medhub.destination": self.destination.name}) as traced,
        ):
            verdict, ack = await self._exchange(claimed)
            traced.set_attribute("hl7.ack_code", verdict.ack_code or "")
            await self._record(claimed, verdict, ack)
        return True

    async def _connect(self, due: OutboundMessage) -> bool:
        dest = self.destination
        hostname = (dest.tls.server_hostname if dest.tls else None) or dest.host
        try:
            reader, writer = await asyncio.wait_for(
                asyncio.open_connection(
                    dest.host,
                    dest.port,
                    ssl=self._ssl,
                    server_hostname=hostname if self._ssl else None,
                    limit=READ_CHUNK,
                ),
                dest.connect_timeout_seconds,
            )
        except (OSError, TimeoutError, ssl.SSLError) as exc:
            self._connect_failures += 1
            reason = f"cannot connect to {dest.host}:{dest.port}: {str(exc) or type(exc).__name__}"
            delay = backoff_delay(
                self._connect_failures,
                base=dest.reconnect_base_seconds,
                cap=dest.reconnect_max_seconds,
                jitter=self._jitter(),
            )
            log.warning(
                "mllp_out.connect_failed", destination=dest.name, error=reason, retry_in=delay
            )
            with contextlib.suppress(MedhubError):
                await self._db(lambda s: note_error(s, due.id, reason=reason))
            await self._pause(delay)
            return False
        self._connect_failures = 0
        self._connection = _Connection(reader, writer, MllpDecoder(dest.max_frame_bytes))
        log.info("mllp_out.connected", destination=dest.name, host=dest.host, port=dest.port)
        return True

    async def _exchange(self, message: OutboundMessage) -> tuple[AckVerdict, bytes | None]:
        """Send one message, read one ACK; failures become a *retry* verdict."""
        connection = self._connection
        if connection is None:  # step() connects first; kept for a direct caller
            return AckVerdict("retry", "", "no connection", echoes=False), None
        timeout = self.destination.ack_timeout_seconds
        if connection.ready:
            log.warning(
                "mllp_out.unsolicited_frames",
                destination=self.destination.name,
                frames=len(connection.ready),
            )
            connection.ready.clear()
        try:
            sent_at = time.perf_counter()
            connection.writer.write(encode_frame(message.message))
            await asyncio.wait_for(connection.writer.drain(), timeout)
            ack = await asyncio.wait_for(connection.read_frame(), timeout)
            self._ack_seconds.observe(time.perf_counter() - sent_at)
        except TimeoutError:
            await self._drop()
            return AckVerdict("retry", "", f"no ACK within {timeout:g} s", echoes=False), None
        except (OSError, ssl.SSLError, _OversizeAck) as exc:
            await self._drop()
            return AckVerdict("retry", "", f"connection lost: {exc}", echoes=False), None
        verdict = judge_ack(ack, message.control_id)
        if not verdict.echoes:
            await self._drop()  # out of step with the partner: start afresh
        return verdict, ack

    async def _record(
        self, message: OutboundMessage, verdict: AckVerdict, ack: bytes | None
    ) -> None:
        name = self.destination.name

        def write(session: Session) -> str:
            now = self._clock()
            if verdict.outcome == "sent":
                mark_sent(session, message.id, now=now, ack_code=verdict.ack_code, ack=ack or b"")
                return "sent"
            if verdict.outcome == "park":
                park(session, message.id, reason=verdict.reason, ack_code=verdict.ack_code, ack=ack)
                return "parked"
            return record_failure(
                session,
                message.id,
                reason=verdict.reason,
                now=now,
                policy=self._policy,
                jitter=self._jitter(),
                ack_code=verdict.ack_code or None,
                ack=ack,
            )

        try:
            status = await self._db(write)
        except MedhubError as exc:
            # Left pending under its lease: it is sent again (same MSH-10) when the lease ends.
            log.error(
                "mllp_out.record_failed",
                destination=name,
                id=message.id,
                control_id=message.control_id,
                outcome=verdict.outcome,
                error=str(exc),
            )
            return
        outcome = status if status in ("sent", "parked") else "retry"
        self._counted[outcome].inc()
        event = f"mllp_out.{outcome}"
        log.info(
            event,
            destination=name,
            id=message.id,
            control_id=message.control_id,
            attempt=message.attempts,
            ack_code=verdict.ack_code,
            reason=verdict.reason or None,
        )

    async def _db(self, work: Callable[[Session], T]) -> T:
        def run() -> T:
            with self._sessions() as session:
                return work(session)

        return await asyncio.to_thread(run)

    async def _pause(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stopping.wait(), seconds)

    async def _drop(self) -> None:
        connection, self._connection = self._connection, None
        if connection is None:
            return
        connection.writer.close()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(connection.writer.wait_closed(), 2)
