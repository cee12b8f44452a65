"""The resource store contract on MongoDB: always on mongomock, and on a real server if set.

``mongomock`` (a fake ``MongoClient``) runs in every build, so the pymongo code
path of :mod:`medhub.fhir.mongo_store` is exercised without a server. When
``MEDHUB_MONGODB_URL`` is set the same tests also run against that server, in
a fresh database dropped afterwards; unreachable, that case skips on a laptop
and fails with ``MEDHUB_REQUIRE_SERVICES=1`` (CI), like the SQL servers.
"""

from __future__ import annotations

import dataclasses
import json
import os
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import mongomock
import pytest
from pymongo.errors import OperationFailure

from medhub.errors import (
    ConcurrentWriteError,
    ConfigurationError,
    GoneError,
    InputError,
    InvalidResourceError,
    NotFoundError,
    PreconditionFailedError,
    StoreUnavailableError,
)
from medhub.fhir.mongo_documents import ceil_ms, floor_ms
from medhub.fhir.mongo_search import search_filter
from medhub.fhir.mongo_store import MongoResourceStore, _supports_transactions
from medhub.fhir.search import Criterion, NumberValue, SearchQuery, TokenValue, parse_search
from tests.conftest import unavailable

MONGODB_URL = os.environ.get("MEDHUB_MONGODB_URL")
REQUIRE_SERVICES = os.environ.get("MEDHUB_REQUIRE_SERVICES") == "1"
EXAMPLES = sorted((Path(__file__).parents[1] / "data" / "fhir-r4-examples").glob("*.json"))

BACKENDS = ["mongomock"]
if MONGODB_URL:
    BACKENDS.append(pytest.param("server", marks=pytest.mark.mongo))  # type: ignore[arg-type]


class Clock:
    """A clock that ticks one second per call, so versions have distinct, known times."""

    def __init__(self) -> None:
        self.now = datetime(2024, 5, 1, 10, 0, 0, 123456, tzinfo=UTC)

    def __call__(self) -> datetime:
        self.now += timedelta(seconds=1)
        return self.now


def _server_store(clock: Clock) -> Iterator[MongoResourceStore]:
    assert MONGODB_URL is not None
    store = MongoResourceStore(MONGODB_URL, f"medhub_test_{uuid.uuid4().hex[:10]}", clock=clock)
    try:
        store.ping()
    except StoreUnavailableError as exc:
        store.close()
        unavailable("MongoDB at MEDHUB_MONGODB_URL", exc)
    try:
        yield store
    finally:
        store.client.drop_database(store.database.name)
        store.close()


@pytest.fixture(params=BACKENDS)
def mongo_store(request: pytest.FixtureRequest) -> Iterator[MongoResourceStore]:
    """An empty resource store on mongomock, or on the real server of MEDHUB_MONGODB_URL."""
    clock = Clock()
    if request.param == "server":
        yield from _server_store(clock)
        return
    client: Any = mongomock.MongoClient(tz_aware=True)
    store = MongoResourceStore(client, "medhub_test", clock=clock)
    yield store
    store.close()
    client.close()


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


def observation(subject: str, **extra: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "resourceType": "Observation",
        "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4"}]},
        "subject": {"reference": subject},
        "effectiveDateTime": "2024-01-02T03:04:05Z",
        "valueQuantity": {"value": 72, "unit": "/min"},
    }
    body.update(extra)
    return body


def search(store: MongoResourceStore, resource_type: str, **params: str) -> list[str]:
    with store.unit_of_work() as resources:
        result = resources.search(parse_search(resource_type, list(params.items())))
    return [r.id for r in result.resources]


# -- create, read, update, delete ---------------------------------------------------


def test_create_then_read_returns_the_body_with_meta(mongo_store: MongoResourceStore) -> None:
    with mongo_store.unit_of_work() as resources:
        created = resources.create(patient())
    with mongo_store.unit_of_work() as resources:
        read = resources.read("Patient", created.id)
    body = read.resource
    assert uuid.UUID(created.id).version == 4
    assert body["id"] == created.id
    assert body["meta"]["versionId"] == "1"
    # BSON keeps milliseconds: the instant in meta is the one stored and sorted on.
    assert body["meta"]["lastUpdated"] == "2024-05-01T10:00:01.123000Z"
    assert read.last_updated == datetime(2024, 5, 1, 10, 0, 1, 123000, tzinfo=UTC)
    assert body["name"][0]["family"] == "Müller"
    assert read.etag == 'W/"1"' and read == created


def test_create_with_a_given_id(mongo_store: MongoResourceStore) -> None:
    with mongo_store.unit_of_work() as resources:
        created = resources.create(patient(id="ignored"), resource_id="pat-1")
    assert created.id == "pat-1" and created.resource["id"] == "pat-1"
    with pytest.raises(InputError), mongo_store.unit_of_work() as resources:
        resources.create(patient(), resource_id="not ok!")
    with pytest.raises(ConcurrentWriteError), mongo_store.unit_of_work() as resources:
        resources.create(patient(), resource_id="pat-1")


