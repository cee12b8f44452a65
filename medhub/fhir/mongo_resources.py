"""Resource operations of one MongoDB unit of work (see :mod:`medhub.fhir.mongo_store`).

:class:`MongoResources` mirrors :class:`medhub.fhir.sql_store.SqlResources`
operation for operation. Every write is guarded by the version it expects, so
a racing writer fails with :class:`ConcurrentWriteError` instead of losing a
version; without a transaction (standalone servers, mongomock) each write is
also recorded in an undo log that :meth:`MongoResources.undo` plays back.
"""

from __future__ import annotations

import collections.abc
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

import orjson
import structlog
from pymongo import ASCENDING, DESCENDING
from pymongo.client_session import ClientSession
from pymongo.collection import Collection
from pymongo.database import Database
from pymongo.errors import DuplicateKeyError, PyMongoError

from medhub.clinical.resources import validate_resource
from medhub.errors import (
    ConcurrentWriteError,
    GoneError,
    NotFoundError,
    StoreUnavailableError,
)
from medhub.fhir.mongo_documents import (
    HISTORY,
    RESOURCES,
    STORED_FIELDS,
    floor_ms,
    history_document,
    history_key,
    resource_document,
    resource_key,
    stored_resource,
)
from medhub.fhir.mongo_includes import fetch_includes
from medhub.fhir.mongo_search import SEARCH_SORT, search_filter, sort_stages
from medhub.fhir.search import SearchQuery
from medhub.fhir.store import SearchResult, StoredResource, UpdateOutcome, format_instant
from medhub.fhir.write_rules import check_body_id, check_id, check_version, utc_now

log = structlog.get_logger(__name__)

Clock = Callable[[], datetime]
Document = dict[str, Any]


@contextmanager
def translated_errors() -> Iterator[None]:
    """pymongo errors as medhub errors, the original kept as ``__cause__``.

    Duplicate keys and transient transaction conflicts mean another writer won
    (409, retry); anything else means the database is not usable now (503).
    """
    try:
        yield
    except DuplicateKeyError as exc:
        raise ConcurrentWriteError(
            "a concurrent write to the same resource won; retry the request"
        ) from exc
    except PyMongoError as exc:
        if exc.has_error_label("TransientTransactionError"):
            raise ConcurrentWriteError(
                "a concurrent transaction conflicted; retry the request"
            ) from exc
        raise StoreUnavailableError(f"the resource database failed: {exc}") from exc


@dataclass(frozen=True, slots=True)
class _Undo:
    """How to take back one write: the head it replaced (None: it inserted one) and its history."""

    key: str
    written_version: int
    previous: Document | None
    history_key: str | None


