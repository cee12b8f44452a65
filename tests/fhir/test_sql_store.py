"""The resource store contract, run identically on SQLite, PostgreSQL and MariaDB."""

from __future__ import annotations

import threading
from typing import Any

import pytest

from medhub.errors import (
    ConflictError,
    GoneError,
    InputError,
    InvalidResourceError,
    NotFoundError,
    PreconditionFailedError,
)
from medhub.fhir.search import parse_search
from medhub.fhir.sql_store import SqlResourceStore


def patient(**extra: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "resourceType": "Patient",
        "identifier": [{"system": "urn:oid:1.2.3", "value": "MRN-1"}],
        "name": [{"family": "Müller", "given": ["Anna"]}],
        "gender": "female",
        "birthDate": "1970-05-17",
    }
    body.update(extra)
    return body


def search(store: SqlResourceStore, resource_type: str, **params: str) -> list[str]:
    with store.unit_of_work() as resources:
        result = resources.search(parse_search(resource_type, list(params.items())))
    return [r.id for r in result.resources]


def test_create_then_read_returns_the_body_with_meta(store: SqlResourceStore) -> None:
    with store.unit_of_work() as resources:
        created = resources.create(patient())
    with store.unit_of_work() as resources:
        read = resources.read("Patient", created.id)
    body = read.resource
    assert body["id"] == created.id
    assert body["meta"]["versionId"] == "1"
    assert body["meta"]["lastUpdated"].endswith("Z")
    assert body["name"][0]["family"] == "Müller"
    assert read.etag == 'W/"1"'


def test_update_keeps_every_version_in_history(store: SqlResourceStore) -> None:
    with store.unit_of_work() as resources:
        created = resources.create(patient())
    for family in ("Meyer", "Schmidt"):
        with store.unit_of_work() as resources:
            body = {**patient(), "id": created.id, "name": [{"family": family}]}
            resources.update("Patient", created.id, body)
    with store.unit_of_work() as resources:
        history = resources.history("Patient", created.id)
        assert [h.version_id for h in history] == [3, 2, 1]
        assert resources.vread("Patient", created.id, 1).resource["name"][0]["family"] == "Müller"
        assert resources.read("Patient", created.id).resource["name"][0]["family"] == "Schmidt"


def test_update_with_a_new_client_id_creates_the_resource(store: SqlResourceStore) -> None:
    with store.unit_of_work() as resources:
        outcome = resources.update("Patient", "pat-42", patient(id="pat-42"))
    assert outcome.created and outcome.stored.version_id == 1
    with store.unit_of_work() as resources:
        outcome = resources.update("Patient", "pat-42", patient(id="pat-42", gender="other"))
    assert not outcome.created and outcome.stored.version_id == 2


def test_if_match_on_a_stale_version_is_refused(store: SqlResourceStore) -> None:
    with store.unit_of_work() as resources:
        created = resources.create(patient())
        resources.update("Patient", created.id, patient(id=created.id), if_match=1)
    with pytest.raises(PreconditionFailedError), store.unit_of_work() as resources:
        resources.update("Patient", created.id, patient(id=created.id), if_match=1)


def test_delete_is_soft_and_read_says_gone(store: SqlResourceStore) -> None:
    with store.unit_of_work() as resources:
        created = resources.create(patient())
    with store.unit_of_work() as resources:
        deleted = resources.delete("Patient", created.id)
        assert deleted is not None and deleted.version_id == 2
        assert resources.delete("Patient", created.id) is None
    with store.unit_of_work() as resources:
        with pytest.raises(GoneError):
            resources.read("Patient", created.id)
        assert [h.deleted for h in resources.history("Patient", created.id)] == [True, False]
    assert search(store, "Patient", identifier="urn:oid:1.2.3|MRN-1") == []


def test_unknown_resources_and_versions_are_not_found(store: SqlResourceStore) -> None:
    with store.unit_of_work() as resources:
        with pytest.raises(NotFoundError):
            resources.read("Patient", "nope")
        with pytest.raises(NotFoundError):
            resources.vread("Patient", "nope", 1)
        with pytest.raises(NotFoundError):
            resources.history("Patient", "nope")


def test_invalid_resources_are_rejected_with_the_element_path(store: SqlResourceStore) -> None:
    with pytest.raises(InvalidResourceError) as caught, store.unit_of_work() as resources:
        resources.create(patient(birthDate="17.05.1970"))
    assert caught.value.issues[0].expression == ("Patient.birthDate",)
    with pytest.raises(InputError), store.unit_of_work() as resources:
        resources.update("Patient", "bad id!", patient())
    with pytest.raises(InputError), store.unit_of_work() as resources:
        resources.update("Patient", "a", patient(id="b"))


def test_a_failed_unit_of_work_leaves_nothing_behind(store: SqlResourceStore) -> None:
    with pytest.raises(RuntimeError), store.unit_of_work() as resources:
        resources.create(patient())
        raise RuntimeError("crash after the write, before the commit")
    assert search(store, "Patient") == []