def test_update_keeps_every_version_in_history(mongo_store: MongoResourceStore) -> None:
    with mongo_store.unit_of_work() as resources:
        created = resources.create(patient())
    for family in ("Meyer", "Schmidt"):
        with mongo_store.unit_of_work() as resources:
            body = {**patient(), "id": created.id, "name": [{"family": family}]}
            resources.update("Patient", created.id, body)
    with mongo_store.unit_of_work() as resources:
        history = resources.history("Patient", created.id)
        assert [h.version_id for h in history] == [3, 2, 1]
        assert resources.vread("Patient", created.id, 1).resource["name"][0]["family"] == "Müller"
        assert resources.read("Patient", created.id).resource["name"][0]["family"] == "Schmidt"
        with pytest.raises(NotFoundError):
            resources.vread("Patient", created.id, 4)
    assert search(mongo_store, "Patient", family="schmidt") == [created.id]
    assert search(mongo_store, "Patient", family="muller") == []


def test_two_writes_of_one_resource_in_one_unit(mongo_store: MongoResourceStore) -> None:
    with mongo_store.unit_of_work() as resources:
        created = resources.create(patient())
        second = resources.update("Patient", created.id, patient(gender="other"))
        third = resources.update("Patient", created.id, patient(gender="male"), if_match=2)
    assert (second.stored.version_id, third.stored.version_id) == (2, 3)
    assert not second.created and not third.created


def test_update_with_a_new_client_id_creates_the_resource(mongo_store: MongoResourceStore) -> None:
    with mongo_store.unit_of_work() as resources:
        outcome = resources.update("Patient", "pat-42", patient(id="pat-42"))
    assert outcome.created and outcome.stored.version_id == 1
    with mongo_store.unit_of_work() as resources:
        outcome = resources.update("Patient", "pat-42", patient(id="pat-42", gender="other"))
    assert not outcome.created and outcome.stored.version_id == 2


def test_if_match_on_a_stale_version_is_refused(mongo_store: MongoResourceStore) -> None:
    with mongo_store.unit_of_work() as resources:
        created = resources.create(patient())
        resources.update("Patient", created.id, patient(id=created.id), if_match=1)
    with pytest.raises(PreconditionFailedError), mongo_store.unit_of_work() as resources:
        resources.update("Patient", created.id, patient(id=created.id), if_match=1)
    with pytest.raises(PreconditionFailedError), mongo_store.unit_of_work() as resources:
        resources.delete("Patient", created.id, if_match=1)
    with pytest.raises(PreconditionFailedError), mongo_store.unit_of_work() as resources:
        resources.update("Patient", "never-stored", patient(), if_match=1)
    with mongo_store.unit_of_work() as resources:
        assert resources.delete("Patient", created.id, if_match=2) is not None


def test_delete_is_soft_and_read_says_gone(mongo_store: MongoResourceStore) -> None:
    with mongo_store.unit_of_work() as resources:
        created = resources.create(patient())
    with mongo_store.unit_of_work() as resources:
        deleted = resources.delete("Patient", created.id)
        assert deleted is not None and deleted.version_id == 2 and deleted.body is None
        assert resources.delete("Patient", created.id) is None
        assert resources.delete("Patient", "never-stored") is None
    with mongo_store.unit_of_work() as resources:
        with pytest.raises(GoneError):
            resources.read("Patient", created.id)
        with pytest.raises(GoneError):
            resources.vread("Patient", created.id, 2)
        assert resources.vread("Patient", created.id, 1).version_id == 1
        assert [h.deleted for h in resources.history("Patient", created.id)] == [True, False]
    assert search(mongo_store, "Patient", identifier="urn:oid:1.2.3|MRN-1") == []
    with mongo_store.unit_of_work() as resources:
        outcome = resources.update("Patient", created.id, patient(id=created.id))
    assert outcome.created and outcome.stored.version_id == 3


def test_unknown_resources_and_versions_are_not_found(mongo_store: MongoResourceStore) -> None:
    with mongo_store.unit_of_work() as resources:
        with pytest.raises(NotFoundError):
            resources.read("Patient", "nope")
        with pytest.raises(NotFoundError):
            resources.vread("Patient", "nope", 1)
        with pytest.raises(NotFoundError):
            resources.history("Patient", "nope")


def test_invalid_resources_are_rejected_with_the_element_path(
    mongo_store: MongoResourceStore,
) -> None:
    with pytest.raises(InvalidResourceError) as caught, mongo_store.unit_of_work() as resources:
        resources.create(patient(birthDate="17.05.1970"))
    assert caught.value.issues[0].expression == ("Patient.birthDate",)
    with pytest.raises(InputError) as bad_id, mongo_store.unit_of_work() as resources:
        resources.update("Patient", "bad id!", patient())
    assert bad_id.value.issues[0].expression == ("Patient.id",)
    with pytest.raises(InputError), mongo_store.unit_of_work() as resources:
        resources.update("Patient", "a", patient(id="b"))
    with pytest.raises(InvalidResourceError), mongo_store.unit_of_work() as resources:
        resources.update("Observation", "a", patient())
    assert search(mongo_store, "Patient") == []


