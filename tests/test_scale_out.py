"""Two processes of each role against the real PostgreSQL, Mosquitto and RabbitMQ:
a mixed load of HL7, FHIR and device samples is processed exactly once.

Eight ``medhub serve --role …`` processes share one fresh PostgreSQL schema:
two ``api`` (FHIR creates, conditional creates racing for one identifier), two
``mllp`` on one port (SO_REUSEPORT; the kernel spreads the senders'
connections; resends of ACKed messages land on either), two ``devices`` (one
MQTT shared subscription), two ``worker`` (competing for one outbound HL7
queue). Each process's ``/metrics`` shows it took part, so the test cannot
pass with one process doing all the work; the database and the partner show
nothing was lost or applied twice.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from sqlalchemy import create_engine, func, select, text
from sqlalchemy.engine import make_url

from medhub.adapters.mllp_client import MllpClient
from medhub.db.engine import make_engine
from medhub.fhir.sql_store import SqlResourceStore
from medhub.hl7.er7 import parse_er7
from medhub.hl7.message_log import Hl7MessageRow
from medhub.hl7.mllp_framing import MllpDecoder, encode_frame
from medhub.hl7.outbound_queue import Hl7OutboundRow, enqueue
from medhub.timeseries.sample_store import SampleStore
from tests.builders import adt
from tests.conftest import POSTGRES_URL, unavailable
from tests.scrape import Samples, parse, value
from tests.test_serve_end_to_end import TEST_SECRET, admin_token, free_port

pytestmark = pytest.mark.slow

MQTT_HOST, MQTT_PORT = "127.0.0.1", 1883
AMQP_URL = "amqp://guest:guest@127.0.0.1:5672/%2F"
SYSTEM = "urn:oid:2.16.840.1.113883.3.999.1"

HL7_CONNECTIONS = 16  # spread by the kernel over the two mllp processes
HL7_PER_CONNECTION = 10
HL7_RESENT = 24
FHIR_CREATES = 40
FHIR_CONDITIONAL = 8  # identifiers each created from both api processes at once
DEVICES = 20
MQTT_MESSAGES_PER_DEVICE = 15
SAMPLES_PER_MESSAGE = 2
OUTBOUND = 40


class Partner:
    """An EHR's MLLP listener: ACKs AA echoing MSH-10, one thread per connection."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = int(self.sock.getsockname()[1])
        self.received: list[str] = []
        self.lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        decoder = MllpDecoder()
        with conn:
            while data := conn.recv(65536):
                for frame in decoder.feed(data):
                    if not isinstance(frame, bytes):
                        continue
                    control_id = parse_er7(frame.decode()).control_id
                    with self.lock:
                        self.received.append(control_id)
                    header = f"MSH|^~\\&|EHR|H|MEDHUB|H|20261207||ACK|A{control_id}|P|2.5.1"
                    conn.sendall(encode_frame(f"{header}\rMSA|AA|{control_id}\r".encode()))

    def close(self) -> None:
        self.sock.close()


@dataclass
class Process:
    """One ``medhub serve --role ROLE`` process on its own HTTP port and directory."""

    role: str
    index: int
    workdir: Path
    env: dict[str, str]
    http_port: int
    popen: subprocess.Popen[bytes] | None = None

    @property
    def name(self) -> str:
        return f"{self.role}-{self.index}"

    def start(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        env = {**self.env, "MEDHUB_HTTP_PORT": str(self.http_port)}
        with (self.workdir / "server.log").open("ab") as log:
            self.popen = subprocess.Popen(
                [sys.executable, "-m", "medhub.cli", "serve", "--role", self.role],
                env=env,
                cwd=self.workdir,
                stdout=log,
                stderr=subprocess.STDOUT,
            )

    def log(self) -> str:
        return (self.workdir / "server.log").read_text(errors="replace")[-4000:]

    def request(
        self, method: str, path: str, body: Any = None, headers: dict[str, str] | None = None
    ) -> tuple[int, Any]:
        request = urllib.request.Request(
            f"http://127.0.0.1:{self.http_port}{path}",
            data=None if body is None else json.dumps(body).encode(),
            method=method,
            headers={
                "Content-Type": "application/fhir+json",
                "Authorization": f"Bearer {admin_token()}",
                **(headers or {}),
            },
        )
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                raw = response.read()
                status = response.status
        except urllib.error.HTTPError as exc:
            raw, status = exc.read(), exc.code
        if not raw:
            return status, None
        try:
            return status, json.loads(raw)
        except ValueError:
            return status, raw.decode(errors="replace")

    def metrics(self) -> Samples:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.http_port}/metrics") as response:
            return parse(response.read().decode())

    def wait_ready(self, deadline: float) -> dict[str, Any]:
        assert self.popen is not None
        while time.monotonic() < deadline:
            if self.popen.poll() is not None:
                raise AssertionError(f"{self.name} exited: {self.log()}")
            try:
                status, body = self.request("GET", "/ready")
                if status == 200:
                    return dict(body)
            except OSError:
                pass
            time.sleep(0.3)
        raise AssertionError(f"{self.name} never became ready: {self.log()}")

    def stop(self) -> None:
        if self.popen is not None and self.popen.poll() is None:
            self.popen.terminate()
            try:
                self.popen.wait(20)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait()


