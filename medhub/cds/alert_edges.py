"""One edge (start or end) of an alert condition, whatever raised it.

The alert service (:mod:`medhub.cds.alert_store`) takes the detector's
:class:`~medhub.cds.detector.AlarmEvent`s and these: NEWS2 bands
(:mod:`medhub.cds.news2_alerts`) and alarms a device decided itself
(``devices/+/alerts``) go through the same lifecycle, storage, outbox and API
as the detector's alarms, so a nurse and a RabbitMQ consumer see one kind of
alert. A detector event becomes an edge with :func:`edge_of`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, Protocol

from medhub.cds.alarm_codes import Condition, Priority, Transition

if TYPE_CHECKING:  # the detector pulls in numba, which the store need not load
    from medhub.cds.detector import AlarmEvent


class StreamSource(Protocol):
    """Where an alert comes from: a detector stream key, or an :class:`AlertEdge`."""

    @property
    def vital(self) -> str: ...

    @property
    def device_id(self) -> str: ...

    @property
    def channel(self) -> str: ...

    @property
    def patient_id(self) -> str | None: ...


@dataclass(frozen=True, slots=True)
class AlertEdge:
    """A START or END of one alert condition from one source.

    ``device_id``/``vital``/``channel``/``condition`` (and the patient) name
    the condition, as for the detector's streams; a device's own alarm is named
    by ``source_alarm`` (the device's id of it) instead. ``observation``, when
    given, is the FHIR Observation recorded on the START in place of the
    triggering value (NEWS2 records its score).
    """

    device_id: str
    vital: str
    condition: Condition
    transition: Transition
    priority: Priority
    time: datetime
    value: float = math.nan
    limit: float = math.nan
    channel: str = ""
    patient_id: str | None = None
    #: None: the vital's UCUM unit.
    unit: str | None = None
    source_alarm: str | None = None
    alarm_code: str | None = None
    event_code: str | None = None
    text: str | None = None
    observation: Mapping[str, Any] | None = None
    #: The detector's stream key, when the edge is the detector's (given to ``patient_for``).
    stream: StreamSource | None = None


def edge_of(event: AlarmEvent) -> AlertEdge:
    """The detector's alarm edge in the alert service's terms."""
    key = event.key
    return AlertEdge(
        device_id=key.device_id,
        vital=key.vital,
        condition=event.condition,
        transition=event.transition,
        priority=event.priority,
        time=event.time,
        value=event.value,
        limit=event.limit,
        channel=key.channel,
        patient_id=key.patient_id,
        stream=key,
    )
