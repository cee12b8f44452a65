"""Find-or-create is safe when two servers do it at once, on every SQL back-end.

Each test runs two units of work on two threads (two connections, as two
processes would have): the first holds its transaction open after creating,
the second must wait for it and then find what it created, not create again.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import pytest

from medhub.errors import ConcurrentWriteError, Hl7Location
from medhub.fhir import interactions
from medhub.fhir.key_locks import criteria_lock_names, identifier_lock_name, key_hash
from medhub.fhir.search import parse_search
from medhub.fhir.sql_store import SqlResourceStore
from medhub.fhir.store import Resources
from medhub.hl7.identity import upsert_by_identifiers

SYSTEM = "urn:oid:1.2.3.4"
HOLD = 0.5  # how long the first unit keeps its transaction open after creating


def count(store: SqlResourceStore, resource_type: str) -> int:
    with store.unit_of_work() as resources:
        query = parse_search(resource_type, [("_summary", "count")])
        return resources.search(query).total or 0


def race(store: SqlResourceStore, work: Callable[[Resources], Any]) -> tuple[Any, Any, float]:
    """Run ``work`` in a first unit that holds on after it, and in a second started meanwhile.

    Returns both results and how long the second took (it waits out the first).
    """
    first_done = threading.Event()
    results: dict[str, Any] = {}

    def first() -> None:
        with store.unit_of_work() as resources:
            results["first"] = work(resources)
            first_done.set()
            time.sleep(HOLD)  # the commit comes later: the second must not slip in

    thread = threading.Thread(target=first)
    thread.start()
    assert first_done.wait(30)
    started = time.monotonic()
    with store.unit_of_work() as resources:
        results["second"] = work(resources)
    waited = time.monotonic() - started
    thread.join(30)
    return results["first"], results["second"], waited


def test_a_conditional_create_racing_another_finds_its_resource(store: SqlResourceStore) -> None:
    patient = {"resourceType": "Patient", "identifier": [{"system": SYSTEM, "value": "A-1"}]}

    def conditional(resources: Resources) -> interactions.Written:
        return interactions.create(
            resources, "Patient", dict(patient), if_none_exist=f"identifier={SYSTEM}|A-1"
        )

    first, second, waited = race(store, conditional)
    assert (first.status, second.status) == (201, 200)
    assert second.stored is not None and first.stored is not None
    assert second.stored.id == first.stored.id
    assert waited >= HOLD * 0.8  # it waited for the first commit instead of creating
    assert count(store, "Patient") == 1


def test_an_hl7_find_or_create_racing_another_creates_one_location(
    store: SqlResourceStore,
) -> None:
    location = {
        "resourceType": "Location",
        "identifier": [{"system": SYSTEM, "value": "ICU^1^A"}],
        "name": "ICU bed 1A",
    }

    def upsert(resources: Resources) -> str:
        stored = upsert_by_identifiers(resources, dict(location), location=Hl7Location("PV1", 1, 3))
        return stored.id

    first, second, _ = race(store, upsert)
    assert first == second
    assert count(store, "Location") == 1


def test_an_existing_resource_is_found_without_waiting_for_anyone(
    store: SqlResourceStore,
) -> None:
    """The busy ward's Location exists: finders must not queue behind each other's batches."""
    location = {"resourceType": "Location", "identifier": [{"system": SYSTEM, "value": "WARD"}]}
    with store.unit_of_work() as resources:
        resources.create(dict(location))
    if store.engine.dialect.name == "sqlite":
        return  # one writer at a time by design (BEGIN IMMEDIATE): nothing to show here

    def upsert(resources: Resources) -> str:
        return upsert_by_identifiers(
            resources, dict(location), location=Hl7Location("PV1", 1, 3)
        ).id

    first, second, waited = race(store, upsert)
    assert first == second
    assert waited < HOLD * 0.8


def test_two_units_locking_in_opposite_orders_end_with_a_retry_not_a_hang(
    store: SqlResourceStore,
) -> None:
    names = ("Patient|identifier|s|1", "Patient|identifier|s|2")
    outcomes: list[str] = []
    both_locked_first = threading.Barrier(2, timeout=30)

    def unit(order: tuple[str, str]) -> None:
        try:
            with store.unit_of_work() as resources:
                resources.lock_keys([order[0]])
                if store.engine.dialect.name != "sqlite":
                    both_locked_first.wait()
                resources.lock_keys([order[1]])
            outcomes.append("committed")
        except ConcurrentWriteError:
            outcomes.append("retry")

    threads = [
        threading.Thread(target=unit, args=(names,)),
        threading.Thread(target=unit, args=(names[::-1],)),
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    if store.engine.dialect.name == "sqlite":
        assert sorted(outcomes) == ["committed", "committed"]  # serialised, never crossed
    else:
        assert sorted(outcomes) == ["committed", "retry"]


@pytest.mark.parametrize(
    ("pairs", "expected"),
    [
        (
            [("identifier", f"{SYSTEM}|X")],
            [identifier_lock_name("Patient", "identifier", SYSTEM, "X")],
        ),
        ([("identifier", "a|1,b|2")], ["Patient?identifier=a%7C1%2Cb%7C2"]),
        ([("name", "x"), ("birthdate", "2000")], ["Patient?birthdate=2000&name=x"]),
    ],
)
def test_lock_names_match_hl7_finds_for_one_identifier(
    pairs: list[tuple[str, str]], expected: list[str]
) -> None:
    assert criteria_lock_names("Patient", pairs) == expected


def test_the_lock_hash_is_a_stable_signed_64_bit_number() -> None:
    value = key_hash("Location|identifier|s|v")
    assert -(2**63) <= value < 2**63
    assert value == key_hash("Location|identifier|s|v")
    assert value != key_hash("Location|identifier|s|w")
