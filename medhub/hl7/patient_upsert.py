"""Apply a mapped Patient: create it, or update the one its PID-3 identifiers name."""

from __future__ import annotations

from typing import Any

from medhub.errors import Hl7Location
from medhub.fhir.store import Resources, StoredResource
from medhub.hl7.identity import upsert_by_identifiers


def upsert_patient(resources: Resources, patient: dict[str, Any]) -> StoredResource:
    """Create or update the Patient; see :mod:`medhub.hl7.identity` for the rules."""
    return upsert_by_identifiers(resources, patient, location=Hl7Location("PID", 1, 3))