@pytest.fixture
def database_url() -> Iterator[str]:
    """A fresh PostgreSQL schema for the eight processes, migrated once, dropped after."""
    schema = f"medhub_scale_{uuid.uuid4().hex[:10]}"
    try:
        admin = create_engine(POSTGRES_URL, isolation_level="AUTOCOMMIT")
        with admin.connect() as connection:
            connection.execute(text(f'CREATE SCHEMA "{schema}"'))
    except Exception as exc:
        unavailable("PostgreSQL", exc)
    url = make_url(POSTGRES_URL).update_query_dict({"options": f"-csearch_path={schema}"})
    rendered = url.render_as_string(hide_password=False)
    try:
        env = {**os.environ, "MEDHUB_DATABASE_URL": rendered, "MEDHUB_JWT_SECRET": TEST_SECRET}
        migrate = subprocess.run(
            [sys.executable, "-m", "medhub.cli", "migrate"],
            env=env,
            capture_output=True,
            timeout=120,
            check=False,
        )
        assert migrate.returncode == 0, migrate.stderr.decode()[-3000:]
        yield rendered
    finally:
        with admin.connect() as connection:
            connection.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


@pytest.fixture
def partner() -> Iterator[Partner]:
    listener = Partner()
    yield listener
    listener.close()


@pytest.fixture
def cluster(database_url: str, partner: Partner, tmp_path: Path) -> Iterator[dict[str, Any]]:
    tag = uuid.uuid4().hex[:8]
    mllp_port = free_port()
    base = {
        **os.environ,
        "MEDHUB_DATABASE_URL": database_url,
        "MEDHUB_JWT_SECRET": TEST_SECRET,
        "MEDHUB_AUTO_MIGRATE": "false",
        "MEDHUB_HTTP__HOST": "127.0.0.1",
        "MEDHUB_MLLP__HOST": "127.0.0.1",
        "MEDHUB_MLLP_PORT": str(mllp_port),
        "MEDHUB_MLLP__REUSE_PORT": "true",
        "MEDHUB_MQTT_URL": f"mqtt://{MQTT_HOST}:{MQTT_PORT}",
        "MEDHUB_MQTT__TOPIC_PREFIX": f"scale-{tag}",
        "MEDHUB_MQTT__SHARED_GROUP": f"scale-{tag}",
        "MEDHUB_MQTT__SESSION_EXPIRY_SECONDS": "0",
        "MEDHUB_AMQP_URL": AMQP_URL,
        "MEDHUB_ALERTS__EXCHANGE": f"medhub.alerts.scale-{tag}",
        "MEDHUB_HL7_DESTINATIONS": json.dumps(
            [
                {
                    "name": "ehr",
                    "host": "127.0.0.1",
                    "port": partner.port,
                    "retry_base_seconds": 0.2,
                    "ack_timeout_seconds": 10,
                }
            ]
        ),
        "MEDHUB_AUTH__RATE_LIMIT_PER_MINUTE": "100000",
        "MEDHUB_AUTH__RATE_LIMIT_BURST": "10000",
    }
    processes: list[Process] = []
    for role in ("api", "mllp", "devices", "worker"):
        for index in (1, 2):
            env = {**base, "MEDHUB_MQTT__CLIENT_ID": f"medhub-{tag}-{role}-{index}"}
            processes.append(Process(role, index, tmp_path / f"{role}-{index}", env, free_port()))
    try:
        for process in processes:
            process.start()
        deadline = time.monotonic() + 120
        ready = {p.name: p.wait_ready(deadline) for p in processes}
        yield {
            "processes": {p.name: p for p in processes},
            "ready": ready,
            "mllp_port": mllp_port,
            "topic_prefix": f"scale-{tag}",
            "database_url": database_url,
        }
    finally:
        for process in processes:
            process.stop()


