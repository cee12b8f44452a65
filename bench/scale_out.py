"""Throughput with 1 and with 2 processes of each role (``medhub serve --role …``) on PostgreSQL.

For each role the script starts the processes on a fresh PostgreSQL schema
(migrated once by ``medhub migrate``; the processes run with
``MEDHUB_AUTO_MIGRATE=false``), drives one kind of load at them and reports
what was processed per second, measured from the database or the partner:

* ``mllp``: ADT^A01 over MLLP from 8 sender threads (each waits for its ACK);
  two processes share one port (``MEDHUB_MLLP__REUSE_PORT``). Every ACK must be
  AA; the figure is ACKed messages/s.
* ``api``: FHIR ``POST /Patient`` from 8 client threads on keep-alive
  connections, spread evenly over the processes' ports. Figure: creates/s.
* ``devices``: vital-sign samples over MQTT (QoS 1, 20 samples a message,
  1,000 devices, at most 400 messages unstored at a time) into one shared
  subscription. Figure: samples/s stored.
* ``worker``: outbound HL7 queued for 4 destinations (MLLP partners in this
  process that ACK at once) and sent by the workers. Figure: messages/s ACKed.

Every figure counts only work that was checked done exactly once (the load
generator's count equals the database's or partner's). This machine has 2
cores shared by PostgreSQL, the broker, the load generator and the medhub
processes, so a second process can add at most what the first left idle:
the point of the table is that the roles scale out without double work, and
how far they do on a box this size.

Usage: python bench/scale_out.py [--roles mllp,api,devices,worker] [--quick]
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from datetime import UTC, datetime
from pathlib import Path

import paho.mqtt.client as mqtt
from _common import (
    BENCH_SECRET,
    POSTGRES_URL,
    FhirConnection,
    MedhubServer,
    adt_a01,
    analyze,
    free_port,
    fresh_postgres,
    print_table,
    reachable,
)
from device_ingest import generate  # the same simulated vitals as bench/device_ingest.py
from paho.mqtt.enums import CallbackAPIVersion
from sqlalchemy import func, select

from medhub.adapters.mllp_client import MllpClient
from medhub.db.engine import make_engine
from medhub.fhir.sql_store import SqlResourceStore
from medhub.hl7.er7 import parse_er7
from medhub.hl7.message_log import Hl7MessageRow
from medhub.hl7.mllp_framing import MllpDecoder, encode_frame
from medhub.hl7.outbound_queue import Hl7OutboundRow, enqueue
from medhub.timeseries.sample_store import SampleStore

SENDERS = 8
DESTINATIONS = 4
SAMPLES_PER_MESSAGE = 20
LAG = 400  # messages in flight between the gateway and the store (devices phase)


def migrate(url: str) -> None:
    env = {**os.environ, "MEDHUB_DATABASE_URL": url, "MEDHUB_JWT_SECRET": BENCH_SECRET}
    subprocess.run([sys.executable, "-m", "medhub.cli", "migrate"], env=env, check=True)


@contextmanager
def processes(
    url: str, role: str, count: int, workdir: Path, env: dict[str, str]
) -> Iterator[list[MedhubServer]]:
    """``count`` processes of ``role`` on ``url``, started together, stopped on exit."""
    mllp_port = free_port()
    servers = [
        MedhubServer(
            url,
            workdir / f"{role}-{n}-{uuid.uuid4().hex[:6]}",
            roles=[role],
            env={
                "MEDHUB_AUTO_MIGRATE": "false",
                "MEDHUB_MLLP__REUSE_PORT": "true",
                "MEDHUB_MQTT__CLIENT_ID": f"bench-{role}-{n}-{uuid.uuid4().hex[:6]}",
                **env,
            },
            mllp_port=mllp_port,
        )
        for n in range(count)
    ]
    try:
        for server in servers:
            server.start(timeout=120)
        yield servers
    finally:
        for server in servers:
            server.stop()


# -- mllp -------------------------------------------------------------------------------


def run_mllp(url: str, servers: list[MedhubServer], messages: int) -> tuple[int, float]:
    port = servers[0].mllp_port
    tag = uuid.uuid4().hex[:6]
    per = messages // SENDERS

    def sender(n: int) -> list[str]:
        codes = []
        with MllpClient("127.0.0.1", port) as client:
            for i in range(per):
                ack = client.send(adt_a01(f"{tag}-{n}-{i}", f"{tag}{n:02d}{i:05d}").encode())
                msa = parse_er7(ack.decode()).segment("MSA")
                codes.append(msa.fields[1] if msa is not None else "?")
        return codes

    # Warm-up: the first messages create the shared Practitioner and Location.
    with MllpClient("127.0.0.1", port) as client:
        client.send(adt_a01(f"{tag}-warm", f"{tag}warm").encode())
    started = time.perf_counter()
    with ThreadPoolExecutor(SENDERS) as pool:
        codes = [code for result in pool.map(sender, range(SENDERS)) for code in result]
    elapsed = time.perf_counter() - started
    assert Counter(codes) == {"AA": per * SENDERS}, Counter(codes)
    store = SqlResourceStore(make_engine(url))
    with store.session() as session:
        logged = session.scalar(
            select(func.count())
            .select_from(Hl7MessageRow)
            .where(Hl7MessageRow.control_id.like(f"{tag}-%"), Hl7MessageRow.status == "accepted")
        )
    store.close()
    assert logged == per * SENDERS + 1, logged  # each applied once (and the warm-up)
    return per * SENDERS, elapsed


# -- api --------------------------------------------------------------------------------


def run_api(servers: list[MedhubServer], creates: int) -> tuple[int, float]:
    per = creates // SENDERS
    tag = uuid.uuid4().hex[:6]

    def client(n: int) -> list[int]:
        statuses = []
        with FhirConnection(servers[n % len(servers)].http_port) as http:
            for i in range(per):
                patient = {
                    "resourceType": "Patient",
                    "identifier": [{"system": "urn:bench", "value": f"{tag}-{n}-{i}"}],
                    "name": [{"family": f"Bench{i}", "given": ["Scale"]}],
                    "birthDate": "1970-05-17",
                }
                body = json.dumps(patient).encode()
                statuses.append(http.request("POST", "/fhir/Patient", body)[0])
        return statuses

    with FhirConnection(servers[0].http_port) as http:  # warm-up
        http.request("GET", "/fhir/Patient?_count=1")
    started = time.perf_counter()
    with ThreadPoolExecutor(SENDERS) as pool:
        statuses = [s for result in pool.map(client, range(SENDERS)) for s in result]
    elapsed = time.perf_counter() - started
    assert Counter(statuses) == {201: per * SENDERS}, Counter(statuses)
    return per * SENDERS, elapsed


# -- devices ----------------------------------------------------------------------------


def run_devices(url: str, samples: int, tag: str) -> tuple[int, float]:
    """Publish simulated vitals (bench/device_ingest.py's generator) and wait until stored."""
    store = SampleStore(make_engine(url))
    before = store.count()
    messages = generate(1000, samples, SAMPLES_PER_MESSAGE, f"b{tag}")
    expected = sum(count for _, _, count in messages)
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"bench-gw-{tag}")
    client.max_inflight_messages_set(1000)
    client.connect("127.0.0.1", 1883)
    client.loop_start()
    started = time.perf_counter()
    # Closed loop, as bench/device_ingest.py: at most LAG messages published and not yet
    # stored. Mosquitto queues 1,000 messages per subscriber by default and drops QoS 1
    # messages beyond that (deploy/mosquitto.conf raises the limit; this broker is stock).
    published = 0
    for n, (topic, payload, count) in enumerate(messages):
        if n % 50 == 0:  # a count(*) per message would load the database more than ingest
            while published - (store.count() - before) > LAG * SAMPLES_PER_MESSAGE:
                time.sleep(0.005)
        client.publish(topic, payload, qos=1)
        published += count
    deadline = time.perf_counter() + 300
    while store.count() < before + expected and time.perf_counter() < deadline:
        time.sleep(0.05)
    elapsed = time.perf_counter() - started
    client.loop_stop()
    client.disconnect()
    stored = store.count() - before
    store.engine.dispose()
    assert stored == expected, (stored, expected)
    return stored, elapsed


