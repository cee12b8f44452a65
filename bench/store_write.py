"""FHIR Patient writes, reads and searches through SqlResourceStore on SQLite, PostgreSQL, MariaDB.

The Patients are what an ADT^A01 maps to: each is built once, before timing, by
``pid_to_patient(parse_er7(adt_a01(...)))`` with a distinct PID-3 (MRN), so every
resource carries 2 identifiers, 2 names, an address, 3 telecoms and marital status.

Per back-end (each a fresh database migrated with ``medhub.migrations.upgrade``):

* create, 1 per unit of work, validated: ``store.unit_of_work()`` (the REST path:
  ``validate_resource`` runs fhir.resources R4B on every write), one commit each;
* create, 1 per unit of work, not validated: ``SqlResources(session, validate=False)``
  (the HL7 inbound path, see ``sql_inbound_units``), one commit each;
* the same two with 100 creates per unit of work (one commit per 100);
* read by id: ``read("Patient", id)``, random ids, one unit of work each;
* search by identifier: ``identifier=<system>|<mrn>``, and with both PID-3 identifiers
  ORed (``<sys>|<mrn>,<sys>|<ssn>``, the lookup ``upsert_by_identifiers`` runs for every
  inbound ADT), one unit of work each (checks total == 1); first on the tables as
  migrated (no planner statistics), then again after ``ANALYZE``.

Each figure is a time-bounded loop (3 s, ``--quick`` 0.5 s) on one thread.
Then, without a database, the ceilings a user would otherwise pick: fhir.resources
R4B ``Patient.model_validate(d)`` + ``model_dump_json()`` per resource, and medhub's
own ``validate_resource`` and mapping.

Usage: python bench/store_write.py [--quick] [--backends sqlite,postgres,mariadb]
"""

from __future__ import annotations

import argparse
import random
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from functools import partial
from pathlib import Path
from typing import Any

from _common import (
    MYSQL_URL,
    PATIENT_SYSTEM,
    POSTGRES_URL,
    adt_a01,
    analyze,
    fresh_mariadb,
    fresh_postgres,
    print_table,
    reachable,
    timed_rate,
)
from fhir.resources.R4B.patient import Patient

from medhub.clinical.resources import validate_resource
from medhub.db.engine import make_engine
from medhub.fhir.search import parse_search
from medhub.fhir.sql_store import SqlResources, SqlResourceStore
from medhub.hl7.er7 import parse_er7
from medhub.hl7.patient_mapping import pid_to_patient
from medhub.migrations import upgrade

Row = tuple[str, str, int, float, float]  # backend, operation, ops, seconds, ops/s
SSN_SYSTEM = "urn:medhub:assigning-authority:USSSA"  # PID-3 repetition 2 of adt_a01


def build_patients(count: int) -> list[tuple[str, dict[str, Any]]]:
    """``count`` (mrn, Patient) pairs mapped from ADT^A01 messages with distinct PID-3."""
    run = random.randrange(16**6)
    pairs = []
    for i in range(count):
        mrn = f"B{run:06x}{i:07d}"
        pairs.append((mrn, pid_to_patient(parse_er7(adt_a01(f"C{i}", mrn)))))
    return pairs


class PatientPool:
    """Hands out pre-built Patients, each once (so identifier searches find exactly one)."""

    def __init__(self, pairs: list[tuple[str, dict[str, Any]]]) -> None:
        self._pairs = pairs
        self._next = 0

    def take(self) -> tuple[str, dict[str, Any]]:
        pair = self._pairs[self._next]
        self._next += 1
        return pair

    @property
    def left(self) -> int:
        return len(self._pairs) - self._next


def unvalidated(store: SqlResourceStore) -> AbstractContextManager[SqlResources]:
    """A unit of work like the HL7 inbound one: mapper output is not re-validated."""

    @contextmanager
    def unit() -> Iterator[SqlResources]:
        with store.session() as session:
            yield SqlResources(session, clock=store.clock, validate=False)

    return unit()


