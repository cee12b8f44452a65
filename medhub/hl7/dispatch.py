"""Which HL7 v2 message types medhub maps to FHIR: the applier registry.

A message type without an applier is *stored* (logged raw and acknowledged
AA) but not mapped: an interface must never reject a valid message just
because medhub does not interpret it. See :mod:`medhub.hl7.apply_context` for
what an applier is.
"""

from __future__ import annotations

from collections.abc import Mapping

from medhub.hl7 import adt_appliers, order_appliers, result_appliers
from medhub.hl7.apply_context import Applier, ApplyContext
from medhub.hl7.er7 import Message

__all__ = ["APPLIERS", "ApplyContext", "Applier", "applier_for", "message_key"]

APPLIERS: Mapping[str, Applier] = {
    **adt_appliers.APPLIERS,
    **result_appliers.APPLIERS,
    **order_appliers.APPLIERS,
}


def message_key(message: Message) -> str:
    """``CODE^EVENT`` from MSH-9 (e.g. ``ADT^A01``), the key of :data:`APPLIERS`."""
    code, event, _ = message.message_type
    return f"{code}^{event}"


def applier_for(message: Message) -> Applier | None:
    """The applier for this message's type, or None when medhub stores it unmapped."""
    return APPLIERS.get(message_key(message))
