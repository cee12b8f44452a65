"""The ``alert`` table and the mapping between its rows and :class:`~medhub.cds.alerts.Alert`.

Kept apart from the service (:mod:`medhub.cds.alert_store`) so the
migrations can import the table without the service's dependencies, and so
each module stays one idea.
"""

from __future__ import annotations

import math
from datetime import datetime

from sqlalchemy import Float, Index, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from medhub.cds.alarm_codes import Condition, Priority
from medhub.cds.alerts import Alert, AlertState
from medhub.db.base import MYSQL_TABLE_OPTIONS, Base, UtcDateTime

#: Longest text kept with an alert (a device's alarm text is at most 1024 characters).
MAX_ALERT_TEXT = 1024


class AlertRow(Base):
    __tablename__ = "alert"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    patient_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    device_id: Mapped[str] = mapped_column(String(64))
    channel: Mapped[str] = mapped_column(String(64))
    vital: Mapped[str] = mapped_column(String(64))
    condition: Mapped[int] = mapped_column(Integer)
    priority: Mapped[int] = mapped_column(Integer)
    state: Mapped[str] = mapped_column(String(16))
    #: NULL for "signal lost" (the detector's NaN: MariaDB cannot store NaN).
    value: Mapped[float | None] = mapped_column(Float, nullable=True)
    limit_value: Mapped[float | None] = mapped_column(Float, nullable=True)
    unit: Mapped[str] = mapped_column(String(32))
    raised_at: Mapped[datetime] = mapped_column(UtcDateTime)
    acknowledged_at: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)
    acknowledged_by: Mapped[str | None] = mapped_column(String(128), nullable=True)
    escalated_at: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)
    resolved_at: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)
    resolved_value: Mapped[float | None] = mapped_column(Float, nullable=True)
    flag_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    observation_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    #: A device's own alarm: the device's id of it, its code and its MDC event code.
    source_alarm_id: Mapped[str | None] = mapped_column(String(128), nullable=True)
    alarm_code: Mapped[str | None] = mapped_column(String(128), nullable=True)
    event_code: Mapped[str | None] = mapped_column(String(128), nullable=True)
    text: Mapped[str | None] = mapped_column(String(MAX_ALERT_TEXT), nullable=True)

    __table_args__ = (
        # The duplicate check: the open alert of one stream and condition.
        Index("ix_alert_stream", "device_id", "vital", "condition", "state"),
        Index("ix_alert_patient", "patient_id", "state"),
        # Escalation: raised alerts, oldest first.
        Index("ix_alert_state_raised", "state", "raised_at"),
        # A device's own alarm: its start, continue and end find one alert.
        Index("ix_alert_source_alarm", "device_id", "source_alarm_id"),
        MYSQL_TABLE_OPTIONS,
    )


def finite(value: float | None) -> float | None:
    """None for NaN and infinities: what SQL (and JSON) can hold."""
    return None if value is None or math.isnan(value) or math.isinf(value) else value


def view(row: AlertRow) -> Alert:
    state: AlertState = row.state  # type: ignore[assignment]
    return Alert(
        id=row.id,
        patient_id=row.patient_id,
        device_id=row.device_id,
        channel=row.channel,
        vital=row.vital,
        condition=Condition(row.condition),
        priority=Priority(row.priority),
        state=state,
        value=math.nan if row.value is None else row.value,
        limit=math.nan if row.limit_value is None else row.limit_value,
        unit=row.unit,
        raised_at=row.raised_at,
        acknowledged_at=row.acknowledged_at,
        acknowledged_by=row.acknowledged_by,
        escalated_at=row.escalated_at,
        resolved_at=row.resolved_at,
        resolved_value=row.resolved_value,
        flag_id=row.flag_id,
        observation_id=row.observation_id,
        source_alarm=row.source_alarm_id,
        alarm_code=row.alarm_code,
        event_code=row.event_code,
        text=row.text,
    )


def new_row(alert: Alert) -> AlertRow:
    """The row of a just-raised alert."""
    return AlertRow(
        id=alert.id,
        patient_id=alert.patient_id,
        device_id=alert.device_id,
        channel=alert.channel,
        vital=alert.vital,
        condition=int(alert.condition),
        priority=int(alert.priority),
        state=alert.state,
        value=finite(alert.value),
        limit_value=finite(alert.limit),
        unit=alert.unit,
        raised_at=alert.raised_at,
        flag_id=alert.flag_id,
        observation_id=alert.observation_id,
        source_alarm_id=alert.source_alarm,
        alarm_code=alert.alarm_code,
        event_code=alert.event_code,
        text=None if alert.text is None else alert.text[:MAX_ALERT_TEXT],
    )


def store_state(row: AlertRow, alert: Alert) -> None:
    """Write a lifecycle change (:mod:`medhub.cds.alerts`) back to its row."""
    row.state = alert.state
    row.acknowledged_at, row.acknowledged_by = alert.acknowledged_at, alert.acknowledged_by
    row.escalated_at, row.resolved_at = alert.escalated_at, alert.resolved_at
    row.resolved_value = finite(alert.resolved_value)
