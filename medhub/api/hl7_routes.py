"""The HL7 message log over HTTP (``/api/v1/hl7/messages``) for interface analysts.

List and search the inbound log, read one message as received, and reprocess
dead letters after fixing their cause: what Mirth's message browser offers,
as JSON.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query
from fastapi.responses import PlainTextResponse

from medhub.api.deps import ContextDep
from medhub.errors import ConfigurationError, NotFoundError
from medhub.fhir.sql_store import SqlResourceStore
from medhub.hl7.message_log import MessageQuery, SqlMessageLog, message_summary
from medhub.hl7.reprocess import reprocess

router = APIRouter(prefix="/api/v1/hl7")


def _sql(context: ContextDep) -> SqlResourceStore:
    if context.inbound is None or context.sql_store is None:
        raise NotFoundError("this medhub has no HL7 inbound interface configured")
    return context.sql_store


@router.get("/messages")
def list_messages(
    context: ContextDep,
    status: str | None = None,
    sender: str | None = None,
    control_id: str | None = None,
    message_type: Annotated[str | None, Query(alias="type")] = None,
    since: datetime | None = None,
    before_id: int | None = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> dict[str, Any]:
    store = _sql(context)
    query = MessageQuery(status, sender, control_id, message_type, since, before_id, limit)
    with store.session() as session:
        rows = [message_summary(r) for r in SqlMessageLog(session).search(query)]
    return {"messages": rows, "next_before_id": rows[-1]["id"] if len(rows) == limit else None}


@router.get("/messages/{message_id}")
def get_message(message_id: int, context: ContextDep) -> dict[str, Any]:
    store = _sql(context)
    with store.session() as session:
        row = SqlMessageLog(session).get(message_id)
        summary = message_summary(row)
        summary["raw"] = row.raw.decode("utf-8", errors="replace")
    return summary


@router.get("/messages/{message_id}/raw", response_class=PlainTextResponse)
def get_raw(message_id: int, context: ContextDep) -> PlainTextResponse:
    store = _sql(context)
    with store.session() as session:
        raw = SqlMessageLog(session).get(message_id).raw
    return PlainTextResponse(
        raw.decode("utf-8", errors="replace"), media_type="x-application/hl7-v2+er7"
    )


@router.post("/messages/{message_id}/reprocess")
def reprocess_message(message_id: int, context: ContextDep) -> dict[str, Any]:
    store = _sql(context)
    if context.inbound is None:
        raise ConfigurationError("no inbound HL7 service")
    [result] = reprocess(store, context.inbound, ids=[message_id])
    return {
        "message_id": result.message_id,
        "control_id": result.control_id,
        "status": result.status,
        "ack_code": result.ack_code,
        "error": result.error,
    }