def wait_for(condition: Callable[[], bool], what: str, timeout: float = 90.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"gave up waiting: {what}")
        time.sleep(0.2)


def send_hl7(port: int, messages: list[bytes]) -> list[str]:
    """Send on one connection, each after the previous ACK; the MSA-1 codes."""
    codes = []
    with MllpClient("127.0.0.1", port) as client:
        for message in messages:
            msa = parse_er7(client.send(message).decode()).segment("MSA")
            assert msa is not None
            codes.append(msa.fields[1])
    return codes


def publish_samples(prefix: str) -> int:
    """Publish every device's messages at QoS 1 and wait for the broker's PUBACKs."""
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"gw-{uuid.uuid4().hex[:8]}")
    client.connect(MQTT_HOST, MQTT_PORT)
    client.loop_start()
    start = datetime.now(UTC) - timedelta(minutes=5)
    infos = []
    for device in range(DEVICES):
        for n in range(MQTT_MESSAGES_PER_DEVICE):
            ts = (start + timedelta(seconds=n)).isoformat().replace("+00:00", "Z")
            payload = {
                "ts": ts,
                "samples": [
                    {"vital": "heart-rate", "value": 70 + n % 5, "unit": "/min"},
                    {"vital": "spo2", "value": 97, "unit": "%"},
                ],
            }
            topic = f"{prefix}/scale-dev-{device}/vitals"
            infos.append(client.publish(topic, orjson.dumps(payload), qos=1))
    for info in infos:
        info.wait_for_publish(30)
    client.loop_stop()
    client.disconnect()
    return DEVICES * MQTT_MESSAGES_PER_DEVICE * SAMPLES_PER_MESSAGE


