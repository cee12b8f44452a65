"""Store-and-forward for edge boxes: samples wait in a local SQLite spool while the store is down.

:class:`SpoolingWriter` wraps the sample store. A batch the store takes is
written straight through; a batch it refuses (:class:`StoreUnavailableError`)
is appended to the spool, durably (``synchronous=FULL``), and the call
returns so the transport can acknowledge: the samples are safe on this box's
disk. While anything waits in the spool, new batches queue behind it, so the
central store receives batches in the order they arrived. A forwarder thread
sends the oldest spooled batch, deletes it once the store has taken it, and
backs off while the store stays down.

Nothing is lost: a batch leaves the spool only after the store committed it.
Nothing is doubled: if the box dies between the store's commit and the
spool's delete, the batch is sent again and the store's idempotent write
(keyed on device, vital, channel and device time) ignores it.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Protocol

import orjson
import structlog

from medhub.errors import StoreUnavailableError
from medhub.timeseries.records import SampleRecord
from medhub.timeseries.sample_store import from_micros, to_micros

log = structlog.get_logger(__name__)


class _Store(Protocol):
    """What the spool forwards to (the sample store's ``write``)."""

    def write(self, records: Sequence[SampleRecord]) -> int: ...


def _encode(records: Sequence[SampleRecord]) -> bytes:
    return orjson.dumps(
        [
            [
                r.device_id,
                r.vital,
                r.channel,
                to_micros(r.device_time),
                to_micros(r.corrected_time),
                to_micros(r.received_at),
                r.value,
                r.unit,
                r.patient_id,
                r.mdc_code,
            ]
            for r in records
        ]
    )


def _decode(blob: bytes) -> list[SampleRecord]:
    return [
        SampleRecord(
            row[0],
            row[1],
            row[2],
            from_micros(row[3]),
            from_micros(row[4]),
            from_micros(row[5]),
            row[6],
            row[7],
            row[8],
            row[9],
        )
        for row in orjson.loads(blob)
    ]


class SpoolingWriter:
    """A sample writer that never refuses while the local disk works."""

    def __init__(
        self,
        store: _Store,
        spool_path: Path,
        *,
        retry_initial_seconds: float = 0.5,
        retry_max_seconds: float = 30.0,
    ) -> None:
        self._store = store
        spool_path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(spool_path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS spooled_batch (seq INTEGER PRIMARY KEY AUTOINCREMENT, "
            "spooled_at TEXT NOT NULL, samples INTEGER NOT NULL, body BLOB NOT NULL)"
        )
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._retry_initial = retry_initial_seconds
        self._retry_max = retry_max_seconds
        self._pending = self._count() > 0
        self._thread: threading.Thread | None = None

    # -- the writer ---------------------------------------------------------------

    def write(self, records: Sequence[SampleRecord]) -> int:
        """Store the batch, or spool it; returns how many samples the store took as new now."""
        if not records:
            return 0
        with self._lock:
            pending = self._pending
        if not pending:
            # Not under the lock: several transport threads may write at once.
            try:
                return int(self._store.write(records))
            except StoreUnavailableError as exc:
                log.warning("samples.spooling", reason=exc.message, samples=len(records))
        with self._lock:
            self._append(records)
            self._pending = True
        self._wake.set()
        return 0

    @property
    def backlog(self) -> tuple[int, int]:
        """(batches, samples) waiting in the spool."""
        with self._lock:
            row = self._db.execute(
                "SELECT count(*), coalesce(sum(samples), 0) FROM spooled_batch"
            ).fetchone()
        batches, samples = row
        return int(batches), int(samples)

    # -- the forwarder --------------------------------------------------------------

    def start(self) -> None:
        """Start the forwarder thread (spooled batches from an earlier run are sent too)."""
        self._stop.clear()
        self._thread = threading.Thread(target=self._forward_loop, name="sample-spool", daemon=True)
        self._thread.start()
        self._wake.set()

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def close(self) -> None:
        self.stop()
        self._db.close()

    def forward_once(self) -> bool:
        """Send the oldest spooled batch: True if sent, False if none or the store failed."""
        with self._lock:
            row = self._db.execute(
                "SELECT seq, body FROM spooled_batch ORDER BY seq LIMIT 1"
            ).fetchone()
            if row is None:
                self._pending = False  # writers hold this lock to spool, so none is mid-append
                return False
        seq, body = row
        try:
            self._store.write(_decode(body))
        except StoreUnavailableError as exc:
            log.info("samples.spool_waiting", reason=exc.message)
            return False
        with self._lock:
            self._db.execute("DELETE FROM spooled_batch WHERE seq = ?", (seq,))
        return True

    def _forward_loop(self) -> None:
        delay = self._retry_initial
        while not self._stop.is_set():
            if not self._pending:
                self._wake.wait(1.0)
                self._wake.clear()
                continue
            if self.forward_once():
                delay = self._retry_initial
                continue
            if not self._pending:
                continue
            self._stop.wait(delay)
            delay = min(delay * 2, self._retry_max)

    # -- internals ------------------------------------------------------------------

    def _append(self, records: Sequence[SampleRecord]) -> None:
        self._db.execute(
            "INSERT INTO spooled_batch (spooled_at, samples, body) VALUES (?, ?, ?)",
            (datetime.now().astimezone().isoformat(), len(records), _encode(records)),
        )

    def _count(self) -> int:
        return int(self._db.execute("SELECT count(*) FROM spooled_batch").fetchone()[0])
