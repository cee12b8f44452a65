"""Serial device reader: port -> lines -> parser -> samples -> :class:`SampleSink`, in a thread.

The transport is a thin shell around three pieces, so each is testable alone:

* :class:`LineSplitter` (sans-I/O): bytes in any split -> lines. CR, LF, CRLF
  and LFCR all end a line; empty lines are skipped; a line longer than the limit
  is cut, reported as truncated, and the rest of it up to the next terminator is
  discarded, so a device spewing noise without line ends cannot eat memory.
* :class:`SerialIngest` (sans-I/O but for the sink): lines -> the configured
  :class:`~medhub.devices.line_parsers.LineParser` -> pending samples -> the sink
  in batches. A rejected line is counted by reason (``structure:EXC``: the issue
  code and where) and logged with the line; the reader never stops for one.
  When the sink raises :class:`~medhub.errors.StoreUnavailableError` the batch
  stays pending, in order, and is retried with back-off while reading goes on
  (a serial device has no flow control: a reader that stops reading loses what
  the kernel buffer cannot hold). Pending samples are bounded
  (``max_pending``); beyond it the oldest are dropped, counted and logged as
  an error, because memory is finite and the newest values matter most. A sink
  error that is not transient (a :class:`~medhub.errors.MedhubError` other
  than ``StoreUnavailableError``: sending again will not help) drops that batch
  with an error log; any other exception is treated as transient.
* :class:`SerialReader`: opens the port with pyserial's ``serial_for_url``
  (``/dev/ttyUSB0``, ``socket://host:port``, ``rfc2217://``, ``loop://``), reads
  with a short timeout so :meth:`SerialReader.stop` is prompt, and when the port
  disappears (USB adapter unplugged, socket closed) closes it and reopens it
  with exponential back-off. pyserial is blocking, so the reader runs in its
  own thread. Opening a port flushes its input buffer (pyserial), and
  ``socket://`` drops what arrived before the connection: lines sent while the
  reader was not connected are gone, which is why ``connects`` is counted.

``received_at`` given to the sink is when the newest line of the batch was
read, so no sample in a batch arrived after it, and ``sent_at`` is the device's
clock for that same line when the parser's result has a ``sent_at`` (the
Masimo line's own time: ASCII 1 is real-time output), so ingest can measure
the device clock's offset from one pair of readings.
"""

from __future__ import annotations

import contextlib
import re
import threading
import time
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Final, NamedTuple, Protocol

import serial  # type: ignore[import-untyped]
import structlog

from medhub.devices.line_parsers import LineParser
from medhub.devices.samples import Sample, SampleSink
from medhub.errors import MedhubError, StoreUnavailableError
from medhub.metrics import SAMPLES_INGESTED, count_rejected

_TERMINATOR: Final = re.compile(rb"[\r\n]")


class SplitLine(NamedTuple):
    """One line without its terminator; ``truncated`` if it was longer than the limit."""

    data: bytes
    truncated: bool = False


class LineSplitter:
    """Incremental line splitter (sans-I/O): ``feed(data) -> lines``, for any split of the bytes."""

    def __init__(self, max_line_bytes: int = 512) -> None:
        self.max_line_bytes = max_line_bytes
        self._buffer = bytearray()
        self._discarding = False

    def feed(self, data: bytes) -> list[SplitLine]:
        """The lines completed by ``data``; a partial line waits for the next call."""
        self._buffer += data
        lines: list[SplitLine] = []
        limit = self.max_line_bytes
        while True:
            end = _TERMINATOR.search(self._buffer)
            if end is None:
                if len(self._buffer) > limit:
                    if not self._discarding:
                        lines.append(SplitLine(bytes(self._buffer[:limit]), True))
                        self._discarding = True
                    self._buffer.clear()
                return lines
            line = bytes(self._buffer[: end.start()])
            del self._buffer[: end.end()]
            if self._discarding:
                self._discarding = False  # the tail of a line already reported as truncated
            elif len(line) > limit:
                lines.append(SplitLine(line[:limit], True))
            elif line:
                lines.append(SplitLine(line))

    def reset(self) -> None:
        """Forget a partial line (the port was reopened: its start is gone)."""
        self._buffer.clear()
        self._discarding = False


@dataclass
class ReaderStats:
    """Counters of one reader, for metrics and tests; read them through a snapshot."""

    lines: int = 0
    samples: int = 0
    stored: int = 0
    rejected: Counter[str] = field(default_factory=Counter)
    store_failures: int = 0
    dropped: int = 0
    connects: int = 0
    disconnects: int = 0
    open_failures: int = 0


