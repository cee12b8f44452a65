"""MQTT vitals payload decode throughput on one core: medhub decode_vitals vs plain JSON.

The ingest target is 100,000 samples/s; DESIGN.md measured ``json.loads`` of a
144-byte vitals message at about 100,000/s, so per-message decoding is the
known bottleneck. Two payloads, as a gateway sends them:

* single: one sample per message, ``{"ts", "samples": [{"vital", "value", "unit"}]}``;
* batch-50: 50 samples (10 vitals x 5 channels) under one message timestamp.

Candidates, all on the same ``bytes``:

* medhub ``decode_vitals``: orjson, then every check (vital name and alias,
  unit and conversion, physical range, timestamps) and a :class:`Sample` each;
* orjson + dict access: ``orjson.loads`` and reading vital/value/unit of each
  sample into a tuple (no checks: the floor for orjson);
* json.loads + dict access: the same with the standard library (the baseline
  DESIGN.md measured).

Each candidate is warmed up, then timed in 3 runs of ``--seconds`` (interleaved
across candidates); the best run is reported.

Usage: python bench/device_decode.py [--quick] [--seconds S]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from collections.abc import Callable

import orjson
from _common import print_table

from medhub.devices.mqtt_payload import decode_vitals

VITALS = [
    ("heart-rate", 88, "/min"),
    ("oxygen-saturation", 97, "%"),
    ("respiratory-rate", 16, "/min"),
    ("nibp-sys", 121, "mm[Hg]"),
    ("nibp-dia", 79, "mm[Hg]"),
    ("nibp-mean", 93, "mm[Hg]"),
    ("body-temperature", 37.2, "Cel"),
    ("pulse-rate", 87, "/min"),
    ("perfusion-index", 3.6, "%"),
    ("etco2", 38, "mm[Hg]"),
]


def message(samples: int) -> bytes:
    items = [
        {"vital": name, "value": value, "unit": unit, "channel": f"ch{i // len(VITALS)}"}
        if samples > 1
        else {"vital": name, "value": value, "unit": unit}
        for i, (name, value, unit) in ((i, VITALS[i % len(VITALS)]) for i in range(samples))
    ]
    return orjson.dumps({"ts": "2026-11-21T10:00:00.000Z", "samples": items})


def medhub(payload: bytes) -> int:
    return len(decode_vitals("monitor-1", payload).samples)


def orjson_plain(payload: bytes) -> int:
    data = orjson.loads(payload)
    out = [(s["vital"], s["value"], s["unit"]) for s in data["samples"]]
    return len(out)


def json_plain(payload: bytes) -> int:
    data = json.loads(payload)
    out = [(s["vital"], s["value"], s["unit"]) for s in data["samples"]]
    return len(out)


def timed(fn: Callable[[bytes], int], payload: bytes, seconds: float) -> tuple[float, int]:
    """Messages/s over about ``seconds``, and how many messages were timed."""
    batch, done = 200, 0
    start = time.perf_counter()
    end = start + seconds
    now = start
    while now < end:
        for _ in range(batch):
            fn(payload)
        done += batch
        now = time.perf_counter()
    return done / (now - start), done


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="0.2 s runs (smoke test)")
    parser.add_argument("--seconds", type=float, default=1.0)
    args = parser.parse_args()
    seconds = 0.2 if args.quick else args.seconds
    candidates: list[tuple[str, Callable[[bytes], int]]] = [
        ("medhub decode_vitals (orjson + checks + Sample)", medhub),
        ("orjson.loads + dict access", orjson_plain),
        ("json.loads + dict access", json_plain),
    ]
    payloads = [("single", message(1)), ("batch-50", message(50))]
    print(f"# device_decode: Python {platform.python_version()}, one thread,")
    print(f"# {os.cpu_count()} CPUs seen, best of 3 runs of {seconds:g} s each")
    for _, payload in payloads:
        for _, fn in candidates:  # warm up, and prove they agree on the sample count
            counts = {fn(payload) for _ in range(100)}
            assert counts == {json_plain(payload)}, (fn, counts)
    rows = []
    for label, payload in payloads:
        best = dict.fromkeys((name for name, _ in candidates), (0.0, 0))
        for _ in range(3):
            for name, fn in candidates:
                rate, done = timed(fn, payload, seconds)
                if rate > best[name][0]:
                    best[name] = (rate, done)
        per_message = json_plain(payload)
        baseline = best["json.loads + dict access"][0] * per_message
        for name, _ in candidates:
            rate, done = best[name]
            rows.append(
                [
                    label,
                    len(payload),
                    name,
                    round(rate),
                    round(rate * per_message),
                    round(1e6 / rate, 2),
                    round(rate * per_message / baseline, 2),
                    done,
                ]
            )
    print_table(
        [
            "payload",
            "bytes",
            "decoder",
            "msgs/s",
            "samples/s",
            "us/msg",
            "vs json.loads",
            "msgs timed",
        ],
        rows,
    )
    sys.stdout.flush()


if __name__ == "__main__":
    main()
