"""The search parameters medhub indexes, per resource type (FHIR R4 searchparameter registry).

Each parameter names its FHIR search type and the element path(s) it reads.
Paths are dotted element names; ``[x]`` choice elements are listed by their
concrete names (``effectiveDateTime``, ``effectivePeriod``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final, Literal

ParamType = Literal["token", "string", "date", "reference"]


@dataclass(frozen=True, slots=True)
class SearchParam:
    """One FHIR search parameter: its code, type and the element paths it indexes."""

    name: str
    type: ParamType
    paths: tuple[str, ...]
    target: str | None = None  # for reference params restricted to one type (``patient``)


def _p(name: str, ptype: ParamType, *paths: str, target: str | None = None) -> SearchParam:
    return SearchParam(name, ptype, paths, target)


_SUBJECT = (
    _p("subject", "reference", "subject"),
    _p("patient", "reference", "subject", target="Patient"),
)
_IDENTIFIER = _p("identifier", "token", "identifier")

SEARCH_PARAMETERS: Final[dict[str, tuple[SearchParam, ...]]] = {
    "Patient": (
        _IDENTIFIER,
        _p("name", "string", "name"),
        _p("family", "string", "name.family"),
        _p("given", "string", "name.given"),
        _p("birthdate", "date", "birthDate"),
        _p("gender", "token", "gender"),
        _p("address", "string", "address"),
        _p("telecom", "token", "telecom"),
        _p("phone", "token", "telecom"),
        _p("active", "token", "active"),
        _p("organization", "reference", "managingOrganization"),
        _p("general-practitioner", "reference", "generalPractitioner"),
        _p("link", "reference", "link.other"),
    ),
    "Encounter": (
        _IDENTIFIER,
        *_SUBJECT,
        _p("status", "token", "status"),
        _p("class", "token", "class"),
        _p("date", "date", "period"),
        _p("location", "reference", "location.location"),
    ),
    "Observation": (
        _IDENTIFIER,
        *_SUBJECT,
        _p("code", "token", "code"),
        _p("category", "token", "category"),
        _p("status", "token", "status"),
        _p("date", "date", "effectiveDateTime", "effectivePeriod", "effectiveInstant"),
        _p("encounter", "reference", "encounter"),
        _p("device", "reference", "device"),
    ),
    "Condition": (
        _IDENTIFIER,
        *_SUBJECT,
        _p("code", "token", "code"),
        _p("clinical-status", "token", "clinicalStatus"),
        _p("onset-date", "date", "onsetDateTime", "onsetPeriod"),
    ),
    "AllergyIntolerance": (
        _IDENTIFIER,
        _p("patient", "reference", "patient", target="Patient"),
        _p("code", "token", "code", "reaction.substance"),
        _p("clinical-status", "token", "clinicalStatus"),
    ),
    "MedicationRequest": (
        _IDENTIFIER,
        *_SUBJECT,
        _p("status", "token", "status"),
        _p("intent", "token", "intent"),
        _p("code", "token", "medicationCodeableConcept"),
        _p("authoredon", "date", "authoredOn"),
        _p("encounter", "reference", "encounter"),
    ),
    "Device": (
        _IDENTIFIER,
        _p("patient", "reference", "patient", target="Patient"),
        _p("type", "token", "type"),
        _p("manufacturer", "string", "manufacturer"),
    ),
    "DeviceMetric": (
        _IDENTIFIER,
        _p("source", "reference", "source"),
        _p("type", "token", "type"),
    ),
    "Practitioner": (_IDENTIFIER, _p("name", "string", "name")),
    "PractitionerRole": (_IDENTIFIER, _p("practitioner", "reference", "practitioner")),
    "Organization": (_IDENTIFIER, _p("name", "string", "name")),
    "Location": (_IDENTIFIER, _p("name", "string", "name")),
    "Flag": (*_SUBJECT, _p("status", "token", "status")),
    "DetectedIssue": (
        _IDENTIFIER,
        _p("patient", "reference", "patient", target="Patient"),
        _p("code", "token", "code"),
    ),
    "AuditEvent": (_p("date", "date", "recorded"), _p("entity", "reference", "entity.what")),
    "Provenance": (_p("target", "reference", "target"),),
    "DiagnosticReport": (*_SUBJECT, _IDENTIFIER, _p("code", "token", "code")),
    "ServiceRequest": (*_SUBJECT, _IDENTIFIER, _p("code", "token", "code")),
    "Medication": (_IDENTIFIER, _p("code", "token", "code")),
}


def search_param(resource_type: str, name: str) -> SearchParam | None:
    """The definition of ``name`` on ``resource_type``, or None if medhub does not index it."""
    for param in SEARCH_PARAMETERS.get(resource_type, ()):
        if param.name == name:
            return param
    return None