def test_a_failed_unit_of_work_leaves_nothing_behind(mongo_store: MongoResourceStore) -> None:
    with mongo_store.unit_of_work() as resources:
        kept = resources.create(patient(), resource_id="kept")
    with pytest.raises(RuntimeError), mongo_store.unit_of_work() as resources:
        resources.create(patient(), resource_id="fresh")
        resources.update("Patient", "kept", patient(id="kept", gender="other"))
        resources.update("Patient", "kept", patient(id="kept", gender="male"))
        resources.delete("Patient", "kept")
        raise RuntimeError("crash after the writes, before the commit")
    assert search(mongo_store, "Patient") == [kept.id]
    with mongo_store.unit_of_work() as resources:
        assert resources.read("Patient", "kept") == kept
        assert [h.version_id for h in resources.history("Patient", "kept")] == [1]
        assert resources.history(None) == [kept]
        # The version numbers taken back are free again.
        assert resources.update("Patient", "kept", patient(id="kept")).stored.version_id == 2


# -- history ----------------------------------------------------------------------


def test_history_of_an_instance_a_type_and_the_system(mongo_store: MongoResourceStore) -> None:
    with mongo_store.unit_of_work() as resources:
        pat = resources.create(patient())  # t1
        obs = resources.create(observation(f"Patient/{pat.id}"))  # t2
        resources.update("Patient", pat.id, patient(id=pat.id, gender="other"))  # t3
        resources.delete("Observation", obs.id)  # t4
    with mongo_store.unit_of_work() as resources:
        system = resources.history(None)
        assert [(h.resource_type, h.version_id) for h in system] == [
            ("Observation", 2),
            ("Patient", 2),
            ("Observation", 1),
            ("Patient", 1),
        ]
        assert [h.version_id for h in resources.history("Patient")] == [2, 1]
        assert [h.id for h in resources.history("Observation")] == [obs.id, obs.id]
        assert resources.history(None, count=2) == system[:2]
        t2 = system[2].last_updated
        assert resources.history(None, since=t2) == system[:3]
        assert resources.history("Patient", since=t2) == system[1:2]
        assert resources.history("Patient", pat.id, since=t2, count=5) == system[1:2]
        assert resources.history("Patient", pat.id, since=t2 + timedelta(days=1)) == []
        assert resources.history("Patient", pat.id, count=0) == []
        assert resources.history("Encounter") == []


# -- search -----------------------------------------------------------------------


def test_token_search_by_system_and_code(mongo_store: MongoResourceStore) -> None:
    with mongo_store.unit_of_work() as resources:
        first = resources.create(patient())
        other = patient(identifier=[{"system": "urn:oid:9.9", "value": "MRN-1"}])
        second = resources.create(other)
        nosys = resources.create(patient(identifier=[{"value": "MRN-1"}], gender="male"))
    assert search(mongo_store, "Patient", identifier="urn:oid:1.2.3|MRN-1") == [first.id]
    assert search(mongo_store, "Patient", identifier="MRN-1") == [nosys.id, second.id, first.id]
    assert search(mongo_store, "Patient", identifier="|MRN-1") == [nosys.id]
    assert search(mongo_store, "Patient", identifier="urn:oid:9.9|") == [second.id]
    assert search(mongo_store, "Patient", identifier="urn:oid:1.2.3|MRN-2") == []
    both = search(mongo_store, "Patient", identifier="urn:oid:1.2.3|MRN-1,urn:oid:9.9|MRN-1")
    assert both == [second.id, first.id]
    assert search(mongo_store, "Patient", identifier="MRN-1", gender="male") == [nosys.id]
    assert search(mongo_store, "Patient", identifier="urn:oid:9.9|", gender="male") == []
    assert search(mongo_store, "Patient", **{"gender:not": "male"}) == [second.id, first.id]
    not_first = {"identifier:not": "urn:oid:1.2.3|MRN-1,|MRN-1"}
    assert search(mongo_store, "Patient", **not_first) == [second.id]


def test_string_search_ignores_case_and_accents(mongo_store: MongoResourceStore) -> None:
    with mongo_store.unit_of_work() as resources:
        anna = resources.create(patient())
        ludo = resources.create(patient(name=[{"family": "Mueller-Lüdenscheidt"}]))
    assert search(mongo_store, "Patient", family="muller") == [anna.id]
    assert search(mongo_store, "Patient", **{"family:exact": "Müller"}) == [anna.id]
    assert search(mongo_store, "Patient", **{"family:exact": "müller"}) == []
    assert search(mongo_store, "Patient", **{"name:contains": "LUDEN"}) == [ludo.id]
    assert search(mongo_store, "Patient", **{"name:contains": "uller"}) == [anna.id]
    assert search(mongo_store, "Patient", name="anna") == [anna.id]
    assert search(mongo_store, "Patient", family="muller,mueller") == [ludo.id, anna.id]
    # Regex syntax in a search value is literal text, never a pattern.
    assert search(mongo_store, "Patient", family="50%") == []
    assert search(mongo_store, "Patient", family=".*") == []
    assert search(mongo_store, "Patient", **{"name:contains": "(a|l)"}) == []


