"""The serial reader: line splitting, ingest with a failing store, and real ports (pty, socket)."""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from medhub.adapters.serial_reader import (
    LineSplitter,
    SerialIngest,
    SerialReader,
    SerialReaderSettings,
    SplitLine,
    pyserial_opener,
)
from medhub.devices.line_parsers import ParserConfig, default_registry
from medhub.devices.masimo import MasimoAscii1Parser
from medhub.devices.samples import Sample
from medhub.errors import InputError, StoreUnavailableError

T0 = datetime(2026, 11, 21, 10, tzinfo=UTC)
FAST = SerialReaderSettings(
    batch_size=4, batch_max_delay=0.05, reconnect_initial=0.02, retry_initial=0.02, retry_max=0.1
)


def masimo_line(second: int, spo2: int = 97, pulse: int = 70) -> bytes:
    return (
        f"11/21/26 10:00:{second:02d} SN=0000123456 SPO2={spo2:03d}% BPM={pulse:03d} "
        f"PI=03.60% SPCO=--.-% SPMET=--.-% DESAT=-- PIDELTA=+-- ALARM=0000 EXC=000800\r\n"
    ).encode()


class RecordingSink:
    """A SampleSink that keeps what it stores; ``fail`` makes the next calls unavailable."""

    def __init__(self, fail: int = 0, error: Exception | None = None) -> None:
        self.batches: list[tuple[list[Sample], datetime]] = []
        self.sent: list[datetime | None] = []
        self.fail = fail
        self.error = error or StoreUnavailableError("database is down")
        self.calls = 0
        self.lock = threading.Lock()

    def store(
        self, samples: Sequence[Sample], *, received_at: datetime, sent_at: datetime | None = None
    ) -> None:
        with self.lock:
            self.calls += 1
            if self.fail:
                self.fail -= 1
                raise self.error
            self.batches.append((list(samples), received_at))
            self.sent.append(sent_at)

    @property
    def samples(self) -> list[Sample]:
        with self.lock:
            return [s for batch, _ in self.batches for s in batch]


