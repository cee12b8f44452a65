"""Tables of the device registry, beside the FHIR Device resources in the resource store.

The Device resource (identity: serial number, UDI, model, manufacturer,
channels as DeviceMetric) is the clinical record; these tables hold what
changes with every message and what attribution needs fast: the bindings to
patients over time, and the live state (status, last seen, clock offset).
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, Boolean, Float, Index, String
from sqlalchemy.orm import Mapped, mapped_column

from medhub.db.base import MYSQL_TABLE_OPTIONS, Base, LongText, UtcDateTime
from medhub.fhir.sql_tables import AutoId


class DeviceBindingRow(Base):
    """One device attached to one patient over ``[start, end)`` (end NULL: still attached)."""

    __tablename__ = "device_binding"

    id: Mapped[int] = mapped_column(AutoId, primary_key=True, autoincrement=True)
    device_id: Mapped[str] = mapped_column(String(64))
    patient_id: Mapped[str] = mapped_column(String(64))
    start: Mapped[datetime] = mapped_column(UtcDateTime)
    end: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)

    __table_args__ = (
        Index("ix_device_binding_device_start", "device_id", "start"),
        Index("ix_device_binding_patient", "patient_id"),
        MYSQL_TABLE_OPTIONS,
    )


class DeviceStateRow(Base):
    """The last known state of a device: status, when it was last heard, its clock."""

    __tablename__ = "device_state"

    device_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    status: Mapped[str] = mapped_column(String(32))
    status_at: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)
    status_detail: Mapped[str | None] = mapped_column(LongText, nullable=True)
    last_seen: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)
    clock_offset_ms: Mapped[float] = mapped_column(Float, default=0.0)
    clock_flagged: Mapped[bool] = mapped_column(Boolean, default=False)
    samples_rejected: Mapped[int] = mapped_column(BigInteger, default=0)

    __table_args__ = (MYSQL_TABLE_OPTIONS,)
