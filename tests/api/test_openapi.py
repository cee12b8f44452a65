"""The OpenAPI description matches the routes the app really serves."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient

from medhub.api import (
    alert_routes,
    auth_routes,
    cds_hooks_routes,
    device_routes,
    fhir_capabilities,
    fhir_routes,
    fhir_search_routes,
    health,
    hl7_routes,
    news2_routes,
    prescription_routes,
)
from medhub.api.app import create_app
from medhub.api.deps import ApiContext, ComponentHealth
from medhub.fhir.sql_store import SqlResourceStore

PLACEHOLDERS = {
    "resource_type": "Patient",
    "resource_id": "p-1",
    "patient_id": "p-1",
    "version_id": "1",
    "message_id": "1",
    "device_id": "mon-1",
    "alert_id": "a-1",
    "request_id": "mr-1",
    "username": "nobody",
    "prefix": "abc",
    "service_id": "medhub-medication-safety-sign",
}


@pytest.fixture
def app_and_spec(sqlite_store: SqlResourceStore) -> tuple[Any, dict[str, Any]]:
    context = ApiContext(store=sqlite_store, health_checks={"db": lambda: ComponentHealth("up")})
    app = create_app(context)
    return app, app.openapi()


def test_every_route_is_described_and_every_description_is_a_route(
    app_and_spec: tuple[Any, dict[str, Any]],
) -> None:
    app, spec = app_and_spec
    routers = [
        health.router,
        fhir_capabilities.router,
        fhir_routes.router,
        fhir_search_routes.router,
        hl7_routes.router,
        device_routes.router,
        alert_routes.router,
        auth_routes.router,
        news2_routes.router,
        cds_hooks_routes.router,
        prescription_routes.router,
    ]
    served = {
        (route.path, method.lower())
        for router in routers
        for route in router.routes
        if isinstance(route, APIRoute) and route.include_in_schema
        for method in route.methods
    }
    described = {(path, method) for path, ops in spec["paths"].items() for method in ops}
    assert served == described


def test_writes_describe_their_fhir_json_bodies(app_and_spec: tuple[Any, dict[str, Any]]) -> None:
    _, spec = app_and_spec
    paths = spec["paths"]
    for path, method in [
        ("/fhir", "post"),
        ("/fhir/{resource_type}", "post"),
        ("/fhir/{resource_type}/{resource_id}", "put"),
        ("/fhir/{resource_type}/{resource_id}/$validate", "post"),
    ]:
        assert "application/fhir+json" in paths[path][method]["requestBody"]["content"]
    patch = paths["/fhir/{resource_type}/{resource_id}"]["patch"]["requestBody"]["content"]
    assert {"application/json-patch+json", "application/fhir+json"} <= set(patch)


def test_every_described_operation_is_answered_by_its_route(
    app_and_spec: tuple[Any, dict[str, Any]],
) -> None:
    """Calling each documented path never falls through to "no such route" (Starlette's 404/405)."""
    app, spec = app_and_spec
    with TestClient(app, raise_server_exceptions=False) as client:
        for path, ops in spec["paths"].items():
            url = path.format(**PLACEHOLDERS)
            for method in ops:
                response = client.request(
                    method.upper(),
                    url,
                    content=b"{}",
                    headers={"Content-Type": "application/fhir+json"},
                )
                assert response.status_code != 405, (method, path)
                if response.status_code == 404:
                    # a 404 must be medhub's own answer (resource not found), not a missing route
                    body = response.json()
                    assert body.get("resourceType") == "OperationOutcome" or "detail" in body
                    assert body.get("detail") != "Not Found", (method, path)
