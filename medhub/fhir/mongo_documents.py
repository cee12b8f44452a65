"""The MongoDB documents of the resource store, and their conversions (pure; no I/O).

Two collections:

* ``resources``: one document per resource, its current version. ``_id`` is
  ``"Type/id"``; ``type``, ``id``, ``version``, ``lastUpdated``, ``deleted``,
  ``body``, and the search-index entries of the current version
  (:func:`medhub.fhir.indexing.extract_index_entries`) embedded as arrays
  (``tokens``, ``strings``, ``dates``, ``refs``, ``quantities``, ``numbers``,
  ``uris``; one short-keyed object per entry, ``p`` the parameter) so a search
  is one indexed query on this collection (multikey indexes, see
  :data:`RESOURCE_INDEXES`). A deletion empties them.
* ``history``: every version ever stored, ``_id`` ``"Type/id/version"``, with
  the HTTP ``method`` that wrote it, as the SQL store's history table.

``body`` is the resource's JSON *text*, exactly what the SQL store keeps: the
resource round-trips byte for byte (key order, decimals as the sender wrote
them), FHIR keys never collide with BSON rules for field names, and
:class:`StoredResource` carries text anyway. The index arrays, not the body,
are what queries look at.

BSON datetimes hold milliseconds. Write times are therefore truncated to the
millisecond before they are stored *and* written to ``meta.lastUpdated``, so
the instant in the body is the one the database sorts and filters on. Indexed
date ranges are widened to whole milliseconds (low floored, high rounded up),
so a value never drops out of a range it covers.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any, Final

from medhub.fhir.indexing import extract_index_entries
from medhub.fhir.store import StoredResource

RESOURCES: Final = "resources"
HISTORY: Final = "history"

#: (name, keys) of the indexes on ``resources``. Fields of one embedded array may
#: share a compound multikey index (MongoDB forbids only two *different* arrays).
RESOURCE_INDEXES: Final[list[tuple[str, list[tuple[str, int]]]]] = [
    ("type_current", [("type", 1), ("deleted", 1), ("lastUpdated", -1), ("id", 1)]),
    ("type_id", [("type", 1), ("id", 1)]),
    ("tokens", [("type", 1), ("tokens.p", 1), ("tokens.c", 1), ("tokens.s", 1)]),
    ("tokens_text", [("type", 1), ("tokens.p", 1), ("tokens.x", 1)]),
    ("strings_normalized", [("type", 1), ("strings.p", 1), ("strings.n", 1)]),
    ("strings_exact", [("type", 1), ("strings.p", 1), ("strings.e", 1)]),
    ("dates", [("type", 1), ("dates.p", 1), ("dates.lo", 1), ("dates.hi", 1)]),
    ("refs_target", [("refs.i", 1), ("refs.t", 1)]),
    ("refs_url", [("type", 1), ("refs.p", 1), ("refs.u", 1)]),
    ("quantities", [("type", 1), ("quantities.p", 1), ("quantities.v", 1)]),
    ("numbers", [("type", 1), ("numbers.p", 1), ("numbers.v", 1)]),
    ("uris", [("type", 1), ("uris.p", 1), ("uris.u", 1)]),
]
#: (name, keys) of the indexes on ``history``: instance, type and system history, each
#: ending in the full sort order (newest first, then version, then id), so a history
#: without ``_count`` streams from the index instead of a blocking in-memory sort
#: (which MongoDB caps at 100 MB).
HISTORY_INDEXES: Final[list[tuple[str, list[tuple[str, int]]]]] = [
    ("instance", [("type", 1), ("id", 1), ("lastUpdated", -1), ("version", -1)]),
    ("type_time", [("type", 1), ("lastUpdated", -1), ("version", -1), ("id", 1)]),
    ("system_time", [("lastUpdated", -1), ("version", -1), ("id", 1)]),
]

_MS: Final = timedelta(milliseconds=1)
_LATEST: Final = datetime.max.replace(microsecond=999000, tzinfo=UTC)


def floor_ms(value: datetime) -> datetime:
    """``value`` in UTC, truncated to the millisecond BSON can hold."""
    utc = aware(value)
    return utc.replace(microsecond=utc.microsecond - utc.microsecond % 1000)


def ceil_ms(value: datetime) -> datetime:
    """``value`` in UTC, rounded up to the next millisecond (the end of time stays put)."""
    floored = floor_ms(value)
    if floored == aware(value) or floored >= _LATEST:
        return floored
    return floored + _MS


def aware(value: datetime) -> datetime:
    """A UTC-aware datetime: clients without ``tz_aware=True`` hand back naive UTC values."""
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


def resource_key(resource_type: str, resource_id: str) -> str:
    """``_id`` of a ``resources`` document (the FHIR relative reference)."""
    return f"{resource_type}/{resource_id}"


def history_key(resource_type: str, resource_id: str, version_id: int) -> str:
    """``_id`` of a ``history`` document: unique per version, so a lost race fails loudly."""
    return f"{resource_type}/{resource_id}/{version_id}"


def index_fields(body: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
    """The embedded search-index arrays of one resource version (FHIR R4 search.html)."""
    entries = extract_index_entries(body)
    return {
        "tokens": [{"p": e.param, "s": e.system, "c": e.code, "x": e.text} for e in entries.tokens],
        "strings": [{"p": e.param, "n": e.normalized, "e": e.exact} for e in entries.strings],
        "dates": [
            {"p": e.param, "lo": floor_ms(e.low), "hi": ceil_ms(e.high)} for e in entries.dates
        ],
        "refs": [
            {"p": e.param, "t": e.target_type, "i": e.target_id, "u": e.url}
            for e in entries.references
        ],
        "quantities": [
            {"p": e.param, "v": e.value, "s": e.system, "c": e.code, "u": e.unit}
            for e in entries.quantities
        ],
        "numbers": [{"p": e.param, "v": e.value} for e in entries.numbers],
        "uris": [{"p": e.param, "u": e.uri} for e in entries.uris],
    }


#: The index arrays, by the search kind that reads them.
INDEX_ARRAYS: Final = {
    "token": "tokens",
    "token_text": "tokens",
    "string": "strings",
    "date": "dates",
    "reference": "refs",
    "quantity": "quantities",
    "number": "numbers",
    "uri": "uris",
}
_NO_INDEX: Final[dict[str, list[dict[str, Any]]]] = {name: [] for name in INDEX_ARRAYS.values()}


def resource_document(stored: StoredResource, body: dict[str, Any] | None) -> dict[str, Any]:
    """The ``resources`` document of a current version (``body`` None: a deletion, unindexed)."""
    index = _NO_INDEX if body is None else index_fields(body)
    return {
        "_id": resource_key(stored.resource_type, stored.id),
        "type": stored.resource_type,
        "id": stored.id,
        "version": stored.version_id,
        "lastUpdated": stored.last_updated,
        "deleted": stored.deleted,
        "body": stored.body,
        **index,
    }


def history_document(stored: StoredResource, method: str) -> dict[str, Any]:
    """The ``history`` document of one version; ``method`` is POST, PUT or DELETE."""
    return {
        "_id": history_key(stored.resource_type, stored.id, stored.version_id),
        "type": stored.resource_type,
        "id": stored.id,
        "version": stored.version_id,
        "lastUpdated": stored.last_updated,
        "deleted": stored.deleted,
        "method": method,
        "body": stored.body,
    }


#: The fields a :class:`StoredResource` is built from (queries project to these).
STORED_FIELDS: Final = {"type": 1, "id": 1, "version": 1, "lastUpdated": 1, "deleted": 1, "body": 1}


def stored_resource(document: dict[str, Any]) -> StoredResource:
    """A :class:`StoredResource` from a ``resources`` or ``history`` document."""
    return StoredResource(
        resource_type=document["type"],
        id=document["id"],
        version_id=int(document["version"]),
        last_updated=aware(document["lastUpdated"]),
        deleted=bool(document["deleted"]),
        body=document.get("body"),
    )
