"""Assemble the FastAPI application from its routers."""

from __future__ import annotations

from fastapi import Depends, FastAPI

from medhub import __version__
from medhub.api import (
    alert_routes,
    cds_hooks_routes,
    device_routes,
    fhir_capabilities,
    fhir_routes,
    fhir_search_routes,
    health,
    hl7_routes,
    prescription_routes,
)
from medhub.api.deps import ApiContext
from medhub.api.fhir_format import negotiate
from medhub.api.outcomes import install_error_handlers


def create_app(context: ApiContext) -> FastAPI:
    app = FastAPI(title="medhub", version=__version__, docs_url="/docs", redoc_url=None)
    app.state.context = context
    install_error_handlers(app)
    app.include_router(health.router)
    app.include_router(fhir_capabilities.router)  # /fhir/metadata before /fhir/{type}
    app.include_router(fhir_routes.router)
    app.include_router(fhir_search_routes.router, dependencies=[Depends(negotiate)])
    app.include_router(hl7_routes.router)
    app.include_router(device_routes.router)
    app.include_router(alert_routes.router)
    app.include_router(cds_hooks_routes.router)
    app.include_router(prescription_routes.router)
    return app
