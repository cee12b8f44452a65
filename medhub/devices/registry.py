"""The device registry on the SQL resource store: Device resources, bindings, live state.

A device appears the first time it sends (a gateway streams before anyone
registers its monitors) as a FHIR ``Device`` with the device id as its
identifier, and can be described further through the FHIR API. Binding it to
a patient checks the patient exists and that no other binding covers the
time, closes the open binding at the new start (moving a monitor from one
bed to the next is one call), and keeps ``Device.patient`` pointing at the
current patient.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

import orjson
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from medhub.clinical.device_binding import Binding, BindingTimeline
from medhub.clinical.resources import is_valid_id
from medhub.devices.registry_tables import DeviceBindingRow, DeviceStateRow
from medhub.errors import InputError, Issue, NotFoundError
from medhub.fhir.search import parse_search
from medhub.fhir.sql_store import SqlResources, SqlResourceStore

DEVICE_ID_SYSTEM: Final = "urn:medhub:device-id"


@dataclass(frozen=True, slots=True)
class DeviceState:
    status: str
    status_at: datetime | None
    last_seen: datetime | None
    clock_offset_ms: float
    clock_flagged: bool
    detail: dict[str, Any] | None


@dataclass(frozen=True, slots=True)
class DeviceEntry:
    """A registry entry as the JSON API shows it."""

    device_id: str
    device: dict[str, Any]
    state: DeviceState | None
    binding: Binding | None


def check_device_id(device_id: str) -> None:
    """Device ids become FHIR ids and MQTT topic levels, so FHIR's id rules apply."""
    if not is_valid_id(device_id):
        message = f"{device_id!r} is not a valid device id (FHIR id: letters, digits, '-', '.')"
        raise InputError(message, [Issue(message, expression=("device_id",))])


def _binding(row: DeviceBindingRow) -> Binding:
    return Binding(row.device_id, row.patient_id, row.start, row.end)


def _state(row: DeviceStateRow) -> DeviceState:
    return DeviceState(
        status=row.status,
        status_at=row.status_at,
        last_seen=row.last_seen,
        clock_offset_ms=row.clock_offset_ms,
        clock_flagged=row.clock_flagged,
        detail=orjson.loads(row.status_detail) if row.status_detail else None,
    )