def test_date_search_with_prefixes_and_partial_dates(mongo_store: MongoResourceStore) -> None:
    with mongo_store.unit_of_work() as resources:
        may = resources.create(patient())
        june = resources.create(patient(birthDate="1970-06"))

    def found(value: str) -> list[str]:
        return sorted(search(mongo_store, "Patient", birthdate=value))

    assert found("1970-05-17") == [may.id]
    assert found("1970") == sorted([may.id, june.id])
    assert found("lt1970-06-01") == [may.id]
    assert found("ge1970-06-01") == [june.id]
    assert found("gt1970") == []
    assert found("ne1970-05-17") == [june.id]
    assert found("le1970-05-17") == [may.id]
    assert found("sa1970-05") == [june.id]
    assert found("eb1970-06") == [may.id]
    assert found("eq1970-06-15") == []  # the month is wider than the day
    assert found("1970-05-17,1970-06") == sorted([may.id, june.id])
    assert found("ap1970-05-31") == []  # ranges that overlap: neither touches the 31st
    assert found("ap1970-05") == [may.id]
    assert found("ap1970") == sorted([may.id, june.id])
    assert sorted(search(mongo_store, "Patient", birthdate="ge1970", gender="female")) == sorted(
        [may.id, june.id]
    )
    with mongo_store.unit_of_work() as resources:
        both = [("birthdate", "ge1970-05-18"), ("birthdate", "lt1970-06-02")]
        assert [r.id for r in resources.search(parse_search("Patient", both)).resources] == [
            june.id
        ]


def test_reference_and_id_search(mongo_store: MongoResourceStore) -> None:
    with mongo_store.unit_of_work() as resources:
        pat = resources.create(patient())
        obs = resources.create(observation(f"Patient/{pat.id}"))
        url = resources.create(observation("http://elsewhere.example/fhir/Group/g1"))
    assert search(mongo_store, "Observation", subject=f"Patient/{pat.id}") == [obs.id]
    assert search(mongo_store, "Observation", patient=pat.id) == [obs.id]
    assert search(mongo_store, "Observation", subject=f"Patient/{pat.id},Group/g1") == [
        url.id,
        obs.id,
    ]
    assert search(mongo_store, "Observation", code="http://loinc.org|8867-4", patient=pat.id) == [
        obs.id
    ]
    assert search(mongo_store, "Observation", date="2024-01-02") == [url.id, obs.id]
    assert search(mongo_store, "Observation", subject="Patient/other") == []
    assert search(mongo_store, "Observation", _id=f"{obs.id},nope") == [obs.id]
    assert search(mongo_store, "Observation", _id=obs.id, subject="Group/g1") == []
    assert search(mongo_store, "Patient", _id=obs.id) == []


def test_quantity_text_uri_and_missing_search(mongo_store: MongoResourceStore) -> None:
    ucum = "http://unitsofmeasure.org"
    heart_rate = "http://hl7.org/fhir/StructureDefinition/heartrate"
    with mongo_store.unit_of_work() as resources:
        pulse = resources.create(
            observation(
                "Patient/p1",
                meta={"profile": [heart_rate]},
                code={
                    "coding": [{"system": "http://loinc.org", "code": "8867-4"}],
                    "text": "Heart rate",
                },
                valueQuantity={"value": 72, "unit": "/min", "system": ucum, "code": "/min"},
            )
        )
        pressure = observation(
            "Patient/p1", valueQuantity={"value": 120, "unit": "mm[Hg]"}, code={"text": "BP"}
        )
        del pressure["subject"]
        systolic = resources.create(pressure)

    def found(**params: str) -> list[str]:
        return search(mongo_store, "Observation", **params)

    assert found(**{"value-quantity": "72"}) == [pulse.id]
    assert found(**{"value-quantity": "lt100"}) == [pulse.id]
    assert found(**{"value-quantity": "gt100"}) == [systolic.id]
    assert found(**{"value-quantity": "ap70"}) == [pulse.id]
    assert found(**{"value-quantity": "ne72"}) == [systolic.id]
    assert found(**{"value-quantity": "72.4"}) == []
    assert found(**{"value-quantity": f"72|{ucum}|/min"}) == [pulse.id]
    assert found(**{"value-quantity": "72||/min"}) == [pulse.id]
    assert found(**{"value-quantity": "120||mm[Hg]"}) == [systolic.id]
    assert found(**{"value-quantity": "72|http://loinc.org|/min"}) == []
    assert found(**{"code:text": "heart"}) == [pulse.id]
    assert found(**{"code:text": "rate"}) == []
    assert found(_profile=heart_rate) == [pulse.id]
    assert found(**{"_profile:below": "http://hl7.org/fhir/"}) == [pulse.id]
    assert found(_profile="http://hl7.org/fhir/") == []
    assert found(**{"_profile:below": "http://hl7.org/fhir/.*"}) == []
    assert found(**{"subject:missing": "true"}) == [systolic.id]
    assert found(**{"subject:missing": "false"}) == [pulse.id]


