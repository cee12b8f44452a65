"""``_include`` and ``_revinclude`` over the embedded ``refs`` arrays (FHIR R4 search.html#include).

The MongoDB twin of :mod:`medhub.fhir.search_sql_includes`, with the same
rules: run after the page query on the page's resources only; ``_include``
follows the page's references to their targets, ``_revinclude`` finds the
resources pointing at the page; ``:iterate`` repeats on what was just
included, up to :data:`MAX_ITERATIONS` rounds so a reference cycle ends.
Included resources are never counted in the total, never repeat a match, and
come in the same order as on SQL (each round sorted by type, then id).
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any, Final

from pymongo.client_session import ClientSession
from pymongo.collection import Collection

from medhub.fhir.mongo_documents import STORED_FIELDS, stored_resource
from medhub.fhir.search import Include, SearchQuery
from medhub.fhir.store import StoredResource

MAX_ITERATIONS: Final = 3

Key = tuple[str, str]
Document = dict[str, Any]


def _by_type(resources: list[StoredResource]) -> dict[str, list[str]]:
    grouped: dict[str, list[str]] = defaultdict(list)
    for resource in resources:
        grouped[resource.resource_type].append(resource.id)
    return grouped


class _Includer:
    """One search's include rounds, reading through the unit's session."""

    def __init__(self, resources: Collection[Document], session: ClientSession | None) -> None:
        self.resources = resources
        self.session = session

    def targets(self, include: Include, ids: list[str]) -> set[Key]:
        """What the ``include.source_type`` resources ``ids`` point at through ``include.param``."""
        found: set[Key] = set()
        selector = {"type": include.source_type, "id": {"$in": ids}, "deleted": False}
        for document in self.resources.find(selector, {"refs": 1}, session=self.session):
            for ref in document.get("refs", ()):
                if ref["t"] is None or ref["i"] is None:
                    continue
                if include.param is not None and ref["p"] != include.param:
                    continue
                if include.target_type is not None and ref["t"] != include.target_type:
                    continue
                found.add((ref["t"], ref["i"]))
        return found

    def sources(self, include: Include, target_type: str, ids: list[str]) -> set[Key]:
        """The resources pointing at ``target_type`` ``ids`` (through ``include.param``)."""
        entry: Document = {"t": target_type, "i": {"$in": ids}}
        if include.param is not None:
            entry["p"] = include.param
        selector: Document = {"refs": {"$elemMatch": entry}, "deleted": False}
        if include.source_type is not None:
            selector["type"] = include.source_type
        projection = {"type": 1, "id": 1}
        return {
            (d["type"], d["id"])
            for d in self.resources.find(selector, projection, session=self.session)
        }

    def load(self, keys: set[Key]) -> list[StoredResource]:
        grouped: dict[str, list[str]] = defaultdict(list)
        for resource_type, resource_id in sorted(keys):
            grouped[resource_type].append(resource_id)
        loaded: list[StoredResource] = []
        for resource_type, ids in grouped.items():
            selector = {"type": resource_type, "id": {"$in": ids}, "deleted": False}
            cursor = self.resources.find(selector, STORED_FIELDS, session=self.session)
            loaded.extend(stored_resource(d) for d in cursor.sort("id", 1))
        return loaded

    def round(self, includes: list[Include], batch: list[StoredResource]) -> set[Key]:
        wanted: set[Key] = set()
        grouped = _by_type(batch)
        for include in includes:
            if include.reverse:
                for target_type, ids in grouped.items():
                    wanted |= self.sources(include, target_type, ids)
            elif include.source_type in grouped:
                wanted |= self.targets(include, grouped[include.source_type])
        return wanted


def fetch_includes(
    resources: Collection[Document],
    session: ClientSession | None,
    query: SearchQuery,
    matches: list[StoredResource],
) -> list[StoredResource]:
    """The resources ``query.includes`` pull in for this page of ``matches``."""
    includer = _Includer(resources, session)
    seen: set[Key] = {(m.resource_type, m.id) for m in matches}
    included: list[StoredResource] = []
    batch = matches
    rules = list(query.includes)
    for depth in range(MAX_ITERATIONS + 1):
        active = rules if depth == 0 else [i for i in rules if i.iterate]
        if not active or not batch:
            break
        keys = includer.round(active, batch) - seen
        batch = includer.load(keys)
        seen |= keys
        included.extend(batch)
    return included
