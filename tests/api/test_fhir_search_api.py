"""FHIR search over HTTP: searchset Bundles, paging links, _elements, _summary, lenient handling.

Runs the real app (FastAPI TestClient) over the real store on every SQL
back-end, with official FHIR R4 examples.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import pytest
from fastapi.testclient import TestClient

from medhub.api.app import create_app
from medhub.api.deps import ApiContext, ComponentHealth
from medhub.fhir.sql_store import SqlResourceStore

EXAMPLES = Path(__file__).resolve().parents[1] / "data" / "fhir-r4-examples"
OBSERVATIONS = ("example", "blood-pressure", "bmi", "body-temperature", "f001")


@pytest.fixture
def client(store: SqlResourceStore) -> Iterator[TestClient]:
    with store.unit_of_work() as resources:
        for name in (
            "Patient-example",
            "Patient-f001",
            *(f"Observation-{o}" for o in OBSERVATIONS),
        ):
            body = json.loads((EXAMPLES / f"{name}.json").read_text(encoding="utf-8"))
            resources.update(body["resourceType"], body["id"], body)
    context = ApiContext(store=store, health_checks={"database": lambda: ComponentHealth("up")})
    with TestClient(create_app(context), raise_server_exceptions=False) as test_client:
        yield test_client


def links(bundle: dict[str, Any]) -> dict[str, str]:
    return {link["relation"]: link["url"] for link in bundle["link"]}


def path_of(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.path}?{parts.query}"


def test_paging_links_walk_every_match_once(client: TestClient) -> None:
    url = "/fhir/Observation?_count=2&_sort=date"
    seen: list[str] = []
    previous_links: list[str] = []
    while url:
        bundle = client.get(url).json()
        assert bundle["total"] == 5
        seen.extend(e["resource"]["id"] for e in bundle["entry"])
        page_links = links(bundle)
        if "previous" in page_links:
            previous_links.append(page_links["previous"])
        url = path_of(page_links["next"]) if "next" in page_links else ""
    # earliest start first; the two 1999-07-02 observations in id order
    assert seen == ["bmi", "body-temperature", "blood-pressure", "f001", "example"]
    assert len(previous_links) == 2
    again = client.get(path_of(previous_links[-1])).json()
    assert [e["resource"]["id"] for e in again["entry"]] == ["blood-pressure", "f001"]


def test_self_link_repeats_the_applied_parameters(client: TestClient) -> None:
    bundle = client.get("/fhir/Observation", params={"code": "8310-5", "_count": "1"}).json()
    query = dict(parse_qsl(urlsplit(links(bundle)["self"]).query))
    assert query == {"code": "8310-5", "_count": "1"}
    assert "next" not in links(bundle)


def test_summary_count_returns_the_total_only(client: TestClient) -> None:
    bundle = client.get("/fhir/Observation?patient=example&_summary=count").json()
    assert bundle["total"] == 4
    assert bundle["entry"] == []


def test_total_none_omits_the_total(client: TestClient) -> None:
    bundle = client.get("/fhir/Observation?_total=none").json()
    assert "total" not in bundle
    assert len(bundle["entry"]) == 5
    assert client.get("/fhir/Observation?_total=accurate").json()["total"] == 5


def test_elements_trims_matches_and_marks_them_subsetted(client: TestClient) -> None:
    bundle = client.get("/fhir/Observation?_id=bmi&_elements=status,code").json()
    resource = bundle["entry"][0]["resource"]
    assert set(resource) == {"resourceType", "id", "meta", "status", "code"}
    assert {"code": "SUBSETTED"}.items() <= resource["meta"]["tag"][-1].items()


def test_include_entries_have_search_mode_include(client: TestClient) -> None:
    bundle = client.get("/fhir/Observation?_id=f001&_include=Observation:subject").json()
    modes = [(e["resource"]["resourceType"], e["search"]["mode"]) for e in bundle["entry"]]
    assert modes == [("Observation", "match"), ("Patient", "include")]
    assert bundle["total"] == 1


def test_unknown_parameter_is_an_operation_outcome_unless_lenient(client: TestClient) -> None:
    strict = client.get("/fhir/Patient?favourite-colour=blue")
    assert strict.status_code == 400
    assert strict.json()["resourceType"] == "OperationOutcome"
    assert "favourite-colour" in strict.text
    lenient = client.get(
        "/fhir/Patient?favourite-colour=blue&family=chalmers",
        headers={"Prefer": "handling=lenient"},
    )
    assert lenient.status_code == 200
    bundle = lenient.json()
    matches = [e for e in bundle["entry"] if e["search"]["mode"] == "match"]
    outcomes = [e for e in bundle["entry"] if e["search"]["mode"] == "outcome"]
    assert [e["resource"]["id"] for e in matches] == ["example"]
    assert "favourite-colour" in outcomes[0]["resource"]["issue"][0]["diagnostics"]
    assert "favourite-colour" not in links(bundle)["self"]


def test_unknown_modifier_and_unserved_parameter_are_400(client: TestClient) -> None:
    modifier = client.get("/fhir/Patient?name:below=x")
    assert modifier.status_code == 400 and "below" in modifier.text
    unserved = client.get("/fhir/Observation?code-value-quantity=x$5")
    assert unserved.status_code == 400 and "code-value-quantity" in unserved.text
    assert client.get("/fhir/Observation?_sort=nope").status_code == 400


def test_chain_and_has_over_http(client: TestClient) -> None:
    chained = client.get("/fhir/Observation?subject:Patient.family=van de").json()
    assert [e["resource"]["id"] for e in chained["entry"]] == ["f001"]
    has = client.get("/fhir/Patient?_has:Observation:patient:code=85354-9").json()
    assert [e["resource"]["id"] for e in has["entry"]] == ["example"]
