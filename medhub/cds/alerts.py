"""The alert lifecycle: what a clinical alert is, and the only ways its state may change.

An alert is the clinician-facing side of a detector alarm
(:class:`~medhub.cds.detector.AlarmEvent`): raised on the alarm's START,
acknowledged by a person, escalated when nobody acknowledged it in time,
resolved on the alarm's END (the vital came back in range)::

    raised ──acknowledge──> acknowledged ──resolve──> resolved
      │                          ^
      └──escalate──> escalated ──┘ (acknowledge)     (resolve from any open state)

IEC 60601-1-8 calls acknowledging "the operator has seen it": it silences the
reminder, it does not end the condition, so an acknowledged alert stays open
until the vital returns to range. Escalation exists because an unanswered
high-priority alarm is the failure mode that harms patients (alarm fatigue).

Everything here is pure: states in, states out, ``now`` a parameter; the SQL
side is :mod:`medhub.cds.alert_store`.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Final, Literal

from medhub.cds.alarm_codes import Condition, Priority
from medhub.errors import ConflictError, InputError

AlertState = Literal["raised", "acknowledged", "escalated", "resolved"]
OPEN_STATES: Final[tuple[AlertState, ...]] = ("raised", "acknowledged", "escalated")
Severity = Literal["low", "medium", "high"]

#: IEC 60601-1-8 priority -> the severity word used in routing keys and payloads.
SEVERITY_OF: Final[dict[Priority, Severity]] = {
    Priority.LOW: "low",
    Priority.MEDIUM: "medium",
    Priority.HIGH: "high",
}


@dataclass(frozen=True, slots=True)
class Alert:
    """One alert and its history so far (times are UTC)."""

    id: str
    patient_id: str | None
    device_id: str
    channel: str
    vital: str
    condition: Condition
    priority: Priority
    state: AlertState
    value: float
    limit: float
    unit: str
    raised_at: datetime
    acknowledged_at: datetime | None = None
    acknowledged_by: str | None = None
    escalated_at: datetime | None = None
    resolved_at: datetime | None = None
    resolved_value: float | None = None
    flag_id: str | None = None
    observation_id: str | None = None
    #: A device's own alarm: its id on the device (start and end carry the same one).
    source_alarm: str | None = None
    #: A device's own alarm: the device's alarm code, and its IEEE 11073-10101 event code.
    alarm_code: str | None = None
    event_code: str | None = None
    #: What the source says about it (a device's alarm text, the NEWS2 summary).
    text: str | None = None

    @property
    def severity(self) -> Severity:
        return SEVERITY_OF[self.priority]

    @property
    def is_open(self) -> bool:
        return self.state in OPEN_STATES

    @property
    def routing_key(self) -> str:
        """``alerts.<severity>.<vital>.<unit>``: consumers bind e.g. ``alerts.high.#``."""
        return f"alerts.{self.severity}.{routing_word(self.vital)}.{routing_word(self.unit)}"


def routing_word(text: str) -> str:
    """``text`` as one word of an AMQP topic routing key.

    Words are separated by ``.`` (AMQP 0-9-1 topic exchange), and UCUM writes
    products with ``.`` (``mL/(kg.min)``), so dots become ``_``; an empty unit
    is UCUM's unity ``1``.
    """
    return text.replace(".", "_") or "1"


def acknowledge(alert: Alert, *, by: str, now: datetime) -> Alert:
    """Someone has seen the alert. Acknowledging twice keeps the first acknowledgement.

    A resolved alert cannot be acknowledged: the clinician is told it ended
    rather than having a stale action recorded.
    """
    if not by.strip():
        raise InputError("an acknowledgement must say who acknowledged")
    if alert.state == "resolved":
        raise ConflictError(f"alert {alert.id} is already resolved")
    if alert.state == "acknowledged":
        return alert
    return replace(alert, state="acknowledged", acknowledged_at=now, acknowledged_by=by)


def due_for_escalation(alert: Alert, *, now: datetime, after: timedelta) -> bool:
    """Whether nobody acknowledged ``alert`` within ``after`` of it being raised."""
    return alert.state == "raised" and now - alert.raised_at >= after


def escalate(alert: Alert, *, now: datetime) -> Alert:
    """The alert went unanswered; only a still-unacknowledged alert escalates (once)."""
    if alert.state != "raised":
        raise ConflictError(f"alert {alert.id} is {alert.state}; only a raised alert escalates")
    return replace(alert, state="escalated", escalated_at=now)


def resolve(alert: Alert, *, now: datetime, value: float | None) -> Alert:
    """The vital came back in range (the detector's END); a resolved alert stays resolved."""
    if alert.state == "resolved":
        return alert
    return replace(alert, state="resolved", resolved_at=now, resolved_value=value)
