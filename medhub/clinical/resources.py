"""The FHIR resource types medhub stores, and their validation.

Validation uses the ``fhir.resources`` R4B models (identical to R4 for the
resources listed here). A resource is validated once, when it enters medhub;
the validated JSON is what is stored, so it is never re-serialised through the
model on the read path (a model round trip costs about 1 ms, see DESIGN.md).
"""

from __future__ import annotations

import copy
import re
from collections.abc import Mapping, Sequence
from typing import Any, Final

import pydantic
from fhir.resources.R4B import get_fhir_model_class

from medhub.clinical.json_kinds import json_kind_issues
from medhub.errors import InvalidResourceError, Issue

#: The resource types of medhub's canonical model (DESIGN.md, "The canonical clinical model").
RESOURCE_TYPES: Final[frozenset[str]] = frozenset(
    {
        "Patient",
        "Encounter",
        "Observation",
        "Condition",
        "AllergyIntolerance",
        "MedicationRequest",
        "Medication",
        "Device",
        "DeviceMetric",
        "Practitioner",
        "PractitionerRole",
        "Organization",
        "Location",
        "Flag",
        "DetectedIssue",
        "AuditEvent",
        "Provenance",
        "DiagnosticReport",
        "ServiceRequest",
    }
)

#: Required value-set bindings that the R4B models do not enforce (they type codes as str).
#: FHIR R4 administrative-gender, observation-status, encounter-status.
_REQUIRED_CODES: Final[Mapping[tuple[str, str], frozenset[str]]] = {
    ("Patient", "gender"): frozenset({"male", "female", "other", "unknown"}),
    ("Practitioner", "gender"): frozenset({"male", "female", "other", "unknown"}),
    ("Observation", "status"): frozenset(
        {
            "registered",
            "preliminary",
            "final",
            "amended",
            "corrected",
            "cancelled",
            "entered-in-error",
            "unknown",
        }
    ),
    ("Encounter", "status"): frozenset(
        {
            "planned",
            "arrived",
            "triaged",
            "in-progress",
            "onleave",
            "finished",
            "cancelled",
            "entered-in-error",
            "unknown",
        }
    ),
}

_ID_RE: Final = re.compile(r"^[A-Za-z0-9\-.]{1,64}$")


def is_valid_id(value: str) -> bool:
    """FHIR R4 ``id`` datatype: 1-64 of ``[A-Za-z0-9-.]``."""
    return bool(_ID_RE.match(value))


def fhir_path(resource_type: str, loc: Sequence[int | str]) -> str:
    """Turn a pydantic error location into a FHIRPath expression.

    ``("name", 0, "family")`` on a Patient becomes ``Patient.name[0].family``,
    the form FHIR R4 asks for in ``OperationOutcome.issue.expression``.
    """
    path = resource_type
    for part in loc:
        if isinstance(part, int):
            path += f"[{part}]"
        elif part.endswith("__ext"):
            path += "._" + part.removesuffix("__ext")
        else:
            path += f".{part}"
    return path


def validate_resource(data: Any, *, expected_type: str | None = None) -> dict[str, Any]:
    """Validate one FHIR resource and return it as a plain JSON-ready dict.

    Raises :class:`InvalidResourceError` whose issues carry the FHIRPath of each
    failing element, so the caller can answer with an OperationOutcome (HTTP
    422) or an HL7 ERR segment.
    """
    if not isinstance(data, Mapping):
        raise InvalidResourceError(
            "a FHIR resource must be a JSON object",
            [Issue("a FHIR resource must be a JSON object", code="structure")],
        )
    resource_type = data.get("resourceType")
    if not isinstance(resource_type, str) or not resource_type:
        raise InvalidResourceError(
            "resourceType is missing",
            [Issue("resourceType is missing", code="required", expression=("resourceType",))],
        )
    if expected_type is not None and resource_type != expected_type:
        message = f"resourceType is {resource_type!r}, expected {expected_type!r}"
        raise InvalidResourceError(
            message, [Issue(message, code="invalid", expression=("resourceType",))]
        )
    if resource_type not in RESOURCE_TYPES:
        message = f"resource type {resource_type!r} is not supported by medhub"
        raise InvalidResourceError(
            message, [Issue(message, code="not-supported", expression=("resourceType",))]
        )
    model = get_fhir_model_class(resource_type)
    try:
        model.model_validate(dict(data))
    except pydantic.ValidationError as exc:
        issues = [
            Issue(
                f"{fhir_path(resource_type, err['loc'])}: {err['msg']}",
                code="required" if err["type"] == "missing" else "invalid",
                expression=(fhir_path(resource_type, err["loc"]),),
            )
            for err in exc.errors()
        ]
        raise InvalidResourceError(
            f"{resource_type} is not valid: {issues[0].message}"
            + (f" (and {len(issues) - 1} more)" if len(issues) > 1 else ""),
            issues,
        ) from exc
    except (ValueError, TypeError) as exc:
        message = f"{resource_type} is not valid: {exc}"
        raise InvalidResourceError(message, [Issue(message, expression=(resource_type,))]) from exc
    # The models coerce leniently ("yes" -> true, "2" -> 2). FHIR JSON does not: check
    # the JSON kind of each element sent against the model's annotations (json_kinds.py
    # says why this is not a dump of the model compared with what was sent).
    type_issues = json_kind_issues(data, model, resource_type)
    if type_issues:
        raise InvalidResourceError(
            f"{resource_type} is not valid: {type_issues[0].message}", type_issues
        )
    # Valid: keep the sender's JSON, not a re-serialisation of the model.
    result: dict[str, Any] = copy.deepcopy(dict(data))
    _check_required_codes(resource_type, result)
    resource_id = result.get("id")
    if resource_id is not None and not is_valid_id(str(resource_id)):
        message = f"{resource_type}.id {resource_id!r} is not a valid FHIR id"
        raise InvalidResourceError(message, [Issue(message, expression=(f"{resource_type}.id",))])
    return result


def _check_required_codes(resource_type: str, resource: Mapping[str, Any]) -> None:
    issues = []
    for (rtype, element), allowed in _REQUIRED_CODES.items():
        if rtype != resource_type or element not in resource:
            continue
        value = resource[element]
        if value not in allowed:
            path = f"{resource_type}.{element}"
            issues.append(
                Issue(
                    f"{path}: {value!r} is not one of {', '.join(sorted(allowed))}",
                    code="code-invalid",
                    expression=(path,),
                )
            )
    if issues:
        raise InvalidResourceError(f"{resource_type} is not valid: {issues[0].message}", issues)