@pytest.mark.timeout(600)  # eight interpreters start on two cores before the load begins
def test_two_of_each_role_process_a_mixed_load_exactly_once(
    cluster: dict[str, Any], partner: Partner
) -> None:
    procs: dict[str, Process] = cluster["processes"]
    for name, body in cluster["ready"].items():
        role = name.split("-")[0]
        assert body["roles"] == [role], name
        assert body["components"]["schema"]["status"] == "up", name
    before = {name: process.metrics() for name, process in procs.items()}
    store = SqlResourceStore(make_engine(cluster["database_url"]))
    samples = SampleStore(make_engine(cluster["database_url"]))
    try:
        # Outbound HL7 queued first, so both workers compete for it during the rest.
        with store.session() as session:
            for n in range(OUTBOUND):
                message = adt(f"OUT-{n}", f"MRN-OUT-{n}", event="A08")
                enqueue(session, destination="ehr", message=message, now=datetime.now(UTC))

        # HL7 over MLLP: 16 connections to the shared port, then resends of ACKed messages.
        batches = [
            [adt(f"IN-{c}-{n}", f"MRN-{c}-{n}") for n in range(HL7_PER_CONNECTION)]
            for c in range(HL7_CONNECTIONS)
        ]
        port = cluster["mllp_port"]
        with ThreadPoolExecutor(HL7_CONNECTIONS) as pool:
            codes = [
                code for result in pool.map(lambda b: send_hl7(port, b), batches) for code in result
            ]
        assert codes == ["AA"] * (HL7_CONNECTIONS * HL7_PER_CONNECTION)
        resent = [batches[c % HL7_CONNECTIONS][c // HL7_CONNECTIONS] for c in range(HL7_RESENT)]
        with ThreadPoolExecutor(8) as pool:
            again = list(pool.map(lambda m: send_hl7(port, [m])[0], resent))
        assert again == ["AA"] * HL7_RESENT  # acknowledged again, not applied again

        # FHIR: plain creates spread over both api processes, and conditional creates of
        # one identifier sent to both at once.
        apis = [procs["api-1"], procs["api-2"]]

        def create(n: int) -> int:
            patient = {
                "resourceType": "Patient",
                "identifier": [{"system": SYSTEM, "value": f"FHIR-{n}"}],
                "name": [{"family": f"Scale{n}"}],
            }
            return apis[n % 2].request("POST", "/fhir/Patient", patient)[0]

        def conditional(args: tuple[int, int]) -> int:
            n, api = args
            patient = {
                "resourceType": "Patient",
                "identifier": [{"system": SYSTEM, "value": f"COND-{n}"}],
            }
            header = {"If-None-Exist": f"identifier={SYSTEM}|COND-{n}"}
            return apis[api].request("POST", "/fhir/Patient", patient, header)[0]

        with ThreadPoolExecutor(8) as pool:
            created = list(pool.map(create, range(FHIR_CREATES)))
            raced = list(
                pool.map(conditional, [(n, a) for n in range(FHIR_CONDITIONAL) for a in (0, 1)])
            )
        assert created == [201] * FHIR_CREATES
        assert sorted(raced) == sorted([200, 201] * FHIR_CONDITIONAL), raced

        # Device samples over MQTT, shared by the two devices processes.
        expected_samples = publish_samples(cluster["topic_prefix"])
        wait_for(lambda: samples.count() >= expected_samples, "every sample stored")
        wait_for(lambda: len(partner.received) >= OUTBOUND, "every outbound message sent")
        time.sleep(1.0)  # anything sent twice or stored twice would show by now

        # Exactly once, in the shared database and at the partner.
        assert samples.count() == expected_samples
        assert Counter(partner.received) == Counter(f"OUT-{n}" for n in range(OUTBOUND))
        with store.session() as session:
            statuses = Counter(session.scalars(select(Hl7OutboundRow.status)).all())
            assert statuses == {"sent": OUTBOUND}
            rows = session.execute(
                select(Hl7MessageRow.status, func.count()).group_by(Hl7MessageRow.status)
            ).all()
            logged = {str(status): int(count) for status, count in rows}
        assert logged == {"accepted": HL7_CONNECTIONS * HL7_PER_CONNECTION, "duplicate": HL7_RESENT}
        status, bundle = procs["api-2"].request("GET", "/fhir/Patient?_summary=count")
        assert status == 200
        hl7_patients = HL7_CONNECTIONS * HL7_PER_CONNECTION
        assert bundle["total"] == hl7_patients + FHIR_CREATES + FHIR_CONDITIONAL

        # Every process did its share (the kernel, the broker and the queue spread the work).
        after = {name: process.metrics() for name, process in procs.items()}

        def moved(name: str, metric: str, **labels: str) -> float:
            return value(after[name], metric, **labels) - value(before[name], metric, **labels)

        for index in (1, 2):
            assert moved(f"mllp-{index}", "medhub_hl7_messages_total", direction="in",
                         interface="mllp", status="accepted") > 0, f"mllp-{index} idle"  # fmt: skip
            assert moved(f"devices-{index}", "medhub_samples_ingested_total", source="mqtt") > 0
            assert moved(f"api-{index}", "medhub_fhir_requests_total", interaction="create",
                         status="201") > 0  # fmt: skip
        sent = sum(
            moved(f"worker-{i}", "medhub_hl7_messages_total", direction="out", interface="ehr",
                  status="sent")
            for i in (1, 2)
        )  # fmt: skip
        assert sent == OUTBOUND
        accepted = sum(
            moved(f"mllp-{i}", "medhub_hl7_messages_total", direction="in", interface="mllp",
                  status="accepted")
            for i in (1, 2)
        )  # fmt: skip
        assert accepted == hl7_patients
    finally:
        store.close()
        samples.engine.dispose()
