"""Batch and transaction Bundles (FHIR R4 http.html#transaction).

A *transaction* is all or nothing: every entry runs in one unit of work and
the first failing entry fails the Bundle, naming the entry. Before anything is
written, ids are assigned to the POSTed resources and every ``urn:uuid:``
reference and every conditional reference (``Practitioner?identifier=…``,
as Synthea writes them) is replaced by the literal ``Type/id`` it stands for.
Entries then run in FHIR's order (DELETE, POST, PUT/PATCH, GET), and the
resources about to change are read in one query first, so the writes queue up
in the store and go out as a handful of multi-row statements (the store's
deferred writes) rather than one round trip per entry.

A *batch* runs each entry in its own unit of work: one failing entry is
reported in its own ``response.outcome`` and the others still apply.
"""

from __future__ import annotations

import base64
import uuid
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import Any, Final
from urllib.parse import parse_qsl, urlsplit

import orjson

from medhub.clinical.resources import RESOURCE_TYPES
from medhub.errors import (
    InputError,
    Issue,
    MedhubError,
    PreconditionFailedError,
)
from medhub.fhir import interactions
from medhub.fhir.interactions import PatchFormat, Written, parse_etag
from medhub.fhir.search import parse_search
from medhub.fhir.store import Resources, SearchResult, StoredResource
from medhub.fhir.write_hooks import notes_for

UnitFactory = Callable[[], AbstractContextManager[Resources]]

#: FHIR's processing order for the entries of a transaction (http.html#trules).
_ORDER: Final = {"DELETE": 0, "POST": 1, "PUT": 2, "PATCH": 2, "GET": 3, "HEAD": 3}
_STATUS_TEXT: Final = {
    200: "200 OK",
    201: "201 Created",
    204: "204 No Content",
    400: "400 Bad Request",
    404: "404 Not Found",
    406: "406 Not Acceptable",
    409: "409 Conflict",
    410: "410 Gone",
    412: "412 Precondition Failed",
    415: "415 Unsupported Media Type",
    422: "422 Unprocessable Entity",
    500: "500 Internal Server Error",
    503: "503 Service Unavailable",
}


@dataclass(slots=True)
class _Entry:
    """One Bundle entry, parsed: what to do, to what, with which conditions."""

    index: int
    method: str
    resource_type: str
    resource_id: str | None
    criteria: str | None
    query: list[tuple[str, str]]
    full_url: str | None
    resource: Any
    if_none_exist: str | None
    if_match: int | None
    patch_format: PatchFormat | None = None
    assigned_id: str | None = None
    skip_create: StoredResource | None = None

    @property
    def where(self) -> str:
        return f"Bundle.entry[{self.index}]"


@dataclass(slots=True)
class EntryResult:
    """The outcome of one entry: status, the version written or read, or a searchset/error."""

    status: int
    stored: StoredResource | None = None
    search: SearchResult | None = None
    error: MedhubError | None = None
    read: bool = False  # a GET: the resource goes into the response entry
    #: Warnings a write hook left (medication-safety findings that did not block).
    notes: list[Issue] = field(default_factory=list)


@dataclass(slots=True)
class BundleOutcome:
    """The results of a batch or transaction, in the order of the request's entries."""

    bundle_type: str
    results: list[EntryResult] = field(default_factory=list)


def _bad(where: str, message: str) -> InputError:
    return InputError(f"{where}: {message}", [Issue(f"{where}: {message}", expression=(where,))])


def _request_target(where: str, url: Any) -> tuple[str, str | None, str | None, list[Any]]:
    """``Type``, ``Type/id``, ``Type?criteria`` (relative or absolute) into its parts."""
    if not isinstance(url, str) or not url:
        raise _bad(f"{where}.request.url", "is required")
    parts = urlsplit(url)
    segments = [s for s in parts.path.split("/") if s]
    # An absolute URL carries the server's base ahead of the type: skip to the type.
    start = next((i for i, s in enumerate(segments) if s in RESOURCE_TYPES), None)
    if start is None:
        raise _bad(f"{where}.request.url", f"{url!r} does not name a resource type medhub serves")
    segments = segments[start:]
    resource_id = segments[1] if len(segments) > 1 else None
    criteria = parts.query or None
    return segments[0], resource_id, criteria, parse_qsl(parts.query, keep_blank_values=True)


