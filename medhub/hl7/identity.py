"""Find-or-create by business identifier, with HL7 v2 update semantics.

HL7 v2 messages name things by identifiers (PID-3 for patients, PV1-19 for
visits, XCN ids for practitioners), never by medhub's ids. Applying a message
therefore means: find the stored resource carrying one of the identifiers,
update it, or create it. HL7 v2.5.1 §2.5.3: a field left empty means "no
information", so elements the message does not carry are kept, and
identifiers are added to, never dropped. If the identifiers point at two
different stored resources medhub refuses to guess (that would attach data
to the wrong patient); the sender is answered AE.
"""

from __future__ import annotations

from typing import Any

from medhub.errors import ConflictError, Hl7Location, Issue
from medhub.fhir.key_locks import identifier_lock_name
from medhub.fhir.search import Criterion, SearchQuery, TokenValue
from medhub.fhir.store import Resources, StoredResource


def _identifier_key(identifier: dict[str, Any]) -> tuple[str, str]:
    return str(identifier.get("system", "")), str(identifier.get("value", ""))


def find_by_identifiers(
    resources: Resources,
    resource_type: str,
    identifiers: list[dict[str, Any]],
    *,
    param: str = "identifier",
) -> list[StoredResource]:
    """Stored resources of this type carrying any of the identifiers.

    The system must match; an identifier without a system matches only stored
    identifiers without one (FHIR token ``|value``).
    """
    values = tuple(
        TokenValue(str(i.get("system", "")), str(i["value"])) for i in identifiers if i.get("value")
    )
    if not values:
        return []
    query = SearchQuery(
        resource_type, [Criterion(param, "token", values)], count=10, with_total=False
    )
    found = resources.search(query).resources
    if found:
        return found
    # Nothing yet, and the caller will create it: hold the names until commit and look
    # again, so another process cannot find nothing too and create a second one. Names
    # already stored (the busy ward's Location) never take the lock.
    names = [identifier_lock_name(resource_type, param, v.system, v.code or "") for v in values]
    return resources.search(query).resources if resources.lock_keys(names) else []


def merge_resource(existing: dict[str, Any], incoming: dict[str, Any]) -> dict[str, Any]:
    """``existing`` updated with what ``incoming`` carries; identifiers are unioned."""
    merged = {k: v for k, v in existing.items() if k != "meta"}
    for key, value in incoming.items():
        if key != "identifier":
            merged[key] = value
    known = {_identifier_key(i) for i in existing.get("identifier", [])}
    identifiers = list(existing.get("identifier", []))
    for identifier in incoming.get("identifier", []):
        if _identifier_key(identifier) not in known:
            identifiers.append(identifier)
            known.add(_identifier_key(identifier))
    if identifiers:
        merged["identifier"] = identifiers
    for choice in ("deceased", "multipleBirth", "effective", "onset", "value"):
        sent = [k for k in incoming if k.startswith(choice) and k != choice]
        if sent:
            for key in [k for k in merged if k.startswith(choice) and k not in sent]:
                del merged[key]
    return merged


def upsert_by_identifiers(
    resources: Resources,
    resource: dict[str, Any],
    *,
    location: Hl7Location,
) -> StoredResource:
    """Create the resource, or update the one its identifiers name.

    Returns the stored version; when the merge changes nothing, no new version
    is written (a resent ADT^A08 does not grow the history).
    """
    resource_type = resource["resourceType"]
    matches = find_by_identifiers(resources, resource_type, resource.get("identifier", []))
    if not matches:
        return resources.create(resource)
    if len(matches) > 1:
        ids = ", ".join(f"{resource_type}/{m.id}" for m in matches)
        text = (
            f"{location.terser()} identifiers match more than one {resource_type} ({ids}); "
            "merge them first"
        )
        raise ConflictError(
            text, [Issue(text, code="multiple-matches", location=location, hl7_error_code=205)]
        )
    current = matches[0]
    existing = current.resource
    merged = merge_resource(existing, resource)
    if {k: v for k, v in existing.items() if k != "meta"} == merged:
        return current
    return resources.update(resource_type, current.id, merged).stored
