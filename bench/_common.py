"""Helpers shared by the benchmark scripts in this directory (not a benchmark itself).

The scripts are run as ``python bench/<name>.py`` so this directory is on
``sys.path`` and they import this module as ``_common``.
"""

from __future__ import annotations

import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from medhub.migrations import metadata

POSTGRES_URL = os.environ.get(
    "MEDHUB_BENCH_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)
MYSQL_URL = os.environ.get("MEDHUB_BENCH_MYSQL_URL", "mysql+pymysql://root@127.0.0.1:3306/test")
#: The system pid_to_patient derives from PID-3.4 ``HOSP&1.2.840.114350&ISO``.
PATIENT_SYSTEM = "urn:oid:1.2.840.114350"


def adt_a01(control_id: str, mrn: str) -> str:
    """An ADT^A01 (v2.5.1) with a realistic PID; ``mrn`` is PID-3.1, ``control_id`` MSH-10."""
    return (
        "\r".join(
            [
                # MSH-15/16 empty: original acknowledgment mode, so the ACK is MSA|AA (not CA).
                f"MSH|^~\\&|EPIC|HOSP|MEDHUB|ICU|20240101120000||ADT^A01^ADT_A01|{control_id}|P|2.5.1"
                "||||||UNICODE UTF-8",
                "EVN|A01|20240101120000",
                f"PID|1||{mrn}^^^HOSP&1.2.840.114350&ISO^MR~{mrn}-SSN^^^USSSA^SS||"
                "DOE^JANE^Q^^DR^^L~SMITH^JANE^^^^^M||19700517|F|||"
                "12 ELM ST^APT 4^SPRINGFIELD^IL^62701^USA^H||^PRN^PH^^^217^5551234~"
                "^NET^Internet^jane@example.org|^WPN^PH^^^217^5559876||M",
                "PV1|1|I|ICU^101^A^HOSP||||1234^WELBY^MARCUS^^^DR|||MED",
            ]
        )
        + "\r"
    )


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def reachable(url: str) -> str | None:
    """None when the server answers ``SELECT 1``, else the reason it does not."""
    try:
        engine = create_engine(url, connect_args=_connect_timeout(url))
        with engine.connect() as connection:
            connection.execute(text("SELECT 1"))
        engine.dispose()
    except Exception as exc:  # any driver error means "not available here"
        return f"{type(exc).__name__}: {str(exc).splitlines()[0][:120]}"
    return None


def _connect_timeout(url: str) -> dict[str, int]:
    return {"connect_timeout": 3} if make_url(url).get_backend_name() != "sqlite" else {}


@contextmanager
def fresh_postgres() -> Iterator[str]:
    """A PostgreSQL URL whose search_path is a new schema, dropped on exit (as tests do)."""
    schema = f"medhub_bench_{uuid.uuid4().hex[:10]}"
    admin = create_engine(POSTGRES_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'CREATE SCHEMA "{schema}"'))
    url = make_url(POSTGRES_URL).update_query_dict({"options": f"-csearch_path={schema}"})
    try:
        yield url.render_as_string(hide_password=False)
    finally:
        with admin.connect() as connection:
            connection.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


@contextmanager
def fresh_mariadb() -> Iterator[str]:
    """A MariaDB URL on a new database, dropped on exit (as tests do)."""
    database = f"medhub_bench_{uuid.uuid4().hex[:10]}"
    admin = create_engine(MYSQL_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f"CREATE DATABASE `{database}` CHARACTER SET utf8mb4"))
    url = make_url(MYSQL_URL).set(database=database)
    try:
        yield url.render_as_string(hide_password=False)
    finally:
        with admin.connect() as connection:
            connection.execute(text(f"DROP DATABASE IF EXISTS `{database}`"))
        admin.dispose()


