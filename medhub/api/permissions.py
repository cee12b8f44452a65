"""Who may do what: roles, the permission table, SMART scopes and the principal (pure).

A request is made by a :class:`Principal`: a user (logged in with a password,
a JWT access token), an API key (device gateways, interface engines) or an
operator's token from ``medhub token``. Whether it may act is decided here,
in three steps, all of which must allow it:

1. **the role's permission table** (:data:`PERMISSIONS`): per FHIR resource
   type (and per JSON API area: ``alerts``, ``devices``, ``hl7``, ``users``,
   ``prescriptions``, ``audit``) the actions ``read`` (read, vread, search,
   history), ``write`` (create, update, patch) and ``delete``;
2. **the token's SMART-on-FHIR scopes** when it carries any
   (``patient/*.read``, ``user/Observation.write``, ``system/*.*``; SMART App
   Launch 1.0 scope syntax): a scope can narrow a role, never widen it;
3. **the care units** (:meth:`Principal.sees_unit`): a nurse or a physician sees
   only the patients of their care units unless granted every unit (``*``).

AuditEvent is never changed or deleted through the API by anyone (FHIR R4
auditevent.html: audit logs must be tamper-evident); administrators and
interface engines may *add* records (IHE RESTful ATNA: other systems send
their audit records to the repository).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Final, Literal, get_args

from medhub.clinical.resources import RESOURCE_TYPES

Role = Literal[
    "admin",
    "physician",
    "nurse",
    "pharmacist",
    "lab-technician",
    "receptionist",
    "device-gateway",
    "integration",
]
ROLES: Final[tuple[Role, ...]] = get_args(Role)
Action = Literal["read", "write", "delete"]

_R: Final = frozenset({"read"})
_RW: Final = frozenset({"read", "write"})
_RWD: Final = frozenset({"read", "write", "delete"})


def _table(default: frozenset[str], **types: frozenset[str]) -> dict[str, frozenset[str]]:
    """``default`` on every served type but AuditEvent, then the exceptions named."""
    table = dict.fromkeys(RESOURCE_TYPES - {"AuditEvent"}, default)
    table.update({name.replace("_", "-"): value for name, value in types.items()})
    return {k: v for k, v in table.items() if v}


_NONE: Final[frozenset[str]] = frozenset()

#: The permission table: role -> resource type or API area -> allowed actions.
PERMISSIONS: Final[dict[Role, dict[str, frozenset[str]]]] = {
    "admin": _table(
        _RWD,
        AuditEvent=_RW,
        alerts=_RW,
        devices=_RWD,
        hl7=_RW,
        users=_RWD,
        prescriptions=_R,
        audit=_R,
        news2=_R,
    ),
    "physician": _table(
        _R,
        Observation=_RW,
        Condition=_RW,
        AllergyIntolerance=_RW,
        MedicationRequest=_RW,
        DetectedIssue=_RW,
        Flag=_RW,
        Encounter=_RW,
        ServiceRequest=_RW,
        alerts=_RW,
        devices=_R,
        prescriptions=_R,
        news2=_R,
    ),
    "nurse": _table(
        _R,
        Observation=_RW,
        AllergyIntolerance=_RW,
        Flag=_RW,
        Encounter=_RW,
        alerts=_RW,
        devices=_RW,
        news2=_R,
    ),
    "pharmacist": {
        **dict.fromkeys(("Patient", "Encounter", "Observation", "Condition", "Practitioner"), _R),
        **dict.fromkeys(("AllergyIntolerance", "Medication", "Organization", "Location"), _R),
        "MedicationRequest": _RW,
        "DetectedIssue": _RW,
        "prescriptions": _R,
    },
    "lab-technician": {
        "Patient": _R,
        "Encounter": _R,
        "ServiceRequest": _R,
        "Observation": _RW,
        "Practitioner": _R,
        "Location": _R,
    },
    "receptionist": {
        "Patient": _RW,
        "Encounter": _RW,
        "Practitioner": _R,
        "Organization": _R,
        "Location": _R,
    },
    "device-gateway": {
        "Device": _RW,
        "DeviceMetric": _RW,
        "Observation": frozenset({"write"}),
        "devices": _RW,
    },
    "integration": _table(_RWD, AuditEvent=_RW, hl7=_RW, devices=_R, prescriptions=_R),
}
#: Roles limited to the patients of their care units (issue "security").
UNIT_BOUND: Final[frozenset[Role]] = frozenset({"nurse", "physician"})
ALL_UNITS: Final = "*"
_SCOPE: Final = re.compile(r"^(patient|user|system)/(\*|[A-Za-z]+)\.(read|write|\*)$")


def parse_scopes(text: str) -> frozenset[str]:
    """The SMART scopes of a space-separated list, unknown forms (``openid``) left out."""
    return frozenset(s for s in text.split() if _SCOPE.match(s))


def scope_allows(scopes: frozenset[str], resource_type: str, action: Action) -> bool:
    """Whether one of the SMART scopes covers the action (delete needs ``write``)."""
    wanted = "read" if action == "read" else "write"
    for scope in scopes:
        match = _SCOPE.match(scope)
        if match is None:
            continue
        _context, kind, granted = match.groups()
        if kind in ("*", resource_type) and granted in ("*", wanted):
            return True
    return False


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is asking: a user, an API key or an operator's token, with what it may do.

    ``care_units`` None means every unit; ``scopes`` empty means the role's
    table applies unnarrowed; ``patient`` is set by a ``patient/`` launch
    context, limiting every patient read to that one patient.
    """

    subject: str
    role: Role
    kind: Literal["user", "api-key", "token"] = "user"
    care_units: frozenset[str] | None = None
    scopes: frozenset[str] = field(default_factory=frozenset)
    practitioner: str | None = None
    patient: str | None = None
    client: str = ""
    display: str = ""

    def can(self, area: str, action: Action) -> bool:
        """The role's table, narrowed by the token's scopes (FHIR types only)."""
        if action not in PERMISSIONS[self.role].get(area, _NONE):
            return False
        if self.scopes and area[:1].isupper():
            return scope_allows(self.scopes, area, action)
        return True

    @property
    def unit_bound(self) -> bool:
        """Whether patient visibility is limited to ``care_units``."""
        return self.role in UNIT_BOUND and self.care_units is not None

    def sees_unit(self, units: frozenset[str]) -> bool:
        """Whether a patient on ``units`` (empty: no current unit) is visible."""
        if not self.unit_bound:
            return True
        assert self.care_units is not None
        return bool(units & self.care_units)

    @property
    def reference(self) -> str:
        """How AuditEvent.agent names this principal."""
        return self.practitioner or f"{self.kind}:{self.subject}"


def care_units_from(values: list[str] | tuple[str, ...] | None) -> frozenset[str] | None:
    """A stored list of units as the principal's set; ``*`` (or nothing for non-clinical roles)
    means every unit."""
    if values is None or ALL_UNITS in values:
        return None
    return frozenset(values)
