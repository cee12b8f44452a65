"""Search planning without a database: FHIRPath compilation, the served registry, query parsing."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from medhub.errors import InputError
from medhub.fhir.fhirpath_compile import Step, compile_expression, evaluate
from medhub.fhir.indexing import extract_index_entries
from medhub.fhir.search import (
    ChainValue,
    HasValue,
    Include,
    MissingValue,
    NumberValue,
    SortKey,
    parse_search,
)
from medhub.fhir.search_parameters import NOT_SERVED, SEARCH_PARAMETERS, search_param
from medhub.fhir.sql_search import search_statements

EXAMPLES = Path(__file__).resolve().parents[1] / "data" / "fhir-r4-examples"

#: What the US Core 3.1 / 6.1 profiles require servers to support, per type.
US_CORE = {
    "Patient": ["_id", "birthdate", "family", "gender", "given", "identifier", "name"],
    "Observation": ["category", "code", "date", "patient", "status", "_lastUpdated"],
    "Encounter": ["_id", "class", "date", "identifier", "patient", "status", "type"],
    "Condition": ["category", "clinical-status", "patient", "onset-date", "code"],
    "AllergyIntolerance": ["clinical-status", "patient"],
    "MedicationRequest": ["status", "intent", "patient", "encounter", "authoredon"],
    "Device": ["patient", "type"],
    "Practitioner": ["name", "identifier"],
    "Organization": ["name", "address"],
    "Location": ["name", "address", "address-city", "address-state", "address-postalcode"],
}


@pytest.mark.parametrize("resource_type", sorted(US_CORE))
def test_the_us_core_parameters_are_served(resource_type: str) -> None:
    for name in US_CORE[resource_type]:
        dated = "date" in name or name in ("authoredon", "_lastUpdated")
        parse_search(resource_type, [(name, "2020" if dated else "x")])


def test_the_parameters_not_served_are_listed() -> None:
    """Everything FHIR defines on the served types is indexed, except these (and composites)."""
    unserved = {
        (resource_type, name)
        for resource_type, params in NOT_SERVED.items()
        for name, why in params.items()
        if why.type not in ("composite", "special") and name not in ("_text", "_content", "_query")
    }
    assert unserved == {("Patient", "deceased")}  # ``deceased.exists() and deceased != false``
    assert sum(len(p) for p in SEARCH_PARAMETERS.values()) > 350


def test_definitions_come_from_the_official_package() -> None:
    patient = search_param("Observation", "patient")
    assert patient is not None
    assert patient.url == "http://hl7.org/fhir/SearchParameter/clinical-patient"
    assert patient.expression == "Observation.subject.where(resolve() is Patient)"
    assert patient.targets == ("Patient", "Group")


def test_compiled_expressions() -> None:
    assert compile_expression("(Observation.value as Quantity) | Observation.code") == (
        (Step("valueQuantity"),),
        (Step("code", choice=True),),
    )
    assert compile_expression("Condition.onset.as(dateTime)") == ((Step("onsetDateTime"),),)
    assert compile_expression("Patient.telecom.where(system='phone')") == (
        (Step("telecom", equals=("system", "phone")),),
    )
    assert compile_expression("Patient.deceased.exists() and Patient.deceased != false") is None
    assert compile_expression("") is None


def test_evaluate_follows_casts_filters_choices_and_extensions() -> None:
    observation = json.loads((EXAMPLES / "Observation-f001.json").read_text(encoding="utf-8"))
    date = compile_expression("Observation.effective")
    assert date is not None
    assert evaluate(date, observation) == [observation["effectivePeriod"]]
    patient_ref = compile_expression("Observation.subject.where(resolve() is Patient)")
    group_ref = compile_expression("Observation.subject.where(resolve() is Group)")
    assert patient_ref is not None and group_ref is not None
    assert evaluate(patient_ref, observation) == [observation["subject"]]
    assert evaluate(group_ref, observation) == []
    extension = compile_expression("Patient.extension('http://x/e')")
    assert extension is not None
    patient = {"extension": [{"url": "http://x/e", "valueString": "a"}, {"url": "y"}]}
    assert evaluate(extension, patient) == ["a"]


@given(
    st.decimals(min_value=-(10**6), max_value=10**6, allow_nan=False, places=3),
)
def test_a_number_covers_the_range_of_its_precision(number: object) -> None:
    text = str(number)
    value = parse_search("Observation", [("value-quantity", text)]).criteria[0].values[0]
    assert isinstance(value, NumberValue)
    assert value.low <= value.value < value.high
    digits = len(text.partition(".")[2]) if "." in text else 0
    assert value.high - value.low == pytest.approx(10.0**-digits)


def test_result_parameters() -> None:
    query = parse_search(
        "Observation",
        [
            ("_sort", "-date,code,_id"),
            ("_count", "5"),
            ("_offset", "10"),
            ("_include", "Observation:subject:Patient"),
            ("_revinclude:iterate", "Provenance:target"),
            ("_elements", "code,status"),
            ("_total", "none"),
        ],
    )
    assert query.sort == (
        SortKey("date", "date", True),
        SortKey("code", "token", False),
        SortKey("_id", "id", False),
    )
    assert (query.count, query.offset, query.with_total) == (5, 10, False)
    assert query.includes == (
        Include("Observation", "subject", "Patient"),
        Include("Provenance", "target", None, reverse=True, iterate=True),
    )
    assert query.elements == ("code", "status")
    summary = parse_search("Observation", [("_summary", "count"), ("_total", "none")])
    assert summary.summary_count and summary.with_total


def test_chains_has_and_missing_parse_into_nested_criteria() -> None:
    query = parse_search(
        "Observation",
        [
            ("subject:Patient.organization.name", "acme"),
            ("_has:Provenance:target:agent", "Practitioner/1"),
            ("value-quantity:missing", "true"),
        ],
    )
    chain, has, missing = query.criteria
    assert chain.kind == "chain"
    first = chain.values[0]
    assert isinstance(first, ChainValue) and first.target_type == "Patient"
    assert first.inner.kind == "chain"
    assert isinstance(has.values[0], HasValue) and has.values[0].source_type == "Provenance"
    assert missing.values == (MissingValue("quantity", True),)


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("nope", "x", "unknown search parameter"),
        ("status:above", "x", "modifier :above"),
        ("code:missing", "maybe", "true or false"),
        ("_count", "-1", "must not be negative"),
        ("_sort", "nope", "unknown parameter"),
        ("_include", "Patient:organization", "not the searched type"),
        ("_include", "Observation:code", "not a reference"),
        ("_summary", "text", "not supported"),
        ("_total", "maybe", "none, estimate or accurate"),
        ("value-quantity", "abc", "not a number"),
        ("code.name", "x", "not a reference parameter"),
        ("subject:Device.birthdate", "x", "no target"),
        ("_has:Observation:code:status", "final", "not a reference parameter"),
        ("combo-code-value-quantity", "x$1", "composite parameters are not supported"),
    ],
)
def test_bad_queries_name_what_is_wrong(key: str, value: str, message: str) -> None:
    with pytest.raises(InputError, match=message):
        parse_search("Observation", [(key, value)])


def test_statements_are_shared_by_searches_of_the_same_shape() -> None:
    first, params_a = search_statements(parse_search("Observation", [("code", "a|1")]))
    second, params_b = search_statements(parse_search("Observation", [("code", "b|2")]))
    assert first is second
    assert params_a != params_b


@pytest.mark.parametrize(
    "pairs",
    [
        [("code", "a|1,b|2"), ("_lastUpdated", "ge2024"), ("patient", "p1")],
        [("code:not", "x"), ("value-quantity:missing", "true"), ("date", "ap2024,lt2020")],
        [("_lastUpdated", "gt2020"), ("subject:Patient.name", "x"), ("_sort", "-date,code")],
        [("status", "final"), ("_has:Provenance:target:agent", "Practitioner/1"), ("_id", "a")],
        [("value-quantity", "5||mg,ap3|http://u|kg"), ("code:text", "heart"), ("_sort", "_id")],
        [("patient.organization.name", "acme"), ("category", "vital-signs")],
    ],
)
def test_every_bound_value_has_its_parameter(pairs: list[tuple[str, str]]) -> None:
    """The shape walk and the SQL walk bind the same parameters in the same order."""
    statements, params = search_statements(parse_search("Observation", pairs))
    assert statements.page is not None
    bound = {k for k in statements.page.compile().params if k.startswith("p") and k[1:].isdigit()}
    assert bound == {k for k in params if k != "offset"}


def test_every_official_example_indexes_through_the_compiled_expressions() -> None:
    served, empty = 0, []
    for path in sorted(EXAMPLES.glob("*.json")):
        resource = json.loads(path.read_text(encoding="utf-8"))
        if resource.get("resourceType") not in SEARCH_PARAMETERS:
            continue
        served += 1
        entries = extract_index_entries(resource)
        found = entries.tokens or entries.strings or entries.dates or entries.references
        if not (found or entries.quantities or entries.uris):
            empty.append(path.name)
    assert served > 200
    # these two carry only ``status``, which is no DetectedIssue search parameter
    assert empty == ["DetectedIssue-allergy.json", "DetectedIssue-lab.json"]
