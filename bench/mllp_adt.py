"""End-to-end ADT^A01 ingest: ``medhub serve`` in a subprocess, messages over MLLP, ACK latency.

For each back-end (SQLite file; PostgreSQL on a fresh schema and MariaDB on a
fresh database when reachable) the script starts ``python -m medhub.cli serve``
on free ports with ``MEDHUB_LOG_LEVEL=WARNING``, waits for ``GET /health`` to
answer 200, sends a short warm-up, then:

* N ADT^A01 messages on 1 MLLP connection (send, wait for the ACK, repeat);
* N ADT^A01 messages on 8 concurrent connections (8 threads, N/8 each).

A phase stops early after ``--max-seconds`` (15 s); the table shows the count
actually sent.

Every message has its own MSH-10 and PID-3, so each creates one Patient (and,
since ADT maps PV1 too, an Encounter; the PV1 Practitioner and Location are the
same in every message, so they are created once and then found). Each
ACK must contain ``MSA|AA``; afterwards ``GET /fhir/Patient?_count=0`` must
report every Patient and ``GET /fhir/Patient?identifier=<system>|<mrn>`` must
find one of each phase exactly once. Reported: messages/s (wall clock of the
phase), ACK latency p50/p99/max (send to ACK, client side) and the p50 of the
first and last 10% of the phase (does ingest slow down as the tables grow?).
The server is then stopped with SIGTERM (SIGKILL after 20 s) and its database
removed.

On PostgreSQL a short extra phase runs first on the tables as migrated (no
planner statistics: this server has autovacuum off), then the script runs
``ANALYZE`` on medhub's tables, as autovacuum would, before the main phases.

Usage: python bench/mllp_adt.py [--quick] [--messages N] [--backends sqlite,postgres,mariadb]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from _common import (
    MYSQL_URL,
    PATIENT_SYSTEM,
    POSTGRES_URL,
    adt_a01,
    analyze,
    free_port,
    fresh_mariadb,
    fresh_postgres,
    percentile,
    print_table,
    reachable,
    server_setting,
)

from medhub.adapters.mllp_client import MllpClient

CONNECTIONS = 8


class Server:
    """One ``medhub serve`` process on free ports."""

    def __init__(self, database_url: str, workdir: Path) -> None:
        self.database_url = database_url
        self.workdir = workdir
        self.http_port = free_port()
        self.mllp_port = free_port()
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 60.0) -> float:
        """Start and wait until /health is 200; returns the seconds that took."""
        env = {
            **os.environ,
            "MEDHUB_DATABASE_URL": self.database_url,
            "MEDHUB_HTTP_PORT": str(self.http_port),
            "MEDHUB_MLLP_PORT": str(self.mllp_port),
            "MEDHUB_HTTP__HOST": "127.0.0.1",
            "MEDHUB_MLLP__HOST": "127.0.0.1",
            "MEDHUB_LOG_LEVEL": "WARNING",
        }
        started = time.perf_counter()
        with (self.workdir / "server.log").open("ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "medhub.cli", "serve"],
                env=env,
                cwd=self.workdir,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        deadline = started + timeout
        while time.perf_counter() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"medhub serve exited early:\n{self.log()}")
            with contextlib.suppress(OSError):
                if self.get("/health")[0] == 200:
                    return time.perf_counter() - started
            time.sleep(0.1)
        raise RuntimeError(f"medhub serve did not become healthy:\n{self.log()}")

    def get(self, path: str) -> tuple[int, Any]:
        url = f"http://127.0.0.1:{self.http_port}{path}"
        try:
            with urllib.request.urlopen(url, timeout=30) as response:
                return response.status, json.loads(response.read())
        except urllib.error.HTTPError as error:
            return error.code, json.loads(error.read() or b"null")

    def log(self) -> str:
        path = self.workdir / "server.log"
        return path.read_text(errors="replace")[-3000:] if path.exists() else ""

    def stop(self) -> None:
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None


@dataclass
class Phase:
    name: str
    messages: int = 0
    seconds: float = 0.0
    latencies: list[tuple[float, float]] = field(default_factory=list)  # (sent at, seconds)
    not_aa: list[str] = field(default_factory=list)
    sample_mrns: list[str] = field(default_factory=list)


Outgoing = tuple[str, str, bytes]  # control id, MRN, ER7 bytes


def send_all(
    port: int, messages: list[Outgoing], deadline: float, phase: Phase, lock: threading.Lock
) -> list[str]:
    """Send on one connection, one at a time, until done or past ``deadline``.

    Records each ACK latency and any ACK that is not AA; returns the MRNs sent.
    """
    latencies: list[tuple[float, float]] = []
    bad: list[str] = []
    sent: list[str] = []
    with MllpClient("127.0.0.1", port, timeout=60) as client:
        for control_id, mrn, message in messages:
            start = time.perf_counter()
            if start > deadline:
                break
            ack = client.send(message)
            latencies.append((start, time.perf_counter() - start))
            sent.append(mrn)
            if b"MSA|AA" not in ack:
                bad.append(f"{control_id}: {ack[:200]!r}")
    with lock:
        phase.latencies.extend(latencies)
        phase.not_aa.extend(bad)
    return sent


def run_phase(
    server: Server, name: str, prefix: str, count: int, connections: int, max_seconds: float
) -> Phase:
    """Send ``count`` messages over ``connections`` connections (stopping after ``max_seconds``)."""
    phase = Phase(name)
    per_connection: list[list[Outgoing]] = [[] for _ in range(connections)]
    for i in range(count):
        control_id, mrn = f"{prefix}-{i}", f"{prefix}{i:07d}"
        per_connection[i % connections].append((control_id, mrn, adt_a01(control_id, mrn).encode()))
    lock = threading.Lock()
    errors: list[BaseException] = []
    sent: list[list[str]] = [[] for _ in range(connections)]

    def worker(index: int, deadline: float) -> None:
        try:
            sent[index] = send_all(server.mllp_port, per_connection[index], deadline, phase, lock)
        except BaseException as exc:  # reported after join, not lost in the thread
            errors.append(exc)

    start = time.perf_counter()
    threads = [
        threading.Thread(target=worker, args=(i, start + max_seconds)) for i in range(connections)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    phase.seconds = time.perf_counter() - start
    if errors:
        raise RuntimeError(f"{name}: {errors[0]!r}\n{server.log()}") from errors[0]
    phase.messages = sum(len(s) for s in sent)
    phase.sample_mrns = [s for s in (sent[0][:1] + sent[-1][-1:]) if s]
    return phase


def verify(server: Server, expected: int, phases: list[Phase]) -> str:
    """Check the Patients are all searchable; returns a one-line summary."""
    status, bundle = server.get("/fhir/Patient?_count=0")
    if status != 200 or bundle.get("total") != expected:
        raise AssertionError(f"_count=0: HTTP {status}, total {bundle.get('total')} != {expected}")
    for phase in phases:
        for mrn in phase.sample_mrns:
            query = urllib.parse.urlencode({"identifier": f"{PATIENT_SYSTEM}|{mrn}"})
            status, bundle = server.get(f"/fhir/Patient?{query}")
            if status != 200 or bundle.get("total") != 1:
                raise AssertionError(
                    f"identifier {mrn}: HTTP {status}, total {bundle.get('total')}"
                )
    samples = sum(len(p.sample_mrns) for p in phases)
    return f"Patient?_count=0 total={expected} (as expected); {samples} identifier searches found 1"


def bench_backend(
    backend: str, database_url: str, workdir: Path, count: int, cap: float
) -> tuple[list[tuple[object, ...]], str]:
    server = Server(database_url, workdir)
    notes: list[str] = []
    phases: list[Phase] = []
    try:
        startup = server.start()
        run = uuid.uuid4().hex[:6].upper()
        warm = run_phase(server, "warm-up", f"W{run}", 20, 1, cap)
        if backend == "postgres":
            # A fresh schema has no planner statistics until autovacuum analyses it (never,
            # on a server with autovacuum off): show that case on a short run, then ANALYZE.
            setting = server_setting(database_url, "autovacuum")
            phases.append(
                run_phase(server, "1 connection, no statistics", f"N{run}", min(count, 200), 1, cap)
            )
            start = time.perf_counter()
            analyze(database_url)
            notes.append(
                f"autovacuum={setting}; ANALYZE of medhub's tables after "
                f"{warm.messages + phases[0].messages} Patients "
                f"({time.perf_counter() - start:.2f} s); later phases use those statistics"
            )
        phases.append(run_phase(server, "1 connection", f"S{run}", count, 1, cap))
        phases.append(
            run_phase(server, f"{CONNECTIONS} connections", f"C{run}", count, CONNECTIONS, cap)
        )
        bad = [line for p in (warm, *phases) for line in p.not_aa]
        if bad:
            raise AssertionError(f"{len(bad)} ACKs were not AA, e.g. {bad[0]}\n{server.log()}")
        checked = verify(server, warm.messages + sum(p.messages for p in phases), phases)
    finally:
        server.stop()
    rows: list[tuple[object, ...]] = []
    for phase in phases:
        timeline = [latency for _, latency in sorted(phase.latencies)]  # in send order
        ordered = sorted(timeline)
        tenth = max(1, len(timeline) // 10)
        first = sorted(timeline[:tenth])
        last = sorted(timeline[-tenth:])
        rows.append(
            (
                backend,
                phase.name,
                phase.messages,
                phase.seconds,
                phase.messages / phase.seconds,
                percentile(ordered, 0.5) * 1e3,
                percentile(ordered, 0.99) * 1e3,
                ordered[-1] * 1e3,
                f"{percentile(first, 0.5) * 1e3:.1f} / {percentile(last, 0.5) * 1e3:.1f}",
            )
        )
    summary = f"{backend}: healthy after {startup:.1f} s; all ACKs MSA|AA; {checked}"
    return rows, "; ".join([summary, *notes])


def main() -> int:
    args = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    args.add_argument("--quick", action="store_true", help="200 messages per phase")
    args.add_argument("--messages", type=int, default=None, help="per phase (default 1000)")
    args.add_argument("--backends", default="sqlite,postgres,mariadb")
    args.add_argument(
        "--max-seconds",
        type=float,
        default=15.0,
        help="stop a phase after this long (keeps the script under 3 minutes on a slow box)",
    )
    options = args.parse_args()
    count = options.messages or (200 if options.quick else 1000)
    backends = [b.strip() for b in options.backends.split(",") if b.strip()]

    rows: list[tuple[object, ...]] = []
    notes: list[str] = []
    for backend in backends:
        workdir = Path(tempfile.mkdtemp(prefix="medhub-bench-mllp-"))
        try:
            fresh: Callable[[], AbstractContextManager[str]]
            if backend == "sqlite":
                fresh = _sqlite_url(workdir)
            else:
                admin_url, fresh = {
                    "postgres": (POSTGRES_URL, fresh_postgres),
                    "mariadb": (MYSQL_URL, fresh_mariadb),
                }[backend]
                reason = reachable(admin_url)
                if reason is not None:
                    notes.append(f"{backend}: skipped, {reason}")
                    continue
            with fresh() as url:
                backend_rows, note = bench_backend(
                    backend, url, workdir, count, options.max_seconds
                )
            rows += backend_rows
            notes.append(note)
        finally:
            shutil.rmtree(workdir, ignore_errors=True)

    print(
        f"# mllp_adt: ADT^A01 over MLLP to `medhub serve` (one process), {count} messages per "
        f"phase, client threads in this process; latency = send to ACK received"
    )
    print_table(
        [
            "backend",
            "clients",
            "msgs",
            "seconds",
            "msgs/s",
            "p50 ms",
            "p99 ms",
            "max ms",
            "p50 first/last 10% ms",
        ],
        rows,
    )
    for note in notes:
        print(f"# {note}")
    return 0


def _sqlite_url(workdir: Path) -> Callable[[], AbstractContextManager[str]]:
    @contextlib.contextmanager
    def url() -> Iterator[str]:
        yield f"sqlite:///{workdir / 'm.db'}"

    return url


if __name__ == "__main__":
    sys.exit(main())
