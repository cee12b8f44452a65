"""``medhub serve`` as a real process: ADT^A01 over MLLP in, Patient over HTTP out.

Also: bad input gets the right answer while the listener keeps serving, and
killing the process (SIGKILL) right after an ACK loses nothing.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from medhub.adapters.mllp_client import MllpClient
from medhub.api.permissions import Principal, Role
from medhub.api.tokens import issue_access_token
from medhub.db.engine import make_engine
from medhub.hl7.er7 import parse_er7
from medhub.hl7.message_log import Hl7MessageRow
from medhub.hl7.mllp_framing import encode_frame
from tests.builders import adt

pytestmark = pytest.mark.slow
SYSTEM = "urn:oid:1.2.840.114350"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


#: What the test servers sign access tokens with (``MEDHUB_JWT_SECRET``).
TEST_SECRET = "medhub-test-signing-secret-0123456789abcdef"


def token_for(
    role: Role = "admin", *, units: frozenset[str] | None = None, subject: str = "test"
) -> str:
    """An access token the test servers accept."""
    principal = Principal(subject=subject, role=role, kind="token", care_units=units)
    return issue_access_token(
        principal, secret=TEST_SECRET, now=datetime.now(UTC), ttl=timedelta(hours=1)
    )


def admin_token() -> str:
    return token_for("admin")


class Server:
    """One ``medhub serve`` process on free ports and its own SQLite file."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.http_port = free_port()
        self.mllp_port = free_port()
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        env = {
            **os.environ,
            "MEDHUB_DATABASE_URL": os.environ.get(
                "MEDHUB_DATABASE_URL", f"sqlite:///{self.workdir / 'medhub.db'}"
            ),
            "MEDHUB_HTTP_PORT": str(self.http_port),
            "MEDHUB_MLLP_PORT": str(self.mllp_port),
            "MEDHUB_HTTP__HOST": "127.0.0.1",
            "MEDHUB_MLLP__HOST": "127.0.0.1",
            "MEDHUB_JWT_SECRET": TEST_SECRET,
        }
        with (self.workdir / "server.log").open("ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "medhub.cli", "serve"],
                env=env,
                cwd=self.workdir,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"medhub serve exited: {self.log()}")
            try:
                if self.get("/health")[0] == 200:
                    return
            except OSError:
                time.sleep(0.2)
        raise AssertionError(f"medhub serve did not become healthy: {self.log()}")

    def log(self) -> str:
        return (self.workdir / "server.log").read_text(errors="replace")[-3000:]

    def get(self, path: str) -> tuple[int, Any]:
        return self.send("GET", path)

    def send(
        self, method: str, path: str, body: Any = None, *, token: str | None = None
    ) -> tuple[int, Any]:
        """An HTTP request as an administrator (or with ``token``), JSON in and out."""
        request = urllib.request.Request(
            f"http://127.0.0.1:{self.http_port}{path}",
            data=None if body is None else json.dumps(body).encode(),
            method=method,
            headers={
                "Content-Type": "application/fhir+json",
                "Authorization": f"Bearer {token or admin_token()}",
            },
        )
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                raw = response.read()
                return response.status, json.loads(raw) if raw else None
        except urllib.error.HTTPError as error:
            raw = error.read()
            return error.code, json.loads(raw) if raw else None

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.process is None:
            return
        self.process.send_signal(sig)
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.process = None


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    running = Server(tmp_path)
    running.start()
    yield running
    running.stop()


def msa(ack: bytes) -> list[str]:
    segment = parse_er7(ack.decode()).segment("MSA")
    assert segment is not None
    return segment.fields


def err(ack: bytes) -> list[str]:
    segment = parse_er7(ack.decode()).segment("ERR")
    assert segment is not None
    return segment.fields


def test_adt_a01_over_mllp_then_the_patient_over_http(server: Server) -> None:
    with MllpClient("127.0.0.1", server.mllp_port) as client:
        assert msa(client.send(adt("E2E-1", mrn="E2E")))[1:3] == ["AA", "E2E-1"]
    status, bundle = server.get(f"/fhir/Patient?identifier={SYSTEM}|E2E")
    assert status == 200 and bundle["total"] == 1
    patient_id = bundle["entry"][0]["resource"]["id"]
    status, patient = server.get(f"/fhir/Patient/{patient_id}")
    assert status == 200
    assert patient["identifier"][0] == {
        "value": "E2E",
        "system": SYSTEM,
        "type": {
            "coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0203", "code": "MR"}]
        },
    }
    assert patient["name"] == [{"family": "DOE", "given": ["JANE"]}]
    assert patient["birthDate"] == "1970-05-17"
    assert patient["gender"] == "female"
    assert patient["address"][0]["city"] == "SPRINGFIELD"
    assert patient["telecom"][0]["value"] == "(217) 5551234"
    status, ready = server.get("/ready")
    assert status == 200
    assert ready["components"]["database"]["status"] == "up"
    assert ready["components"]["schema"]["status"] == "up"
    assert ready["components"]["mllp"]["status"] == "up"


