"""The SQL resource store (SQLite, MariaDB/MySQL, PostgreSQL) behind :class:`ResourceStore`.

Every write stores the new head in ``fhir_resource``, appends the version to
``fhir_resource_history`` and rewrites that resource's index rows, in the
caller's transaction. Concurrent updates of one resource are serialised with
``SELECT ... FOR UPDATE`` (SQLite: the ``BEGIN IMMEDIATE`` write lock).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

import orjson
from sqlalchemy import (
    Engine,
    Executable,
    Table,
    and_,
    bindparam,
    delete,
    insert,
    select,
    update,
)
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError, OperationalError, SQLAlchemyError
from sqlalchemy.orm import Session

from medhub.clinical.resources import is_valid_id, validate_resource
from medhub.db.base import metadata
from medhub.db.statistics import StatisticsKeeper
from medhub.errors import (
    ConcurrentWriteError,
    GoneError,
    InputError,
    Issue,
    NotFoundError,
    PreconditionFailedError,
    StoreUnavailableError,
)
from medhub.fhir.search import SearchQuery
from medhub.fhir.sql_index_rows import INDEX_CORE, index_rows
from medhub.fhir.sql_search import run_search, stored_resource
from medhub.fhir.sql_tables import ResourceHistoryRow, ResourceRow
from medhub.fhir.store import SearchResult, StoredResource, UpdateOutcome, format_instant

Clock = Callable[[], datetime]
#: Session.info key counting the resources a transaction wrote (for statistics upkeep).
WRITES_KEY = "medhub_writes"


def utc_now() -> datetime:
    return datetime.now(UTC)


def _check_id(resource_type: str, resource_id: str) -> None:
    if not is_valid_id(resource_id):
        message = f"{resource_id!r} is not a valid FHIR id"
        raise InputError(message, [Issue(message, expression=(f"{resource_type}.id",))])


_RESOURCE: Table = ResourceRow.__table__  # type: ignore[assignment]
_HISTORY: Table = ResourceHistoryRow.__table__  # type: ignore[assignment]

# Prebuilt statements with bound parameters: building a statement per call costs
# about five times more than running a prebuilt one (see medhub.fhir.sql_search).
_IS_RESOURCE = and_(
    _RESOURCE.c.res_type == bindparam("res_type"), _RESOURCE.c.res_id == bindparam("res_id")
)
_READ = select(_RESOURCE).where(_IS_RESOURCE)
_READ_FOR_UPDATE = _READ.with_for_update()
_INSERT_RESOURCE = insert(_RESOURCE)
_UPDATE_RESOURCE = update(_RESOURCE).where(
    _RESOURCE.c.res_type == bindparam("b_type"), _RESOURCE.c.res_id == bindparam("b_id")
)
_INSERT_HISTORY = insert(_HISTORY)
_VREAD = select(_HISTORY).where(
    _HISTORY.c.res_type == bindparam("res_type"),
    _HISTORY.c.res_id == bindparam("res_id"),
    _HISTORY.c.version_id == bindparam("version_id"),
)
_HISTORY_OF = (
    select(_HISTORY)
    .where(_HISTORY.c.res_type == bindparam("res_type"), _HISTORY.c.res_id == bindparam("res_id"))
    .order_by(_HISTORY.c.version_id.desc())
)
_CLEAR_INDEX = [
    delete(t).where(t.c.res_type == bindparam("res_type"), t.c.res_id == bindparam("res_id"))
    for t in INDEX_CORE
]
_INSERT_INDEX = {t.name: insert(t) for t in INDEX_CORE}


class SqlResources:
    """Resource operations inside one transaction, with SQLAlchemy Core statements.

    Core rather than ORM objects: a resource is written once per request and
    never navigated as an object graph, and the ORM unit-of-work bookkeeping
    cost more than the SQL itself (measured with bench/store_write.py).
    """

    def __init__(self, session: Session, *, clock: Clock = utc_now, validate: bool = True) -> None:
        self.session = session
        self._clock = clock
        self._validate = validate
        self._lock_rows = session.get_bind().dialect.name != "sqlite"

    @property
    def _connection(self) -> Connection:
        """The transaction's connection, begun on first use (not when the unit opens)."""
        return self.session.connection()

    # -- writes ---------------------------------------------------------------

    def create(self, resource: dict[str, Any]) -> StoredResource:
        resource = self._checked(resource, None)
        resource_id = str(uuid.uuid4())
        return self._write(resource["resourceType"], resource_id, resource, None, "POST")

    def update(
        self,
        resource_type: str,
        resource_id: str,
        resource: dict[str, Any],
        *,
        if_match: int | None = None,
    ) -> UpdateOutcome:
        _check_id(resource_type, resource_id)
        resource = self._checked(resource, resource_type)
        body_id = resource.get("id")
        if body_id is not None and body_id != resource_id:
            message = f"resource id {body_id!r} does not match the id {resource_id!r} in the URL"
            raise InputError(message, [Issue(message, expression=(f"{resource_type}.id",))])
        current = self._current(resource_type, resource_id)
        if if_match is not None:
            have = current.version_id if current is not None and not current.deleted else None
            if have != if_match:
                raise PreconditionFailedError(
                    f"{resource_type}/{resource_id} is at version {have}, not {if_match}"
                )
        stored = self._write(resource_type, resource_id, resource, current, "PUT")
        return UpdateOutcome(stored, created=current is None or current.deleted)

    def delete(self, resource_type: str, resource_id: str) -> StoredResource | None:
        current = self._current(resource_type, resource_id)
        if current is None or current.deleted:
            return None
        stored = StoredResource(
            resource_type, resource_id, current.version_id + 1, self._clock(), True, None
        )
        self._execute(
            _UPDATE_RESOURCE,
            {
                "b_type": resource_type,
                "b_id": resource_id,
                "version_id": stored.version_id,
                "last_updated": stored.last_updated,
                "deleted": True,
                "body": None,
            },
        )
        self._execute(_INSERT_HISTORY, _history_values(stored, "DELETE"))
        self._clear_index(resource_type, resource_id)
        return stored

    # -- reads ----------------------------------------------------------------

    def read(self, resource_type: str, resource_id: str) -> StoredResource:
        row = self._connection.execute(
            _READ, {"res_type": resource_type, "res_id": resource_id}
        ).first()
        if row is None:
            raise NotFoundError(f"{resource_type}/{resource_id} is not known")
        if row.deleted:
            raise GoneError(f"{resource_type}/{resource_id} was deleted")
        return stored_resource(row)

    def vread(self, resource_type: str, resource_id: str, version_id: int) -> StoredResource:
        row = self._connection.execute(
            _VREAD, {"res_type": resource_type, "res_id": resource_id, "version_id": version_id}
        ).first()
        if row is None:
            raise NotFoundError(f"{resource_type}/{resource_id} has no version {version_id}")
        if row.deleted:
            raise GoneError(f"version {version_id} of {resource_type}/{resource_id} is a deletion")
        return stored_resource(row)

    def history(self, resource_type: str, resource_id: str) -> list[StoredResource]:
        rows = self._connection.execute(
            _HISTORY_OF, {"res_type": resource_type, "res_id": resource_id}
        ).all()
        if not rows:
            raise NotFoundError(f"{resource_type}/{resource_id} is not known")
        return [stored_resource(row) for row in rows]

    def search(self, query: SearchQuery) -> SearchResult:
        return run_search(self._connection, query)

    # -- internals ------------------------------------------------------------

    def _checked(self, resource: dict[str, Any], expected_type: str | None) -> dict[str, Any]:
        if self._validate:
            return validate_resource(resource, expected_type=expected_type)
        return dict(resource)

    def _execute(
        self, statement: Executable, params: dict[str, Any] | list[dict[str, Any]]
    ) -> None:
        try:
            self._connection.execute(statement, params)
        except IntegrityError as exc:
            raise ConcurrentWriteError(
                "a concurrent write to the same resource won; retry the request"
            ) from exc

    def _current(self, resource_type: str, resource_id: str) -> StoredResource | None:
        statement = _READ_FOR_UPDATE if self._lock_rows else _READ
        row = self._connection.execute(
            statement, {"res_type": resource_type, "res_id": resource_id}
        ).first()
        return None if row is None else stored_resource(row)

    def _write(
        self,
        resource_type: str,
        resource_id: str,
        resource: dict[str, Any],
        current: StoredResource | None,
        method: str,
    ) -> StoredResource:
        now = self._clock()
        version = 1 if current is None else current.version_id + 1
        meta = dict(resource.get("meta") or {})
        meta["versionId"] = str(version)
        meta["lastUpdated"] = format_instant(now)
        body_dict = {**resource, "id": resource_id, "meta": meta}
        stored = StoredResource(
            resource_type, resource_id, version, now, False, orjson.dumps(body_dict).decode()
        )
        self.session.info[WRITES_KEY] = self.session.info.get(WRITES_KEY, 0) + 1
        values = {"version_id": version, "last_updated": now, "deleted": False, "body": stored.body}
        if current is None:
            self._execute(
                _INSERT_RESOURCE, {"res_type": resource_type, "res_id": resource_id, **values}
            )
        else:
            self._execute(
                _UPDATE_RESOURCE, {"b_type": resource_type, "b_id": resource_id, **values}
            )
            self._clear_index(resource_type, resource_id)
        self._execute(_INSERT_HISTORY, _history_values(stored, method))
        self._write_index(resource_type, resource_id, body_dict)
        return stored

    def _clear_index(self, resource_type: str, resource_id: str) -> None:
        for statement in _CLEAR_INDEX:
            self._execute(statement, {"res_type": resource_type, "res_id": resource_id})

    def _write_index(self, resource_type: str, resource_id: str, body: dict[str, Any]) -> None:
        for table, rows in index_rows(resource_type, resource_id, body):
            self._execute(_INSERT_INDEX[table.name], rows)


