"""The devices JSON API (``/api/v1/devices``, ``/api/v1/patients/{id}/vitals``).

Registry entries with status and last-seen, device-to-patient binding, and
samples or rollups over a time window for charts. Binding with a start in the
past also gives the patient the samples the device sent, unbound, since then.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from pydantic import BaseModel, Field

from medhub.api.deps import ContextDep
from medhub.api.security import check_patient
from medhub.clinical.device_binding import Binding
from medhub.devices.registry import DeviceEntry, DeviceRegistry
from medhub.errors import InputError, Issue, NotFoundError
from medhub.timeseries.records import Bucket, SampleRecord
from medhub.timeseries.sample_store import SampleStore

router = APIRouter(prefix="/api/v1", tags=["devices"])

_DEFAULT_WINDOW = timedelta(hours=1)


class BindingRequest(BaseModel):
    """``PUT /api/v1/devices/{id}/binding``: bind to ``patient`` from ``start`` (default now)."""

    patient: str = Field(examples=["Patient/123"], description="Patient/<id> or <id>")
    start: datetime | None = Field(default=None, description="RFC 3339 with a zone")


def _parts(context: ContextDep) -> tuple[DeviceRegistry, SampleStore]:
    if context.devices is None or context.samples is None:
        raise NotFoundError("this medhub has no device ingest configured")
    return context.devices, context.samples


def _iso(moment: datetime | None) -> str | None:
    return None if moment is None else moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _binding(binding: Binding | None) -> dict[str, Any] | None:
    if binding is None:
        return None
    return {
        "patient": f"Patient/{binding.patient_id}",
        "start": _iso(binding.start),
        "end": _iso(binding.end),
    }


def _entry(entry: DeviceEntry) -> dict[str, Any]:
    state = entry.state
    return {
        "id": entry.device_id,
        "device": entry.device,
        "status": state.status if state else "unknown",
        "status_at": _iso(state.status_at) if state else None,
        "status_detail": state.detail if state else None,
        "last_seen": _iso(state.last_seen) if state else None,
        "clock_offset_ms": state.clock_offset_ms if state else None,
        "clock_skew_flagged": state.clock_flagged if state else False,
        "binding": _binding(entry.binding),
    }


def _sample(record: SampleRecord) -> dict[str, Any]:
    return {
        "device": record.device_id,
        "vital": record.vital,
        "channel": record.channel or None,
        "value": record.value,
        "unit": record.unit,
        "time": _iso(record.corrected_time),
        "device_time": _iso(record.device_time),
        "received_at": _iso(record.received_at),
        "patient": f"Patient/{record.patient_id}" if record.patient_id else None,
        "mdc_code": record.mdc_code,
    }


def _bucket(bucket: Bucket) -> dict[str, Any]:
    return {
        "start": _iso(bucket.start),
        "seconds": bucket.seconds,
        "count": bucket.count,
        "mean": bucket.mean,
        "min": bucket.minimum,
        "max": bucket.maximum,
    }


def _window(since: datetime | None, until: datetime | None) -> tuple[datetime, datetime]:
    for name, moment in (("since", since), ("until", until)):
        if moment is not None and moment.tzinfo is None:
            message = f"{name} must carry a time zone, e.g. 2026-11-21T10:00:00Z"
            raise InputError(message, [Issue(message, expression=(name,))])
    end = until or datetime.now(UTC)
    return since or end - _DEFAULT_WINDOW, end


def _patient_id(reference: str) -> str:
    patient_id = reference.removeprefix("Patient/")
    if not patient_id or "/" in patient_id:
        message = f"patient must be Patient/<id> or <id>, got {reference!r}"
        raise InputError(message, [Issue(message, expression=("patient",))])
    return patient_id


@router.get("/devices")
def list_devices(
    context: ContextDep, limit: Annotated[int, Query(ge=1, le=1000)] = 500
) -> dict[str, Any]:
    registry, _ = _parts(context)
    return {"devices": [_entry(e) for e in registry.list(limit=limit)]}


@router.get("/devices/{device_id}")
def get_device(device_id: str, context: ContextDep) -> dict[str, Any]:
    registry, _ = _parts(context)
    return _entry(registry.get(device_id))


@router.put("/devices/{device_id}/binding")
def bind_device(device_id: str, request: BindingRequest, context: ContextDep) -> dict[str, Any]:
    registry, samples = _parts(context)
    start = request.start or datetime.now(UTC)
    if start.tzinfo is None:
        message = "start must carry a time zone, e.g. 2026-11-21T10:00:00Z"
        raise InputError(message, [Issue(message, expression=("start",))])
    binding = registry.bind(device_id, _patient_id(request.patient), start)
    if context.on_binding_change is not None:
        context.on_binding_change(device_id)
    claimed = samples.claim_unbound(device_id, binding.patient_id, start=start)
    return {"binding": _binding(binding), "samples_claimed": claimed}


@router.delete("/devices/{device_id}/binding")
def unbind_device(
    device_id: str, context: ContextDep, end: datetime | None = None
) -> dict[str, Any]:
    registry, _ = _parts(context)
    ended = registry.unbind(device_id, end or datetime.now(UTC))
    if context.on_binding_change is not None:
        context.on_binding_change(device_id)
    return {"binding": _binding(ended)}


@router.get("/devices/{device_id}/samples")
def device_samples(
    device_id: str,
    request: Request,
    context: ContextDep,
    vital: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    limit: Annotated[int, Query(ge=1, le=100_000)] = 10_000,
) -> dict[str, Any]:
    registry, samples = _parts(context)
    registry.get(device_id)  # 404 for an unknown device
    start, end = _window(since, until)
    records = samples.device_samples(device_id, since=start, until=end, vital=vital, limit=limit)
    # A device's samples belong to whoever it was bound to: each patient is checked.
    for patient in sorted({r.patient_id for r in records if r.patient_id}):
        check_patient(request, context, patient)
    return {
        "device": device_id,
        "since": _iso(start),
        "until": _iso(end),
        "samples": [_sample(r) for r in records],
    }


@router.get("/patients/{patient_id}/vitals")
def patient_vitals(
    patient_id: str,
    request: Request,
    context: ContextDep,
    vital: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    bucket: Annotated[int | None, Query(ge=1, description="seconds per aggregate")] = None,
    limit: Annotated[int, Query(ge=1, le=100_000)] = 10_000,
) -> dict[str, Any]:
    check_patient(request, context, patient_id)
    _, samples = _parts(context)
    start, end = _window(since, until)
    body: dict[str, Any] = {
        "patient": f"Patient/{patient_id}",
        "since": _iso(start),
        "until": _iso(end),
    }
    if bucket is None:
        records = samples.patient_samples(
            patient_id, since=start, until=end, vital=vital, limit=limit
        )
        body["samples"] = [_sample(r) for r in records]
        return body
    if vital is None:
        message = "bucket needs a vital (aggregates are per vital)"
        raise InputError(message, [Issue(message, expression=("vital",))])
    buckets = samples.patient_buckets(patient_id, vital, since=start, until=end, seconds=bucket)
    body["vital"] = vital
    body["buckets"] = [_bucket(b) for b in buckets]
    return body