def wait_until(condition: Callable[[], bool], what: str, timeout: float = 15.0) -> None:
    """Wait for another thread to get somewhere (synchronisation, not a timing assertion)."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.01)


# --- LineSplitter -------------------------------------------------------------------------


@pytest.mark.parametrize("ending", [b"\r\n", b"\n", b"\r", b"\n\r"])
def test_every_line_ending_ends_a_line(ending: bytes) -> None:
    splitter = LineSplitter()
    assert splitter.feed(b"one" + ending + b"two" + ending + b"thr") == [
        SplitLine(b"one"),
        SplitLine(b"two"),
    ]
    assert splitter.feed(b"ee" + ending) == [SplitLine(b"three")]


def test_an_overlong_line_is_cut_once_and_the_next_line_survives() -> None:
    splitter = LineSplitter(max_line_bytes=8)
    lines = splitter.feed(b"x" * 20)
    lines += splitter.feed(b"y" * 20 + b"\r\nshort\r\n")
    assert lines == [SplitLine(b"x" * 8, True), SplitLine(b"short")]
    assert splitter.feed(b"z" * 9 + b"\n") == [SplitLine(b"z" * 8, True)]


def test_reset_forgets_a_partial_line() -> None:
    splitter = LineSplitter()
    splitter.feed(b"half a li")
    splitter.reset()
    assert splitter.feed(b"ne\nwhole\n") == [SplitLine(b"ne"), SplitLine(b"whole")]


@settings(deadline=None)
@given(st.lists(st.integers(min_value=0, max_value=300), max_size=10))
def test_any_split_of_the_bytes_gives_the_same_lines(cuts: list[int]) -> None:
    stream = b"".join(masimo_line(s) for s in range(3)) + b"\x00\xff garbage\n\r\n"
    positions = sorted({min(c, len(stream)) for c in cuts})
    splitter = LineSplitter()
    lines: list[SplitLine] = []
    start = 0
    for end in [*positions, len(stream)]:
        lines += splitter.feed(stream[start:end])
        start = end
    assert lines == LineSplitter().feed(stream)
    assert len(lines) == 4


# --- SerialIngest -------------------------------------------------------------------------


def ingest(
    sink: RecordingSink, *, max_line_bytes: int = 512, batch_size: int = 32, max_pending: int = 1000
) -> SerialIngest:
    return SerialIngest(
        MasimoAscii1Parser("pox-1"),
        sink,
        max_line_bytes=max_line_bytes,
        batch_size=batch_size,
        max_pending=max_pending,
    )


def test_lines_become_samples_and_bad_lines_are_counted_by_reason() -> None:
    sink = RecordingSink()
    core = ingest(sink)
    core.feed(masimo_line(1) + b"\xff\xfe\x00noise\r\n" + masimo_line(2)[:50] + b"\r\n", T0)
    core.feed(masimo_line(3), T0 + timedelta(seconds=2))
    assert core.flush()
    assert [(s.vital, s.value) for s in sink.samples][:3] == [
        ("oxygen-saturation", 97.0),
        ("pulse-rate", 70.0),
        ("perfusion-index", 3.6),
    ]
    assert [s.device_time.second for s in sink.samples] == [1, 1, 1, 3, 3, 3]
    stats = core.snapshot()
    assert (stats.lines, stats.samples, stats.stored) == (4, 6, 6)
    assert stats.rejected == {"structure:line": 1, "structure:EXC": 1}
    assert sink.batches[0][1] == T0 + timedelta(seconds=2)  # newest arrival in the batch
    assert sink.sent == [datetime(2026, 11, 21, 10, 0, 3, tzinfo=UTC)]  # that line's own time


def test_an_overlong_line_is_rejected_as_too_long() -> None:
    core = ingest(RecordingSink(), max_line_bytes=64)
    core.feed(masimo_line(1), T0)
    assert core.snapshot().rejected == {"too-long:line": 1}


def test_batches_are_small_and_in_order() -> None:
    sink = RecordingSink()
    core = ingest(sink, batch_size=4)
    core.feed(b"".join(masimo_line(s) for s in range(5)), T0)
    assert core.flush()
    assert [len(batch) for batch, _ in sink.batches] == [4, 4, 4, 3]
    assert [s.device_time.second for s in sink.samples] == [s for s in range(5) for _ in range(3)]


def test_an_unavailable_store_keeps_the_samples_for_the_next_attempt() -> None:
    sink = RecordingSink(fail=2)
    core = ingest(sink)
    core.feed(masimo_line(1), T0)
    assert not core.flush()
    core.feed(masimo_line(2), T0)
    assert not core.flush()
    assert core.pending == 6
    assert core.flush()
    assert [s.device_time.second for s in sink.samples] == [1, 1, 1, 2, 2, 2]
    stats = core.snapshot()
    assert (stats.store_failures, stats.dropped, stats.stored) == (2, 0, 6)


def test_pending_samples_are_bounded_and_the_oldest_dropped_are_counted() -> None:
    sink = RecordingSink(fail=1)
    core = ingest(sink, max_pending=4)
    core.feed(masimo_line(1) + masimo_line(2), T0)
    assert not core.flush()
    assert core.flush()
    assert [s.device_time.second for s in sink.samples] == [1, 2, 2, 2]
    assert core.snapshot().dropped == 2


def test_a_store_that_refuses_the_data_drops_the_batch_not_the_reader() -> None:
    sink = RecordingSink(fail=1, error=InputError("unknown device"))
    core = ingest(sink, batch_size=3)
    core.feed(masimo_line(1) + masimo_line(2), T0)
    assert core.flush()
    assert [s.device_time.second for s in sink.samples] == [2, 2, 2]
    assert core.snapshot().dropped == 3


def test_an_unexpected_store_error_is_retried() -> None:
    sink = RecordingSink(fail=1, error=ConnectionResetError("driver"))
    core = ingest(sink)
    core.feed(masimo_line(1), T0)
    assert not core.flush()
    assert core.flush()
    assert len(sink.samples) == 3


def test_a_parser_that_crashes_costs_only_its_line() -> None:
    class Broken:
        def parse(self, line: bytes) -> MasimoAscii1Parser:
            raise ZeroDivisionError(line)

    core = SerialIngest(Broken(), RecordingSink())  # type: ignore[arg-type]
    core.feed(b"a\nb\n", T0)
    assert core.snapshot().rejected == {"parser-error:ZeroDivisionError": 2}


# --- SerialReader on a pty pair: a real serial line ------------------------------------------


class Pty:
    """A pty pair behind a stable symlink, like a udev name for a USB serial adapter."""

    def __init__(self, directory: Path) -> None:
        self.link = directory / "ttyMASIMO"
        self.master = -1
        self.plug()

    def plug(self) -> None:
        self.master, slave = os.openpty()
        temporary = self.link.with_suffix(".new")
        temporary.symlink_to(os.ttyname(slave))
        os.replace(temporary, self.link)
        os.close(slave)

    def unplug(self) -> None:
        os.close(self.master)
        self.master = -1

    def write(self, data: bytes) -> None:
        os.write(self.master, data)

    def close(self) -> None:
        if self.master >= 0:
            self.unplug()


@contextmanager
def running(reader: SerialReader) -> Iterator[SerialReader]:
    reader.start()
    try:
        yield reader
    finally:
        reader.stop()
        assert reader._thread is not None and not reader._thread.is_alive()


@pytest.fixture
def pty(tmp_path: Path) -> Iterator[Pty]:
    pair = Pty(tmp_path)
    yield pair
    pair.close()


def pty_reader(pty: Pty, sink: RecordingSink) -> SerialReader:
    parser = default_registry().create("masimo-ascii1", ParserConfig("pox-1"))
    opener = pyserial_opener(str(pty.link), read_timeout=0.05)
    return SerialReader(opener, parser, sink, name="pty", settings=FAST)


def test_masimo_lines_over_a_pty_reach_the_sink_with_their_values_and_times(pty: Pty) -> None:
    sink = RecordingSink()
    with running(pty_reader(pty, sink)) as reader:
        wait_until(lambda: reader.stats().connects == 1, "the port to open")
        pty.write(masimo_line(1, spo2=98, pulse=61))
        pty.write(b"\x00\xff\xfe line noise \x07\r\n" + masimo_line(2)[:30] + b"\r\n")
        for part in (masimo_line(3, spo2=91)[:17], masimo_line(3, spo2=91)[17:]):
            pty.write(part)
        wait_until(lambda: len(sink.samples) == 6, "six samples")
    samples = sink.samples
    assert [(s.vital, s.value) for s in samples[:2]] == [
        ("oxygen-saturation", 98.0),
        ("pulse-rate", 61.0),
    ]
    assert samples[3].value == 91.0
    assert samples[0].device_time == datetime(2026, 11, 21, 10, 0, 1, tzinfo=UTC)
    assert samples[3].device_time == datetime(2026, 11, 21, 10, 0, 3, tzinfo=UTC)
    assert {s.device_id for s in samples} == {"pox-1"}
    assert sum(reader.stats().rejected.values()) == 2


def test_the_port_disappearing_and_coming_back_is_reconnected(pty: Pty) -> None:
    sink = RecordingSink()
    with running(pty_reader(pty, sink)) as reader:
        wait_until(lambda: reader.stats().connects == 1, "the port to open")
        pty.write(masimo_line(1))
        wait_until(lambda: len(sink.samples) == 3, "the first line")
        pty.unplug()
        wait_until(lambda: reader.stats().disconnects == 1, "the loss to be noticed")
        pty.plug()
        wait_until(lambda: reader.stats().connects == 2, "the port to reopen")
        pty.write(masimo_line(2))
        wait_until(lambda: len(sink.samples) == 6, "the line after reconnecting")
    assert [s.device_time.second for s in sink.samples] == [1, 1, 1, 2, 2, 2]


def test_a_missing_port_is_retried_until_it_appears(tmp_path: Path) -> None:
    sink = RecordingSink()
    opener = pyserial_opener(str(tmp_path / "ttyMASIMO"), read_timeout=0.05)
    parser = MasimoAscii1Parser("pox-1")
    with running(SerialReader(opener, parser, sink, name="late", settings=FAST)) as reader:
        wait_until(lambda: reader.stats().open_failures >= 2, "failed opens")
        pair = Pty(tmp_path)
        try:
            wait_until(lambda: reader.stats().connects == 1, "the port to open")
            pair.write(masimo_line(4))
            wait_until(lambda: len(sink.samples) == 3, "samples")
        finally:
            pair.close()


def test_samples_are_retried_while_the_store_is_down_not_dropped(pty: Pty) -> None:
    sink = RecordingSink(fail=3)
    with running(pty_reader(pty, sink)) as reader:
        wait_until(lambda: reader.stats().connects == 1, "the port to open")
        for second in range(5):
            pty.write(masimo_line(second))
        wait_until(lambda: len(sink.samples) == 15, "every sample, after the store recovers")
        stats = reader.stats()
    assert stats.store_failures >= 3 and stats.dropped == 0
    assert [s.device_time.second for s in sink.samples] == [s for s in range(5) for _ in range(3)]


def test_stop_is_prompt_while_a_read_is_blocked(pty: Pty) -> None:
    reader = pty_reader(pty, RecordingSink())
    with running(reader):
        wait_until(lambda: reader.stats().connects == 1, "the port to open")
    assert reader.stats().disconnects == 0


# --- SerialReader over socket:// (a serial-to-Ethernet converter) ----------------------------


def test_a_socket_port_that_closes_is_reconnected() -> None:
    server = socket.create_server(("127.0.0.1", 0))
    server.settimeout(15)
    port = server.getsockname()[1]
    sink = RecordingSink()
    opener = pyserial_opener(f"socket://127.0.0.1:{port}", read_timeout=0.05)
    reader = SerialReader(opener, MasimoAscii1Parser("pox-9"), sink, name="tcp", settings=FAST)
    try:
        with running(reader):
            # socket:// discards what arrives before open() returns: wait for it.
            first, _ = server.accept()
            with first:
                wait_until(lambda: reader.stats().connects == 1, "the port to open")
                first.sendall(masimo_line(1))
                wait_until(lambda: len(sink.samples) == 3, "the first line")
            second, _ = server.accept()
            with second:
                wait_until(lambda: reader.stats().connects == 2, "the port to reopen")
                second.sendall(masimo_line(2))
                wait_until(lambda: len(sink.samples) == 6, "the line after reconnecting")
    finally:
        server.close()
    assert reader.stats().connects >= 2
    assert [s.device_id for s in sink.samples] == ["pox-9"] * 6


# --- SerialReader with a fake port: the loop itself ------------------------------------------


class FlakyPort:
    """A port that hands out chunks, then fails the way its ``failure`` says."""

    def __init__(self, chunks: list[bytes], failure: Exception) -> None:
        self.chunks = chunks
        self.failure = failure
        self.closed = False

    @property
    def in_waiting(self) -> int:
        return len(self.chunks[0]) if self.chunks else 0

    def read(self, size: int = 1) -> bytes:
        if not self.chunks:
            raise self.failure
        chunk, self.chunks[0] = self.chunks[0][:size], self.chunks[0][size:]
        if not self.chunks[0]:
            self.chunks.pop(0)
        return chunk

    def close(self) -> None:
        self.closed = True


def test_even_an_unexpected_port_error_only_costs_a_reconnect() -> None:
    ports = [
        FlakyPort([masimo_line(1)], RuntimeError("driver bug")),
        FlakyPort([masimo_line(2)], OSError(5, "EIO")),
    ]  # and then the device is gone for good: what was read must still be stored
    opened: list[FlakyPort] = []

    def opener() -> FlakyPort:
        if not ports:
            raise OSError(2, "no such device")
        opened.append(ports.pop(0))
        return opened[-1]

    sink = RecordingSink()
    reader = SerialReader(opener, MasimoAscii1Parser("pox-1"), sink, name="fake", settings=FAST)
    with running(reader):
        wait_until(lambda: reader.stats().open_failures >= 1, "both ports used up")
        wait_until(lambda: len(sink.samples) == 6, "what was read to be stored")
    assert [s.device_time.second for s in sink.samples] == [1, 1, 1, 2, 2, 2]
    assert all(port.closed for port in opened)
    assert reader.stats().disconnects == 2
