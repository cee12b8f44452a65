"""FHIR resource validation: what is accepted, and how a rejection points at the element."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from medhub.clinical.identifiers import LOCAL_AUTHORITY_PREFIX, authority_system
from medhub.clinical.resources import fhir_path, is_valid_id, validate_resource
from medhub.errors import InvalidResourceError

PATIENT: dict[str, Any] = {
    "resourceType": "Patient",
    "id": "pat-1.a",
    "identifier": [{"system": "urn:oid:1.2.840.114350", "value": "MRN-1"}],
    "name": [{"family": "Doe", "given": ["Jane"]}],
    "gender": "female",
    "birthDate": "1970-05-17",
    "address": [{"line": ["1 Main St"], "city": "Springfield", "postalCode": "62701"}],
}
OBSERVATION: dict[str, Any] = {
    "resourceType": "Observation",
    "status": "final",
    "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4"}]},
    "subject": {"reference": "Patient/pat-1.a"},
    "effectiveDateTime": "2024-03-05T10:30:00+02:00",
    "valueQuantity": {"value": 72, "unit": "/min", "system": "http://unitsofmeasure.org"},
}


def rejected(data: Any, expected_type: str | None = None) -> InvalidResourceError:
    with pytest.raises(InvalidResourceError) as caught:
        validate_resource(data, expected_type=expected_type)
    return caught.value


def with_(base: dict[str, Any], **changes: Any) -> dict[str, Any]:
    result = copy.deepcopy(base)
    result.update(changes)
    return result


# -- accepted -------------------------------------------------------------------------------


@pytest.mark.parametrize("resource", [PATIENT, OBSERVATION], ids=["Patient", "Observation"])
def test_a_valid_resource_is_returned_unchanged_as_a_copy(resource: dict[str, Any]) -> None:
    result = validate_resource(resource, expected_type=resource["resourceType"])
    assert result == resource
    result["id"] = "changed"
    assert resource.get("id") != "changed"  # the caller's dict is not shared


def test_the_senders_json_is_kept_not_a_model_re_serialisation() -> None:
    patient = with_(PATIENT, birthDate="1970", active=True)
    assert validate_resource(patient) == patient


@pytest.mark.parametrize("gender", ["male", "female", "other", "unknown"])
def test_every_administrative_gender_code_is_accepted(gender: str) -> None:
    assert validate_resource(with_(PATIENT, gender=gender))["gender"] == gender


def test_an_id_of_64_characters_is_accepted() -> None:
    assert validate_resource(with_(PATIENT, id="a" * 64))["id"] == "a" * 64


# -- rejected -------------------------------------------------------------------------------


@pytest.mark.parametrize("data", [[], "Patient", None, 42, [PATIENT]])
def test_a_non_object_is_rejected_as_structure(data: Any) -> None:
    error = rejected(data)
    assert error.issues[0].code == "structure"
    assert error.http_status == 422


@pytest.mark.parametrize("data", [{}, {"id": "x"}, {"resourceType": ""}, {"resourceType": 5}])
def test_a_missing_resource_type_is_reported_as_required(data: Any) -> None:
    error = rejected(data)
    assert error.issues[0].code == "required"
    assert error.issues[0].expression == ("resourceType",)


@pytest.mark.parametrize("rtype", ["Basic", "Bundle", "patient", "NotAType"])
def test_a_type_medhub_does_not_store_is_not_supported(rtype: str) -> None:
    error = rejected({"resourceType": rtype})
    assert error.issues[0].code == "not-supported"
    assert rtype in error.message


def test_a_resource_of_another_type_than_expected_is_rejected() -> None:
    error = rejected(OBSERVATION, expected_type="Patient")
    assert "expected 'Patient'" in error.message
    assert error.issues[0].expression == ("resourceType",)


@pytest.mark.parametrize("gender", ["mail", "M", "Female"])
def test_a_gender_outside_the_required_value_set_is_code_invalid(gender: str) -> None:
    error = rejected(with_(PATIENT, gender=gender))
    assert error.issues[0].code == "code-invalid"
    assert error.issues[0].expression == ("Patient.gender",)


def test_an_observation_status_outside_the_value_set_is_code_invalid() -> None:
    error = rejected(with_(OBSERVATION, status="done"))
    assert error.issues[0].expression == ("Observation.status",)
    assert "final" in error.issues[0].message  # the allowed codes are listed


@pytest.mark.parametrize("bad_id", ["has space", "under_score", "a" * 65, "é"])
def test_a_bad_id_is_rejected_at_the_id_element(bad_id: str) -> None:
    error = rejected(with_(PATIENT, id=bad_id))
    assert error.issues[0].expression == ("Patient.id",)


def test_errors_carry_the_fhirpath_of_the_failing_element() -> None:
    error = rejected(with_(PATIENT, name=[{"family": "Doe"}, {"family": ["not", "a string"]}]))
    assert error.issues[0].expression == ("Patient.name[1].family",)
    assert error.message.startswith("Patient is not valid: Patient.name[1].family")


def test_the_first_name_family_path_is_reported() -> None:
    error = rejected(with_(PATIENT, name=[{"family": 123}]))
    assert error.issues[0].expression == ("Patient.name[0].family",)


def test_a_missing_required_element_is_reported_as_required() -> None:
    observation = copy.deepcopy(OBSERVATION)
    del observation["code"]
    error = rejected(observation)
    assert error.issues[0].code == "required"
    assert error.issues[0].expression == ("Observation.code",)


def test_several_problems_are_all_reported() -> None:
    error = rejected(with_(PATIENT, birthDate="17/05/1970", active={"x": 1}, unknownField=1))
    expressions = {issue.expression[0] for issue in error.issues}
    assert {"Patient.birthDate", "Patient.active", "Patient.unknownField"} <= expressions
    assert f"(and {len(error.issues) - 1} more)" in error.message


def test_an_invalid_date_is_rejected() -> None:
    error = rejected(with_(PATIENT, birthDate="1970-13-45"))
    assert error.issues[0].expression == ("Patient.birthDate",)


@pytest.mark.parametrize(
    "resource",
    [
        with_(PATIENT, active="yes"),
        with_(PATIENT, active=1),
        with_(PATIENT, multipleBirthInteger="2"),
        with_(OBSERVATION, valueQuantity={"value": "72", "unit": "/min"}),
    ],
    ids=["active-string", "active-number", "integer-string", "decimal-string"],
)
def test_a_value_of_the_wrong_json_type_is_rejected(resource: dict[str, Any]) -> None:
    rejected(resource)


# -- helpers --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("loc", "path"),
    [
        (("name", 0, "family"), "Patient.name[0].family"),
        (("identifier", 2), "Patient.identifier[2]"),
        (("birthDate__ext", "extension", 0), "Patient._birthDate.extension[0]"),
        ((), "Patient"),
    ],
)
def test_fhir_path_from_a_pydantic_location(loc: tuple[int | str, ...], path: str) -> None:
    assert fhir_path("Patient", loc) == path


@pytest.mark.parametrize(
    ("value", "valid"),
    [("a", True), ("A-1.b", True), ("a" * 64, True), ("", False), ("a" * 65, False)],
)
def test_is_valid_id(value: str, valid: bool) -> None:
    assert is_valid_id(value) is valid


@pytest.mark.parametrize(
    ("namespace", "universal", "kind", "system"),
    [
        ("HOSP", "1.2.3", "ISO", "urn:oid:1.2.3"),
        ("", "ABC-DEF", "uuid", "urn:uuid:abc-def"),
        ("", "http://x.example/ids", "URI", "http://x.example/ids"),
        ("", "urn:x:y", "", "urn:x:y"),
        ("urn:oid:9.9", "", "", "urn:oid:9.9"),
        ("HOSP", "1.2.3", "HCD", LOCAL_AUTHORITY_PREFIX + "HOSP"),
        ("", "", "", None),
    ],
)
def test_authority_system_rules(
    namespace: str, universal: str, kind: str, system: str | None
) -> None:
    assert authority_system(namespace, universal, kind) == system
