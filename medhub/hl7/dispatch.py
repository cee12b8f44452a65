"""Which message types medhub maps to FHIR, and how an applier is called.

An *applier* takes a parsed message and an :class:`ApplyContext` (the unit of
work's resources, the clock, and a list to put domain events in) and writes
the FHIR resources the message means. Appliers raise :class:`MedhubError` with
an HL7 location when the message cannot be mapped; the inbound service then
keeps the message as ``dead-letter`` (parsed, not applied) and answers AE.

A message type without an applier is *stored* (logged raw and acknowledged
AA) but not mapped: an interface must never reject a valid message just
because medhub does not interpret it yet.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime

from medhub.db.outbox import DomainEvent
from medhub.fhir.store import Resources, StoredResource
from medhub.hl7.er7 import Message
from medhub.hl7.patient_mapping import pid_to_patient
from medhub.hl7.patient_upsert import upsert_patient


@dataclass
class ApplyContext:
    """What an applier may use: the transaction's resources, ``now``, an event list."""

    resources: Resources
    now: datetime
    events: list[DomainEvent] = field(default_factory=list)


Applier = Callable[[Message, ApplyContext], list[StoredResource]]


def apply_patient_demographics(message: Message, context: ApplyContext) -> list[StoredResource]:
    """ADT A04/A05/A08/A28/A31 (and A01 until the encounter applier exists): the Patient."""
    return [upsert_patient(context.resources, pid_to_patient(message))]


def _registry() -> dict[str, Applier]:
    appliers: dict[str, Applier] = {
        f"ADT^{event}": apply_patient_demographics
        for event in ("A01", "A04", "A05", "A08", "A28", "A31")
    }
    return appliers


APPLIERS: Mapping[str, Applier] = _registry()


def message_key(message: Message) -> str:
    """``CODE^EVENT`` from MSH-9 (e.g. ``ADT^A01``), the key of :data:`APPLIERS`."""
    code, event, _ = message.message_type
    return f"{code}^{event}"


def applier_for(message: Message) -> Applier | None:
    """The applier for this message's type, or None when medhub stores it unmapped."""
    return APPLIERS.get(message_key(message))