def _parse_entry(index: int, raw: Any) -> _Entry:
    where = f"Bundle.entry[{index}]"
    if not isinstance(raw, dict):
        raise _bad(where, "must be an object")
    request = raw.get("request")
    if not isinstance(request, dict):
        raise _bad(f"{where}.request", "is required in a batch or transaction")
    method = request.get("method")
    if method not in _ORDER:
        raise _bad(
            f"{where}.request.method", f"must be GET, POST, PUT, PATCH or DELETE: {method!r}"
        )
    resource_type, resource_id, criteria, query = _request_target(where, request.get("url"))
    resource = raw.get("resource")
    entry = _Entry(
        index=index,
        method=method,
        resource_type=resource_type,
        resource_id=resource_id,
        criteria=criteria if method != "GET" else None,
        query=query,
        full_url=raw.get("fullUrl") if isinstance(raw.get("fullUrl"), str) else None,
        resource=resource,
        if_none_exist=request.get("ifNoneExist") or None,
        if_match=parse_etag(request.get("ifMatch"), where=f"{where}.request.ifMatch"),
    )
    if method in ("POST", "PUT") and not isinstance(resource, dict):
        raise _bad(f"{where}.resource", f"is required for {method}")
    if method == "PUT" and resource_id is None and criteria is None:
        raise _bad(f"{where}.request.url", "PUT needs Type/id or Type?criteria")
    if method == "DELETE" and resource_id is None and criteria is None:
        raise _bad(f"{where}.request.url", "DELETE needs Type/id or Type?criteria")
    if method == "PATCH":
        entry.patch_format = _entry_patch_format(where, resource)
    return entry


def _entry_patch_format(where: str, resource: Any) -> PatchFormat:
    """In a Bundle a patch is a Parameters resource (FHIRPath Patch) or a Binary (JSON Patch)."""
    if isinstance(resource, dict) and resource.get("resourceType") == "Parameters":
        return "fhirpath-patch"
    if isinstance(resource, dict) and resource.get("resourceType") == "Binary":
        return "json-patch"
    raise _bad(f"{where}.resource", "a PATCH entry carries a Parameters or a Binary resource")


def _patch_document(entry: _Entry) -> Any:
    if entry.patch_format == "json-patch":
        data = entry.resource.get("data")
        try:
            return orjson.loads(base64.b64decode(data or "", validate=True))
        except (ValueError, orjson.JSONDecodeError) as exc:
            raise _bad(f"{entry.where}.resource.data", "is not base64 of a JSON Patch") from exc
    return entry.resource


def parse_bundle(bundle: Any) -> tuple[str, list[_Entry]]:
    """Check the Bundle's shape and parse its entries; 400 naming the first bad element."""
    if not isinstance(bundle, dict) or bundle.get("resourceType") != "Bundle":
        raise _bad("Bundle", "the body must be a Bundle")
    bundle_type = bundle.get("type")
    if bundle_type not in ("transaction", "batch"):
        raise _bad(
            "Bundle.type", f"must be transaction or batch to be processed, not {bundle_type!r}"
        )
    raw_entries = bundle.get("entry") or []
    if not isinstance(raw_entries, list):
        raise _bad("Bundle.entry", "must be a list")
    return bundle_type, [_parse_entry(i, raw) for i, raw in enumerate(raw_entries)]


def _walk_references(node: Any) -> Iterator[dict[str, Any]]:
    """Every object with a string ``reference`` inside a resource."""
    if isinstance(node, dict):
        if isinstance(node.get("reference"), str):
            yield node
        for value in node.values():
            yield from _walk_references(value)
    elif isinstance(node, list):
        for item in node:
            yield from _walk_references(item)


def _is_conditional_reference(reference: str) -> bool:
    head = reference.split("?", 1)[0]
    return "?" in reference and "/" not in head and head in RESOURCE_TYPES


