"""``medhub serve`` polling ``medhub simulate modbus``, both as real processes.

Samples reach the sample store, and binding the device over HTTP attributes
them to a patient.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from tests.test_serve_end_to_end import Server, free_port

pytestmark = pytest.mark.slow


def request(server: Server, method: str, path: str, body: dict[str, Any]) -> tuple[int, Any]:
    status, answer = server.send(method, path, body)
    assert status < 400, answer
    return status, answer


@pytest.fixture
def simulator() -> Iterator[int]:
    port = free_port()
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "medhub.cli",
            "simulate",
            "modbus",
            "--port",
            str(port),
            "--seed",
            "7",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    assert process.stdout is not None
    line = process.stdout.readline().decode()
    while "modbus+tcp://" not in line:
        assert process.poll() is None, line
        line = process.stdout.readline().decode()
    yield port
    process.terminate()
    process.wait(timeout=10)
    process.stdout.close()


def wait_for_samples(server: Server, path: str, minimum: int, timeout: float = 30) -> list[Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status, body = server.get(path)
        if status == 200 and len(body["samples"]) >= minimum:
            return list(body["samples"])
        time.sleep(0.3)
    raise AssertionError(f"fewer than {minimum} samples at {path}: {server.log()}")


def test_modbus_samples_flow_into_the_store_and_follow_the_binding(
    simulator: int, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    device = {
        "id": "sim-bed-1",
        "url": f"modbus+tcp://127.0.0.1:{simulator}?unit=1",
        "map": "generic-bedside-monitor",
        "interval_seconds": 0.2,
    }
    monkeypatch.setenv("MEDHUB_MODBUS_DEVICES", json.dumps([device]))
    server = Server(tmp_path)
    server.start()
    try:
        since = (datetime.now(UTC) - timedelta(minutes=5)).strftime("%Y-%m-%dT%H:%M:%SZ")
        samples = wait_for_samples(server, f"/api/v1/devices/sim-bed-1/samples?since={since}", 5)
        vitals = {s["vital"] for s in samples}
        assert {"heart-rate", "oxygen-saturation"} <= vitals
        assert all(s["patient"] is None for s in samples)
        status, patient = request(
            server,
            "POST",
            "/fhir/Patient",
            {"resourceType": "Patient", "name": [{"family": "Bed1"}]},
        )
        assert status == 201
        bound_at = datetime.now(UTC)
        status, body = request(
            server,
            "PUT",
            "/api/v1/devices/sim-bed-1/binding",
            {"patient": f"Patient/{patient['id']}", "start": bound_at.isoformat()},
        )
        assert status == 200
        path = f"/api/v1/patients/{patient['id']}/vitals?vital=heart-rate&since={since}"
        attributed = wait_for_samples(server, path, 3)
        assert all(s["patient"] == f"Patient/{patient['id']}" for s in attributed)
        status, entry = server.get("/api/v1/devices/sim-bed-1")
        assert entry["binding"]["patient"] == f"Patient/{patient['id']}"
        assert entry["last_seen"] is not None
    finally:
        server.stop()
        assert "Traceback" not in server.log(), server.log()


def test_mqtt_simulator_to_serve_over_the_real_broker(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    prefix = f"e2e{uuid.uuid4().hex[:8]}"
    monkeypatch.setenv("MEDHUB_MQTT_URL", "mqtt://127.0.0.1:1883")
    monkeypatch.setenv("MEDHUB_MQTT__CLIENT_ID", f"medhub-{prefix}")
    monkeypatch.setenv("MEDHUB_MQTT__SESSION_EXPIRY_SECONDS", "0")
    server = Server(tmp_path)
    server.start()
    try:
        deadline = time.monotonic() + 30
        while server.get("/ready")[1]["components"]["mqtt"]["status"] != "up":
            assert time.monotonic() < deadline, server.log()
            time.sleep(0.2)
        simulate = subprocess.run(
            [
                sys.executable,
                "-m",
                "medhub.cli",
                "simulate",
                "mqtt",
                "--url",
                "mqtt://127.0.0.1:1883",
                "--devices",
                "3",
                "--duration",
                "3",
                "--prefix",
                prefix,
                "--no-dropouts",
            ],
            capture_output=True,
            timeout=60,
            check=True,
        )
        report = json.loads(simulate.stdout.decode().strip().splitlines()[-1])
        assert report["samples"] > 0
        since = (datetime.now(UTC) - timedelta(minutes=5)).strftime("%Y-%m-%dT%H:%M:%SZ")
        device = f"{prefix}-0001"
        samples = wait_for_samples(server, f"/api/v1/devices/{device}/samples?since={since}", 3)
        assert {"heart-rate", "oxygen-saturation"} <= {s["vital"] for s in samples}
        status, listing = server.get("/api/v1/devices")
        assert {f"{prefix}-{n:04d}" for n in (1, 2, 3)} <= {d["id"] for d in listing["devices"]}
    finally:
        server.stop()
        assert "Traceback" not in server.log(), server.log()
