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

import time
from typing import Final

from prometheus_client import Counter, Histogram
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from medhub.metrics import HTTP_REQUEST_SECONDS, HTTP_REQUESTS

UNMATCHED: Final = "unmatched"
_METHODS: Final = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


def _is_fhir(path: str) -> bool:
    return path == "/fhir" or path.startswith("/fhir/")


class HttpRequestMetrics:
    """``medhub_http_requests_total`` and ``medhub_http_request_seconds`` for non-FHIR paths."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self._counters: dict[tuple[str, str, int], Counter] = {}
        self._timers: dict[str, Histogram] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or _is_fhir(scope["path"]):
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500  # an exception escaping the app is answered 500 by Starlette

        async def noting_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, noting_status)
        finally:
            self._record(scope, status, time.perf_counter() - started)

    def _record(self, scope: Scope, status: int, seconds: float) -> None:
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
