"""End-to-end alert latency: an out-of-range sample published over MQTT to the alert on RabbitMQ.

``medhub serve`` runs in a subprocess with the real Mosquitto (MQTT ingest) and
the real RabbitMQ (the outbox relay, publisher confirms), once per database
back-end (``--backends``: SQLite files, or a fresh PostgreSQL schema holding
both the resources and the samples). While background devices stream normal
heart rates at ``--rate`` samples/s, probe devices send one critical heart
rate each (170/min; critical limits bypass the on-delay); a consumer on a
queue bound to ``alerts.#`` of a private exchange records when each probe's
``alert.raised`` arrives. Latency = MQTT publish -> RabbitMQ delivery to the
consumer, i.e. ingest, storage, detection, the alert transaction with its
Flag and Observation, the outbox relay and the broker.

Each probe is a device medhub has not seen, so its path also registers the
device (a FHIR Device) and writes its first state row, as before.

The machine's load average (before and after) and the server's CPU use during
the probes are printed under the table: other work on a 2-core box moves the
tail, so figures are only comparable with the load they were taken under.

Usage: python bench/alert_latency.py [--rate 10000] [--probes 50] [--seconds 30]
       [--backends sqlite,postgres]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import paho.mqtt.client as mqtt
import pika  # type: ignore[import-untyped]
from _common import MedhubServer, database_urls, percentile, print_table
from paho.mqtt.enums import CallbackAPIVersion

MQTT_HOST, MQTT_PORT = "127.0.0.1", 1883
AMQP_URL = os.environ.get("MEDHUB_BENCH_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/%2F")


def payload(values: list[float], start: float) -> bytes:
    samples = [
        {
            "ts": datetime.fromtimestamp(start + i * 0.01, UTC).isoformat(),
            "vital": "heart-rate",
            "value": v,
            "unit": "/min",
        }
        for i, v in enumerate(values)
    ]
    return json.dumps({"samples": samples}).encode()


class AlertConsumer(threading.Thread):
    """Receives ``alert.raised`` messages and notes when each device's first one arrived."""

    def __init__(self, exchange: str) -> None:
        super().__init__(daemon=True)
        self.exchange = exchange
        self.arrived: dict[str, float] = {}
        self.ready = threading.Event()
        self.stop = threading.Event()

    def run(self) -> None:
        connection = pika.BlockingConnection(pika.URLParameters(AMQP_URL))
        channel = connection.channel()
        channel.exchange_declare(self.exchange, exchange_type="topic", durable=True)
        queue = channel.queue_declare("", exclusive=True).method.queue
        channel.queue_bind(queue, self.exchange, routing_key="alerts.#")
        self.ready.set()
        for _method, properties, body in channel.consume(
            queue, auto_ack=True, inactivity_timeout=0.2
        ):
            if self.stop.is_set():
                break
            if body is None:
                continue
            message = json.loads(body)
            if message.get("state") == "raised":
                self.arrived.setdefault(message["device"], time.time())
            del properties
        connection.close()


def background(client: mqtt.Client, rate: int, stop: threading.Event, prefix: str) -> None:
    """Normal heart rates from 100 devices, in 50-sample messages, at ``rate`` samples/s."""
    per_message = 50
    interval = per_message / rate
    n = 0
    next_at = time.perf_counter()
    while not stop.is_set():
        device = f"{prefix}-bg{n % 100}"
        client.publish(
            f"devices/{device}/vitals", payload([80.0] * per_message, time.time()), qos=1
        )
        n += 1
        next_at += interval
        delay = next_at - time.perf_counter()
        if delay > 0:
            time.sleep(delay)


def process_cpu_seconds(pid: int) -> float | None:
    """User + system CPU seconds of a process so far (Linux ``/proc``; None elsewhere)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@dataclass
class Run:
    """What one back-end's run measured."""

    backend: str
    sent: dict[str, float]
    arrived: dict[str, float]
    server_cpu: float | None  # percent of one core, during the probes
    load_before: tuple[float, float, float]
    load_after: tuple[float, float, float]

    def latencies(self) -> list[float]:
        return sorted(
            (self.arrived[d] - t) * 1000 for d, t in self.sent.items() if d in self.arrived
        )


