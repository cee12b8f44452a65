"""Apply a mapped Patient to the store: create it, or update the one its identifiers name.

HL7 v2 semantics for an update (v2.5.1 §2.5.3): a field left empty means "no
information", so elements the message does not carry are kept; identifiers
are added to, never dropped. If the identifiers point at two different stored
patients medhub refuses to guess (that would attach data to the wrong
person): the message is answered AE and the sites must merge first.
"""

from __future__ import annotations

from typing import Any

from medhub.errors import ConflictError, Hl7Location, Issue
from medhub.fhir.search import Criterion, SearchQuery, TokenValue
from medhub.fhir.store import Resources, StoredResource


def _identifier_key(identifier: dict[str, Any]) -> tuple[str, str]:
    return str(identifier.get("system", "")), str(identifier.get("value", ""))


def find_patients_by_identifiers(
    resources: Resources, identifiers: list[dict[str, Any]]
) -> list[StoredResource]:
    """Stored patients carrying any of these identifiers (system must match; none = none)."""
    values = tuple(
        TokenValue(str(i.get("system", "")), str(i["value"])) for i in identifiers if i.get("value")
    )
    if not values:
        return []
    query = SearchQuery("Patient", [Criterion("identifier", "token", values)], count=10)
    return resources.search(query).resources


def merge_patient(existing: dict[str, Any], incoming: dict[str, Any]) -> dict[str, Any]:
    """``existing`` updated with what ``incoming`` carries; identifiers are unioned."""
    merged = {k: v for k, v in existing.items() if k not in ("meta",)}
    for key, value in incoming.items():
        if key != "identifier":
            merged[key] = value
    known = {_identifier_key(i) for i in existing.get("identifier", [])}
    identifiers = list(existing.get("identifier", []))
    for identifier in incoming.get("identifier", []):
        if _identifier_key(identifier) not in known:
            identifiers.append(identifier)
            known.add(_identifier_key(identifier))
    merged["identifier"] = identifiers
    if "deceasedDateTime" in incoming:
        merged.pop("deceasedBoolean", None)
    if "deceasedBoolean" in incoming:
        merged.pop("deceasedDateTime", None)
    return merged


def upsert_patient(resources: Resources, patient: dict[str, Any]) -> StoredResource:
    """Create or update the Patient; returns the stored version (unchanged if nothing changed)."""
    matches = find_patients_by_identifiers(resources, patient.get("identifier", []))
    if not matches:
        return resources.create(patient)
    if len(matches) > 1:
        ids = ", ".join(f"Patient/{m.id}" for m in matches)
        text = f"PID-3 identifiers match more than one patient ({ids}); merge them first"
        raise ConflictError(
            text,
            [
                Issue(
                    text,
                    code="multiple-matches",
                    location=Hl7Location("PID", 1, 3),
                    hl7_error_code=205,
                )
            ],
        )
    current = matches[0]
    existing = current.resource
    merged = merge_patient(existing, patient)
    unchanged = {k: v for k, v in existing.items() if k != "meta"} == merged
    if unchanged:
        return current
    return resources.update("Patient", current.id, merged).stored
