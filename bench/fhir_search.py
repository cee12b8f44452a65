"""FHIR search and read latency over HTTP on 100,000 Observations, against ``medhub serve``.

For each back-end (SQLite file; PostgreSQL on a fresh schema and MariaDB on a
fresh database when reachable) the script migrates a fresh database and loads,
*in-process through the store API* (``SqlResources(session, validate=False)``,
deferred multi-row writes, one unit of work per 10 patients: about 10x faster
than the HTTP API, see bench/fhir_ingest.py, and the searches do not care how
the rows got there):

* 1,000 Patients (ids ``p0000``…), each with an MRN identifier
  (``urn:oid:1.2.840.114350|M0000…``) and a family name from a pool of 200, so a
  name search finds 5;
* 100 vital-sign Observations per Patient (10 LOINC codes x 10 dates between
  2023-01-01 and 2024-12-31, category ``vital-signs``, ``valueQuantity``), each
  referencing its Patient as ``subject``: 100,000 in all.

It then runs ``ANALYZE`` (``_common.analyze``: this PostgreSQL has autovacuum
off, so nothing else would collect planner statistics), starts
``python -m medhub.cli serve``, warms up with 20 requests per query, and sends
each query ``--requests`` times (300; ``--quick`` 50) on one keep-alive HTTP/1.1
connection, one at a time, with a random patient each time. Latency is from
sending the request to having read the whole response body, client side; the
response is parsed afterwards (untimed) and its ``total`` checked against what
was loaded, so a fast wrong answer cannot pass. The queries:

* ``GET Patient/{id}`` (a read);
* ``Patient?identifier=<system>|<mrn>`` (1 match) and ``Patient?family=<name>`` (5);
* ``Observation?patient={id}`` (100 matches, first page);
* ``Observation?patient={id}&code=http://loinc.org|8867-4`` (10);
* ``Observation?subject=Patient/{id}&_count=10`` (100, first 10);
* ``Observation?code=http://loinc.org|8867-4&date=ge2024-10-01`` (about 1,250:
  one code across all patients, a date range, the first page).

The issue's targets: read p50 at most 2 ms, search p95 at most 50 ms.

Usage: python bench/fhir_search.py [--quick] [--requests N] [--backends sqlite,postgres,mariadb]
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import date, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote

from _common import (
    FhirConnection,
    MedhubServer,
    analyze,
    database_urls,
    percentile,
    print_table,
)

from medhub.db.engine import make_engine
from medhub.fhir.sql_store import SqlResources, SqlResourceStore
from medhub.logs import configure_logging
from medhub.migrations import upgrade

DEFAULT_PATIENTS = 1000
MRN_SYSTEM = "urn:oid:1.2.840.114350"
FAMILIES = 200
DATES = 10
FIRST_DAY = date(2023, 1, 1)
SINCE = date(2024, 10, 1)
#: (LOINC code, unit, typical value)
VITALS = (
    ("8867-4", "/min", 72.0),
    ("9279-1", "/min", 16.0),
    ("59408-5", "%", 97.0),
    ("8310-5", "Cel", 36.8),
    ("8480-6", "mm[Hg]", 121.0),
    ("8462-4", "mm[Hg]", 79.0),
    ("29463-7", "kg", 71.5),
    ("8302-2", "cm", 168.0),
    ("39156-5", "kg/m2", 25.3),
    ("72514-3", "{score}", 2.0),
)
HEART_RATE = "http://loinc.org|8867-4"

Json = dict[str, Any]


def family(n: int) -> str:
    return f"Family{n % FAMILIES:03d}"


def patient(n: int) -> Json:
    return {
        "resourceType": "Patient",
        "identifier": [{"system": MRN_SYSTEM, "value": f"M{n:07d}"}],
        "name": [{"family": family(n), "given": ["Maria"]}],
        "gender": "female" if n % 2 else "male",
        "birthDate": "1970-05-17",
    }


def visit_days(n: int) -> list[date]:
    """Ten distinct days in 2023-2024, different for each patient."""
    return [FIRST_DAY + timedelta(days=(n * 7 + k * 73) % 730) for k in range(DATES)]


def observation(n: int, day: date, code: str, unit: str, value: float) -> Json:
    return {
        "resourceType": "Observation",
        "status": "final",
        "category": [
            {
                "coding": [
                    {
                        "system": "http://terminology.hl7.org/CodeSystem/observation-category",
                        "code": "vital-signs",
                    }
                ]
            }
        ],
        "code": {"coding": [{"system": "http://loinc.org", "code": code}]},
        "subject": {"reference": f"Patient/p{n:04d}"},
        "effectiveDateTime": f"{day.isoformat()}T09:30:00Z",
        "valueQuantity": {
            "value": value,
            "unit": unit,
            "system": "http://unitsofmeasure.org",
            "code": unit,
        },
    }


def load(url: str, patients: int) -> tuple[int, float]:
    """Migrate and load the patients and observations; returns (resources, seconds)."""
    engine = make_engine(url)
    try:
        upgrade(engine)
        store = SqlResourceStore(engine)
        start = time.perf_counter()
        created = 0
        for first in range(0, patients, 10):
            with store.session() as session:
                resources = SqlResources(session, clock=store.clock, validate=False)
                for n in range(first, min(first + 10, patients)):
                    resources.create(patient(n), resource_id=f"p{n:04d}")
                    for day in visit_days(n):
                        for code, unit, value in VITALS:
                            resources.create(observation(n, day, code, unit, value))
                    created += 1 + DATES * len(VITALS)
        return created, time.perf_counter() - start
    finally:
        engine.dispose()


def expected_since(patients: int) -> int:
    """How many heart-rate Observations are dated on or after SINCE."""
    return sum(day >= SINCE for n in range(patients) for day in visit_days(n))


Query = tuple[str, Callable[[int], str], Callable[[int], int | None]]


def queries(patients: int) -> list[Query]:
    """(label, path for patient n, expected total for patient n or None for a read)."""
    since = expected_since(patients)
    return [
        ("GET Patient/{id} (read)", lambda n: f"/fhir/Patient/p{n:04d}", lambda _n: None),
        (
            "Patient?identifier={system}|{mrn}",
            lambda n: f"/fhir/Patient?identifier={quote(f'{MRN_SYSTEM}|M{n:07d}')}",
            lambda _n: 1,
        ),
        (
            "Patient?family={name}",
            lambda n: f"/fhir/Patient?family={family(n)}",
            lambda n: len(range(n % FAMILIES, patients, FAMILIES)),
        ),
        (
            "Observation?patient={id}",
            lambda n: f"/fhir/Observation?patient=p{n:04d}",
            lambda _n: DATES * len(VITALS),
        ),
        (
            "Observation?patient={id}&code=loinc|8867-4",
            lambda n: f"/fhir/Observation?patient=p{n:04d}&code={quote(HEART_RATE)}",
            lambda _n: DATES,
        ),
        (
            "Observation?subject=Patient/{id}&_count=10",
            lambda n: f"/fhir/Observation?subject=Patient/p{n:04d}&_count=10",
            lambda _n: DATES * len(VITALS),
        ),
        (
            f"Observation?code=loinc|8867-4&date=ge{SINCE.isoformat()}",
            lambda _n: f"/fhir/Observation?code={quote(HEART_RATE)}&date=ge{SINCE.isoformat()}",
            lambda _n: since,
        ),
    ]


def measure(
    http: FhirConnection, query: Query, requests: int, patients: int, rng: random.Random
) -> list[float]:
    """Sorted latencies (seconds) of ``requests`` sends; raises if an answer is wrong."""
    label, path, expected = query
    latencies: list[float] = []
    for _ in range(requests):
        n = rng.randrange(patients)
        start = time.perf_counter()
        status, raw = http.request("GET", path(n))
        latencies.append(time.perf_counter() - start)
        _check(label, status, raw, expected(n), n)
    return sorted(latencies)


def _check(label: str, status: int, raw: bytes, expected: int | None, n: int) -> None:
    if status != 200:
        raise AssertionError(f"{label} (patient {n}): HTTP {status}: {raw[:300]!r}")
    body = json.loads(raw)
    if expected is None:
        if body.get("id") != f"p{n:04d}":
            raise AssertionError(f"{label}: read returned {body.get('id')}")
    elif body.get("total") != expected:
        raise AssertionError(f"{label} (patient {n}): total {body.get('total')} != {expected}")


def bench_backend(
    backend: str, url: str, workdir: Path, requests: int, patients: int
) -> tuple[list[tuple[object, ...]], str]:
    created, seconds = load(url, patients)
    start = time.perf_counter()
    statement = analyze(url)
    analyzed = time.perf_counter() - start
    server = MedhubServer(url, workdir)
    rows: list[tuple[object, ...]] = []
    rng = random.Random(42)
    try:
        startup = server.start()
        with FhirConnection(server.http_port) as http:
            for query in queries(patients):
                measure(http, query, 20, patients, rng)  # warm-up: pool, caches, plans
                ordered = measure(http, query, requests, patients, rng)
                rows.append(
                    (
                        backend,
                        query[0],
                        requests,
                        percentile(ordered, 0.5) * 1e3,
                        percentile(ordered, 0.95) * 1e3,
                        percentile(ordered, 0.99) * 1e3,
                        ordered[-1] * 1e3,
                    )
                )
    finally:
        server.stop()
    note = (
        f"{backend}: loaded {created:,} resources in-process in {seconds:.1f} s "
        f"({created / seconds:,.0f}/s); {statement.split()[0]} in {analyzed:.2f} s; "
        f"server healthy after {startup:.1f} s; every total as loaded"
    )
    return rows, note


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--quick", action="store_true", help="100 patients (10,000 Observations), 50 requests"
    )
    parser.add_argument("--patients", type=int, default=None, help="default 1000")
    parser.add_argument("--requests", type=int, default=None, help="per query (default 300)")
    parser.add_argument("--backends", default="sqlite,postgres,mariadb")
    options = parser.parse_args()
    configure_logging("WARNING")  # the store's "statistics refreshed" lines while loading
    requests = options.requests or (50 if options.quick else 300)
    patients = options.patients or (100 if options.quick else DEFAULT_PATIENTS)
    backends = [b.strip() for b in options.backends.split(",") if b.strip()]

    rows: list[tuple[object, ...]] = []
    notes: list[str] = []
    workdir = Path(tempfile.mkdtemp(prefix="medhub-bench-search-"))
    try:
        for backend, url, skipped in database_urls(backends, workdir):
            if url is None:
                notes.append(skipped)
                continue
            backend_rows, note = bench_backend(backend, url, workdir, requests, patients)
            rows += backend_rows
            notes.append(note)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)

    print(
        f"# fhir_search: {patients:,} Patients + {patients * DATES * len(VITALS):,} Observations; "
        f"{requests} requests per query, one keep-alive connection, sequential, random patient"
    )
    print_table(["backend", "query", "requests", "p50 ms", "p95 ms", "p99 ms", "max ms"], rows)
    for note in notes:
        print(f"# {note}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