def test_number_search_filters() -> None:
    number = NumberValue("eq", 100.0, 99.5, 100.5)
    query = SearchQuery("RiskAssessment", criteria=[Criterion("probability", "number", (number,))])
    assert search_filter(query)["$and"] == [
        {"numbers": {"$elemMatch": {"p": "probability", "v": {"$gte": 99.5, "$lt": 100.5}}}}
    ]


def test_sort_and_includes(mongo_store: MongoResourceStore) -> None:
    with mongo_store.unit_of_work() as resources:
        old = resources.create(patient(birthDate="1950"), resource_id="old")
        young = resources.create(patient(birthDate="2001-02-03"), resource_id="young")
        undated = {k: v for k, v in patient().items() if k != "birthDate"}
        unborn = resources.create(undated, resource_id="unknown")
        obs = resources.create(observation("Patient/young"), resource_id="obs")
    ids = [old.id, young.id, unborn.id]
    assert search(mongo_store, "Patient", _sort="birthdate") == ids
    assert search(mongo_store, "Patient", _sort="-birthdate") == [young.id, old.id, unborn.id]
    assert search(mongo_store, "Patient", _sort="-birthdate", _count="1", _offset="1") == [old.id]
    assert search(mongo_store, "Patient", _sort="family,-_id") == sorted(ids, reverse=True)
    with mongo_store.unit_of_work() as resources:
        query = [("_id", "obs"), ("_include", "Observation:subject")]
        found = resources.search(parse_search("Observation", query))
        assert [r.id for r in found.resources] == [obs.id] and found.total == 1
        assert [r.id for r in found.included] == [young.id]
        query = [("_id", "young,old"), ("_revinclude", "Observation:subject")]
        found = resources.search(parse_search("Patient", query))
        assert [r.id for r in found.included] == [obs.id] and found.total == 2


def test_last_updated_search_on_the_write_time(mongo_store: MongoResourceStore) -> None:
    with mongo_store.unit_of_work() as resources:
        first = resources.create(patient())  # 10:00:01.123
        second = resources.create(patient())  # 10:00:02.123

    def found(*values: str) -> list[str]:
        return search(mongo_store, "Patient", _lastUpdated=",".join(values))

    assert found("ge2024-05-01T10:00:02Z") == [second.id]
    assert found("lt2024-05-01T10:00:02Z") == [first.id]
    assert found("2024-05-01") == [second.id, first.id]
    assert found("2024-05-01T10:00:01.123Z") == [first.id]
    assert found("ne2024-05-01T10:00:01.123Z") == [second.id]
    assert found("lt2024-05-01T10:00:01Z", "gt2024-05-01T10:00:01Z") == [second.id]
    assert found("2024-04") == []


def test_search_count_total_and_order(mongo_store: MongoResourceStore) -> None:
    with mongo_store.unit_of_work() as resources:
        ids = [resources.create(patient()).id for _ in range(5)]
    with mongo_store.unit_of_work() as resources:
        page = resources.search(parse_search("Patient", [("_count", "2")]))
        assert [r.id for r in page.resources] == ids[::-1][:2] and page.total == 5
        untotalled = SearchQuery("Patient", count=3, with_total=False)
        assert resources.search(untotalled).total == 3
        empty = resources.search(parse_search("Patient", [("_count", "0")]))
        assert empty.resources == [] and empty.total == 5
        second_page = resources.search(SearchQuery("Patient", count=2, offset=2))
        assert [r.id for r in second_page.resources] == ids[::-1][2:4]
        assert second_page.total == 5
        only_total = resources.search(SearchQuery("Patient", summary_count=True, with_total=False))
        assert only_total.resources == [] and only_total.total == 5


def test_unsupported_query_features_are_refused_not_ignored() -> None:
    refused = pytest.raises(InputError, match="not supported on the MongoDB back-end")

    @dataclasses.dataclass
    class FutureQuery(SearchQuery):
        """A query field added after this back-end was written."""

        future_filter: tuple[str, ...] = ()

    assert search_filter(FutureQuery("Patient"))["type"] == "Patient"
    with refused:
        search_filter(FutureQuery("Patient", future_filter=("gender", "male")))
    with refused:
        search_filter(SearchQuery("Patient", elements=("name",)))
    chained = parse_search("Observation", [("subject:Patient.name", "anna")])
    with refused:
        search_filter(chained)
    quantity = Criterion("value-quantity", "quantity", ("5.4",))
    with refused:
        search_filter(SearchQuery("Observation", criteria=[quantity]))
    mixed = Criterion("identifier", "token", ("MRN-1",))
    with refused:
        search_filter(SearchQuery("Patient", criteria=[mixed]))

    @dataclasses.dataclass(frozen=True)
    class NotToken(TokenValue):
        negate: bool = False

    negated = Criterion("identifier", "token", (NotToken(None, "MRN-1", negate=True),))
    with refused:
        search_filter(SearchQuery("Patient", criteria=[negated]))