class MongoResources:
    """Resource operations inside one unit of work (atomicity: see :mod:`medhub.fhir.mongo_store`).

    ``session`` is the transaction's client session, or None on servers
    without transactions; then every write is recorded in an undo log that
    :meth:`undo` plays back if the unit fails.
    """

    def __init__(
        self,
        database: Database[Document],
        *,
        session: ClientSession | None,
        clock: Clock = utc_now,
        validate: bool = True,
    ) -> None:
        self._resources: Collection[Document] = database[RESOURCES]
        self._history: Collection[Document] = database[HISTORY]
        self._session = session
        self._clock = clock
        self._validate = validate
        self._known: dict[tuple[str, str], Document | None] = {}
        self._undo: list[_Undo] = []

    # -- writes ---------------------------------------------------------------

    def create(self, resource: dict[str, Any], *, resource_id: str | None = None) -> StoredResource:
        resource = self._checked(resource, None)
        if resource_id is None:
            resource_id = str(uuid.uuid4())
        else:
            check_id(resource["resourceType"], resource_id)
        return self._write(resource["resourceType"], resource_id, resource, None, "POST")

    def update(
        self,
        resource_type: str,
        resource_id: str,
        resource: dict[str, Any],
        *,
        if_match: int | None = None,
    ) -> UpdateOutcome:
        check_id(resource_type, resource_id)
        resource = self._checked(resource, resource_type)
        check_body_id(resource_type, resource_id, resource)
        current = self._current(resource_type, resource_id)
        check_version(resource_type, resource_id, current, if_match)
        stored = self._write(resource_type, resource_id, resource, current, "PUT")
        return UpdateOutcome(stored, created=current is None or current.deleted)

    def delete(
        self, resource_type: str, resource_id: str, *, if_match: int | None = None
    ) -> StoredResource | None:
        current = self._current(resource_type, resource_id)
        check_version(resource_type, resource_id, current, if_match)
        if current is None or current.deleted:
            return None
        stored = StoredResource(
            resource_type, resource_id, current.version_id + 1, self._now(), True, None
        )
        self._store(stored, None, current, "DELETE")
        return stored

    # -- reads ----------------------------------------------------------------

    def read(self, resource_type: str, resource_id: str) -> StoredResource:
        with translated_errors():
            document = self._resources.find_one(
                {"_id": resource_key(resource_type, resource_id)},
                STORED_FIELDS,
                session=self._session,
            )
        if document is None:
            raise NotFoundError(f"{resource_type}/{resource_id} is not known")
        if document["deleted"]:
            raise GoneError(f"{resource_type}/{resource_id} was deleted")
        return stored_resource(document)

    def vread(self, resource_type: str, resource_id: str, version_id: int) -> StoredResource:
        with translated_errors():
            document = self._history.find_one(
                {"_id": history_key(resource_type, resource_id, version_id)},
                session=self._session,
            )
        if document is None:
            raise NotFoundError(f"{resource_type}/{resource_id} has no version {version_id}")
        if document["deleted"]:
            raise GoneError(f"version {version_id} of {resource_type}/{resource_id} is a deletion")
        return stored_resource(document)

    def history(
        self,
        resource_type: str | None,
        resource_id: str | None = None,
        *,
        since: datetime | None = None,
        count: int | None = None,
    ) -> list[StoredResource]:
        selector: Document = {}
        if resource_type is not None:
            selector["type"] = resource_type
        if resource_id is not None:
            selector["id"] = resource_id
        if since is not None:
            selector["lastUpdated"] = {"$gte": floor_ms(since)}
        sort = [("lastUpdated", DESCENDING), ("version", DESCENDING), ("id", ASCENDING)]
        with translated_errors():
            documents = self._find(self._history, selector, sort, count)
            if not documents and resource_id is not None and since is None:
                # count=0 on a known resource is an empty page, not "unknown".
                known = count == 0 and self._history.find_one(selector, session=self._session)
                if not known:
                    raise NotFoundError(f"{resource_type}/{resource_id} is not known")
        return [stored_resource(d) for d in documents]

    def lock_keys(self, names: collections.abc.Collection[str]) -> bool:
        """In a transaction: write and remove a ``key_locks`` document per name, so a
        second transaction locking it fails with a write conflict (ConcurrentWriteError,
        retried by callers) instead of both creating. Without transactions (a standalone
        server) MongoDB cannot hold a lock for a unit of work and this does nothing:
        concurrent find-or-create there may create twice (documented in
        :mod:`medhub.fhir.mongo_store`)."""
        if self._session is None:
            return True
        locks = self._resources.database["key_locks"]
        with translated_errors():
            for name in sorted(names):
                locks.insert_one({"_id": name}, session=self._session)
                locks.delete_one({"_id": name}, session=self._session)
        return True

    def search(self, query: SearchQuery) -> SearchResult:
        """One page of current matches, the total and the includes (see mongo_search)."""
        selector = search_filter(query)
        with translated_errors():
            found = [stored_resource(d) for d in self._page(query, selector)]
            total = len(found)
            if query.with_total or query.summary_count:
                total = self._resources.count_documents(selector, session=self._session)
            included: list[StoredResource] = []
            if query.includes and found:
                included = fetch_includes(self._resources, self._session, query, found)
        return SearchResult(found, total, included)

    def _page(self, query: SearchQuery, selector: Document) -> list[Document]:
        """The page's documents: a find in the default order, an aggregation for ``_sort``."""
        limit = 0 if query.summary_count else query.count
        stages = sort_stages(query)
        if not stages or not limit:
            return self._find(self._resources, selector, SEARCH_SORT, limit, query.offset)
        paging = [{"$skip": query.offset}] if query.offset else []
        pipeline = [{"$match": selector}, *stages, *paging, {"$limit": limit}]
        pipeline.append({"$project": STORED_FIELDS})
        return list(self._resources.aggregate(pipeline, session=self._session))

    def referencing(self, target_type: str, target_id: str) -> list[StoredResource]:
        selector = {
            "refs": {"$elemMatch": {"t": target_type, "i": target_id}},
            "deleted": False,
        }
        sort = [("type", ASCENDING), ("lastUpdated", ASCENDING), ("id", ASCENDING)]
        with translated_errors():
            documents = self._find(self._resources, selector, sort, None)
        return [stored_resource(d) for d in documents]

    # -- rollback without transactions ------------------------------------------

    def undo(self) -> None:
        """Take back this unit's writes, newest first (servers without transactions only).

        A head is restored only if it is still the version this unit wrote. If
        another writer has built on it meanwhile (it saw the write: no
        isolation without transactions), that resource is left as it is, with
        the history entries this unit wrote for it, so its history stays
        complete; the skip is logged.
        """
        steps, self._undo = self._undo, []
        self._known.clear()
        kept: set[str] = set()
        for step in reversed(steps):
            if step.key not in kept:
                selector = {"_id": step.key, "version": step.written_version}
                if step.previous is None:
                    done = self._resources.delete_one(selector).deleted_count
                else:
                    done = self._resources.replace_one(selector, step.previous).matched_count
                if not done:
                    log.warning("mongo_undo_skipped", key=step.key, version=step.written_version)
                    kept.add(step.key)
            if step.key not in kept and step.history_key is not None:
                self._history.delete_one({"_id": step.history_key})

    # -- internals ------------------------------------------------------------

    def _checked(self, resource: dict[str, Any], expected_type: str | None) -> dict[str, Any]:
        if self._validate:
            return validate_resource(resource, expected_type=expected_type)
        return dict(resource)

    def _now(self) -> datetime:
        """The write time, at the millisecond precision BSON stores (see mongo_documents)."""
        return floor_ms(self._clock())

    def _find(
        self,
        collection: Collection[Document],
        selector: Document,
        sort: list[tuple[str, int]],
        limit: int | None,
        skip: int = 0,
    ) -> list[Document]:
        if limit == 0:  # pymongo reads limit 0 as "no limit"
            return []
        cursor = collection.find(selector, STORED_FIELDS, session=self._session).sort(sort)
        if skip:
            cursor = cursor.skip(skip)
        if limit is not None:
            cursor = cursor.limit(limit)
        return list(cursor)

    def _current(self, resource_type: str, resource_id: str) -> StoredResource | None:
        key = (resource_type, resource_id)
        if key not in self._known:
            with translated_errors():
                self._known[key] = self._resources.find_one(
                    {"_id": resource_key(resource_type, resource_id)}, session=self._session
                )
        document = self._known[key]
        return None if document is None else stored_resource(document)

    def _write(
        self,
        resource_type: str,
        resource_id: str,
        resource: dict[str, Any],
        current: StoredResource | None,
        method: str,
    ) -> StoredResource:
        key = (resource_type, resource_id)
        if current is None and self._known.get(key) is not None:
            # Created earlier in this unit: an update, never a second insert.
            current = self._current(resource_type, resource_id)
        now = self._now()
        version = 1 if current is None else current.version_id + 1
        meta = dict(resource.get("meta") or {})
        meta["versionId"] = str(version)
        meta["lastUpdated"] = format_instant(now)
        body = {**resource, "id": resource_id, "meta": meta}
        stored = StoredResource(
            resource_type, resource_id, version, now, False, orjson.dumps(body).decode()
        )
        self._store(stored, body, current, method)
        return stored

    def _store(
        self,
        stored: StoredResource,
        body: dict[str, Any] | None,
        current: StoredResource | None,
        method: str,
    ) -> None:
        """Write the new head (guarded by the version it replaces) and its history entry."""
        key = (stored.resource_type, stored.id)
        document = resource_document(stored, body)
        previous = self._known.get(key)
        with translated_errors():
            if current is None:
                self._resources.insert_one(document, session=self._session)
            else:
                replaced = self._resources.replace_one(
                    {"_id": document["_id"], "version": current.version_id},
                    document,
                    session=self._session,
                )
                if replaced.matched_count == 0:
                    self._known.pop(key, None)
                    raise ConcurrentWriteError(
                        f"{document['_id']} changed while it was being written; retry the request"
                    )
            entry = history_document(stored, method)
            step = _Undo(
                document["_id"], stored.version_id, previous if current is not None else None, None
            )
            if self._session is None:
                self._undo.append(step)
            self._history.insert_one(entry, session=self._session)
            if self._session is None:
                # Only now is the history entry ours to delete on undo.
                self._undo[-1] = replace(step, history_key=entry["_id"])
        self._known[key] = document
