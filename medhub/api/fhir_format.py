"""FHIR HTTP conventions: content negotiation (FHIR R4 http.html#mime-type), Prefer, base URL.

medhub speaks FHIR JSON only. A client that asks for XML (``Accept`` or
``_format``) gets a 406 OperationOutcome, a client that sends XML gets a 415,
instead of a JSON body it cannot read or a parse error about ``<``.
``_pretty=true`` indents the answer; ``Prefer: return=…`` picks what a write
answers with.
"""

from __future__ import annotations

from typing import Any, Final, Literal

import orjson
from fastapi import Request
from fastapi.responses import Response

from medhub.api.outcomes import FHIR_JSON
from medhub.clinical.resources import RESOURCE_TYPES
from medhub.errors import (
    Issue,
    MessageParseError,
    NotAcceptableError,
    NotFoundError,
    UnsupportedMediaError,
)

_JSON_TYPES: Final = frozenset(
    {"application/fhir+json", "application/json", "application/json+fhir"}
)
_JSON_FORMATS: Final = frozenset({"json", *_JSON_TYPES})
_ANY: Final = frozenset({"*/*", "application/*", ""})
ReturnPreference = Literal["minimal", "representation", "OperationOutcome"]


def _media_types(header: str) -> list[str]:
    return [part.split(";")[0].strip().lower() for part in header.split(",") if part.strip()]


def negotiate(request: Request) -> None:
    """Refuse (406) a request whose ``_format`` or ``Accept`` admits no JSON."""
    fmt = request.query_params.get("_format")
    if fmt is not None and fmt.strip().lower() not in _JSON_FORMATS:
        raise NotAcceptableError(
            f"_format={fmt!r} is not supported; medhub answers FHIR JSON only "
            "(_format=json or application/fhir+json)",
            [
                Issue(
                    f"_format {fmt!r} is not supported",
                    code="not-supported",
                    expression=("_format",),
                )
            ],
        )
    if fmt is not None:
        return
    accepted = _media_types(request.headers.get("accept", ""))
    if not accepted or any(m in _JSON_TYPES or m in _ANY for m in accepted):
        return
    raise NotAcceptableError(
        f"Accept: {request.headers.get('accept')} admits no format medhub writes; medhub "
        "answers application/fhir+json (FHIR XML is not supported)"
    )


async def read_json_body(request: Request) -> Any:
    """The request body as JSON; 415 for a non-JSON Content-Type, 400 for broken JSON."""
    media = (request.headers.get("content-type") or "").split(";")[0].strip().lower()
    if media not in _JSON_TYPES:
        raise UnsupportedMediaError(
            f"Content-Type {media or 'none'!r} is not supported; send application/fhir+json "
            "(FHIR XML is not supported)"
        )
    return parse_json(await request.body())


def parse_json(raw: bytes) -> Any:
    """Parse a JSON body, naming the position of a syntax error."""
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        message = f"the body is not valid JSON: {exc}"
        raise MessageParseError(message, [Issue(message, code="structure")]) from exc


def prefer_return(request: Request) -> ReturnPreference:
    """``Prefer: return=minimal|representation|OperationOutcome`` (default representation)."""
    for part in request.headers.get("prefer", "").split(","):
        key, _, value = part.strip().partition("=")
        if key.strip().lower() == "return":
            value = value.strip().strip('"')
            if value in ("minimal", "representation", "OperationOutcome"):
                return value  # type: ignore[return-value]
    return "representation"


def prefer_lenient(request: Request) -> bool:
    """``Prefer: handling=lenient``: ignore unknown search parameters instead of refusing."""
    return any(
        part.strip().replace(" ", "").lower() == "handling=lenient"
        for part in request.headers.get("prefer", "").split(",")
    )


def fhir_response(
    request: Request,
    body: bytes | str | None,
    *,
    status: int = 200,
    headers: dict[str, str] | None = None,
) -> Response:
    """A FHIR JSON response; indented when the client asked for ``_pretty=true``."""
    if body is not None and request.query_params.get("_pretty", "").lower() == "true":
        body = orjson.dumps(orjson.loads(body), option=orjson.OPT_INDENT_2)
    return Response(body, status_code=status, media_type=FHIR_JSON, headers=headers)


def dumps(value: Any) -> bytes:
    """Serialise a response document (``orjson.Fragment`` bodies are embedded as stored)."""
    return orjson.dumps(value)


def check_type(resource_type: str) -> None:
    """404 (not-supported) for a resource type medhub does not serve."""
    if resource_type not in RESOURCE_TYPES:
        text = f"resource type {resource_type!r} is not supported"
        raise NotFoundError(text, [Issue(text, code="not-supported")])


def base_url(request: Request) -> str:
    """The FHIR base of this server as the client reached it (for fullUrl and Location)."""
    return str(request.base_url).rstrip("/") + "/fhir"
