"""FHIR dates as UTC ranges, and the search-index entries extracted from resources."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from medhub.errors import InputError
from medhub.fhir.dates import parse_fhir_date_range
from medhub.fhir.indexing import (
    FAR_FUTURE,
    FAR_PAST,
    DateEntry,
    ReferenceEntry,
    StringEntry,
    TokenEntry,
    extract_index_entries,
    normalize_string,
    split_reference,
)


def utc(*parts: int) -> datetime:
    return datetime(*parts, tzinfo=UTC)


# -- parse_fhir_date_range -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "low", "high"),
    [
        ("2024", utc(2024, 1, 1), utc(2025, 1, 1)),
        ("2024-02", utc(2024, 2, 1), utc(2024, 3, 1)),
        ("2023-02", utc(2023, 2, 1), utc(2023, 3, 1)),
        ("2024-12", utc(2024, 12, 1), utc(2025, 1, 1)),
        ("2024-02-29", utc(2024, 2, 29), utc(2024, 3, 1)),
        ("2024-12-31", utc(2024, 12, 31), utc(2025, 1, 1)),
        ("2024-03-05T10:30", utc(2024, 3, 5, 10, 30), utc(2024, 3, 5, 10, 31)),
        ("2024-03-05T10:30Z", utc(2024, 3, 5, 10, 30), utc(2024, 3, 5, 10, 31)),
        ("2024-03-05T10:30:15Z", utc(2024, 3, 5, 10, 30, 15), utc(2024, 3, 5, 10, 30, 16)),
        ("2024-03-05T10:30:15", utc(2024, 3, 5, 10, 30, 15), utc(2024, 3, 5, 10, 30, 16)),
        (
            "2024-03-05T10:30:15.5Z",
            utc(2024, 3, 5, 10, 30, 15, 500_000),
            utc(2024, 3, 5, 10, 30, 15, 600_000),
        ),
        (
            "2024-03-05T10:30:15.123Z",
            utc(2024, 3, 5, 10, 30, 15, 123_000),
            utc(2024, 3, 5, 10, 30, 15, 124_000),
        ),
        (
            "2024-03-05T10:30:15.123456Z",
            utc(2024, 3, 5, 10, 30, 15, 123_456),
            utc(2024, 3, 5, 10, 30, 15, 123_457),
        ),
        (
            "2024-03-05T10:30:15.123456789Z",
            utc(2024, 3, 5, 10, 30, 15, 123_456),
            utc(2024, 3, 5, 10, 30, 15, 123_457),
        ),
        ("2024-03-05T10:30:15+02:00", utc(2024, 3, 5, 8, 30, 15), utc(2024, 3, 5, 8, 30, 16)),
        ("2024-03-05T10:30:15-05:30", utc(2024, 3, 5, 16, 0, 15), utc(2024, 3, 5, 16, 0, 16)),
        ("2024-03-05T00:15:00+01:00", utc(2024, 3, 4, 23, 15), utc(2024, 3, 4, 23, 15, 1)),
        ("2024-12-31T23:30:00-01:00", utc(2025, 1, 1, 0, 30), utc(2025, 1, 1, 0, 30, 1)),
        ("2024-03-05T10:30:15+00:00", utc(2024, 3, 5, 10, 30, 15), utc(2024, 3, 5, 10, 30, 16)),
        (" 2024-03-05 ", utc(2024, 3, 5), utc(2024, 3, 6)),
    ],
)
def test_a_fhir_date_covers_the_range_of_its_precision(
    text: str, low: datetime, high: datetime
) -> None:
    assert parse_fhir_date_range(text) == (low, high)


def test_ranges_are_half_open_and_in_utc() -> None:
    low, high = parse_fhir_date_range("2024-03-05T10:30:15.25-05:30")
    assert low.tzinfo == UTC and high.tzinfo == UTC
    assert high - low == timedelta(milliseconds=10)


@pytest.mark.parametrize(
    "text",
    [
        "",
        "garbage",
        "24",
        "2024-3-5",
        "2024/03/05",
        "20240305",
        "2024-03-05T10",
        "2024-03-05Z",
        "2024-03-05T10:30:15+0200",
        "2024-03-05T10:30:15.Z",
        "2024-13",
        "2024-00",
        "2023-02-29",
        "2024-04-31",
        "2024-03-05T24:00",
        "2024-03-05T10:60",
        "2024-03-05T10:30:61Z",
        "2024-03-05T10:30:00+24:00",
        "0000",
    ],
)
def test_text_that_is_not_a_fhir_date_is_an_input_error(text: str) -> None:
    with pytest.raises(InputError):
        parse_fhir_date_range(text)


@pytest.mark.parametrize(
    "text", ["9999-12-31", "9999-12-31T23:59", "9999-12-31T23:59:59Z", "0001-01-01T00:30:00+01:00"]
)
def test_edge_of_range_dates_raise_nothing_but_input_error(text: str) -> None:
    try:
        parse_fhir_date_range(text)
    except InputError:
        pass


# -- helpers ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "normalized"),
    [
        ("Müller", "muller"),
        ("ZOË", "zoe"),
        ("  Jean   Luc\t", "jean luc"),
        ("Straße", "strasse"),
        ("Ångström", "angstrom"),
        ("ﬁnn", "finn"),
    ],
)
def test_strings_are_normalised_case_and_accent_insensitively(value: str, normalized: str) -> None:
    assert normalize_string(value) == normalized


def test_normalised_strings_are_cut_to_255_characters() -> None:
    assert len(normalize_string("a" * 1000)) == 255


@pytest.mark.parametrize(
    ("reference", "parts"),
    [
        ("Patient/123", ("Patient", "123")),
        ("http://example.org/fhir/Patient/123", ("Patient", "123")),
        ("http://example.org/fhir/Patient/123/_history/2", ("Patient", "123")),
        ("Patient/123/_history/2", ("Patient", "123")),
        ("urn:uuid:0b2b1e7c-6f4c-4c1c-9a2e-6a5b3c1d2e3f", (None, None)),
        ("#contained-1", (None, None)),
        ("Patient/", (None, None)),
        ("patient/123", (None, None)),
    ],
)
def test_references_split_into_type_and_id(
    reference: str, parts: tuple[str | None, str | None]
) -> None:
    assert split_reference(reference) == parts


# -- extract_index_entries -------------------------------------------------------------------

PATIENT: dict[str, Any] = {
    "resourceType": "Patient",
    "id": "p1",
    "identifier": [
        {"system": "urn:oid:1.2.840.114350", "value": "MRN-1"},
        {"value": "no-system"},
    ],
    "active": True,
    "name": [{"family": "Müller", "given": ["Zoë", "Anne"], "text": "Zoë Anne MÜLLER"}],
    "gender": "female",
    "birthDate": "1970-05",
    "address": [{"line": ["1 Main St"], "city": "Springfield", "postalCode": "62701"}],
    "telecom": [{"system": "phone", "value": "555-1234", "use": "home"}],
    "managingOrganization": {"reference": "Organization/o1"},
    "generalPractitioner": [{"reference": "http://x.example/fhir/Practitioner/pr1/_history/3"}],
}

OBSERVATION: dict[str, Any] = {
    "resourceType": "Observation",
    "status": "final",
    "category": [{"coding": [{"system": "http://cat.example", "code": "vital-signs"}]}],
    "code": {
        "coding": [
            {"system": "http://loinc.org", "code": "8867-4"},
            {"system": "urn:iso:std:iso:11073:10101", "code": "147842"},
        ],
        "text": "Heart rate",
    },
    "subject": {"reference": "Patient/p1"},
    "encounter": {"reference": "Encounter/e1"},
    "device": {"reference": "urn:uuid:0b2b1e7c-6f4c-4c1c-9a2e-6a5b3c1d2e3f"},
    "effectivePeriod": {"start": "2024-03-05T10:00:00+01:00", "end": "2024-03-05T10:05:00Z"},
}


def test_patient_tokens() -> None:
    tokens = extract_index_entries(PATIENT).tokens
    assert TokenEntry("identifier", "urn:oid:1.2.840.114350", "MRN-1") in tokens
    assert TokenEntry("identifier", None, "no-system") in tokens
    assert TokenEntry("gender", None, "female") in tokens
    assert TokenEntry("active", None, "true") in tokens
    assert TokenEntry("telecom", "phone", "555-1234") in tokens
    assert TokenEntry("phone", "phone", "555-1234") in tokens


def test_patient_strings_are_normalised_and_keep_the_exact_text() -> None:
    strings = extract_index_entries(PATIENT).strings
    by_param: dict[str, list[tuple[str, str]]] = {}
    for entry in strings:
        by_param.setdefault(entry.param, []).append((entry.normalized, entry.exact))
    assert by_param["family"] == [("muller", "Müller")]
    assert by_param["given"] == [("zoe", "Zoë"), ("anne", "Anne")]
    assert ("zoe anne muller", "Zoë Anne MÜLLER") in by_param["name"]
    assert ("muller", "Müller") in by_param["name"]
    assert {n for n, _ in by_param["address"]} == {"1 main st", "springfield", "62701"}


def test_patient_birth_date_is_indexed_as_its_range() -> None:
    dates = extract_index_entries(PATIENT).dates
    assert dates == [DateEntry("birthdate", utc(1970, 5, 1), utc(1970, 6, 1))]


def test_patient_references_are_split_into_type_and_id() -> None:
    references = extract_index_entries(PATIENT).references
    assert sorted(references, key=lambda e: e.param, reverse=True) == [
        ReferenceEntry("organization", "Organization", "o1", "Organization/o1"),
        ReferenceEntry(
            "general-practitioner",
            "Practitioner",
            "pr1",
            "http://x.example/fhir/Practitioner/pr1/_history/3",
        ),
    ]


def test_observation_entries() -> None:
    entries = extract_index_entries(OBSERVATION)
    tokens = [e for e in entries.tokens if e.param in ("code", "category", "status")]
    assert sorted(tokens, key=lambda e: (e.param, e.code)) == [
        TokenEntry("category", "http://cat.example", "vital-signs"),
        TokenEntry("code", "urn:iso:std:iso:11073:10101", "147842", "heart rate"),
        TokenEntry("code", "http://loinc.org", "8867-4", "heart rate"),
        TokenEntry("status", None, "final"),
    ]
    # combo-code reads Observation.code | Observation.component.code (the official expression)
    assert {e.code for e in entries.tokens if e.param == "combo-code"} == {"8867-4", "147842"}
    assert entries.strings == []
    assert entries.dates == [
        DateEntry("date", utc(2024, 3, 5, 9, 0), utc(2024, 3, 5, 10, 5, 1)),
    ]
    assert ReferenceEntry("subject", "Patient", "p1", "Patient/p1") in entries.references
    assert ReferenceEntry("patient", "Patient", "p1", "Patient/p1") in entries.references
    assert ReferenceEntry("encounter", "Encounter", "e1", "Encounter/e1") in entries.references
    assert (
        ReferenceEntry("device", None, None, "urn:uuid:0b2b1e7c-6f4c-4c1c-9a2e-6a5b3c1d2e3f")
        in entries.references
    )


def test_the_patient_parameter_only_indexes_patient_subjects() -> None:
    observation = {
        "resourceType": "Observation",
        "subject": {"reference": "Group/g1"},
        "effectiveDateTime": "2024-03-05",
    }
    entries = extract_index_entries(observation)
    assert entries.references == [ReferenceEntry("subject", "Group", "g1", "Group/g1")]
    assert entries.dates == [DateEntry("date", utc(2024, 3, 5), utc(2024, 3, 6))]


def test_open_periods_reach_the_storable_limits() -> None:
    start_only = {"resourceType": "Encounter", "period": {"start": "2024-01-01"}}
    end_only = {"resourceType": "Encounter", "period": {"end": "2024-01-01"}}
    assert extract_index_entries(start_only).dates == [
        DateEntry("date", utc(2024, 1, 1), FAR_FUTURE)
    ]
    assert extract_index_entries(end_only).dates == [DateEntry("date", FAR_PAST, utc(2024, 1, 2))]


def test_dates_before_year_1000_are_clamped() -> None:
    patient = {"resourceType": "Patient", "birthDate": "0999"}
    assert extract_index_entries(patient).dates == [
        DateEntry("birthdate", FAR_PAST, utc(1000, 1, 1))
    ]


def test_an_unparseable_date_is_skipped_not_raised() -> None:
    assert extract_index_entries({"resourceType": "Patient", "birthDate": "soon"}).dates == []


@pytest.mark.parametrize("end", ["9999-12-31", "9999", "9999-12"])
def test_a_period_ending_in_year_9999_is_clamped_to_far_future(end: str) -> None:
    encounter = {"resourceType": "Encounter", "period": {"start": "2024-01-01", "end": end}}
    assert extract_index_entries(encounter).dates == [
        DateEntry("date", utc(2024, 1, 1), FAR_FUTURE)
    ]


def test_long_values_are_cut_to_the_indexed_length() -> None:
    patient = {"resourceType": "Patient", "name": [{"family": "X" * 300}], "gender": "g" * 300}
    entries = extract_index_entries(patient)
    assert StringEntry("name", "x" * 255, "X" * 255) in entries.strings
    assert entries.tokens == [TokenEntry("gender", None, "g" * 255)]


def test_a_resource_type_without_search_parameters_has_no_entries() -> None:
    entries = extract_index_entries({"resourceType": "Basic", "code": {"text": "x"}})
    assert (entries.tokens, entries.strings, entries.dates, entries.references) == ([], [], [], [])