class DeviceRegistry:
    """Registry operations; each call is one transaction on the resource store."""

    def __init__(
        self, store: SqlResourceStore, *, on_binding_change: Callable[[str], None] | None = None
    ) -> None:
        self.store = store
        self._on_binding_change = on_binding_change

    # -- devices ------------------------------------------------------------------

    def ensure_devices(self, device_ids: list[str]) -> list[str]:
        """Create a Device for each id not registered yet; returns the ids created."""
        created: list[str] = []
        with self.store.session() as session:
            resources = SqlResources(session, clock=self.store.clock)
            resources.prefetch([("Device", device_id) for device_id in device_ids])
            for device_id in device_ids:
                check_device_id(device_id)
                if resources.current("Device", device_id) is None:
                    resources.update("Device", device_id, _new_device(device_id))
                    created.append(device_id)
        return created

    def get(self, device_id: str) -> DeviceEntry:
        with self.store.session() as session:
            resources = SqlResources(session, clock=self.store.clock)
            device = resources.read("Device", device_id)
            state = session.get(DeviceStateRow, device_id)
            timeline = self._timeline(session, device_id)
        return DeviceEntry(
            device_id, device.resource, _state(state) if state else None, timeline.current()
        )

    def list(self, *, limit: int = 500) -> list[DeviceEntry]:
        with self.store.session() as session:
            resources = SqlResources(session, clock=self.store.clock)
            query = parse_search("Device", [("_count", str(limit))])
            devices = resources.search(query).resources
            ids = [d.id for d in devices]
            states = {
                row.device_id: _state(row)
                for row in session.scalars(
                    select(DeviceStateRow).where(DeviceStateRow.device_id.in_(ids))
                )
            }
            open_bindings = {
                row.device_id: _binding(row)
                for row in session.scalars(
                    select(DeviceBindingRow).where(
                        DeviceBindingRow.device_id.in_(ids), DeviceBindingRow.end.is_(None)
                    )
                )
            }
        return [
            DeviceEntry(d.id, d.resource, states.get(d.id), open_bindings.get(d.id))
            for d in sorted(devices, key=lambda d: d.id)
        ]

    # -- bindings -------------------------------------------------------------------

    def bind(self, device_id: str, patient_id: str, start: datetime) -> Binding:
        """Attach the device to the patient from ``start`` (closing its open binding there)."""
        check_device_id(device_id)
        with self.store.session() as session:
            resources = SqlResources(session, clock=self.store.clock)
            resources.read("Patient", patient_id)  # 404/410 for an unknown or deleted patient
            device = self._device(resources, device_id)
            timeline = self._timeline(session, device_id, lock=True)
            binding = Binding(device_id, patient_id, start)
            timeline.check_new(binding)
            session.execute(
                update(DeviceBindingRow)
                .where(
                    DeviceBindingRow.device_id == device_id,
                    DeviceBindingRow.end.is_(None),
                    DeviceBindingRow.start < start,
                )
                .values(end=start)
            )
            session.add(
                DeviceBindingRow(
                    device_id=device_id,
                    patient_id=patient_id,
                    start=start,
                    end=None,
                    created_at=self.store.clock(),
                )
            )
            device["patient"] = {"reference": f"Patient/{patient_id}"}
            resources.update("Device", device_id, device)
        self._changed(device_id)
        return binding

    def unbind(self, device_id: str, end: datetime) -> Binding:
        """End the device's open binding at ``end`` (404 when it is not bound)."""
        with self.store.session() as session:
            resources = SqlResources(session, clock=self.store.clock)
            current = self._timeline(session, device_id, lock=True).current()
            if current is None:
                raise NotFoundError(f"device {device_id} is not bound to a patient")
            if end <= current.start:
                message = f"the binding started at {current.start.isoformat()}; end must be later"
                raise InputError(message, [Issue(message, expression=("end",))])
            session.execute(
                update(DeviceBindingRow)
                .where(DeviceBindingRow.device_id == device_id, DeviceBindingRow.end.is_(None))
                .values(end=end)
            )
            device = self._device(resources, device_id)
            device.pop("patient", None)
            resources.update("Device", device_id, device)
        self._changed(device_id)
        return Binding(current.device_id, current.patient_id, current.start, end)

    def timeline(self, device_id: str) -> BindingTimeline:
        with self.store.session() as session:
            return self._timeline(session, device_id)

    def timelines(self) -> dict[str, BindingTimeline]:
        """Every device's bindings (what the ingest caches for attribution)."""
        grouped: dict[str, list[Binding]] = {}
        with self.store.session() as session:
            for row in session.scalars(select(DeviceBindingRow)):
                grouped.setdefault(row.device_id, []).append(_binding(row))
        return {device_id: BindingTimeline(items) for device_id, items in grouped.items()}

    # -- state ----------------------------------------------------------------------

    def record_seen(self, seen: Sequence[tuple[str, datetime, float, bool]]) -> None:
        """Last-seen time and clock estimate of many devices, in one transaction.

        Ingest reports every device it heard from every few seconds; one commit
        per device cost 40 % of ingest time with 1,000 devices (bench/device_ingest.py).
        """
        if not seen:
            return
        with self.store.session() as session:
            ids = [device_id for device_id, _, _, _ in seen]
            rows = {
                row.device_id: row
                for row in session.scalars(
                    select(DeviceStateRow).where(DeviceStateRow.device_id.in_(ids))
                )
            }
            for device_id, last_seen, offset_ms, flagged in seen:
                row = rows.get(device_id)
                if row is None:
                    row = DeviceStateRow(device_id=device_id, status="unknown", samples_rejected=0)
                    session.add(row)
                    rows[device_id] = row
                if row.last_seen is None or last_seen > row.last_seen:
                    row.last_seen = last_seen
                row.clock_offset_ms = offset_ms
                row.clock_flagged = flagged

    def record_state(
        self,
        device_id: str,
        *,
        last_seen: datetime | None = None,
        status: str | None = None,
        status_at: datetime | None = None,
        detail: dict[str, Any] | None = None,
        clock_offset_ms: float | None = None,
        clock_flagged: bool | None = None,
        rejected: int = 0,
    ) -> None:
        """Merge what was just learned about a device into its state row."""
        with self.store.session() as session:
            row = session.get(DeviceStateRow, device_id, with_for_update=True)
            if row is None:
                row = DeviceStateRow(
                    device_id=device_id,
                    status="unknown",
                    clock_offset_ms=0.0,
                    clock_flagged=False,
                    samples_rejected=0,
                )
                session.add(row)
            if last_seen is not None and (row.last_seen is None or last_seen > row.last_seen):
                row.last_seen = last_seen
            if status is not None:
                row.status, row.status_at = status, status_at
                row.status_detail = orjson.dumps(detail).decode() if detail else None
            if clock_offset_ms is not None:
                row.clock_offset_ms = clock_offset_ms
            if clock_flagged is not None:
                row.clock_flagged = clock_flagged
            row.samples_rejected = (row.samples_rejected or 0) + rejected

    # -- internals ------------------------------------------------------------------

    @staticmethod
    def _timeline(session: Session, device_id: str, *, lock: bool = False) -> BindingTimeline:
        statement = select(DeviceBindingRow).where(DeviceBindingRow.device_id == device_id)
        if lock and session.get_bind().dialect.name != "sqlite":
            statement = statement.with_for_update()
        return BindingTimeline([_binding(row) for row in session.scalars(statement)])

    @staticmethod
    def _device(resources: SqlResources, device_id: str) -> dict[str, Any]:
        current = resources.current("Device", device_id)
        if current is None or current.deleted:
            return _new_device(device_id)
        return current.resource

    def _changed(self, device_id: str) -> None:
        if self._on_binding_change is not None:
            self._on_binding_change(device_id)


def _new_device(device_id: str) -> dict[str, Any]:
    return {
        "resourceType": "Device",
        "id": device_id,
        "identifier": [{"system": DEVICE_ID_SYSTEM, "value": device_id}],
        "status": "active",
    }
