"""Transaction-scoped locks on names, so find-or-create is safe across processes.

Applying an HL7 message finds the Location named by PV1-3 and creates it when
there is none; a FHIR conditional create (``If-None-Exist``) does the same for
its search. Two processes doing that at once under READ COMMITTED both find
nothing and both create: the next message naming that Location then matches two
and is refused (seen with two ``medhub serve --role mllp`` processes,
tests/test_scale_out.py). A unique index cannot help when the key is a search,
so the finders hold a lock on the key's name for the rest of the transaction:
the second finder waits, and its search then sees the first one's commit.

- PostgreSQL: ``pg_advisory_xact_lock`` on a 64-bit hash of the name.
- MariaDB/MySQL: ``INSERT … ON DUPLICATE KEY UPDATE`` of the hash in
  ``fhir_key_lock``: the row's exclusive lock is held until commit and a second
  finder waits for it. (Inserting and deleting the row instead keeps the table
  empty but deadlocks as soon as three finders wait: each takes a shared lock on
  the deleted entry, then all want it exclusively.) The table keeps one 8-byte
  row per name ever locked, i.e. per resource created by find-or-create.
- SQLite: nothing to do; ``BEGIN IMMEDIATE`` already runs writers one at a time.

A deadlock between two finders (each holding a name the other wants) comes out
as :class:`ConcurrentWriteError`: the callers' retry path, not an error reply.
"""

from __future__ import annotations

import hashlib
from collections.abc import Collection
from typing import Final
from urllib.parse import urlencode

from sqlalchemy import BigInteger, text
from sqlalchemy.engine import Connection
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Mapped, mapped_column

from medhub.db.base import MYSQL_TABLE_OPTIONS, Base
from medhub.errors import ConcurrentWriteError

#: SQLSTATEs and MySQL error numbers of "lost a lock race; run the transaction again".
_PG_RETRY: Final = frozenset({"40P01", "40001", "55P03"})
_MYSQL_RETRY: Final = frozenset({1205, 1213})  # lock wait timeout, deadlock

#: One round trip for all of a find's names, taken in ascending order (fewer deadlocks).
_PG_LOCK: Final = text(
    "SELECT count(pg_advisory_xact_lock(k)) FROM "
    "(SELECT unnest(CAST(:keys AS bigint[])) AS k ORDER BY 1) AS wanted"
)
#: Inserts the row or, when it exists, takes its exclusive lock the way an UPDATE would
#: (never a shared lock first: waiters upgrading shared to exclusive locks deadlock).
_MYSQL_LOCK: Final = text(
    "INSERT INTO fhir_key_lock (lock_key) VALUES (:key) ON DUPLICATE KEY UPDATE lock_key = lock_key"
)


class KeyLockRow(Base):
    """One row per name locked on MariaDB/MySQL (empty elsewhere): see the module's docstring."""

    __tablename__ = "fhir_key_lock"

    lock_key: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)

    __table_args__ = (MYSQL_TABLE_OPTIONS,)


def key_hash(name: str) -> int:
    """A signed 64-bit hash of ``name`` (collisions only make two finders wait on each other)."""
    digest = hashlib.blake2b(name.encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


def _lost_race(exc: DBAPIError) -> bool:
    original = exc.orig
    sqlstate = getattr(original, "sqlstate", None)
    if sqlstate in _PG_RETRY:
        return True
    args: tuple[object, ...] = tuple(getattr(original, "args", ()))
    return bool(args) and args[0] in _MYSQL_RETRY


def hold_keys(connection: Connection, names: Collection[str]) -> None:
    """Lock ``names`` until ``connection``'s transaction ends (waits while another holds one)."""
    dialect = connection.dialect.name
    if dialect == "sqlite" or not names:
        return
    keys = sorted({key_hash(name) for name in names})
    try:
        if dialect == "postgresql":
            connection.execute(_PG_LOCK, {"keys": keys})
        else:
            for key in keys:  # one at a time, in order: a multi-row insert locks in any order
                connection.execute(_MYSQL_LOCK, {"key": key})
    except DBAPIError as exc:
        if _lost_race(exc):
            raise ConcurrentWriteError(
                f"another transaction held one of {sorted(names)!r} and waited on this one; retry"
            ) from exc
        raise


def identifier_lock_name(resource_type: str, param: str, system: str | None, value: str) -> str:
    """The lock name of a find by one token (HL7 identifiers and FHIR ``identifier=s|v`` alike)."""
    return f"{resource_type}|{param}|{system or ''}|{value}"


def criteria_lock_names(resource_type: str, pairs: list[tuple[str, str]]) -> list[str]:
    """The lock names of a conditional request's search.

    A single ``identifier=system|value`` is locked under the same name an HL7
    message's find uses, so a FHIR conditional create and an ADT message for one
    patient wait for each other; any other search is locked by its sorted text.
    """
    if len(pairs) == 1:
        name, value = pairs[0]
        if name == "identifier" and "|" in value and "," not in value:
            system, code = value.split("|", 1)
            return [identifier_lock_name(resource_type, name, system, code)]
    return [f"{resource_type}?{urlencode(sorted(pairs))}"]