def test_search_filters_are_elem_matches_on_the_index_arrays() -> None:
    query = parse_search("Patient", [("identifier", "urn:oid:1|A,B"), ("family", "mül")])
    assert search_filter(query) == {
        "type": "Patient",
        "deleted": False,
        "$and": [
            {
                "tokens": {
                    "$elemMatch": {
                        "p": "identifier",
                        "$or": [{"c": "A", "s": "urn:oid:1"}, {"c": "B"}],
                    }
                }
            },
            {"strings": {"$elemMatch": {"p": "family", "n": {"$regex": "^mul"}}}},
        ],
    }


# -- referencing and examples ---------------------------------------------------------


def test_referencing_finds_current_resources_pointing_at_a_target(
    mongo_store: MongoResourceStore,
) -> None:
    with mongo_store.unit_of_work() as resources:
        pat = resources.create(patient())
        obs = resources.create(observation(f"Patient/{pat.id}"))
        gone = resources.create(observation(f"Patient/{pat.id}"))
        resources.create(observation("Patient/someone-else"))
        resources.delete("Observation", gone.id)
        condition = resources.create(
            {
                "resourceType": "Condition",
                "subject": {"reference": f"Patient/{pat.id}"},
                "code": {"text": "asthma"},
            }
        )
    with mongo_store.unit_of_work() as resources:
        found = resources.referencing("Patient", pat.id)
        assert [(r.resource_type, r.id) for r in found] == [
            ("Condition", condition.id),
            ("Observation", obs.id),
        ]
        assert resources.referencing("Patient", "nobody") == []


def without_meta(resource: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in resource.items() if k != "meta"}


def test_official_examples_round_trip(mongo_store: MongoResourceStore) -> None:
    originals = [json.loads(p.read_text()) for p in EXAMPLES]
    assert len(originals) >= 250
    with mongo_store.unit_of_work() as resources:
        created = [(o, resources.update(o["resourceType"], o["id"], o).stored) for o in originals]
    with mongo_store.unit_of_work() as resources:
        for original, stored in created:
            read = resources.read(stored.resource_type, stored.id).resource
            assert without_meta(read) == without_meta(original), original["id"]
            for key, value in (original.get("meta") or {}).items():
                if key not in ("versionId", "lastUpdated"):
                    assert read["meta"][key] == value


#: Searches over the official examples that must answer alike on SQL and MongoDB.
PARITY_SEARCHES: list[tuple[str, list[tuple[str, str]]]] = [
    ("Patient", [("family", "chal")]),
    ("Patient", [("name:contains", "a")]),
    ("Patient", [("gender:not", "male")]),
    ("Patient", [("birthdate", "lt1980")]),
    ("Patient", [("birthdate", "ap1974")]),
    ("Patient", [("birthdate", "ne1974-12-25")]),
    ("Patient", [("identifier", "urn:oid:1.2.36.146.595.217.0.1|12345")]),
    ("Patient", [("address-city:exact", "PleasantVille")]),
    ("Patient", [("telecom:missing", "true")]),
    ("Observation", [("code", "http://loinc.org|")]),
    ("Observation", [("value-quantity", "gt100")]),
    ("Observation", [("value-quantity", "ap6")]),
    ("Observation", [("value-quantity", "185||[lb_av]")]),
    ("Observation", [("date", "ge2013"), ("date", "lt2014")]),
    ("Observation", [("date", "sa2012-09-17")]),
    ("Observation", [("date", "eb2013")]),
    ("Observation", [("subject", "Patient/example")]),
    ("Observation", [("patient", "example"), ("code", "8867-4,9279-1")]),
    ("Observation", [("code:text", "body")]),
    ("Observation", [("status", "final"), ("category", "vital-signs")]),
    ("Observation", [("_profile:below", "http://hl7.org/fhir/")]),
    ("Condition", [("onset-date", "le2012")]),
    ("Encounter", [("length", "gt1")]),
    ("Observation", [("code", "8867-4"), ("_include", "Observation:subject")]),
    ("Observation", [("_id", "example,blood-pressure"), ("_include", "Observation:*")]),
    ("Patient", [("_id", "example"), ("_revinclude", "Observation:subject")]),
    ("Patient", [("_id", "example"), ("_revinclude", "*")]),
    ("Encounter", [("_id", "f001"), ("_include", "*"), ("_include:iterate", "Patient:*")]),
    ("Patient", [("_sort", "birthdate")]),
    ("Patient", [("_sort", "-birthdate,family"), ("_count", "7"), ("_offset", "2")]),
    ("Patient", [("gender", "male"), ("_sort", "family,-_id")]),
    ("Patient", [("_sort", "-_id"), ("_count", "5")]),
    ("Observation", [("_sort", "-date,code"), ("_count", "20")]),
    ("Observation", [("_sort", "value-quantity,subject")]),
]