def _history_values(stored: StoredResource, method: str) -> dict[str, Any]:
    return {
        "res_type": stored.resource_type,
        "res_id": stored.id,
        "version_id": stored.version_id,
        "last_updated": stored.last_updated,
        "deleted": stored.deleted,
        "method": method,
        "body": stored.body,
    }


class SqlResourceStore:
    """A SQL database holding FHIR resources; opens :class:`SqlResources` units of work."""

    def __init__(self, engine: Engine, *, clock: Clock = utc_now) -> None:
        self.engine = engine
        self.clock = clock
        self.statistics = StatisticsKeeper(engine, [t.name for t in metadata.sorted_tables])

    @contextmanager
    def session(self) -> Iterator[Session]:
        """A session in a transaction: committed on exit, rolled back on error.

        Database failures come out as :class:`StoreUnavailableError` so callers
        answer "try again" (HTTP 503, HL7 AR) instead of crashing.
        """
        try:
            with Session(self.engine, expire_on_commit=False) as session:
                with session.begin():
                    yield session
                self.statistics.note_writes(session.info.get(WRITES_KEY, 0))
        except OperationalError as exc:
            raise StoreUnavailableError(f"the resource database failed: {exc.orig}") from exc
        except IntegrityError as exc:
            raise ConcurrentWriteError("a concurrent write conflicted; retry the request") from exc
        except SQLAlchemyError as exc:
            raise StoreUnavailableError(f"the resource database failed: {exc}") from exc

    @contextmanager
    def unit_of_work(self) -> Iterator[SqlResources]:
        with self.session() as session:
            yield SqlResources(session, clock=self.clock)

    def ping(self) -> None:
        try:
            with self.engine.connect() as connection:
                connection.exec_driver_sql("SELECT 1")
        except SQLAlchemyError as exc:
            raise StoreUnavailableError(f"the resource database is unreachable: {exc}") from exc

    def close(self) -> None:
        self.engine.dispose()