class _Transaction:
    """One transaction's state: the entries and what their placeholders resolve to."""

    def __init__(self, resources: Resources, entries: list[_Entry]) -> None:
        self.resources = resources
        self.entries = entries
        self.placeholders: dict[str, str] = {}
        self.conditional_cache: dict[str, str] = {}

    def run(self) -> list[EntryResult]:
        self._check_distinct_targets()
        self._assign_ids()
        for entry in self.entries:
            if entry.resource is not None and entry.method in ("POST", "PUT"):
                self.resolve_references(entry)
        self._prefetch()
        results: dict[int, EntryResult] = {}
        for entry in sorted(self.entries, key=lambda e: (_ORDER[e.method], e.index)):
            try:
                results[entry.index] = run_entry(self.resources, entry)
            except MedhubError as exc:
                raise _at_entry(exc, entry) from exc
        return [results[i] for i in range(len(self.entries))]

    def _check_distinct_targets(self) -> None:
        seen: dict[tuple[str, str], int] = {}
        for entry in self.entries:
            if entry.resource_id is None or entry.method == "GET":
                continue
            key = (entry.resource_type, entry.resource_id)
            if key in seen:
                raise _bad(
                    entry.where,
                    f"{key[0]}/{key[1]} is also the target of Bundle.entry[{seen[key]}]; a "
                    "transaction may change a resource only once",
                )
            seen[key] = entry.index

    def _assign_ids(self) -> None:
        """Give each POST its id (or the match of its If-None-Exist) before anything is written."""
        for entry in self.entries:
            target: str | None = None
            if entry.method == "POST":
                target = self._post_target(entry)
            elif entry.method == "PUT" and entry.resource_id is not None:
                target = f"{entry.resource_type}/{entry.resource_id}"
            elif entry.method == "PUT" and entry.criteria is not None:
                target = self._conditional_put_target(entry, entry.criteria)
            if target is not None and entry.full_url:
                self.placeholders[entry.full_url] = target

    def _matches(
        self, entry: _Entry, resource_type: str, criteria: str, where: str
    ) -> list[StoredResource]:
        try:
            return interactions.find_matches(self.resources, resource_type, criteria, where=where)
        except MedhubError as exc:
            raise _at_entry(exc, entry) from exc

    def _post_target(self, entry: _Entry) -> str:
        if entry.if_none_exist:
            matches = self._matches(
                entry,
                entry.resource_type,
                entry.if_none_exist,
                f"{entry.where}.request.ifNoneExist",
            )
            if len(matches) > 1:
                raise _at_entry(
                    PreconditionFailedError(
                        f"ifNoneExist {entry.if_none_exist!r} matches more than one "
                        f"{entry.resource_type}"
                    ),
                    entry,
                )
            if matches:
                entry.skip_create = matches[0]
                return f"{entry.resource_type}/{matches[0].id}"
        entry.assigned_id = str(uuid.uuid4())
        return f"{entry.resource_type}/{entry.assigned_id}"

    def _conditional_put_target(self, entry: _Entry, criteria: str) -> str:
        """A conditional update becomes a plain update of its one match, or a create."""
        matches = self._matches(entry, entry.resource_type, criteria, f"{entry.where}.request.url")
        if len(matches) > 1:
            raise _at_entry(
                PreconditionFailedError(
                    f"{entry.resource_type}?{criteria} matches more than one resource"
                ),
                entry,
            )
        if matches:
            entry.resource_id, entry.criteria = matches[0].id, None
            entry.resource = {**entry.resource, "id": matches[0].id}
            return f"{entry.resource_type}/{matches[0].id}"
        entry.method, entry.criteria = "POST", None
        entry.assigned_id = str(uuid.uuid4())
        return f"{entry.resource_type}/{entry.assigned_id}"

    def resolve_references(self, entry: _Entry) -> None:
        resource = entry.resource
        for holder in _walk_references(resource):
            reference = holder["reference"]
            if reference in self.placeholders:
                holder["reference"] = self.placeholders[reference]
            elif reference.startswith(("urn:uuid:", "urn:oid:")):
                raise _at_entry(
                    _bad(
                        f"{entry.where}.resource",
                        f"reference {reference!r} names no fullUrl of this transaction",
                    ),
                    entry,
                )
            elif _is_conditional_reference(reference):
                holder["reference"] = self._conditional(entry, reference)

    def _conditional(self, entry: _Entry, reference: str) -> str:
        if reference in self.conditional_cache:
            return self.conditional_cache[reference]
        resource_type, criteria = reference.split("?", 1)
        matches = self._matches(entry, resource_type, criteria, f"{entry.where}.resource")
        if len(matches) != 1:
            found = "no resource" if not matches else "more than one resource"
            raise _at_entry(
                PreconditionFailedError(
                    f"the conditional reference {reference!r} matches {found}; it must match "
                    "exactly one"
                ),
                entry,
            )
        literal = f"{resource_type}/{matches[0].id}"
        self.conditional_cache[reference] = literal
        return literal

    def _prefetch(self) -> None:
        prefetch = getattr(self.resources, "prefetch", None)
        if prefetch is None:
            return
        keys = [
            (e.resource_type, e.resource_id)
            for e in self.entries
            if e.method in ("PUT", "DELETE", "PATCH") and e.resource_id is not None
        ]
        prefetch(keys)


