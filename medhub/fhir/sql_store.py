"""The SQL resource store (SQLite, MariaDB/MySQL, PostgreSQL) behind :class:`ResourceStore`.

Every write stores the new head in ``fhir_resource``, appends the version to
``fhir_resource_history`` and rewrites that resource's index rows, in the
caller's transaction. Concurrent updates of one resource are serialised with
``SELECT ... FOR UPDATE`` (SQLite: the ``BEGIN IMMEDIATE`` write lock).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Collection, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import orjson
from psycopg.errors import UniqueViolation
from sqlalchemy import (
    Engine,
    Executable,
    Table,
    and_,
    bindparam,
    delete,
    false,
    insert,
    select,
    tuple_,
    update,
)
from sqlalchemy.dialects import postgresql
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError, OperationalError, SQLAlchemyError
from sqlalchemy.orm import Session

from medhub.clinical.resources import validate_resource
from medhub.db.base import metadata
from medhub.db.statistics import StatisticsKeeper
from medhub.errors import (
    ConcurrentWriteError,
    GoneError,
    NotFoundError,
    StoreUnavailableError,
)
from medhub.fhir.key_locks import hold_keys
from medhub.fhir.search import SearchQuery
from medhub.fhir.sql_index_rows import INDEX_CORE, index_rows
from medhub.fhir.sql_search import run_search, stored_resource
from medhub.fhir.sql_tables import ReferenceIndexRow, ResourceHistoryRow, ResourceRow
from medhub.fhir.store import SearchResult, StoredResource, UpdateOutcome, format_instant
from medhub.fhir.write_rules import check_body_id, check_id, check_version, utc_now

Clock = Callable[[], datetime]
#: Session.info key counting the resources a transaction wrote (for statistics upkeep).
WRITES_KEY = "medhub_writes"
#: Session.info key listing the deferred-write queues to send before the session commits.
FLUSHERS_KEY = "medhub_flushers"


_RESOURCE: Table = ResourceRow.__table__  # type: ignore[assignment]
_HISTORY: Table = ResourceHistoryRow.__table__  # type: ignore[assignment]

# Prebuilt statements with bound parameters: building a statement per call costs
# about five times more than running a prebuilt one (see medhub.fhir.sql_search).
_IS_RESOURCE = and_(
    _RESOURCE.c.res_type == bindparam("res_type"), _RESOURCE.c.res_id == bindparam("res_id")
)
_READ = select(_RESOURCE).where(_IS_RESOURCE)
_READ_FOR_UPDATE = _READ.with_for_update()
_UPDATE_RESOURCE = update(_RESOURCE).where(
    _RESOURCE.c.res_type == bindparam("b_type"), _RESOURCE.c.res_id == bindparam("b_id")
)
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
_REF: Table = ReferenceIndexRow.__table__  # type: ignore[assignment]
_REFERENCING = (
    select(_RESOURCE)
    .where(
        tuple_(_RESOURCE.c.res_type, _RESOURCE.c.res_id).in_(
            select(_REF.c.res_type, _REF.c.res_id).where(
                _REF.c.target_type == bindparam("target_type"),
                _REF.c.target_id == bindparam("target_id"),
            )
        ),
        _RESOURCE.c.deleted == false(),
    )
    .order_by(_RESOURCE.c.res_type, _RESOURCE.c.last_updated, _RESOURCE.c.res_id)
)
_CLEAR_INDEX = [
    delete(t).where(t.c.res_type == bindparam("res_type"), t.c.res_id == bindparam("res_id"))
    for t in INDEX_CORE
]
_INDEX_TABLES = {t.name: t for t in INDEX_CORE}
_INSERTS = {t.name: insert(t) for t in (_RESOURCE, _HISTORY, *INDEX_CORE)}
#: Rows from which PostgreSQL inserts go by COPY (below, one pipelined executemany is cheaper).
_COPY_THRESHOLD = 50


def _pg_type(column: Any) -> str:
    """The PostgreSQL type name binary COPY needs for a column of medhub's tables."""
    ddl = str(column.type.compile(dialect=_PG_DIALECT)).upper()
    for prefix, name in _PG_BINARY_TYPES:
        if ddl.startswith(prefix):
            return name
    return "text"


