"""What an applier gets: the transaction's resources, ``now`` and a list for domain events.

An *applier* takes a parsed message and an :class:`ApplyContext` and writes the
FHIR resources the message means, returning what it stored. It raises
:class:`~medhub.errors.MedhubError` with an HL7 location (``Issue.location``)
when the message cannot be mapped; the inbound service then keeps the message
as ``dead-letter`` and answers AE with an ERR segment naming that location.
Appliers do no other I/O: no sockets, no clock (``context.now``), no settings.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

from medhub.db.outbox import DomainEvent
from medhub.fhir.store import Resources, StoredResource
from medhub.hl7.er7 import Message


@dataclass
class ApplyContext:
    """The unit of work's resources, the message's receive time, and events to publish."""

    resources: Resources
    now: datetime
    events: list[DomainEvent] = field(default_factory=list)


Applier = Callable[[Message, ApplyContext], list[StoredResource]]
