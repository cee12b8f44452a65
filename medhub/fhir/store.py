"""The resource store seam: what every back-end (SQL, MongoDB) offers.

A *unit of work* is one database transaction: everything done through it is
committed together or not at all, which is what lets a transport acknowledge
only after "the message and its effects" are durable (DESIGN.md, reliability).
"""

from __future__ import annotations

from collections.abc import Collection
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

import orjson

from medhub.fhir.search import SearchQuery


def format_instant(value: datetime) -> str:
    """A FHIR ``instant`` in UTC with microseconds: ``2024-05-01T10:00:00.123456Z``."""
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclass(frozen=True, slots=True)
class StoredResource:
    """One stored version of a resource. ``body`` is its JSON text, ``meta`` included."""

    resource_type: str
    id: str
    version_id: int
    last_updated: datetime
    deleted: bool
    body: str | None

    @property
    def resource(self) -> dict[str, Any]:
        """The resource as a dict (parses ``body``; empty for a deleted version)."""
        if self.body is None:
            return {}
        parsed: dict[str, Any] = orjson.loads(self.body)
        return parsed

    @property
    def etag(self) -> str:
        """The weak ETag FHIR uses for versions (FHIR R4 http.html#versioning)."""
        return f'W/"{self.version_id}"'


@dataclass(frozen=True, slots=True)
class SearchResult:
    """One page of matches, the total count of matches (None: not counted) and included resources.

    ``included`` holds what ``_include``/``_revinclude`` pulled in (search mode
    ``include`` in the Bundle), never counted in ``total``.
    """

    resources: list[StoredResource]
    total: int | None
    included: list[StoredResource] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class UpdateOutcome:
    """The stored version and whether the update created the resource."""

    stored: StoredResource
    created: bool


class Resources(Protocol):
    """Resource operations inside one unit of work."""

    def create(self, resource: dict[str, Any], *, resource_id: str | None = None) -> StoredResource:
        """Store a new resource as version 1, under ``resource_id`` or a server-assigned id.

        A transaction Bundle assigns ids before writing so ``urn:uuid:`` references
        can be rewritten; a client-chosen id goes through :meth:`update`.
        """

    def update(
        self,
        resource_type: str,
        resource_id: str,
        resource: dict[str, Any],
        *,
        if_match: int | None = None,
    ) -> UpdateOutcome:
        """Store a new version (or create with the client's id, FHIR update-as-create).

        ``if_match``: PreconditionFailedError unless the current version is that one.
        """

    def read(self, resource_type: str, resource_id: str) -> StoredResource:
        """The current version; NotFoundError if never stored, GoneError if deleted."""

    def vread(self, resource_type: str, resource_id: str, version_id: int) -> StoredResource:
        """One specific version."""

    def delete(
        self, resource_type: str, resource_id: str, *, if_match: int | None = None
    ) -> StoredResource | None:
        """Mark deleted (history kept); None if there was nothing to delete."""

    def history(
        self,
        resource_type: str | None,
        resource_id: str | None = None,
        *,
        since: datetime | None = None,
        count: int | None = None,
    ) -> list[StoredResource]:
        """Versions, newest first: of one resource, of a type (id None) or of all (type None).

        ``since`` keeps versions updated at or after it; ``count`` caps the list.
        Instance history of a never-stored resource is NotFoundError.
        """

    def search(self, query: SearchQuery) -> SearchResult:
        """Current, non-deleted resources matching every criterion."""

    def lock_keys(self, names: Collection[str]) -> bool:
        """Hold ``names`` until this unit of work ends; another unit locking one waits.

        True when another unit may have committed since this one last looked (it
        waited, or cannot tell): search again. False where writers are serialised
        anyway (SQLite's single writer) and nothing can have changed.

        Find-or-create (HL7 identifiers, FHIR ``If-None-Exist``) locks its key
        before the search, so two processes cannot both find nothing and both
        create (:mod:`medhub.fhir.key_locks`).
        """

    def referencing(self, target_type: str, target_id: str) -> list[StoredResource]:
        """Current, non-deleted resources with any indexed reference to ``target_type/target_id``.

        What ``Patient/{id}/$everything`` gathers: the patient's compartment as
        seen through the reference indexes.
        """


class ResourceStore(Protocol):
    """A resource database: opens units of work and reports its health."""

    def unit_of_work(self) -> AbstractContextManager[Resources]:
        """A transaction; commits on normal exit, rolls back on an exception."""

    def ping(self) -> None:
        """Raise StoreUnavailableError if the database cannot be reached."""

    def close(self) -> None:
        """Release connections."""