def test_searches_answer_as_the_sql_store_does(sqlite_store: Any) -> None:
    """The same examples and searches on SQLite and mongomock: same matches, totals, includes."""
    mongo = MongoResourceStore(mongomock.MongoClient(tz_aware=True), "medhub_parity")
    originals = [json.loads(p.read_text()) for p in EXAMPLES]
    for store in (sqlite_store, mongo):
        with store.unit_of_work() as resources:
            for original in originals:
                resources.update(original["resourceType"], original["id"], original)
    for resource_type, params in PARITY_SEARCHES:
        answers = []
        for store in (sqlite_store, mongo):
            with store.unit_of_work() as resources:
                result = resources.search(parse_search(resource_type, params))
            included = [(r.resource_type, r.id) for r in result.included]
            ids = [r.id for r in result.resources]
            ordered = any(name == "_sort" for name, _ in params)
            answers.append((ids if ordered else sorted(ids), result.total, included))
        assert answers[0] == answers[1], (resource_type, params)
        assert answers[0][1], (resource_type, params)  # every search finds something


def test_large_bodies_round_trip(mongo_store: MongoResourceStore) -> None:
    note = "x" * 200_000
    body = patient(extension=[{"url": "http://example.org/note", "valueString": note}])
    with mongo_store.unit_of_work() as resources:
        created = resources.create(body)
    with mongo_store.unit_of_work() as resources:
        read = resources.read("Patient", created.id)
    assert read.resource["extension"][0]["valueString"] == note


# -- the server: reachability, capabilities, transactions -------------------------------


def test_an_unreachable_server_is_unavailable_not_a_crash() -> None:
    url = "mongodb://127.0.0.1:9/?serverSelectionTimeoutMS=200&connectTimeoutMS=200"
    store = MongoResourceStore(url, "medhub_unreachable")
    try:
        with pytest.raises(StoreUnavailableError):
            store.ping()
        with pytest.raises(StoreUnavailableError), store.unit_of_work():
            pass
    finally:
        store.close()


def test_the_database_can_come_from_the_url() -> None:
    store = MongoResourceStore("mongodb://127.0.0.1:9/clinic", None)
    assert store.database.name == "clinic"
    store.close()
    with pytest.raises(ConfigurationError):
        MongoResourceStore("mongodb://127.0.0.1:9/", None)


class _Admin:
    def __init__(self, reply: dict[str, Any] | None) -> None:
        self.reply = reply

    def command(self, name: str) -> dict[str, Any]:
        assert name == "hello"
        if self.reply is None:
            raise NotImplementedError("a fake without hello")
        return self.reply


class _Client:
    def __init__(self, reply: dict[str, Any] | None) -> None:
        self.admin = _Admin(reply)


@pytest.mark.parametrize(
    ("reply", "expected"),
    [
        ({"isWritablePrimary": True, "setName": "rs0", "maxWireVersion": 21}, True),
        ({"isWritablePrimary": True, "setName": "rs0", "maxWireVersion": 6}, False),
        ({"msg": "isdbgrid", "maxWireVersion": 8}, True),
        ({"msg": "isdbgrid", "maxWireVersion": 7}, False),
        ({"isWritablePrimary": True, "maxWireVersion": 21}, False),
        (None, False),
    ],
)
def test_transactions_only_where_the_server_runs_them(
    reply: dict[str, Any] | None, expected: bool
) -> None:
    assert _supports_transactions(_Client(reply)) is expected  # type: ignore[arg-type]


def test_mongomock_runs_without_transactions() -> None:
    store = MongoResourceStore(mongomock.MongoClient(), "medhub_test")
    assert store.transactions is False


class _FakeSession:
    """Stands in for a pymongo ``ClientSession``: records the transaction calls, isolates nothing.

    mongomock has no sessions, so this checks the *control flow* of the
    transaction path (begin, commit, abort, commit retry, the session handed
    to every operation); isolation and rollback need the real server.
    """

    def __init__(self, failing_commits: list[str]) -> None:
        self.calls: list[str] = []
        self.in_transaction = False
        self.failing_commits = failing_commits

    def __enter__(self) -> _FakeSession:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.calls.append("end")

    def start_transaction(self, **options: Any) -> None:
        assert options["read_concern"].level == "snapshot"
        self.in_transaction = True
        self.calls.append("start")

    def commit_transaction(self) -> None:
        if self.failing_commits:
            label = self.failing_commits.pop(0)
            self.calls.append(f"commit failed: {label}")
            raise OperationFailure("commit failed", details={"errorLabels": [label]})
        self.in_transaction = False
        self.calls.append("commit")

    def abort_transaction(self) -> None:
        self.in_transaction = False
        self.calls.append("abort")


