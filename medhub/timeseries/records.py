"""What the time-series store holds and answers (pure data, no database).

A :class:`SampleRecord` is a device sample after ingest has attributed it:
the device's own timestamp (the idempotency key, so a resent batch is not
stored twice), the time it arrived, the corrected time (device time plus the
device's tracked clock offset, the time charts and rules use) and the patient
the device was bound to at that time (None when unbound: still stored, so a
late binding can claim it).

Records are NamedTuples: ingest builds one per sample at up to 100,000 a
second, and a frozen dataclass costs several times more to build.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import NamedTuple


class SampleRecord(NamedTuple):
    device_id: str
    vital: str
    channel: str
    device_time: datetime
    corrected_time: datetime
    received_at: datetime
    value: float
    unit: str
    patient_id: str | None = None
    mdc_code: str | None = None

    @property
    def key(self) -> tuple[str, str, str, datetime]:
        """The identity of a sample: one value per device, vital, channel and device time."""
        return (self.device_id, self.vital, self.channel, self.device_time)


@dataclass(frozen=True, slots=True)
class Bucket:
    """An aggregate of a vital over ``[start, start + seconds)``: for charts and trends."""

    start: datetime
    seconds: int
    count: int
    mean: float
    minimum: float
    maximum: float


def newest_by_patient(records: Sequence[SampleRecord]) -> dict[str, dict[str, SampleRecord]]:
    """Patient -> vital -> the newest record of a batch (by corrected time), for live tiles.

    Records of devices bound to nobody are left out: no patient's tile shows them.
    """
    latest: dict[str, dict[str, SampleRecord]] = {}
    for record in records:
        if record.patient_id is None:
            continue
        vitals = latest.setdefault(record.patient_id, {})
        known = vitals.get(record.vital)
        if known is None or known.corrected_time <= record.corrected_time:
            vitals[record.vital] = record
    return latest
