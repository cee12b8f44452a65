"""Assemble the FastAPI application from its routers, guards and middleware."""

from __future__ import annotations

from fastapi import Depends, FastAPI
from fastapi.middleware.cors import CORSMiddleware
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from medhub import __version__
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
    metrics_route,
    news2_routes,
    prescription_routes,
    ui_pages,
)
from medhub.api.audit import install_audit
from medhub.api.deps import ApiContext
from medhub.api.fhir_format import negotiate
from medhub.api.fhir_metrics import FhirRequestMetrics
from medhub.api.http_metrics import HttpRequestMetrics
from medhub.api.live import install_live
from medhub.api.outcomes import install_error_handlers
from medhub.api.request_context import RequestContext
from medhub.api.security import area_guard, fhir_guard, require

#: Headers on every answer (OWASP secure headers): no sniffing, no framing, no referrer,
#: and nothing with patient data kept in a browser or proxy cache.
SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
    "Content-Security-Policy": "default-src 'self'; frame-ancestors 'none'",
}


class SecurityHeaders:
    """Pure ASGI middleware adding :data:`SECURITY_HEADERS` (no per-request task or copy,
    which Starlette's ``BaseHTTPMiddleware`` costs on every request)."""

    def __init__(self, app: ASGIApp, *, hsts: bool) -> None:
        self.app = app
        extra = [("strict-transport-security", "max-age=31536000")] if hsts else []
        self.headers = [
            (name.lower().encode(), value.encode())
            for name, value in [*SECURITY_HEADERS.items(), *extra]
        ]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                present = {name.lower() for name, _ in message.get("headers", [])}
                added = [(n, v) for n, v in self.headers if n not in present]
                message = {**message, "headers": [*message.get("headers", []), *added]}
            await send(message)

        await self.app(scope, receive, with_headers)


def create_app(
    context: ApiContext, *, cors_origins: list[str] | None = None, hsts: bool = False
) -> FastAPI:
    app = FastAPI(title="medhub", version=__version__, docs_url="/docs", redoc_url=None)
    app.state.context = context
    install_error_handlers(app)
    fhir = [Depends(fhir_guard)]
    app.include_router(health.router)
    app.include_router(metrics_route.router)  # open like /health: Prometheus has no user token
    app.include_router(auth_routes.router)
    app.include_router(fhir_capabilities.router)  # /fhir/metadata before /fhir/{type}
    app.include_router(fhir_routes.router, dependencies=fhir)
    app.include_router(fhir_search_routes.router, dependencies=[Depends(negotiate), *fhir])
    app.include_router(hl7_routes.router, dependencies=[Depends(area_guard("hl7"))])
    app.include_router(device_routes.router, dependencies=[Depends(area_guard("devices"))])
    app.include_router(alert_routes.router, dependencies=[Depends(area_guard("alerts"))])
    app.include_router(news2_routes.router, dependencies=[Depends(area_guard("alerts"))])
    app.include_router(
        cds_hooks_routes.router, dependencies=[Depends(require("MedicationRequest", "read"))]
    )
    app.include_router(
        prescription_routes.router, dependencies=[Depends(area_guard("prescriptions"))]
    )
    app.include_router(ui_pages.router)  # /ui dashboards and the /ws live feed
    install_live(app, context)
    if context.audit is not None:
        install_audit(app, context.audit)
    app.add_middleware(FhirRequestMetrics)  # outside the audit: counts the status sent
    app.add_middleware(HttpRequestMetrics)
    app.add_middleware(SecurityHeaders, hsts=hsts)
    if cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=cors_origins,
            allow_methods=["GET", "POST", "PUT", "PATCH", "DELETE"],
            allow_headers=["Authorization", "Content-Type", "If-Match", "If-None-Exist", "Prefer"],
            expose_headers=[
                "ETag",
                "Location",
                "Last-Modified",
                "X-Medhub-Warnings",
                "X-Request-ID",
            ],
        )
    app.add_middleware(RequestContext)  # outermost: everything inside logs under the id
    return app


def create_ops_app(context: ApiContext) -> FastAPI:
    """The HTTP side of a process that does not run the ``api`` role (``medhub serve
    --role mllp|devices|worker``): liveness, readiness and metrics for the
    orchestrator and Prometheus, and no patient data at all."""
    app = FastAPI(title="medhub", version=__version__, docs_url=None, redoc_url=None)
    app.state.context = context
    install_error_handlers(app)
    app.include_router(health.router)
    app.include_router(metrics_route.router)  # open like /health: Prometheus has no user token
    app.add_middleware(SecurityHeaders, hsts=False)
    app.add_middleware(RequestContext)
    return app