def test_garbage_truncated_frames_and_bad_msh_get_answers_and_the_listener_serves_on(
    server: Server,
) -> None:
    with MllpClient("127.0.0.1", server.mllp_port) as client:
        garbage = client.send(b"\x00\x01 definitely not HL7 \xff")
        assert msa(garbage)[1] == "AR"
        assert err(garbage)[3].startswith("102^")
        bad_msh = client.send(b"MSH|^~\\&|A|B|C|D|20240101|||BAD-1|P|2.5.1\rPID|1||X^^^H^MR\r")
        assert msa(bad_msh)[1:3] == ["AR", "BAD-1"]
        assert err(bad_msh)[2] == "MSH^1^9"
        client.send_raw(b"\x0b" + adt("TRUNC-1")[:50])  # a frame that never ends ...
    # ... and the connection closes mid-frame; the listener must still serve.
    with MllpClient("127.0.0.1", server.mllp_port) as client:
        client.send_raw(b"junk between frames\r\n")
        assert msa(client.send(adt("AFTER-1", mrn="AFTER")))[1:3] == ["AA", "AFTER-1"]
    assert server.get(f"/fhir/Patient?identifier={SYSTEM}|AFTER")[1]["total"] == 1
    assert server.get(f"/fhir/Patient?identifier={SYSTEM}|MRN-1")[1]["total"] == 0


def test_killing_the_server_right_after_the_ack_loses_nothing(tmp_path: Path) -> None:
    server = Server(tmp_path)
    server.start()
    try:
        with socket.create_connection(("127.0.0.1", server.mllp_port), timeout=10) as sock:
            sock.sendall(b"".join(encode_frame(adt(f"K-{n}", mrn=f"KILL-{n}")) for n in range(25)))
            received = b""
            while received.count(b"\x1c\r") < 25:
                chunk = sock.recv(65536)
                assert chunk, "connection closed before all ACKs"
                received += chunk
            server.stop(signal.SIGKILL)  # no shutdown, no flush: the moment after the last ACK
        assert received.count(b"MSA|AA|") == 25
        server.start()
        for n in range(25):
            status, bundle = server.get(f"/fhir/Patient?identifier={SYSTEM}|KILL-{n}")
            assert (status, bundle["total"]) == (200, 1), f"KILL-{n} lost"
    finally:
        server.stop()


def test_killed_during_a_burst_every_acked_message_is_stored_and_none_applied_twice(
    tmp_path: Path,
) -> None:
    """Four senders pipeline 150 messages each; the server is SIGKILLed mid-burst. After a
    restart each sender resends everything it has no ACK for (what an interface engine
    does) plus everything once more (a lost-ACK storm): every message is stored exactly
    once, as version 1 of its patient, and the resends are answered as duplicates."""
    server = Server(tmp_path)
    server.start()
    senders, per_sender = 4, 150
    acked: dict[str, bool] = {}
    lock = threading.Lock()

    def burst(s: int) -> None:
        frames = [adt(f"B{s}-{n}", mrn=f"BURST-{s}-{n}") for n in range(per_sender)]
        try:
            with socket.create_connection(("127.0.0.1", server.mllp_port), timeout=10) as sock:
                sock.sendall(b"".join(encode_frame(f) for f in frames))
                buffer = b""
                while True:
                    chunk = sock.recv(65536)
                    if not chunk:
                        return
                    buffer += chunk
                    while b"\x1c\r" in buffer:
                        frame, buffer = buffer.split(b"\x1c\r", 1)
                        fields = msa(frame.lstrip(b"\x0b") + b"\r")
                        with lock:
                            acked[fields[2]] = fields[1] == "AA"
        except OSError:
            return

    threads = [threading.Thread(target=burst, args=(s,)) for s in range(senders)]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and len(acked) < senders * per_sender // 4:
        time.sleep(0.005)
    server.stop(signal.SIGKILL)
    for thread in threads:
        thread.join(timeout=30)
    acked_ids = {control_id for control_id, ok in acked.items() if ok}
    assert 0 < len(acked_ids) < senders * per_sender, "the kill must land mid-burst"

    server.start()
    try:
        with MllpClient("127.0.0.1", server.mllp_port) as client:
            for s in range(senders):
                for n in range(per_sender):
                    reply = msa(client.send(adt(f"B{s}-{n}", mrn=f"BURST-{s}-{n}")))
                    assert reply[1] == "AA"
        for control_id in sorted(acked_ids)[:: max(1, len(acked_ids) // 40)]:
            s, n = control_id[1:].split("-")
            status, bundle = server.get(f"/fhir/Patient?identifier={SYSTEM}|BURST-{s}-{n}")
            assert bundle["total"] == 1, f"{control_id} was ACKed before the kill but is lost"
            assert bundle["entry"][0]["resource"]["meta"]["versionId"] == "1"
        status, everything = server.get("/fhir/Patient?_count=1000")
        assert everything["total"] == senders * per_sender
    finally:
        server.stop()
    engine = make_engine(f"sqlite:///{tmp_path / 'medhub.db'}")
    with engine.connect() as connection:
        applied = connection.execute(
            select(Hl7MessageRow.status, func.count()).group_by(Hl7MessageRow.status)
        ).all()
    engine.dispose()
    counts = dict(applied)
    assert counts["accepted"] == senders * per_sender  # each applied exactly once
    assert counts["duplicate"] >= len(acked_ids)  # the resends of ACKed messages