def analyze(url: str) -> str:
    """Collect planner statistics on medhub's tables (what autovacuum would do).

    Returns the statement run. PostgreSQL plans the search subqueries badly on
    tables that were never analysed; this server runs with autovacuum off, so
    nothing else would collect them.
    """
    tables = [table.name for table in metadata.sorted_tables]
    backend = make_url(url).get_backend_name()
    if backend == "sqlite":
        statement = "ANALYZE"
    elif backend == "postgresql":
        # VACUUM too, as autovacuum does for insert-only tables (PostgreSQL 13+): it sets
        # the visibility map that index-only scans of the search indexes rely on.
        statement = "VACUUM ANALYZE " + ", ".join(tables)
    else:
        statement = "ANALYZE TABLE " + ", ".join(f"`{t}`" for t in tables)
    engine = create_engine(url, isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as connection:
            result = connection.execute(text(statement))
            if result.returns_rows:
                result.fetchall()
    finally:
        engine.dispose()
    return statement


def server_setting(url: str, name: str) -> str:
    """``SHOW <name>`` on PostgreSQL (e.g. autovacuum), for the notes under a table."""
    engine = create_engine(url)
    try:
        with engine.connect() as connection:
            return str(connection.execute(text(f"SHOW {name}")).scalar())
    finally:
        engine.dispose()


def timed_rate(
    operation: Callable[[int], None], seconds: float, *, limit: int | None = None
) -> tuple[int, float]:
    """Call ``operation(i)`` for i = 0, 1, ... until ``seconds`` pass (or ``limit`` calls).

    Returns (calls, elapsed seconds). The clock is read after every call, which
    costs ~0.1 us: negligible for operations that take tens of microseconds or more.
    """
    start = time.perf_counter()
    deadline = start + seconds
    calls = 0
    now = start
    while now < deadline and (limit is None or calls < limit):
        operation(calls)
        calls += 1
        now = time.perf_counter()
    return calls, now - start


def percentile(sorted_values: Sequence[float], fraction: float) -> float:
    """Nearest-rank percentile of an already sorted list."""
    if not sorted_values:
        return float("nan")
    rank = max(1, min(len(sorted_values), round(fraction * len(sorted_values) + 0.5)))
    return sorted_values[rank - 1]


def print_table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> None:
    """A GitHub-flavoured Markdown table, so the output can be pasted into RESULTS.md."""
    cells = [[_cell(v) for v in row] for row in rows]
    numeric = [
        all(isinstance(row[i], int | float) or row[i] == "-" for row in rows)
        for i in range(len(headers))
    ]
    widths = [max(len(h), *(len(r[i]) for r in cells)) for i, h in enumerate(headers)]
    print("| " + " | ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)) + " |")
    print(
        "|"
        + "|".join(
            ("-" * (w + 1) + ":") if n else "-" * (w + 2)
            for w, n in zip(widths, numeric, strict=True)
        )
        + "|"
    )
    for row in cells:
        padded = [
            v.rjust(w) if n else v.ljust(w) for v, w, n in zip(row, widths, numeric, strict=True)
        ]
        print("| " + " | ".join(padded) + " |")


def _cell(value: object) -> str:
    if isinstance(value, float):
        if value != value:  # NaN
            return "-"
        if value >= 100:
            return f"{value:,.0f}"
        if value >= 10:
            return f"{value:.1f}"
        return f"{value:.2f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


#: The servers the benchmarks start sign tokens with this; the client sends an admin's.
BENCH_SECRET = "medhub-benchmark-signing-secret-not-for-production"
_TOKEN: list[str] = []


def bench_token() -> str:
    """An admin access token for the benchmark servers (one per process, valid 12 h)."""
    if not _TOKEN:
        from datetime import UTC, datetime, timedelta

        from medhub.api.permissions import Principal
        from medhub.api.tokens import issue_access_token

        principal = Principal(subject="bench", role="admin", kind="token")
        _TOKEN.append(
            issue_access_token(
                principal,
                secret=BENCH_SECRET,
                now=datetime.now(UTC),
                ttl=timedelta(hours=12),
            )
        )
    return _TOKEN[0]


class MedhubServer:
    """One ``python -m medhub.cli serve`` subprocess on free ports (HTTP and MLLP).

    The FHIR benchmarks measure what a client sees over HTTP, so they run the real
    server (uvicorn, the composition root, the SQL pool) rather than a TestClient.
    """

    def __init__(
        self,
        database_url: str,
        workdir: Path,
        *,
        roles: Sequence[str] = (),
        env: dict[str, str] | None = None,
        mllp_port: int | None = None,
    ) -> None:
        self.database_url = database_url
        self.workdir = workdir
        self.roles = list(roles)
        self.env = dict(env or {})
        self.http_port = free_port()
        self.mllp_port = mllp_port or free_port()
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 60.0) -> float:
        """Start and wait until ``GET /ready`` is 200; returns the seconds that took."""
        env = {
            **os.environ,
            "MEDHUB_DATABASE_URL": self.database_url,
            "MEDHUB_HTTP_PORT": str(self.http_port),
            "MEDHUB_MLLP_PORT": str(self.mllp_port),
            "MEDHUB_HTTP__HOST": "127.0.0.1",
            "MEDHUB_MLLP__HOST": "127.0.0.1",
            "MEDHUB_LOG_LEVEL": "WARNING",
            "MEDHUB_JWT_SECRET": BENCH_SECRET,
            # A benchmark is one client sending as fast as it can: no throttling.
            "MEDHUB_AUTH__RATE_LIMIT_PER_MINUTE": "100000000",
            "MEDHUB_AUTH__RATE_LIMIT_BURST": "1000000",
            **self.env,
        }
        command = [sys.executable, "-m", "medhub.cli", "serve"]
        for role in self.roles:
            command += ["--role", role]
        self.workdir.mkdir(parents=True, exist_ok=True)
        started = time.perf_counter()
        with (self.workdir / "server.log").open("ab") as log:
            self.process = subprocess.Popen(
                command,
                env=env,
                cwd=self.workdir,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        while time.perf_counter() < started + timeout:
            if self.process.poll() is not None:
                raise RuntimeError(f"medhub serve exited early:\n{self.log()}")
            try:
                with FhirConnection(self.http_port) as http:
                    if http.request("GET", "/ready")[0] == 200:
                        return time.perf_counter() - started
            except OSError:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"medhub serve did not become healthy:\n{self.log()}")

    def log(self) -> str:
        path = self.workdir / "server.log"
        return path.read_text(errors="replace")[-3000:] if path.exists() else ""

    def stop(self) -> None:
        """SIGTERM, then SIGKILL after 20 s."""
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


class FhirConnection:
    """One keep-alive HTTP/1.1 connection to medhub (what a FHIR client library holds).

    ``http.client`` rather than urllib: urllib opens a new TCP connection per
    request, which would add a connect to every latency measured.
    """

    def __init__(self, port: int, timeout: float = 120.0) -> None:
        self.connection = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)

    def request(self, method: str, path: str, body: bytes | None = None) -> tuple[int, bytes]:
        headers = {"Accept": "application/fhir+json", "Authorization": f"Bearer {bench_token()}"}
        if body is not None:
            headers["Content-Type"] = "application/fhir+json"
        self.connection.request(method, path, body=body, headers=headers)
        response = self.connection.getresponse()
        return response.status, response.read()

    def json(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        data = None if body is None else json.dumps(body).encode()
        status, raw = self.request(method, path, data)
        return status, json.loads(raw) if raw else None

    def close(self) -> None:
        self.connection.close()

    def __enter__(self) -> FhirConnection:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()


def database_urls(backends: Sequence[str], workdir: Path) -> Iterator[tuple[str, str | None, str]]:
    """(backend, URL or None, note) for each requested back-end, on a fresh database.

    SQLite is a file in ``workdir``; PostgreSQL a fresh schema and MariaDB a fresh
    database, both dropped when the caller moves on to the next back-end. An
    unreachable server yields ``None`` and the reason.
    """
    for backend in backends:
        if backend == "sqlite":
            yield backend, f"sqlite:///{workdir / f'{uuid.uuid4().hex[:8]}.db'}", ""
            continue
        admin_url, fresh = {
            "postgres": (POSTGRES_URL, fresh_postgres),
            "mariadb": (MYSQL_URL, fresh_mariadb),
        }[backend]
        reason = reachable(admin_url)
        if reason is not None:
            yield backend, None, f"{backend}: skipped, {reason}"
            continue
        with fresh() as url:
            yield backend, url, ""
