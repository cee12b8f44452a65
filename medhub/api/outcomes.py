"""Every error as a FHIR OperationOutcome with one HTTP status (FHIR R4 operationoutcome.html).

Routes never build error responses themselves: they raise :class:`MedhubError`
and the handlers registered here translate. Unexpected exceptions become a 500
OperationOutcome without a stack trace (the trace goes to the log).
"""

from __future__ import annotations

from typing import Any

import orjson
import structlog
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from medhub.errors import Issue, MedhubError

FHIR_JSON = "application/fhir+json"
log = structlog.get_logger(__name__)

_STATUS_ISSUE = {
    400: "invalid",
    404: "not-found",
    405: "not-supported",
    406: "not-supported",
    409: "conflict",
    410: "deleted",
    412: "conflict",
    415: "not-supported",
    422: "processing",
    503: "transient",
}


def operation_outcome(issues: list[Issue]) -> dict[str, Any]:
    """An OperationOutcome resource for these issues."""
    rendered = []
    for issue in issues:
        item: dict[str, Any] = {
            "severity": issue.severity,
            "code": issue.code,
            "diagnostics": issue.message,
        }
        if issue.expression:
            item["expression"] = list(issue.expression)
        if issue.location is not None:
            item["location"] = [issue.location.terser()]
        rendered.append(item)
    return {"resourceType": "OperationOutcome", "issue": rendered}


def outcome_response(status: int, issues: list[Issue]) -> Response:
    return Response(
        orjson.dumps(operation_outcome(issues)), status_code=status, media_type=FHIR_JSON
    )


async def _medhub_error(_request: Request, exc: Exception) -> Response:
    assert isinstance(exc, MedhubError)
    return outcome_response(exc.http_status, exc.issues)


async def _validation_error(_request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    issues = []
    for err in exc.errors():
        where = ".".join(str(part) for part in err["loc"])
        issues.append(Issue(f"{where}: {err['msg']}", code="invalid", expression=(where,)))
    return outcome_response(400, issues)


async def _http_error(_request: Request, exc: Exception) -> Response:
    assert isinstance(exc, StarletteHTTPException)
    code = _STATUS_ISSUE.get(exc.status_code, "exception")
    return outcome_response(exc.status_code, [Issue(str(exc.detail), code=code)])


async def _unexpected(request: Request, exc: Exception) -> Response:
    log.error("http.internal_error", path=request.url.path, error=type(exc).__name__, exc_info=exc)
    return outcome_response(
        500, [Issue("internal server error; see the server log", code="exception")]
    )


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(MedhubError, _medhub_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(Exception, _unexpected)
