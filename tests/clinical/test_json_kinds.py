"""The schema walk of json_kinds.py reports what the model dump comparison it replaced did.

The reference below is the check medhub ran before: validate, dump the model back to JSON,
and compare the JSON kind of each leaf sent with the leaf the model wrote. The official
FHIR R4 examples, with leaves mutated to other JSON kinds, must get the same issues from
both.
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Iterator, Mapping
from functools import cache
from pathlib import Path
from typing import Any

import pydantic
import pytest
from fhir.resources.R4B import fhirtypes, get_fhir_model_class
from fhir_core.fhirabstractmodel import FHIRAbstractModel
from fhir_core.types import FhirBase
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from medhub.clinical.json_kinds import elements, json_kind_issues, unknown_annotations
from medhub.clinical.resources import validate_resource
from medhub.errors import InvalidResourceError, Issue

EXAMPLES = sorted((Path(__file__).parents[1] / "data" / "fhir-r4-examples").glob("*.json"))

Leaf = bool | int | float | str
JsonPath = tuple[int | str, ...]
DATE_OR_TIME = re.compile(r"^(\d{4}(-\d\d(-\d\d)?)?(T.*)?|\d\d:\d\d:\d\d.*)$")


# -- the reference: the dump-and-compare check medhub ran before ------------------------------


def reference_json_kind(value: Any) -> str:
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    return "other"


def reference_issues_between(sent: Any, understood: Any, path: str) -> Iterator[Issue]:
    """Leaves where the JSON type sent differs from the type the model read it as."""
    if isinstance(sent, Mapping) and isinstance(understood, Mapping):
        for key, value in sent.items():
            if key in understood:
                yield from reference_issues_between(value, understood[key], f"{path}.{key}")
    elif isinstance(sent, list) and isinstance(understood, list):
        for index, (a, b) in enumerate(zip(sent, understood, strict=False)):
            yield from reference_issues_between(a, b, f"{path}[{index}]")
    else:
        sent_kind, model_kind = reference_json_kind(sent), reference_json_kind(understood)
        if "other" not in (sent_kind, model_kind) and sent_kind != model_kind:
            yield Issue(
                f"{path}: a JSON {model_kind} is required, got the {sent_kind} {sent!r}",
                code="structure",
                expression=(path,),
            )


def both_checks(resource: dict[str, Any]) -> tuple[list[Issue], list[Issue]] | None:
    """(reference issues, schema-walk issues), or None when the model refuses the resource."""
    model = get_fhir_model_class(resource["resourceType"])
    try:
        validated = model.model_validate(copy.deepcopy(resource))
    except (pydantic.ValidationError, ValueError, TypeError):
        return None
    understood = validated.model_dump(mode="json", by_alias=True, exclude_none=True)
    reference = list(reference_issues_between(resource, understood, resource["resourceType"]))
    return reference, json_kind_issues(resource, model, resource["resourceType"])


# -- mutating the official examples ---------------------------------------------------------


@cache
def example(path: Path) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(path.read_text())
    return loaded


def leaves(value: Any, at: JsonPath = ()) -> Iterator[tuple[JsonPath, Leaf]]:
    if isinstance(value, dict):
        for key, item in value.items():
            if key != "resourceType":  # validate_resource refuses a non-string before models
                yield from leaves(item, (*at, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from leaves(item, (*at, index))
    elif value is not None:
        yield at, value


def coercible(leaf: tuple[JsonPath, Leaf]) -> bool:
    """A leaf the lax models still accept in some other JSON kind.

    A string element takes only a string, so a string mutated to a boolean or a number is
    refused by model validation, and neither check is reached. Booleans and numbers read
    back from strings, and dates and times from numbers (a Unix time).
    """
    value = leaf[1]
    return not isinstance(value, str) or bool(DATE_OR_TIME.match(value))


def replaced(resource: dict[str, Any], at: JsonPath, value: Any) -> dict[str, Any]:
    result = copy.deepcopy(resource)
    parent: Any = result
    for part in at[:-1]:
        parent = parent[part]
    parent[at[-1]] = value
    return result


def other_kinds(value: Leaf) -> list[Any]:
    """Values of other JSON kinds, chosen so the lax models accept many of them."""
    if isinstance(value, bool):
        return [str(value).lower(), "yes", "off", int(value), 1, 0.0]
    if isinstance(value, int | float):
        return [str(value), repr(float(value)), value != 0, True]
    candidates: list[Any] = [True, 0, 1, 86400, 2.5]  # no string element takes a boolean
    if value.lower() in ("true", "false"):
        candidates.append(value.lower() == "true")
    try:
        candidates.append(int(value))
    except ValueError:
        try:
            candidates.append(float(value))
        except ValueError:
            pass
    return candidates


def every_non_string_as_a_string(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: every_non_string_as_a_string(v) for k, v in value.items()}
    if isinstance(value, list):
        return [every_non_string_as_a_string(v) for v in value]
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, int | float):
        return str(value)
    return value


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.stem for p in EXAMPLES])
def test_each_example_is_clean_for_both_checks(path: Path) -> None:
    checks = both_checks(example(path))
    assert checks == ([], [])


def test_every_boolean_and_number_of_the_examples_sent_as_a_string() -> None:
    """One sweep over every non-string leaf of the 260 examples, all mutated at once."""
    compared = reported = 0
    for path in EXAMPLES:
        checks = both_checks(every_non_string_as_a_string(example(path)))
        if checks is None:
            continue
        reference, walked = checks
        assert walked == reference, path.name
        compared += 1
        reported += len(walked)
    assert compared == len(EXAMPLES)  # the lax models read "true" and "72" back
    assert reported >= 500


@settings(
    max_examples=600,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(st.sampled_from(EXAMPLES), st.data())
def test_mutated_leaves_get_the_same_issues_as_the_dump_comparison(
    path: Path, data: st.DataObject
) -> None:
    resource = example(path)
    candidates = [leaf for leaf in leaves(resource) if coercible(leaf)] or list(leaves(resource))
    for _ in range(data.draw(st.integers(min_value=1, max_value=3), label="mutations")):
        at, value = data.draw(st.sampled_from(candidates), label="leaf")
        resource = replaced(resource, at, data.draw(st.sampled_from(other_kinds(value))))
    checks = both_checks(resource)
    event("refused by the models" if checks is None else "compared")
    if checks is not None:
        reference, walked = checks
        assert walked == reference


# -- the shapes the walk has to get right -----------------------------------------------------

PATIENT: dict[str, Any] = {
    "resourceType": "Patient",
    "name": [{"family": "Doe", "given": ["Jane", "Q"]}],
    "birthDate": "1970-05-17",
}


def issues_of(resource: dict[str, Any]) -> list[tuple[str, str]]:
    checks = both_checks(resource)
    assert checks is not None, "the models refused the resource"
    reference, walked = checks
    assert walked == reference
    with pytest.raises(InvalidResourceError) as caught:
        validate_resource(resource)
    assert caught.value.issues == walked
    assert caught.value.message == f"{resource['resourceType']} is not valid: {walked[0].message}"
    assert all(issue.code == "structure" for issue in walked)
    return [(issue.expression[0], issue.message) for issue in walked]


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        (
            {"active": "yes"},
            [
                (
                    "Patient.active",
                    "Patient.active: a JSON boolean is required, got the string 'yes'",
                )
            ],
        ),
        (
            {"multipleBirthInteger": "2"},
            [
                (
                    "Patient.multipleBirthInteger",
                    "Patient.multipleBirthInteger: a JSON number is required, got the string '2'",
                )
            ],
        ),
        (
            {"birthDate": 0},
            [
                (
                    "Patient.birthDate",
                    "Patient.birthDate: a JSON string is required, got the number 0",
                )
            ],
        ),
        (  # a backbone element: PatientCommunicationType
            {"communication": [{"language": {"text": "nl"}, "preferred": 1}]},
            [
                (
                    "Patient.communication[0].preferred",
                    "Patient.communication[0].preferred: a JSON boolean is required, "
                    "got the number 1",
                )
            ],
        ),
        (  # a primitive extension is an Element, with its own extensions
            {"_birthDate": {"extension": [{"url": "http://x.example/e", "valueBoolean": "true"}]}},
            [
                (
                    "Patient._birthDate.extension[0].valueBoolean",
                    "Patient._birthDate.extension[0].valueBoolean: a JSON boolean is required, "
                    "got the string 'true'",
                )
            ],
        ),
        (  # a primitive array's extensions line up with it, nulls included
            {"name": [{"given": ["Jane", "Q"], "_given": [None, {"id": "a", "extension": []}]}]},
            [],
        ),
    ],
    ids=["boolean", "integer", "date", "backbone", "primitive-extension", "extension-array"],
)
def test_issues_name_the_element_and_the_kinds(
    changes: dict[str, Any], expected: list[tuple[str, str]]
) -> None:
    resource = {**PATIENT, **changes}
    if expected:
        assert issues_of(resource) == expected
    else:
        assert both_checks(resource) == ([], [])


def test_a_contained_resource_is_read_as_the_type_its_resource_type_names() -> None:
    observation = {
        "resourceType": "Observation",
        "status": "final",
        "code": {"text": "pulse"},
        "valueQuantity": {"value": "72"},
    }
    resource = {**PATIENT, "contained": [observation]}
    assert issues_of(resource) == [
        (
            "Patient.contained[0].valueQuantity.value",
            "Patient.contained[0].valueQuantity.value: a JSON number is required, "
            "got the string '72'",
        )
    ]


def test_every_issue_is_reported_in_the_order_sent() -> None:
    resource = {**PATIENT, "deceasedBoolean": "false", "active": 0}
    assert [path for path, _ in issues_of(resource)] == [
        "Patient.deceasedBoolean",
        "Patient.active",
    ]


@pytest.mark.parametrize(
    "changes",
    [
        {"active__ext": {"extension": [{"url": "http://x.example/e", "valueBoolean": "true"}]}},
        {"fhir_comments": ["a comment"]},
        {"fhir_comments": "a comment"},
        {"active": None, "name": [{"family": "Doe", "given": []}]},
        {"name": [{"family": "Doe", "resourceType": "HumanName"}]},
    ],
    ids=["field-name-not-alias", "comments-list", "comments-string", "nulls", "nested-type"],
)
def test_what_the_dump_did_not_write_is_not_checked_either(changes: dict[str, Any]) -> None:
    """Keys the dump left out were never compared: the walk leaves them alone too."""
    assert both_checks({**PATIENT, **changes}) == ([], [])


def test_a_key_the_model_does_not_write_has_no_expected_kind() -> None:
    patient = get_fhir_model_class("Patient")
    expected = elements(patient)
    assert expected["_birthDate"].model is not None
    assert expected["active"].kind == "boolean"
    assert expected["contained"].by_resource_type
    assert "active__ext" not in expected
    assert "resourceType" not in expected


def all_model_classes() -> Iterator[type[FHIRAbstractModel]]:
    for value in vars(fhirtypes).values():
        if isinstance(value, type) and issubclass(value, FhirBase) and value is not FhirBase:
            yield value.get_model_klass()


def test_every_r4b_annotation_maps_to_a_json_kind_or_a_model_class() -> None:
    """An annotation the walk does not understand would go unchecked: there are none."""
    unknown = [
        (model.__name__, key, annotation)
        for model in all_model_classes()
        for key, annotation in unknown_annotations(model)
    ]
    assert unknown == []
