"""FHIR write interactions with their HTTP semantics (FHIR R4 http.html), over a unit of work.

The REST routes and the entries of a batch or transaction Bundle both go
through these functions, so ``POST Patient`` behaves the same whether it
arrives alone or as entry 12 of a transaction: conditional create
(``If-None-Exist``), conditional update, delete and patch, ``If-Match``, and
the status codes a FHIR client expects (201 created, 200 updated or already
there, 204 nothing to delete, 412 when a condition matches several resources).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Final, Literal
from urllib.parse import parse_qsl

from medhub.errors import (
    InputError,
    Issue,
    NotFoundError,
    PreconditionFailedError,
    UnsupportedMediaError,
)
from medhub.fhir.key_locks import criteria_lock_names
from medhub.fhir.search import parse_search
from medhub.fhir.store import Resources, StoredResource

PatchFormat = Literal["json-patch", "fhirpath-patch"]
_ETAG: Final = re.compile(r'^\s*(?:W/)?"?(\d+)"?\s*$')


@dataclass(frozen=True, slots=True)
class Written:
    """What a write did: the HTTP status and the resulting version (None: nothing to return)."""

    status: int
    stored: StoredResource | None


def parse_etag(value: str | None, *, where: str = "If-Match") -> int | None:
    """The version number in an ``If-Match`` value such as ``W/"3"`` (None when absent)."""
    if value is None or value == "":
        return None
    match = _ETAG.match(value)
    if match is None:
        message = f'{where} must be a version ETag such as W/"3", got {value!r}'
        raise InputError(message, [Issue(message, code="invalid", expression=(where,))])
    return int(match.group(1))


def find_matches(
    resources: Resources, resource_type: str, criteria: str, *, where: str
) -> list[StoredResource]:
    """The current resources matching a conditional URL's query (at most two are fetched).

    Two are enough to tell "one" from "several", and fetching only two keeps a
    condition that matches thousands of resources cheap.
    """
    pairs = parse_qsl(criteria, keep_blank_values=True)
    if not pairs:
        message = f"{where}: a conditional request needs search criteria, got {criteria!r}"
        raise InputError(message, [Issue(message, code="invalid", expression=(where,))])
    query = parse_search(resource_type, pairs)
    query.count = 2
    query.with_total = False
    found = resources.search(query).resources
    if found:
        return found
    # What follows may create (If-None-Exist, conditional update): hold the search's name
    # until commit and look again, so two servers cannot both find nothing and both create
    # (medhub.fhir.key_locks).
    if resources.lock_keys(criteria_lock_names(resource_type, pairs)):
        return resources.search(query).resources
    return []


def _one_or_none(
    matches: list[StoredResource], resource_type: str, criteria: str
) -> StoredResource | None:
    if len(matches) > 1:
        raise PreconditionFailedError(
            f"the condition {resource_type}?{criteria} matches more than one resource"
        )
    return matches[0] if matches else None


def _check_body_type(resource_type: str, body: Any, where: str) -> dict[str, Any]:
    if not isinstance(body, dict):
        message = f"{where}: the body must be a JSON object holding a {resource_type}"
        raise InputError(message, [Issue(message, code="structure", expression=(where,))])
    if body.get("resourceType") != resource_type:
        message = (
            f"{where}: resourceType is {body.get('resourceType')!r}, the URL names {resource_type}"
        )
        raise InputError(message, [Issue(message, code="invalid", expression=("resourceType",))])
    return body


def create(
    resources: Resources,
    resource_type: str,
    body: Any,
    *,
    if_none_exist: str | None = None,
    resource_id: str | None = None,
) -> Written:
    """POST: a new resource with a server id; with ``If-None-Exist`` only if none matches."""
    body = _check_body_type(resource_type, body, "body")
    if if_none_exist:
        found = _one_or_none(
            find_matches(resources, resource_type, if_none_exist, where="If-None-Exist"),
            resource_type,
            if_none_exist,
        )
        if found is not None:
            return Written(200, found)
    body = {key: value for key, value in body.items() if key != "id"}
    return Written(201, resources.create(body, resource_id=resource_id))


def update(
    resources: Resources,
    resource_type: str,
    resource_id: str,
    body: Any,
    *,
    if_match: int | None = None,
) -> Written:
    """PUT Type/id: a new version, or create-on-update with the client's id (201)."""
    body = _check_body_type(resource_type, body, "body")
    body_id = body.get("id")
    if body_id != resource_id:
        message = f"the resource's id ({body_id!r}) must equal the id in the URL ({resource_id!r})"
        raise InputError(
            message, [Issue(message, code="invalid", expression=(f"{resource_type}.id",))]
        )
    outcome = resources.update(resource_type, resource_id, body, if_match=if_match)
    return Written(201 if outcome.created else 200, outcome.stored)


