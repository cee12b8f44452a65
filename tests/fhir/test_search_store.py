"""FHIR search over the SQL store, on SQLite, PostgreSQL and MariaDB, with official R4 examples.

Every parameter used here is served from the vendored HL7 SearchParameter
definitions; the examples are the official ones in tests/data/fhir-r4-examples.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from medhub.errors import InputError
from medhub.fhir.search import parse_search
from medhub.fhir.sql_store import SqlResourceStore
from medhub.fhir.store import SearchResult

EXAMPLES = Path(__file__).resolve().parents[1] / "data" / "fhir-r4-examples"
LOADED = (
    "Patient-example",
    "Patient-f001",
    "Organization-1",
    "Organization-f001",
    "Observation-example",
    "Observation-blood-pressure",
    "Observation-bmi",
    "Observation-body-temperature",
    "Observation-f001",
    "Encounter-example",
)
PROVENANCE = {
    "resourceType": "Provenance",
    "target": [{"reference": "Observation/bmi"}],
    "recorded": "2024-01-01T00:00:00Z",
    "agent": [{"who": {"reference": "Practitioner/x"}}],
}


def example(name: str) -> dict[str, Any]:
    body: dict[str, Any] = json.loads((EXAMPLES / f"{name}.json").read_text(encoding="utf-8"))
    return body


@pytest.fixture
def loaded(store: SqlResourceStore) -> SqlResourceStore:
    with store.unit_of_work() as resources:
        for name in LOADED:
            body = example(name)
            resources.update(body["resourceType"], body["id"], body)
        resources.update("Provenance", "prov1", {**PROVENANCE, "id": "prov1"})
    return store


def run(store: SqlResourceStore, resource_type: str, *pairs: tuple[str, str]) -> SearchResult:
    with store.unit_of_work() as resources:
        return resources.search(parse_search(resource_type, list(pairs)))


def ids(store: SqlResourceStore, resource_type: str, *pairs: tuple[str, str]) -> list[str]:
    return sorted(r.id for r in run(store, resource_type, *pairs).resources)


def test_string_default_exact_and_contains(loaded: SqlResourceStore) -> None:
    assert ids(loaded, "Patient", ("family", "chal")) == ["example"]
    assert ids(loaded, "Patient", ("family:exact", "Chalmers")) == ["example"]
    assert ids(loaded, "Patient", ("family:exact", "chalmers")) == []
    assert ids(loaded, "Patient", ("name:contains", "euve")) == ["f001"]
    assert ids(loaded, "Patient", ("name", "peter,pieter")) == ["example", "f001"]


def test_token_forms_not_and_text(loaded: SqlResourceStore) -> None:
    assert ids(loaded, "Observation", ("code", "http://loinc.org|29463-7")) == ["example"]
    assert ids(loaded, "Observation", ("code", "29463-7")) == ["example"]
    assert ids(loaded, "Observation", ("code", "|29463-7")) == []
    assert "example" in ids(loaded, "Observation", ("code", "http://snomed.info/sct|"))
    assert ids(loaded, "Patient", ("gender:not", "female")) == ["example", "f001"]
    assert ids(loaded, "Patient", ("gender:not", "male")) == []
    assert "example" not in ids(loaded, "Observation", ("code:not", "29463-7"))
    assert "bmi" in ids(loaded, "Observation", ("code:not", "29463-7"))
    assert ids(loaded, "Observation", ("code:text", "body weight")) == ["example"]


def test_reference_forms_type_modifier_and_chains(loaded: SqlResourceStore) -> None:
    example_obs = ["blood-pressure", "bmi", "body-temperature", "example"]
    assert ids(loaded, "Observation", ("subject", "Patient/example")) == example_obs
    assert ids(loaded, "Observation", ("patient", "example")) == example_obs
    assert ids(loaded, "Observation", ("subject:Patient", "f001")) == ["f001"]
    assert ids(loaded, "Observation", ("subject:Patient.name", "pieter")) == ["f001"]
    assert ids(loaded, "Observation", ("patient.birthdate", "1974")) == example_obs
    assert ids(loaded, "Encounter", ("subject:Patient.organization", "Organization/1")) == [
        "example"
    ]


def test_reverse_chaining_has(loaded: SqlResourceStore) -> None:
    assert ids(loaded, "Patient", ("_has:Observation:patient:code", "15074-8")) == ["f001"]
    assert ids(loaded, "Observation", ("_has:Provenance:target:agent", "Practitioner/x")) == ["bmi"]
    assert ids(loaded, "Patient", ("_has:Observation:patient:code", "no-such-code")) == []


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("1974", ["example"]),
        ("1974-12", ["example"]),
        ("eq1974-12-25", ["example"]),
        ("ne1974-12-25", ["f001"]),
        ("lt1950", ["f001"]),
        ("le1944-11-17", ["f001"]),
        ("gt1950", ["example"]),
        ("ge1974-12-25", ["example"]),
        ("sa1944-11-17", ["example"]),
        ("eb1974", ["f001"]),
    ],
)
def test_date_prefixes_on_partial_dates(
    loaded: SqlResourceStore, value: str, expected: list[str]
) -> None:
    assert ids(loaded, "Patient", ("birthdate", value)) == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("185", ["example"]),
        ("185|http://unitsofmeasure.org|[lb_av]", ["example"]),
        ("185||lbs", ["example"]),
        ("185|http://unitsofmeasure.org|kg", []),
        ("gt100", ["example"]),
        ("lt17", ["bmi", "f001"]),
        ("16.2", ["bmi"]),
        ("16", ["bmi"]),  # the precision of 16 is [15.5, 16.5)
        ("ap36", ["body-temperature"]),
        ("ge36.5|http://unitsofmeasure.org|Cel", ["body-temperature"]),
    ],
)
def test_quantity_with_units_prefixes_and_precision(
    loaded: SqlResourceStore, value: str, expected: list[str]
) -> None:
    assert ids(loaded, "Observation", ("value-quantity", value)) == expected


def test_missing_and_and_or(loaded: SqlResourceStore) -> None:
    assert ids(loaded, "Observation", ("value-quantity:missing", "true")) == ["blood-pressure"]
    assert "blood-pressure" not in ids(loaded, "Observation", ("value-quantity:missing", "false"))
    both = ids(loaded, "Observation", ("code", "39156-5,8310-5"))
    assert both == ["bmi", "body-temperature"]
    assert ids(loaded, "Observation", ("code", "39156-5,8310-5"), ("value-quantity", "gt20")) == [
        "body-temperature"
    ]


def test_id_last_updated_and_uri(loaded: SqlResourceStore) -> None:
    assert ids(loaded, "Patient", ("_id", "f001,nobody")) == ["f001"]
    assert ids(loaded, "Patient", ("_lastUpdated", "gt2000")) == ["example", "f001"]
    assert ids(loaded, "Patient", ("_lastUpdated", "lt2000")) == []
    with loaded.unit_of_work() as resources:
        body = {**example("Patient-f001"), "meta": {"profile": ["http://example.org/p/x"]}}
        resources.update("Patient", "f001", body)
    assert ids(loaded, "Patient", ("_profile", "http://example.org/p/x")) == ["f001"]
    assert ids(loaded, "Patient", ("_profile:below", "http://example.org/p")) == ["f001"]


def test_sort_several_keys_and_descending(loaded: SqlResourceStore) -> None:
    result = run(loaded, "Observation", ("_sort", "-value-quantity"))
    assert [r.id for r in result.resources][:4] == ["example", "body-temperature", "bmi", "f001"]
    assert result.resources[-1].id == "blood-pressure"  # no value: last, on every back-end
    by_subject = run(loaded, "Observation", ("_sort", "subject,-date"))
    # Patient/example before Patient/f001; then newest first; equal dates by id
    assert [r.id for r in by_subject.resources] == [
        "example",
        "blood-pressure",
        "bmi",
        "body-temperature",
        "f001",
    ]


def test_count_offset_pages_partition_the_matches(loaded: SqlResourceStore) -> None:
    pages = [
        [r.id for r in run(loaded, "Observation", ("_count", "2"), ("_offset", str(o))).resources]
        for o in (0, 2, 4)
    ]
    flat = [i for page in pages for i in page]
    assert sorted(flat) == ids(loaded, "Observation")
    assert len(set(flat)) == 5
    assert run(loaded, "Observation", ("_count", "2")).total == 5


def test_summary_count_and_total_none(loaded: SqlResourceStore) -> None:
    counted = run(loaded, "Observation", ("_summary", "count"))
    assert counted.total == 5 and counted.resources == []
    uncounted = run(loaded, "Observation", ("_total", "none"))
    assert uncounted.total is None and len(uncounted.resources) == 5


def test_include_revinclude_and_iterate(loaded: SqlResourceStore) -> None:
    result = run(loaded, "Observation", ("_id", "bmi"), ("_include", "Observation:subject"))
    assert [(r.resource_type, r.id) for r in result.included] == [("Patient", "example")]
    rev = run(loaded, "Observation", ("_id", "bmi"), ("_revinclude", "Provenance:target"))
    assert [(r.resource_type, r.id) for r in rev.included] == [("Provenance", "prov1")]
    iterated = run(
        loaded,
        "Observation",
        ("_id", "bmi"),
        ("_include", "Observation:patient"),
        ("_include:iterate", "Patient:organization"),
    )
    assert {(r.resource_type, r.id) for r in iterated.included} == {
        ("Patient", "example"),
        ("Organization", "1"),
    }
    star = run(loaded, "Patient", ("_id", "example"), ("_revinclude", "*"))
    assert {r.id for r in star.included if r.resource_type == "Observation"} == {
        "example",
        "blood-pressure",
        "bmi",
        "body-temperature",
    }
    assert star.total == 1


def test_index_rows_follow_updates_and_deletes(loaded: SqlResourceStore) -> None:
    with loaded.unit_of_work() as resources:
        resources.delete("Observation", "bmi")
    assert ids(loaded, "Observation", ("code", "39156-5")) == []
    assert ids(loaded, "Patient", ("_has:Observation:patient:code", "39156-5")) == []
    # The total of an index-driven search counts the index rows' ids alone: a deleted
    # resource must not be among them (its rows are cleared with the delete).
    assert run(loaded, "Observation", ("code", "39156-5")).total == 0
    assert run(loaded, "Observation", ("subject", "Patient/example")).total == len(
        ids(loaded, "Observation", ("subject", "Patient/example"))
    )


def test_errors_name_the_parameter() -> None:
    with pytest.raises(InputError, match="unknown search parameter 'nope'"):
        parse_search("Patient", [("nope", "x")])
    with pytest.raises(InputError, match="modifier :above"):
        parse_search("Patient", [("name:above", "x")])
    with pytest.raises(InputError, match="not supported"):
        parse_search("Observation", [("code-value-quantity", "x$1")])
    lenient = parse_search("Patient", [("nope", "x"), ("family", "x")], lenient=True)
    assert lenient.ignored == ["nope"] and len(lenient.criteria) == 1


def test_chains_has_and_negations_as_secondary_criteria(loaded: SqlResourceStore) -> None:
    """After the first (driving) criterion the others are EXISTS probes: same answers."""
    assert ids(loaded, "Observation", ("_id", "f001,bmi"), ("subject:Patient.name", "pieter")) == [
        "f001"
    ]
    assert ids(
        loaded, "Patient", ("_id", "example,f001"), ("_has:Observation:patient:code", "15074-8")
    ) == ["f001"]
    assert ids(loaded, "Observation", ("patient", "example"), ("code:not", "29463-7")) == [
        "blood-pressure",
        "bmi",
        "body-temperature",
    ]
    assert ids(
        loaded, "Observation", ("patient", "example"), ("value-quantity:missing", "true")
    ) == ["blood-pressure"]
    assert ids(
        loaded, "Observation", ("code:not", "29463-7"), ("value-quantity:missing", "false")
    ) == ["bmi", "body-temperature", "f001"]
