"""Every access to patient data, recorded as a FHIR AuditEvent before the answer leaves.

An HTTP middleware records each request to the patient-data interfaces
(``/fhir``, ``/api/v1``, ``/cds-services``, ``/ui``) once the route has run:
who (the principal, its role, the client address), what (the resources the
route named, and the patients they are about), when, the RESTful interaction
and the outcome (FHIR R4 auditevent.html; the rest and restful-interaction
code systems; outcome 0 success, 4 minor failure for a 4xx, 8 serious for a
5xx). Refused requests (401, 403, 429) are recorded too: an attempt to see
what one may not is what an audit is for.

The AuditEvent is committed before the response is sent; when it cannot be
written the client gets 503 instead of the data, because data read without a
record of it is exactly what must not happen quietly.

Routes add what they touched with :func:`note`; the middleware adds the
resource named by the path.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Awaitable, Callable, Iterable
from contextlib import AbstractContextManager
from datetime import datetime
from typing import Any, Final

import structlog
from fastapi import FastAPI, Request, Response
from starlette.concurrency import run_in_threadpool

from medhub.api.outcomes import outcome_response
from medhub.api.permissions import Principal
from medhub.errors import Issue, MedhubError
from medhub.fhir.store import Resources, ResourceStore, format_instant

log = structlog.get_logger(__name__)
AUDITED_PREFIXES: Final = ("/fhir", "/api/v1", "/cds-services", "/ui", "/ws")
_NOT_AUDITED: Final = ("/fhir/metadata", "/ui/static", "/ui/login", "/ui/logout", "/ui/refresh")
_PATH_RESOURCE: Final = re.compile(r"^/fhir/([A-Z][A-Za-z]+)/([A-Za-z0-9\-.]{1,64})(?:/|$)")
_ACTION: Final = {"GET": "R", "HEAD": "R", "POST": "C", "PUT": "U", "PATCH": "U", "DELETE": "D"}
_ENTITY_TYPE: Final = "http://terminology.hl7.org/CodeSystem/audit-entity-type"


def note(request: Request, references: Iterable[str], *, patients: Iterable[str] = ()) -> None:
    """Name resources (``Type/id``) and patients (ids) this request touched, for its audit."""
    state = request.state  # shared by every Request object of this ASGI scope
    if not hasattr(state, "audit_entities"):
        state.audit_entities, state.audit_patients = set(), set()
    state.audit_entities.update(references)
    state.audit_patients.update(patients)


def _subtype(request: Request) -> str:
    path, method = request.url.path, request.method
    if "/$" in path:
        return "operation"
    if "/_history" in path:
        return "vread" if re.search(r"/_history/[^/]+$", path) else "history-instance"
    if path.startswith("/fhir"):
        if method == "GET":
            return "read" if _PATH_RESOURCE.match(path) else "search-type"
        return {"POST": "create", "PUT": "update", "PATCH": "patch", "DELETE": "delete"}.get(
            method, "operation"
        )
    return "read" if method in ("GET", "HEAD") else "update"


def _outcome(status: int) -> str:
    return "0" if status < 400 else "4" if status < 500 else "8"


class AuditTrail:
    """Writes AuditEvents into the resource store, one transaction each.

    ``units``: where to write (default: the store's validating units of work).
    The composition root passes units that skip the fhir.resources round trip
    (~0.7 ms a request): these events are built here, and tests validate them.
    """

    def __init__(
        self,
        store: ResourceStore,
        *,
        clock: Callable[[], datetime],
        units: Callable[[], AbstractContextManager[Resources]] | None = None,
    ) -> None:
        self.store = store
        self.clock = clock
        self.units = units or store.unit_of_work

    def event(
        self,
        *,
        principal: Principal | None,
        request: Request,
        status: int,
        entities: Iterable[str],
        patients: Iterable[str],
    ) -> dict[str, Any]:
        """The AuditEvent for one request (pure apart from reading the request)."""
        client = request.client.host if request.client else ""
        agent: dict[str, Any] = {
            "requestor": True,
            "who": {"display": principal.display or principal.subject}
            if principal
            else {"display": "anonymous"},
        }
        if client:  # an empty address is invalid FHIR and would lose the whole record
            agent["network"] = {"address": client, "type": "2"}
        if principal is not None:
            agent["altId"] = f"{principal.kind}:{principal.subject}"
            agent["role"] = [{"text": principal.role}]
            if principal.practitioner:
                agent["who"]["reference"] = principal.practitioner
        entity: list[dict[str, Any]] = [
            {
                "what": {"reference": f"Patient/{p}"},
                "type": {"system": _ENTITY_TYPE, "code": "1", "display": "Person"},
            }
            for p in sorted(set(patients))
        ]
        entity.extend(
            {
                "what": {"reference": ref},
                "type": {"system": _ENTITY_TYPE, "code": "2", "display": "System Object"},
            }
            for ref in sorted(set(entities))
            if not ref.startswith("Patient/") or ref.removeprefix("Patient/") not in patients
        )
        query = request.url.query
        entity.append(
            {
                "type": {"system": _ENTITY_TYPE, "code": "2", "display": "System Object"},
                "description": f"{request.method} {request.url.path}",
                **({"query": base64.b64encode(query.encode()).decode()} if query else {}),
            }
        )
        return {
            "resourceType": "AuditEvent",
            "type": {
                "system": "http://terminology.hl7.org/CodeSystem/audit-event-type",
                "code": "rest",
                "display": "Restful Operation",
            },
            "subtype": [
                {"system": "http://hl7.org/fhir/restful-interaction", "code": _subtype(request)}
            ],
            "action": _ACTION.get(request.method, "E"),
            "recorded": format_instant(self.clock()),
            "outcome": _outcome(status),
            **({"outcomeDesc": f"HTTP {status}"} if status >= 400 else {}),
            "agent": [agent],
            "source": {"observer": {"display": "medhub"}},
            "entity": entity,
        }

    def record(self, event: dict[str, Any]) -> None:
        with self.units() as resources:
            resources.create(event)


def _audited(path: str) -> bool:
    return path.startswith(AUDITED_PREFIXES) and not path.startswith(_NOT_AUDITED)


def install_audit(app: FastAPI, trail: AuditTrail) -> None:
    """Record an AuditEvent for each request to a patient-data interface."""

    @app.middleware("http")
    async def audit(
        request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        response = await call_next(request)
        path = request.url.path
        if not _audited(path):
            return response
        entities: set[str] = set(getattr(request.state, "audit_entities", ()))
        patients: set[str] = set(getattr(request.state, "audit_patients", ()))
        match = _PATH_RESOURCE.match(path)
        if match and not match.group(2).startswith(("$", "_")):
            entities.add(f"{match.group(1)}/{match.group(2)}")
            if match.group(1) == "Patient":
                patients.add(match.group(2))
        principal = getattr(request.state, "principal", None)
        event = trail.event(
            principal=principal if isinstance(principal, Principal) else None,
            request=request,
            status=response.status_code,
            entities=entities,
            patients=patients,
        )
        try:
            await run_in_threadpool(trail.record, event)
        except MedhubError as exc:
            log.error("audit.not_recorded", path=path, error=exc.message)
            message = f"the access could not be audited ({exc.message}); nothing was returned"
            return outcome_response(503, [Issue(message, code="transient")])
        return response
