"""Write hooks: business rules that run inside the unit of work of a FHIR write.

Some resource types carry rules beyond FHIR's own: a MedicationRequest is
checked for interactions and allergies before it is saved, and a saved one
is sent to the pharmacy (issue "medication safety"). The rule must hold
whichever way the write arrives (``POST``, ``PUT`` create-on-update, an entry
of a transaction or batch Bundle), so it sits under all of them: a
:class:`HookedResources` wraps a unit of work and hands creates, updates and
deletes of the hooked types to their :class:`ResourceHook`, which writes
through the inner unit of work (same transaction: what the hook adds commits
or rolls back with the resource).

A hook may leave *notes* for the client (warnings that did not block the
write); REST answers them in an OperationOutcome when the client asks with
``Prefer: return=OperationOutcome``, and a Bundle answers them in the entry's
``response.outcome``.

The fhir layer knows nothing of what hooks do; they are wired in the
composition root (DESIGN.md's dependency rule).
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager
from datetime import datetime
from typing import Any, Protocol

from medhub.errors import ForbiddenError, GoneError, Issue, NotFoundError
from medhub.fhir.search import SearchQuery
from medhub.fhir.store import (
    Resources,
    ResourceStore,
    SearchResult,
    StoredResource,
    UpdateOutcome,
)


class WriteNotes:
    """Issues left for the client by hooks, per written resource."""

    def __init__(self) -> None:
        self._notes: dict[tuple[str, str], list[Issue]] = {}

    def add(self, stored: StoredResource, issues: Iterable[Issue]) -> None:
        self._notes.setdefault((stored.resource_type, stored.id), []).extend(issues)

    def for_resource(self, stored: StoredResource | None) -> list[Issue]:
        if stored is None:
            return []
        return list(self._notes.get((stored.resource_type, stored.id), ()))


class ResourceHook(Protocol):
    """The rules of one resource type; each method performs the write through ``inner``."""

    def create(
        self,
        inner: Resources,
        resource: dict[str, Any],
        *,
        resource_id: str | None,
        notes: WriteNotes,
    ) -> StoredResource: ...

    def update(
        self,
        inner: Resources,
        resource_id: str,
        resource: dict[str, Any],
        *,
        if_match: int | None,
        notes: WriteNotes,
    ) -> UpdateOutcome: ...

    def delete(
        self, inner: Resources, resource_id: str, *, if_match: int | None
    ) -> StoredResource | None: ...


class HookedResources:
    """A :class:`Resources` whose writes of hooked types go through their hooks."""

    def __init__(self, inner: Resources, hooks: Mapping[str, ResourceHook]) -> None:
        self.inner = inner
        self.hooks = hooks
        self.notes = WriteNotes()

    def create(self, resource: dict[str, Any], *, resource_id: str | None = None) -> StoredResource:
        hook = self.hooks.get(str(resource.get("resourceType")))
        if hook is None:
            return self.inner.create(resource, resource_id=resource_id)
        return hook.create(self.inner, resource, resource_id=resource_id, notes=self.notes)

    def update(
        self,
        resource_type: str,
        resource_id: str,
        resource: dict[str, Any],
        *,
        if_match: int | None = None,
    ) -> UpdateOutcome:
        hook = self.hooks.get(resource_type)
        if hook is None:
            return self.inner.update(resource_type, resource_id, resource, if_match=if_match)
        return hook.update(self.inner, resource_id, resource, if_match=if_match, notes=self.notes)

    def delete(
        self, resource_type: str, resource_id: str, *, if_match: int | None = None
    ) -> StoredResource | None:
        hook = self.hooks.get(resource_type)
        if hook is None:
            return self.inner.delete(resource_type, resource_id, if_match=if_match)
        return hook.delete(self.inner, resource_id, if_match=if_match)

    def read(self, resource_type: str, resource_id: str) -> StoredResource:
        return self.inner.read(resource_type, resource_id)

    def vread(self, resource_type: str, resource_id: str, version_id: int) -> StoredResource:
        return self.inner.vread(resource_type, resource_id, version_id)

    def history(
        self,
        resource_type: str | None,
        resource_id: str | None = None,
        *,
        since: datetime | None = None,
        count: int | None = None,
    ) -> list[StoredResource]:
        return self.inner.history(resource_type, resource_id, since=since, count=count)

    def search(self, query: SearchQuery) -> SearchResult:
        return self.inner.search(query)

    def referencing(self, target_type: str, target_id: str) -> list[StoredResource]:
        return self.inner.referencing(target_type, target_id)

    def lock_keys(self, names: Collection[str]) -> bool:
        return self.inner.lock_keys(names)

    def prefetch(self, keys: Iterable[tuple[str, str]]) -> None:
        """Pass a Bundle's read-ahead on to stores that have one."""
        prefetch = getattr(self.inner, "prefetch", None)
        if prefetch is not None:
            prefetch(keys)


class AppendOnlyHook:
    """Resources that may be added but never changed or deleted (AuditEvent).

    FHIR R4 auditevent.html: an audit trail must be tamper-evident. A PUT that
    creates (a client-chosen id, as a migration sends) is an addition and is
    allowed; a PUT over an existing one, and any delete, is refused.
    """

    def __init__(self, resource_type: str) -> None:
        self.resource_type = resource_type

    def create(
        self,
        inner: Resources,
        resource: dict[str, Any],
        *,
        resource_id: str | None,
        notes: WriteNotes,  # noqa: ARG002
    ) -> StoredResource:
        return inner.create(resource, resource_id=resource_id)

    def update(
        self,
        inner: Resources,
        resource_id: str,
        resource: dict[str, Any],
        *,
        if_match: int | None,
        notes: WriteNotes,  # noqa: ARG002
    ) -> UpdateOutcome:
        try:
            inner.read(self.resource_type, resource_id)
        except (NotFoundError, GoneError):
            return inner.update(self.resource_type, resource_id, resource, if_match=if_match)
        raise ForbiddenError(f"{self.resource_type} records cannot be changed")

    def delete(
        self,
        inner: Resources,  # noqa: ARG002
        resource_id: str,  # noqa: ARG002
        *,
        if_match: int | None,  # noqa: ARG002
    ) -> StoredResource | None:
        raise ForbiddenError(f"{self.resource_type} records cannot be deleted")


#: Builds the hooks of one unit of work (they may hold that transaction's session).
HookFactory = Callable[[Resources], Mapping[str, ResourceHook]]


class HookedStore:
    """A :class:`ResourceStore` whose units of work are :class:`HookedResources`."""

    def __init__(self, inner: ResourceStore, hooks: HookFactory) -> None:
        self.inner = inner
        self._hooks = hooks

    @contextmanager
    def _unit(self) -> Iterator[HookedResources]:
        with self.inner.unit_of_work() as resources:
            yield HookedResources(resources, self._hooks(resources))

    def unit_of_work(self) -> AbstractContextManager[HookedResources]:
        return self._unit()

    def ping(self) -> None:
        self.inner.ping()

    def close(self) -> None:
        self.inner.close()


def notes_for(resources: Resources, stored: StoredResource | None) -> list[Issue]:
    """The notes hooks left on ``stored`` in this unit of work (none for a plain store)."""
    if isinstance(resources, HookedResources):
        return resources.notes.for_resource(stored)
    return []