# -- worker -----------------------------------------------------------------------------


class Partner:
    """An MLLP listener that ACKs AA at once; counts what it got."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = int(self.sock.getsockname()[1])
        self.received: Counter[str] = Counter()
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
                    if isinstance(frame, bytes):
                        control = parse_er7(frame.decode()).control_id
                        with self.lock:
                            self.received[control] += 1
                        header = f"MSH|^~\\&|P|P|M|M|20261207||ACK|A{control}|P|2.5.1"
                        ack = f"{header}\rMSA|AA|{control}\r"
                        conn.sendall(encode_frame(ack.encode()))

    def close(self) -> None:
        self.sock.close()


def run_worker(url: str, partners: list[Partner], messages: int) -> tuple[int, float]:
    """Queue ``messages`` in one transaction for the running workers; time until all ACKed."""
    store = SqlResourceStore(make_engine(url))
    tag = uuid.uuid4().hex[:6]

    def delivered() -> Counter[str]:
        got: Counter[str] = Counter()
        for partner in partners:
            with partner.lock:
                got.update({k: v for k, v in partner.received.items() if k.startswith(tag)})
        return got

    started = time.perf_counter()
    with store.session() as session:
        for n in range(messages):
            er7 = adt_a01(f"{tag}-{n}", f"{tag}{n:05d}").encode()
            enqueue(session, destination=f"d{n % DESTINATIONS}", message=er7, now=datetime.now(UTC))
    deadline = time.perf_counter() + 300
    while len(delivered()) < messages and time.perf_counter() < deadline:
        time.sleep(0.02)
    elapsed = time.perf_counter() - started
    time.sleep(1.0)  # a message sent twice would show by now
    got = delivered()
    with store.session() as session:
        sent = session.scalar(
            select(func.count()).select_from(Hl7OutboundRow).where(Hl7OutboundRow.status == "sent")
        )
    store.close()
    assert len(got) == messages and set(got.values()) == {1}, got.most_common(3)
    assert sent == messages, sent
    return messages, elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--roles", default="mllp,api,devices,worker")
    parser.add_argument("--quick", action="store_true", help="small loads, for a smoke run")
    args = parser.parse_args()
    reason = reachable(POSTGRES_URL)
    if reason is not None:
        print(f"# PostgreSQL unreachable: {reason}")
        return
    scale = 0.1 if args.quick else 1.0
    loads = {
        "mllp": int(2000 * scale),
        "api": int(2000 * scale),
        "devices": int(200_000 * scale),
        "worker": int(1000 * scale),
    }
    units = {"mllp": "ACKed msgs", "api": "creates", "devices": "samples", "worker": "msgs ACKed"}
    rows: list[list[object]] = []
    workdir = Path(tempfile.mkdtemp(prefix="medhub-scale-"))
    print(f"# scale_out: PostgreSQL, {os.cpu_count()} CPUs, {SENDERS} senders/clients", flush=True)
    for role in args.roles.split(","):
        rates = []
        for count in (1, 2):
            with fresh_postgres() as url, ExitStack() as stack:
                migrate(url)
                analyze(url)
                tag = uuid.uuid4().hex[:8]
                env: dict[str, str] = {"MEDHUB_LOG_LEVEL": "WARNING"}
                if role == "devices":
                    env |= {
                        "MEDHUB_MQTT_URL": "mqtt://127.0.0.1:1883",
                        "MEDHUB_MQTT__SHARED_GROUP": f"bench-{tag}",
                        "MEDHUB_MQTT__SESSION_EXPIRY_SECONDS": "0",
                    }
                partners: list[Partner] = []
                if role == "worker":
                    partners = [Partner() for _ in range(DESTINATIONS)]
                    env["MEDHUB_HL7_DESTINATIONS"] = json.dumps(
                        [
                            {"name": f"d{n}", "host": "127.0.0.1", "port": p.port}
                            for n, p in enumerate(partners)
                        ]
                    )
                servers = stack.enter_context(processes(url, role, count, workdir, env))
                if role == "mllp":
                    done, elapsed = run_mllp(url, servers, loads[role])
                elif role == "api":
                    done, elapsed = run_api(servers, loads[role])
                elif role == "devices":
                    done, elapsed = run_devices(url, loads[role], tag)
                else:
                    done, elapsed = run_worker(url, partners, loads[role])
                for partner in partners:
                    partner.close()
            rate = done / elapsed
            rates.append(rate)
            rows.append([role, count, f"{done:,} {units[role]}", elapsed, rate, rate / rates[0]])
            print(f"# {role} x{count}: {rate:,.0f}/s", flush=True)
    print_table(["role", "processes", "work (checked once)", "seconds", "per second", "vs 1"], rows)


if __name__ == "__main__":
    main()