def run_backend(backend: str, url: str, workdir: Path, args: argparse.Namespace) -> Run:
    tag = uuid.uuid4().hex[:8]
    exchange = f"medhub.alerts.bench-{tag}"
    os.environ.update(
        {
            "MEDHUB_MQTT_URL": f"mqtt://{MQTT_HOST}:{MQTT_PORT}",
            "MEDHUB_MQTT__CLIENT_ID": f"medhub-bench-{tag}",
            "MEDHUB_MQTT__SESSION_EXPIRY_SECONDS": "0",
            "MEDHUB_AMQP_URL": AMQP_URL,
            "MEDHUB_ALERTS__EXCHANGE": exchange,
        }
    )
    load_before = os.getloadavg()
    consumer = AlertConsumer(exchange)
    consumer.start()
    consumer.ready.wait(10)
    server = MedhubServer(url, workdir)
    server.start()
    assert server.process is not None
    pid = server.process.pid
    publisher = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"bench-pub-{tag}")
    publisher.connect(MQTT_HOST, MQTT_PORT)
    publisher.loop_start()
    stop = threading.Event()
    loader = threading.Thread(target=background, args=(publisher, args.rate, stop, tag))
    loader.start()
    try:
        time.sleep(3)  # let the background load settle
        cpu_before, wall_before = process_cpu_seconds(pid), time.monotonic()
        sent: dict[str, float] = {}
        deadline = time.time() + args.seconds
        for n in range(args.probes):
            if time.time() > deadline:
                break
            device = f"{tag}-probe{n}"
            sent[device] = time.time()
            publisher.publish(f"devices/{device}/vitals", payload([170.0], sent[device]), qos=1)
            time.sleep(0.2)
        wait_until = time.time() + 15
        while time.time() < wait_until and len(consumer.arrived.keys() & sent.keys()) < len(sent):
            time.sleep(0.1)
        cpu_after, wall_after = process_cpu_seconds(pid), time.monotonic()
    finally:
        stop.set()
        loader.join()
        publisher.loop_stop()
        publisher.disconnect()
        server.stop()
        consumer.stop.set()
    cpu = None
    if cpu_before is not None and cpu_after is not None:
        cpu = 100 * (cpu_after - cpu_before) / (wall_after - wall_before)
    return Run(backend, sent, dict(consumer.arrived), cpu, load_before, os.getloadavg())


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--rate", type=int, default=10_000, help="background samples/s")
    parser.add_argument("--probes", type=int, default=50)
    parser.add_argument("--seconds", type=float, default=30.0, help="cap on the probe phase")
    parser.add_argument("--backends", default="sqlite,postgres", help="sqlite, postgres")
    args = parser.parse_args()
    backends = [b.strip() for b in args.backends.split(",") if b.strip()]
    runs: list[Run] = []
    notes: list[str] = []
    workdir = Path(tempfile.mkdtemp(prefix="medhub-bench-alerts-"))
    try:
        for backend, url, skipped in database_urls(backends, workdir):
            if url is None:
                notes.append(skipped)
                continue
            runs.append(run_backend(backend, url, workdir, args))
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    report(args, runs, notes)
    return 0 if all(len(r.latencies()) == len(r.sent) for r in runs) else 1


def report(args: argparse.Namespace, runs: list[Run], notes: list[str]) -> None:
    print(
        f"# alert_latency: MQTT publish -> alert.raised on RabbitMQ; background {args.rate:,} "
        "samples/s from 100 devices (50-sample messages, QoS 1); one medhub serve per back-end"
    )
    rows: list[tuple[object, ...]] = []
    for run in runs:
        latencies = run.latencies()
        if not latencies:
            rows.append((run.backend, len(run.sent), 0, "-", "-", "-"))
            continue
        rows.append(
            (
                run.backend,
                len(run.sent),
                len(latencies),
                statistics.median(latencies),
                percentile(latencies, 0.99),
                latencies[-1],
            )
        )
    print_table(["backend", "probes", "alerts received", "p50 ms", "p99 ms", "max ms"], rows)
    for run in runs:
        cpu = "-" if run.server_cpu is None else f"{run.server_cpu:.0f} % of a core"
        load = ", ".join(f"{v:.2f}" for v in run.load_before)
        load_after = ", ".join(f"{v:.2f}" for v in run.load_after)
        print(f"# {run.backend}: load average {load} before, {load_after} after; server {cpu}")
        missing = len(run.sent) - len(run.latencies())
        if missing:
            print(f"# {run.backend}: {missing} probe(s) raised no alert within 15 s")
    for note in notes:
        print(f"# {note}")


if __name__ == "__main__":
    sys.exit(main())
