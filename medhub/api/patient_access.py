"""Which patients a nurse or physician may see: those on their care units.

A patient's care units are the wards (Location ``physicalType`` ``wa``, as the
HL7 PV1-3 point of care maps them) of their current Encounters (status
in-progress, arrived, triaged or onleave). A nurse or physician whose
principal is bound to units (:attr:`Principal.unit_bound`) sees a patient only
when one of those units is theirs; other roles follow their permission table
alone. A patient with no current Encounter is on no unit, so a unit-bound user
does not see them (admission is what puts a patient on a ward).

Lookups are cached for a few seconds per patient: a dashboard that refreshes
a census of 30 patients must not run 30 x 3 queries each time, and a transfer
takes effect within the cache's lifetime.
"""

from __future__ import annotations

import threading
import time
from typing import Any, Final

from medhub.api.permissions import Principal
from medhub.errors import ForbiddenError, MedhubError
from medhub.fhir.search import parse_search
from medhub.fhir.store import Resources, ResourceStore

CURRENT_ENCOUNTER: Final = "in-progress,arrived,triaged,onleave"
_PATIENT_FIELDS: Final = ("subject", "patient", "beneficiary")
_MAX_LEVELS: Final = 4  # bed, room, ward (and a wing), never an endless partOf loop


def patient_of(resource: dict[str, Any]) -> str | None:
    """The id of the patient a resource is about (itself for a Patient), or None."""
    if resource.get("resourceType") == "Patient":
        value = resource.get("id")
        return value if isinstance(value, str) else None
    for name in _PATIENT_FIELDS:
        field = resource.get(name)
        reference = field.get("reference") if isinstance(field, dict) else None
        if isinstance(reference, str) and reference.startswith("Patient/"):
            return reference.removeprefix("Patient/")
    return None


def _ward_names(resources: Resources, encounter: dict[str, Any]) -> set[str]:
    """The wards of an Encounter's current locations, walking bed -> room -> ward.

    HL7 PV1-3 maps to one Location per level, each ``partOf`` the one above,
    and the Encounter names the most specific (the bed); a location entry
    whose status is ``completed`` is where the patient was before a transfer.
    """
    names: set[str] = set()
    for entry in encounter.get("location") or []:
        if not isinstance(entry, dict) or entry.get("status") not in (None, "active"):
            continue
        reference = (entry.get("location") or {}).get("reference")
        for _level in range(_MAX_LEVELS):
            if not isinstance(reference, str) or not reference.startswith("Location/"):
                break
            try:
                location = resources.read("Location", reference.removeprefix("Location/")).resource
            except MedhubError:
                break
            coding = (location.get("physicalType") or {}).get("coding") or []
            if "wa" in {c.get("code") for c in coding} and isinstance(location.get("name"), str):
                names.add(location["name"])
                break
            reference = (location.get("partOf") or {}).get("reference")
    return names


class PatientAccess:
    """Care-unit visibility of patients, read from the resource store."""

    def __init__(self, store: ResourceStore, *, ttl_seconds: float = 5.0) -> None:
        self.store = store
        self.ttl = ttl_seconds
        self._cache: dict[str, tuple[float, frozenset[str]]] = {}
        self._lock = threading.Lock()

    def units_of(self, patient_id: str) -> frozenset[str]:
        """The wards of the patient's current Encounters (cached for ``ttl_seconds``)."""
        now = time.monotonic()
        with self._lock:
            hit = self._cache.get(patient_id)
        if hit is not None and now - hit[0] < self.ttl:
            return hit[1]
        units: set[str] = set()
        with self.store.unit_of_work() as resources:
            query = parse_search(
                "Encounter",
                [("subject", f"Patient/{patient_id}"), ("status", CURRENT_ENCOUNTER)],
            )
            query.with_total = False
            for stored in resources.search(query).resources:
                units |= _ward_names(resources, stored.resource)
        result = frozenset(units)
        with self._lock:
            self._cache[patient_id] = (now, result)
        return result

    def visible(self, principal: Principal, patient_id: str) -> bool:
        if principal.patient is not None and principal.patient != patient_id:
            return False  # a patient-context token sees only its patient
        if not principal.unit_bound:
            return True
        return principal.sees_unit(self.units_of(patient_id))

    def check_patient(self, principal: Principal, patient_id: str) -> None:
        """ForbiddenError unless the principal may see this patient."""
        if not self.visible(principal, patient_id):
            raise ForbiddenError(
                f"Patient/{patient_id} is not on a care unit of {principal.subject}"
            )

    def check_resource(self, principal: Principal, resource: dict[str, Any]) -> None:
        """ForbiddenError unless the resource is about a patient the principal may see."""
        patient = patient_of(resource)
        if patient is not None:
            self.check_patient(principal, patient)
