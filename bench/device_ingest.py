"""Device ingest end to end: 1,000 simulated monitors -> Mosquitto -> MqttIngest -> stored.

What is measured: sustained samples/s from published (QoS 1, to the real
Mosquitto) to committed in the sample store, through the real consumer
(:class:`medhub.adapters.mqtt_ingest.MqttIngest`: manual PUBACK after the
store, batches) and the real sink (:class:`medhub.devices.ingest.DeviceIngest`:
registration, clock tracking, attribution, then ``SampleStore.write``), on
SQLite and on PostgreSQL.

* Payloads come from :mod:`medhub.devices.simulator` (1,000 devices, heart
  rate / SpO2 / respiratory rate every 30 ms of device time plus temperature
  and NIBP), ``--per-message`` samples per message, generated before the
  clock starts so the publisher costs only ``publish`` calls.
* The consumer runs in its own process(es) (``--consumers N`` uses an MQTT 5
  shared subscription, or with ``--split partition`` MEDHUB_MQTT__PARTITION:
  every consumer receives every message and keeps its own devices'), so its
  RSS is its own; the publisher runs here.
* Closed loop: the publisher keeps at most ``--lag`` messages published but
  not yet stored, so the figure is what the consumer sustains, and the broker
  never has to queue more than its ``max_queued_messages`` (nothing dropped).
  After the timed window the publisher stops and everything is drained: the
  count stored must equal the count published (exactly once).
* Baselines from the same payloads, one thread: ``json.loads`` + dict access
  (DESIGN.md's reference point), orjson, and medhub's ``decode_vitals``.

Usage: python bench/device_ingest.py [--seconds 15] [--backends sqlite,postgres]
       [--consumers 1] [--split shared|partition] [--per-message 60] [--protocol 5]
       [--quick]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import platform
import resource
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from multiprocessing.sharedctypes import Synchronized
from pathlib import Path
from typing import Any

import orjson
import paho.mqtt.client as mqtt
from _common import fresh_postgres, print_table, reachable

from medhub.adapters.mqtt_connection import MqttConnection, make_client
from medhub.devices.mqtt_payload import decode_vitals
from medhub.devices.simulator import DeviceSimulator, SimulatorProfile, vitals_payloads

BROKER = ("127.0.0.1", 1883)
PERIOD = 0.03  # device sampling period: ~100 samples/s per device


# -- payloads -------------------------------------------------------------------------


def generate(
    devices: int, samples: int, per_message: int, prefix: str
) -> list[tuple[str, bytes, int]]:
    """(topic, payload, samples) in publish order: round-robin over devices, each in order."""
    start = datetime.now(UTC) + timedelta(seconds=5)
    profile = SimulatorProfile(period_seconds=PERIOD, dropouts=False)
    per_device = samples // devices
    streams: list[list[tuple[str, bytes, int]]] = []
    for index in range(devices):
        device = f"{prefix}-{index:04d}"
        sim = DeviceSimulator(device, seed=index, start=start, profile=profile)
        readings: list[Any] = []
        horizon = start
        while len(readings) < per_device:
            horizon += timedelta(seconds=5)
            readings.extend(sim.advance(horizon).readings)
        readings = readings[:per_device]
        topic = f"devices/{device}/vitals"
        streams.append(
            [
                (topic, payload, len(readings[i : i + per_message]))
                for i, payload in zip(
                    range(0, len(readings), per_message),
                    vitals_payloads(readings, per_message=per_message),
                    strict=True,
                )
            ]
        )
    ordered: list[tuple[str, bytes, int]] = []
    for round_ in range(max(len(s) for s in streams)):
        ordered.extend(s[round_] for s in streams if round_ < len(s))
    return ordered


# -- consumer process -----------------------------------------------------------------


def rss_mb() -> tuple[float, float]:
    """(current RSS, peak RSS) of this process in MB, from /proc."""
    values = {}
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(("VmRSS:", "VmHWM:")):
                key, kb = line.split()[:2]
                values[key] = int(kb) / 1024
    return values.get("VmRSS:", 0.0), values.get("VmHWM:", 0.0)


def consumer(
    url: str,
    client_id: str,
    group: str | None,
    partition: str | None,
    protocol: str,
    state_interval: float,
    stored: Synchronized[int],
    ready: Any,
    stop: Any,
    results: Any,
) -> None:
    """One consumer process: DeviceIngest on ``url`` behind MqttIngest, until ``stop``."""
    from medhub.adapters.mqtt_ingest import IngestOptions, MqttIngest
    from medhub.db.engine import make_engine
    from medhub.devices.ingest import DeviceIngest
    from medhub.devices.registry import DeviceRegistry
    from medhub.fhir.sql_store import SqlResourceStore
    from medhub.logs import configure_logging
    from medhub.timeseries.sample_store import SampleStore

    configure_logging("WARNING", "console")
    engine = make_engine(url)
    ingest = DeviceIngest(
        SampleStore(engine),
        DeviceRegistry(SqlResourceStore(engine)),
        clock_limit=timedelta(hours=1),  # pre-generated payloads: device clocks run ahead
        state_interval_seconds=state_interval,
    )
    connection = MqttConnection(
        host=BROKER[0],
        port=BROKER[1],
        client_id=client_id,
        protocol=protocol,  # type: ignore[arg-type]
    )
    from medhub.devices.partition import PartitionGate, parse_partition

    gate = None
    if partition is not None:
        gate = PartitionGate(parse_partition(partition))
        gate.covered = True  # both consumers run from the start: what the claims would say
    options = IngestOptions(
        shared_group=group,
        partition=gate,
        batch_messages=500,
        queue_messages=2000,
    )
    mqtt_ingest = MqttIngest(connection, ingest, options=options)
    mqtt_ingest.start()
    if not mqtt_ingest.wait_ready(30):
        results.put({"error": "consumer did not connect"})
        return
    peak_live = 0.0

    def report() -> None:
        nonlocal peak_live
        while not stop.is_set():
            stored.value = ingest.samples_stored
            peak_live = max(peak_live, rss_mb()[0])
            time.sleep(0.05)

    reporter = threading.Thread(target=report, daemon=True)
    ready.set()
    cpu0 = resource.getrusage(resource.RUSAGE_SELF)
    reporter.start()
    stop.wait()
    reporter.join()
    stored.value = ingest.samples_stored
    cpu1 = resource.getrusage(resource.RUSAGE_SELF)
    mqtt_ingest.stop(timeout=10)
    stats = mqtt_ingest.stats
    results.put(
        {
            "stored": ingest.samples_stored,
            "duplicates": ingest.samples_duplicate,
            "messages": stats.messages,
            "batches": stats.batches,
            "rejected": stats.samples_rejected,
            "retries": stats.store_retries,
            "cpu": (cpu1.ru_utime + cpu1.ru_stime) - (cpu0.ru_utime + cpu0.ru_stime),
            "rss": rss_mb()[0],
            "rss_peak": max(peak_live, rss_mb()[0]),
        }
    )
    engine.dispose()


def end_session(client_id: str) -> None:
    client = mqtt.Client(
        mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5
    )
    client.connect(*BROKER, clean_start=True)
    client.loop(1.0)
    client.disconnect()


# -- one run --------------------------------------------------------------------------


def run(
    backend: str,
    url: str,
    messages: list[tuple[str, bytes, int]],
    *,
    seconds: float,
    warmup: float,
    consumers: int,
    protocol: str,
    lag: int,
    state_interval: float,
    split: str = "shared",
) -> dict[str, Any]:
    from medhub.db.engine import make_engine
    from medhub.devices.registry import DeviceRegistry
    from medhub.fhir.sql_store import SqlResourceStore
    from medhub.migrations import upgrade
    from medhub.timeseries.schema import migrate

    engine = make_engine(url)
    upgrade(engine)
    migrate(engine)
    # A ward's monitors are registered before they stream (registration is a one-off
    # FHIR Device create per device, ~3 s for 1,000, and not what this measures).
    devices = sorted({topic.split("/")[1] for topic, _, _ in messages})
    DeviceRegistry(SqlResourceStore(engine)).ensure_devices(devices)
    engine.dispose()
    ctx = mp.get_context("spawn")
    stop = ctx.Event()
    results = ctx.Queue()
    counters = [ctx.Value("q", 0, lock=False) for _ in range(consumers)]
    readies = [ctx.Event() for _ in range(consumers)]
    tag = uuid.uuid4().hex[:8]
    group = f"bench-{tag}" if consumers > 1 and split == "shared" else None
    partitions = [
        f"{i}/{consumers}" if consumers > 1 and split == "partition" else None
        for i in range(consumers)
    ]
    ids = [f"bench-{tag}-{i}" for i in range(consumers)]
    procs = [
        ctx.Process(
            target=consumer,
            args=(
                url,
                ids[i],
                group,
                partitions[i],
                protocol,
                state_interval,
                counters[i],
                readies[i],
                stop,
                results,
            ),
        )
        for i in range(consumers)
    ]
    for proc in procs:
        proc.start()
    for ready in readies:
        if not ready.wait(60):
            raise RuntimeError("a consumer did not start")

    def stored() -> int:
        return sum(c.value for c in counters)

    publisher = make_client(
        MqttConnection(host=BROKER[0], port=BROKER[1], client_id=f"bench-pub-{tag}")
    )
    publisher.max_inflight_messages_set(1000)
    publisher.max_queued_messages_set(0)
    publisher.connect(*BROKER)
    publisher.loop_start()
    started = time.perf_counter()
    published_samples, mark, final = publish_closed_loop(
        publisher, messages, stored, lag=lag, warmup=warmup, seconds=seconds
    )
    drain_deadline = time.perf_counter() + 120
    while stored() < published_samples and time.perf_counter() < drain_deadline:
        time.sleep(0.05)
    publisher.disconnect()
    publisher.loop_stop()
    stop.set()
    busy = time.perf_counter() - started
    outcomes = [results.get(timeout=60) for _ in procs]
    for proc in procs:
        proc.join(30)
    for client_id in ids:
        end_session(client_id)
    elapsed = final[0] - mark[0]
    return {
        "backend": backend,
        "consumers": consumers,
        "split": split if consumers > 1 else "-",
        "state_interval": state_interval,
        "rate": (final[1] - mark[1]) / elapsed if elapsed > 0 else float("nan"),
        "window": elapsed,
        "published": published_samples,
        "messages": sum(o.get("messages", 0) for o in outcomes),
        "stored": sum(o.get("stored", 0) for o in outcomes),
        "duplicates": sum(o.get("duplicates", 0) for o in outcomes),
        "rejected": sum(o.get("rejected", 0) for o in outcomes),
        "retries": sum(o.get("retries", 0) for o in outcomes),
        "batches": sum(o.get("batches", 0) for o in outcomes),
        "cpu": sum(o.get("cpu", 0.0) for o in outcomes) / busy,
        "rss_peak": max(o.get("rss_peak", 0.0) for o in outcomes),
        "errors": [o["error"] for o in outcomes if "error" in o],
    }


def publish_closed_loop(
    publisher: mqtt.Client,
    messages: list[tuple[str, bytes, int]],
    stored: Callable[[], int],
    *,
    lag: int,
    warmup: float,
    seconds: float,
) -> tuple[int, tuple[float, int], tuple[float, int]]:
    """Publish while at most ``lag`` messages wait to be stored; (samples, window start, end)."""
    published_samples = sent = 0
    started = time.perf_counter()
    window_start, window_end = started + warmup, started + warmup + seconds
    mark: tuple[float, int] | None = None
    per_message = messages[0][2]
    while sent < len(messages):
        now = time.perf_counter()
        if mark is None and now >= window_start:
            mark = (now, stored())
        if now >= window_end:
            break
        if published_samples - stored() > lag * per_message:
            time.sleep(0.0005)
            continue
        for topic, payload, count in messages[sent : sent + 50]:
            publisher.publish(topic, payload, qos=1)
            published_samples += count
        sent = min(len(messages), sent + 50)
    else:
        print("# ran out of pre-generated messages; raise --samples", flush=True)
    final = (time.perf_counter(), stored())
    return published_samples, mark or (started, 0), final


# -- baselines --------------------------------------------------------------------------


def baseline(messages: list[tuple[str, bytes, int]], seconds: float) -> list[list[object]]:
    payloads = [payload for _, payload, _ in messages[:2000]]
    samples = sum(count for _, _, count in messages[:2000])

    def json_plain(payload: bytes) -> None:
        data = json.loads(payload)
        groups = data if type(data) is list else [data]
        for group in groups:
            for s in group["samples"]:
                (s["vital"], s["value"], s["unit"], group["ts"])

    def orjson_plain(payload: bytes) -> None:
        data = orjson.loads(payload)
        groups = data if type(data) is list else [data]
        for group in groups:
            for s in group["samples"]:
                (s["vital"], s["value"], s["unit"], group["ts"])

    def medhub(payload: bytes) -> None:
        decode_vitals("bench-0000", payload)

    candidates: list[tuple[str, Callable[[bytes], None]]] = [
        ("json.loads + dict access (DESIGN.md baseline)", json_plain),
        ("orjson.loads + dict access", orjson_plain),
        ("medhub decode_vitals (checks + Sample objects)", medhub),
    ]
    rows: list[list[object]] = []
    for name, fn in candidates:
        best = 0.0
        for _ in range(3):
            done = 0
            start = time.perf_counter()
            while time.perf_counter() - start < seconds:
                for payload in payloads:
                    fn(payload)
                done += samples
            best = max(best, done / (time.perf_counter() - start))
        rows.append([name, round(best), round(1e6 / best, 2)])
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=15.0)
    parser.add_argument("--warmup", type=float, default=5.0)
    parser.add_argument(
        "--state-intervals",
        default="10,3600",
        help="DeviceIngest state_interval_seconds to run with (10 is its default)",
    )
    parser.add_argument("--devices", type=int, default=1000)
    parser.add_argument("--per-message", type=int, default=60)
    parser.add_argument("--samples", type=int, default=0, help="pre-generated (default: enough)")
    parser.add_argument("--backends", default="sqlite,postgres")
    parser.add_argument("--consumers", default="1", help="comma list, e.g. 1,2")
    parser.add_argument("--protocol", default="5", choices=["3.1.1", "5"])
    parser.add_argument(
        "--split",
        default="shared",
        choices=["shared", "partition"],
        help="how several consumers share the stream: MQTT 5 shared subscription, or "
        "MEDHUB_MQTT__PARTITION (every consumer gets every message, keeps its devices')",
    )
    parser.add_argument("--lag", type=int, default=1500, help="max messages not yet stored")
    parser.add_argument("--quick", action="store_true", help="3 s windows (smoke test)")
    args = parser.parse_args()
    if args.quick:
        args.seconds, args.warmup = 3.0, 1.0
    total = args.samples or int((args.seconds + args.warmup) * 110_000 + 400_000)
    print(
        f"# device_ingest: Python {platform.python_version()}, {os.cpu_count()} CPUs, "
        f"{args.devices} devices, {args.per_message} samples/message, MQTT {args.protocol}, "
        f"QoS 1, lag <= {args.lag} messages"
    )
    began = time.perf_counter()
    messages = generate(args.devices, total, args.per_message, prefix="bench")
    print(
        f"# generated {len(messages):,} messages, {sum(m[2] for m in messages):,} samples, "
        f"{sum(len(m[1]) for m in messages) / len(messages):,.0f} bytes/message "
        f"in {time.perf_counter() - began:.1f} s",
        flush=True,
    )
    rows = []
    notes = []
    workdir = Path(tempfile.mkdtemp(prefix="medhub-bench-"))
    for backend in args.backends.split(","):
        for consumers, interval in (
            (int(c), float(i))
            for c in args.consumers.split(",")
            for i in args.state_intervals.split(",")
        ):
            if backend == "sqlite":
                url = f"sqlite:///{workdir / f'{uuid.uuid4().hex[:8]}.db'}"
                result = run_one(backend, url, messages, args, consumers, interval)
            else:
                reason = reachable("postgresql+psycopg://postgres@127.0.0.1:5432/test")
                if reason is not None:
                    notes.append(f"postgres skipped: {reason}")
                    continue
                with fresh_postgres() as url:
                    result = run_one(backend, url, messages, args, consumers, interval)
            rows.append(
                [
                    result["backend"],
                    result["consumers"],
                    result["split"],
                    round(result["state_interval"]),
                    round(result["window"], 1),
                    round(result["rate"]),
                    result["published"],
                    result["stored"],
                    result["duplicates"],
                    result["rejected"],
                    round(result["published"] / max(1, result["batches"])),
                    round(result["cpu"], 2),
                    round(result["rss_peak"], 1),
                ]
            )
            if result["stored"] != result["published"] or result["errors"]:
                notes.append(f"{backend}/{consumers}: LOST OR EXTRA SAMPLES {result}")
            print(f"# {backend} x{consumers}: {result}", file=sys.stderr, flush=True)
    print_table(
        [
            "backend",
            "consumers",
            "split",
            "state every s",
            "window s",
            "samples/s stored",
            "published",
            "stored",
            "dups",
            "rejected",
            "samples/batch",
            "consumer cores",
            "consumer RSS MB",
        ],
        rows,
    )
    for note in notes:
        print(f"# {note}")
    print("# same payloads, one thread, best of 3 x 1 s:")
    print_table(["decoder", "samples/s", "us/sample"], baseline(messages, 1.0))


def run_one(
    backend: str,
    url: str,
    messages: list[tuple[str, bytes, int]],
    args: argparse.Namespace,
    consumers: int,
    state_interval: float,
) -> dict[str, Any]:
    return run(
        backend,
        url,
        messages,
        seconds=args.seconds,
        warmup=args.warmup,
        consumers=consumers,
        protocol=args.protocol,
        lag=args.lag,
        state_interval=state_interval,
        split=args.split,
    )


if __name__ == "__main__":
    main()
