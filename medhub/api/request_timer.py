"""The shared shell of the request-metrics middlewares: status and duration of each request.

Pure ASGI (no task or copy per request, unlike ``BaseHTTPMiddleware``); a
subclass says which requests it takes and what it records. It sees the
status the client gets, after the audit middleware (which may turn an answer
into 503), and counts a request that raised as the 500 Starlette answers.
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod

from starlette.types import ASGIApp, Message, Receive, Scope, Send


def is_fhir(path: str) -> bool:
    return path == "/fhir" or path.startswith("/fhir/")


class RequestTimer(ABC):
    """Times the HTTP requests :meth:`takes` accepts and hands them to :meth:`record`."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    @abstractmethod
    def takes(self, path: str) -> bool:
        """Whether a request to ``path`` is this middleware's to count."""

    @abstractmethod
    def record(self, scope: Scope, status: int, seconds: float) -> None:
        """Count one finished request (``scope`` holds the matched route)."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not self.takes(scope["path"]):
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
            self.record(scope, status, time.perf_counter() - started)
