"""The devices JSON API: registry, binding (with late claims), samples and bucketed vitals."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from medhub.api.app import create_app
from medhub.api.deps import ApiContext, ComponentHealth
from medhub.db.engine import make_engine
from medhub.devices.ingest import DeviceIngest
from medhub.devices.registry import DeviceRegistry
from medhub.devices.samples import Sample
from medhub.fhir.sql_store import SqlResourceStore
from medhub.timeseries.sample_store import SampleStore
from medhub.timeseries.schema import migrate

T0 = datetime(2026, 11, 21, 10, 0, tzinfo=UTC)
ISO = "%Y-%m-%dT%H:%M:%SZ"


@pytest.fixture
def parts(
    store: SqlResourceStore, tmp_path: Path
) -> Iterator[tuple[TestClient, DeviceIngest, SqlResourceStore]]:
    engine = make_engine(f"sqlite:///{tmp_path / 'samples.db'}")
    migrate(engine)
    samples = SampleStore(engine)
    registry = DeviceRegistry(store)
    ingest = DeviceIngest(samples, registry)
    context = ApiContext(
        store=store,
        health_checks={"database": lambda: ComponentHealth("up")},
        devices=registry,
        samples=samples,
        on_binding_change=ingest.invalidate_bindings,
    )
    with TestClient(create_app(context), raise_server_exceptions=False) as client:
        yield client, ingest, store
    engine.dispose()


def new_patient(store: SqlResourceStore) -> str:
    with store.unit_of_work() as resources:
        return resources.create({"resourceType": "Patient", "name": [{"family": "Ward"}]}).id


def stream(ingest: DeviceIngest, device: str, seconds: range, value: float = 80.0) -> None:
    batch = [
        Sample(device, "heart-rate", value + s % 7, "/min", T0 + timedelta(seconds=s))
        for s in seconds
    ]
    # received 20 ms after the last sample: a synchronised clock, a short network delay
    ingest.store(batch, received_at=T0 + timedelta(seconds=seconds.stop - 1, milliseconds=20))


def test_devices_appear_with_state_and_can_be_bound(
    parts: tuple[TestClient, DeviceIngest, SqlResourceStore],
) -> None:
    client, ingest, store = parts
    stream(ingest, "mon-7", range(60))
    listing = client.get("/api/v1/devices").json()["devices"]
    assert [d["id"] for d in listing] == ["mon-7"]
    assert listing[0]["last_seen"] == "2026-11-21T10:00:59.020000Z"
    assert listing[0]["binding"] is None
    patient_id = new_patient(store)
    # bound five minutes late: the minute already streamed is claimed for the patient
    response = client.put(
        "/api/v1/devices/mon-7/binding",
        json={"patient": f"Patient/{patient_id}", "start": T0.strftime(ISO)},
    )
    assert response.status_code == 200, response.text
    assert response.json()["samples_claimed"] == 60
    stream(ingest, "mon-7", range(60, 120))
    device = client.get("/api/v1/devices/mon-7").json()
    assert device["binding"]["patient"] == f"Patient/{patient_id}"
    assert device["device"]["patient"]["reference"] == f"Patient/{patient_id}"
    window = {"since": T0.strftime(ISO), "until": (T0 + timedelta(minutes=5)).strftime(ISO)}
    vitals = client.get(f"/api/v1/patients/{patient_id}/vitals", params=window).json()
    assert len(vitals["samples"]) == 120
    per_minute = client.get(
        f"/api/v1/patients/{patient_id}/vitals",
        params={**window, "vital": "heart-rate", "bucket": 60},
    ).json()["buckets"]
    assert [b["count"] for b in per_minute] == [60, 60]
    assert per_minute[0]["min"] == 80 and per_minute[0]["max"] == 86
    samples = client.get(
        "/api/v1/devices/mon-7/samples", params={**window, "vital": "heart-rate", "limit": 5}
    ).json()["samples"]
    assert len(samples) == 5 and samples[0]["patient"] == f"Patient/{patient_id}"
    ended = client.delete(
        "/api/v1/devices/mon-7/binding", params={"end": (T0 + timedelta(minutes=2)).strftime(ISO)}
    )
    assert ended.status_code == 200 and ended.json()["binding"]["end"].startswith(
        "2026-11-21T10:02"
    )
    stream(ingest, "mon-7", range(120, 130))
    assert (
        len(client.get(f"/api/v1/patients/{patient_id}/vitals", params=window).json()["samples"])
        == 120
    )


@pytest.mark.parametrize(
    ("method", "path", "body", "status"),
    [
        ("get", "/api/v1/devices/nope", None, 404),
        ("put", "/api/v1/devices/mon-1/binding", {"patient": "Patient/unknown"}, 404),
        ("put", "/api/v1/devices/mon-1/binding", {"patient": "Patient/a/b"}, 400),
        ("put", "/api/v1/devices/mon-1/binding", {"start": "2026-11-21T10:00:00Z"}, 400),
        (
            "put",
            "/api/v1/devices/mon-1/binding",
            {"patient": "x", "start": "2026-11-21T10:00:00"},
            400,
        ),
        ("delete", "/api/v1/devices/mon-1/binding", None, 404),
        ("get", "/api/v1/patients/p/vitals?bucket=60", None, 400),
        ("get", "/api/v1/patients/p/vitals?since=2026-11-21T10:00:00", None, 400),
        ("get", "/api/v1/patients/p/vitals?bucket=0&vital=heart-rate", None, 400),
    ],
)
def test_errors_are_precise(
    parts: tuple[TestClient, DeviceIngest, SqlResourceStore],
    method: str,
    path: str,
    body: dict[str, str] | None,
    status: int,
) -> None:
    client, _, _ = parts
    response = client.request(method.upper(), path, json=body)
    assert response.status_code == status, response.text
    assert response.json()["resourceType"] == "OperationOutcome"