_PG_DIALECT = postgresql.psycopg.dialect()  # type: ignore[no-untyped-call]
_PG_BINARY_TYPES = (
    ("BIGINT", "int8"),
    ("INTEGER", "int4"),
    ("SMALLINT", "int2"),
    ("BOOLEAN", "bool"),
    ("TIMESTAMP", "timestamptz"),
    ("DOUBLE", "float8"),
    ("FLOAT", "float8"),
)
_PG_TYPES = {
    t.name: {c.name: _pg_type(c) for c in t.columns} for t in (_RESOURCE, _HISTORY, *INDEX_CORE)
}


@dataclass
class _PendingWrites:
    """Writes not yet sent to the database, grouped by statement (see :class:`SqlResources`)."""

    clears: list[dict[str, Any]] = field(default_factory=list)
    inserts: list[dict[str, Any]] = field(default_factory=list)
    updates: list[dict[str, Any]] = field(default_factory=list)
    history: list[dict[str, Any]] = field(default_factory=list)
    index: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    keys: set[tuple[str, str]] = field(default_factory=set)
    types: set[str] = field(default_factory=set)

    def __bool__(self) -> bool:
        return bool(self.history)


class SqlResources:
    """Resource operations inside one transaction, with SQLAlchemy Core statements.

    Core rather than ORM objects: a resource is written once per request and
    never navigated as an object graph, and the ORM unit-of-work bookkeeping
    cost more than the SQL itself (measured with bench/store_write.py).

    Writes are *deferred*: a create, update or delete queues its rows and the
    queue is sent as one statement per table (an executemany; on PostgreSQL
    and MariaDB one multi-row INSERT) before the next read and before commit.
    A transaction Bundle of 500 entries is then about six round trips instead
    of 500 x 6. Reads always flush first, so they see every earlier write.
    Versions this unit has read or written are remembered (the rows are locked
    FOR UPDATE, or the SQLite write lock is held), so updating a resource twice
    or after :meth:`prefetch` costs no extra read.
    """

    def __init__(self, session: Session, *, clock: Clock = utc_now, validate: bool = True) -> None:
        self.session = session
        self._clock = clock
        self._validate = validate
        dialect = session.get_bind().dialect.name
        self._lock_rows = dialect != "sqlite"
        self._copy = dialect == "postgresql"
        self._pending = _PendingWrites()
        self._known: dict[tuple[str, str], StoredResource | None] = {}
        self._locked: set[str] = set()
        flushers: list[Callable[[], None]] = session.info.setdefault(FLUSHERS_KEY, [])
        flushers.append(self.flush)

    @property
    def _connection(self) -> Connection:
        """The transaction's connection, begun on first use (not when the unit opens)."""
        return self.session.connection()

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
        if (resource_type, resource_id) in self._pending.keys:
            self.flush()  # its queued index rows must be written before they are cleared
        stored = StoredResource(
            resource_type, resource_id, current.version_id + 1, self._clock(), True, None
        )
        self._pending.updates.append(
            {
                "b_type": resource_type,
                "b_id": resource_id,
                "version_id": stored.version_id,
                "last_updated": stored.last_updated,
                "deleted": True,
                "body": None,
            }
        )
        self._pending.history.append(_history_values(stored, "DELETE"))
        self._pending.clears.append({"res_type": resource_type, "res_id": resource_id})
        self._pending.keys.add((resource_type, resource_id))
        self._pending.types.add(resource_type)
        self._known[(resource_type, resource_id)] = stored
        return stored

    def prefetch(self, keys: Iterable[tuple[str, str]]) -> None:
        """Read (and lock) the current versions of these resources in one query.

        Later updates and deletes of them need no read of their own, so a
        Bundle's writes stay queued until the end.
        """
        wanted = sorted({key for key in keys if key not in self._known})
        if not wanted:
            return
        self.flush()
        for start in range(0, len(wanted), 500):
            chunk = wanted[start : start + 500]
            statement = select(_RESOURCE).where(
                tuple_(_RESOURCE.c.res_type, _RESOURCE.c.res_id).in_(chunk)
            )
            if self._lock_rows:
                statement = statement.with_for_update()
            found = {
                (row.res_type, row.res_id): stored_resource(row)
                for row in self._connection.execute(statement)
            }
            for key in chunk:
                self._known[key] = found.get(key)

    def flush(self) -> None:
        """Send the queued writes: one statement per table, in dependency order."""
        pending = self._pending
        if not pending:
            return
        self._pending = _PendingWrites()
        if pending.clears:
            for statement in _CLEAR_INDEX:
                self._execute(statement, pending.clears)
        if pending.inserts:
            self._insert(_RESOURCE, pending.inserts)
        if pending.updates:
            self._execute(_UPDATE_RESOURCE, pending.updates)
        self._insert(_HISTORY, pending.history)
        for name, rows in pending.index.items():
            self._insert(_INDEX_TABLES[name], rows)

    def _insert(self, table: Table, rows: list[dict[str, Any]]) -> None:
        """Insert rows: with COPY on PostgreSQL when there are many, else (execute)many.

        psycopg sends an executemany as one pipelined statement per row (about
        20 us a row here); binary COPY streams them (about 2 us a row). A
        500-entry transaction Bundle writes some 10,000 index rows.
        """
        if len(rows) < _COPY_THRESHOLD or not self._copy:
            self._execute(_INSERTS[table.name], rows)
            return
        columns = list(rows[0])
        raw = self._connection.connection.driver_connection
        assert raw is not None
        try:
            with (
                raw.cursor() as cursor,
                cursor.copy(
                    f"COPY {table.name} ({', '.join(columns)}) FROM STDIN (FORMAT BINARY)"
                ) as copy,
            ):
                copy.set_types([_PG_TYPES[table.name][c] for c in columns])
                for row in rows:
                    copy.write_row([row[c] for c in columns])
        except UniqueViolation as exc:
            raise ConcurrentWriteError(
                "a concurrent write to the same resource won; retry the request"
            ) from exc

    @contextmanager
    def savepoint(self) -> Iterator[None]:
        """A nested transaction: everything written inside is undone alone if the block raises."""
        self.flush()
        nested = self.session.begin_nested()
        try:
            yield
            self.flush()
        except BaseException as exc:
            self._pending = _PendingWrites()
            self._known.clear()
            try:
                nested.rollback()
            except SQLAlchemyError:
                if isinstance(exc, ConcurrentWriteError):
                    # MariaDB ends the whole transaction on a deadlock, savepoint and all:
                    # the caller's retry of the transaction is what is wanted, not this error.
                    raise exc from None
                raise
            raise
        nested.commit()

    # -- reads ----------------------------------------------------------------

    def read(self, resource_type: str, resource_id: str) -> StoredResource:
        self._flush_for(resource_type)
        row = self._connection.execute(
            _READ, {"res_type": resource_type, "res_id": resource_id}
        ).first()
        if row is None:
            raise NotFoundError(f"{resource_type}/{resource_id} is not known")
        if row.deleted:
            raise GoneError(f"{resource_type}/{resource_id} was deleted")
        return stored_resource(row)

    def vread(self, resource_type: str, resource_id: str, version_id: int) -> StoredResource:
        self._flush_for(resource_type)
        row = self._connection.execute(
            _VREAD, {"res_type": resource_type, "res_id": resource_id, "version_id": version_id}
        ).first()
        if row is None:
            raise NotFoundError(f"{resource_type}/{resource_id} has no version {version_id}")
        if row.deleted:
            raise GoneError(f"version {version_id} of {resource_type}/{resource_id} is a deletion")
        return stored_resource(row)

    def history(
        self,
        resource_type: str | None,
        resource_id: str | None = None,
        *,
        since: datetime | None = None,
        count: int | None = None,
    ) -> list[StoredResource]:
        self.flush()
        statement = select(_HISTORY)
        if resource_type is not None:
            statement = statement.where(_HISTORY.c.res_type == resource_type)
        if resource_id is not None:
            statement = statement.where(_HISTORY.c.res_id == resource_id)
        if since is not None:
            statement = statement.where(_HISTORY.c.last_updated >= since)
        statement = statement.order_by(
            _HISTORY.c.last_updated.desc(), _HISTORY.c.version_id.desc(), _HISTORY.c.res_id
        )
        if count is not None:
            statement = statement.limit(count)
        rows = self._connection.execute(statement).all()
        if not rows and resource_id is not None and since is None:
            raise NotFoundError(f"{resource_type}/{resource_id} is not known")
        return [stored_resource(row) for row in rows]

    def lock_keys(self, names: Collection[str]) -> bool:
        wanted = set(names) - self._locked
        if wanted:
            hold_keys(self._connection, wanted)
            self._locked |= wanted
        return self._lock_rows  # SQLite: BEGIN IMMEDIATE already made this unit the only writer

    def search(self, query: SearchQuery) -> SearchResult:
        if query.includes or any(c.kind in ("chain", "has") for c in query.criteria):
            self.flush()  # the search reads other types too
        else:
            self._flush_for(query.resource_type)
        return run_search(self._connection, query)

    def referencing(self, target_type: str, target_id: str) -> list[StoredResource]:
        self.flush()
        rows = self._connection.execute(
            _REFERENCING, {"target_type": target_type, "target_id": target_id}
        ).all()
        return [stored_resource(row) for row in rows]

    # -- internals ------------------------------------------------------------

    def _flush_for(self, resource_type: str) -> None:
        """Flush before a read of ``resource_type`` only if writes of that type are queued.

        An HL7 ADT message writes its Patient, then looks up the Practitioner,
        the Location and the Encounter: none of those reads can see the queued
        Patient, so the Patient's rows wait and go out with the Encounter's in
        one statement per table (measured: 18 -> 14 statements per message).
        """
        if resource_type in self._pending.types:
            self.flush()

    def _checked(self, resource: dict[str, Any], expected_type: str | None) -> dict[str, Any]:
        if self._validate:
            return validate_resource(resource, expected_type=expected_type)
        return dict(resource)

    def _execute(
        self, statement: Executable, params: dict[str, Any] | list[dict[str, Any]]
    ) -> None:
        if isinstance(params, list) and len(params) == 1:
            # One row: a plain execute. psycopg runs every executemany in pipeline
            # mode, whose set-up costs more than the statement (measured: 18 -> 15%
            # of the CPU of an HL7 ADT message on PostgreSQL).
            params = params[0]
        try:
            self._connection.execute(statement, params)
        except IntegrityError as exc:
            raise ConcurrentWriteError(
                "a concurrent write to the same resource won; retry the request"
            ) from exc

    def current(self, resource_type: str, resource_id: str) -> StoredResource | None:
        """The current version (a deletion included), or None; locked for this transaction."""
        return self._current(resource_type, resource_id)

    def _current(self, resource_type: str, resource_id: str) -> StoredResource | None:
        key = (resource_type, resource_id)
        if key in self._known:
            return self._known[key]
        self.flush()
        statement = _READ_FOR_UPDATE if self._lock_rows else _READ
        row = self._connection.execute(
            statement, {"res_type": resource_type, "res_id": resource_id}
        ).first()
        current = None if row is None else stored_resource(row)
        self._known[key] = current
        return current

    def _write(
        self,
        resource_type: str,
        resource_id: str,
        resource: dict[str, Any],
        current: StoredResource | None,
        method: str,
    ) -> StoredResource:
        key = (resource_type, resource_id)
        if current is None and key in self._known:
            # Created earlier in this unit (or known to exist): an update, never a second insert.
            current = self._known[key]
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
        pending = self._pending
        if current is None:
            pending.inserts.append({"res_type": resource_type, "res_id": resource_id, **values})
        else:
            if key in pending.keys:
                # Its earlier rows are still queued: send them so the index rows clear in order.
                self.flush()
                pending = self._pending
            pending.updates.append({"b_type": resource_type, "b_id": resource_id, **values})
            pending.clears.append({"res_type": resource_type, "res_id": resource_id})
        pending.history.append(_history_values(stored, method))
        pending.keys.add(key)
        pending.types.add(resource_type)
        for table, rows in index_rows(resource_type, resource_id, body_dict):
            pending.index.setdefault(table.name, []).extend(rows)
        self._known[key] = stored
        return stored


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
                    for flush in session.info.get(FLUSHERS_KEY, ()):
                        flush()
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
