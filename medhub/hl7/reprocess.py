"""Reprocess logged HL7 messages (``medhub hl7 reprocess``): dead letters after a fix.

A message that was parsed but could not be applied (``dead-letter``), or was
stored unmapped before medhub learned its type (``stored``), is run through
the inbound service again from its raw bytes in the log. The original log row
stays as it was; the new attempt gets a row of its own, its peer marked
``reprocess:<id>``, so the history of what happened is kept. An already
applied message comes out as ``duplicate`` and is not applied twice.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from medhub.fhir.sql_store import SqlResourceStore
from medhub.hl7.inbound import Hl7Inbound
from medhub.hl7.message_log import MessageQuery, SqlMessageLog
from medhub.hl7.message_log import Status as LogStatus


@dataclass(frozen=True, slots=True)
class ReprocessResult:
    message_id: int
    control_id: str
    status: LogStatus
    ack_code: str
    error: str | None


def reprocess(
    store: SqlResourceStore,
    inbound: Hl7Inbound,
    *,
    ids: Sequence[int] = (),
    status: str | None = None,
    limit: int = 1000,
) -> list[ReprocessResult]:
    """Run the given messages (or every message with ``status``) through ``inbound`` again."""
    with store.session() as session:
        log = SqlMessageLog(session)
        rows = [log.get(i) for i in ids] if ids else []
        if status is not None:
            rows.extend(log.search(MessageQuery(status=status, limit=limit)))
        work = [(row.id, row.control_id, row.raw) for row in sorted(rows, key=lambda r: r.id)]
    results = []
    for message_id, control_id, raw in work:
        outcome = inbound.handle(raw, f"reprocess:{message_id}")
        results.append(
            ReprocessResult(message_id, control_id, outcome.status, outcome.ack_code, outcome.error)
        )
    return results
