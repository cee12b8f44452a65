"""The MongoDB resource store (pymongo) behind :class:`medhub.fhir.store.ResourceStore`.

Same behaviour as :mod:`medhub.fhir.sql_store`: validation, ids, ``meta``,
versions, soft deletes, history and errors; documents and indexes are
described in :mod:`medhub.fhir.mongo_documents`, searches in
:mod:`medhub.fhir.mongo_search`.

Atomicity depends on what the server can do, detected once with ``hello``:

* **Replica set or sharded cluster** (MongoDB 4.0+/4.2+): a unit of work is one
  client session with a multi-document transaction (snapshot reads, majority
  writes). It commits on normal exit and aborts on an exception, exactly like
  the SQL store. A write-write conflict with another transaction comes out as
  :class:`ConcurrentWriteError` (retry). Isolation and rollback need a real
  server: ``mongomock`` has no sessions (its tests check the control flow).
* **Standalone server** (or a fake such as ``mongomock``): MongoDB has no
  multi-document transactions there, so writes are applied as they happen and,
  if the unit of work fails, undone in reverse order from an undo log (each
  undo conditional on the version this unit wrote, so a later writer's change
  is never overwritten). This is best effort: other readers can see the
  writes before the unit ends, and a process crash mid-unit leaves what was
  written. Run production on a replica set (a one-node replica set will do).

In both modes every write is guarded by the version it expects (insert of a
new ``_id``, replace where ``version`` is the one read, unique history
``_id``), so two writers racing on one resource never lose a version: the
loser gets :class:`ConcurrentWriteError`.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from threading import Lock
from typing import Any

import structlog
from pymongo import MongoClient
from pymongo.client_session import ClientSession
from pymongo.database import Database
from pymongo.errors import OperationFailure, PyMongoError
from pymongo.read_concern import ReadConcern
from pymongo.write_concern import WriteConcern

from medhub.errors import ConfigurationError, StoreUnavailableError
from medhub.fhir.mongo_documents import HISTORY, HISTORY_INDEXES, RESOURCE_INDEXES, RESOURCES
from medhub.fhir.mongo_resources import (
    Clock,
    Document,
    MongoResources,
    translated_errors,
)
from medhub.fhir.write_rules import utc_now

__all__ = ["MongoResourceStore", "MongoResources"]

log = structlog.get_logger(__name__)

#: How long a URL-built client waits for a server before a call fails (pymongo's default: 30 s).
DEFAULT_SERVER_SELECTION_MS = 5000
#: Attempts at a commit whose result the server could not confirm (pymongo's documented pattern).
_COMMIT_ATTEMPTS = 3


def _supports_transactions(client: MongoClient[Document]) -> bool:
    """Whether the deployment runs multi-document transactions (replica set 4.0+, mongos 4.2+).

    A server too old for ``hello``, or a fake that does not implement it
    (``mongomock``), is treated as standalone.
    """
    try:
        reply = client.admin.command("hello")
    except (OperationFailure, NotImplementedError):
        return False
    wire = int(reply.get("maxWireVersion", 0))
    if reply.get("msg") == "isdbgrid":
        return wire >= 8
    return "setName" in reply and wire >= 7


class MongoResourceStore:
    """A MongoDB database holding FHIR resources; opens :class:`MongoResources` units of work.

    ``client_or_url`` is a ``mongodb://`` URL (the store then owns the client
    and :meth:`close` closes it) or a ready client such as a shared
    ``MongoClient`` or, in tests, a ``mongomock.MongoClient`` (left open by
    :meth:`close`: its owner closes it). ``database_name`` None takes the
    database named in the URL (``mongodb://host/medhub``). ``transactions``
    overrides the capability check (None: ask the server on first use).

    Indexes are created on the first unit of work (``create_index`` is
    idempotent), or up front with :meth:`ensure_indexes`.
    """

    def __init__(
        self,
        client_or_url: str | MongoClient[Document],
        database_name: str | None,
        *,
        clock: Clock = utc_now,
        transactions: bool | None = None,
    ) -> None:
        if isinstance(client_or_url, str):
            options: dict[str, Any] = {"tz_aware": True}
            if "serverselectiontimeoutms" not in client_or_url.lower():
                options["serverSelectionTimeoutMS"] = DEFAULT_SERVER_SELECTION_MS
            self.client: MongoClient[Document] = MongoClient(client_or_url, **options)
            self._owns_client = True
        else:
            self.client = client_or_url
            self._owns_client = False
        if database_name is None:
            try:
                self.database: Database[Document] = self.client.get_default_database()
            except PyMongoError as exc:
                self.close()
                raise ConfigurationError(f"the MongoDB URL names no database: {exc}") from exc
        else:
            self.database = self.client[database_name]
        self.clock = clock
        self._transactions = transactions
        self._ready = False
        self._ready_lock = Lock()

    @property
    def transactions(self) -> bool:
        """Whether units of work run as multi-document transactions (asks the server once)."""
        self._prepare()
        return bool(self._transactions)

    def ensure_indexes(self) -> None:
        """Create the collections' indexes (idempotent; what ``medhub migrate`` should call)."""
        with translated_errors():
            for name, keys in RESOURCE_INDEXES:
                self.database[RESOURCES].create_index(keys, name=name)
            for name, keys in HISTORY_INDEXES:
                self.database[HISTORY].create_index(keys, name=name)

    def _prepare(self) -> None:
        if self._ready:
            return
        with self._ready_lock:
            if self._ready:
                return
            self.ensure_indexes()
            if self._transactions is None:
                with translated_errors():
                    self._transactions = _supports_transactions(self.client)
            self._ready = True

    @contextmanager
    def unit_of_work(self, *, validate: bool = True) -> Iterator[MongoResources]:
        """A transaction on a replica set; on a standalone server, writes undone on failure.

        ``validate=False`` is for callers whose resources are proven valid
        already (mapped HL7, as the SQL store's inbound units).
        """
        self._prepare()
        if self._transactions:
            with self._transaction(validate) as resources:
                yield resources
            return
        resources = MongoResources(self.database, session=None, clock=self.clock, validate=validate)
        try:
            yield resources
        except BaseException:
            try:
                with translated_errors():
                    resources.undo()
            except StoreUnavailableError:
                log.exception("mongo_undo_failed")
            raise

    @contextmanager
    def _transaction(self, validate: bool) -> Iterator[MongoResources]:
        with translated_errors(), self.client.start_session() as session:
            session.start_transaction(
                read_concern=ReadConcern("snapshot"), write_concern=WriteConcern("majority")
            )
            try:
                yield MongoResources(
                    self.database, session=session, clock=self.clock, validate=validate
                )
            except BaseException:
                if session.in_transaction:
                    try:
                        session.abort_transaction()
                    except PyMongoError:
                        # The server drops an abandoned transaction by itself
                        # (transactionLifetimeLimitSeconds); report the first error.
                        log.warning("mongo_abort_failed", exc_info=True)
                raise
            _commit(session)

    def ping(self) -> None:
        try:
            self.client.admin.command("ping")
        except PyMongoError as exc:
            raise StoreUnavailableError(f"the resource database is unreachable: {exc}") from exc

    def close(self) -> None:
        if self._owns_client:
            self.client.close()


def _commit(session: ClientSession) -> None:
    """Commit, retrying while the server says the outcome is unknown (pymongo docs)."""
    for attempt in range(_COMMIT_ATTEMPTS):
        try:
            session.commit_transaction()
            return
        except PyMongoError as exc:
            retry = exc.has_error_label("UnknownTransactionCommitResult")
            if not retry or attempt == _COMMIT_ATTEMPTS - 1:
                raise
