"""End-to-end alert latency: an out-of-range sample published over MQTT to the alert on RabbitMQ.

``medhub serve`` runs in a subprocess with the real Mosquitto (MQTT ingest) and
the real RabbitMQ (the outbox relay, publisher confirms). While background
devices stream normal heart rates at ``--rate`` samples/s, probe devices send
one critical heart rate each (170/min; critical limits bypass the on-delay);
a consumer on a queue bound to ``alerts.#`` of a private exchange records when
each probe's ``alert.raised`` arrives. Latency = MQTT publish -> RabbitMQ
delivery to the consumer, i.e. ingest, storage, detection, the alert
transaction with its Flag and Observation, the outbox relay and the broker.

Usage: python bench/alert_latency.py [--rate 10000] [--probes 50] [--seconds 30]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import threading
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pika  # type: ignore[import-untyped]
from _common import MedhubServer

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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=int, default=10_000, help="background samples/s")
    parser.add_argument("--probes", type=int, default=50)
    parser.add_argument("--seconds", type=float, default=30.0, help="cap on the probe phase")
    args = parser.parse_args()
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
    consumer = AlertConsumer(exchange)
    consumer.start()
    consumer.ready.wait(10)
    with tempfile.TemporaryDirectory() as folder:
        server = MedhubServer(f"sqlite:///{Path(folder) / 'medhub.db'}", Path(folder))
        server.start()
        publisher = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"bench-pub-{tag}")
        publisher.connect(MQTT_HOST, MQTT_PORT)
        publisher.loop_start()
        stop = threading.Event()
        loader = threading.Thread(target=background, args=(publisher, args.rate, stop, tag))
        loader.start()
        time.sleep(3)  # let the background load settle
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
        stop.set()
        loader.join()
        publisher.loop_stop()
        publisher.disconnect()
        server.stop()
    consumer.stop.set()
    latencies = sorted(
        (consumer.arrived[d] - t) * 1000 for d, t in sent.items() if d in consumer.arrived
    )
    report(args, sent, latencies)


def report(args: Any, sent: dict[str, float], latencies: list[float]) -> None:
    def pct(p: float) -> float:
        return latencies[min(len(latencies) - 1, int(p * len(latencies)))]

    print(
        f"# alert_latency: MQTT publish -> alert.raised on RabbitMQ; background {args.rate:,} "
        "samples/s from 100 devices (50-sample messages, QoS 1); SQLite; one medhub serve"
    )
    print("| probes | alerts received | p50 ms | p99 ms | max ms |")
    print("|-------:|----------------:|-------:|-------:|-------:|")
    if not latencies:
        print(f"| {len(sent)} | 0 | - | - | - |")
        return
    print(
        f"| {len(sent)} | {len(latencies)} | {statistics.median(latencies):.1f} | "
        f"{pct(0.99):.1f} | {latencies[-1]:.1f} |"
    )


if __name__ == "__main__":
    main()
