"""The dashboards in a real browser: headless Chromium (Debian's package) driven by Playwright,
against a real ``medhub serve`` fed by the MQTT simulator through Mosquitto.

A nurse of the ICU logs in, watches a simulated patient's vitals update live, sees the
alert a high heart rate raises, acknowledges it; a nurse of another unit cannot see the
patient at all. Along the way every dashboard is photographed; with
``MEDHUB_UI_SCREENSHOTS=docs/screenshots`` the pictures land where the docs show them.
"""

from __future__ import annotations

import json
import math
import os
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest

from medhub.adapters.mllp_client import MllpClient
from medhub.api.accounts import Accounts
from medhub.db.engine import make_engine
from medhub.fhir.sql_store import SqlResourceStore
from medhub.fhir.write_rules import utc_now
from tests.builders import adt
from tests.conftest import unavailable
from tests.test_serve_end_to_end import Server

playwright = pytest.importorskip("playwright.sync_api")

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--headless",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
PASSWORD = "dashboard-test-password"
RXNORM = "http://www.nlm.nih.gov/research/umls/rxnorm"
TABLET = {"width": 1180, "height": 820}  # a 10-11 inch tablet in landscape


def _broker_up() -> bool:
    try:
        with socket.create_connection(("127.0.0.1", 1883), timeout=2):
            return True
    except OSError:
        return False


@pytest.fixture
def server(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Server]:
    if not Path(CHROMIUM).exists():
        unavailable("Chromium (apt-get install chromium)", FileNotFoundError(CHROMIUM))
    if not _broker_up():
        unavailable("Mosquitto on 127.0.0.1:1883", ConnectionRefusedError())
    monkeypatch.setenv("MEDHUB_MQTT_URL", "mqtt://127.0.0.1:1883")
    monkeypatch.setenv("MEDHUB_MQTT__CLIENT_ID", f"medhub-ui-{uuid.uuid4().hex[:8]}")
    monkeypatch.setenv("MEDHUB_MQTT__SESSION_EXPIRY_SECONDS", "0")
    running = Server(tmp_path)
    running.start()
    try:
        deadline = time.monotonic() + 30
        while running.get("/ready")[1]["components"]["mqtt"]["status"] != "up":
            assert time.monotonic() < deadline, running.log()
            time.sleep(0.2)
        yield running
    finally:
        running.stop()
    assert "Traceback" not in running.log(), running.log()


def screenshots() -> Path:
    target = os.environ.get("MEDHUB_UI_SCREENSHOTS")
    path = Path(target) if target else Path(os.environ.get("TMPDIR", "/tmp")) / "medhub-ui"
    path.mkdir(parents=True, exist_ok=True)
    return path


def add_users(server: Server) -> None:
    """Users on the server's own database (as ``medhub user add`` would create them)."""
    store = SqlResourceStore(make_engine(f"sqlite:///{server.workdir / 'medhub.db'}"))
    accounts = Accounts(store.session, clock=utc_now)
    for name, role, units, display in (
        ("nurse.icu", "nurse", ["ICU"], "Nora Nurse"),
        ("nurse.w2", "nurse", ["WARD2"], "Walt Ward"),
        ("dr.icu", "physician", ["ICU"], "Dr Petra Phys"),
        ("pharm", "pharmacist", None, "Phil Pharm"),
        ("admin", "admin", None, "Ada Admin"),
    ):
        accounts.create_user(name, PASSWORD, role=role, care_units=units, display_name=display)
    store.close()


def admit(server: Server, mrn: str, family: str, given: str, pv1_3: str) -> str:
    message = adt(f"UI-{mrn}", mrn=mrn, family=family, given=given).replace(
        b"PV1|1|I|ICU^101^A", f"PV1|1|I|{pv1_3}".encode()
    )
    with MllpClient("127.0.0.1", server.mllp_port) as client:
        assert b"MSA|AA" in client.send(message)
    status, bundle = server.get(f"/fhir/Patient?identifier={mrn}")
    assert status == 200 and bundle["entry"], bundle
    return str(bundle["entry"][0]["resource"]["id"])


def publish(device: str, payload: dict[str, Any]) -> None:
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"ui-test-{uuid.uuid4().hex}")
    client.connect("127.0.0.1", 1883)
    client.loop_start()
    try:
        client.publish(f"devices/{device}/vitals", json.dumps(payload), qos=1).wait_for_publish(10)
    finally:
        client.loop_stop()
        client.disconnect()


