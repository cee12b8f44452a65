"""The SQL store's deferred writes: queued rows are sent before any read and before commit,
in an order that leaves the indexes right, and a rolled-back savepoint takes its queue with it."""

from __future__ import annotations

from typing import Any

import pytest

from medhub.errors import ConcurrentWriteError, InvalidResourceError
from medhub.fhir.search import parse_search
from medhub.fhir.sql_store import SqlResources, SqlResourceStore


def patient(mrn: str, family: str = "Rossi") -> dict[str, Any]:
    return {
        "resourceType": "Patient",
        "identifier": [{"system": "urn:oid:1.2.3", "value": mrn}],
        "name": [{"family": family}],
    }


def ids(store: SqlResourceStore, **params: str) -> list[str]:
    with store.unit_of_work() as resources:
        found = resources.search(parse_search("Patient", list(params.items())))
    return sorted(r.id for r in found.resources)


def test_a_read_in_the_same_unit_sees_queued_writes(store: SqlResourceStore) -> None:
    with store.unit_of_work() as resources:
        created = resources.create(patient("Q-1"))
        assert resources.read("Patient", created.id).version_id == 1
        found = resources.search(parse_search("Patient", [("identifier", "urn:oid:1.2.3|Q-1")]))
        assert [r.id for r in found.resources] == [created.id]


def test_update_and_delete_after_create_in_one_unit_leave_the_right_index(
    store: SqlResourceStore,
) -> None:
    with store.unit_of_work() as resources:
        renamed = resources.create(patient("Q-2", "Old"))
        resources.update("Patient", renamed.id, {**patient("Q-2", "New"), "id": renamed.id})
        gone = resources.create(patient("Q-3"))
        resources.delete("Patient", gone.id)
        twice = resources.create(patient("Q-4", "First"))
        resources.update("Patient", twice.id, {**patient("Q-4", "Second"), "id": twice.id})
        resources.update("Patient", twice.id, {**patient("Q-4", "Third"), "id": twice.id})
    assert ids(store, family="New") == [renamed.id]
    assert ids(store, family="Old") == []
    assert ids(store, identifier="urn:oid:1.2.3|Q-3") == []
    assert ids(store, family="Third") == [twice.id]
    assert ids(store, family="First") == ids(store, family="Second") == []
    with store.unit_of_work() as resources:
        assert [v.version_id for v in resources.history("Patient", twice.id)] == [3, 2, 1]
        assert resources.read("Patient", renamed.id).version_id == 2


def test_writes_queued_inside_a_failed_savepoint_are_dropped(store: SqlResourceStore) -> None:
    with store.session() as session:
        resources = SqlResources(session, clock=store.clock)
        kept = resources.create(patient("S-1"))
        with pytest.raises(InvalidResourceError), resources.savepoint():
            resources.create(patient("S-2"))
            resources.update("Patient", kept.id, {**patient("S-1", "Changed"), "id": kept.id})
            resources.create({"resourceType": "Patient", "gender": "sometimes"})
        after = resources.create(patient("S-3"))
    assert ids(store, identifier="urn:oid:1.2.3|S-2") == []
    assert ids(store, family="Changed") == []
    assert ids(store, family="Rossi") == sorted([kept.id, after.id])
    with store.unit_of_work() as resources:
        assert resources.read("Patient", kept.id).version_id == 1


def test_prefetched_versions_are_locked_and_used(store: SqlResourceStore) -> None:
    with store.unit_of_work() as resources:
        first = resources.create(patient("P-1"))
        second = resources.create(patient("P-2"))
    with store.unit_of_work() as resources:
        assert isinstance(resources, SqlResources)
        resources.prefetch([("Patient", first.id), ("Patient", second.id), ("Patient", "nope")])
        one = resources.update("Patient", first.id, {**patient("P-1", "A"), "id": first.id})
        two = resources.update("Patient", second.id, {**patient("P-2", "B"), "id": second.id})
        new = resources.update("Patient", "nope", {**patient("P-3"), "id": "nope"})
    assert (one.stored.version_id, two.stored.version_id) == (2, 2)
    assert new.created and new.stored.version_id == 1
    assert ids(store, family="A") == [first.id]


def test_a_client_id_that_exists_is_a_conflict_at_commit(store: SqlResourceStore) -> None:
    with store.unit_of_work() as resources:
        resources.create(patient("C-1"), resource_id="fixed-id")
    with pytest.raises(ConcurrentWriteError), store.unit_of_work() as resources:
        resources.create(patient("C-2"), resource_id="fixed-id")
    assert ids(store, identifier="urn:oid:1.2.3|C-2") == []


def test_reads_of_other_types_leave_the_queue_and_chains_flush_it(
    store: SqlResourceStore,
) -> None:
    with store.unit_of_work() as resources:
        person = resources.create(patient("T-1", "Chained"))
        assert resources.search(parse_search("Practitioner", [("name", "x")])).resources == []
        encounter = resources.create(
            {
                "resourceType": "Encounter",
                "status": "planned",
                "class": {"code": "AMB"},
                "subject": {"reference": f"Patient/{person.id}"},
            }
        )
        # a chained search reads Patient rows: the queued Patient must be visible to it
        chained = resources.search(
            parse_search("Encounter", [("subject:Patient.family", "Chained")])
        )
        assert [r.id for r in chained.resources] == [encounter.id]
    with store.unit_of_work() as resources:
        found = resources.search(parse_search("Encounter", [("subject", f"Patient/{person.id}")]))
        assert [r.id for r in found.resources] == [encounter.id]


def test_a_conflict_inside_a_large_batch_fails_the_whole_unit(store: SqlResourceStore) -> None:
    """Many rows go by COPY on PostgreSQL: a duplicate id in them is still a clean 409."""
    with store.unit_of_work() as resources:
        resources.create(patient("B-0"), resource_id="taken")
    with pytest.raises(ConcurrentWriteError), store.unit_of_work() as resources:
        for n in range(80):
            resources.create(patient(f"B-{n + 1}"))
        resources.create(patient("B-dup"), resource_id="taken")
    assert ids(store, family="Rossi") == ["taken"]
    with store.unit_of_work() as resources:
        for n in range(80):
            resources.create(patient(f"C-{n}", "Many"))
    assert len(ids(store, family="Many")) == 50  # a page: the default _count