class SerialIngest:
    """Lines -> parser -> pending samples -> sink batches; no port, no thread, no sleeping."""

    def __init__(
        self,
        parser: LineParser,
        sink: SampleSink,
        *,
        max_line_bytes: int = 512,
        batch_size: int = 32,
        max_pending: int = 100_000,
        logger: structlog.typing.FilteringBoundLogger | None = None,
    ) -> None:
        self.parser = parser
        self.sink = sink
        self.batch_size = batch_size
        self.max_pending = max_pending
        self.splitter = LineSplitter(max_line_bytes)
        self.stats = ReaderStats()
        self.log = logger or structlog.get_logger("medhub.serial")
        self._ingested = SAMPLES_INGESTED.labels("serial")
        # (sample, when its line was read, the device clock when the line was sent)
        self._pending: deque[tuple[Sample, datetime, datetime | None]] = deque()
        self._lock = threading.Lock()

    @property
    def pending(self) -> int:
        """Samples decoded and not yet stored."""
        return len(self._pending)

    def snapshot(self) -> ReaderStats:
        """A copy of the counters, safe to read from another thread."""
        with self._lock:
            copy = ReaderStats(**{k: v for k, v in vars(self.stats).items() if k != "rejected"})
            copy.rejected = Counter(self.stats.rejected)
        return copy

    def feed(self, data: bytes, received_at: datetime) -> None:
        """Split, parse and queue; bad lines are counted and logged, never raised."""
        for line in self.splitter.feed(data):
            self.stats.lines += 1
            if line.truncated:
                self._reject(
                    "too-long:line", f"line longer than {self.splitter.max_line_bytes}", line
                )
                continue
            try:
                parsed = self.parser.parse(line.data)
            except MedhubError as exc:
                issue = exc.issues[0] if exc.issues else None
                where = ".".join(issue.expression) if issue and issue.expression else "line"
                reason = f"{issue.code if issue else 'invalid'}:{where}"
                self._reject(reason, exc.message, line)
                continue
            except Exception as exc:  # a parser bug must not stop the reader
                self._reject(f"parser-error:{type(exc).__name__}", repr(exc), line)
                continue
            sent_at = getattr(parsed, "sent_at", None)
            for sample in parsed.samples:
                self._pending.append((sample, received_at, sent_at))
            self.stats.samples += len(parsed.samples)
        overflow = len(self._pending) - self.max_pending
        if overflow > 0:
            for _ in range(overflow):
                self._pending.popleft()
            self.stats.dropped += overflow
            count_rejected("serial", "overflow", overflow)
            self.log.error("serial.samples_dropped", dropped=overflow, limit=self.max_pending)

    def _reject(self, reason: str, message: str, line: SplitLine) -> None:
        with self._lock:
            self.stats.rejected[reason] += 1
        count_rejected("serial", reason.partition(":")[0])  # the issue code, not where
        self.log.warning("serial.line_rejected", reason=reason, error=message, line=line.data[:200])

    def flush(self) -> bool:
        """Store pending samples in batches, oldest first; False if the sink is unavailable."""
        while self._pending:
            count = min(self.batch_size, len(self._pending))
            batch = [self._pending[i] for i in range(count)]
            samples = [sample for sample, _, _ in batch]
            _, received_at, sent_at = batch[-1]  # the newest line: both clocks of one moment
            try:
                self.sink.store(samples, received_at=received_at, sent_at=sent_at)
            except StoreUnavailableError as exc:
                self.stats.store_failures += 1
                self.log.warning("serial.store_unavailable", error=str(exc), pending=self.pending)
                return False
            except MedhubError as exc:
                self.log.error("serial.batch_refused", error=str(exc), samples=count)
                self.stats.dropped += count
                count_rejected("serial", "store-refused", count)
            except Exception as exc:  # untranslated driver errors: assume transient
                self.stats.store_failures += 1
                self.log.error("serial.store_failed", error=repr(exc), pending=self.pending)
                return False
            else:
                self.stats.stored += count
                self._ingested.inc(count)
            for _ in range(count):
                self._pending.popleft()
        return True


class SerialPort(Protocol):
    """The part of a pyserial port the reader uses (a fake one is easy to write)."""

    @property
    def in_waiting(self) -> int: ...

    def read(self, size: int = 1) -> bytes: ...

    def close(self) -> None: ...


PortOpener = Callable[[], SerialPort]


def pyserial_opener(url: str, *, baudrate: int = 9600, read_timeout: float = 0.25) -> PortOpener:
    """Open ``url`` with ``serial.serial_for_url`` (8N1, no flow control: what monitors use)."""

    def open_port() -> SerialPort:
        port: SerialPort = serial.serial_for_url(url, baudrate=baudrate, timeout=read_timeout)
        return port

    return open_port