def history(device: str, hours: float = 2.0) -> None:
    """A plausible past for the charts: one reading a minute, the last one now.

    Sent as one message whose newest sample is "now", so the device clock is
    judged correct and the older samples keep their times.
    """
    now = datetime.now(UTC)
    samples = []
    minutes = int(hours * 60)
    for m in range(minutes, -1, -1):
        at = (now - timedelta(minutes=m)).isoformat().replace("+00:00", "Z")
        wave = (1 + math.sin(m / 9.0) * math.cos(m / 23.0)) / 2  # slow, irregular drift
        for vital, value, unit in (
            ("heart-rate", 84 + 10 * wave, "/min"),
            ("oxygen-saturation", 95 + 2 * (1 - wave), "%"),
            ("respiratory-rate", 16 + 3 * wave, "/min"),
            ("temp", 37.1 + 0.4 * wave, "Cel"),
        ):
            samples.append({"vital": vital, "value": round(value, 1), "unit": unit, "ts": at})
        if m % 15 == 0:
            samples.append({"vital": "sbp", "value": 118 + 8 * wave, "unit": "mm[Hg]", "ts": at})
            samples.append({"vital": "dbp", "value": 74 + 4 * wave, "unit": "mm[Hg]", "ts": at})
    publish(device, {"ts": now.isoformat().replace("+00:00", "Z"), "samples": samples})


