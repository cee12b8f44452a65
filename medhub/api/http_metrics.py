"""Counting the other HTTP requests (JSON API, dashboards, auth, probes) by route and status.

FHIR requests are counted by interaction (:mod:`medhub.api.fhir_metrics`);
everything else is labelled with the *route template* it matched
(``/api/v1/devices/{device_id}``), never the raw path, so no identifier
reaches the monitoring system and the label set is bounded by the routes the
code declares. A path no route serves is ``unmatched``; a method outside the
standard ones is ``other``.

Pure ASGI middleware, placed like the FHIR one: it sees the status the client
gets, audit included.
"""

from __future__ import annotations

from typing import Final

from prometheus_client import Counter, Histogram
from starlette.types import ASGIApp, Scope

from medhub.api.request_timer import RequestTimer, is_fhir
from medhub.metrics import HTTP_REQUEST_SECONDS, HTTP_REQUESTS

UNMATCHED: Final = "unmatched"
_METHODS: Final = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


class HttpRequestMetrics(RequestTimer):
    """``medhub_http_requests_total`` and ``medhub_http_request_seconds`` for non-FHIR paths."""

    def __init__(self, app: ASGIApp) -> None:
        super().__init__(app)
        self._counters: dict[tuple[str, str, int], Counter] = {}
        self._timers: dict[str, Histogram] = {}

    def takes(self, path: str) -> bool:
        return not is_fhir(path)

    def record(self, scope: Scope, status: int, seconds: float) -> None:
        route = getattr(scope.get("route"), "path", None) or UNMATCHED
        method = scope["method"] if scope["method"] in _METHODS else "other"
        key = (route, method, status)
        counter = self._counters.get(key)
        if counter is None:  # bound once per triple: labels() takes a lock and validates
            counter = self._counters.setdefault(
                key, HTTP_REQUESTS.labels(route, method, str(status))
            )
        timer = self._timers.get(route)
        if timer is None:
            timer = self._timers.setdefault(route, HTTP_REQUEST_SECONDS.labels(route))
        counter.inc()
        timer.observe(seconds)
