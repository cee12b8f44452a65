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
    ColumnElement,
    Engine,
    Table,
    and_,
    delete,
    false,
    func,
    insert,
    not_,
    or_,
    select,
)
from sqlalchemy.exc import IntegrityError, OperationalError, SQLAlchemyError
from sqlalchemy.orm import Session

from medhub.clinical.resources import is_valid_id, validate_resource
from medhub.errors import (
    ConcurrentWriteError,
    GoneError,
    InputError,
    Issue,
    NotFoundError,
    PreconditionFailedError,
    StoreUnavailableError,
)
from medhub.fhir.indexing import extract_index_entries
from medhub.fhir.search import (
    Criterion,
    DateValue,
    ReferenceValue,
    SearchQuery,
    StringValue,
    TokenValue,
)
from medhub.fhir.sql_tables import (
    INDEX_TABLES,
    DateIndexRow,
    ReferenceIndexRow,
    ResourceHistoryRow,
    ResourceRow,
    StringIndexRow,
    TokenIndexRow,
)
from medhub.fhir.store import SearchResult, StoredResource, UpdateOutcome, format_instant

Clock = Callable[[], datetime]


def utc_now() -> datetime:
    return datetime.now(UTC)


def _stored(row: ResourceRow | ResourceHistoryRow) -> StoredResource:
    return StoredResource(
        resource_type=row.res_type,
        id=row.res_id,
        version_id=row.version_id,
        last_updated=row.last_updated,
        deleted=row.deleted,
        body=row.body,
    )


def _check_id(resource_type: str, resource_id: str) -> None:
    if not is_valid_id(resource_id):
        message = f"{resource_id!r} is not a valid FHIR id"
        raise InputError(message, [Issue(message, expression=(f"{resource_type}.id",))])


class SqlResources:
    """Resource operations inside one SQLAlchemy session (one transaction)."""

    def __init__(self, session: Session, *, clock: Clock = utc_now, validate: bool = True) -> None:
        self.session = session
        self._clock = clock
        self._validate = validate
        self._lock_rows = session.get_bind().dialect.name != "sqlite"

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
        now = self._clock()
        current.version_id += 1
        current.last_updated = now
        current.deleted = True
        current.body = None
        self.session.add(
            ResourceHistoryRow(
                res_type=resource_type,
                res_id=resource_id,
                version_id=current.version_id,
                last_updated=now,
                deleted=True,
                method="DELETE",
                body=None,
            )
        )
        self._clear_index(resource_type, resource_id)
        self._flush()
        return _stored(current)

    # -- reads ----------------------------------------------------------------

    def read(self, resource_type: str, resource_id: str) -> StoredResource:
        row = self.session.get(ResourceRow, (resource_type, resource_id))
        if row is None:
            raise NotFoundError(f"{resource_type}/{resource_id} is not known")
        if row.deleted:
            raise GoneError(f"{resource_type}/{resource_id} was deleted")
        return _stored(row)

    def vread(self, resource_type: str, resource_id: str, version_id: int) -> StoredResource:
        row = self.session.get(ResourceHistoryRow, (resource_type, resource_id, version_id))
        if row is None:
            raise NotFoundError(f"{resource_type}/{resource_id} has no version {version_id}")
        if row.deleted:
            raise GoneError(f"version {version_id} of {resource_type}/{resource_id} is a deletion")
        return _stored(row)

    def history(self, resource_type: str, resource_id: str) -> list[StoredResource]:
        rows = self.session.scalars(
            select(ResourceHistoryRow)
            .where(
                ResourceHistoryRow.res_type == resource_type,
                ResourceHistoryRow.res_id == resource_id,
            )
            .order_by(ResourceHistoryRow.version_id.desc())
        ).all()
        if not rows:
            raise NotFoundError(f"{resource_type}/{resource_id} is not known")
        return [_stored(row) for row in rows]

    def search(self, query: SearchQuery) -> SearchResult:
        conditions: list[ColumnElement[bool]] = [
            ResourceRow.res_type == query.resource_type,
            ResourceRow.deleted == false(),
        ]
        conditions.extend(_criterion_sql(query.resource_type, c) for c in query.criteria)
        where = and_(*conditions)
        total = None
        if query.with_total:
            total = self.session.scalar(select(func.count()).select_from(ResourceRow).where(where))
        rows = self.session.scalars(
            select(ResourceRow)
            .where(where)
            .order_by(ResourceRow.last_updated.desc(), ResourceRow.res_id)
            .limit(query.count)
        ).all()
        found = [_stored(row) for row in rows]
        return SearchResult(found, len(found) if total is None else int(total))

    # -- internals ------------------------------------------------------------

    def _checked(self, resource: dict[str, Any], expected_type: str | None) -> dict[str, Any]:
        if self._validate:
            return validate_resource(resource, expected_type=expected_type)
        return dict(resource)

    def _current(self, resource_type: str, resource_id: str) -> ResourceRow | None:
        statement = select(ResourceRow).where(
            ResourceRow.res_type == resource_type, ResourceRow.res_id == resource_id
        )
        if self._lock_rows:
            statement = statement.with_for_update()
        return self.session.scalars(statement).one_or_none()

    def _write(
        self,
        resource_type: str,
        resource_id: str,
        resource: dict[str, Any],
        current: ResourceRow | None,
        method: str,
    ) -> StoredResource:
        now = self._clock()
        version = 1 if current is None else current.version_id + 1
        meta = dict(resource.get("meta") or {})
        meta["versionId"] = str(version)
        meta["lastUpdated"] = format_instant(now)
        body_dict = {**resource, "id": resource_id, "meta": meta}
        body = orjson.dumps(body_dict).decode()
        if current is None:
            current = ResourceRow(res_type=resource_type, res_id=resource_id)
            self.session.add(current)
        current.version_id = version
        current.last_updated = now
        current.deleted = False
        current.body = body
        self.session.add(
            ResourceHistoryRow(
                res_type=resource_type,
                res_id=resource_id,
                version_id=version,
                last_updated=now,
                deleted=False,
                method=method,
                body=body,
            )
        )
        if version > 1:
            self._clear_index(resource_type, resource_id)
        self._write_index(resource_type, resource_id, body_dict)
        self._flush()
        return _stored(current)

    def _clear_index(self, resource_type: str, resource_id: str) -> None:
        connection = self.session.connection()
        for table in INDEX_TABLES:
            core: Table = table.__table__  # type: ignore[assignment]
            connection.execute(
                delete(core).where(core.c.res_type == resource_type, core.c.res_id == resource_id)
            )

    def _write_index(self, resource_type: str, resource_id: str, body: dict[str, Any]) -> None:
        entries = extract_index_entries(body)
        owner = {"res_type": resource_type, "res_id": resource_id}
        batches: list[tuple[type[Any], list[dict[str, Any]]]] = [
            (
                TokenIndexRow,
                [
                    {**owner, "param": e.param, "system": e.system, "code": e.code}
                    for e in entries.tokens
                ],
            ),
            (
                StringIndexRow,
                [
                    {**owner, "param": e.param, "normalized": e.normalized, "exact": e.exact}
                    for e in entries.strings
                ],
            ),
            (
                DateIndexRow,
                [{**owner, "param": e.param, "low": e.low, "high": e.high} for e in entries.dates],
            ),
            (
                ReferenceIndexRow,
                [
                    {
                        **owner,
                        "param": e.param,
                        "target_type": e.target_type,
                        "target_id": e.target_id,
                        "url": e.url,
                    }
                    for e in entries.references
                ],
            ),
        ]
        # Core executemany on the session's connection: the ORM bulk path costs
        # ~3 ms per resource here (measured, bench/store_write.py) for rows that
        # are never loaded as objects.
        connection = self.session.connection()
        for table, rows in batches:
            if rows:
                connection.execute(insert(table.__table__), rows)

    def _flush(self) -> None:
        try:
            self.session.flush()
        except IntegrityError as exc:
            raise ConcurrentWriteError(
                "a concurrent write to the same resource won; retry the request"
            ) from exc