def simulate(prefix: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "medhub.cli",
            "simulate",
            "mqtt",
            "--url",
            "mqtt://127.0.0.1:1883",
            "--devices",
            "1",
            "--duration",
            "240",
            "--prefix",
            prefix,
            "--episodes-per-hour",
            "0",
            "--no-dropouts",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def wait_until(predicate: Any, what: str, seconds: float = 30) -> Any:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def login(page: Any, base: str, username: str) -> None:
    page.goto(f"{base}/ui/login")
    page.fill("input[name=username]", username)
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(lambda url: "/ui/login" not in url)


def test_a_nurse_sees_live_vitals_and_acknowledges_an_alert(server: Server) -> None:
    add_users(server)
    patient = admit(server, "UI-1", "LIVEWELL", "OLIVIA", "ICU^101^A^GHH")
    admit(server, "UI-2", "QUIET", "QUINN", "ICU^102^A^GHH")
    admit(server, "UI-3", "ELSEWHERE", "EDGAR", "WARD2^7^B^GHH")
    device = f"ui{uuid.uuid4().hex[:8]}-0001"
    history(device)
    wait_until(lambda: server.get(f"/api/v1/devices/{device}")[0] == 200, "the device")
    since = (datetime.now(UTC) - timedelta(hours=3)).isoformat()
    status, _ = server.send(
        "PUT", f"/api/v1/devices/{device}/binding", {"patient": patient, "start": since}
    )
    assert status == 200
    warfarin = {
        "resourceType": "MedicationRequest",
        "status": "active",
        "intent": "order",
        "subject": {"reference": f"Patient/{patient}"},
        "medicationCodeableConcept": {
            "coding": [{"system": RXNORM, "code": "11289"}],
            "text": "warfarin 5 mg tablet",
        },
        "dosageInstruction": [
            {
                "text": "5 mg oral once a day",
                "route": {"text": "oral"},
                "timing": {"repeat": {"frequency": 1, "period": 1, "periodUnit": "d"}},
                "doseAndRate": [{"doseQuantity": {"value": 5, "unit": "mg", "code": "mg"}}],
            }
        ],
    }
    assert server.send("POST", "/fhir/MedicationRequest", warfarin)[0] == 201
    simulator = simulate(device.rsplit("-", 1)[0])
    base = f"http://127.0.0.1:{server.http_port}"
    shots = screenshots()
    try:
        with playwright.sync_playwright() as driver:
            browser = driver.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            nurse = browser.new_context(viewport=TABLET).new_page()
            login(nurse, base, "nurse.icu")
            assert nurse.url == f"{base}/ui/nurse"
            tile = nurse.locator(f'.tile[data-patient="{patient}"]')
            assert "LIVEWELL" in tile.inner_text()
            assert "ELSEWHERE" not in nurse.content()
            nurse.wait_for_selector('#live-status[data-state="live"]')
            hr_time = tile.locator('[data-cell="hr"] time.age')
            first = hr_time.get_attribute("data-time")
            # A live update: the tile's heart rate gets a newer reading without a reload.
            wait_until(
                lambda: hr_time.get_attribute("data-time") not in (first, None, ""),
                "a live vitals.update",
            )
            simulator.terminate()
            simulator.wait(timeout=20)
            now = datetime.now(UTC)
            for second in range(3):
                at = (now + timedelta(seconds=second)).isoformat().replace("+00:00", "Z")
                publish(
                    device, {"ts": at, "samples": [{"vital": "hr", "value": 168, "unit": "/min"}]}
                )
            alert = nurse.locator(
                f'#alert-list li[data-patient="{patient}"][data-vital="heart-rate"]'
            )
            alert.wait_for(timeout=30_000)
            assert alert.get_attribute("data-severity") == "high"
            assert "168" in alert.inner_text()
            nurse.wait_for_selector(f'.tile[data-patient="{patient}"] [data-cell="hr"].alarm-high')
            nurse.screenshot(path=str(shots / "nurse.png"), full_page=True)
            alert.locator("button.ack").click()
            nurse.wait_for_selector(
                f'#alert-list li[data-patient="{patient}"][data-state="acknowledged"]'
            )
            listed = server.get(f"/api/v1/alerts?patient={patient}")[1]["alerts"]
            [heart] = [a for a in listed if a["vital"] == "heart-rate"]
            assert heart["state"] == "acknowledged" and heart["acknowledged_by"] == "nurse.icu"

            other = browser.new_context(viewport=TABLET).new_page()
            login(other, base, "nurse.w2")
            assert "ELSEWHERE" in other.content() and "LIVEWELL" not in other.content()
            refused = other.goto(f"{base}/ui/patients/{patient}")
            assert refused is not None and refused.status == 403
            assert "LIVEWELL" not in other.content()
            answer = other.request.get(f"{base}/api/v1/patients/{patient}/vitals")
            assert answer.status == 403

            doctor = browser.new_context(viewport=TABLET).new_page()
            login(doctor, base, "dr.icu")
            doctor.goto(f"{base}/ui/patients/{patient}")
            doctor.wait_for_selector('figure[data-chart="heart-rate"] svg')
            doctor.fill("#prescribe input[name=medication]", "ibuprofen 400 mg tablet")
            doctor.fill("#prescribe input[name=dose]", "400")
            doctor.select_option("#prescribe select[name=frequency]", "3")
            doctor.click("#prescribe button[type=submit]")
            doctor.wait_for_selector("#prescribe-result .refused")
            assert "warfarin" in doctor.inner_text("#prescribe-result").lower()
            doctor.screenshot(path=str(shots / "patient.png"), full_page=True)
            doctor.fill("#prescribe textarea[name=reason]", "short course, INR checked daily")
            doctor.click("#prescribe button[type=submit]")
            try:
                doctor.wait_for_selector("#prescribe-result .ok", timeout=60_000)
            except playwright.Error as exc:
                result = doctor.inner_text("#prescribe-result")
                raise AssertionError(f"override not saved: {result}\n{server.log()}") from exc
            doctor.goto(f"{base}/ui/physician")
            assert "ibuprofen" in doctor.inner_text("#warnings-title + ul")
            doctor.wait_for_selector('#live-status[data-state="live"]')
            scores = doctor.locator("[data-news2]")
            wait_until(lambda: "…" not in scores.all_inner_texts(), "NEWS2 scores")
            doctor.screenshot(path=str(shots / "physician.png"), full_page=True)

            pharmacist = browser.new_context(viewport=TABLET).new_page()
            login(pharmacist, base, "pharm")
            assert "ibuprofen" in pharmacist.content()
            pharmacist.screenshot(path=str(shots / "pharmacist.png"), full_page=True)

            with MllpClient("127.0.0.1", server.mllp_port) as client:  # a merge without MRG
                assert b"MSA|AE" in client.send(adt("UI-MERGE", mrn="UI-9", event="A40"))
            admin = browser.new_context(viewport=TABLET).new_page()
            login(admin, base, "admin")
            assert device in admin.content() and "nurse.w2" in admin.content()
            assert "UI-MERGE" in admin.inner_text("#hl7-title ~ .table-wrap")
            admin.screenshot(path=str(shots / "admin.png"), full_page=True)
            browser.close()
    finally:
        if simulator.poll() is None:
            simulator.terminate()
            simulator.wait(timeout=20)
    for shot in shots.glob("*.png"):
        assert shot.stat().st_size < 300_000, shot