class _SessionCollection:
    """A mongomock collection that insists every call runs in the open transaction."""

    def __init__(self, inner: Any, client: _SessionClient) -> None:
        self.inner = inner
        self.client = client

    def __getattr__(self, name: str) -> Any:
        method = getattr(self.inner, name)

        def call(*args: Any, session: _FakeSession | None = None, **kwargs: Any) -> Any:
            if name != "create_index":
                assert session is self.client.session and session is not None
                assert session.in_transaction, f"{name} ran outside the transaction"
            return method(*args, **kwargs)

        return call


class _SessionClient:
    """A mongomock client whose sessions are :class:`_FakeSession`."""

    def __init__(self, failing_commits: list[str] | None = None) -> None:
        self.inner: Any = mongomock.MongoClient(tz_aware=True)
        self.failing_commits = failing_commits or []
        self.session: _FakeSession | None = None

    def __getitem__(self, database: str) -> Any:
        client = self

        class _Database:
            name = database

            def __getitem__(self, collection: str) -> _SessionCollection:
                return _SessionCollection(client.inner[database][collection], client)

        return _Database()

    def start_session(self) -> _FakeSession:
        self.session = _FakeSession(self.failing_commits)
        return self.session


def _transactional(client: _SessionClient) -> MongoResourceStore:
    return MongoResourceStore(client, "medhub_test", transactions=True)  # type: ignore[arg-type]


def test_a_transactional_unit_commits_on_exit_and_aborts_on_error() -> None:
    client = _SessionClient()
    store = _transactional(client)
    with store.unit_of_work() as resources:
        created = resources.create(patient())
        resources.update("Patient", created.id, patient(id=created.id, gender="other"))
        assert resources.search(parse_search("Patient", [("gender", "other")])).total == 1
        assert [h.version_id for h in resources.history("Patient", created.id)] == [2, 1]
    assert client.session is not None and client.session.calls == ["start", "commit", "end"]
    with pytest.raises(GoneError), store.unit_of_work() as resources:
        resources.delete("Patient", created.id)
        resources.read("Patient", created.id)
    assert client.session.calls == ["start", "abort", "end"]


def test_a_commit_with_an_unknown_outcome_is_retried_and_conflicts_are_409() -> None:
    client = _SessionClient(["UnknownTransactionCommitResult"])
    with _transactional(client).unit_of_work() as resources:
        resources.create(patient())
    assert client.session is not None
    assert client.session.calls == [
        "start",
        "commit failed: UnknownTransactionCommitResult",
        "commit",
        "end",
    ]
    client.failing_commits.append("TransientTransactionError")
    with pytest.raises(ConcurrentWriteError), _transactional(client).unit_of_work() as resources:
        resources.create(patient())


def test_a_unit_racing_another_never_loses_a_version(mongo_store: MongoResourceStore) -> None:
    """Interleaved units on one resource: the loser gets a retryable 409, history stays whole.

    With transactions the second writer conflicts with the first's open
    transaction. Without, it sees the first's write and builds on it; the
    first then finds its version gone, fails, and its undo leaves the
    resource (and its history) to the writer that built on it.
    """
    with mongo_store.unit_of_work() as resources:
        resources.create(patient(), resource_id="raced")
    if mongo_store.transactions:
        with mongo_store.unit_of_work() as first:
            first.update("Patient", "raced", patient(id="raced", gender="other"))
            with pytest.raises(ConcurrentWriteError), mongo_store.unit_of_work() as second:
                second.update("Patient", "raced", patient(id="raced", gender="male"))
        winner = ([2, 1], "other")
    else:
        with pytest.raises(ConcurrentWriteError), mongo_store.unit_of_work() as first:
            first.update("Patient", "raced", patient(id="raced", gender="other"))
            with mongo_store.unit_of_work() as second:
                second.update("Patient", "raced", patient(id="raced", gender="male"))
            first.update("Patient", "raced", patient(id="raced", gender="unknown"))
        winner = ([3, 2, 1], "male")
    with mongo_store.unit_of_work() as resources:
        versions = [h.version_id for h in resources.history("Patient", "raced")]
        current = resources.read("Patient", "raced")
    assert (versions, current.resource["gender"]) == winner


def test_a_failed_unit_is_invisible_or_undone(mongo_store: MongoResourceStore) -> None:
    """With transactions, others never see uncommitted writes; without, they are undone."""
    with pytest.raises(RuntimeError), mongo_store.unit_of_work() as resources:
        resources.create(patient(), resource_id="in-flight")
        seen = search(mongo_store, "Patient", _id="in-flight")
        assert seen == ([] if mongo_store.transactions else ["in-flight"])
        raise RuntimeError("roll back")
    assert search(mongo_store, "Patient", _id="in-flight") == []


def test_bson_time_rounding() -> None:
    value = datetime(2024, 1, 1, 0, 0, 0, 1500, tzinfo=UTC)
    assert floor_ms(value).microsecond == 1000
    assert ceil_ms(value).microsecond == 2000
    assert ceil_ms(floor_ms(value)) == floor_ms(value)
    assert floor_ms(datetime(2024, 1, 1)).tzinfo is UTC
    end = datetime.max.replace(tzinfo=UTC)
    assert ceil_ms(end) == end.replace(microsecond=999000)