def _token_sql(value: TokenValue) -> ColumnElement[bool]:
    parts: list[ColumnElement[bool]] = []
    if value.code is not None:
        parts.append(TokenIndexRow.code == value.code)
    if value.system == "":
        parts.append(TokenIndexRow.system.is_(None))
    elif value.system is not None:
        parts.append(TokenIndexRow.system == value.system)
    return and_(*parts)


def _string_sql(value: StringValue) -> ColumnElement[bool]:
    if value.mode == "exact":
        return StringIndexRow.exact == value.text
    escaped = value.text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    pattern = f"%{escaped}%" if value.mode == "contains" else f"{escaped}%"
    return StringIndexRow.normalized.like(pattern, escape="\\")


def _date_sql(value: DateValue) -> ColumnElement[bool]:
    low, high = DateIndexRow.low, DateIndexRow.high
    match value.prefix:
        case "eq":
            return and_(low >= value.low, high <= value.high)
        case "ne":
            return not_(and_(low >= value.low, high <= value.high))
        case "lt":
            return low < value.low
        case "le":
            return low < value.high
        case "gt":
            return high > value.high
        case "ge":
            return high > value.low
        case "sa":
            return low >= value.high
        case _:  # "eb"
            return high <= value.low


def _reference_sql(value: ReferenceValue) -> ColumnElement[bool]:
    if value.url is not None:
        return ReferenceIndexRow.url == value.url
    parts: list[ColumnElement[bool]] = [ReferenceIndexRow.target_id == value.target_id]
    if value.target_type is not None:
        parts.append(ReferenceIndexRow.target_type == value.target_type)
    return and_(*parts)


_BUILDERS: dict[str, tuple[Any, Callable[[Any], ColumnElement[bool]]]] = {
    "token": (TokenIndexRow, _token_sql),
    "string": (StringIndexRow, _string_sql),
    "date": (DateIndexRow, _date_sql),
    "reference": (ReferenceIndexRow, _reference_sql),
}


def _criterion_sql(resource_type: str, criterion: Criterion) -> ColumnElement[bool]:
    """``res_id IN (index rows of this parameter matching any of the values)``."""
    if criterion.kind == "id":
        return ResourceRow.res_id.in_([str(v) for v in criterion.values])
    table, build = _BUILDERS[criterion.kind]
    matches = or_(*(build(v) for v in criterion.values))
    owners = select(table.res_id).where(
        table.res_type == resource_type, table.param == criterion.param, matches
    )
    return ResourceRow.res_id.in_(owners)


class SqlResourceStore:
    """A SQL database holding FHIR resources; opens :class:`SqlResources` units of work."""

    def __init__(self, engine: Engine, *, clock: Clock = utc_now) -> None:
        self.engine = engine
        self.clock = clock

    @contextmanager
    def session(self) -> Iterator[Session]:
        """A session in a transaction: committed on exit, rolled back on error.

        Database failures come out as :class:`StoreUnavailableError` so callers
        answer "try again" (HTTP 503, HL7 AR) instead of crashing.
        """
        try:
            with Session(self.engine, expire_on_commit=False) as session, session.begin():
                yield session
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