def test_token_search_by_system_and_code(store: SqlResourceStore) -> None:
    with store.unit_of_work() as resources:
        first = resources.create(patient())
        other = patient(identifier=[{"system": "urn:oid:9.9", "value": "MRN-1"}])
        second = resources.create(other)
        nosys = resources.create(patient(identifier=[{"value": "MRN-1"}]))
    assert search(store, "Patient", identifier="urn:oid:1.2.3|MRN-1") == [first.id]
    assert sorted(search(store, "Patient", identifier="MRN-1")) == sorted(
        [first.id, second.id, nosys.id]
    )
    assert search(store, "Patient", identifier="|MRN-1") == [nosys.id]
    assert search(store, "Patient", identifier="urn:oid:9.9|") == [second.id]
    assert search(store, "Patient", identifier="urn:oid:1.2.3|MRN-2") == []
    both = search(store, "Patient", identifier="urn:oid:1.2.3|MRN-1,urn:oid:9.9|MRN-1")
    assert sorted(both) == sorted([first.id, second.id])


def test_string_search_ignores_case_and_accents(store: SqlResourceStore) -> None:
    with store.unit_of_work() as resources:
        anna = resources.create(patient())
        resources.create(patient(name=[{"family": "Mueller-Lüdenscheidt"}]))
    assert search(store, "Patient", family="muller") == [anna.id]
    assert search(store, "Patient", **{"family:exact": "Müller"}) == [anna.id]
    assert search(store, "Patient", **{"family:exact": "müller"}) == []
    assert len(search(store, "Patient", **{"name:contains": "LUDEN"})) == 1
    assert search(store, "Patient", name="anna") == [anna.id]
    assert search(store, "Patient", family="50%") == []


def test_date_search_with_prefixes_and_partial_dates(store: SqlResourceStore) -> None:
    with store.unit_of_work() as resources:
        may = resources.create(patient())
        june = resources.create(patient(birthDate="1970-06"))
    assert search(store, "Patient", birthdate="1970-05-17") == [may.id]
    assert sorted(search(store, "Patient", birthdate="1970")) == sorted([may.id, june.id])
    assert search(store, "Patient", birthdate="lt1970-06-01") == [may.id]
    assert search(store, "Patient", birthdate="ge1970-06-01") == [june.id]
    assert search(store, "Patient", birthdate="gt1970") == []


def test_reference_search(store: SqlResourceStore) -> None:
    with store.unit_of_work() as resources:
        pat = resources.create(patient())
        obs = resources.create(
            {
                "resourceType": "Observation",
                "status": "final",
                "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4"}]},
                "subject": {"reference": f"Patient/{pat.id}"},
                "effectiveDateTime": "2024-01-02T03:04:05Z",
                "valueQuantity": {"value": 72, "unit": "/min"},
            }
        )
    assert search(store, "Observation", subject=f"Patient/{pat.id}") == [obs.id]
    assert search(store, "Observation", patient=pat.id) == [obs.id]
    assert search(store, "Observation", code="http://loinc.org|8867-4") == [obs.id]
    assert search(store, "Observation", date="2024-01-02") == [obs.id]
    assert search(store, "Observation", subject="Patient/other") == []


def test_unknown_search_parameters_are_errors_not_ignored() -> None:
    with pytest.raises(InputError, match="unknown search parameter"):
        parse_search("Patient", [("favourite-colour", "blue")])
    with pytest.raises(InputError):
        parse_search("Patient", [("birthdate", "yesterday")])


def test_large_bodies_round_trip(store: SqlResourceStore) -> None:
    note = "x" * 200_000  # past MySQL's 64 KiB TEXT
    body = patient(
        extension=[{"url": "http://example.org/note", "valueString": note}],
    )
    with store.unit_of_work() as resources:
        created = resources.create(body)
    with store.unit_of_work() as resources:
        assert resources.read("Patient", created.id).resource["extension"][0]["valueString"] == note


def test_concurrent_updates_of_one_resource_lose_no_version(store: SqlResourceStore) -> None:
    with store.unit_of_work() as resources:
        created = resources.create(patient())
    errors: list[Exception] = []

    def bump(n: int) -> None:
        for i in range(5):
            try:
                with store.unit_of_work() as resources:
                    body = patient(id=created.id, name=[{"family": f"T{n}-{i}"}])
                    resources.update("Patient", created.id, body)
            except ConflictError as exc:  # allowed: caller retries; nothing half-written
                errors.append(exc)

    threads = [threading.Thread(target=bump, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    with store.unit_of_work() as resources:
        history = resources.history("Patient", created.id)
        current = resources.read("Patient", created.id)
    versions = [h.version_id for h in history]
    assert versions == list(range(len(versions), 0, -1))
    assert current.version_id == len(versions) == 1 + 20 - len(errors)
