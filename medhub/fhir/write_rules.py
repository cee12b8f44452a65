"""The rules every resource store applies to a write, whatever the database.

Kept in one place so the SQL and MongoDB stores answer the same request the
same way: the same 400 for a bad id, the same 412 for a stale ``If-Match``.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from medhub.clinical.resources import is_valid_id
from medhub.errors import InputError, Issue, PreconditionFailedError
from medhub.fhir.store import StoredResource


def utc_now() -> datetime:
    return datetime.now(UTC)


def check_id(resource_type: str, resource_id: str) -> None:
    """400 for an id FHIR does not allow (``[A-Za-z0-9-.]{1,64}``)."""
    if not is_valid_id(resource_id):
        message = f"{resource_id!r} is not a valid FHIR id"
        raise InputError(message, [Issue(message, expression=(f"{resource_type}.id",))])


def check_body_id(resource_type: str, resource_id: str, resource: dict[str, Any]) -> None:
    """400 when the body names another resource than the one being written."""
    body_id = resource.get("id")
    if body_id is not None and body_id != resource_id:
        message = f"resource id {body_id!r} does not match the id {resource_id!r} in the URL"
        raise InputError(message, [Issue(message, expression=(f"{resource_type}.id",))])


def check_version(
    resource_type: str, resource_id: str, current: StoredResource | None, if_match: int | None
) -> None:
    """If-Match: the write applies only to the version the client last saw (else 412)."""
    if if_match is None:
        return
    have = current.version_id if current is not None and not current.deleted else None
    if have != if_match:
        raise PreconditionFailedError(
            f"{resource_type}/{resource_id} is at version {have}, not {if_match}"
        )