def conditional_update(
    resources: Resources,
    resource_type: str,
    criteria: str,
    body: Any,
    *,
    if_match: int | None = None,
) -> Written:
    """PUT Type?criteria: update the one match, create when none, 412 when several."""
    body = _check_body_type(resource_type, body, "body")
    found = _one_or_none(
        find_matches(resources, resource_type, criteria, where="url"), resource_type, criteria
    )
    body_id = body.get("id")
    if found is None:
        if isinstance(body_id, str):
            return update(resources, resource_type, body_id, body, if_match=if_match)
        return create(resources, resource_type, body)
    if body_id is not None and body_id != found.id:
        message = (
            f"the resource's id ({body_id!r}) is not the id of the resource the condition "
            f"matched ({found.id!r})"
        )
        raise InputError(
            message, [Issue(message, code="invalid", expression=(f"{resource_type}.id",))]
        )
    return update(resources, resource_type, found.id, {**body, "id": found.id}, if_match=if_match)


def delete(
    resources: Resources, resource_type: str, resource_id: str, *, if_match: int | None = None
) -> Written:
    """DELETE Type/id: soft delete (history kept); 204 also when there was nothing to delete."""
    deleted = resources.delete(resource_type, resource_id, if_match=if_match)
    return Written(200 if deleted is not None else 204, deleted)


def conditional_delete(resources: Resources, resource_type: str, criteria: str) -> Written:
    """DELETE Type?criteria: delete the one match (204 when none, 412 when several)."""
    found = _one_or_none(
        find_matches(resources, resource_type, criteria, where="url"), resource_type, criteria
    )
    if found is None:
        return Written(204, None)
    return delete(resources, resource_type, found.id)


def patch_format(content_type: str | None) -> PatchFormat:
    """Which patch language a PATCH body is in, from its Content-Type (415 when neither)."""
    media = (content_type or "").split(";")[0].strip().lower()
    if media == "application/json-patch+json":
        return "json-patch"
    if media in ("application/fhir+json", "application/json"):
        return "fhirpath-patch"
    raise UnsupportedMediaError(
        f"PATCH needs Content-Type application/json-patch+json (JSON Patch) or "
        f"application/fhir+json (FHIRPath Patch Parameters), got {media or 'none'!r}"
    )


def patch(
    resources: Resources,
    resource_type: str,
    resource_id: str,
    document: Any,
    fmt: PatchFormat,
    *,
    if_match: int | None = None,
) -> Written:
    """PATCH Type/id: apply the patch to the current version and store the result.

    The new version is written with ``If-Match`` of the version the patch was
    applied to, so a concurrent update between the read and the write is a 412,
    never a lost update.
    """
    from medhub.fhir.patch import apply_fhirpath_patch, apply_json_patch

    current = resources.read(resource_type, resource_id)
    if if_match is not None and if_match != current.version_id:
        raise PreconditionFailedError(
            f"{resource_type}/{resource_id} is at version {current.version_id}, not {if_match}"
        )
    apply = apply_json_patch if fmt == "json-patch" else apply_fhirpath_patch
    patched = apply(current.resource, document)
    patched.pop("meta", None)
    if patched.get("resourceType") != resource_type or patched.get("id") != resource_id:
        message = "a patch must not change resourceType or id"
        raise InputError(
            message, [Issue(message, code="invalid", expression=(f"{resource_type}.id",))]
        )
    outcome = resources.update(resource_type, resource_id, patched, if_match=current.version_id)
    return Written(200, outcome.stored)


def conditional_patch(
    resources: Resources,
    resource_type: str,
    criteria: str,
    document: Any,
    fmt: PatchFormat,
    *,
    if_match: int | None = None,
) -> Written:
    """PATCH Type?criteria: patch the one match (404 when none, 412 when several)."""
    found = _one_or_none(
        find_matches(resources, resource_type, criteria, where="url"), resource_type, criteria
    )
    if found is None:
        raise NotFoundError(f"no {resource_type} matches {criteria!r}")
    return patch(resources, resource_type, found.id, document, fmt, if_match=if_match)