class BackendBench:
    """The figures for one migrated database; ``created`` holds (mrn, id) of every Patient."""

    def __init__(self, backend: str, url: str, store: SqlResourceStore, seconds: float) -> None:
        self.backend = backend
        self.url = url
        self.store = store
        self.seconds = seconds
        self.created: list[tuple[str, str]] = []
        self.rng = random.Random(1)

    def row(self, operation: str, ops: int, elapsed: float, rate: bool = True) -> Row:
        return (self.backend, operation, ops, elapsed, ops / elapsed if rate else 0.0)

    def writes(self, pool: PatientPool, per_unit: int) -> list[Row]:
        rows: list[Row] = []
        units: list[tuple[str, Callable[[], AbstractContextManager[SqlResources]]]] = [
            ("validated", self.store.unit_of_work),
            ("not validated", lambda: unvalidated(self.store)),
        ]
        for label, open_unit in units:
            for batch in (1, per_unit):

                def write(_: int, open_unit: Any = open_unit, batch: int = batch) -> None:
                    with open_unit() as resources:
                        for _ in range(batch):
                            mrn, patient = pool.take()
                            self.created.append((mrn, resources.create(patient).id))

                before = len(self.created)
                _, elapsed = timed_rate(write, self.seconds, limit=max(1, pool.left // batch // 4))
                done = len(self.created) - before
                rows.append(
                    self.row(f"create Patient, {batch}/unit of work, {label}", done, elapsed)
                )
        return rows

    def read(self, _: int) -> None:
        resource_id = self.created[self.rng.randrange(len(self.created))][1]
        with self.store.unit_of_work() as resources:
            resources.read("Patient", resource_id)

    def search(self, both: bool) -> None:
        """identifier=<mrn> or, as upsert_by_identifiers does for PID-3, <mrn>,<ssn>."""
        mrn, resource_id = self.created[self.rng.randrange(len(self.created))]
        value = f"{PATIENT_SYSTEM}|{mrn}"
        if both:
            value += f",{SSN_SYSTEM}|{mrn}-SSN"
        query = parse_search("Patient", [("identifier", value)])
        with self.store.unit_of_work() as resources:
            result = resources.search(query)
        if result.total != 1 or result.resources[0].id != resource_id:
            raise AssertionError(f"identifier search for {mrn} found {result.total}")

    def search_once(self, both: bool, _: int) -> None:
        self.search(both)

    def reads_and_searches(self) -> list[Row]:
        calls, elapsed = timed_rate(self.read, self.seconds)
        rows = [self.row("read Patient by id", calls, elapsed)]
        for stats in ("no statistics", "after ANALYZE"):
            if stats == "after ANALYZE":
                start = time.perf_counter()
                statement = analyze(self.url)
                rows.append(self.row(statement.split()[0], 1, time.perf_counter() - start, False))
            for both, label in ((False, "1 identifier"), (True, "2 identifiers (as HL7 upsert)")):
                calls, elapsed = timed_rate(partial(self.search_once, both), self.seconds)
                rows.append(self.row(f"search by {label}, {stats}", calls, elapsed))
        return rows


def bench_backend(
    backend: str, url: str, pool: PatientPool, seconds: float, per_unit: int
) -> list[Row]:
    engine = make_engine(url)
    try:
        start = time.perf_counter()
        upgrade(engine)
        migrated = time.perf_counter() - start
        bench = BackendBench(backend, url, SqlResourceStore(engine), seconds)
        rows = [bench.row("migrate (upgrade to head)", 1, migrated, False)]
        rows += bench.writes(pool, per_unit)
        rows += bench.reads_and_searches()
        rows.append((backend, "(Patients in the database)", len(bench.created), 0.0, 0.0))
    finally:
        engine.dispose()
    return rows


def best_of_3(operation: Callable[[int], None], seconds: float) -> tuple[int, float, float]:
    operation(0)  # warm-up (imports, model build)
    best = (0, 1.0, 0.0)
    for _ in range(3):
        calls, elapsed = timed_rate(operation, seconds / 3)
        if calls / elapsed > best[2]:
            best = (calls, elapsed, calls / elapsed)
    return best


def ceilings(patients: list[dict[str, Any]], seconds: float) -> list[Row]:
    """Per-resource costs without a database, best of 3."""
    texts = [adt_a01(f"C{i}", f"M{i}") for i in range(len(patients))]
    n = len(patients)

    def fhir_resources_roundtrip(i: int) -> None:
        Patient.model_validate(patients[i % n]).model_dump_json()

    def fhir_resources_validate(i: int) -> None:
        Patient.model_validate(patients[i % n])

    def medhub_validate(i: int) -> None:
        validate_resource(patients[i % n], expected_type="Patient")

    def medhub_map(i: int) -> None:
        pid_to_patient(parse_er7(texts[i % n]))

    rows: list[Row] = []
    for name, operation in (
        ("fhir.resources R4B Patient.model_validate + model_dump_json", fhir_resources_roundtrip),
        ("fhir.resources R4B Patient.model_validate only", fhir_resources_validate),
        ("medhub validate_resource (REST write path)", medhub_validate),
        ("medhub parse_er7 + pid_to_patient (ADT^A01 -> Patient)", medhub_map),
    ):
        calls, elapsed, rate = best_of_3(operation, seconds)
        rows.append(("no database", name, calls, elapsed, rate))
    return rows


def main() -> int:
    args = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    args.add_argument("--quick", action="store_true", help="0.5 s per figure instead of 3 s")
    args.add_argument("--backends", default="sqlite,postgres,mariadb")
    args.add_argument("--per-unit", type=int, default=100, help="creates per unit of work")
    options = args.parse_args()
    seconds = 0.5 if options.quick else 3.0
    backends = [b.strip() for b in options.backends.split(",") if b.strip()]

    start = time.perf_counter()
    pairs = build_patients(6_000 if options.quick else 60_000)
    print(f"# store_write: {len(pairs)} Patients mapped in {time.perf_counter() - start:.1f} s")
    rows: list[Row] = []
    skipped: list[str] = []
    for backend in backends:
        pool = PatientPool(pairs)  # every back-end gets the same resources
        if backend == "sqlite":
            workdir = Path(tempfile.mkdtemp(prefix="medhub-bench-"))
            try:
                url = f"sqlite:///{workdir / 'store.db'}"
                rows += bench_backend(backend, url, pool, seconds, options.per_unit)
            finally:
                shutil.rmtree(workdir, ignore_errors=True)
            continue
        admin_url, fresh = {
            "postgres": (POSTGRES_URL, fresh_postgres),
            "mariadb": (MYSQL_URL, fresh_mariadb),
        }[backend]
        reason = reachable(admin_url)
        if reason is not None:
            skipped.append(f"{backend}: {reason}")
            continue
        with fresh() as url:
            rows += bench_backend(backend, url, pool, seconds, options.per_unit)
    rows += ceilings([p for _, p in pairs[:2000]], 3 * seconds / 4 if options.quick else 3.0)

    print(f"# one thread; each figure a {seconds:g} s loop (ceilings: best of 3)")
    print_table(
        ["backend", "operation", "ops", "seconds", "ops/s"],
        [
            (b, op, n, s, r if r else float("nan")) if s else (b, op, n, "-", "-")
            for b, op, n, s, r in rows
        ],
    )
    for line in skipped:
        print(f"# skipped {line}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
