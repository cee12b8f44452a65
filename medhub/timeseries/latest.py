"""The latest sample of each vital of a patient: what a score like NEWS2 starts from.

One statement for all the vitals asked for: per vital, the newest sample at
or before ``until`` by corrected time, found with the
``(patient_id, vital, corrected_time)`` index (a backward index scan of one
row per vital; on partitioned PostgreSQL one such scan per partition). Older
samples are not looked at, so this stays cheap however long the patient's
history is; whether the value is fresh enough to use is the caller's call.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any, Final

from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError

from medhub.errors import StoreUnavailableError
from medhub.timeseries.records import SampleRecord
from medhub.timeseries.sample_store import SampleStore, from_micros, to_micros

_COLUMNS: Final = (
    "device_id, vital, channel, device_time, corrected_time, received_at, value, unit, "
    "patient_id, mdc_code"
)
#: At most this many vitals in one query (NEWS2 asks for six).
MAX_VITALS: Final = 32


def latest_samples(
    store: SampleStore, patient_id: str, vitals: Sequence[str], *, until: datetime
) -> dict[str, SampleRecord]:
    """Vital -> the patient's newest sample of it with corrected time <= ``until``.

    A vital with no sample is absent from the result. Raises
    :class:`~medhub.errors.StoreUnavailableError` when the database fails.
    """
    wanted = list(dict.fromkeys(vitals))[:MAX_VITALS]
    if not wanted:
        return {}
    sqlite = store.dialect == "sqlite"
    params: dict[str, Any] = {"patient": patient_id, "until": to_micros(until) if sqlite else until}
    parts = []
    for index, vital in enumerate(wanted):
        params[f"v{index}"] = vital
        parts.append(
            f"SELECT * FROM (SELECT {_COLUMNS} FROM vital_sample "
            f"WHERE patient_id = :patient AND vital = :v{index} AND corrected_time <= :until "
            "ORDER BY corrected_time DESC LIMIT 1) AS latest_" + str(index)
        )
    sql = " UNION ALL ".join(parts)
    try:
        with store.engine.connect() as connection:
            rows = connection.execute(text(sql), params).all()
    except SQLAlchemyError as exc:
        raise StoreUnavailableError(f"the sample database failed: {exc}") from exc
    found: dict[str, SampleRecord] = {}
    for row in rows:
        values = list(row)
        if sqlite:
            for column in (3, 4, 5):
                values[column] = from_micros(values[column])
        record = SampleRecord(*values)
        found[record.vital] = record
    return found
