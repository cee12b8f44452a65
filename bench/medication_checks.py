"""Medication-safety check latency: a patient on 20 active medications, the whole knowledge base.

Three levels, each timed per order with ``time.perf_counter`` and reported as
p50 / p99 / max:

1. **the pure check** (``check_order``): 20 active medications (random
   ingredients of the shipped base, RxNorm-coded; every fifth given as text
   only, so name resolution is exercised), 3 allergies (one by class text such
   as "Penicillin"), and a random ordered drug with a dose. Beside it, in the
   same run, the **baseline** a developer writes without an index: resolve the
   drugs the same way, then scan every interaction rule and expand its terms
   for each active medication (what a list-of-pairs table invites). The issue's
   target is p99 <= 5 ms for the check;
2. **the write**: ``POST /fhir/MedicationRequest`` through the FastAPI app
   (in process, ``TestClient``) with the prescribing hook (reads the 20 active
   requests and the allergies from the store, checks, writes the request, its
   DetectedIssues, the override AuditEvent, the outbox event), compared with
   the same POST on the plain store (no checks): the difference is what the
   safety checks cost a prescriber. Orders are drafts with an override, so each
   is saved and the patient's active list stays at 20;
3. **CDS Hooks** ``order-sign`` with the record prefetched (no store reads).

Back-ends: SQLite (a file) and PostgreSQL (a fresh schema) when reachable.

Usage: python bench/medication_checks.py [--quick] [--orders N]
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from _common import POSTGRES_URL, fresh_postgres, percentile, print_table, reachable
from fastapi.testclient import TestClient

from medhub.api.app import create_app
from medhub.api.deps import ApiContext
from medhub.cds.medication_checks import check_order
from medhub.cds.medication_fhir import OVERRIDE_URL, proposed_order
from medhub.cds.medication_knowledge import KnowledgeBase, load_default_knowledge
from medhub.cds.medication_model import (
    RXNORM_SYSTEM,
    ActiveMedication,
    AllergyRecord,
    DrugCode,
    DrugRef,
)
from medhub.config import Settings
from medhub.db.engine import make_engine
from medhub.fhir.sql_store import SqlResourceStore
from medhub.fhir.store import ResourceStore
from medhub.migrations import upgrade
from medhub.wiring_prescribing import hooked_api_store

JSON = {"Content-Type": "application/fhir+json"}


def drug(kb: KnowledgeBase, rxcui: str, *, text_only: bool) -> DrugRef:
    name = kb.ingredient_name(rxcui)
    if text_only:
        return DrugRef((), name)
    return DrugRef((DrugCode(RXNORM_SYSTEM, rxcui, name),), name)


def naive_interactions(kb: KnowledgeBase, ordered: DrugRef, active: list[ActiveMedication]) -> int:
    """The unindexed way: for each active drug, scan every rule and expand its terms."""
    found = 0
    mine = kb.resolve(ordered)
    for medication in active:
        theirs = kb.resolve(medication.drug)
        for rule in kb.data.interactions:
            a, b = kb.expand(rule.a), kb.expand(rule.b)
            if (mine & a and theirs & b) or (mine & b and theirs & a):
                found += 1
    return found


def timings(operation: Callable[[int], object], count: int) -> list[float]:
    values: list[float] = []
    for index in range(count):
        start = time.perf_counter()
        operation(index)
        values.append((time.perf_counter() - start) * 1000)
    values.sort()
    return values


def row(level: str, what: str, values: list[float]) -> list[object]:
    return [
        level,
        what,
        len(values),
        round(percentile(values, 0.5), 3),
        round(percentile(values, 0.99), 3),
        round(values[-1], 3),
    ]


def pure_rows(kb: KnowledgeBase, count: int, rng: random.Random) -> list[list[object]]:
    ingredients = sorted(i.rxcui for i in kb.data.ingredients)
    patients = []
    for _ in range(50):
        chosen = rng.sample(ingredients, 21)
        active = [
            ActiveMedication(f"MedicationRequest/m{i}", drug(kb, rxcui, text_only=i % 5 == 4))
            for i, rxcui in enumerate(chosen[:20])
        ]
        allergies = [
            AllergyRecord("AllergyIntolerance/a1", DrugRef((), "Penicillin"), "high"),
            AllergyRecord(
                "AllergyIntolerance/a2", drug(kb, rng.choice(ingredients), text_only=False)
            ),
            AllergyRecord("AllergyIntolerance/a3", DrugRef((), "Sulfa"), "low"),
        ]
        order = proposed_order(
            {
                "medicationCodeableConcept": {
                    "coding": [{"system": RXNORM_SYSTEM, "code": chosen[20]}]
                },
                "dosageInstruction": [
                    {
                        "timing": {"repeat": {"frequency": 2, "period": 1, "periodUnit": "d"}},
                        "doseAndRate": [{"doseQuantity": {"value": 500, "code": "mg"}}],
                    }
                ],
            }
        )
        patients.append((order, active, allergies))
    findings = 0

    def checked(i: int) -> None:
        nonlocal findings
        order, active, allergies = patients[i % len(patients)]
        findings += len(check_order(kb, order, active=active, allergies=allergies))

    def naive(i: int) -> None:
        order, active, _ = patients[i % len(patients)]
        naive_interactions(kb, order.drug, active)

    for _ in range(200):  # warm the caches
        checked(0)
    rows = [row("pure", "check_order (indexed, all checks)", timings(checked, count))]
    rows.append(
        row("pure", "baseline: scan every rule (interactions only)", timings(naive, count // 10))
    )
    print(f"# {findings} findings over {count} checks ({findings / count:.1f} per order)")
    return rows


def request(patient: str, rxcui: str, *, status: str) -> dict[str, Any]:
    return {
        "resourceType": "MedicationRequest",
        "status": status,
        "intent": "order",
        "subject": {"reference": patient},
        "medicationCodeableConcept": {"coding": [{"system": RXNORM_SYSTEM, "code": rxcui}]},
        "dosageInstruction": [
            {
                "timing": {"repeat": {"frequency": 1, "period": 1, "periodUnit": "d"}},
                "route": {"coding": [{"system": "http://snomed.info/sct", "code": "26643006"}]},
                "doseAndRate": [{"doseQuantity": {"value": 5, "unit": "mg", "code": "mg"}}],
            }
        ],
        "extension": [
            {"url": OVERRIDE_URL, "extension": [{"url": "reason", "valueString": "bench"}]}
        ],
    }


@contextmanager
def backend_urls(quick: bool) -> Iterator[list[tuple[str, str]]]:
    with tempfile.TemporaryDirectory() as folder:
        urls = [("sqlite", f"sqlite:///{Path(folder) / 'bench.db'}")]
        problem = reachable(POSTGRES_URL)
        if problem is not None or quick:
            if problem:
                print(f"# PostgreSQL skipped: {problem}")
            yield urls
            return
        with fresh_postgres() as postgres:
            yield [*urls, ("postgres", postgres)]


def write_rows(
    name: str, url: str, kb: KnowledgeBase, count: int, rng: random.Random
) -> list[list[object]]:
    engine = make_engine(url)
    upgrade(engine)
    store = SqlResourceStore(engine)
    hooked: ResourceStore = hooked_api_store(Settings(), store, kb)
    ingredients = sorted(i.rxcui for i in kb.data.ingredients)
    rows: list[list[object]] = []
    for label, chosen_store in (("with checks", hooked), ("plain store", store)):
        app = create_app(ApiContext(store=chosen_store))
        with TestClient(app) as client:
            patient = client.post(
                "/fhir/Patient", json={"resourceType": "Patient"}, headers=JSON
            ).json()["id"]
            subject = f"Patient/{patient}"
            for rxcui in rng.sample(ingredients, 20):
                body = request(subject, rxcui, status="active")
                assert (
                    client.post("/fhir/MedicationRequest", json=body, headers=JSON).status_code
                    == 201
                )
            client.post(
                "/fhir/AllergyIntolerance",
                json={
                    "resourceType": "AllergyIntolerance",
                    "patient": {"reference": subject},
                    "code": {"text": "Penicillin"},
                },
                headers=JSON,
            )

            def post(_i: int, subject: str = subject) -> None:
                body = request(subject, rng.choice(ingredients), status="draft")
                response = client.post("/fhir/MedicationRequest", json=body, headers=JSON)
                assert response.status_code == 201, response.text

            for _ in range(20):
                post(0)
            rows.append(row(name, f"POST MedicationRequest, {label}", timings(post, count)))
    engine.dispose()
    return rows


def hooks_rows(kb: KnowledgeBase, count: int, rng: random.Random) -> list[list[object]]:
    ingredients = sorted(i.rxcui for i in kb.data.ingredients)
    meds = [
        dict(request("Patient/p1", rxcui, status="active"), id=f"m{i}")
        for i, rxcui in enumerate(rng.sample(ingredients, 20))
    ]
    with tempfile.TemporaryDirectory() as folder:
        engine = make_engine(f"sqlite:///{Path(folder) / 'hooks.db'}")
        upgrade(engine)
        with TestClient(create_app(ApiContext(store=SqlResourceStore(engine)))) as client:

            def call(_i: int) -> None:
                draft = dict(
                    request("Patient/p1", rng.choice(ingredients), status="draft"), id="d1"
                )
                body = {
                    "hook": "order-sign",
                    "hookInstance": "bench",
                    "context": {
                        "patientId": "p1",
                        "userId": "Practitioner/1",
                        "draftOrders": {"resourceType": "Bundle", "entry": [{"resource": draft}]},
                    },
                    "prefetch": {
                        "medications": {
                            "resourceType": "Bundle",
                            "entry": [{"resource": m} for m in meds],
                        },
                        "allergies": {"resourceType": "Bundle", "entry": []},
                    },
                }
                response = client.post("/cds-services/medhub-medication-safety-sign", json=body)
                assert response.status_code == 200

            for _ in range(20):
                call(0)
            values = timings(call, count)
        engine.dispose()
    return [row("cds-hooks", "order-sign, 20 prefetched medications", values)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer orders, SQLite only")
    parser.add_argument("--orders", type=int, default=None)
    args = parser.parse_args()
    pure_count = args.orders or (2_000 if args.quick else 20_000)
    write_count = max(50, pure_count // 40)
    rng = random.Random(7)
    kb = load_default_knowledge()
    counts = kb.counts()
    print(f"# medication_checks: {kb.version}, {counts}")
    print(f"# Python {sys.version.split()[0]}, one thread; times in ms")
    rows = pure_rows(kb, pure_count, rng)
    with backend_urls(args.quick) as urls:
        for name, url in urls:
            rows.extend(write_rows(name, url, kb, write_count, rng))
    rows.extend(hooks_rows(kb, write_count, rng))
    print_table(["level", "operation", "orders", "p50 ms", "p99 ms", "max ms"], rows)


if __name__ == "__main__":
    main()
