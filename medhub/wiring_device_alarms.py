"""Alarms devices raise themselves (``devices/+/alerts``) into the alert lifecycle.

The MQTT consumer decodes each alarm (:mod:`medhub.devices.device_alarm_payload`)
and calls :class:`DeviceAlarmHandler` with a batch's alarms *before* it
acknowledges the messages, so a PUBACK means the alert is stored (DESIGN.md,
"store before acknowledging"). This module joins the two sides, which is why it
is wiring: devices and cds do not know each other.

* ``start`` and ``continue`` raise an alert unless one is open for the
  device's alarm id (a ``continue`` of an alarm medhub missed the start of
  raises it, since the device says it is going on); ``end`` resolves it;
  a ``start`` already stored (a redelivered message) is not raised again.
* The patient is the one the device was bound to at the alarm's time, on
  medhub's clock (the device's tracked clock offset, as for its samples).
* ``info`` is an information signal, not an alarm (IEC 60601-1-8): logged only.
* A database outage raises, so the consumer retries the batch and acks nothing;
  an alarm that cannot be stored for any other reason is logged with its
  reason and counted, so one bad alarm never blocks the consumer.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import datetime
from typing import Final, Protocol

import structlog

from medhub.cds.alarm_codes import Condition, Priority, Transition
from medhub.cds.alert_edges import AlertEdge
from medhub.cds.alert_store import AlertService
from medhub.devices.device_alarm_payload import DeviceAlert
from medhub.errors import ConcurrentWriteError, MedhubError, StoreUnavailableError

log = structlog.get_logger("medhub.adapters.mqtt")

_PRIORITY: Final = {"high": Priority.HIGH, "medium": Priority.MEDIUM, "low": Priority.LOW}
#: The alert's "vital" for a technical alarm about no vital (routing key ``alerts.<sev>.device.1``).
DEVICE_VITAL: Final = "device"
#: Errors worth retrying the whole batch for (the MQTT message stays unacknowledged).
_TRANSIENT: Final = (StoreUnavailableError, ConcurrentWriteError)
#: Column widths of the alert table (medhub.cds.alert_rows): a longer value would fail
#: on PostgreSQL/MariaDB as a database error, which is retried, so it is refused first.
_WIDTHS: Final = {"device_id": 64, "vital": 64, "channel": 64, "unit": 32}


def too_wide(edge: AlertEdge) -> str | None:
    """Why an edge cannot be stored as it is (a field longer than its column), if so."""
    for name, width in _WIDTHS.items():
        value = getattr(edge, name)
        if value is not None and len(value) > width:
            return f"{name} {value[:40]!r} is longer than {width} characters"
    return None


class Attribution(Protocol):
    """What the handler needs of device ingest: medhub's time and the patient bound then."""

    def attribute(self, device_id: str, device_time: datetime) -> tuple[datetime, str | None]: ...


def device_alarm_edge(alarm: DeviceAlert, *, time: datetime, patient: str | None) -> AlertEdge:
    """A device's alarm edge in the alert service's terms (``info`` is not an alarm)."""
    technical = alarm.kind == "technical"
    nan = math.nan
    return AlertEdge(
        device_id=alarm.device_id,
        vital=alarm.vital or DEVICE_VITAL,
        condition=Condition.DEVICE_TECHNICAL if technical else Condition.DEVICE_PHYSIOLOGICAL,
        transition=Transition.END if alarm.phase == "end" else Transition.START,
        priority=_PRIORITY[alarm.priority],
        time=time,
        value=nan if alarm.value is None else alarm.value,
        limit=nan if alarm.limit is None else alarm.limit,
        channel=alarm.channel or "",
        patient_id=patient,
        unit=alarm.unit or "",
        source_alarm=alarm.identity,
        alarm_code=alarm.code,
        event_code=alarm.mdc,
        text=alarm.text or f"{alarm.vital or 'device'}: {alarm.code}",
    )


class DeviceAlarmHandler:
    """The MQTT consumer's ``on_alerts``: device alarms -> alerts, stored before the ack."""

    def __init__(self, alerts: AlertService, attribution: Attribution) -> None:
        self._alerts = alerts
        self._attribution = attribution
        #: Alarm edges the alert service took (a duplicate of an open alarm included).
        self.stored = 0
        self.informational = 0
        self.refused = 0

    def __call__(self, alarms: Sequence[DeviceAlert]) -> None:
        edges: list[AlertEdge] = []
        for alarm in alarms:
            if alarm.priority == "info":
                self.informational += 1
                log.info("mqtt.device_information", device=alarm.device_id, code=alarm.code)
                continue
            time, patient = self._attribution.attribute(alarm.device_id, alarm.device_time)
            edge = device_alarm_edge(alarm, time=time, patient=patient)
            reason = too_wide(edge)
            if reason is not None:
                self._refuse(edge, reason)
                continue
            edges.append(edge)
        if not edges:
            return
        try:
            self._alerts.apply(edges)  # one transaction for the batch
        except _TRANSIENT:
            raise  # the consumer retries the batch; nothing is acked
        except MedhubError:
            self._one_by_one(edges)  # find the alarm at fault; store the others
        else:
            self.stored += len(edges)

    def _one_by_one(self, edges: Sequence[AlertEdge]) -> None:
        for edge in edges:
            try:
                self._alerts.apply([edge])
                self.stored += 1
            except _TRANSIENT:
                raise
            except MedhubError as exc:
                self._refuse(edge, exc.message)

    def _refuse(self, edge: AlertEdge, reason: str) -> None:
        self.refused += 1
        log.warning(
            "mqtt.device_alarm_refused",
            device=edge.device_id[:64],
            alarm=edge.source_alarm,
            reason=reason[:500],
        )
