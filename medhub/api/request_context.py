"""Every HTTP request runs under a correlation id and, when tracing is on, a span.

The id is the client's ``X-Request-ID`` when it is a safe token (a gateway or
FHIR client that already tags its calls keeps its id end to end), else a new
one; it is bound for the request's log lines, stored with what the request
queues (outbound HL7, outbox events) and sent back as ``X-Request-ID``.
Pure ASGI, like :class:`medhub.api.app.SecurityHeaders`: no task per request.
"""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from medhub.correlation import accepted_correlation_id, correlated
from medhub.tracing import span

HEADER = b"x-request-id"


class RequestContext:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        given = None
        for name, value in scope.get("headers", []):
            if name == HEADER:
                given = accepted_correlation_id(value.decode("latin-1"))
                break
        with correlated(given) as correlation_id:
            header = (HEADER, correlation_id.encode())

            async def tagged(message: Message) -> None:
                if message["type"] == "http.response.start":
                    current.set_attribute("http.status_code", message["status"])
                    message = {**message, "headers": [*message.get("headers", []), header]}
                await send(message)

            method = scope.get("method", "WS")
            with span("http.request", **{"http.method": method}) as current:
                await self.app(scope, receive, tagged)
                route = scope.get("route")
                path = getattr(route, "path", None)
                if isinstance(path, str):  # the template (/fhir/{type}/{id}), never an id
                    current.set_attribute("http.route", path)
