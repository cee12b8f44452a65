"""The SQL unit of work for inbound HL7: resources and message log in one transaction."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from medhub.fhir.sql_store import SqlResources, SqlResourceStore
from medhub.hl7.inbound import UnitFactory
from medhub.hl7.message_log import SqlMessageLog


@dataclass(frozen=True, slots=True)
class SqlInboundUnit:
    resources: SqlResources
    messages: SqlMessageLog


def sql_inbound_units(store: SqlResourceStore) -> UnitFactory:
    """A factory of units of work sharing one session (so one commit covers both)."""

    @contextmanager
    def open_unit() -> Iterator[SqlInboundUnit]:
        with store.session() as session:
            yield SqlInboundUnit(SqlResources(session, clock=store.clock), SqlMessageLog(session))

    return open_unit
