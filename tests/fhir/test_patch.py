"""JSON Patch (RFC 6902) and FHIRPath Patch (FHIR R4 fhirpatch.html) on FHIR resources.

The FHIRPath Patch cases marked "spec" are the published FHIR test cases
(fhir-test-cases r4/patch/fhir-path-tests.xml), rewritten from XML to JSON.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import jsonpatch
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from medhub.clinical.resources import validate_resource
from medhub.errors import InputError, InvalidResourceError, MedhubError
from medhub.fhir.patch import apply_fhirpath_patch, apply_json_patch

EXAMPLE_PATIENT = Path(__file__).parents[1] / "data" / "fhir-r4-examples" / "Patient-example.json"


def patient_example() -> dict[str, Any]:
    return dict(json.loads(EXAMPLE_PATIENT.read_text()))


def op(kind: str, path: str, **parts: dict[str, Any]) -> dict[str, Any]:
    """One FHIRPath Patch ``operation`` parameter; ``parts`` map a part name to its value[x]."""
    part: list[dict[str, Any]] = [
        {"name": "type", "valueCode": kind},
        {"name": "path", "valueString": path},
    ]
    part += [{"name": name, **value} for name, value in parts.items()]
    return {"name": "operation", "part": part}


def params(*operations: dict[str, Any]) -> dict[str, Any]:
    return {"resourceType": "Parameters", "parameter": list(operations)}


def patient(**elements: Any) -> dict[str, Any]:
    return {"resourceType": "Patient", "id": "p1", **elements}


def identifiers(*values: str) -> list[dict[str, str]]:
    return [{"system": "http://example.org", "value": v} for v in values]


CONTACT = {"name": {"text": "a name"}, "gender": "male"}

# (case name, input, operations, expected output)
SPEC_CASES: list[tuple[str, dict[str, Any], list[dict[str, Any]], dict[str, Any]]] = [
    (
        "replace primitive",
        patient(birthDate="1920-01-01"),
        [op("replace", "Patient.birthDate", value={"valueDate": "1930-01-01"})],
        patient(birthDate="1930-01-01"),
    ),
    (
        "delete primitive",
        patient(birthDate="1920-01-01"),
        [op("delete", "Patient.birthDate")],
        patient(),
    ),
    (
        "add primitive",
        patient(),
        [
            op(
                "add",
                "Patient",
                name={"valueString": "birthDate"},
                value={"valueDate": "1930-01-01"},
            )
        ],
        patient(birthDate="1930-01-01"),
    ),
    (
        "replace nested primitive #1",
        patient(contact=[CONTACT]),
        [op("replace", "Patient.contact[0].gender", value={"valueCode": "female"})],
        patient(contact=[{"name": {"text": "a name"}, "gender": "female"}]),
    ),
    (
        "replace nested primitive #2",
        patient(contact=[CONTACT]),
        [op("replace", "Patient.contact[0].name.text", value={"valueString": "the name"})],
        patient(contact=[{"name": {"text": "the name"}, "gender": "male"}]),
    ),
    (
        "delete nested primitive #1",
        patient(contact=[CONTACT]),
        [op("delete", "Patient.contact[0].gender")],
        patient(contact=[{"name": {"text": "a name"}}]),
    ),
    (
        "delete nested primitive #2 (the emptied name goes too)",
        patient(contact=[CONTACT]),
        [op("delete", "Patient.contact[0].name.text")],
        patient(contact=[{"gender": "male"}]),
    ),
    (
        "add nested primitive",
        patient(contact=[{"name": {"text": "a name"}}]),
        [
            op(
                "add",
                "Patient.contact[0]",
                name={"valueString": "gender"},
                value={"valueCode": "male"},
            )
        ],
        patient(contact=[CONTACT]),
    ),
    (
        "add complex",
        patient(),
        [
            op(
                "add",
                "Patient",
                name={"valueString": "maritalStatus"},
                value={"valueCodeableConcept": {"text": "married"}},
            )
        ],
        patient(maritalStatus={"text": "married"}),
    ),
    (
        "replace complex",
        patient(maritalStatus={"id": "1", "text": "married"}),
        [
            op(
                "replace",
                "Patient.maritalStatus",
                value={"valueCodeableConcept": {"id": "2", "text": "not married"}},
            )
        ],
        patient(maritalStatus={"id": "2", "text": "not married"}),
    ),
    (
        "delete complex",
        patient(maritalStatus={"text": "married"}),
        [op("delete", "Patient.maritalStatus")],
        patient(),
    ),
    (
        "add anonymous type (nested parts; contact repeats, so it becomes an array)",
        patient(),
        [
            op(
                "add",
                "Patient",
                name={"valueString": "contact"},
                value={"part": [{"name": "name", "valueHumanName": {"text": "a name"}}]},
            )
        ],
        patient(contact=[{"name": {"text": "a name"}}]),
    ),
    (
        "delete anonymous type (the emptied list goes too)",
        patient(contact=[{"name": {"text": "a name"}}]),
        [op("delete", "Patient.contact[0]")],
        patient(),
    ),
    (
        "list unchanged, contents changed",
        patient(identifier=[{"id": "a", "value": "value 1"}, {"id": "b", "value": "value 2"}]),
        [
            op("replace", "Patient.identifier[0].value", value={"valueString": "value 2"}),
            op("replace", "Patient.identifier[1].value", value={"valueString": "value 1"}),
        ],
        patient(identifier=[{"id": "a", "value": "value 2"}, {"id": "b", "value": "value 1"}]),
    ),
    *[
        (
            f"insert in list at {index}",
            patient(identifier=identifiers("value 1", "value 2")),
            [
                op(
                    "insert",
                    "Patient.identifier",
                    index={"valueInteger": index},
                    value={"valueIdentifier": identifiers("value 3")[0]},
                )
            ],
            patient(identifier=identifiers(*expected)),
        )
        for index, expected in [
            (2, ["value 1", "value 2", "value 3"]),
            (1, ["value 1", "value 3", "value 2"]),
            (0, ["value 3", "value 1", "value 2"]),
        ]
    ],
    *[
        (
            f"delete from list at {index}",
            patient(identifier=identifiers("value 1", "value 2", "value 3")),
            [op("delete", f"Patient.identifier[{index}]")],
            patient(identifier=identifiers(*expected)),
        )
        for index, expected in [
            (0, ["value 2", "value 3"]),
            (1, ["value 1", "value 3"]),
            (2, ["value 1", "value 2"]),
        ]
    ],
    *[
        (
            f"reorder list: move {source} to {destination}",
            patient(identifier=identifiers("value 1", "value 2", "value 3", "value 4")),
            [
                op(
                    "move",
                    "Patient.identifier",
                    source={"valueInteger": source},
                    destination={"valueInteger": destination},
                )
            ],
            patient(identifier=identifiers(*(f"value {n}" for n in expected))),
        )
        for source, destination, expected in [
            (3, 1, [1, 4, 2, 3]),
            (3, 0, [4, 1, 2, 3]),
            (3, 2, [1, 2, 4, 3]),
            (0, 3, [2, 3, 4, 1]),
        ]
    ],
]


@pytest.mark.parametrize(
    ("resource", "operations", "expected"),
    [case[1:] for case in SPEC_CASES],
    ids=[case[0] for case in SPEC_CASES],
)
def test_fhirpath_patch_spec_cases(
    resource: dict[str, Any], operations: list[dict[str, Any]], expected: dict[str, Any]
) -> None:
    before = copy.deepcopy(resource)
    patch = params(*operations)
    patch_before = copy.deepcopy(patch)

    assert apply_fhirpath_patch(resource, patch) == expected
    assert resource == before
    assert patch == patch_before


def test_add_appends_to_an_existing_list_and_the_result_is_a_valid_patient() -> None:
    resource = patient_example()
    patch = params(
        op("add", "Patient.name[0]", name={"valueString": "given"}, value={"valueString": "Pete"}),
        op(
            "add",
            "Patient",
            name={"valueString": "telecom"},
            value={"valueContactPoint": {"system": "email", "value": "p@example.org"}},
        ),
    )

    patched = apply_fhirpath_patch(resource, patch)

    assert patched["name"][0]["given"] == ["Peter", "James", "Pete"]
    assert patched["telecom"][-1] == {"system": "email", "value": "p@example.org"}
    assert len(patched["telecom"]) == len(resource["telecom"]) + 1
    assert validate_resource(patched) == patched
    assert resource == patient_example()


def test_add_starts_a_repeating_element_as_an_array() -> None:
    patch = params(
        op(
            "add",
            "Patient",
            name={"valueString": "identifier"},
            value={"valueIdentifier": {"value": "MRN-1"}},
        )
    )

    assert apply_fhirpath_patch(patient(), patch) == patient(identifier=[{"value": "MRN-1"}])


def test_nested_parts_put_single_items_of_repeating_elements_in_arrays() -> None:
    contact = {
        "part": [
            {"name": "name", "valueHumanName": {"family": "Doe"}},
            {"name": "telecom", "valueContactPoint": {"system": "phone", "value": "1"}},
            {"name": "relationship", "valueCodeableConcept": {"text": "mother"}},
        ]
    }
    patch = params(op("add", "Patient", name={"valueString": "contact"}, value=contact))

    patched = apply_fhirpath_patch(patient(), patch)

    assert patched["contact"] == [
        {
            "name": {"family": "Doe"},
            "telecom": [{"system": "phone", "value": "1"}],
            "relationship": [{"text": "mother"}],
        }
    ]
    assert validate_resource(patched) == patched


def test_replace_a_choice_element_by_its_fhirpath_name() -> None:
    observation = {
        "resourceType": "Observation",
        "id": "o1",
        "status": "final",
        "code": {"text": "weight"},
        "valueQuantity": {"value": 70, "unit": "kg"},
        "component": [{"code": {"text": "flag"}, "valueBoolean": True}],
    }
    patch = params(
        op("replace", "Observation.value", value={"valueQuantity": {"value": 71, "unit": "kg"}}),
        op("replace", "Observation.component[0].value", value={"valueBoolean": False}),
    )

    patched = apply_fhirpath_patch(observation, patch)

    assert patched["valueQuantity"] == {"value": 71, "unit": "kg"}
    assert patched["component"][0]["valueBoolean"] is False


def test_delete_selects_with_where_and_keeps_primitive_extensions_aligned() -> None:
    resource = patient(
        name=[
            {
                "given": ["Ann", "Bo", "Cy"],
                "_given": [None, {"extension": [{"url": "http://x", "valueString": "b"}]}, None],
            }
        ],
        telecom=[{"system": "phone", "value": "1"}, {"system": "email", "value": "e@x"}],
    )
    patch = params(
        op("delete", "Patient.telecom.where(system = 'email')"),
        op("delete", "Patient.name.given[0]"),
    )

    patched = apply_fhirpath_patch(resource, patch)

    assert patched["telecom"] == [{"system": "phone", "value": "1"}]
    assert patched["name"][0]["given"] == ["Bo", "Cy"]
    assert patched["name"][0]["_given"][0] == {
        "extension": [{"url": "http://x", "valueString": "b"}]
    }


def test_delete_of_a_path_that_matches_nothing_changes_nothing() -> None:
    resource = patient(birthDate="1920-01-01")

    assert apply_fhirpath_patch(resource, params(op("delete", "Patient.gender"))) == resource


def test_operations_apply_in_order() -> None:
    patch = params(
        op("add", "Patient", name={"valueString": "gender"}, value={"valueCode": "male"}),
        op("replace", "Patient.gender", value={"valueCode": "female"}),
    )

    assert apply_fhirpath_patch(patient(), patch) == patient(gender="female")


FUZZ_PATHS = [
    "Patient",
    "Patient.name",
    "Patient.name[0]",
    "Patient.name.given",
    "Patient.name[2].given[1]",
    "Patient.birthDate",
    "Patient.deceased",
    "Patient.telecom.where(system = 'phone')",
    "Patient.contact[0].name",
    "Patient.contact.name.family",
    "Patient.identifier",
    "Patient.communication",
]
FUZZ_VALUES = [
    {"valueString": "x"},
    {"valueHumanName": {"text": "t"}},
    {"part": [{"name": "text", "valueString": "y"}, {"name": "given", "valueString": "z"}]},
]
FUZZ_OPERATIONS = st.builds(
    lambda kind, path, name, value, index, source, destination: op(
        kind,
        path,
        name={"valueString": name},
        value=value,
        index={"valueInteger": index},
        source={"valueInteger": source},
        destination={"valueInteger": destination},
    ),
    st.sampled_from(["add", "insert", "delete", "replace", "move"]),
    st.sampled_from(FUZZ_PATHS),
    st.sampled_from(["given", "text", "gender", "telecom"]),
    st.sampled_from(FUZZ_VALUES),
    *[st.integers(0, 4)] * 3,
)


@settings(max_examples=150, deadline=None)
@given(operations=st.lists(FUZZ_OPERATIONS, min_size=1, max_size=4))
def test_any_fhirpath_patch_either_applies_or_fails_with_a_medhub_error(
    operations: list[dict[str, Any]],
) -> None:
    resource = patient_example()

    try:
        patched = apply_fhirpath_patch(resource, params(*operations))
    except MedhubError as error:
        assert error.http_status == 422
        assert error.issues[0].expression[0].startswith("Parameters.parameter[")
    else:
        assert (patched["resourceType"], patched["id"]) == ("Patient", "example")
        assert patched is not resource
    assert resource == patient_example()


# ------------------------------------------------------------------------------ JSON Patch


def test_json_patch_on_the_r4_example_patient() -> None:
    resource = patient_example()
    operations = [
        {"op": "test", "path": "/name/0/family", "value": "Chalmers"},
        {"op": "replace", "path": "/birthDate", "value": "1974-12-26"},
        {"op": "remove", "path": "/name/2"},
        {"op": "add", "path": "/telecom/-", "value": {"system": "email", "value": "p@x.org"}},
        {"op": "copy", "from": "/name/0/given/0", "path": "/name/1/given/-"},
        {"op": "move", "from": "/active", "path": "/extension"},
        {"op": "remove", "path": "/extension"},
    ]

    patched = apply_json_patch(resource, operations)

    assert patched["birthDate"] == "1974-12-26"
    assert [n["use"] for n in patched["name"]] == ["official", "usual"]
    assert patched["name"][1]["given"] == ["Jim", "Peter"]
    assert patched["telecom"][-1] == {"system": "email", "value": "p@x.org"}
    assert "active" not in patched
    assert validate_resource(patched) == patched
    assert resource == patient_example()


def test_json_patch_result_does_not_share_objects_with_the_patch() -> None:
    operations: list[dict[str, Any]] = [
        {"op": "add", "path": "/maritalStatus", "value": {"text": "married"}}
    ]

    patched = apply_json_patch(patient(), operations)
    patched["maritalStatus"]["text"] = "changed later"

    assert operations[0]["value"] == {"text": "married"}


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=5),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=4), children, max_size=4)
    ),
    max_leaves=12,
)
RESOURCE_BODIES = st.dictionaries(
    st.text(max_size=6).filter(lambda key: key not in ("resourceType", "id")),
    JSON_VALUES,
    max_size=5,
)


@settings(max_examples=200, deadline=None)
@given(a=RESOURCE_BODIES, b=RESOURCE_BODIES)
def test_a_generated_json_patch_turns_a_into_b_without_touching_a(
    a: dict[str, Any], b: dict[str, Any]
) -> None:
    a = patient(**a)
    b = patient(**b)
    before = copy.deepcopy(a)
    operations = list(jsonpatch.make_patch(a, b))

    assert apply_json_patch(a, operations) == b
    assert a == before


# ------------------------------------------------------------------------------ errors


def raised(call: Any, *args: Any) -> MedhubError:
    with pytest.raises(MedhubError) as info:
        call(*args)
    return info.value


@pytest.mark.parametrize(
    ("operations", "status", "expression", "in_message"),
    [
        ({"op": "remove", "path": "/x"}, 400, "Patch", "array"),
        (["remove /x"], 400, "Patch[0]", "object"),
        ([{"op": "frobnicate", "path": "/x"}], 400, "Patch[0].op", "frobnicate"),
        ([{"path": "/x"}], 400, "Patch[0].op", "None"),
        ([{"op": "replace", "path": "/active"}], 400, "Patch[0].value", "value"),
        ([{"op": "remove", "path": "active"}], 400, "Patch[0].path", "'active'"),
        ([{"op": "remove", "path": "/a~2b"}], 400, "Patch[0].path", "/a~2b"),
        ([{"op": "move", "from": 3, "path": "/a"}], 400, "Patch[0].from", "3"),
        (
            [{"op": "test", "path": "/active", "value": True}, {"op": "frob", "path": "/a"}],
            400,
            "Patch[1].op",
            "frob",
        ),
        (
            [
                {"op": "remove", "path": "/gender"},
                {"op": "test", "path": "/active", "value": False},
            ],
            422,
            "Patch[1].path",
            "/active",
        ),
        ([{"op": "remove", "path": "/maritalStatus"}], 422, "Patch[0].path", "/maritalStatus"),
        (
            [{"op": "replace", "path": "/name/7/family", "value": "X"}],
            422,
            "Patch[0].path",
            "/name/7",
        ),
        ([{"op": "add", "path": "/nope/x", "value": 1}], 422, "Patch[0].path", "/nope/x"),
        ([{"op": "move", "from": "/nope", "path": "/x"}], 422, "Patch[0].from", "/nope"),
        (
            [{"op": "replace", "path": "/resourceType", "value": "Person"}],
            422,
            "Patch[0].path",
            "resourceType",
        ),
        ([{"op": "remove", "path": "/id"}], 422, "Patch[0].path", "id"),
        ([{"op": "replace", "path": "", "value": []}], 422, "Patch[0].path", "object"),
    ],
)
def test_json_patch_errors(operations: Any, status: int, expression: str, in_message: str) -> None:
    error = raised(apply_json_patch, patient_example(), operations)

    assert error.http_status == status
    assert isinstance(error, InvalidResourceError if status == 422 else InputError)
    assert error.issues[0].expression == (expression,)
    assert in_message in error.message


P0 = "Parameters.parameter[0]"
P1 = "Parameters.parameter[1]"
NAME_GIVEN = {"valueString": "given"}


@pytest.mark.parametrize(
    ("parameters", "status", "expression"),
    [
        ([op("delete", "Patient.gender")], 400, "Parameters"),
        ({"resourceType": "Patient"}, 400, "Parameters"),
        (params(), 400, "Parameters.parameter"),
        (params({"name": "op", "part": op("delete", "Patient")["part"]}), 400, f"{P0}.name"),
        (params({"name": "operation"}), 400, f"{P0}.part"),
        (params(op("upsert", "Patient.gender")), 400, f"{P0}.part[type]"),
        (
            params({"name": "operation", "part": [{"name": "path", "valueString": "Patient"}]}),
            400,
            f"{P0}.part[type]",
        ),
        (
            params(op("delete", "Patient.gender"), op("replace", "Patient.gender")),
            400,
            f"{P1}.part[value]",
        ),
        (params(op("add", "Patient", value={"valueCode": "male"})), 400, f"{P0}.part[name]"),
        (
            params(op("add", "Patient", name={"valueString": "gen der"}, value={"valueCode": "m"})),
            400,
            f"{P0}.part[name]",
        ),
        (
            params(op("insert", "Patient.name", value={"valueHumanName": {}})),
            400,
            f"{P0}.part[index]",
        ),
        (
            params(
                op(
                    "move",
                    "Patient.name",
                    source={"valueInteger": -1},
                    destination={"valueInteger": 0},
                )
            ),
            400,
            f"{P0}.part[source]",
        ),
        (
            params(op("replace", "Patient.gender", value={"valueCode": "m", "valueString": "m"})),
            400,
            f"{P0}.part[value]",
        ),
        (
            params(op("replace", "Patient.gender", Value={"valueCode": "male"})),
            400,
            f"{P0}.part[Value]",
        ),
        (params(op("delete", "Patient..gender")), 400, f"{P0}.part[path]"),
        (params(op("delete", "Patient.name.where(")), 400, f"{P0}.part[path]"),
        (params(op("delete", "Patient.gender#")), 400, f"{P0}.part[path]"),
        (params(op("delete", "Patient.name.frobnicate()")), 400, f"{P0}.part[path]"),
        (
            params(op("replace", "Patient.maritalStatus", value={"valueCode": "M"})),
            422,
            f"{P0}.part[path]",
        ),
        (
            params(op("replace", "Patient.name.given", value={"valueString": "X"})),
            422,
            f"{P0}.part[path]",
        ),
        (params(op("delete", "Patient.name")), 422, f"{P0}.part[path]"),
        (
            params(op("add", "Patient.name", name=NAME_GIVEN, value={"valueString": "X"})),
            422,
            f"{P0}.part[path]",
        ),
        (
            params(op("add", "Patient.deceased", name=NAME_GIVEN, value={"valueString": "X"})),
            422,
            f"{P0}.part[path]",
        ),
        (
            params(op("add", "Patient.birthDate", name=NAME_GIVEN, value={"valueString": "X"})),
            422,
            f"{P0}.part[path]",
        ),
        (
            params(
                op("add", "Patient", name={"valueString": "gender"}, value={"valueCode": "other"})
            ),
            422,
            f"{P0}.part[name]",
        ),
        (
            params(
                op(
                    "insert",
                    "Patient.name",
                    index={"valueInteger": 4},
                    value={"valueHumanName": {}},
                )
            ),
            422,
            f"{P0}.part[index]",
        ),
        (
            params(
                op(
                    "insert",
                    "Patient.identifier.value",
                    index={"valueInteger": 0},
                    value={"valueString": "1"},
                )
            ),
            422,
            f"{P0}.part[path]",
        ),
        (
            params(
                op(
                    "insert",
                    "Patient.communication",
                    index={"valueInteger": 0},
                    value={"valueString": "1"},
                )
            ),
            422,
            f"{P0}.part[path]",
        ),
        (
            params(
                op(
                    "move",
                    "Patient.name",
                    source={"valueInteger": 3},
                    destination={"valueInteger": 0},
                )
            ),
            422,
            f"{P0}.part[source]",
        ),
        (
            params(
                op(
                    "move",
                    "Patient.name",
                    source={"valueInteger": 0},
                    destination={"valueInteger": 3},
                )
            ),
            422,
            f"{P0}.part[destination]",
        ),
        (params(op("replace", "Patient.id", value={"valueId": "other"})), 422, f"{P0}.part[path]"),
        (
            params(
                op(
                    "move",
                    "Patient.telecom.where(system = 'phone')",
                    source={"valueInteger": 0},
                    destination={"valueInteger": 1},
                )
            ),
            422,
            f"{P0}.part[path]",
        ),
        (
            params(
                op(
                    "add",
                    "Patient",
                    name={"valueString": "resourceType"},
                    value={"valueString": "X"},
                )
            ),
            422,
            f"{P0}.part[name]",
        ),
        (params(op("delete", "Patient")), 422, f"{P0}.part[path]"),
        (
            params(op("delete", "Patient.gender"), op("delete", "Patient.id")),
            422,
            f"{P1}.part[path]",
        ),
    ],
)
def test_fhirpath_patch_errors(parameters: Any, status: int, expression: str) -> None:
    resource = patient_example()

    error = raised(apply_fhirpath_patch, resource, parameters)

    assert error.http_status == status, error.message
    assert isinstance(error, InvalidResourceError if status == 422 else InputError)
    assert error.issues[0].expression == (expression,), error.message
    assert resource == patient_example()


def test_a_malformed_later_operation_is_reported_before_an_earlier_one_is_applied() -> None:
    patch = params(
        op("replace", "Patient.nothingHere", value={"valueString": "x"}),
        op("explode", "Patient"),
    )

    error = raised(apply_fhirpath_patch, patient(), patch)

    assert error.http_status == 400
    assert error.issues[0].expression == (f"{P1}.part[type]",)
