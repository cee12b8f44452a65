"""Appliers for ADT messages (HL7 v2.5.1 chapter 3), keyed ``ADT^<event>``."""

from __future__ import annotations

from collections.abc import Mapping

from medhub.fhir.store import StoredResource
from medhub.hl7.apply_context import Applier, ApplyContext
from medhub.hl7.er7 import Message
from medhub.hl7.patient_mapping import pid_to_patient
from medhub.hl7.patient_upsert import upsert_patient


def apply_patient_demographics(message: Message, context: ApplyContext) -> list[StoredResource]:
    """Create or update the Patient named by PID-3."""
    return [upsert_patient(context.resources, pid_to_patient(message))]


APPLIERS: Mapping[str, Applier] = {
    f"ADT^{event}": apply_patient_demographics
    for event in ("A01", "A04", "A05", "A08", "A28", "A31")
}