@dataclass(frozen=True, slots=True)
class SerialReaderSettings:
    """Tuning of one reader; the defaults suit a 1 Hz bedside device at 9600 baud."""

    max_line_bytes: int = 512
    batch_size: int = 32
    batch_max_delay: float = 1.0
    max_pending: int = 100_000
    reconnect_initial: float = 0.5
    reconnect_max: float = 30.0
    retry_initial: float = 0.5
    retry_max: float = 30.0


#: What reading or opening a port raises when the device is gone.
PORT_ERRORS: Final = (serial.SerialException, OSError, ValueError)


class SerialReader:
    """Runs one serial port in a thread: read, decode, store, reconnect; ``stop()`` ends it."""

    def __init__(
        self,
        open_port: PortOpener,
        parser: LineParser,
        sink: SampleSink,
        *,
        name: str,
        settings: SerialReaderSettings | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.settings = settings or SerialReaderSettings()
        self.name = name
        self.log = structlog.get_logger("medhub.serial").bind(port=name)
        self.ingest = SerialIngest(
            parser,
            sink,
            max_line_bytes=self.settings.max_line_bytes,
            batch_size=self.settings.batch_size,
            max_pending=self.settings.max_pending,
            logger=self.log,
        )
        self._open_port = open_port
        self._clock = clock
        self._monotonic = monotonic
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._port: SerialPort | None = None
        self._retry_delay = self.settings.retry_initial
        self._next_store = 0.0
        self._oldest_pending = 0.0

    def stats(self) -> ReaderStats:
        """A snapshot of the counters."""
        return self.ingest.snapshot()

    def start(self) -> None:
        """Run :meth:`run` in a daemon thread."""
        if self._thread is not None:
            raise RuntimeError("serial reader already started")
        self._thread = threading.Thread(target=self.run, name=f"serial-{self.name}", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        """Ask the loop to end, wake a blocked read, and wait for the thread."""
        self._stop.set()
        port = self._port
        if port is not None and hasattr(port, "cancel_read"):
            with contextlib.suppress(Exception):
                port.cancel_read()
        if self._thread is not None:
            self._thread.join(timeout)

    def run(self) -> None:
        """The loop: open (with back-off), pump until the port is lost or stop, repeat."""
        delay = self.settings.reconnect_initial
        while not self._stop.is_set():
            try:
                port = self._open_port()
            except PORT_ERRORS as exc:
                self.ingest.stats.open_failures += 1
                self.log.warning("serial.open_failed", error=str(exc), retry_in=delay)
                self._maybe_store(self._monotonic(), idle=True)  # the port is down, not the store
                self._stop.wait(delay)
                delay = min(delay * 2, self.settings.reconnect_max)
                continue
            delay = self.settings.reconnect_initial
            self._port = port
            self.ingest.stats.connects += 1
            self.log.info("serial.opened")
            try:
                self._pump(port)
            except PORT_ERRORS as exc:
                self.ingest.stats.disconnects += 1
                self.log.warning("serial.port_lost", error=str(exc), retry_in=delay)
                self._stop.wait(delay)
            except Exception:  # a bug must not end the reader: reopen and go on
                self.ingest.stats.disconnects += 1
                self.log.exception("serial.reader_error", retry_in=delay)
                self._stop.wait(delay)
            finally:
                self._port = None
                self.ingest.splitter.reset()
                with contextlib.suppress(Exception):
                    port.close()
            self._maybe_store(self._monotonic(), idle=True)
        if self.ingest.pending and not self.ingest.flush():
            self.log.error("serial.stopped_with_unstored", samples=self.ingest.pending)
        self.log.info("serial.stopped")

    def _pump(self, port: SerialPort) -> None:
        while not self._stop.is_set():
            data = port.read(max(1, port.in_waiting))
            now = self._monotonic()
            if data:
                if not self.ingest.pending:
                    self._oldest_pending = now
                self.ingest.feed(data, self._clock())
            self._maybe_store(now, idle=not data)

    def _maybe_store(self, now: float, *, idle: bool) -> None:
        """Store when a batch is full, the port went quiet, or the oldest sample waited long."""
        pending = self.ingest.pending
        if not pending or now < self._next_store:
            return
        due = (
            idle
            or pending >= self.settings.batch_size
            or now - self._oldest_pending >= self.settings.batch_max_delay
        )
        if not due:
            return
        if self.ingest.flush():
            self._retry_delay = self.settings.retry_initial
            self._next_store = 0.0
        else:
            self._next_store = now + self._retry_delay
            self._retry_delay = min(self._retry_delay * 2, self.settings.retry_max)
