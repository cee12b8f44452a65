"""Authentication and authorisation for every HTTP route, as FastAPI dependencies.

A request proves who it is with one of:

* ``Authorization: Bearer <JWT>`` (a user's access token from ``/auth/login``,
  or an operator's from ``medhub token``),
* ``X-API-Key: mhk_…`` (a device gateway or an interface engine),
* the ``medhub_session`` cookie (the dashboards; HttpOnly, SameSite=Strict, so
  a script on another site can neither read nor send it).

:func:`current_principal` turns that into a :class:`Principal` (or 401), and
:func:`require` checks the role's table and scopes for one API area (or 403).
FHIR routes check per resource type in :func:`fhir_guard`. Care units are
checked where the patient is known (:mod:`medhub.api.patient_access`).

With no :class:`Security` in the context (unit tests that build the app by
hand) every request runs as an unrestricted local principal; ``medhub serve``
always configures it.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Annotated, Final

from fastapi import Depends, Request

from medhub.api.accounts import Accounts
from medhub.api.audit import note
from medhub.api.deps import ApiContext, ContextDep
from medhub.api.permissions import Action, Principal
from medhub.api.tokens import decode_access_token
from medhub.clinical.resources import RESOURCE_TYPES
from medhub.errors import AuthenticationError, ForbiddenError, TooManyRequestsError

SESSION_COOKIE: Final = "medhub_session"
REFRESH_COOKIE: Final = "medhub_refresh"
LOCAL: Final = Principal(subject="local", role="admin", kind="token", display="local (no auth)")
_WRITE_METHODS: Final = {"POST": "write", "PUT": "write", "PATCH": "write", "DELETE": "delete"}


class RateLimiter:
    """A token bucket per client (RFC 6585 429): ``rate`` requests a minute, bursts of ``burst``."""

    def __init__(self, per_minute: int, burst: int) -> None:
        self.rate = per_minute / 60.0
        self.burst = float(burst)
        self._buckets: dict[str, tuple[float, float]] = {}
        self._lock = threading.Lock()

    def take(self, client: str, now: float | None = None) -> float:
        """0 if the request may go, else the seconds to wait."""
        moment = time.monotonic() if now is None else now
        with self._lock:
            tokens, last = self._buckets.get(client, (self.burst, moment))
            tokens = min(self.burst, tokens + (moment - last) * self.rate)
            if tokens >= 1:
                self._buckets[client] = (tokens - 1, moment)
                return 0.0
            self._buckets[client] = (tokens, moment)
            return (1 - tokens) / self.rate


@dataclass
class Security:
    """What the routes need to authenticate: the signing secret, accounts and limits."""

    secret: str
    accounts: Accounts
    clock: Callable[[], datetime]
    access_ttl: timedelta = timedelta(minutes=15)
    cookie_secure: bool = False
    limiter: RateLimiter = field(default_factory=lambda: RateLimiter(6000, 1000))
    #: Keys that no longer sign but whose unexpired tokens are accepted (key rotation).
    accepted_secrets: tuple[str, ...] = ()


def _client(request: Request) -> str:
    return request.client.host if request.client else ""


def principal_of(request: Request, context: ApiContext) -> Principal:
    """Authenticate the request (no table lookups for JWTs); 401 if it cannot be."""
    cached = getattr(request.state, "principal", None)
    if isinstance(cached, Principal):
        return cached
    security = context.security
    if security is None:
        principal = LOCAL
    else:
        principal = _authenticate(request, security)
        wait = security.limiter.take(f"{principal.kind}:{principal.subject}")
        if wait > 0:
            raise TooManyRequestsError(f"too many requests; retry in {wait:.1f} s")
    request.state.principal = principal
    return principal


def _authenticate(request: Request, security: Security) -> Principal:
    client = _client(request)
    header = request.headers.get("authorization", "")
    api_key = request.headers.get("x-api-key")
    if api_key:
        return security.accounts.api_key_principal(api_key, client=client)
    token = None
    if header.lower().startswith("bearer "):
        token = header[7:].strip()
    elif header:
        raise AuthenticationError("Authorization must be 'Bearer <token>'")
    else:
        # Not from the query string: a URL ends up in proxy and server logs.
        token = request.cookies.get(SESSION_COOKIE)
    if not token:
        raise AuthenticationError(
            "authentication required: a Bearer token (POST /auth/login), an X-API-Key "
            "or a dashboard session"
        )
    return decode_access_token(
        token,
        secret=security.secret,
        now=security.clock(),
        client=client,
        accepted=security.accepted_secrets,
    )


def current_principal(request: Request, context: ContextDep) -> Principal:
    return principal_of(request, context)


PrincipalDep = Annotated[Principal, Depends(current_principal)]


def deny(principal: Principal, what: str) -> ForbiddenError:
    return ForbiddenError(f"role {principal.role} ({principal.subject}) may not {what}")


def require(area: str, action: Action) -> Callable[[Request, ApiContext], Principal]:
    """A dependency: the principal, if its role and scopes allow ``action`` on ``area``."""

    def check(request: Request, context: ContextDep) -> Principal:
        principal = principal_of(request, context)
        if not principal.can(area, action):
            raise deny(principal, f"{action} {area}")
        return principal

    return check


def fhir_action(request: Request) -> Action:
    """The action a FHIR request asks for: operations that only read count as reads."""
    path = request.url.path
    if request.method in ("GET", "HEAD") or path.endswith(("/$validate", "/_search")):
        return "read"
    return _WRITE_METHODS.get(request.method, "read")  # type: ignore[return-value]


def fhir_guard(request: Request, context: ContextDep) -> Principal:
    """Router dependency of ``/fhir``: the type's permission, and audit records never written."""
    principal = principal_of(request, context)
    resource_type = request.path_params.get("resource_type")
    if resource_type is None and "patient_id" in request.path_params:
        resource_type = "Patient"  # Patient/{id}/$everything
    action = fhir_action(request)
    if resource_type is None or resource_type not in RESOURCE_TYPES:
        # The base (Bundles are checked entry by entry) or an unknown type (the route's 404).
        return principal
    if resource_type == "AuditEvent" and request.method in ("PATCH", "DELETE"):
        # A PUT may add a record with a client id; the store's append-only hook
        # refuses one over an existing record.
        raise ForbiddenError("audit records cannot be changed or deleted through the API")
    if not principal.can(resource_type, action):
        raise deny(principal, f"{action} {resource_type}")
    return principal


def area_guard(area: str) -> Callable[[Request, ApiContext], Principal]:
    """A router dependency for a JSON API area: GET reads, other methods write."""

    def check(request: Request, context: ContextDep) -> Principal:
        principal = principal_of(request, context)
        action: Action = "read" if request.method in ("GET", "HEAD") else "write"
        if request.method == "DELETE":
            action = "delete"
        if not principal.can(area, action):
            raise deny(principal, f"{action} {area}")
        return principal

    return check


def check_patient(request: Request, context: ApiContext, patient_id: str) -> None:
    """403 unless the caller may see this patient; names the patient for the audit."""
    note(request, (), patients=(patient_id,))
    if context.access is not None:
        context.access.check_patient(principal_of(request, context), patient_id)
