"""Counting FHIR REST requests by interaction and status, with their duration.

The interaction (FHIR R4 http.html; the restful-interaction code system) is
read off the *route template* the request matched (``/fhir/{resource_type}/
{resource_id}``), never off the raw path: a label per resource id would grow
without bound and put identifiers into the monitoring system. A request that
matched no route is ``unknown``. Which of ``batch`` and ``transaction`` a
POST to the base is depends on the Bundle, so that route says it with
:func:`note_interaction` once it has read the body.

Pure ASGI middleware, like :class:`medhub.api.app.SecurityHeaders`: no task or
copy per request, and it sees the status the client gets (after the audit
middleware, which may turn an answer into 503).
"""

from __future__ import annotations

from typing import Final

from fastapi import Request
from prometheus_client import Counter, Histogram
from starlette.types import ASGIApp, Scope

from medhub.api.request_timer import RequestTimer, is_fhir
from medhub.metrics import FHIR_REQUEST_SECONDS, FHIR_REQUESTS

_STATE_KEY: Final = "fhir_interaction"
_METHOD_ON_TYPE: Final = {
    "GET": "search-type",
    "POST": "create",
    "PUT": "update",
    "PATCH": "patch",
    "DELETE": "delete",
}
_METHOD_ON_INSTANCE: Final = {"GET": "read", "PUT": "update", "PATCH": "patch", "DELETE": "delete"}
_BASE: Final = {"GET": "search-system", "POST": "batch"}
_SYSTEM: Final = {("GET", "metadata"): "capabilities", ("GET", "_history"): "history-system"}


def fhir_interaction(method: str, template: str | None) -> str:
    """The FHIR interaction of ``method`` on the route ``template`` (``/fhir/...``).

    A pure function of the route, so the label set is the code system's, plus
    ``capabilities`` (``GET /fhir/metadata``) and ``unknown`` (no route).
    """
    if template is None:
        return "unknown"
    parts = [p for p in template.removeprefix("/fhir").split("/") if p]
    if any(p.startswith("$") for p in parts):
        return "operation"
    method = "GET" if method == "HEAD" else method
    found: str | None
    if not parts:
        found = _BASE.get(method)
    elif len(parts) == 1 and not parts[0].startswith("{"):
        found = _SYSTEM.get((method, parts[0]))
    elif len(parts) == 1:
        found = _METHOD_ON_TYPE.get(method)
    elif parts[1] == "_history":
        found = "history-type" if method == "GET" and len(parts) == 2 else None
    elif parts[1] == "_search":
        found = "search-type" if method == "POST" else None
    elif len(parts) == 2:
        found = _METHOD_ON_INSTANCE.get(method)
    elif parts[2] == "_history" and method == "GET":
        found = "history-instance" if len(parts) == 3 else "vread"
    else:
        found = None
    return found or "unknown"


def note_interaction(request: Request, interaction: str) -> None:
    """Name the interaction when the route alone does not tell (``batch`` or ``transaction``)."""
    setattr(request.state, _STATE_KEY, interaction)


class FhirRequestMetrics(RequestTimer):
    """Pure ASGI middleware: ``medhub_fhir_requests_total`` and ``medhub_fhir_request_seconds``."""

    def __init__(self, app: ASGIApp) -> None:
        super().__init__(app)
        self._counters: dict[tuple[str, int], Counter] = {}
        self._timers: dict[str, Histogram] = {}

    def takes(self, path: str) -> bool:
        return is_fhir(path)

    def record(self, scope: Scope, status: int, seconds: float) -> None:
        interaction = scope.get("state", {}).get(_STATE_KEY)
        if interaction is None:
            route = scope.get("route")
            interaction = fhir_interaction(scope["method"], getattr(route, "path", None))
        counter = self._counters.get((interaction, status))
        if counter is None:  # bound once per pair: labels() takes a lock and validates
            counter = self._counters.setdefault(
                (interaction, status), FHIR_REQUESTS.labels(interaction, str(status))
            )
        timer = self._timers.get(interaction)
        if timer is None:
            timer = self._timers.setdefault(interaction, FHIR_REQUEST_SECONDS.labels(interaction))
        counter.inc()
        timer.observe(seconds)