def run_entry(resources: Resources, entry: _Entry) -> EntryResult:
    """Run one entry's interaction in the given unit of work, with any notes hooks left."""
    result = _run_entry(resources, entry)
    if entry.method != "GET" and result.stored is not None:
        result.notes = notes_for(resources, result.stored)
    return result


def _run_entry(resources: Resources, entry: _Entry) -> EntryResult:
    if entry.method == "POST":
        if entry.skip_create is not None:
            return EntryResult(200, entry.skip_create)
        written = interactions.create(
            resources,
            entry.resource_type,
            entry.resource,
            if_none_exist=None if entry.assigned_id else entry.if_none_exist,
            resource_id=entry.assigned_id,
        )
        return _written(written)
    if entry.method == "PUT":
        if entry.resource_id is None:
            assert entry.criteria is not None
            return _written(
                interactions.conditional_update(
                    resources,
                    entry.resource_type,
                    entry.criteria,
                    entry.resource,
                    if_match=entry.if_match,
                )
            )
        return _written(
            interactions.update(
                resources,
                entry.resource_type,
                entry.resource_id,
                entry.resource,
                if_match=entry.if_match,
            )
        )
    if entry.method == "DELETE":
        if entry.resource_id is None:
            assert entry.criteria is not None
            return _written(
                interactions.conditional_delete(resources, entry.resource_type, entry.criteria)
            )
        return _written(
            interactions.delete(
                resources, entry.resource_type, entry.resource_id, if_match=entry.if_match
            )
        )
    if entry.method == "PATCH":
        assert entry.patch_format is not None
        document = _patch_document(entry)
        if entry.resource_id is None:
            assert entry.criteria is not None
            return _written(
                interactions.conditional_patch(
                    resources,
                    entry.resource_type,
                    entry.criteria,
                    document,
                    entry.patch_format,
                    if_match=entry.if_match,
                )
            )
        return _written(
            interactions.patch(
                resources,
                entry.resource_type,
                entry.resource_id,
                document,
                entry.patch_format,
                if_match=entry.if_match,
            )
        )
    # GET / HEAD: a read or a search
    if entry.resource_id is not None:
        return EntryResult(200, resources.read(entry.resource_type, entry.resource_id), read=True)
    query = parse_search(entry.resource_type, entry.query)
    return EntryResult(200, search=resources.search(query))


def _written(written: Written) -> EntryResult:
    return EntryResult(written.status, written.stored)


def _at_entry(exc: MedhubError, entry: _Entry) -> MedhubError:
    """The same error (same status), its messages prefixed with the entry that failed."""
    prefix = f"{entry.where} ({entry.method} {entry.resource_type}): "
    if exc.message.startswith("Bundle.entry["):
        return exc
    issues = [
        Issue(
            prefix + issue.message,
            issue.code,
            issue.severity,
            issue.expression or (entry.where,),
            issue.location,
            issue.hl7_error_code,
        )
        for issue in exc.issues
    ]
    error = type(exc)(prefix + exc.message, issues)
    return error


def process_bundle(units: UnitFactory, bundle: Any) -> BundleOutcome:
    """Run a batch or transaction Bundle and return each entry's result."""
    bundle_type, entries = parse_bundle(bundle)
    if bundle_type == "transaction":
        with units() as resources:
            results = _Transaction(resources, entries).run()
        return BundleOutcome("transaction-response", results)
    outcome = BundleOutcome("batch-response")
    for entry in entries:
        try:
            with units() as resources:
                if entry.resource is not None and entry.method in ("POST", "PUT"):
                    # Conditional references resolve per entry; urn:uuid ones are an error
                    # in a batch (its entries are independent, FHIR R4 http.html#brules).
                    _Transaction(resources, [entry]).resolve_references(entry)
                outcome.results.append(run_entry(resources, entry))
        except MedhubError as exc:
            outcome.results.append(EntryResult(exc.http_status, error=_at_entry(exc, entry)))
    return outcome


def status_line(status: int) -> str:
    """``201 Created``: the text FHIR puts in ``Bundle.entry.response.status``."""
    return _STATUS_TEXT.get(status, str(status))


def response_fields(result: EntryResult) -> dict[str, Any]:
    """``entry.response`` for a written or read version: status, location, etag, lastModified."""
    response: dict[str, Any] = {"status": status_line(result.status)}
    stored = result.stored
    if stored is not None:
        response["location"] = f"{stored.resource_type}/{stored.id}/_history/{stored.version_id}"
        response["etag"] = stored.etag
        response["lastModified"] = stored.last_updated.isoformat().replace("+00:00", "Z")
    return response
